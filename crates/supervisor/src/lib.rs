//! The emperor's decisions, as a pure state machine.
//!
//! The emperor's shell turns everything that happens (an ini appeared or changed, a
//! vassal said `READY=1`, a process exited, a timer fired, `emperorctl reload` arrived)
//! into an [`Event`] and calls [`Supervisor::on_event`] with the current time. The
//! supervisor updates its per-app state and answers with [`Action`]s for the shell to
//! carry out: spawn generation N of an app, signal a generation, arm a timer, reply to
//! a waiting `emperorctl`, release an app's socket, exit.
//!
//! Nothing here does I/O or reads a clock, so every path — blue/green reload, a new
//! generation that fails to import, a crash loop with growing backoff, a stop racing
//! a reload — is tested by feeding events and comparing actions.
//!
//! Generations: every spawn gets a fresh number. Timers name the generation they are
//! about, and a timer for a generation that is gone is simply ignored, so the shell
//! never has to cancel one.

mod backoff;
mod exit;
mod machine;
mod state;

pub use backoff::Backoff;
pub use exit::{Exit, ExitReason, EXIT_CANNOT_LOAD};
pub use machine::{AppView, Supervisor};
pub use state::{StateKind, VassalState, ALLOWED_TRANSITIONS};

/// Monotonic milliseconds (the shell decides the epoch, e.g. its own start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Millis(pub u64);

impl Millis {
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A vassal generation: one spawned vassal process of an app.
pub type Gen = u64;

/// Identifies a waiting control request; the shell maps it to a connection.
pub type ReplyId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Reload(String),
    /// Reload every running app. `just_started` names apps that already got a new
    /// generation from the rescan that came with this command (SIGHUP and `reload --all`
    /// rescan first): they are waited for, not given a second generation.
    ReloadAll {
        just_started: Vec<String>,
    },
    Restart(String),
    Stop(String),
    Start(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// The generation had this long to say READY=1.
    StartTimeout,
    /// A generation told to stop gracefully gets SIGKILL now.
    KillDeadline,
    /// Backoff is over: spawn again. `gen` carries the backoff round.
    BackoffOver,
    /// Check that a ready generation still sends WATCHDOG=1.
    Watchdog,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The app's ini appeared or changed. `Err` carries every config problem.
    ConfigChanged {
        app: String,
        valid: Result<(), String>,
    },
    ConfigRemoved {
        app: String,
    },
    /// The app's ini exists but cannot be read right now (e.g. the emperor ran out of
    /// file descriptors). Not a config error: the shell retries, and a running
    /// generation keeps serving.
    ConfigUnreadable {
        app: String,
        why: String,
    },
    Spawned {
        app: String,
        gen: Gen,
        pid: u32,
    },
    SpawnFailed {
        app: String,
        gen: Gen,
        why: String,
    },
    Ready {
        app: String,
        gen: Gen,
    },
    Status {
        app: String,
        gen: Gen,
        text: String,
    },
    /// The generation sent STOPPING=1: it no longer accepts connections.
    Stopping {
        app: String,
        gen: Gen,
    },
    /// The generation sent WATCHDOG=1.
    Heartbeat {
        app: String,
        gen: Gen,
    },
    /// The generation's process is gone: how it ended, and the last lines it logged
    /// (e.g. an import error's traceback).
    Exited {
        app: String,
        gen: Gen,
        exit: Exit,
    },
    Timer {
        app: String,
        gen: Gen,
        kind: TimerKind,
    },
    Control {
        reply: Option<ReplyId>,
        cmd: Command,
    },
    /// Stop everything; `force` kills instead of draining.
    Shutdown {
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Graceful stop: finish in-flight requests.
    Term,
    Kill,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(String),
    Failed(String),
    UnknownApp(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Action {
    Spawn {
        app: String,
        gen: Gen,
    },
    Signal {
        app: String,
        gen: Gen,
        signal: Signal,
    },
    Timer {
        app: String,
        gen: Gen,
        kind: TimerKind,
        at: Millis,
    },
    Reply {
        reply: ReplyId,
        outcome: Outcome,
    },
    /// The app is gone (ini removed, every process exited): close its socket.
    Release {
        app: String,
    },
    /// Shutdown finished: every vassal has exited.
    Exit,
}

/// Knobs, all in milliseconds.
#[derive(Debug, Clone)]
pub struct Policy {
    pub backoff: Backoff,
    /// How long a new generation may take to send READY=1.
    pub start_timeout: u64,
    /// How long a generation told to stop may drain before SIGKILL.
    pub reload_mercy: u64,
    /// Ready this long, a crash no longer counts towards the backoff.
    pub stable_after: u64,
    /// A ready generation silent (no WATCHDOG=1) this long is hung: killed and
    /// restarted. 0 disables the check.
    pub watchdog: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            backoff: Backoff::default(),
            start_timeout: 60_000,
            reload_mercy: 30_000,
            stable_after: 10_000,
            watchdog: 30_000,
        }
    }
}
