//! Per-app lifecycle states and the transitions allowed between them.

use crate::{Gen, Millis};

/// Where an app is. Generations that are draining (an old generation after a reload,
/// a replaced pending one) are tracked beside the state, not in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VassalState {
    /// A generation was spawned and has not said READY=1; nothing serves yet.
    Starting { gen: Gen },
    /// `gen` serves.
    Ready { gen: Gen },
    /// `old` serves while `new` starts on the same socket.
    Reloading { old: Gen, new: Gen },
    /// Nothing runs; the next spawn is due at `until`. `round` names the timer.
    Backoff { until: Millis, round: u64 },
    /// Every generation was told to stop (stop, removal or shutdown); waiting for exits.
    Draining,
    /// Stopped by `emperorctl stop` or at shutdown.
    Stopped,
    /// Nothing runs and the config is invalid: nothing to start until it changes.
    Failed { why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    Starting,
    Ready,
    Reloading,
    Backoff,
    Draining,
    Stopped,
    Failed,
}

impl VassalState {
    pub fn kind(&self) -> StateKind {
        match self {
            VassalState::Starting { .. } => StateKind::Starting,
            VassalState::Ready { .. } => StateKind::Ready,
            VassalState::Reloading { .. } => StateKind::Reloading,
            VassalState::Backoff { .. } => StateKind::Backoff,
            VassalState::Draining => StateKind::Draining,
            VassalState::Stopped => StateKind::Stopped,
            VassalState::Failed { .. } => StateKind::Failed,
        }
    }

    /// The generation that serves requests now, if any.
    pub fn serving(&self) -> Option<Gen> {
        match self {
            VassalState::Ready { gen } => Some(*gen),
            VassalState::Reloading { old, .. } => Some(*old),
            _ => None,
        }
    }

    /// The generation we are waiting on to become ready, if any.
    pub fn pending(&self) -> Option<Gen> {
        match self {
            VassalState::Starting { gen } => Some(*gen),
            VassalState::Reloading { new, .. } => Some(*new),
            _ => None,
        }
    }
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Starting => "starting",
            StateKind::Ready => "ready",
            StateKind::Reloading => "reloading",
            StateKind::Backoff => "backoff",
            StateKind::Draining => "draining",
            StateKind::Stopped => "stopped",
            StateKind::Failed => "failed",
        }
    }
}

use StateKind::*;

/// Every transition the machine may make, read as "from -> to". A transition not in
/// this table is a bug (checked in debug builds and by the tests).
pub const ALLOWED_TRANSITIONS: &[(StateKind, StateKind)] = &[
    // first start, start after stop, fix of an invalid config
    (Stopped, Starting),
    (Failed, Starting),
    // a new app whose ini is invalid; an invalid ini while stopped
    (Stopped, Failed),
    (Failed, Failed),
    // READY=1
    (Starting, Ready),
    // reload of a starting app replaces the pending generation
    (Starting, Starting),
    // crash before READY (import error), or start timeout
    (Starting, Backoff),
    // reload: the new generation starts beside the serving one
    (Ready, Reloading),
    // crash of the serving generation
    (Ready, Backoff),
    // new generation ready (old drains), or new generation failed (old keeps serving)
    (Reloading, Ready),
    // reload during a reload replaces the pending generation
    (Reloading, Reloading),
    // the old generation died while the new one was starting
    (Reloading, Starting),
    // backoff over, or `restart`
    (Backoff, Starting),
    // the config turned invalid while nothing ran
    (Backoff, Failed),
    // stop, removal, shutdown
    (Starting, Draining),
    (Ready, Draining),
    (Reloading, Draining),
    // a killed generation may still be exiting while nothing serves
    (Backoff, Draining),
    (Failed, Draining),
    (Backoff, Stopped),
    (Failed, Stopped),
    (Stopped, Stopped),
    (Draining, Draining),
    // everything exited
    (Draining, Stopped),
    // the ini changed (or `start`) while draining from a stop: start again once drained
    (Draining, Starting),
    (Draining, Failed),
];

pub fn allowed(from: StateKind, to: StateKind) -> bool {
    ALLOWED_TRANSITIONS.contains(&(from, to))
}
