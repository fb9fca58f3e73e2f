//! `emperorctl`: the command line of the emperor.
//!
//! Every daemon command is one short blocking conversation over the control socket
//! ([`proto`]): connect, exchange hellos (the protocol versions must match), send one
//! request, print the one response, exit. The emperor answers only once the action has been
//! applied — `reload` returns when the new generation serves, or with the reason it failed —
//! so there is no polling here and no client timeout unless `--timeout` asks for one.
//! `check` needs no daemon: it runs the emperor's own ini loader ([`config`]) on the files.
//!
//! Output is a table for people and the raw [`proto::Response`] as JSON with `--json`.
//! Failures are [`CtlError`] values all the way up; only [`main`] turns them into a message,
//! an optional hint and an exit code: 0 ok, 1 failed, 2 usage (clap), 3 the emperor is not
//! running, 4 unknown app.

mod check;
mod client;
mod error;
mod table;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use emperorctl::cli::{Cli, Command};
use proto::{Request, Response, PROTOCOL_VERSION};

use crate::client::Client;
use crate::error::CtlError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            if code != 0 {
                eprintln!("emperorctl: {err}");
                if let Some(hint) = err.hint() {
                    eprintln!("hint: {hint}");
                }
            }
            ExitCode::from(code)
        }
    }
}

/// The one place errors become exit codes.
fn exit_code(err: &CtlError) -> u8 {
    match err {
        // `emperorctl status | head -1`: the reader had enough; not our failure.
        e if e.is_broken_pipe() => 0,
        CtlError::NotRunning { .. } => 3,
        CtlError::UnknownApp(_) => 4,
        CtlError::Connect { .. }
        | CtlError::Protocol { .. }
        | CtlError::Timeout(_)
        | CtlError::VersionMismatch { .. }
        | CtlError::Unexpected(_)
        | CtlError::Failed(_)
        | CtlError::Refused(_)
        | CtlError::CheckFailed(_)
        | CtlError::Output(_) => 1,
    }
}

fn run(cli: Cli) -> Result<(), CtlError> {
    let socket = cli.socket.unwrap_or_else(proto::default_control_socket);
    let timeout = cli.timeout.map(Duration::from_secs);
    let mut out = io::stdout().lock();
    let (request, with_workers) = match cli.command {
        Command::Check { files } => return check::run(&files, cli.json, &mut out),
        Command::Version => return version(&socket, timeout, cli.json, &mut out),
        Command::Status { apps } => {
            let named = !apps.is_empty();
            (Request::Status { apps }, named)
        }
        Command::Reload { app, .. } => (Request::Reload { app }, false),
        Command::Restart { app } => (Request::Restart { app }, false),
        Command::Stop { app } => (Request::Stop { app }, false),
        Command::Start { app } => (Request::Start { app }, false),
    };
    let is_status = matches!(request, Request::Status { .. });
    let response = Client::connect(&socket, timeout)?.request(&request)?;
    if cli.json {
        print_json(&mut out, &response)?;
    }
    match response {
        Response::Status { apps } if is_status => {
            if !cli.json {
                out.write_all(table::render_status(&apps, with_workers).as_bytes())?;
            }
            Ok(())
        }
        Response::Done { message } if !is_status => {
            if !cli.json && !message.is_empty() {
                writeln!(out, "{message}")?;
            }
            Ok(())
        }
        Response::Failed { message } => Err(CtlError::Failed(message)),
        Response::UnknownApp { app } => Err(CtlError::UnknownApp(app)),
        Response::Error { message } => Err(CtlError::Refused(message)),
        other => Err(CtlError::Unexpected(format!(
            "{other:?} in reply to {request:?}"
        ))),
    }
}

/// Prints our version, and the emperor's when it answers; an unreachable emperor is
/// reported in the output, not as a failure.
fn version(
    socket: &std::path::Path,
    timeout: Option<Duration>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let ours = env!("CARGO_PKG_VERSION");
    let server = Client::connect(socket, timeout).map(|c| c.server);
    if json {
        let value = serde_json::json!({
            "emperorctl": ours,
            "protocol": PROTOCOL_VERSION,
            "emperor": server.as_ref().ok(),
            "emperor_error": server.as_ref().err().map(ToString::to_string),
        });
        return print_json(out, &value);
    }
    writeln!(out, "emperorctl {ours} (protocol {PROTOCOL_VERSION})")?;
    match server {
        Ok(server) => writeln!(out, "{server} (protocol {PROTOCOL_VERSION})")?,
        Err(e) => writeln!(out, "emperor: {e}")?,
    }
    Ok(())
}

fn print_json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<(), CtlError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::PathBuf;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes() {
        let io = |kind| io::Error::from(kind);
        let socket = PathBuf::from("/run/emperor/control.sock");
        let cases: Vec<(CtlError, u8)> = vec![
            (
                CtlError::NotRunning {
                    socket: socket.clone(),
                    source: io(io::ErrorKind::NotFound),
                },
                3,
            ),
            (
                CtlError::Connect {
                    socket: socket.clone(),
                    source: io(io::ErrorKind::PermissionDenied),
                },
                1,
            ),
            (
                CtlError::Protocol {
                    socket,
                    source: proto::FrameError::Closed,
                },
                1,
            ),
            (CtlError::Timeout(Duration::from_secs(5)), 1),
            (
                CtlError::VersionMismatch {
                    ours: 1,
                    theirs: 2,
                    server: "emperor 9".into(),
                },
                1,
            ),
            (CtlError::Unexpected("x".into()), 1),
            (CtlError::Failed("ImportError".into()), 1),
            (CtlError::Refused("bad request".into()), 1),
            (CtlError::UnknownApp("nope".into()), 4),
            (CtlError::CheckFailed(2), 1),
            (CtlError::Output(io(io::ErrorKind::Other)), 1),
            (CtlError::Output(io(io::ErrorKind::BrokenPipe)), 0),
        ];
        for (err, want) in cases {
            assert_eq!(exit_code(&err), want, "{err:?}");
        }
    }

    #[test]
    fn usage() {
        let ok: [&[&str]; 8] = [
            &["emperorctl", "status"],
            &["emperorctl", "status", "a", "b", "--json"],
            &["emperorctl", "reload", "app"],
            &["emperorctl", "reload", "--all"],
            &["emperorctl", "--socket", "/tmp/s", "restart", "app"],
            &["emperorctl", "reload", "app", "--timeout", "30"],
            &["emperorctl", "check", "a.ini", "b.ini:uwsgi"],
            &["emperorctl", "version"],
        ];
        for args in ok {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
        let bad: [&[&str]; 7] = [
            &["emperorctl"],
            &["emperorctl", "reload"],
            &["emperorctl", "reload", "app", "--all"],
            &["emperorctl", "stop"],
            &["emperorctl", "check"],
            &["emperorctl", "reload", "app", "--timeout", "0"],
            &["emperorctl", "frobnicate"],
        ];
        for args in bad {
            let err = Cli::try_parse_from(args).expect_err(&format!("{args:?}"));
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn not_running_hint_names_socket_and_systemctl() {
        let err = CtlError::NotRunning {
            socket: PathBuf::from("/run/emperor/control.sock"),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let hint = err.hint().expect("not running has a hint");
        assert!(hint.contains("systemctl status emperor"), "{hint}");
        assert!(hint.contains("/run/emperor/control.sock"), "{hint}");
    }
}
