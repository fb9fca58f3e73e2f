//! Log output that can never stop the server.
//!
//! Every log record (tracing events, request lines, and with `logto` Python's
//! `sys.stdout`/`sys.stderr`) goes to fd 2 in one write(2) through [`write_record`].
//! A write that fails (a full disk, an I/O error, a closed pipe) drops the record and
//! counts it; it never panics and never returns an error to the caller. The first
//! failure is reported once on the stderr the vassal started with (under the emperor,
//! its pipe: so the emperor's log shows it), and every later record is a retry. With
//! `logto` the file is also reopened, at most every [`REOPEN_EVERY`], while writes
//! fail. When a write succeeds again, a line says how many records were dropped.
//!
//! The state is a handful of atomics: workers are forked processes, each with its
//! own copy, and threads within one only race on counters.

use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// How often a failing `logto` file is reopened.
pub const REOPEN_EVERY: Duration = Duration::from_secs(10);

static FAILING: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// A duplicate of the stderr the process started with (-1: none), for the report.
static ORIGINAL_STDERR: AtomicI32 = AtomicI32::new(-1);
/// Monotonic ms of the last reopen attempt.
static LAST_REOPEN_MS: AtomicU64 = AtomicU64::new(0);
static LOGTO: OnceLock<PathBuf> = OnceLock::new();

/// Sends fd 1 and 2 to the `logto` file. Keeps a duplicate of the original stderr
/// for reports. A file that cannot be opened is reported there and retried later;
/// logging goes on to the original stderr meanwhile (the app still serves).
pub fn redirect(path: &std::path::Path) {
    keep_original_stderr();
    let _ = LOGTO.set(path.to_path_buf());
    if let Err(e) = reopen(path) {
        FAILING.store(true, Ordering::Relaxed);
        report(&format!(
            "vassal[{}]: cannot open the log file {} ({e}); logging to stderr instead and \
             retrying every {} s",
            std::process::id(),
            path.display(),
            REOPEN_EVERY.as_secs()
        ));
    }
}

/// After a SIGHUP re-exec the `logto` descriptors are inherited: only remember the
/// path, for reopening.
pub fn inherited(path: &std::path::Path) {
    let _ = LOGTO.set(path.to_path_buf());
}

/// The `logto` path, if any.
pub fn logto() -> Option<&'static std::path::Path> {
    LOGTO.get().map(PathBuf::as_path)
}

fn keep_original_stderr() {
    if ORIGINAL_STDERR.load(Ordering::Relaxed) >= 0 {
        return;
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fd 2; the duplicate is ours for the process's life.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    ORIGINAL_STDERR.store(fd, Ordering::Relaxed);
}

fn reopen(path: &std::path::Path) -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    nix::unistd::dup2_stdout(&f)?;
    nix::unistd::dup2_stderr(&f)?;
    Ok(())
}

/// Writes one whole record to fd 2; never fails, never panics.
pub fn write_record(buf: &[u8]) {
    if FAILING.load(Ordering::Relaxed) {
        maybe_reopen();
        let n = DROPPED.load(Ordering::Relaxed);
        let notice = format!(
            "vassal[{}]: the log is writable again; {n} log record(s) were dropped while it \
             was not\n",
            std::process::id()
        );
        if write_all(2, notice.as_bytes()).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        FAILING.store(false, Ordering::Relaxed);
        DROPPED.fetch_sub(n, Ordering::Relaxed);
    }
    if let Err(e) = write_all(2, buf) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        if !FAILING.swap(true, Ordering::Relaxed) {
            let target = logto().map_or_else(|| "stderr".to_owned(), |p| p.display().to_string());
            report(&format!(
                "vassal[{}]: cannot write the log ({target}): {e}; dropping log records \
                 (the app keeps serving) until it can be written again",
                std::process::id()
            ));
        }
    }
}

/// Log records dropped so far and not yet reported as such.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn maybe_reopen() {
    let Some(path) = logto() else {
        return;
    };
    let now = crate::scoreboard::now_ms();
    let last = LAST_REOPEN_MS.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < REOPEN_EVERY.as_millis() as u64 {
        return;
    }
    if LAST_REOPEN_MS
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        let _ = reopen(path);
    }
}

/// One line on the original stderr (or fd 2 when there is no duplicate).
fn report(msg: &str) {
    let fd = ORIGINAL_STDERR.load(Ordering::Relaxed);
    let fd = if fd >= 0 { fd } else { 2 };
    let _ = write_all(fd, format!("{msg}\n").as_bytes());
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes; a bad fd is an error, not UB.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[r as usize..];
    }
    Ok(())
}

/// The tracing writer: each formatted event arrives in one `write` call (tracing's
/// fmt layer formats into a buffer first) and goes out through [`write_record`].
/// It always reports success, so tracing never falls back to printing (and
/// panicking) on its own.
pub struct Writer;

impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_record(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// For `tracing_subscriber::fmt().with_writer(...)`.
pub fn make_writer() -> Writer {
    Writer
}
