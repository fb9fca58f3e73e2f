//! uWSGI-compatible configuration for the emperor and its vassals.
//!
//! Existing uWSGI ini files must keep working, and no ini crate reads them the way uWSGI
//! does (`serde_ini` rejects bare keys and indented comments, collapses repeated keys and
//! cannot parse uWSGI booleans; see stack-notes §2). So this crate ports uWSGI 2.0's own
//! reading code (`core/ini.c`, `core/config.c`, `core/utils.c`) and uses serde only for the
//! last, typed step. It works in two stages:
//!
//! 1. **Raw** ([`raw`]): files and arguments become uWSGI's flat, ordered option list,
//!    exactly what `uwsgi --show-config` prints. Each ini file gets its magic variables
//!    (`%n %d %p ...`, [`magic`]) substituted over its raw bytes, is lexed by a line-for-line
//!    port of `ini.c` ([`lexer`]: `[section]`, `;`/`#` comment lines, split at the first
//!    `=`, bare keys, no inline comments), and its `key = value` lines are appended with
//!    their file and line. `ini =`/`include =` read another file in place, `set`/`set-ph`
//!    add options and placeholders, `strict` turns strict mode on. Command lines
//!    ([`args`]) go through the same list. Then the `$(ENV)`, `@(file)` and `%(name)`
//!    passes rewrite the values in uWSGI's order ([`placeholders`]).
//! 2. **Typed** ([`typed`]): every key is classified (supported, directive, real uWSGI
//!    option we do not support yet, user placeholder, typo with a "did you mean"), the
//!    supported ones are grouped by canonical name into a `serde_json::Value` map of
//!    located strings, deserialized with serde into a struct, and converted field by field
//!    into [`VassalConfig`]: scalars take the last value, lists take all.
//!
//! Nothing stops at the first problem: every problem becomes a [`Diagnostic`] with its
//! file:line, errors make loading fail, warnings are returned with the config. The crate
//! never panics on input (fuzzed, see `fuzz/` and `tests/fuzz_smoke.rs`). All outside
//! access (files, environment, process facts) goes through [`host::Host`], so tests run
//! against an in-memory host.
//!
//! Golden tests (`tests/golden/`) hold the option lists real uWSGI 2.0.31 printed with
//! `--show-config` for each fixture; `tests/golden/generate.sh` regenerates them. To fuzz:
//! `cd crates/config && RUSTC_BOOTSTRAP=1 cargo fuzz run parse` (cargo-fuzz; the `fuzz/`
//! package is not a workspace member).
//!
//! Where we knowingly differ from uWSGI: unknown keys are reported with a suggestion
//! (errors under `strict`) instead of silently becoming placeholders; integers must be
//! plain decimal digits (no `atoi` leniency); logic blocks (`if-env`, `for`, ...), xml /
//! json / yaml files and `scheme://` sources are errors rather than half-supported;
//! self-referencing placeholders and include loops are errors instead of hangs; the
//! `UWSGI_<OPTION>` environment variables are not read; `pythonpath` is not glob-expanded;
//! long options cannot be abbreviated on the command line.

pub mod args;
pub mod diag;
pub mod emperor;
pub mod host;
pub mod lexer;
pub mod magic;
pub mod options;
pub mod placeholders;
pub mod raw;
pub mod suggest;
pub mod typed;

use std::path::PathBuf;

pub use diag::{ConfigError, Diagnostic, Severity};
pub use host::{Host, MemHost, ProcessInfo, RealHost};
pub use raw::{RawOption, Resolved};

/// The protocol spoken on a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// The uwsgi binary protocol (nginx `uwsgi_pass`).
    Uwsgi,
    /// HTTP/1.1.
    Http,
}

/// A socket to listen on, address kept as written (`:8000`, `127.0.0.1:8000`,
/// `/run/x.sock`, `unix:/run/x.sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSpec {
    pub address: String,
    pub protocol: Protocol,
}

/// The typed configuration of one vassal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VassalConfig {
    /// `%n` of the first ini file read, else `vassal`.
    pub name: String,
    /// In order of appearance. `socket`/`uwsgi-socket` speak uwsgi (`socket` speaks HTTP
    /// when `protocol = http` is set anywhere); `http-socket` and `http` speak HTTP.
    pub sockets: Vec<SocketSpec>,
    /// `module`/`wsgi`/`-w`.
    pub module: Option<String>,
    /// `wsgi-file`/`file`.
    pub wsgi_file: Option<PathBuf>,
    pub callable: Option<String>,
    pub chdir: Option<PathBuf>,
    /// `home`/`virtualenv`/`venv`/`pyhome`.
    pub home: Option<PathBuf>,
    /// As written (uWSGI would glob-expand them).
    pub pythonpath: Vec<PathBuf>,
    pub env: Vec<(String, String)>,
    pub master: bool,
    pub processes: u32,
    pub threads: u32,
    pub enable_threads: bool,
    /// `lazy-apps`/`lazy`: each worker imports the app after the fork.
    pub lazy_apps: bool,
    /// Seconds a request may run before its worker is replaced (0 = off).
    pub harakiri: u64,
    /// Requests after which a worker is recycled (0 = off).
    pub max_requests: u64,
    /// Worker `i` (from 1) recycles after `max_requests + (i - 1) * max_requests_delta`.
    pub max_requests_delta: u64,
    /// Seconds after which a worker is recycled (0 = off).
    pub max_worker_lifetime: u64,
    /// MiB of resident memory after which a worker is recycled (0 = off).
    pub reload_on_rss: u64,
    /// Seconds a stopping worker may take to finish its requests before SIGKILL.
    pub worker_reload_mercy: u64,
    /// Mode bits; `chmod-socket` without value (or `1`) means 0o666.
    pub chmod_socket: Option<u32>,
    pub chown_socket: Option<String>,
    pub vacuum: bool,
    pub die_on_term: bool,
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// At most 65535.
    pub buffer_size: usize,
    pub listen: u32,
    pub need_app: bool,
    pub post_buffering: usize,
    /// Seconds.
    pub socket_timeout: u64,
    pub disable_logging: bool,
    pub logto: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    /// Peers whose forwarded headers an http-socket believes (ours, gunicorn's
    /// `forwarded_allow_ips`): comma-separated addresses or networks, or `*`. None: the
    /// default (loopback; unix-socket peers are always trusted).
    pub forwarded_allow_ips: Option<String>,
    /// Which forwarded headers count (ours): None for the default
    /// (X-Forwarded-For, X-Forwarded-Proto).
    pub forwarded_headers: Option<String>,
    pub strict: bool,
    /// Ini files read, in order.
    pub files: Vec<PathBuf>,
}

impl Default for VassalConfig {
    fn default() -> Self {
        VassalConfig {
            name: "vassal".to_string(),
            sockets: Vec::new(),
            module: None,
            wsgi_file: None,
            callable: None,
            chdir: None,
            home: None,
            pythonpath: Vec::new(),
            env: Vec::new(),
            master: false,
            processes: 1,
            threads: 1,
            enable_threads: true,
            lazy_apps: false,
            harakiri: 0,
            max_requests: 0,
            max_requests_delta: 0,
            max_worker_lifetime: 0,
            reload_on_rss: 0,
            worker_reload_mercy: 60,
            chmod_socket: None,
            chown_socket: None,
            vacuum: false,
            die_on_term: false,
            uid: None,
            gid: None,
            buffer_size: 4096,
            listen: 100,
            need_app: true,
            post_buffering: 0,
            socket_timeout: 4,
            disable_logging: false,
            logto: None,
            pidfile: None,
            forwarded_allow_ips: None,
            forwarded_headers: None,
            strict: false,
            files: Vec::new(),
        }
    }
}

/// A usable configuration and the warnings found while reading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: VassalConfig,
    pub warnings: Vec<Diagnostic>,
}

/// Reads `path.ini` or `path.ini:section` from the real filesystem and environment.
pub fn load_ini(spec: &str) -> Result<Loaded, ConfigError> {
    load_ini_with(&RealHost::new(), spec)
}

/// Reads a uWSGI-style command line (without argv\[0\]).
pub fn from_args(args: &[String]) -> Result<Loaded, ConfigError> {
    from_args_with(&RealHost::new(), args)
}

/// [`load_ini`] against any [`Host`].
pub fn load_ini_with(host: &dyn Host, spec: &str) -> Result<Loaded, ConfigError> {
    finish(resolve_ini(host, spec))
}

/// [`from_args`] against any [`Host`].
pub fn from_args_with(host: &dyn Host, args: &[String]) -> Result<Loaded, ConfigError> {
    finish(resolve_args(host, args))
}

/// Stage one only for an ini file: the option list `uwsgi --ini SPEC --show-config`
/// would print (without the leading `ini = SPEC` entry), with diagnostics so far.
pub fn resolve_ini(host: &dyn Host, spec: &str) -> Resolved {
    let mut reader = raw::Reader::new(host);
    let file = spec.rfind(':').map_or(spec, |colon| &spec[..colon]);
    let origin = diag::Origin::File {
        path: PathBuf::from(file),
        line: 0,
    };
    reader.load_ini(spec, &origin);
    reader.finish()
}

/// Stage one only for a command line.
pub fn resolve_args(host: &dyn Host, args: &[String]) -> Resolved {
    let mut reader = raw::Reader::new(host);
    args::read_args(&mut reader, args);
    reader.finish()
}

fn finish(resolved: Resolved) -> Result<Loaded, ConfigError> {
    let (config, diagnostics) = typed::build(resolved);
    if diagnostics.iter().any(Diagnostic::is_error) {
        Err(ConfigError { diagnostics })
    } else {
        Ok(Loaded {
            config,
            warnings: diagnostics,
        })
    }
}

/// The entry point shared by the cargo-fuzz target and the fuzz smoke test: `data` is
/// used both as an ini file (readable as `/fuzz/app.ini` and `/fuzz/other.ini`, so
/// includes and `@()` find something) and, split at NUL bytes, as a command line.
pub fn fuzz_one(data: &[u8]) {
    let host = MemHost::new("/fuzz")
        .file("/fuzz/app.ini", data)
        .file("/fuzz/other.ini", data)
        .env("HOME", "/home/fuzz");
    let _ = load_ini_with(&host, "app.ini");
    let _ = load_ini_with(&host, "/fuzz/app.ini:other");
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = from_args_with(&host, &args);
}
