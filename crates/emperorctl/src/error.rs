//! Everything that makes a command fail. `main` alone turns these into exit codes.

use std::io;
use std::path::PathBuf;

use proto::FrameError;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Nothing listens on the control socket: the file is missing (ENOENT) or stale
    /// (ECONNREFUSED).
    #[error("the emperor is not running: cannot connect to {}: {source}", socket.display())]
    NotRunning { socket: PathBuf, source: io::Error },
    /// Connecting failed for another reason, typically permission denied.
    #[error("cannot connect to {}: {source}", socket.display())]
    Connect { socket: PathBuf, source: io::Error },
    /// The conversation broke: the emperor closed the connection or sent a bad frame.
    #[error("control connection to {}: {source}", socket.display())]
    Protocol { socket: PathBuf, source: FrameError },
    /// `--timeout` expired before the emperor answered. The action may still complete.
    #[error("no reply from the emperor within {}s (the action may still complete)", .0.as_secs())]
    Timeout(std::time::Duration),
    /// The emperor speaks another protocol version.
    #[error("protocol version mismatch: emperorctl speaks {ours}, {server} speaks {theirs}")]
    VersionMismatch {
        ours: u32,
        theirs: u32,
        server: String,
    },
    /// The emperor sent a response that does not answer the request.
    #[error("unexpected response from the emperor: {0}")]
    Unexpected(String),
    /// The action was tried and failed ([`proto::Response::Failed`]).
    #[error("{0}")]
    Failed(String),
    /// The emperor refused the request ([`proto::Response::Error`]).
    #[error("the emperor refused the request: {0}")]
    Refused(String),
    /// No such app ([`proto::Response::UnknownApp`]).
    #[error("unknown app `{0}`")]
    UnknownApp(String),
    /// `check` found errors in this many files (the diagnostics are already printed).
    #[error("{0} of the files checked {verb} errors", verb = if *.0 == 1 { "has" } else { "have" })]
    CheckFailed(usize),
    /// Writing our own output failed.
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
}

impl CtlError {
    /// A line telling the user what to do next, where there is an obvious next step.
    pub fn hint(&self) -> Option<String> {
        match self {
            CtlError::NotRunning { socket, .. } => Some(format!(
                "is it running? see `systemctl status emperor`, start it with `systemctl start \
                 emperor`; an emperor with another run-dir or control-socket than {} needs \
                 --socket PATH",
                socket.display()
            )),
            CtlError::Connect { source, .. }
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                Some(
                    "the control socket is mode 0660: run as root or as a member of its group"
                        .to_string(),
                )
            }
            CtlError::UnknownApp(_) => {
                Some("`emperorctl status` lists the apps the emperor knows".to_string())
            }
            _ => None,
        }
    }

    /// True when stdout was closed under us (`emperorctl status | head -1`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CtlError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<io::Error> for CtlError {
    /// Only our own output is written through `?` on io errors; socket errors carry their
    /// path and are built explicitly.
    fn from(e: io::Error) -> Self {
        CtlError::Output(e)
    }
}
