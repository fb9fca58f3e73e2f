//! The emperor's command line. It lives in the library, not in `main.rs`, so that the
//! man page and the shell completions (`crates/docgen`) are generated from the very
//! definition the daemon parses: [`command`] is `Args`' clap [`clap::Command`].

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// Flags override the config file's `[emperor]` section, which overrides the defaults.
#[derive(Parser, Debug)]
#[command(
    name = "emperor",
    version,
    about = "Runs one vassal per *.ini in apps-enabled, like the uWSGI Emperor",
    long_about = "Runs one vassal per *.ini in apps-enabled, like the uWSGI Emperor.\n\n\
        A new ini starts its app, a changed or touched ini reloads it (blue/green, on the \
        same socket), a removed ini stops it. Each app listens on <run-dir>/<app>/socket \
        unless its ini names a socket. SIGHUP rescans and reloads every app; SIGTERM \
        stops every app gracefully. Under systemd it runs as emperor.service and is \
        controlled with emperorctl(8)."
)]
pub struct Args {
    /// Config file with an [emperor] section (missing is fine for the default path).
    #[arg(long, default_value = "/etc/emperor/emperor.ini", value_name = "FILE")]
    pub config: PathBuf,
    /// Directory of app inis (default /etc/emperor/apps-enabled).
    #[arg(long, value_name = "DIR")]
    pub apps_enabled: Option<PathBuf>,
    /// Where app sockets and the emperor's own sockets go (default /run as root, else
    /// $XDG_RUNTIME_DIR/emperor).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// The vassal binary (default: next to this binary).
    #[arg(long, value_name = "FILE")]
    pub vassal: Option<PathBuf>,
    /// The control socket (default <run-dir>/emperor/control.sock).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Internal: hold the sockets passed as fds 3.. for the next emperor (a restart
    /// under systemd), under this abstract socket name.
    #[arg(long, value_name = "NAME", hide = true)]
    pub keep_sockets: Option<String>,
}

/// The clap definition of the emperor's command line, for docs and completions.
pub fn command() -> clap::Command {
    Args::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        super::command().debug_assert();
    }
}
