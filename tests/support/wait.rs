//! Bounded waiting for conditions that send no message.

use std::time::{Duration, Instant};

/// Polls `cond` until it is true, failing with `what` once `timeout` has passed.
///
/// Use only where no readiness message exists (a file disappearing, a log line being
/// flushed by another process); everything else waits on a message or a socket.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    if !try_wait_until(timeout, &mut cond) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Like [`wait_until`] but returns whether the condition became true.
pub fn try_wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
