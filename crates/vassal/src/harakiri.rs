//! `harakiri = N`: a thread in each worker that watches the request start times in the
//! worker's scoreboard slot. When a request has run longer than N seconds it writes
//! the worker's Python traceback to the log (faulthandler, registered on SIGUSR2 and
//! raised on this very thread, so the dump is complete before the next step and works
//! even when a Python thread holds the GIL forever), answers 504 on that connection if
//! no response byte was sent yet, and ends the worker; the master forks a new one.
//!
//! The thread does not poll: it sleeps until the earliest deadline of the requests
//! running now, or for N seconds when none runs (a request starting during that sleep
//! has a later deadline than the wake-up).

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::scoreboard::{now_ms, RecycleReason, ThreadSlot, WorkerSlot};

/// Exit code of a worker ended by harakiri (the master logs it as such).
pub const EXIT_HARAKIRI: i32 = 14;

/// `traceback`: faulthandler is registered on SIGUSR2 (else the worker ends without a
/// traceback, still answering 504).
pub fn monitor(
    id: u32,
    me: &WorkerSlot,
    threads: &[ThreadSlot],
    limit: Duration,
    traceback: bool,
) -> ! {
    let limit_ms = limit.as_millis().max(1) as u64;
    loop {
        let now = now_ms();
        let mut wake = now + limit_ms;
        let mut expired = Vec::new();
        for (i, t) in threads.iter().enumerate() {
            let started = t.started_ms.load(Ordering::Acquire);
            if started == 0 {
                continue;
            }
            let deadline = started - 1 + limit_ms;
            if deadline <= now {
                expired.push((i, started));
            } else {
                wake = wake.min(deadline);
            }
        }
        if !expired.is_empty() {
            fire(id, me, threads, &expired, limit, traceback);
        }
        std::thread::sleep(Duration::from_millis(wake.saturating_sub(now).max(1)));
    }
}

fn fire(
    id: u32,
    me: &WorkerSlot,
    threads: &[ThreadSlot],
    expired: &[(usize, u64)],
    limit: Duration,
    traceback: bool,
) -> ! {
    let pid = std::process::id();
    me.recycle
        .store(RecycleReason::Harakiri as u32, Ordering::Relaxed);
    tracing::error!(
        "HARAKIRI: worker {id} (pid {pid}): {} request(s) ran longer than harakiri = {}s; \
         {}, then the worker is replaced",
        expired.len(),
        limit.as_secs(),
        if traceback {
            "Python traceback of every thread follows"
        } else {
            "no Python traceback (faulthandler could not be registered)"
        }
    );
    if traceback {
        // SAFETY: tgkill to our own thread; the faulthandler handler runs before it
        // returns.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::gettid(),
                libc::SIGUSR2,
            );
        }
    }
    let reply = wire::response::simple_response(
        b"HTTP/1.1",
        504,
        "Gateway Timeout: the request ran longer than the harakiri limit\n",
        true,
    );
    for &(i, started) in expired {
        let t = &threads[i];
        let fd = t.fd.load(Ordering::Relaxed);
        // Re-check that the same request still runs (it could have finished while we
        // dumped the traceback, and its descriptor been reused).
        if fd < 0
            || t.headers_sent.load(Ordering::Relaxed) != 0
            || t.started_ms.load(Ordering::Acquire) != started
        {
            continue;
        }
        // SAFETY: writing to and shutting down a descriptor this process owns; the
        // worker exits right after, so no serving thread uses it again.
        unsafe {
            libc::send(
                fd,
                reply.as_ptr().cast(),
                reply.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            );
            libc::shutdown(fd, libc::SHUT_WR);
        }
    }
    crate::worker::exit(EXIT_HARAKIRI)
}
