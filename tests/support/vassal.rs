//! The `Vassal` guard: one `vassal` process with its own notify socket and log file.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::notify::NotifySocket;
use crate::{proc, wait, TempDir, EXIT_TIMEOUT, READY_TIMEOUT};

/// Environment variables that must not leak from the test runner into a vassal.
const SCRUBBED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "VIRTUAL_ENV",
    "PYTHONHOME",
    "PYTHONPATH",
    "UWSGI_EMPEROR_FD",
];

/// How to start a vassal: arguments, working directory, environment, an inherited listener.
#[derive(Default)]
pub struct VassalBuilder {
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    listen_fd: Option<OwnedFd>,
    nofile: Option<u64>,
}

impl VassalBuilder {
    pub fn new() -> VassalBuilder {
        VassalBuilder::default()
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.env
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    /// Hands `fd` to the vassal as fd 3 with LISTEN_FDS=1 and LISTEN_PID=<its pid>
    /// (the systemd socket-activation convention the emperor uses).
    pub fn listen_fd(mut self, fd: OwnedFd) -> Self {
        self.listen_fd = Some(fd);
        self
    }

    /// Starts the vassal with this open-files limit (soft and hard).
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// Starts the vassal (does not wait for readiness).
    pub fn spawn(self) -> Vassal {
        let exe = crate::bin("vassal");
        let dir = TempDir::new("v");
        let notify = NotifySocket::bind(&dir.join("notify.sock"));
        let log_path = dir.join("vassal.log");
        let log = File::create(&log_path).expect("create vassal log file");

        let mut cmd = if self.listen_fd.is_some() {
            // LISTEN_PID must equal the vassal's own pid, known only after the fork. The
            // shell learns it as $$ and exec keeps the pid, so no unsafe setenv after fork.
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
                .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(&self.args);
        for k in SCRUBBED_ENV {
            cmd.env_remove(k);
        }
        cmd.env("NOTIFY_SOCKET", notify.path());
        cmd.env("RUST_BACKTRACE", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log)
            // Own process group: Drop can kill the master and every worker at once.
            .process_group(0);
        if let Some(fd) = &self.listen_fd {
            let raw = fd.as_raw_fd();
            // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if raw == 3 {
                        if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(raw, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(n) = self.nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; `lim` is copied into the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", exe.display()));
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        // The waiter thread turns the child's exit into a message, so waiting for an exit
        // is a blocking receive with a deadline rather than a polling loop.
        std::thread::spawn(move || {
            if let Ok(st) = child.wait() {
                let _ = tx.send(st);
            }
        });
        drop(self.listen_fd);
        Vassal {
            pid,
            exit_rx: rx,
            status: None,
            notify,
            log_path,
            args: self.args,
            described: std::cell::Cell::new(false),
            _dir: dir,
        }
    }

    /// Starts the vassal and waits for READY=1.
    pub fn spawn_ready(self) -> Vassal {
        let mut v = self.spawn();
        v.wait_ready(READY_TIMEOUT);
        v
    }
}

/// A running vassal. Dropping it kills its whole process group and reaps it.
pub struct Vassal {
    pid: u32,
    exit_rx: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    notify: NotifySocket,
    log_path: PathBuf,
    args: Vec<OsString>,
    /// The log was already part of a panic message (Drop need not print it again).
    described: std::cell::Cell<bool>,
    _dir: TempDir,
}

impl Vassal {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the vassal wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    fn describe(&self) -> String {
        self.described.set(true);
        let args: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
        format!(
            "vassal {}\n  notifications: {:?}\n---- vassal log ----\n{}\n---- end of log ----",
            args.join(" "),
            self.notify.messages(),
            self.log()
        )
    }

    /// Sends `sig` to the master.
    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            proc::signal(self.pid, sig);
        }
    }

    /// The exit status if the master has exited (non-blocking).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exit_rx.try_recv().ok();
        }
        self.status
    }

    /// Waits for READY=1 on the notify socket. Fails with the log if the vassal exits
    /// first or the deadline passes.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.notify.seen("READY=1") {
                return;
            }
            if let Some(st) = self.try_exit() {
                panic!(
                    "the vassal exited ({}) before reporting READY=1\n{}",
                    show_status(st),
                    self.describe()
                );
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "no READY=1 from the vassal within {timeout:?}\n{}",
                    self.describe()
                );
            }
            // Short receive slices so a child that dies is noticed promptly.
            self.notify
                .recv((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Waits (at most `timeout`) for a notification line such as `STOPPING=1`.
    pub fn wait_notification(&mut self, line: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.notify.seen(line) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if self.try_exit().is_some() {
                self.notify.drain();
                return self.notify.seen(line);
            }
            self.notify
                .recv((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// All notification messages received so far (drains the queue first).
    pub fn notifications(&mut self) -> Vec<String> {
        self.notify.drain();
        self.notify.messages().to_vec()
    }

    /// Waits for the master to exit; fails with the log after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        match self.exit_rx.recv_timeout(timeout) {
            Ok(st) => {
                self.status = Some(st);
                st
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "the vassal did not exit within {timeout:?}\n{}",
                    self.describe()
                )
            }
            Err(RecvTimeoutError::Disconnected) => panic!("lost the vassal's waiter thread"),
        }
    }

    /// SIGTERM, then wait for exit; returns the status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Waits until the log contains `needle` (log lines have no readiness message).
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        if !wait::try_wait_until(timeout, || self.log().contains(needle)) {
            panic!(
                "the vassal log never contained {needle:?} within {timeout:?}\n{}",
                self.describe()
            );
        }
    }

    /// Panics with the log: for assertion failures that need the vassal's side of the story.
    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.describe())
    }

    /// Summed (VmRSS, VmHWM) in KiB of the master and all its descendants.
    pub fn tree_mem_kib(&self) -> (u64, u64) {
        proc::tree_mem_kib(self.pid)
    }
}

impl Drop for Vassal {
    fn drop(&mut self) {
        // Kill the whole group (the master and any worker) even if the master already
        // exited; a group id cannot be reused while a member lives, so this is safe.
        proc::signal_group(self.pid, libc::SIGKILL);
        if self.status.is_none() {
            self.status = self.exit_rx.recv_timeout(Duration::from_secs(10)).ok();
        }
        if std::thread::panicking() && !self.described.get() {
            eprintln!("{}", self.describe());
        }
    }
}

/// "exit code 1" / "killed by signal 9".
pub fn show_status(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{st:?}"),
    }
}
