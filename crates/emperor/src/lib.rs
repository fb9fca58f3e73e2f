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

mod control;
mod daemon;
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
}

/// What reaches the owner loop.
pub enum Input {
    FsHint,
    Exited {
        app: String,
        gen: u64,
        how: String,
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
}
