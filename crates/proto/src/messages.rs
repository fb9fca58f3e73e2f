//! The messages: what `emperorctl` asks and what the emperor answers.

use serde::{Deserialize, Serialize};

/// A client's request. The first frame of every connection is [`Request::Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Opens the conversation; `client` names the program for the emperor's log
    /// (e.g. `emperorctl 0.1.0`).
    Hello { version: u32, client: String },
    /// The status of the named apps; an empty list means every app.
    Status { apps: Vec<String> },
    /// Starts a new generation of one app (`Some`) or of every app (`None`, `--all`). The
    /// reply comes once the new generation serves, or with the reason it failed.
    Reload { app: Option<String> },
    /// Stops and starts an app at once; also forces an app out of backoff.
    Restart { app: String },
    /// Stops an app; it stays stopped until [`Request::Start`] or until its ini changes.
    Stop { app: String },
    /// Starts a stopped app.
    Start { app: String },
}

/// The emperor's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The answer to [`Request::Hello`] when the versions match.
    Hello { version: u32, server: String },
    /// The answer to [`Request::Status`], in the order the apps were asked for (or by name
    /// when all were).
    Status { apps: Vec<AppStatus> },
    /// The action has been applied. `emperorctl` exits 0.
    Done { message: String },
    /// The action was tried and failed, e.g. a reload whose new generation could not import
    /// the app (`message` carries the import error). `emperorctl` exits 1.
    Failed { message: String },
    /// No app of that name is known. `emperorctl` exits 4.
    UnknownApp { app: String },
    /// The request itself was wrong: bad frame, a version mismatch, a request before the
    /// hello. `emperorctl` exits 1.
    Error { message: String },
}

/// One app as `emperorctl status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AppStatus {
    /// The app's name: its ini file name without `.ini`.
    pub name: String,
    /// One of `starting`, `ready`, `reloading`, `backoff`, `stopped`, `failed`, `invalid`.
    pub state: String,
    /// The pid of the serving generation's master.
    pub pid: Option<u32>,
    /// The serving generation's workers.
    pub workers: Vec<WorkerStatus>,
    /// Seconds since the serving generation became ready.
    pub uptime_secs: Option<u64>,
    /// How many times the app was respawned after a crash.
    pub restarts: u32,
    /// How the last generation ended, e.g. `exited with code 1` or `killed by signal
    /// SIGKILL`: the text of [`AppStatus::exit`], never the process's output.
    pub last_exit: Option<String>,
    /// How the last generation ended, typed.
    pub exit: Option<ExitReason>,
    /// The last lines the last generation printed before it ended (detail for
    /// `status APP` and `--json`).
    pub last_output: Option<String>,
    /// Why the app is not serving as asked, e.g. `app.ini:3: error: ...` for an invalid ini
    /// or the import error of a failed reload.
    pub error: Option<String>,
    /// The listening socket the emperor owns for the app.
    pub socket: String,
    /// The ini file (the symlink in apps-enabled).
    pub config: String,
    /// In backoff: seconds until the next attempt.
    pub next_attempt_secs: Option<u64>,
}

/// One worker of a serving generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct WorkerStatus {
    /// The worker's number within its generation, from 1.
    pub id: u32,
    pub pid: u32,
    /// e.g. `idle`, `busy`, `starting`, `stopping`.
    pub state: String,
    pub requests: u64,
    pub exceptions: u64,
    /// Resident set size in KiB.
    pub rss_kb: u64,
    /// How long the current request has been running, when busy.
    pub busy_ms: Option<u64>,
}

/// What ended a vassal generation, as the kernel reported it (its wording travels beside
/// it as `last_exit`, from supervisor::ExitReason's Display).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitReason {
    /// It exited with this code.
    Code { code: i32 },
    /// A signal killed it.
    Signal {
        number: i32,
        name: String,
        core_dumped: bool,
    },
    /// It could not be started at all.
    NotStarted { why: String },
    /// How it ended is not known.
    Unknown { why: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wording is supervisor::ExitReason's (sent as `last_exit`); here only the
    /// typed form's wire format.
    #[test]
    fn exit_reasons_have_a_stable_wire_format() {
        let killed = ExitReason::Signal {
            number: 9,
            name: "SIGKILL".into(),
            core_dumped: false,
        };
        let json = serde_json::to_string(&killed).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"signal","number":9,"name":"SIGKILL","core_dumped":false}"#
        );
        assert_eq!(
            serde_json::to_string(&ExitReason::Code { code: 1 }).unwrap(),
            r#"{"kind":"code","code":1}"#
        );
    }
}
