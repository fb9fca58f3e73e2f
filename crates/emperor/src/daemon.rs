//! The owner loop and the carrying-out of the supervisor's actions.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use config::{Protocol, SocketSpec, VassalConfig};
use notify::Watcher as _;
use proto::{AppStatus, Request, Response};
use sockets::notify::Notifier;
use supervisor::{
    Action, Command, Event, Gen, Millis, Outcome, ReplyId, Signal, Supervisor, TimerKind,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use crate::fdstore::{self, FdStore};
use crate::inihost::{self, IniHost};
use crate::keeper;
use crate::scan::{self, FileState};
use crate::spawn::{self, SpawnSpec};
use crate::{control, vnotify, Input, Settings};

/// One log record per line, each with the app's name: a multi-line message (a config
/// error list, a failure with a traceback) never leaves continuation lines without a
/// timestamp or app. Natively in journald it is one entry (with the app's field).
macro_rules! app_lines {
    ($level:ident, $app:expr, $($fmt:tt)+) => {
        let text = format!($($fmt)+);
        if crate::journal::native() {
            // journald keeps a multi-line message as one entry.
            tracing::$level!(app = %$app, "{text}");
        } else {
            for line in text.lines() {
                tracing::$level!(app = %$app, "{line}");
            }
        }
    };
}

/// The same for messages about no single app.
macro_rules! lines {
    ($level:ident, $($fmt:tt)+) => {
        let text = format!($($fmt)+);
        if crate::journal::native() {
            tracing::$level!("{text}");
        } else {
            for line in text.lines() {
                tracing::$level!("{line}");
            }
        }
    };
}

/// The emperor's exit status when it hands over to a new one (SIGUSR2 under systemd):
/// EX_TEMPFAIL, a failure, so `Restart=on-failure` starts the next emperor.
pub const EXIT_HANDOVER: i32 = 75;

/// The first retry of a scan that ran out of file descriptors; it doubles up to the
/// periodic rescan.
const FD_RETRY_MIN: Duration = Duration::from_millis(250);

/// The shell's side of one app: its ini, last valid config and the sockets it owns.
struct AppRt {
    ini: PathBuf,
    config: Option<VassalConfig>,
    listeners: Vec<sockets::Listener>,
    bound: Vec<SocketSpec>,
}

struct Daemon {
    s: Settings,
    sup: Supervisor,
    t0: Instant,
    tx: UnboundedSender<Input>,
    apps: BTreeMap<String, AppRt>,
    files: BTreeMap<String, FileState>,
    problems: BTreeMap<String, String>,
    timers: BTreeMap<(Instant, u64), (String, Gen, TimerKind)>,
    timer_seq: u64,
    waiting: HashMap<ReplyId, oneshot::Sender<Response>>,
    next_reply: ReplyId,
    pids: HashMap<(String, Gen), u32>,
    /// The latest per-worker stats each generation reported (X_VASSAL_WORKERS).
    workers: HashMap<(String, Gen), Vec<proto::WorkerStatus>>,
    rescan_at: Option<Instant>,
    next_periodic: Instant,
    notify_path: PathBuf,
    systemd: Notifier,
    /// App and control sockets kept by systemd across emperor crashes.
    fdstore: FdStore,
    /// The control socket's descriptor (the listener itself lives in its task).
    control_fd: std::os::fd::RawFd,
    /// The signal vassals get when the emperor dies: SIGKILL, or under systemd SIGTERM
    /// (their sockets outlive us in the fd store: they finish the requests they hold
    /// while the next emperor starts new generations on the same sockets).
    death_signal: i32,
    watchdog: Option<(Duration, Instant)>,
    hup_reply: Option<ReplyId>,
    last_status: String,
    exit: bool,
    terminating: bool,
    watcher: notify::RecommendedWatcher,
    link_watches: BTreeMap<String, (PathBuf, u64)>,
    /// A spare descriptor (/dev/null), closed for the length of a scan that ran out of
    /// descriptors, so the emperor can always read apps-enabled and notice removals.
    spare: Option<std::fs::File>,
    /// The next retry delay after a scan that ran out of descriptors.
    fd_retry: Duration,
    /// New apps the supervisor knows only as unreadable (not in `files`): should their
    /// ini go away, they are removed like any other.
    unread: BTreeSet<String>,
}

/// Runs the emperor until SIGTERM/SIGINT and every vassal has stopped.
pub fn run(s: Settings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (tx, rx) = unbounded_channel();
        let mut d = Daemon::start(s, tx)?;
        d.main_loop(rx).await;
        d.cleanup();
        Ok(())
    })
}

impl Daemon {
    fn start(s: Settings, tx: UnboundedSender<Input>) -> anyhow::Result<Daemon> {
        // systemd's variables are ours, never the vassals'.
        let systemd = Notifier::from_env();
        let mut fdstore = FdStore::from_env(systemd.is_active());
        if fdstore.is_active() {
            // A restart's socket keeper, if the previous emperor left one.
            fdstore.add_adopted(keeper::collect(&keeper::socket_name(&s.control_socket)));
        }
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|us| (Duration::from_micros(us / 2), Instant::now()));
        // SAFETY: start-up, before any thread we spawn reads the environment.
        unsafe {
            for v in [
                "WATCHDOG_USEC",
                "WATCHDOG_PID",
                "LISTEN_FDS",
                "LISTEN_PID",
                "LISTEN_FDNAMES",
            ] {
                std::env::remove_var(v);
            }
        }
        if !s.apps_enabled.is_dir() {
            anyhow::bail!(
                "apps-enabled directory {} does not exist (create it, or set apps-enabled in [emperor])",
                s.apps_enabled.display()
            );
        }
        if !s.vassal.is_file() {
            anyhow::bail!(
                "vassal binary {} not found (set vassal = in [emperor] or --vassal)",
                s.vassal.display()
            );
        }
        let own_dir = s.run_dir.join(proto::EMPEROR_DIR_NAME);
        std::fs::create_dir_all(&own_dir)
            .with_context(|| format!("creating {}", own_dir.display()))?;
        // Traversable by vassals running as app users (they reach notify.sock here).
        std::fs::set_permissions(
            &own_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        if let Some(parent) = s.control_socket.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // The control socket: mode 0660, refused if another emperor answers on it. One
        // systemd kept for us (a crashed emperor's) is taken back when its path is still
        // there.
        let control_spec = SocketSpec {
            address: s.control_socket.display().to_string(),
            protocol: Protocol::Uwsgi,
        };
        let control = match fdstore
            .take(fdstore::CONTROL)
            .map(|fd| sockets::adopt(fd, &control_spec))
        {
            Some(Ok(l)) => l,
            stale => {
                if stale.is_some() {
                    fdstore.remove(&systemd, fdstore::CONTROL);
                }
                let l = sockets::bind(
                    &control_spec,
                    &sockets::BindOptions {
                        backlog: 64,
                        chmod: Some(0o660),
                        chown: None,
                    },
                )
                .with_context(|| "binding the control socket (is another emperor running?)")?;
                fdstore.store(&systemd, fdstore::CONTROL, l.raw_fd());
                l
            }
        };
        let control_fd = control.raw_fd();
        let sockets::ListenerKind::Unix(control) = control.kind else {
            anyhow::bail!("the control socket must be a unix socket path");
        };
        control.set_nonblocking(true)?;
        let control = tokio::net::UnixListener::from_std(control)?;
        tokio::spawn(control::serve(control, tx.clone(), control::Spare::open()));

        let notify_path = own_dir.join("notify.sock");
        let vn = vnotify::bind(&notify_path)
            .with_context(|| format!("binding {}", notify_path.display()))?;
        tokio::spawn(vnotify::run(vn, tx.clone()));

        // Register the watch before the first scan, so nothing falls between them.
        let hint = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            match &res {
                Err(e) => tracing::warn!("watcher: {e}"),
                // Opening a watched ini changes nothing, and the rescan itself opens every
                // ini: taken as a hint, it would make the emperor rescan every 50 ms.
                Ok(ev)
                    if matches!(
                        ev.kind,
                        notify::EventKind::Access(notify::event::AccessKind::Open(_))
                    ) =>
                {
                    return;
                }
                Ok(_) => {}
            }
            let _ = hint.send(Input::FsHint);
        })
        .context("starting the inotify watcher")?;
        watcher
            .watch(&s.apps_enabled, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", s.apps_enabled.display()))?;

        for (kind, input) in [
            (tokio::signal::unix::SignalKind::terminate(), 0),
            (tokio::signal::unix::SignalKind::interrupt(), 0),
            (tokio::signal::unix::SignalKind::hangup(), 1),
            (tokio::signal::unix::SignalKind::user_defined2(), 2),
        ] {
            let mut sig = tokio::signal::unix::signal(kind)?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while sig.recv().await.is_some() {
                    let _ = tx.send(match input {
                        0 => Input::Terminate,
                        1 => Input::Hangup,
                        _ => Input::Handover,
                    });
                }
            });
        }

        let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
        let now = Instant::now();
        Ok(Daemon {
            sup: Supervisor::new(s.policy.clone(), seed),
            next_periodic: now + s.rescan_every,
            s,
            t0: now,
            tx,
            apps: BTreeMap::new(),
            files: BTreeMap::new(),
            problems: BTreeMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            waiting: HashMap::new(),
            next_reply: 1,
            pids: HashMap::new(),
            workers: HashMap::new(),
            rescan_at: None,
            notify_path,
            death_signal: if systemd.is_active() && std::env::var_os("INVOCATION_ID").is_some() {
                libc::SIGTERM
            } else {
                libc::SIGKILL
            },
            systemd,
            fdstore,
            control_fd,
            watchdog,
            hup_reply: None,
            last_status: String::new(),
            exit: false,
            terminating: false,
            watcher,
            link_watches: BTreeMap::new(),
            spare: std::fs::File::open("/dev/null").ok(),
            fd_retry: FD_RETRY_MIN,
            unread: BTreeSet::new(),
        })
    }

    fn now_ms(&self) -> Millis {
        Millis(self.t0.elapsed().as_millis() as u64)
    }

    async fn main_loop(&mut self, mut rx: UnboundedReceiver<Input>) {
        self.rescan();
        self.fdstore.release_unclaimed(&self.systemd);
        tracing::info!(
            "emperor ready: watching {}, control socket {}",
            self.s.apps_enabled.display(),
            self.s.control_socket.display()
        );
        self.systemd
            .send(&format!("READY=1\nSTATUS={}\n", self.status_line()));
        while !self.exit {
            let deadline = self.next_deadline();
            tokio::select! {
                input = rx.recv() => match input {
                    Some(i) => self.input(i),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.fire_due(),
            }
            // Drain whatever else is queued before recomputing the deadline.
            while let Ok(i) = rx.try_recv() {
                self.input(i);
            }
            self.report_status();
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut d = self.next_periodic;
        if let Some(r) = self.rescan_at {
            d = d.min(r);
        }
        if let Some(((t, _), _)) = self.timers.first_key_value() {
            d = d.min(*t);
        }
        if let Some((every, last)) = self.watchdog {
            d = d.min(last + every);
        }
        d
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        if self.rescan_at.is_some_and(|r| r <= now) || self.next_periodic <= now {
            self.rescan_at = None;
            self.next_periodic = now + self.s.rescan_every;
            self.rescan();
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (app, gen, kind) = entry.remove();
            self.feed(Event::Timer { app, gen, kind });
        }
        if let Some((every, last)) = &mut self.watchdog {
            if *last + *every <= now {
                *last = now;
                // A stop still draining vassals is progress: give systemd's stop timeout
                // two more beats each time (the drain itself is bounded by reload-mercy).
                let extend = if self.terminating && !self.pids.is_empty() {
                    format!("EXTEND_TIMEOUT_USEC={}\n", (*every * 2).as_micros())
                } else {
                    String::new()
                };
                self.systemd.send(&format!("WATCHDOG=1\n{extend}"));
            }
        }
    }

    fn input(&mut self, i: Input) {
        match i {
            Input::FsHint => {
                if self.rescan_at.is_none() {
                    self.rescan_at = Some(Instant::now() + self.s.debounce);
                }
            }
            Input::Exited { app, gen, exit } => {
                self.pids.remove(&(app.clone(), gen));
                self.workers.remove(&(app.clone(), gen));
                // Only the reason: its output was logged line by line as it came.
                if exit.reason.is_clean() {
                    tracing::info!(app = %app, "generation {gen} {}", exit.reason);
                } else {
                    tracing::warn!(app = %app, "generation {gen} {}", exit.reason);
                }
                self.feed(Event::Exited { app, gen, exit });
            }
            Input::Notify { pid, text } => self.vassal_notify(pid, &text),
            Input::Control { req, reply } => self.control(req, reply),
            Input::Terminate => {
                if !self.terminating && self.death_signal == libc::SIGTERM {
                    if let Some(unit) =
                        keeper::own_unit().filter(|u| keeper::restart_job_pending(u))
                    {
                        self.hand_over_for_restart(&unit);
                    }
                }
                let force = self.terminating;
                if !force {
                    tracing::info!(
                        "stopping every vassal gracefully (send the signal again to force)"
                    );
                    self.systemd.send("STOPPING=1\n");
                } else {
                    tracing::warn!("second stop signal: killing every vassal");
                }
                self.terminating = true;
                self.feed(Event::Shutdown { force });
            }
            Input::Handover => {
                if self.death_signal != libc::SIGTERM {
                    tracing::warn!(
                        "SIGUSR2 (hand over to a new emperor) works only under systemd, which \
                         keeps the sockets and restarts the emperor; ignored"
                    );
                    return;
                }
                // Exit at once, releasing nothing: the sockets stay in systemd's fd store
                // and their files in place, systemd restarts the (new) binary, which takes
                // them back, and our vassals finish their requests on SIGTERM from the
                // kernel (PR_SET_PDEATHSIG) meanwhile.
                tracing::info!(
                    "SIGUSR2: handing over to a new emperor (exit {EXIT_HANDOVER}; systemd \
                     restarts it on the same sockets; running requests finish)"
                );
                std::process::exit(EXIT_HANDOVER);
            }
            Input::Hangup => {
                tracing::info!("SIGHUP: rescanning and reloading every app");
                let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                    .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
                    .unwrap_or(0);
                self.systemd
                    .send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}\n"));
                let just_started = self.rescan();
                let id = self.new_reply_id();
                self.hup_reply = Some(id);
                self.feed(Event::Control {
                    reply: Some(id),
                    cmd: Command::ReloadAll { just_started },
                });
            }
        }
    }

    /// `systemctl restart` on systemd 252 would close the stored sockets between the two
    /// emperors: leave them with a socket keeper for the next one instead, and exit
    /// without stopping the apps (see keeper.rs). Returns only if that failed.
    fn hand_over_for_restart(&mut self, unit: &str) {
        let mut fds: Vec<(String, std::os::fd::RawFd)> =
            vec![(fdstore::CONTROL.to_owned(), self.control_fd)];
        for (app, rt) in &self.apps {
            for (i, l) in rt.listeners.iter().enumerate() {
                if let Some(name) = fdstore::app_fdname(app, i) {
                    fds.push((name, l.raw_fd()));
                }
            }
        }
        let name = keeper::socket_name(&self.s.control_socket);
        // /proc/self/exe: an upgrade may have replaced the file this image came from.
        match keeper::spawn(std::path::Path::new("/proc/self/exe"), &name, &fds) {
            Ok(()) => {
                tracing::info!(
                    "{unit} is restarting: {} socket(s) handed to a keeper for the next \
                     emperor; the apps finish their requests meanwhile",
                    fds.len()
                );
                std::process::exit(0);
            }
            Err(e) => tracing::warn!(
                "{unit} is restarting, but the sockets cannot be kept for the next emperor \
                 ({e}): stopping the apps"
            ),
        }
    }

    fn new_reply_id(&mut self) -> ReplyId {
        let id = self.next_reply;
        self.next_reply += 1;
        id
    }

    fn vassal_notify(&mut self, pid: u32, text: &str) {
        let Some((app, gen)) = self.sup.find_pid(pid).map(|(a, g)| (a.to_owned(), g)) else {
            return;
        };
        for line in text.lines() {
            if line == "READY=1" {
                tracing::info!(app = %app, "generation {gen} is ready");
                self.feed(Event::Ready {
                    app: app.clone(),
                    gen,
                });
            } else if line == "WATCHDOG=1" {
                self.feed(Event::Heartbeat {
                    app: app.clone(),
                    gen,
                });
            } else if line == "STOPPING=1" {
                self.feed(Event::Stopping {
                    app: app.clone(),
                    gen,
                });
            } else if let Some(json) = line.strip_prefix("X_VASSAL_WORKERS=") {
                match serde_json::from_str::<Vec<proto::WorkerStatus>>(json) {
                    Ok(w) => {
                        self.workers.insert((app.clone(), gen), w);
                    }
                    Err(e) => {
                        tracing::debug!(app = %app, "bad X_VASSAL_WORKERS from generation {gen}: {e}")
                    }
                }
            } else if let Some(status) = line.strip_prefix("STATUS=") {
                self.feed(Event::Status {
                    app: app.clone(),
                    gen,
                    text: status.to_owned(),
                });
            }
        }
    }

    fn control(&mut self, req: Request, reply: oneshot::Sender<Response>) {
        let cmd = match req {
            Request::Status { apps } => {
                let _ = reply.send(self.status(&apps));
                return;
            }
            Request::Hello { .. } => {
                let _ = reply.send(Response::Error {
                    message: "hello was already exchanged".into(),
                });
                return;
            }
            Request::Reload { app: Some(a) } => Command::Reload(a),
            Request::Reload { app: None } => Command::ReloadAll {
                just_started: self.rescan(),
            },
            Request::Restart { app } => Command::Restart(app),
            Request::Stop { app } => Command::Stop(app),
            Request::Start { app } => Command::Start(app),
        };
        let id = self.new_reply_id();
        self.waiting.insert(id, reply);
        self.feed(Event::Control {
            reply: Some(id),
            cmd,
        });
    }

    fn status(&self, names: &[String]) -> Response {
        let now = self.now_ms();
        let views = self.sup.status(now);
        let mut out = Vec::new();
        for v in &views {
            if !names.is_empty() && !names.contains(&v.name) {
                continue;
            }
            let rt = self.apps.get(&v.name);
            out.push(AppStatus {
                name: v.name.clone(),
                state: v.state.to_owned(),
                pid: v.pid,
                workers: v
                    .gen
                    .and_then(|g| self.workers.get(&(v.name.clone(), g)))
                    .cloned()
                    .unwrap_or_default(),
                uptime_secs: v.uptime_ms.map(|m| m / 1000),
                restarts: v.restarts,
                last_exit: v.last_exit.as_ref().map(|e| e.reason.to_string()),
                exit: v.last_exit.as_ref().map(|e| exit_reason(&e.reason)),
                last_output: v
                    .last_exit
                    .as_ref()
                    .map(|e| e.output.clone())
                    .filter(|o| !o.is_empty()),
                error: v.error.clone(),
                socket: rt
                    .map(|r| {
                        let specs = if r.bound.is_empty() {
                            r.config
                                .as_ref()
                                .map(|c| self.socket_specs(&v.name, c))
                                .unwrap_or_default()
                        } else {
                            r.bound.clone()
                        };
                        specs
                            .iter()
                            .map(|s| s.address.clone())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
                config: rt.map(|r| r.ini.display().to_string()).unwrap_or_default(),
                next_attempt_secs: v.next_attempt_ms.map(|m| m.div_ceil(1000)),
            });
        }
        if let Some(missing) = names.iter().find(|n| !views.iter().any(|v| &v.name == *n)) {
            return Response::UnknownApp {
                app: missing.clone(),
            };
        }
        Response::Status { apps: out }
    }

    fn status_line(&self) -> String {
        let views = self.sup.status(self.now_ms());
        let ready = views
            .iter()
            .filter(|v| v.state == "ready" || v.state == "reloading")
            .count();
        let failed = views
            .iter()
            .filter(|v| matches!(v.state, "backoff" | "failed" | "invalid"))
            .count();
        format!("{ready} apps ready, {failed} failed")
    }

    fn report_status(&mut self) {
        if !self.systemd.is_active() {
            return;
        }
        let line = self.status_line();
        if line != self.last_status {
            self.systemd.send(&format!("STATUS={line}\n"));
            self.last_status = line;
        }
    }

    /// Feeds one event and carries out the actions, including any events they cause.
    fn feed(&mut self, ev: Event) {
        let mut queue = VecDeque::from([ev]);
        while let Some(ev) = queue.pop_front() {
            let now = self.now_ms();
            for action in self.sup.on_event(ev, now) {
                if let Some(follow_up) = self.apply(action) {
                    queue.push_back(follow_up);
                }
            }
        }
    }

    fn apply(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Spawn { app, gen } => Some(match self.spawn(&app, gen) {
                Ok(pid) => {
                    self.pids.insert((app.clone(), gen), pid);
                    tracing::info!(app = %app, "generation {gen} started (pid {pid})");
                    Event::Spawned { app, gen, pid }
                }
                Err(e) => {
                    let why = error_chain(&e);
                    app_lines!(error, app, "cannot start generation {gen}: {why}");
                    Event::SpawnFailed { app, gen, why }
                }
            }),
            Action::Signal { app, gen, signal } => {
                if let Some(&pid) = self.pids.get(&(app.clone(), gen)) {
                    let pid = nix::unistd::Pid::from_raw(pid as i32);
                    let r = match signal {
                        Signal::Term => nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM),
                        // The whole process group: master and workers at once.
                        Signal::Kill => nix::sys::signal::killpg(pid, nix::sys::signal::SIGKILL),
                    };
                    if let Err(e) = r {
                        if e != nix::errno::Errno::ESRCH {
                            tracing::warn!(app = %app, "signalling generation {gen}: {e}");
                        }
                    }
                }
                None
            }
            Action::Timer { app, gen, kind, at } => {
                let when = self.t0 + Duration::from_millis(at.0);
                self.timer_seq += 1;
                self.timers.insert((when, self.timer_seq), (app, gen, kind));
                None
            }
            Action::Reply { reply, outcome } => {
                if Some(reply) == self.hup_reply {
                    self.hup_reply = None;
                    if let Outcome::Failed(why) = &outcome {
                        lines!(warn, "SIGHUP reload: {why}");
                    }
                    self.systemd.send("READY=1\n");
                }
                if let Some(tx) = self.waiting.remove(&reply) {
                    let _ = tx.send(match outcome {
                        Outcome::Done(message) => Response::Done { message },
                        Outcome::Failed(message) => Response::Failed { message },
                        Outcome::UnknownApp(app) => Response::UnknownApp { app },
                    });
                }
                None
            }
            Action::Release { app } => {
                tracing::info!(app = %app, "removed");
                self.release(&app);
                None
            }
            Action::Exit => {
                self.exit = true;
                None
            }
        }
    }

    /// The sockets the app listens on: its ini's `socket =` lines (relative paths are
    /// relative to apps-enabled, the vassal's working directory), else
    /// `<run-dir>/<app>/socket`.
    fn socket_specs(&self, app: &str, cfg: &VassalConfig) -> Vec<SocketSpec> {
        if cfg.sockets.is_empty() {
            return vec![SocketSpec {
                address: self
                    .s
                    .run_dir
                    .join(app)
                    .join("socket")
                    .display()
                    .to_string(),
                protocol: Protocol::Uwsgi,
            }];
        }
        cfg.sockets
            .iter()
            .map(|s| match sockets::parse_address(&s.address) {
                sockets::Address::Unix(p) if p.is_relative() => SocketSpec {
                    address: self.s.apps_enabled.join(p).display().to_string(),
                    protocol: s.protocol.clone(),
                },
                _ => s.clone(),
            })
            .collect()
    }

    fn ensure_sockets(&mut self, app: &str) -> anyhow::Result<Vec<std::os::fd::RawFd>> {
        let rt = self.apps.get(app).context("unknown app")?;
        let cfg = rt.config.clone().context("no valid config")?;
        let specs = self.socket_specs(app, &cfg);
        let rt = self.apps.get_mut(app).expect("checked above");
        if rt.bound != specs {
            for (i, l) in rt.listeners.drain(..).enumerate() {
                if let Some(p) = &l.created_path {
                    let _ = std::fs::remove_file(p);
                }
                if let Some(name) = fdstore::app_fdname(app, i) {
                    self.fdstore.remove(&self.systemd, &name);
                }
            }
            rt.bound.clear();
            let chown = cfg
                .chown_socket
                .clone()
                .or_else(|| match (&cfg.uid, &cfg.gid) {
                    (Some(u), Some(g)) => Some(format!("{u}:{g}")),
                    (Some(u), None) => Some(u.clone()),
                    _ => None,
                });
            let opts = sockets::BindOptions {
                backlog: cfg.listen,
                // nginx must be able to connect; restrict with chmod-socket/chown-socket.
                chmod: Some(cfg.chmod_socket.unwrap_or(0o666)),
                chown: chown.as_deref(),
            };
            let default_dir = self.s.run_dir.join(app);
            for (i, spec) in specs.iter().enumerate() {
                let name = fdstore::app_fdname(app, i);
                // A socket systemd kept from a crashed emperor: same inode, and the
                // connections queued in it while no emperor ran are served.
                if let Some(fd) = name.as_deref().and_then(|n| self.fdstore.take(n)) {
                    match sockets::adopt(fd, spec) {
                        Ok(l) => {
                            tracing::info!(app = %app, "listening on {} (kept by systemd)", l.name);
                            rt.listeners.push(l);
                            continue;
                        }
                        Err(fd) => {
                            drop(fd);
                            if let Some(n) = &name {
                                self.fdstore.remove(&self.systemd, n);
                            }
                        }
                    }
                }
                if let sockets::Address::Unix(p) = sockets::parse_address(&spec.address) {
                    if p.parent() == Some(default_dir.as_path()) {
                        std::fs::create_dir_all(&default_dir)
                            .with_context(|| format!("creating {}", default_dir.display()))?;
                    }
                }
                let l = sockets::bind(spec, &opts)?;
                tracing::info!(app = %app, "listening on {}", l.name);
                match &name {
                    Some(n) => self.fdstore.store(&self.systemd, n, l.raw_fd()),
                    None if self.fdstore.is_active() => tracing::warn!(
                        app = %app,
                        "the app's name cannot name a stored socket (sd_notify FDNAME): its \
                         socket will not outlive the emperor"
                    ),
                    None => {}
                }
                rt.listeners.push(l);
            }
            rt.bound = specs;
        }
        Ok(rt.listeners.iter().map(|l| l.raw_fd()).collect())
    }

    fn spawn(&mut self, app: &str, gen: Gen) -> anyhow::Result<u32> {
        let fds = self.ensure_sockets(app)?;
        let ini = self.apps[app].ini.clone();
        let pid = spawn::spawn(
            SpawnSpec {
                vassal: &self.s.vassal,
                ini: &ini,
                includes: &self.s.vassals_include,
                cwd: &self.s.apps_enabled,
                fds,
                notify_socket: &self.notify_path,
                // Beats every third of the timeout: two lost beats are tolerated.
                watchdog_usec: (self.s.policy.watchdog > 0)
                    .then(|| self.s.policy.watchdog * 1000 / 3),
                nofile: self.s.vassal_nofile,
                death_signal: self.death_signal,
            },
            app,
            gen,
            self.tx.clone(),
        )?;
        Ok(pid)
    }

    fn release(&mut self, app: &str) {
        if let Some(rt) = self.apps.remove(app) {
            for (i, l) in rt.listeners.into_iter().enumerate() {
                if let Some(p) = &l.created_path {
                    let _ = std::fs::remove_file(p);
                }
                if let Some(name) = fdstore::app_fdname(app, i) {
                    self.fdstore.remove(&self.systemd, &name);
                }
            }
            let _ = std::fs::remove_dir(self.s.run_dir.join(app));
        }
        if let Some((target, _)) = self.link_watches.remove(app) {
            let _ = self.watcher.unwatch(&target);
        }
    }

    /// Rescans apps-enabled and feeds what changed. Returns the apps a new generation
    /// was started for (their ini was added or changed, and is valid).
    ///
    /// The filesystem part (listing, reading inis) runs first, then the events are fed:
    /// feeding spawns vassals, which take descriptors. When the listing or an ini ran
    /// out of descriptors, the scan is done again with the spare descriptor given back
    /// (so removals are always noticed), and retried later with a backoff.
    fn rescan(&mut self) -> Vec<String> {
        if self.terminating {
            return Vec::new();
        }
        let mut attempt = self.read_apps();
        let short = match &attempt {
            Ok(r) => !r.out_of_fds.is_empty(),
            Err(e) => scan::is_out_of_fds(e),
        };
        if short && self.spare.take().is_some() {
            attempt = self.read_apps();
            self.spare = std::fs::File::open("/dev/null").ok();
        }
        let result = match attempt {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read {}: {e}", self.s.apps_enabled.display());
                if scan::is_out_of_fds(&e) {
                    self.retry_scan_soon();
                }
                return Vec::new();
            }
        };
        if result.out_of_fds.is_empty() {
            self.fd_retry = FD_RETRY_MIN;
        } else {
            self.retry_scan_soon();
        }
        let problems: BTreeMap<String, String> = result.problems.iter().cloned().collect();
        for (name, why) in &problems {
            if self.problems.get(name) != Some(why) {
                tracing::warn!(app = %name, "ignored: {why}");
            }
        }
        self.problems = problems;
        let mut started = Vec::new();
        for name in result.removed {
            tracing::info!(app = %name, "ini removed: stopping");
            self.files.remove(&name);
            self.unread.remove(&name);
            self.feed(Event::ConfigRemoved { app: name });
        }
        for (name, why) in result.unreadable {
            if !self.files.contains_key(&name) {
                self.unread.insert(name.clone());
            }
            self.feed(Event::ConfigUnreadable { app: name, why });
        }
        for (name, st, valid) in result.loaded {
            self.unread.remove(&name);
            self.files.insert(name.clone(), st);
            let ok = valid.is_ok();
            self.feed(Event::ConfigChanged {
                app: name.clone(),
                valid,
            });
            if ok {
                started.push(name);
            }
        }
        self.update_link_watches();
        started
    }

    /// Arms a rescan after a scan that ran out of descriptors (doubling delay).
    fn retry_scan_soon(&mut self) {
        let at = Instant::now() + self.fd_retry;
        self.rescan_at = Some(self.rescan_at.map_or(at, |r| r.min(at)));
        self.fd_retry = (self.fd_retry * 2).min(self.s.rescan_every);
    }

    /// The filesystem side of a rescan: the directory, diffed, and every added or
    /// changed ini loaded; an error if the directory itself could not be read.
    fn read_apps(&mut self) -> std::io::Result<ReadApps> {
        let result = scan::scan(&self.s.apps_enabled, self.s.max_ini_size)?;
        let d = scan::diff(&self.files, &result.apps, &result.unreadable);
        let mut removed = d.removed;
        // Apps never read (no descriptor) whose ini is gone now.
        removed.extend(
            self.unread
                .iter()
                .filter(|n| !result.apps.contains_key(*n) && !result.unreadable.contains(n))
                .cloned(),
        );
        let mut out = ReadApps {
            problems: result.problems.clone(),
            out_of_fds: result.out_of_fds.clone(),
            removed,
            unreadable: Vec::new(),
            loaded: Vec::new(),
        };
        // A new app that could not be opened is shown, with why; a known one keeps
        // what it had.
        for name in &result.out_of_fds {
            if !self.files.contains_key(name) {
                let why = result
                    .problems
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, w)| w.clone())
                    .unwrap_or_default();
                out.unreadable.push((name.clone(), why));
            }
        }
        for name in d.added.into_iter().chain(d.changed) {
            let st = result.apps[&name].clone();
            match self.load(&name, &st) {
                Load::Done(valid) => out.loaded.push((name, st, valid)),
                Load::OutOfFds(why) => {
                    // Not remembered in `files`: the next scan tries again.
                    out.out_of_fds.push(name.clone());
                    out.unreadable.push((name, why));
                }
            }
        }
        Ok(out)
    }

    fn load(&mut self, name: &str, st: &FileState) -> Load {
        let ini = st.path.as_path();
        let mut args = vec!["--ini".to_owned(), ini.display().to_string()];
        for inc in &self.s.vassals_include {
            args.push("--ini".to_owned());
            args.push(inc.display().to_string());
        }
        let rt = self.apps.entry(name.to_owned()).or_insert_with(|| AppRt {
            ini: ini.to_owned(),
            config: None,
            listeners: Vec::new(),
            bound: Vec::new(),
        });
        rt.ini = ini.to_owned();
        if let Some(size) = st.too_large {
            let why = format!(
                "{}: {}",
                ini.display(),
                inihost::too_large(size, self.s.max_ini_size)
            );
            tracing::error!(app = %name, "ini refused, not started: {why}");
            return Load::Done(Err(why));
        }
        // Relative paths in the ini are relative to apps-enabled, as for uWSGI vassals.
        let host = IniHost::new(&self.s.apps_enabled, self.s.max_ini_size);
        let loaded = config::from_args_with(&host, &args);
        if let Some(why) = host.out_of_fds() {
            tracing::warn!(app = %name, "ini {}: {why}; retrying", ini.display());
            return Load::OutOfFds(why);
        }
        match loaded {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    app_lines!(warn, name, "{w}");
                }
                tracing::info!(app = %name, "ini loaded: {}", ini.display());
                rt.config = Some(loaded.config);
                Load::Done(Ok(()))
            }
            Err(e) => {
                tracing::error!(app = %name, "invalid ini, not started:");
                app_lines!(error, name, "{e}");
                Load::Done(Err(e.to_string()))
            }
        }
    }

    /// A watch on each symlink follows it to its target, so editing or touching the
    /// file in apps-available reloads the app; re-added when the target changes.
    fn update_link_watches(&mut self) {
        let current: BTreeMap<String, (PathBuf, u64)> = self
            .files
            .iter()
            .filter(|(_, f)| f.is_link)
            .map(|(n, f)| (n.clone(), (f.path.clone(), f.ino)))
            .collect();
        for (name, (path, ino)) in &current {
            if self.link_watches.get(name) == Some(&(path.clone(), *ino)) {
                continue;
            }
            let _ = self.watcher.unwatch(path);
            if let Err(e) = self
                .watcher
                .watch(path, notify::RecursiveMode::NonRecursive)
            {
                tracing::warn!(app = %name, "cannot watch {}: {e}", path.display());
            }
        }
        let gone: Vec<String> = self
            .link_watches
            .keys()
            .filter(|n| !current.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some((path, _)) = self.link_watches.remove(&name) {
                let _ = self.watcher.unwatch(&path);
            }
        }
        self.link_watches = current;
    }

    fn cleanup(&mut self) {
        let names: Vec<String> = self.apps.keys().cloned().collect();
        for n in names {
            self.release(&n);
        }
        let _ = std::fs::remove_file(&self.notify_path);
        let _ = std::fs::remove_file(&self.s.control_socket);
        self.fdstore.remove(&self.systemd, fdstore::CONTROL);
        tracing::info!("emperor stopped");
    }
}

/// What reading one ini gave.
enum Load {
    Done(Result<(), String>),
    /// No descriptor was left to read it: try again later.
    OutOfFds(String),
}

/// The filesystem side of a rescan, before anything is fed.
struct ReadApps {
    problems: Vec<(String, String)>,
    out_of_fds: Vec<String>,
    removed: Vec<String>,
    /// New apps that could not be read for lack of descriptors, with why.
    unreadable: Vec<(String, String)>,
    /// Added or changed apps: their new state and whether the ini is valid.
    loaded: Vec<(String, FileState, Result<(), String>)>,
}

/// An error and its causes, "a: b: c", without repeating a cause the message above it
/// already quotes (`socket X: Too many open files` over the same io error).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn exit_reason(r: &supervisor::ExitReason) -> proto::ExitReason {
    use supervisor::ExitReason as S;
    match r {
        S::Code(code) => proto::ExitReason::Code { code: *code },
        S::Signal {
            number,
            name,
            core_dumped,
        } => proto::ExitReason::Signal {
            number: *number,
            name: name.clone(),
            core_dumped: *core_dumped,
        },
        S::NotStarted(why) => proto::ExitReason::NotStarted { why: why.clone() },
        S::Unknown(why) => proto::ExitReason::Unknown { why: why.clone() },
    }
}
