//! The master: single-threaded (no tokio, no Rust threads; with preloading, Python
//! threads the app started are handled by the fork hooks), a poll loop over a signalfd
//! and the workers' event pipe.
//!
//! It forks `processes` workers, respawns any that die, and gives up (instead of
//! fork-storming) when workers keep dying before they serve anything. Recycling
//! (`max-requests`, `reload-on-rss`, `max-worker-lifetime`, and a SIGHUP with
//! lazy-apps) is staggered: the replacement is forked first, and the old worker gets
//! SIGTERM (finish in-flight requests, then exit) only once the replacement accepts;
//! one worker at a time. Workers report through the shared [`Scoreboard`]; the master
//! turns it into per-worker stats on NOTIFY_SOCKET.
//!
//! Signals: TERM = graceful stop, INT/QUIT = fast stop, HUP = reload (lazy-apps:
//! worker by worker; preloaded: drain the workers, then re-exec the master, keeping
//! the listening sockets, see `restart.rs`).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::meter::Limits;
use crate::scoreboard::{now_ms, RecycleReason, Scoreboard, WorkerState};
use crate::worker::{self, App, WorkerCtx, WorkerSpec};
use sockets::notify::Notifier;
use sockets::Listener;

mod stats;

pub struct MasterSpec {
    pub processes: u32,
    pub threads: u32,
    /// How long a stopping worker may take to finish its requests.
    pub mercy: Duration,
    /// The app is imported by each worker (and the master runs no Python).
    pub lazy: bool,
    pub harakiri: Option<Duration>,
    pub max_requests: u64,
    pub max_requests_delta: u64,
    pub max_worker_lifetime: Option<Duration>,
    pub reload_on_rss_kb: u64,
}

/// How the master loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every worker is gone; exit with this code.
    Exit(i32),
    /// SIGHUP of a preloading master: every worker is gone; exec ourselves again.
    Reexec,
}

/// A worker that dies before serving anything, this soon after its fork, counts
/// towards giving up.
const EARLY_DEATH_WINDOW: Duration = Duration::from_secs(10);
const MAX_EARLY_DEATHS: u32 = 10;
/// How long a fast stop (INT/QUIT) waits before SIGKILL.
const FAST_STOP: Duration = Duration::from_secs(3);
/// After a replacement failed to start, recycling pauses this long.
const RECYCLE_BACKOFF: Duration = Duration::from_secs(10);
/// Stats go to the notify socket at most this often.
const STATS_EVERY: Duration = Duration::from_secs(1);

struct Worker {
    /// 1..=processes; a replacement takes the id of the worker it replaces.
    id: u32,
    slot: usize,
    spawned: Instant,
    ready: bool,
    /// When SIGTERM (graceful stop) was sent, for the mercy deadline.
    cursed: Option<Instant>,
    killed: bool,
}

/// A staggered replacement in progress.
struct Recycle {
    old: Pid,
    new: Pid,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// Draining the workers before a re-exec.
    Reloading {
        deadline: Instant,
    },
    Stopping {
        deadline: Instant,
        code: i32,
    },
}

struct Master<'a> {
    spec: MasterSpec,
    listeners: Arc<Vec<Listener>>,
    app: App,
    board: &'static Scoreboard,
    slot_used: Vec<bool>,
    notifier: &'a Notifier,
    sfd: SignalFd,
    events_r: OwnedFd,
    events_w: OwnedFd,
    workers: HashMap<Pid, Worker>,
    phase: Phase,
    recycle: Option<Recycle>,
    /// lazy-apps SIGHUP: workers still running the old code, replaced in this order.
    reload_queue: Vec<Pid>,
    reloading_lazily: bool,
    recycle_paused_until: Option<Instant>,
    early_deaths: u32,
    announced: bool,
    /// STOPPING=1 was sent.
    stop_announced: bool,
    /// Requests served by workers that are gone (for the STATUS total).
    retired_requests: u64,
    next_stats: Instant,
    last_stats: String,
}

pub fn run(
    listeners: Arc<Vec<Listener>>,
    app: App,
    spec: MasterSpec,
    notifier: &Notifier,
) -> anyhow::Result<Outcome> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        mask.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    // Both ends nonblocking: a worker never blocks on a busy master (the master reads
    // the scoreboard anyway; the bytes only wake it).
    let (events_r, events_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
    // Room for every worker plus a replacement for each.
    let slots = spec.processes as usize * 2;
    let board: &'static Scoreboard =
        Box::leak(Box::new(Scoreboard::new(slots, spec.threads as usize)?));
    let mut m = Master {
        listeners,
        app,
        board,
        slot_used: vec![false; slots],
        notifier,
        sfd,
        events_r,
        events_w,
        workers: HashMap::new(),
        phase: Phase::Running,
        recycle: None,
        reload_queue: Vec::new(),
        reloading_lazily: false,
        recycle_paused_until: None,
        early_deaths: 0,
        announced: false,
        stop_announced: false,
        retired_requests: 0,
        next_stats: Instant::now(),
        last_stats: String::new(),
        spec,
    };
    for id in 1..=m.spec.processes {
        m.spawn(id)?;
    }
    m.run_loop()
}

impl Master<'_> {
    fn run_loop(&mut self) -> anyhow::Result<Outcome> {
        // systemd's watchdog convention: heartbeat every WATCHDOG_USEC / 2.
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0)
            .map(|us| Duration::from_micros(us / 2));
        // SAFETY: single-threaded (workers are separate processes).
        unsafe {
            std::env::remove_var("WATCHDOG_USEC");
            std::env::remove_var("WATCHDOG_PID");
        }
        let mut next_beat = watchdog.map(|w| Instant::now() + w);
        loop {
            if self.workers.is_empty() {
                match self.phase {
                    Phase::Stopping { code, .. } => {
                        self.announce_stopping();
                        return Ok(Outcome::Exit(code));
                    }
                    Phase::Reloading { .. } => return Ok(Outcome::Reexec),
                    Phase::Running => {}
                }
            }
            let wake_at = [next_beat, self.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            let timeout = match wake_at {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    PollTimeout::try_from(left.as_millis().min(60_000) as u32 + 1)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let mut fds = [
                PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.events_r.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            if let (Some(at), Some(every)) = (next_beat, watchdog) {
                if Instant::now() >= at {
                    self.notifier.send("WATCHDOG=1\n");
                    next_beat = Some(Instant::now() + every);
                }
            }
            let mut buf = [0u8; 256];
            while let Ok(n) = nix::unistd::read(&self.events_r, &mut buf) {
                if n == 0 {
                    break;
                }
            }
            while let Ok(Some(info)) = self.sfd.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    self.on_signal(sig);
                }
            }
            self.reap()?;
            self.announce_drained();
            self.mark_ready();
            let now = Instant::now();
            self.enforce_deadlines(now);
            self.maybe_recycle(now)?;
            self.send_stats(now);
        }
    }

    /// The earliest moment something must happen without an event.
    fn next_deadline(&self) -> Option<Instant> {
        let mut at: Vec<Instant> = Vec::new();
        match self.phase {
            Phase::Reloading { deadline } | Phase::Stopping { deadline, .. } => at.push(deadline),
            Phase::Running => {
                if let Some(life) = self.spec.max_worker_lifetime {
                    at.extend(
                        self.workers
                            .values()
                            .filter(|w| w.cursed.is_none())
                            .map(|w| w.spawned + life),
                    );
                }
                if let Some(p) = self.recycle_paused_until {
                    at.push(p);
                }
            }
        }
        at.extend(
            self.workers
                .values()
                .filter(|w| !w.killed)
                .filter_map(|w| w.cursed.map(|c| c + self.spec.mercy)),
        );
        if self.notifier.is_active() {
            at.push(self.next_stats);
        }
        at.into_iter().min()
    }

    fn on_signal(&mut self, sig: Signal) {
        match (sig, self.phase) {
            (Signal::SIGCHLD, _) => {}
            (Signal::SIGTERM, Phase::Running) => {
                // STOPPING=1 follows once every worker stopped accepting
                // (announce_drained), so a supervisor waiting for it knows no new
                // connection reaches this generation.
                tracing::info!("SIGTERM: graceful stop (in-flight requests finish)");
                self.stop(self.spec.mercy, Signal::SIGTERM, 0);
            }
            (Signal::SIGTERM, Phase::Reloading { deadline }) => {
                // The workers already got SIGTERM; just do not come back.
                tracing::info!("SIGTERM during a reload: stopping instead");
                self.phase = Phase::Stopping { deadline, code: 0 };
            }
            (Signal::SIGINT | Signal::SIGQUIT | Signal::SIGTERM, _) => {
                tracing::info!("{}: immediate stop", sig.as_str());
                self.announce_stopping();
                let code = match self.phase {
                    Phase::Stopping { code, .. } => code,
                    _ => 0,
                };
                self.stop(FAST_STOP, Signal::SIGINT, code);
            }
            (Signal::SIGHUP, Phase::Running) if self.spec.lazy => {
                tracing::info!(
                    "SIGHUP: reloading the workers one by one (lazy-apps: each new worker \
                     imports the current code; the old one stops once it accepts)"
                );
                self.notify_reloading();
                self.reload_queue = self
                    .workers
                    .iter()
                    .filter(|(_, w)| w.cursed.is_none())
                    .map(|(pid, _)| *pid)
                    .collect();
                self.reload_queue.sort_by_key(|p| self.workers[p].id);
                self.reloading_lazily = true;
            }
            (Signal::SIGHUP, Phase::Running) => {
                tracing::info!(
                    "SIGHUP: graceful reload: workers finish their requests, then the master \
                     re-executes itself (the listening sockets stay open; new connections \
                     wait in the backlog)"
                );
                self.notify_reloading();
                self.recycle = None;
                self.reload_queue.clear();
                let now = Instant::now();
                self.phase = Phase::Reloading {
                    deadline: now + self.spec.mercy,
                };
                self.signal_all(Signal::SIGTERM, Some(now));
            }
            _ => {}
        }
    }

    /// STOPPING=1, once.
    fn announce_stopping(&mut self) {
        if !self.stop_announced {
            self.stop_announced = true;
            self.notifier.send("STOPPING=1\n");
        }
    }

    /// While stopping: STOPPING=1 as soon as no live worker accepts any more.
    fn announce_drained(&mut self) {
        if self.stop_announced || !matches!(self.phase, Phase::Stopping { .. }) {
            return;
        }
        let drained = self.workers.values().all(|w| {
            w.killed
                || self.board.worker(w.slot).state.load(Ordering::Acquire)
                    == WorkerState::Draining as u32
        });
        if drained {
            self.announce_stopping();
        }
    }

    fn notify_reloading(&self) {
        // systemd's Type=notify-reload protocol wants the monotonic time with it.
        self.notifier.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading\n",
            now_ms() * 1000
        ));
    }

    fn stop(&mut self, grace: Duration, sig: Signal, code: i32) {
        let now = Instant::now();
        self.phase = Phase::Stopping {
            deadline: now + grace,
            code,
        };
        self.recycle = None;
        self.reload_queue.clear();
        self.signal_all(sig, Some(now));
    }

    fn signal_all(&mut self, sig: Signal, cursed_at: Option<Instant>) {
        for (pid, w) in self.workers.iter_mut() {
            let _ = kill(*pid, sig);
            if let Some(at) = cursed_at {
                w.cursed.get_or_insert(at);
            }
        }
    }

    /// Forks a worker numbered `id` into a free scoreboard slot.
    fn spawn(&mut self, id: u32) -> anyhow::Result<Pid> {
        let slot = self
            .slot_used
            .iter()
            .position(|u| !u)
            .ok_or_else(|| anyhow::anyhow!("no free scoreboard slot (a bug)"))?;
        self.board.reset(slot);
        let spec = &self.spec;
        let max_requests = if spec.max_requests > 0 {
            spec.max_requests + u64::from(id - 1) * spec.max_requests_delta
        } else {
            0
        };
        let master_pid = std::process::id();
        let forked = if spec.lazy {
            // SAFETY: the master is single-threaded and never started CPython.
            unsafe { nix::unistd::fork() }
        } else {
            // SAFETY: the master runs no other Rust threads; Python threads are
            // handled by the fork hooks.
            unsafe { crate::python::fork_with_python() }
        }?;
        match forked {
            ForkResult::Child => {
                self.child_setup(master_pid);
                let events = self
                    .events_w
                    .try_clone()
                    .unwrap_or_else(|_| worker::exit(1));
                worker::run(WorkerCtx {
                    listeners: self.listeners.clone(),
                    app: self.app.clone(),
                    spec: WorkerSpec {
                        id,
                        threads: spec.threads,
                        multiprocess: spec.processes > 1,
                        mercy: spec.mercy,
                        harakiri: spec.harakiri,
                        limits: Limits {
                            max_requests,
                            rss_kb: spec.reload_on_rss_kb,
                        },
                    },
                    board: self.board,
                    slot,
                    events,
                })
            }
            ForkResult::Parent { child } => {
                self.board
                    .worker(slot)
                    .pid
                    .store(child.as_raw() as u32, Ordering::Relaxed);
                self.slot_used[slot] = true;
                self.workers.insert(
                    child,
                    Worker {
                        id,
                        slot,
                        spawned: Instant::now(),
                        ready: false,
                        cursed: None,
                        killed: false,
                    },
                );
                Ok(child)
            }
        }
    }

    /// In the forked worker: die with the master, drop the master's descriptors.
    fn child_setup(&self, master_pid: u32) {
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        if nix::unistd::getppid().as_raw() as u32 != master_pid {
            // The master died between fork and prctl.
            worker::exit(1);
        }
        let _ = nix::unistd::close(self.sfd.as_fd().as_raw_fd());
        let _ = nix::unistd::close(self.events_r.as_raw_fd());
    }

    /// Workers that wrote "accepting" since the last look.
    fn mark_ready(&mut self) {
        let mut newly_ready = Vec::new();
        for (pid, w) in self.workers.iter_mut() {
            if !w.ready
                && self.board.worker(w.slot).state.load(Ordering::Acquire)
                    == WorkerState::Accepting as u32
            {
                w.ready = true;
                newly_ready.push(*pid);
            }
        }
        for pid in newly_ready {
            if let Some(r) = self.recycle.as_ref().filter(|r| r.new == pid) {
                let old = r.old;
                if let Some(w) = self.workers.get_mut(&old) {
                    tracing::info!(
                        "worker {} (pid {pid}) accepts; stopping the one it replaces (pid {old}) gracefully",
                        w.id
                    );
                    let _ = kill(old, Signal::SIGTERM);
                    w.cursed = Some(Instant::now());
                }
            }
        }
        let serving = self
            .workers
            .values()
            .filter(|w| w.ready && w.cursed.is_none())
            .count();
        if self.phase != Phase::Running || serving < self.spec.processes as usize {
            return;
        }
        if !self.announced {
            self.announced = true;
            let names: Vec<&str> = self.listeners.iter().map(|l| l.name.as_str()).collect();
            tracing::info!(
                "ready: {} worker(s) x {} thread(s) serving on {}{}",
                self.spec.processes,
                self.spec.threads,
                names.join(", "),
                if self.spec.lazy { " (lazy-apps)" } else { "" }
            );
            self.notifier.send(&format!(
                "READY=1\nSTATUS=serving, {} workers, 0 requests\nMAINPID={}\n",
                self.spec.processes,
                std::process::id()
            ));
        } else if self.reloading_lazily && self.reload_queue.is_empty() && self.recycle.is_none() {
            self.reloading_lazily = false;
            tracing::info!("reload done: every worker runs the current code");
            self.notifier.send("READY=1\nSTATUS=reloaded\n");
        }
    }

    fn reap(&mut self) -> anyhow::Result<()> {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return Ok(()),
                Ok(s) => s,
            };
            let Some(pid) = status.pid() else {
                return Ok(());
            };
            let Some(w) = self.workers.remove(&pid) else {
                continue;
            };
            self.on_worker_exit(pid, w, status)?;
        }
    }

    fn on_worker_exit(&mut self, pid: Pid, w: Worker, status: WaitStatus) -> anyhow::Result<()> {
        let slot = self.board.worker(w.slot);
        let requests = slot.requests.load(Ordering::Relaxed);
        let served = requests > 0 || self.board.oldest_request(w.slot).is_some();
        let reason = RecycleReason::from_raw(slot.recycle.load(Ordering::Relaxed));
        self.retired_requests += requests;
        self.slot_used[w.slot] = false;
        self.reload_queue.retain(|p| *p != pid);
        let mut failed_replacement = false;
        if let Some(r) = &self.recycle {
            if r.old == pid {
                self.recycle = None;
            } else if r.new == pid {
                self.recycle = None;
                failed_replacement = true;
            }
        }
        let how = match status {
            WaitStatus::Exited(_, c) => format!("exit code {c}"),
            WaitStatus::Signaled(_, s, _) => format!("killed by {}", s.as_str()),
            other => format!("{other:?}"),
        };
        let code = match status {
            WaitStatus::Exited(_, c) => Some(c),
            _ => None,
        };
        if self.phase != Phase::Running {
            tracing::debug!("worker {} (pid {pid}) stopped ({how})", w.id);
            return Ok(());
        }
        if w.cursed.is_some() {
            tracing::info!(
                "worker {} (pid {pid}) stopped ({how}) after {requests} request(s)",
                w.id
            );
        } else if reason == Some(RecycleReason::Harakiri) {
            tracing::warn!("worker {} (pid {pid}) ended by harakiri; respawning", w.id);
        } else {
            tracing::warn!(
                "worker {} (pid {pid}) exited unexpectedly ({how}) after {requests} request(s)",
                w.id
            );
        }
        if failed_replacement {
            if code == Some(crate::EXIT_APP_LOAD_FAILED) {
                tracing::error!(
                    "the new worker {} cannot load the app (see the traceback above); the \
                     running workers keep serving the code they have",
                    w.id
                );
            } else {
                tracing::error!("the replacement for worker {} failed to start", w.id);
            }
            self.reload_queue.clear();
            self.recycle_paused_until = Some(Instant::now() + RECYCLE_BACKOFF);
        }
        let early = w.cursed.is_none() && !served && w.spawned.elapsed() < EARLY_DEATH_WINDOW;
        if early {
            self.early_deaths += 1;
        } else if served {
            self.early_deaths = 0;
        }
        if code == Some(crate::EXIT_APP_LOAD_FAILED) && !self.announced {
            tracing::error!(
                "worker {} cannot load the app (lazy-apps; see the traceback above); stopping",
                w.id
            );
            self.stop(FAST_STOP, Signal::SIGINT, crate::EXIT_APP_LOAD_FAILED);
            return Ok(());
        }
        if self.early_deaths >= MAX_EARLY_DEATHS {
            tracing::error!(
                "workers died {MAX_EARLY_DEATHS} times in a row before serving a single request \
                 (last: worker {} {how}); giving up instead of forking forever",
                w.id
            );
            let exit = if code == Some(crate::EXIT_APP_LOAD_FAILED) {
                crate::EXIT_APP_LOAD_FAILED
            } else {
                1
            };
            self.stop(FAST_STOP, Signal::SIGINT, exit);
            return Ok(());
        }
        if !self.workers.values().any(|o| o.id == w.id) {
            let new = self.spawn(w.id)?;
            tracing::info!("worker {} respawned (pid {new})", w.id);
        }
        Ok(())
    }

    fn enforce_deadlines(&mut self, now: Instant) {
        let mercy = self.spec.mercy;
        for (pid, w) in self.workers.iter_mut() {
            if let Some(c) = w.cursed {
                if !w.killed && now >= c + mercy {
                    tracing::warn!(
                        "worker {} (pid {pid}) still busy {}s after SIGTERM (worker-reload-mercy); killing it",
                        w.id,
                        mercy.as_secs()
                    );
                    let _ = kill(*pid, Signal::SIGKILL);
                    w.killed = true;
                }
            }
        }
        match self.phase {
            Phase::Stopping { deadline, code } if now >= deadline => {
                tracing::warn!("workers still running after the stop deadline; killing them");
                self.signal_all(Signal::SIGKILL, None);
                self.phase = Phase::Stopping {
                    deadline: now + Duration::from_secs(5),
                    code,
                };
            }
            Phase::Reloading { deadline } if now >= deadline => {
                self.signal_all(Signal::SIGKILL, None);
                self.phase = Phase::Reloading {
                    deadline: now + Duration::from_secs(5),
                };
            }
            _ => {}
        }
    }

    /// Starts the next staggered replacement, if a worker needs one and none runs.
    fn maybe_recycle(&mut self, now: Instant) -> anyhow::Result<()> {
        if self.phase != Phase::Running || self.recycle.is_some() || !self.announced {
            return Ok(());
        }
        if let Some(p) = self.recycle_paused_until {
            if now < p {
                return Ok(());
            }
            self.recycle_paused_until = None;
        }
        let eligible = |w: &Worker| w.ready && w.cursed.is_none();
        let mut pick: Option<(Pid, String)> = None;
        for pid in &self.reload_queue {
            if self.workers.get(pid).is_some_and(eligible) {
                pick = Some((*pid, "reload (SIGHUP)".to_string()));
                break;
            }
        }
        if pick.is_none() {
            let mut ids: Vec<(&Pid, &Worker)> =
                self.workers.iter().filter(|(_, w)| eligible(w)).collect();
            ids.sort_by_key(|(_, w)| w.id);
            for (pid, w) in ids {
                let slot = self.board.worker(w.slot);
                if let Some(r) = RecycleReason::from_raw(slot.recycle.load(Ordering::Relaxed)) {
                    let n = slot.requests.load(Ordering::Relaxed);
                    pick = Some((*pid, format!("{} ({n} requests)", r.describe())));
                    break;
                }
                if let Some(life) = self.spec.max_worker_lifetime {
                    if now >= w.spawned + life {
                        pick = Some((
                            *pid,
                            format!("max-worker-lifetime reached ({}s)", life.as_secs()),
                        ));
                        break;
                    }
                }
            }
        }
        let Some((old, why)) = pick else {
            return Ok(());
        };
        self.reload_queue.retain(|p| *p != old);
        let id = self.workers[&old].id;
        let new = self.spawn(id)?;
        tracing::info!("worker {id} (pid {old}): {why}; starting its replacement (pid {new})");
        self.recycle = Some(Recycle { old, new });
        Ok(())
    }
}
