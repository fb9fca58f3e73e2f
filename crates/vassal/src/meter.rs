//! A serving thread's view of its scoreboard slot: marks each request's start and end,
//! counts requests and exceptions, and asks the master for a replacement when a
//! recycling limit (`max-requests`, `reload-on-rss`) is reached.
//!
//! The hot path is a few relaxed atomic stores; `reload-on-rss` adds one pread of
//! /proc/self/statm per request, only when it is configured (uWSGI checks after each
//! request too).

use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::scoreboard::{now_ms, RecycleReason, ThreadSlot, WorkerSlot};

/// What makes a worker ask to be replaced.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Finished requests (0 = no limit).
    pub max_requests: u64,
    /// Resident memory in KiB (0 = no limit).
    pub rss_kb: u64,
}

pub struct Meter {
    worker: &'static WorkerSlot,
    thread: &'static ThreadSlot,
    limits: Limits,
    statm: Option<std::fs::File>,
    /// The write end of the master's event pipe.
    events: RawFd,
}

impl Meter {
    pub fn new(
        worker: &'static WorkerSlot,
        thread: &'static ThreadSlot,
        limits: Limits,
        events: RawFd,
    ) -> Meter {
        let statm = if limits.rss_kb > 0 {
            std::fs::File::open("/proc/self/statm").ok()
        } else {
            None
        };
        Meter {
            worker,
            thread,
            limits,
            statm,
            events,
        }
    }

    /// A request's head has been read from connection `fd`.
    pub fn begin(&self, fd: RawFd) {
        self.thread.fd.store(fd, Ordering::Relaxed);
        self.thread.headers_sent.store(0, Ordering::Relaxed);
        self.thread
            .started_ms
            .store(now_ms() + 1, Ordering::Release);
    }

    /// Where the response records that its head went out.
    pub fn head_flag(&self) -> &'static AtomicU32 {
        &self.thread.headers_sent
    }

    /// The request is done; `raised` when the app raised an exception.
    pub fn end(&self, raised: bool) {
        self.thread.started_ms.store(0, Ordering::Release);
        if raised {
            self.worker.exceptions.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.worker.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limits.max_requests > 0 && n >= self.limits.max_requests {
            self.want_recycle(RecycleReason::MaxRequests);
        } else if self.limits.rss_kb > 0 && self.rss_kb() > self.limits.rss_kb {
            self.want_recycle(RecycleReason::ReloadOnRss);
        }
    }

    fn rss_kb(&self) -> u64 {
        let Some(f) = &self.statm else { return 0 };
        let mut buf = [0u8; 128];
        let Ok(n) = f.read_at(&mut buf, 0) else {
            return 0;
        };
        rss_kb_from_statm(&buf[..n])
    }

    /// Marks the worker as wanting a replacement and wakes the master (once). The
    /// worker keeps serving until the master has started its replacement and sends
    /// it SIGTERM, so the vassal never runs out of accepting workers.
    fn want_recycle(&self, why: RecycleReason) {
        if self
            .worker
            .recycle
            .compare_exchange(0, why as u32, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: a one-byte write to a descriptor we own (nonblocking: if the
            // master's pipe is full it will scan the scoreboard anyway).
            unsafe { libc::write(self.events, b"c".as_ptr().cast(), 1) };
        }
    }
}

/// Resident set size in KiB from the text of /proc/PID/statm (second field, in pages).
pub fn rss_kb_from_statm(text: &[u8]) -> u64 {
    let pages = std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page / 1024
}

#[cfg(test)]
mod tests {
    #[test]
    fn statm_second_field_is_resident_pages() {
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        assert_eq!(
            super::rss_kb_from_statm(b"12345 100 50 10 0 200 0\n"),
            100 * page / 1024
        );
        assert_eq!(super::rss_kb_from_statm(b"garbage"), 0);
    }
}
