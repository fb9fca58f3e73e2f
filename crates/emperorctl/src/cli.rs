//! `emperorctl`'s command line, in a library so that its man page and shell completions
//! (`crates/docgen`) are generated from the definition the binary parses.

use std::path::PathBuf;

use clap::{ArgGroup, CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "emperorctl",
    version,
    about = "Control the emperor and check app ini files",
    long_about = "Control the emperor and check app ini files.\n\n\
        Every command but check talks to the running emperor over its control socket and \
        returns once the action has been applied: reload exits 0 when the new generation \
        serves, or 1 with the reason it failed (the old generation keeps serving).\n\n\
        Exit status: 0 ok, 1 failed, 2 usage, 3 the emperor is not running, 4 unknown app."
)]
/// emperorctl's global options and its subcommand.
pub struct Cli {
    /// The emperor's control socket [default: /run/emperor/control.sock as root, else
    /// $XDG_RUNTIME_DIR/emperor/emperor/control.sock]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "EMPEROR_CONTROL_SOCKET"
    )]
    pub socket: Option<PathBuf>,
    /// Print the emperor's response as JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up waiting for the emperor's reply after SECS seconds [default: wait]
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every app, or the named apps with their workers
    Status { apps: Vec<String> },
    /// Start a new generation; returns once it serves (exit 0) or failed (exit 1)
    #[command(group(ArgGroup::new("target").required(true).args(["app", "all"])))]
    Reload {
        app: Option<String>,
        /// Reload every app
        #[arg(long)]
        all: bool,
    },
    /// Stop and start an app now, even out of backoff
    Restart { app: String },
    /// Stop an app until `start` or until its ini changes
    Stop { app: String },
    /// Start a stopped app
    Start { app: String },
    /// Validate app ini files (FILE or FILE:SECTION) without the emperor
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Print the versions of emperorctl, the protocol and the running emperor
    Version,
}

/// The clap definition of emperorctl's command line, for docs and completions.
pub fn command() -> clap::Command {
    Cli::command()
}
