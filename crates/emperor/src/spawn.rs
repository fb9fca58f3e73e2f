//! Starting one vassal generation.
//!
//! The child gets the app's listening sockets as fds 3.. with LISTEN_FDS/LISTEN_PID
//! (systemd's convention; LISTEN_PID must be the child's own pid, so it is set after
//! the fork), the emperor's notify socket as NOTIFY_SOCKET, its own process group, and
//! PR_SET_PDEATHSIG=SIGKILL so it can never outlive a killed emperor (its workers die
//! with it the same way). Its stdout and stderr are logged line by line under the
//! app's name; the last lines travel with the exit event, so a failed reload can say
//! why (the import error's traceback).
//!
//! The exit and the pipes are waited for independently: a process the app started
//! may inherit stdout/stderr and keep them open long after the vassal is gone. Once
//! the vassal has exited, the pipes get a short bounded time to drain, then are
//! dropped, and the exit is reported.

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use supervisor::{Exit, ExitReason};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use crate::Input;

/// The most sockets one app may have (fds 3..3+MAX_FDS in the child).
pub const MAX_FDS: usize = 16;
/// Lines of a generation's output kept for its failure message.
const TAIL: usize = 20;
/// After the exit, how long the pipes may still deliver what the vassal wrote.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

pub struct SpawnSpec<'a> {
    pub vassal: &'a Path,
    pub ini: &'a Path,
    pub includes: &'a [PathBuf],
    pub cwd: &'a Path,
    pub fds: Vec<RawFd>,
    pub notify_socket: &'a Path,
    /// WATCHDOG_USEC for the vassal: it sends WATCHDOG=1 every half of it.
    pub watchdog_usec: Option<u64>,
    /// RLIMIT_NOFILE for the vassal (the emperor raised its own soft limit; its
    /// children get the one it was started with, as systemd does).
    pub nofile: Option<(u64, u64)>,
    /// What the vassal gets when the emperor dies (PR_SET_PDEATHSIG).
    pub death_signal: i32,
}

pub fn spawn(
    spec: SpawnSpec<'_>,
    app: &str,
    gen: u64,
    tx: UnboundedSender<Input>,
) -> std::io::Result<u32> {
    if spec.fds.len() > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "an app may have at most {MAX_FDS} sockets"
        )));
    }
    let mut cmd = tokio::process::Command::new(spec.vassal);
    cmd.arg("--ini").arg(spec.ini);
    for inc in spec.includes {
        cmd.arg("--ini").arg(inc);
    }
    cmd.current_dir(spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);

    let fds = spec.fds;
    let nfds = CString::new(fds.len().to_string()).expect("digits have no NUL");
    let watchdog = spec
        .watchdog_usec
        .map(|us| CString::new(us.to_string()).expect("digits have no NUL"));
    let notify = CString::new(spec.notify_socket.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("notify socket path has a NUL byte"))?;
    let nofile = spec.nofile;
    let death_signal = spec.death_signal;
    // SAFETY: only async-signal-safe calls (prctl, fcntl, dup2, getpid) plus setenv,
    // which glibc makes safe in a forked child (malloc's locks are reset by fork);
    // std builds the exec environment from `environ` because we set no env on `cmd`.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((soft, hard)) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                // Best effort: the raised limit is a fine fallback.
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            let first_free = 3 + fds.len() as i32;
            let mut moved = [0i32; MAX_FDS];
            for (i, fd) in fds.iter().enumerate() {
                let t = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, first_free);
                if t < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved[i] = t;
            }
            for (i, t) in moved.iter().take(fds.len()).enumerate() {
                // dup2 leaves the new descriptor without FD_CLOEXEC: it survives exec.
                if libc::dup2(*t, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let mut digits = [0u8; 24];
            let pid = format_pid(libc::getpid(), &mut digits);
            libc::setenv(c"LISTEN_PID".as_ptr(), pid.cast(), 1);
            libc::setenv(c"LISTEN_FDS".as_ptr(), nfds.as_ptr(), 1);
            libc::setenv(c"NOTIFY_SOCKET".as_ptr(), notify.as_ptr(), 1);
            if let Some(w) = &watchdog {
                libc::setenv(c"WATCHDOG_USEC".as_ptr(), w.as_ptr(), 1);
            }
            // The emperor timestamps every line it logs for the vassal.
            libc::setenv(c"VASSAL_LOG_TIMESTAMPS".as_ptr(), c"0".as_ptr(), 0);
            // The vassal's stderr is our pipe, not the journal stream systemd gave us.
            libc::unsetenv(c"JOURNAL_STREAM".as_ptr());
            libc::unsetenv(c"INVOCATION_ID".as_ptr());
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let app = app.to_owned();
    tokio::spawn(async move {
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
        let mut out = stdout.map(|s| BufReader::new(s).lines());
        let mut err = stderr.map(|s| BufReader::new(s).lines());
        let mut status = None;
        let mut drain_until = None;
        let mut classify = crate::journal::OutputClassifier::new(crate::journal::native());
        loop {
            if out.is_none() && err.is_none() {
                break;
            }
            tokio::select! {
                st = child.wait(), if status.is_none() => {
                    status = Some(st);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                _ = async { tokio::time::sleep_until(drain_until.expect("guarded")).await }, if drain_until.is_some() => {
                    // Someone else (a process the app started) holds the pipes open.
                    break;
                }
                line = async { out.as_mut().expect("guarded").next_line().await }, if out.is_some() => {
                    match line {
                        Ok(Some(l)) => log_line(&app, gen, &l, &mut tail, &mut classify),
                        _ => out = None,
                    }
                }
                line = async { err.as_mut().expect("guarded").next_line().await }, if err.is_some() => {
                    match line {
                        Ok(Some(l)) => log_line(&app, gen, &l, &mut tail, &mut classify),
                        _ => err = None,
                    }
                }
            }
        }
        drop((out, err));
        if let Some((severity, text)) = classify.flush() {
            emit(&app, gen, severity, &text);
        }
        let status = match status {
            Some(s) => s,
            None => child.wait().await,
        };
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        let exit = Exit {
            reason: reason(status),
            output: lines.join("\n"),
        };
        let _ = tx.send(Input::Exited { app, gen, exit });
    });
    Ok(pid)
}

fn log_line(
    app: &str,
    gen: u64,
    line: &str,
    tail: &mut VecDeque<String>,
    classify: &mut crate::journal::OutputClassifier,
) {
    for (severity, text) in classify.feed(line) {
        emit(app, gen, severity, &text);
    }
    if tail.len() == TAIL {
        tail.pop_front();
    }
    tail.push_back(line.to_owned());
}

/// One record of a vassal's output, at the severity its text names.
fn emit(app: &str, gen: u64, severity: crate::journal::Severity, text: &str) {
    use crate::journal::Severity;
    match severity {
        Severity::Error => {
            tracing::error!(target: "vassal", app = %app, generation = gen, "[{app}#{gen}] {text}")
        }
        Severity::Warn => {
            tracing::warn!(target: "vassal", app = %app, generation = gen, "[{app}#{gen}] {text}")
        }
        // An app's own debug lines are not hidden behind the emperor's log filter.
        Severity::Info | Severity::Debug => {
            // In the journal a request line's parts are fields too (EMPEROR_WORKER is the
            // worker's pid): `journalctl EMPEROR_APP=shop EMPEROR_STATUS=500`.
            match crate::journal::parse_request_line(text).filter(|_| crate::journal::native()) {
                Some(r) => tracing::info!(
                    target: "vassal",
                    app = %app,
                    generation = gen,
                    worker = r.worker_pid,
                    remote_addr = r.remote_addr,
                    method = r.method,
                    uri = r.uri,
                    status = r.status,
                    bytes = r.bytes,
                    duration_ms = r.ms,
                    "[{app}#{gen}] {text}"
                ),
                None => tracing::info!(
                    target: "vassal",
                    app = %app,
                    generation = gen,
                    "[{app}#{gen}] {text}"
                ),
            }
        }
    }
}

/// The kernel's wait status as a typed reason.
pub fn reason(status: std::io::Result<ExitStatus>) -> ExitReason {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitReason::Code(c),
            (_, Some(sig)) => ExitReason::Signal {
                number: sig,
                name: nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|_| format!("signal {sig}")),
                core_dumped: s.core_dumped(),
            },
            _ => ExitReason::Unknown(format!("{s}")),
        },
        Err(e) => ExitReason::Unknown(e.to_string()),
    }
}

/// Writes `pid` as decimal plus a NUL into `buf` without allocating.
fn format_pid(pid: libc::pid_t, buf: &mut [u8; 24]) -> *const u8 {
    let mut n = pid.max(0) as u64;
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = digits[len - 1 - i];
    }
    buf[len] = 0;
    buf.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_become_typed_reasons() {
        use std::os::unix::process::ExitStatusExt;
        let r = |raw| reason(Ok(ExitStatus::from_raw(raw))).to_string();
        assert_eq!(r(1 << 8), "exited with code 1");
        assert_eq!(r(9), "killed by signal SIGKILL");
        // 0x80 is WCOREFLAG.
        assert_eq!(r(11 | 0x80), "killed by signal SIGSEGV (core dumped)");
    }

    #[test]
    fn pid_formatting() {
        for pid in [0, 1, 9, 10, 4242, i32::MAX] {
            let mut b = [0u8; 24];
            let p = format_pid(pid, &mut b);
            // SAFETY: format_pid NUL-terminates inside `b`.
            let s = unsafe { std::ffi::CStr::from_ptr(p.cast()) };
            assert_eq!(s.to_str().unwrap(), pid.to_string());
        }
    }
}
