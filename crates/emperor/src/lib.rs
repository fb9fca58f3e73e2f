//! The emperor: runs one vassal per `*.ini` in apps-enabled.
//!
//! One owner loop holds all state. Filesystem hints, child exits, vassal
//! notifications (READY=1 ...), control requests and signals arrive as [`Input`]s on
//! one channel; timers are a sorted map the loop sleeps on. Decisions are made by the
//! pure `supervisor` crate; this crate only carries out its [`Action`]s: bind sockets,
//! spawn and signal vassals, answer `emperorctl`, talk to systemd.
//!
//! The emperor owns every app's listening socket, so it outlives crashes and reloads:
//! nginx's connections wait in the backlog while a vassal restarts, and a reload starts
//! the new generation on the same socket before the old one stops (blue/green).

pub mod cli;
mod control;
mod daemon;
pub mod fdstore;
mod inihost;
pub mod journal;
pub mod keeper;
pub mod scan;
mod spawn;
mod vnotify;

use std::path::PathBuf;
use std::time::Duration;

pub use daemon::run;

/// Everything the daemon needs, resolved from flags, the config file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub apps_enabled: PathBuf,
    pub run_dir: PathBuf,
    pub vassal: PathBuf,
    pub control_socket: PathBuf,
    pub vassals_include: Vec<PathBuf>,
    pub policy: supervisor::Policy,
    /// The safety-net rescan period (events are the engine).
    pub rescan_every: Duration,
    /// How long after a filesystem event the directory is rescanned.
    pub debounce: Duration,
    /// Inis larger than this many bytes are refused without being read.
    pub max_ini_size: u64,
    /// RLIMIT_NOFILE (soft, hard) to give vassals: the emperor's limits before it
    /// raised its own soft limit (see [`raise_fd_limit`]). None leaves them as they are.
    pub vassal_nofile: Option<(u64, u64)>,
}

/// The default `max-ini-size`: 1 MiB (real inis are a few hundred bytes).
pub const DEFAULT_MAX_INI_SIZE: u64 = 1 << 20;

/// Raises the soft RLIMIT_NOFILE to the hard limit (as nginx and systemd do: every app
/// costs the emperor a socket and two pipes) and returns the limits it had before,
/// which vassals get back. Logs the figure.
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(
            "cannot read the file descriptor limit: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    let before = (lim.rlim_cur, lim.rlim_max);
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            tracing::warn!(
                "cannot raise the file descriptor limit from {} to {}: {}",
                before.0,
                before.1,
                std::io::Error::last_os_error()
            );
            return Some(before);
        }
        tracing::info!(
            "file descriptor limit raised from {} to {} (the hard limit)",
            before.0,
            before.1
        );
    } else {
        tracing::info!("file descriptor limit: {}", before.0);
    }
    Some(before)
}

/// What reaches the owner loop.
pub enum Input {
    FsHint,
    Exited {
        app: String,
        gen: u64,
        exit: supervisor::Exit,
    },
    Notify {
        pid: u32,
        text: String,
    },
    Control {
        req: proto::Request,
        reply: tokio::sync::oneshot::Sender<proto::Response>,
    },
    Terminate,
    Hangup,
    /// SIGUSR2: exit without stopping the apps, for systemd to restart us (an upgrade).
    Handover,
}
