//! The `Emperor` guard: one real `emperor` process on its own directory tree, with
//! `emperorctl` wrappers, its log, and every sd_notify datagram it sends.
//!
//! An [`EmperorTree`] is the filesystem side, laid out like `/etc/emperor` and `/run` but in
//! a temp dir: `apps-available/`, `apps-enabled/` (symlinks into apps-available, as the user
//! makes them), `run/` (app sockets and the emperor's own control socket) and
//! `emperor.ini`. An [`Emperor`] runs on a tree with `NOTIFY_SOCKET` pointing at a datagram
//! socket the guard binds, so its readiness is a message (`READY=1`). A thread drains that
//! socket continuously: a notify socket's queue is short (10 datagrams by default), and an
//! emperor whose `STATUS=`/`WATCHDOG=1` datagrams were left unread would block on its send.
//!
//! Apps are waited for with `emperorctl start APP`, which answers once a starting app is
//! ready (or has failed), so tests do not poll for app readiness either.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::vassal::show_status;
use crate::{bin, proc, repo_root, wait, TempDir, EXIT_TIMEOUT, READY_TIMEOUT};

/// How long one `emperorctl` call may take. `reload` and `start` block until an app is
/// ready, which is bounded by the app's import time, not by this.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables of the test runner that must not reach the emperor.
const SCRUBBED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "EMPEROR_CONTROL_SOCKET",
    "EMPEROR_LOG",
    "VIRTUAL_ENV",
    "PYTHONHOME",
    "PYTHONPATH",
    "UWSGI_EMPEROR_FD",
];

/// An emperor's directory tree in a temp dir.
pub struct EmperorTree {
    dir: TempDir,
}

impl EmperorTree {
    /// Creates `apps-available/`, `apps-enabled/` and `run/` under a fresh temp dir.
    /// Keep `tag` short: app socket paths must stay under 108 bytes.
    pub fn new(tag: &str) -> EmperorTree {
        let dir = TempDir::new(tag);
        for d in ["apps-available", "apps-enabled", "run"] {
            std::fs::create_dir_all(dir.join(d)).expect("create emperor tree dirs");
        }
        EmperorTree { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn available(&self) -> PathBuf {
        self.dir.join("apps-available")
    }

    pub fn enabled(&self) -> PathBuf {
        self.dir.join("apps-enabled")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The control socket the guard gives the emperor (the default place under run-dir).
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join("emperor/control.sock")
    }

    /// The emperor's own notify socket, which vassals report to.
    pub fn vassal_notify_socket(&self) -> PathBuf {
        self.run_dir().join("emperor/notify.sock")
    }

    /// `<run>/<app>/`, the directory the emperor creates for an app's socket.
    pub fn app_dir(&self, app: &str) -> PathBuf {
        self.run_dir().join(app)
    }

    /// `<run>/<app>/socket`, where the app serves the uwsgi protocol by default.
    pub fn app_socket(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("socket")
    }

    /// `apps-available/<app>.ini`.
    pub fn ini(&self, app: &str) -> PathBuf {
        self.available().join(format!("{app}.ini"))
    }

    /// `apps-enabled/<app>.ini` (the symlink).
    pub fn link(&self, app: &str) -> PathBuf {
        self.enabled().join(format!("{app}.ini"))
    }

    /// Writes a file relative to the tree's root (parents created).
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        self.dir.write(rel, contents)
    }

    /// Copies the bundled example app (`etc/emperor/apps-available/example-app.ini` and
    /// its code directory) into apps-available, unchanged.
    pub fn copy_example_app(&self) {
        let src = repo_root().join("etc/emperor/apps-available");
        let ini = std::fs::read(src.join("example-app.ini")).expect("read example-app.ini");
        self.write("apps-available/example-app.ini", ini);
        let code = std::fs::read(src.join("example-app/wsgi.py")).expect("read example wsgi.py");
        self.write("apps-available/example-app/wsgi.py", code);
    }

    /// `ln -s ../apps-available/<app>.ini apps-enabled/<app>.ini`, as the user does it.
    pub fn enable(&self, app: &str) {
        let target = PathBuf::from(format!("../apps-available/{app}.ini"));
        std::os::unix::fs::symlink(&target, self.link(app))
            .unwrap_or_else(|e| panic!("ln -s {} for {app}: {e}", target.display()));
    }

    /// `rm apps-enabled/<app>.ini`.
    pub fn disable(&self, app: &str) {
        std::fs::remove_file(self.link(app))
            .unwrap_or_else(|e| panic!("rm {}: {e}", self.link(app).display()));
    }

    /// Writes `apps-available/<app>.ini` and enables it.
    pub fn add_app(&self, app: &str, ini: &str) {
        self.write(format!("apps-available/{app}.ini"), ini);
        self.enable(app);
    }
}

/// Replaces `path` the way editors save: write a temp file next to it, then rename it over
/// the original (the inode changes; readers never see a half-written file).
pub fn atomic_write(path: &Path, contents: impl AsRef<[u8]>) {
    let name = path
        .file_name()
        .expect("atomic_write needs a file path")
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    {
        use std::io::Write;
        let mut f = File::create(&tmp).unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
        f.write_all(contents.as_ref()).expect("write temp file");
        f.sync_all().expect("fsync temp file");
    }
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} over {}: {e}", tmp.display(), path.display()));
}

/// `touch path`: sets both timestamps to now with utimensat(2), exactly like coreutils
/// (no open for writing, so the only inotify event is IN_ATTRIB).
pub fn touch(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: a valid NUL-terminated path; a null times pointer means "now" for both.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) };
    assert!(
        rc == 0,
        "touch {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// What one `emperorctl` run printed and how it exited.
#[derive(Debug, Clone)]
pub struct CtlOutput {
    /// The exit code; None if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together, for "the output mentions X" checks.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// stdout as JSON (for `--json`); panics with the output otherwise.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("emperorctl output is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n-- stdout --\n{}-- stderr --\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `emperorctl --socket <socket> <args>` and returns its output; kills it and fails
/// if it has not finished within [`CTL_TIMEOUT`].
pub fn ctl_at(socket: &Path, args: &[&str]) -> CtlOutput {
    let mut cmd = Command::new(bin("emperorctl"));
    cmd.arg("--socket").arg(socket).args(args);
    cmd.env_remove("EMPEROR_CONTROL_SOCKET");
    let out = output_with_deadline(cmd, CTL_TIMEOUT);
    CtlOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cmd.output()`, but the child is killed (and the test fails) after `timeout`.
pub fn output_with_deadline(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}")),
        Err(_) => {
            // Still our unreaped child: the waiter thread has not collected it.
            proc::signal(pid, libc::SIGKILL);
            let out = rx.recv_timeout(Duration::from_secs(10));
            panic!("{cmd:?} did not finish within {timeout:?}; output: {out:?}");
        }
    }
}

static SPAWNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// State shared with the notify-reader and exit-waiter threads.
#[derive(Default)]
struct Shared {
    messages: Vec<String>,
    exit: Option<ExitStatus>,
    /// What the emperor put into the (emulated) systemd fd store, by FDNAME.
    stored: Vec<(String, std::os::fd::OwnedFd)>,
}

#[derive(Default)]
struct Events {
    state: Mutex<Shared>,
    changed: Condvar,
}

impl Events {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How to start an emperor: `[emperor]` options, extra environment.
#[derive(Default)]
pub struct EmperorBuilder {
    options: Vec<(String, String)>,
    env: Vec<(String, String)>,
    fd_limit: Option<u64>,
    fd_store: bool,
    listen_fds: Vec<(String, std::os::fd::OwnedFd)>,
}

impl EmperorBuilder {
    pub fn new() -> EmperorBuilder {
        EmperorBuilder::default()
    }

    /// A key of the `[emperor]` section of the config file (e.g. `backoff-min`, `0.2`).
    pub fn option(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the emperor with RLIMIT_NOFILE = `n` (soft and hard), like `prlimit
    /// --nofile=n:n`: it cannot raise it, and its vassals inherit it.
    pub fn fd_limit(mut self, n: u64) -> Self {
        self.fd_limit = Some(n);
        self
    }

    /// Plays systemd's file descriptor store: descriptors the emperor sends with
    /// `FDSTORE=1` are kept (by FDNAME) until `FDSTOREREMOVE=1`; see
    /// [`Emperor::take_stored`]. Without this they are dropped on receipt.
    pub fn fd_store(mut self) -> Self {
        self.fd_store = true;
        self
    }

    /// Hands `fds` to the emperor as systemd hands back its fd store: from fd 3, with
    /// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID = the emperor's pid.
    pub fn listen_fds(mut self, fds: Vec<(String, std::os::fd::OwnedFd)>) -> Self {
        self.listen_fds = fds;
        self
    }

    /// Starts the emperor on `tree` without waiting for READY=1.
    pub fn spawn(self, tree: &EmperorTree) -> Emperor {
        let exe = bin("emperor");
        let mut config = String::from("[emperor]\n");
        for (k, v) in &self.options {
            config.push_str(&format!("{k} = {v}\n"));
        }
        let config_path = tree.write("emperor.ini", config);
        // Several emperors may run on one tree in turn (or at once): each gets its own log
        // and notify socket.
        let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let log_path = tree.path().join(format!("emperor-{n}.log"));
        let log = File::create(&log_path).expect("create emperor log");

        let notify_path = tree.path().join(format!("sd-notify-{n}.sock"));
        let _ = std::fs::remove_file(&notify_path);
        let sock = UnixDatagram::bind(&notify_path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", notify_path.display()));
        let events = Arc::new(Events::default());
        let stop = Arc::new(AtomicBool::new(false));
        spawn_notify_reader(sock, events.clone(), stop.clone(), self.fd_store);

        let mut staged_fds: Vec<std::os::fd::OwnedFd> = Vec::new();
        let mut cmd = if self.listen_fds.is_empty() {
            Command::new(&exe)
        } else {
            // LISTEN_PID must be the emperor's own pid, known only after the fork: the
            // shell learns it as $$ and exec keeps it.
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(r#"LISTEN_PID=$$ exec "$0" "$@""#).arg(&exe);
            c
        };
        if !self.listen_fds.is_empty() {
            // Duplicates above 3+n, made here: between fork and exec only dup2 runs (no
            // allocation: this process has other threads), and none can be a target.
            let above = 3 + self.listen_fds.len() as i32;
            let staged: Vec<std::os::fd::OwnedFd> = self
                .listen_fds
                .iter()
                .map(|(_, fd)| {
                    use std::os::fd::{AsRawFd, FromRawFd};
                    // SAFETY: fcntl on a descriptor we own; the result is a new one.
                    unsafe {
                        let t = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above);
                        assert!(t >= 0, "dup: {}", std::io::Error::last_os_error());
                        std::os::fd::OwnedFd::from_raw_fd(t)
                    }
                })
                .collect();
            let raw: Vec<i32> = staged.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
            staged_fds = staged;
            // SAFETY: only dup2 (async-signal-safe) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    for (i, t) in raw.iter().enumerate() {
                        if libc::dup2(*t, 3 + i as i32) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--apps-enabled")
            .arg(tree.enabled())
            .arg("--run-dir")
            .arg(tree.run_dir())
            .arg("--vassal")
            .arg(bin("vassal"))
            .arg("--control-socket")
            .arg(tree.control_socket());
        for k in SCRUBBED_ENV {
            cmd.env_remove(k);
        }
        cmd.env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_BACKTRACE", "1")
            .env("EMPEROR_LOG", "info");
        if !self.listen_fds.is_empty() {
            let names: Vec<&str> = self.listen_fds.iter().map(|(n, _)| n.as_str()).collect();
            cmd.env("LISTEN_FDS", self.listen_fds.len().to_string())
                .env("LISTEN_FDNAMES", names.join(":"));
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(n) = self.fd_limit {
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe and reads only the copied struct.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.current_dir(tree.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log)
            // Its own group: a Ctrl-C on the test runner's terminal reaches only the runner.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", exe.display()));
        drop((self.listen_fds, staged_fds));
        let pid = child.id();
        let ev = events.clone();
        // The waiter turns the exit into a message on the same condvar as notifications,
        // so every wait below is one deadline-bounded condvar wait.
        std::thread::spawn(move || {
            if let Ok(st) = child.wait() {
                ev.lock().exit = Some(st);
                ev.changed.notify_all();
            }
        });
        Emperor {
            pid,
            events,
            stop,
            log_path,
            notify_path,
            control_socket: tree.control_socket(),
            seen_pids: Mutex::new(BTreeSet::new()),
            described: AtomicBool::new(false),
        }
    }

    /// Starts the emperor and waits for its READY=1 (control socket bound, first scan
    /// applied; apps may still be starting: wait for them with [`Emperor::wait_app`]).
    pub fn start(self, tree: &EmperorTree) -> Emperor {
        let e = self.spawn(tree);
        e.wait_ready();
        e
    }
}

fn spawn_notify_reader(
    sock: UnixDatagram,
    events: Arc<Events>,
    stop: Arc<AtomicBool>,
    keep_fds: bool,
) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set notify read timeout");
    std::thread::spawn(move || {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 16]);
        while !stop.load(Ordering::Relaxed) {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let got = recvmsg::<UnixAddr>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            match got {
                Ok(m) => {
                    let mut fds: Vec<OwnedFd> = Vec::new();
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                // SAFETY: the kernel just gave us these descriptors.
                                fds.extend(
                                    raw.into_iter()
                                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                                );
                            }
                        }
                    }
                    let n = m.bytes;
                    let msg = String::from_utf8_lossy(&iov[0][..n]).into_owned();
                    let field = |k: &str| {
                        msg.lines()
                            .find_map(|l| l.strip_prefix(k).map(str::to_owned))
                    };
                    let mut st = events.lock();
                    if keep_fds {
                        if msg.lines().any(|l| l == "FDSTORE=1") {
                            let name = field("FDNAME=").unwrap_or_else(|| "stored".into());
                            for fd in fds {
                                st.stored.push((name.clone(), fd));
                            }
                        } else if msg.lines().any(|l| l == "FDSTOREREMOVE=1") {
                            if let Some(name) = field("FDNAME=") {
                                st.stored.retain(|(n, _)| *n != name);
                            }
                        }
                    }
                    st.messages.push(msg);
                    drop(st);
                    events.changed.notify_all();
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("notify reader: {e}");
                    return;
                }
            }
        }
    });
}

/// A running emperor. Dropping it SIGKILLs the emperor and every process below it.
pub struct Emperor {
    pid: u32,
    events: Arc<Events>,
    stop: Arc<AtomicBool>,
    log_path: PathBuf,
    notify_path: PathBuf,
    control_socket: PathBuf,
    /// Every descendant ever listed by [`Emperor::descendants`]: Drop kills survivors.
    seen_pids: Mutex<BTreeSet<u32>>,
    described: AtomicBool,
}

impl Emperor {
    /// The FDNAMEs the emperor has in the emulated fd store now (see
    /// [`EmperorBuilder::fd_store`]).
    pub fn stored_names(&self) -> Vec<String> {
        self.events
            .lock()
            .stored
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Takes the emulated fd store's descriptors (to hand to the next emperor).
    pub fn take_stored(&self) -> Vec<(String, std::os::fd::OwnedFd)> {
        std::mem::take(&mut self.events.lock().stored)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The NOTIFY_SOCKET the test bound for this emperor (systemd's role).
    pub fn notify_path(&self) -> &Path {
        &self.notify_path
    }

    pub fn control_socket(&self) -> &Path {
        &self.control_socket
    }

    /// Everything the emperor logged so far (its own lines and its vassals' output).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Log lines of the emperor about `app` (tracing's `app=<name>` field) containing
    /// `needle`.
    pub fn app_log_lines(&self, app: &str, needle: &str) -> Vec<String> {
        let field = format!("app={app}");
        self.log()
            .lines()
            .filter(|l| l.contains(needle) && l.split_whitespace().any(|w| w == field))
            .map(str::to_owned)
            .collect()
    }

    /// How many generations of `app` were started so far ("generation N started").
    pub fn generations_started(&self, app: &str) -> usize {
        self.app_log_lines(app, "started (pid").len()
    }

    /// Waits until the log contains `needle` (log lines announce nothing).
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        if !wait::try_wait_until(timeout, || self.log().contains(needle)) {
            self.fail(&format!(
                "the emperor log never contained {needle:?} within {timeout:?}"
            ));
        }
    }

    /// Every sd_notify datagram received so far, in order.
    pub fn notifications(&self) -> Vec<String> {
        self.events.lock().messages.clone()
    }

    /// Waits for the first datagram at index >= `from` that `pred` accepts; returns its
    /// index and text. None if the deadline passes or the emperor exits first.
    pub fn wait_notification(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let mut st = self.events.lock();
        loop {
            if let Some((i, m)) = st
                .messages
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, m)| pred(m))
            {
                return Some((i, m.clone()));
            }
            let now = Instant::now();
            if st.exit.is_some() || now >= deadline {
                return None;
            }
            st = self
                .events
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Like [`Emperor::wait_notification`] for a datagram with the line `line`; fails with
    /// the log when it does not come.
    pub fn expect_notification(&self, from: usize, line: &str, timeout: Duration) -> usize {
        match self.wait_notification(from, timeout, |m| m.lines().any(|l| l == line)) {
            Some((i, _)) => i,
            None => self.fail(&format!(
                "no sd_notify datagram with {line:?} (from #{from}) within {timeout:?}"
            )),
        }
    }

    /// Waits for READY=1; fails with the log if the emperor exits first or it never comes.
    pub fn wait_ready(&self) {
        self.expect_notification(0, "READY=1", READY_TIMEOUT);
    }

    /// The exit status if the emperor has exited (non-blocking).
    pub fn try_exit(&self) -> Option<ExitStatus> {
        self.events.lock().exit
    }

    /// Waits for the emperor to exit; fails with the log after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let mut st = self.events.lock();
        loop {
            if let Some(s) = st.exit {
                return s;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                self.fail(&format!("the emperor did not exit within {timeout:?}"));
            }
            st = self
                .events
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Sends `sig` to the emperor (unless it has already been reaped).
    pub fn signal(&self, sig: i32) {
        let st = self.events.lock();
        if st.exit.is_none() {
            proc::signal(self.pid, sig);
        }
    }

    /// The emperor's descendants alive now (vassal masters and their workers), not the
    /// emperor itself. Remembered, so Drop can kill them should the emperor not.
    pub fn descendants(&self) -> BTreeSet<u32> {
        let mut t = proc::tree(self.pid);
        t.remove(&self.pid);
        self.seen_pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(t.iter().copied());
        t
    }

    /// `emperorctl --socket <this emperor's socket> <args>`.
    pub fn ctl(&self, args: &[&str]) -> CtlOutput {
        ctl_at(&self.control_socket, args)
    }

    /// `emperorctl <args>` that must exit 0; fails with its output and the log otherwise.
    pub fn ctl_ok(&self, args: &[&str]) -> CtlOutput {
        let out = self.ctl(args);
        if !out.ok() {
            self.fail(&format!("emperorctl {args:?} failed: {out}"));
        }
        out
    }

    /// Waits until `app` serves: `emperorctl start APP` answers once a starting app is
    /// ready ("already running" if it was).
    pub fn wait_app(&self, app: &str) {
        self.ctl_ok(&["start", app]);
    }

    /// Waits for an app whose ini was just added: until a rescan has picked it up it is an
    /// unknown app (nothing announces the rescan), then as [`Emperor::wait_app`].
    pub fn wait_new_app(&self, app: &str) {
        let mut last = None;
        if !wait::try_wait_until(Duration::from_secs(30), || {
            let out = self.ctl(&["status", app]);
            let known = out.code != Some(4);
            last = Some(out);
            known
        }) {
            self.fail(&format!(
                "{app} was never picked up by a rescan; last status: {}",
                last.map(|o| o.to_string()).unwrap_or_default()
            ));
        }
        self.wait_app(app);
    }

    /// `emperorctl --json status` as the list of app objects.
    pub fn status_all(&self) -> Vec<serde_json::Value> {
        let out = self.ctl_ok(&["--json", "status"]);
        out.json()["apps"]
            .as_array()
            .unwrap_or_else(|| self.fail(&format!("status without apps: {out}")))
            .clone()
    }

    /// `emperorctl --json status APP` as the app's object.
    pub fn status(&self, app: &str) -> serde_json::Value {
        let out = self.ctl_ok(&["--json", "status", app]);
        let v = out.json();
        match v["apps"].as_array().and_then(|a| a.first()) {
            Some(a) => a.clone(),
            None => self.fail(&format!("status {app} without the app: {out}")),
        }
    }

    /// The pid of the serving generation's master, from status.
    pub fn app_pid(&self, app: &str) -> u32 {
        let s = self.status(app);
        match s["pid"].as_u64() {
            Some(p) => p as u32,
            None => self.fail(&format!("{app} has no pid in its status: {s}")),
        }
    }

    /// Panics with `what`, the log and the notifications.
    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.describe())
    }

    fn describe(&self) -> String {
        self.described.store(true, Ordering::Relaxed);
        let exit = self
            .try_exit()
            .map(show_status)
            .unwrap_or_else(|| "running".into());
        format!(
            "emperor pid {} ({exit})\n  notifications: {:?}\n---- emperor log ----\n{}\n---- end of log ----",
            self.pid,
            self.notifications(),
            self.log()
        )
    }
}

impl Drop for Emperor {
    fn drop(&mut self) {
        let alive = self.try_exit().is_none();
        if alive {
            // Unreaped, so the pid is still ours: list and kill the whole tree.
            let tree = proc::tree(self.pid);
            proc::signal(self.pid, libc::SIGKILL);
            for p in tree {
                proc::signal(p, libc::SIGKILL);
            }
        }
        // Vassals seen earlier should die with the emperor (PDEATHSIG); kill any that did
        // not, so one failed test cannot leave processes behind for the next.
        let seen = std::mem::take(&mut *self.seen_pids.lock().unwrap_or_else(|p| p.into_inner()));
        for p in seen {
            proc::signal(p, libc::SIGKILL);
        }
        if alive {
            let mut st = self.events.lock();
            let deadline = Instant::now() + Duration::from_secs(10);
            while st.exit.is_none() && Instant::now() < deadline {
                st = self
                    .events
                    .changed
                    .wait_timeout(st, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        if std::thread::panicking() && !self.described.load(Ordering::Relaxed) {
            eprintln!("{}", self.describe());
        }
    }
}

/// Whether `pid` still runs: it exists and is not a zombie. A zombie has died and only
/// waits to be reaped; when its parent died too it is reaped by whatever init the machine
/// has, which can take a while in containers and VMs.
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    !matches!(state, "Z" | "X" | "x")
}

/// Waits until none of `pids` runs any more (see [`is_running`]).
pub fn wait_gone(pids: &BTreeSet<u32>, timeout: Duration) -> Result<(), BTreeSet<u32>> {
    let alive = || -> BTreeSet<u32> { pids.iter().copied().filter(|p| is_running(*p)).collect() };
    if wait::try_wait_until(timeout, || alive().is_empty()) {
        Ok(())
    } else {
        Err(alive())
    }
}

/// `ps`-like lines for `pids` (for failure messages).
pub fn describe_pids(pids: &BTreeSet<u32>) -> String {
    pids.iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_else(|_| "(gone)".into());
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            format!("  {p}: {cmd} [{}]", stat.trim())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Seconds since midnight (UTC) of a tracing log line's timestamp
/// (`2026-11-22T02:19:57.024046Z  INFO ...`).
pub fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Exit status of a process that must have been stopped gracefully: exit code 0.
pub fn assert_exit_0(e: &Emperor, st: ExitStatus) {
    if st.code() != Some(0) {
        e.fail(&format!(
            "the emperor must exit 0, it ended with {} (signal {:?})",
            show_status(st),
            st.signal()
        ));
    }
}

/// The default deadline for a process to go away after a signal.
pub const GONE_TIMEOUT: Duration = EXIT_TIMEOUT;
