//! The scoreboard: one shared-memory page range (mmap MAP_SHARED | MAP_ANONYMOUS, made
//! by the master before the first fork) holding a slot per worker process.
//!
//! Workers write their slot with relaxed atomic stores (a request costs a few stores and
//! one `clock_gettime`, which is a vDSO call, not a syscall); the master only reads it,
//! to tell when a worker is ready, wants to be recycled, has served anything, and to
//! report per-worker stats. A slot is also where a worker's harakiri monitor finds the
//! connection of a request that ran too long.
//!
//! Layout of one slot: a [`WorkerSlot`] followed by `threads` [`ThreadSlot`]s. There are
//! twice as many slots as workers, so every worker can have a replacement starting while
//! it still serves (staggered recycling).

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// What a worker is doing, as written in [`WorkerSlot::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum WorkerState {
    /// Forked; importing the app (lazy-apps) or starting its threads.
    Starting = 1,
    /// Its serving threads accept connections.
    Accepting = 2,
    /// Told to stop gracefully; its threads are leaving accept.
    Stopping = 3,
    /// No thread accepts any more; finishing in-flight requests.
    Draining = 4,
}

/// Why a worker asked to be (or was) replaced, as written in [`WorkerSlot::recycle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum RecycleReason {
    MaxRequests = 1,
    ReloadOnRss = 2,
    Harakiri = 3,
}

impl RecycleReason {
    pub fn from_raw(v: u32) -> Option<RecycleReason> {
        match v {
            1 => Some(RecycleReason::MaxRequests),
            2 => Some(RecycleReason::ReloadOnRss),
            3 => Some(RecycleReason::Harakiri),
            _ => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RecycleReason::MaxRequests => "max-requests reached",
            RecycleReason::ReloadOnRss => "reload-on-rss exceeded",
            RecycleReason::Harakiri => "harakiri",
        }
    }
}

/// Per worker process.
#[repr(C)]
pub struct WorkerSlot {
    pub pid: AtomicU32,
    /// A [`WorkerState`] (0 before the worker wrote anything).
    pub state: AtomicU32,
    /// Requests finished.
    pub requests: AtomicU64,
    /// Requests where the app raised.
    pub exceptions: AtomicU64,
    /// A [`RecycleReason`] once the worker wants to be replaced, else 0.
    pub recycle: AtomicU32,
    _pad: u32,
}

/// Per serving thread of a worker.
#[repr(C)]
pub struct ThreadSlot {
    /// [`now_ms`] + 1 when the current request's head was read; 0 when idle.
    pub started_ms: AtomicU64,
    /// The connection of the current request (valid while `started_ms != 0`).
    pub fd: AtomicI32,
    /// 1 once the response head is on its way: too late for a 504.
    pub headers_sent: AtomicU32,
}

/// The shared mapping. Lives as long as the process (never unmapped: workers exit
/// with `_exit`, and the master's copy goes away with exec or exit).
pub struct Scoreboard {
    base: *mut u8,
    slots: usize,
    threads: usize,
    stride: usize,
}

// SAFETY: everything in the mapping is an atomic; the pointer never changes.
unsafe impl Send for Scoreboard {}
// SAFETY: as above.
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    /// Maps room for `slots` workers of `threads` threads each, zeroed.
    pub fn new(slots: usize, threads: usize) -> std::io::Result<Scoreboard> {
        let threads = threads.max(1);
        let stride =
            std::mem::size_of::<WorkerSlot>() + threads * std::mem::size_of::<ThreadSlot>();
        let len = stride * slots.max(1);
        // SAFETY: an anonymous shared mapping; no file, no aliasing with Rust objects.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Scoreboard {
            base: p.cast(),
            slots: slots.max(1),
            threads,
            stride,
        })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn worker(&self, slot: usize) -> &WorkerSlot {
        assert!(slot < self.slots, "scoreboard slot {slot} out of range");
        // SAFETY: in bounds; the mapping is zero-initialised, and all-zero is a valid
        // value for every atomic; alignment: stride and the header are multiples of 8.
        unsafe { &*(self.base.add(slot * self.stride) as *const WorkerSlot) }
    }

    pub fn threads(&self, slot: usize) -> &[ThreadSlot] {
        assert!(slot < self.slots, "scoreboard slot {slot} out of range");
        // SAFETY: as in `worker`; the thread slots follow the header.
        unsafe {
            let p = self
                .base
                .add(slot * self.stride + std::mem::size_of::<WorkerSlot>())
                as *const ThreadSlot;
            std::slice::from_raw_parts(p, self.threads)
        }
    }

    /// Clears a slot for a worker about to be forked.
    pub fn reset(&self, slot: usize) {
        let w = self.worker(slot);
        w.pid.store(0, Ordering::Relaxed);
        w.state
            .store(WorkerState::Starting as u32, Ordering::Relaxed);
        w.requests.store(0, Ordering::Relaxed);
        w.exceptions.store(0, Ordering::Relaxed);
        w.recycle.store(0, Ordering::Relaxed);
        for t in self.threads(slot) {
            t.started_ms.store(0, Ordering::Relaxed);
            t.fd.store(-1, Ordering::Relaxed);
            t.headers_sent.store(0, Ordering::Relaxed);
        }
    }

    /// The start (in [`now_ms`] + 1 units) of the oldest request running in `slot`.
    pub fn oldest_request(&self, slot: usize) -> Option<u64> {
        self.threads(slot)
            .iter()
            .map(|t| t.started_ms.load(Ordering::Relaxed))
            .filter(|&s| s != 0)
            .min()
    }
}

/// Milliseconds on CLOCK_MONOTONIC, which every process of the machine shares (so a
/// worker's timestamps mean the same in the master).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_do_not_overlap_and_are_shared_with_a_child() {
        let b = Scoreboard::new(4, 3).expect("mmap");
        for s in 0..4 {
            b.reset(s);
            b.worker(s).requests.store(s as u64 * 10, Ordering::Relaxed);
            for (i, t) in b.threads(s).iter().enumerate() {
                t.started_ms.store((s * 100 + i) as u64, Ordering::Relaxed);
            }
        }
        for s in 0..4 {
            assert_eq!(b.worker(s).requests.load(Ordering::Relaxed), s as u64 * 10);
            assert_eq!(
                b.oldest_request(s),
                if s == 0 {
                    Some(1)
                } else {
                    Some(s as u64 * 100)
                }
            );
        }
        // SAFETY: the child only does atomic stores and _exit.
        match unsafe { libc::fork() } {
            0 => {
                b.worker(2).exceptions.store(7, Ordering::Relaxed);
                unsafe { libc::_exit(0) };
            }
            pid => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert_eq!(b.worker(2).exceptions.load(Ordering::Relaxed), 7);
            }
        }
    }
}
