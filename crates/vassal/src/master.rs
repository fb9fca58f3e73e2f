//! The master: single-threaded, a poll loop over a signalfd and the workers'
//! readiness pipe. It forks the workers (after importing the app once, so they share
//! it copy-on-write), respawns any that die, and on TERM stops them gracefully.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::serve::Shared;
use crate::worker::{self, WorkerSpec};
use sockets::notify::Notifier;
use sockets::Listener;

pub struct MasterSpec {
    pub processes: u32,
    pub threads: u32,
    pub mercy: Duration,
}

struct WorkerSlot {
    id: u32,
    started: Instant,
}

/// Gives up when workers keep dying right after they start: a fork storm helps no one.
const QUICK_DEATH: Duration = Duration::from_secs(1);
const MAX_QUICK_DEATHS: u32 = 10;

pub fn run(
    listeners: Arc<Vec<Listener>>,
    shared: Arc<Shared>,
    spec: MasterSpec,
    notifier: &Notifier,
) -> anyhow::Result<i32> {
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
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    nix::fcntl::fcntl(
        &ready_r,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )?;

    let master_pid = std::process::id();
    let mut workers: HashMap<Pid, WorkerSlot> = HashMap::new();
    let spawn = |id: u32, workers: &mut HashMap<Pid, WorkerSlot>| -> anyhow::Result<()> {
        let ready = ready_w.try_clone()?;
        // SAFETY: the master runs no other Rust threads; Python threads are handled
        // by the fork hooks.
        match unsafe { crate::python::fork_with_python() }? {
            ForkResult::Child => {
                child_setup(master_pid, &sfd, &ready_r);
                worker::run(
                    listeners.clone(),
                    shared.clone(),
                    WorkerSpec {
                        threads: spec.threads,
                        multiprocess: spec.processes > 1,
                        mercy: spec.mercy,
                    },
                    ready,
                )
            }
            ForkResult::Parent { child } => {
                workers.insert(
                    child,
                    WorkerSlot {
                        id,
                        started: Instant::now(),
                    },
                );
                Ok(())
            }
        }
    };
    for id in 1..=spec.processes {
        spawn(id, &mut workers)?;
    }

    // systemd's watchdog convention: heartbeat every WATCHDOG_USEC / 2.
    let watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&us| us > 0)
        .map(|us| Duration::from_micros(us / 2));
    // SAFETY: still single-threaded (workers are separate processes).
    unsafe {
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
    }
    let mut next_beat = watchdog.map(|w| Instant::now() + w);
    let mut ready_count = 0u32;
    let mut announced = false;
    let mut stop_deadline: Option<Instant> = None;
    let mut quick_deaths = 0u32;
    let mut exit_code = 0;
    loop {
        if stop_deadline.is_some() && workers.is_empty() {
            break;
        }
        let wake_at = match (stop_deadline, next_beat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = match wake_at {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().min(60_000) as u32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(ready_r.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if let (Some(at), Some(every)) = (next_beat, watchdog) {
            if Instant::now() >= at {
                notifier.send("WATCHDOG=1\n");
                next_beat = Some(Instant::now() + every);
            }
        }
        // Workers announce that their threads accept; READY=1 once all have.
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(&ready_r, &mut buf) {
            if n == 0 {
                break;
            }
            ready_count += n as u32;
        }
        if !announced && ready_count >= spec.processes && stop_deadline.is_none() {
            announced = true;
            let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            tracing::info!(
                "ready: {} worker(s) x {} thread(s) serving on {}",
                spec.processes,
                spec.threads,
                names.join(", ")
            );
            notifier.send(&format!(
                "READY=1\nSTATUS=serving with {} workers\nMAINPID={}\n",
                spec.processes,
                std::process::id()
            ));
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let sig = Signal::try_from(info.ssi_signo as i32).ok();
            match sig {
                Some(Signal::SIGCHLD) => {}
                Some(Signal::SIGTERM) if stop_deadline.is_none() => {
                    tracing::info!("SIGTERM: graceful stop (in-flight requests finish)");
                    notifier.send("STOPPING=1\n");
                    stop_deadline = Some(Instant::now() + spec.mercy);
                    signal_all(&workers, Signal::SIGTERM);
                }
                Some(sig @ (Signal::SIGINT | Signal::SIGQUIT | Signal::SIGTERM)) => {
                    tracing::info!("{}: immediate stop", sig.as_str());
                    if stop_deadline.is_none() {
                        notifier.send("STOPPING=1\n");
                    }
                    stop_deadline = Some(Instant::now() + Duration::from_secs(3));
                    signal_all(&workers, Signal::SIGINT);
                }
                Some(Signal::SIGHUP) if stop_deadline.is_none() => {
                    // Until the process-model work lands, HUP recycles the workers (they
                    // finish their requests, and the master forks fresh ones).
                    tracing::info!("SIGHUP: recycling workers gracefully");
                    signal_all(&workers, Signal::SIGTERM);
                }
                _ => {}
            }
        }
        // Reap.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some(pid) = status.pid() else { break };
                    let Some(slot) = workers.remove(&pid) else {
                        continue;
                    };
                    if stop_deadline.is_some() {
                        continue;
                    }
                    let quick = slot.started.elapsed() < QUICK_DEATH;
                    tracing::warn!(
                        "worker {} (pid {pid}) exited: {status:?}; respawning",
                        slot.id
                    );
                    if quick && !matches!(status, WaitStatus::Exited(_, 0)) {
                        quick_deaths += 1;
                    } else {
                        quick_deaths = 0;
                    }
                    if quick_deaths >= MAX_QUICK_DEATHS {
                        tracing::error!(
                            "workers died right after starting {MAX_QUICK_DEATHS} times in a row; giving up"
                        );
                        stop_deadline = Some(Instant::now() + Duration::from_secs(3));
                        signal_all(&workers, Signal::SIGINT);
                        exit_code = 1;
                        continue;
                    }
                    spawn(slot.id, &mut workers)?;
                }
            }
        }
        if let Some(d) = stop_deadline {
            if Instant::now() >= d && !workers.is_empty() {
                tracing::warn!("workers still running after the mercy period; killing them");
                signal_all(&workers, Signal::SIGKILL);
                stop_deadline = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }
    Ok(exit_code)
}

fn signal_all(workers: &HashMap<Pid, WorkerSlot>, sig: Signal) {
    for pid in workers.keys() {
        let _ = kill(*pid, sig);
    }
}

/// In the forked worker: die with the master, drop the master's descriptors.
fn child_setup(master_pid: u32, sfd: &SignalFd, ready_r: &OwnedFd) {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid().as_raw() as u32 != master_pid {
        // The master died between fork and prctl.
        // SAFETY: _exit is always safe.
        unsafe { libc::_exit(1) };
    }
    use std::os::fd::AsRawFd;
    let _ = nix::unistd::close(sfd.as_fd().as_raw_fd());
    let _ = nix::unistd::close(ready_r.as_raw_fd());
}
