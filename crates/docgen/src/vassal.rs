//! A clap description of `vassal`'s command line, for its man page and completions only.
//!
//! The vassal itself reads uWSGI-style options by hand (`config::args`): every ini key is
//! also a flag, with getopt's rules and uWSGI's short letters. Clap could not parse that
//! (uWSGI accepts options it does not document, repeated scalars, `--chmod-socket` with an
//! optional value), so this is documentation, not a parser: the common options, their
//! uWSGI aliases and value shapes. The tests below hold it to the config crate's tables.

use clap::{Arg, ArgAction, ValueHint};

/// One documented option: its long name, the uWSGI aliases the vassal also accepts, its
/// short letter, its value (None for a flag) and its help line.
struct Opt {
    long: &'static str,
    aliases: &'static [&'static str],
    short: Option<char>,
    value: Value,
    help: &'static str,
}

#[derive(Clone, Copy)]
enum Value {
    /// A flag: `--master`.
    Flag,
    /// `--socket ADDR` or `--socket=ADDR`, with what completion offers.
    Required(&'static str, ValueHint),
    /// Only `--chmod-socket=664`; a bare `--chmod-socket` means the default.
    Optional(&'static str),
}

use Value::{Flag, Optional, Required};

const ANY: ValueHint = ValueHint::Other;
const FILE: ValueHint = ValueHint::FilePath;
const DIR: ValueHint = ValueHint::DirPath;

/// Ordered as the README's configuration table.
#[rustfmt::skip]
const OPTIONS: &[Opt] = &[
    Opt { long: "ini", aliases: &[], short: None, value: Required("FILE[:SECTION]", FILE), help: "Read options from the [uwsgi] section (or SECTION) of FILE; a bare FILE.ini argument does the same" },
    Opt { long: "check", aliases: &[], short: None, value: Flag, help: "Validate the configuration, print every problem with file:line, and exit" },
    Opt { long: "socket", aliases: &["uwsgi-socket"], short: Some('s'), value: Required("ADDR", ANY), help: "Listen here with the uwsgi protocol (for nginx uwsgi_pass); host:port or :port is TCP, anything else a unix socket path (unix:/path and @abstract accepted). Repeatable" },
    Opt { long: "http-socket", aliases: &[], short: None, value: Required("ADDR", ANY), help: "Listen here with HTTP/1.1 (keep-alive, pipelining, chunked bodies, 100-continue). Repeatable" },
    Opt { long: "http", aliases: &[], short: None, value: Required("ADDR", ANY), help: "uWSGI's router option: served directly with HTTP/1.1 on ADDR" },
    Opt { long: "protocol", aliases: &["socket-protocol"], short: None, value: Required("PROTO", ANY), help: "http makes the --socket entries speak HTTP" },
    Opt { long: "module", aliases: &["wsgi"], short: Some('w'), value: Required("MOD[:CALLABLE]", ANY), help: "The Python module (and callable) to import" },
    Opt { long: "wsgi-file", aliases: &["file"], short: None, value: Required("FILE", FILE), help: "A Python file to run as the app module" },
    Opt { long: "callable", aliases: &[], short: None, value: Required("NAME", ANY), help: "The WSGI callable's name [default: application]" },
    Opt { long: "chdir", aliases: &[], short: None, value: Required("DIR", DIR), help: "Change to DIR before importing (it is added to sys.path)" },
    Opt { long: "home", aliases: &["virtualenv", "venv", "pyhome"], short: Some('H'), value: Required("VENV", DIR), help: "The app's virtualenv, made with the Python the vassal embeds; without it an activated venv (VIRTUAL_ENV) is used" },
    Opt { long: "pythonpath", aliases: &["python-path", "pp"], short: None, value: Required("DIR", DIR), help: "An extra sys.path entry. Repeatable; the last listed comes first" },
    Opt { long: "env", aliases: &[], short: None, value: Required("KEY=VALUE", ANY), help: "Set an environment variable before the app is imported. Repeatable" },
    Opt { long: "master", aliases: &[], short: Some('M'), value: Flag, help: "Accepted; the vassal always runs a master" },
    Opt { long: "processes", aliases: &["workers"], short: Some('p'), value: Required("N", ANY), help: "Worker processes [default: 1]" },
    Opt { long: "threads", aliases: &[], short: None, value: Required("N", ANY), help: "Serving threads per worker [default: 1]" },
    Opt { long: "enable-threads", aliases: &[], short: Some('T'), value: Flag, help: "Accepted; Python threads always work" },
    Opt { long: "lazy-apps", aliases: &["lazy"], short: None, value: Flag, help: "Each worker imports the app after the fork (default: the master imports it once)" },
    Opt { long: "harakiri", aliases: &[], short: Some('t'), value: Required("SECS", ANY), help: "A request running longer: its traceback is logged, the client gets 504 if nothing was sent, the worker is replaced" },
    Opt { long: "max-requests", aliases: &[], short: Some('R'), value: Required("N", ANY), help: "Recycle a worker after N requests" },
    Opt { long: "max-requests-delta", aliases: &[], short: None, value: Required("N", ANY), help: "Add N times the worker id to max-requests" },
    Opt { long: "max-worker-lifetime", aliases: &[], short: None, value: Required("SECS", ANY), help: "Recycle a worker after SECS seconds" },
    Opt { long: "reload-on-rss", aliases: &[], short: None, value: Required("MIB", ANY), help: "Recycle a worker whose RSS passes MIB MiB" },
    Opt { long: "worker-reload-mercy", aliases: &[], short: None, value: Required("SECS", ANY), help: "Seconds a stopping worker may finish its requests [default: 60]" },
    Opt { long: "chmod-socket", aliases: &["chmod"], short: Some('C'), value: Optional("MODE"), help: "Mode of the unix sockets the vassal creates (--chmod-socket=664; bare means 666)" },
    Opt { long: "chown-socket", aliases: &[], short: None, value: Required("USER[:GROUP]", ANY), help: "Owner of the unix sockets the vassal creates" },
    Opt { long: "vacuum", aliases: &[], short: None, value: Flag, help: "Remove the unix sockets and pidfile the vassal created on exit" },
    Opt { long: "die-on-term", aliases: &[], short: None, value: Flag, help: "Accepted; SIGTERM always means a graceful stop" },
    Opt { long: "uid", aliases: &[], short: None, value: Required("USER", ANY), help: "Drop to this user after binding, before importing the app" },
    Opt { long: "gid", aliases: &[], short: None, value: Required("GROUP", ANY), help: "Drop to this group after binding, before importing the app" },
    Opt { long: "buffer-size", aliases: &[], short: Some('b'), value: Required("BYTES", ANY), help: "Maximum uwsgi vars block [default: 4096, at most 65535]" },
    Opt { long: "listen", aliases: &[], short: Some('l'), value: Required("N", ANY), help: "Listen backlog [default: 100]" },
    Opt { long: "need-app", aliases: &[], short: None, value: Optional("BOOL"), help: "Exit with code 22 if the app cannot be imported [default: true]" },
    Opt { long: "post-buffering", aliases: &[], short: None, value: Required("BYTES", ANY), help: "Read request bodies up to max(BYTES, 64 KiB), at most 1 MiB, before calling the app; larger ones stream" },
    Opt { long: "socket-timeout", aliases: &[], short: Some('z'), value: Required("SECS", ANY), help: "How long a request head may take to arrive, and a body or response may stall [default: 4]" },
    Opt { long: "disable-logging", aliases: &[], short: Some('L'), value: Flag, help: "No per-request log lines" },
    Opt { long: "logto", aliases: &[], short: None, value: Required("FILE", FILE), help: "Append stdout and stderr to FILE" },
    Opt { long: "pidfile", aliases: &[], short: None, value: Required("FILE", FILE), help: "Write the master's pid to FILE" },
    Opt { long: "forwarded-allow-ips", aliases: &[], short: None, value: Required("IPS", ANY), help: "TCP peers whose forwarded headers an http-socket believes: addresses or networks, or * [default: 127.0.0.1,::1]; unix-socket peers are always trusted" },
    Opt { long: "forwarded-headers", aliases: &[], short: None, value: Required("NAMES", ANY), help: "Which forwarded headers count: forwarded, x-forwarded-for, x-real-ip, x-forwarded-proto, x-forwarded-host, x-forwarded-port, x-script-name, or none [default: x-forwarded-for,x-forwarded-proto]" },
    Opt { long: "strict", aliases: &[], short: None, value: Flag, help: "Unknown options are errors instead of warnings" },
];

/// vassal's command line as clap would describe it (see the module comment).
pub fn command() -> clap::Command {
    let options = OPTIONS.iter().map(|o| {
        // clap_mangen does not print aliases: the help line names them.
        let help = match o.aliases {
            [] => o.help.to_string(),
            names => format!("{} (also --{})", o.help, names.join(", --")),
        };
        let mut arg = Arg::new(o.long)
            .long(o.long)
            .visible_aliases(o.aliases.iter().copied())
            .help(help);
        if let Some(c) = o.short {
            arg = arg.short(c);
        }
        match o.value {
            Flag => arg.action(ArgAction::SetTrue),
            Required(name, hint) => arg
                .value_name(name)
                .value_hint(hint)
                .action(ArgAction::Append),
            Optional(name) => arg
                .value_name(name)
                .num_args(0..=1)
                .require_equals(true)
                .action(ArgAction::Set),
        }
    });
    clap::Command::new("vassal")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Serves one WSGI app: uWSGI's options, an embedded CPython, uwsgi and HTTP/1.1")
        .long_about(
            "Serves one WSGI app. It embeds CPython, imports the app, runs a master with \
             pre-forked workers and speaks the uwsgi protocol (for nginx uwsgi_pass) and \
             HTTP/1.1. It reads uWSGI's ini files and command lines: every ini key of the \
             [uwsgi] section is also a --flag, with uWSGI's short letters, and options uWSGI \
             has but the vassal does not implement are named and ignored (errors with \
             --strict). The common options are listed below.\n\n\
             Under emperor(8) each app's vassal gets its socket from the emperor \
             (LISTEN_FDS) and reports readiness over NOTIFY_SOCKET. Signals: SIGTERM stops \
             gracefully, SIGINT and SIGQUIT stop at once, SIGHUP reloads the code without \
             closing the sockets.",
        )
        .override_usage("vassal --ini FILE[:SECTION]\n       vassal [OPTIONS]\n       vassal --check --ini FILE")
        .arg(
            Arg::new("INI")
                .help("An ini file, as --ini FILE")
                .value_hint(FILE)
                .num_args(0..=1),
        )
        .args(options)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use config::options::{self, Arity};

    use super::*;

    /// Options this description adds that are not ini keys.
    const NOT_INI_KEYS: &[&str] = &["check", "help", "version"];

    fn longs(arg: &Arg) -> Vec<&str> {
        arg.get_long()
            .into_iter()
            .chain(arg.get_all_aliases().unwrap_or_default())
            .collect()
    }

    #[test]
    fn every_documented_option_is_one_the_vassal_accepts_with_that_value_shape() {
        let mut cmd = command();
        cmd.build();
        for arg in cmd.get_arguments().filter(|a| !a.is_positional()) {
            for name in longs(arg) {
                if NOT_INI_KEYS.contains(&name) {
                    continue;
                }
                assert!(
                    options::canonical(name).is_some() || options::is_directive(name),
                    "--{name} is documented but the vassal does not support it"
                );
                // Our own options (not uWSGI's) take a value.
                let want = if options::OWN.contains(&name) {
                    Arity::Required
                } else {
                    options::uwsgi_option(name)
                        .unwrap_or_else(|| panic!("--{name} is not a uWSGI option"))
                        .arity
                };
                let takes = arg.get_num_args().expect("built by clap::Command::build");
                let have = if takes.max_values() == 0 {
                    Arity::None
                } else if takes.min_values() == 0 {
                    Arity::Optional
                } else {
                    Arity::Required
                };
                assert_eq!(have, want, "--{name}: value shape differs from uWSGI's");
            }
            if let Some(c) = arg.get_short() {
                assert_eq!(
                    options::shortcut(c).and_then(options::canonical),
                    arg.get_long().and_then(options::canonical),
                    "-{c} is not the vassal's shortcut for --{}",
                    arg.get_id()
                );
            }
        }
    }

    /// A supported option added to the config crate must be documented here (or its
    /// alias listed).
    #[test]
    fn every_supported_option_is_documented() {
        let mut cmd = command();
        cmd.build();
        let documented: BTreeSet<&str> = cmd.get_arguments().flat_map(longs).collect();
        let missing: Vec<&str> = options::SUPPORTED
            .iter()
            .map(|(key, _)| *key)
            .filter(|k| !documented.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "options the vassal supports but vassal(8) does not list: {missing:?} \
             (add them to crates/docgen/src/vassal.rs)"
        );
    }
}
