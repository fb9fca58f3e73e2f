//! Stage two: the resolved option list becomes a typed [`VassalConfig`].
//!
//! Every key is first classified (supported, directive, logic block, real uWSGI option we
//! do not support, user placeholder, unknown). Supported keys are grouped by canonical
//! name into a map `name -> [{value, seq}]`, turned into a `serde_json::Value` and
//! deserialized with serde into `RawVassal`, a struct of located strings (serde does the
//! key-to-field mapping; the repeated-keys rule does not fit any serde format). Each field
//! is then converted on its own, so every bad value is reported, with its file:line.

use crate::diag::{Diagnostic, Origin, Severity};
use crate::options;
use crate::raw::{RawOption, Resolved};
use crate::suggest::suggest;
use crate::{Protocol, SocketSpec, VassalConfig};
use serde::Deserialize;
use std::path::PathBuf;

/// uWSGI's `uwsgi_opt_true`: false only for false/off/no (any case) and `0`.
pub fn parse_bool(value: &str) -> bool {
    !(value.eq_ignore_ascii_case("false")
        || value.eq_ignore_ascii_case("off")
        || value.eq_ignore_ascii_case("no")
        || value == "0")
}

/// One occurrence of a supported key: its value and its index in the option list (which
/// also locates it).
#[derive(Debug, Clone, Deserialize)]
struct Located {
    value: Option<String>,
    seq: usize,
}

/// The supported keys, grouped by canonical name, in order of appearance.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
struct RawVassal {
    socket: Vec<Located>,
    uwsgi_socket: Vec<Located>,
    http_socket: Vec<Located>,
    http: Vec<Located>,
    protocol: Vec<Located>,
    module: Vec<Located>,
    wsgi_file: Vec<Located>,
    callable: Vec<Located>,
    chdir: Vec<Located>,
    home: Vec<Located>,
    pythonpath: Vec<Located>,
    env: Vec<Located>,
    master: Vec<Located>,
    processes: Vec<Located>,
    threads: Vec<Located>,
    enable_threads: Vec<Located>,
    lazy_apps: Vec<Located>,
    harakiri: Vec<Located>,
    max_requests: Vec<Located>,
    max_requests_delta: Vec<Located>,
    max_worker_lifetime: Vec<Located>,
    reload_on_rss: Vec<Located>,
    worker_reload_mercy: Vec<Located>,
    chmod_socket: Vec<Located>,
    chown_socket: Vec<Located>,
    vacuum: Vec<Located>,
    die_on_term: Vec<Located>,
    uid: Vec<Located>,
    gid: Vec<Located>,
    buffer_size: Vec<Located>,
    listen: Vec<Located>,
    need_app: Vec<Located>,
    post_buffering: Vec<Located>,
    socket_timeout: Vec<Located>,
    disable_logging: Vec<Located>,
    logto: Vec<Located>,
    pidfile: Vec<Located>,
    forwarded_allow_ips: Vec<Located>,
    forwarded_headers: Vec<Located>,
    strict: Vec<Located>,
}

/// Converts stage one's output into a config plus diagnostics.
pub fn build(resolved: Resolved) -> (VassalConfig, Vec<Diagnostic>) {
    let mut diagnostics = resolved.diagnostics;
    let options = &resolved.options;
    let mut cx = Cx {
        options,
        diagnostics: Vec::new(),
    };

    // Strict mode: `strict` is immediate in uWSGI; its last value decides.
    let strict = resolved.strict;
    classify(
        options,
        &resolved.placeholder_refs,
        strict,
        &mut cx.diagnostics,
    );

    let mut grouped = serde_json::Map::new();
    for (seq, option) in options.iter().enumerate() {
        if option.placeholder {
            continue;
        }
        if let Some(canonical) = options::canonical(&option.key) {
            let entry = grouped
                .entry(canonical.to_string())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(list) = entry {
                list.push(serde_json::json!({ "value": option.value, "seq": seq }));
            }
        }
    }
    let raw: RawVassal = match serde_json::from_value(serde_json::Value::Object(grouped)) {
        Ok(raw) => raw,
        Err(e) => {
            // Only reachable if SUPPORTED and RawVassal disagree: a bug, reported, not a panic.
            cx.diagnostics.push(Diagnostic::error(
                &Origin::CommandLine,
                format!("internal error: option table and config struct disagree: {e}"),
            ));
            RawVassal::default()
        }
    };

    let mut config = VassalConfig {
        name: resolved
            .first_name
            .clone()
            .unwrap_or_else(|| "vassal".to_string()),
        files: resolved.files.clone(),
        strict,
        ..VassalConfig::default()
    };
    cx.fill(&raw, &mut config);
    diagnostics.extend(cx.diagnostics);
    (config, diagnostics)
}

/// Reports keys that are not supported options.
fn classify(
    options: &[RawOption],
    placeholder_refs: &std::collections::BTreeSet<String>,
    strict: bool,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let severity = if strict {
        Severity::Error
    } else {
        Severity::Warning
    };
    let defined_placeholders: std::collections::BTreeSet<&str> = options
        .iter()
        .filter(|o| o.placeholder)
        .map(|o| o.key.as_str())
        .collect();
    // Files that include themselves repeat the same unknown keys: suggest once per key.
    let mut suggestions: std::collections::HashMap<&str, Option<&str>> =
        std::collections::HashMap::new();
    for option in options {
        let key = option.key.as_str();
        if option.placeholder || options::canonical(key).is_some() || options::is_directive(key) {
            continue;
        }
        if options::is_logic(key) {
            diagnostics.push(Diagnostic::error(
                &option.origin,
                format!("`{key}`: uWSGI logic blocks (for/if-*/end*) are not supported; the options they guard would apply unconditionally"),
            ));
            continue;
        }
        if options::uwsgi_option(key).is_some() {
            diagnostics.push(Diagnostic::new(
                severity,
                &option.origin,
                format!("`{key}` is a uWSGI option vassal does not support yet; ignored"),
            ));
            continue;
        }
        if key.is_empty() && option.value.is_none() {
            continue; // the too-many-options sentinel
        }
        let used_as_placeholder =
            placeholder_refs.contains(key) || defined_placeholders.contains(key);
        if used_as_placeholder && !strict {
            continue;
        }
        if key.is_empty() {
            diagnostics.push(Diagnostic::new(
                severity,
                &option.origin,
                "a line with `=` but no key before it",
            ));
            continue;
        }
        let mut message = format!("unknown option `{key}`");
        if used_as_placeholder {
            message.push_str(" (used as a placeholder; strict mode only allows `set-placeholder`)");
        } else if let Some(long) = key
            .chars()
            .next()
            .filter(|_| key.chars().count() == 1)
            .and_then(options::shortcut)
        {
            message.push_str(&format!(
                "; `-{key}` is the command-line shortcut of `{long}`, write `{long}` in ini files"
            ));
        } else if let Some(s) = *suggestions.entry(key).or_insert_with(|| {
            suggest(
                key,
                options::SUPPORTED
                    .iter()
                    .map(|(k, _)| *k)
                    .chain(options::uwsgi_option_names()),
            )
        }) {
            message.push_str(&format!("; did you mean `{s}`?"));
        }
        diagnostics.push(Diagnostic::new(severity, &option.origin, message));
    }
}

struct Cx<'a> {
    options: &'a [RawOption],
    diagnostics: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn origin(&self, l: &Located) -> Origin {
        self.options
            .get(l.seq)
            .map_or(Origin::CommandLine, |o| o.origin.clone())
    }

    fn key(&self, l: &Located) -> String {
        self.options
            .get(l.seq)
            .map_or_else(String::new, |o| o.key.clone())
    }

    fn error(&mut self, l: &Located, message: String) {
        let origin = self.origin(l);
        self.diagnostics.push(Diagnostic::error(&origin, message));
    }

    fn warning(&mut self, l: &Located, message: String) {
        let origin = self.origin(l);
        self.diagnostics.push(Diagnostic::warning(&origin, message));
    }

    /// Scalar options: the last occurrence wins, as in uWSGI.
    fn last_bool(&self, list: &[Located], default: bool) -> bool {
        list.last()
            .map_or(default, |l| l.value.as_deref().is_none_or(parse_bool))
    }

    fn last_string(&mut self, list: &[Located]) -> Option<String> {
        let l = list.last()?;
        match l.value.as_deref() {
            Some(v) if !v.is_empty() => Some(v.to_string()),
            _ => {
                let key = self.key(l);
                self.error(l, format!("`{key}` needs a value"));
                None
            }
        }
    }

    fn last_path(&mut self, list: &[Located]) -> Option<PathBuf> {
        self.last_string(list).map(PathBuf::from)
    }

    fn last_number(&mut self, list: &[Located], default: u64, max: u64) -> u64 {
        let Some(l) = list.last() else {
            return default;
        };
        let key = self.key(l);
        let text = l.value.as_deref().unwrap_or("");
        let trimmed = text.trim();
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            let mut message = format!("`{key}` must be a non-negative whole number, got `{text}`");
            if trimmed.contains(" ;")
                || trimmed.contains(" #")
                || trimmed.contains("\t#")
                || trimmed.contains("\t;")
            {
                message.push_str(
                    " (uWSGI ini files have no inline comments: put the comment on its own line)",
                );
            } else if options::uwsgi_option(&key).is_some_and(|o| o.immediate)
                && ["$(", "@(", "%("].iter().any(|s| trimmed.contains(s))
            {
                message.push_str(&format!(
                    " (uWSGI applies `{key}` while reading, before `$(...)`, `@(...)` and `%(...)` are expanded)"
                ));
            }
            self.error(l, message);
            return default;
        }
        match trimmed.parse::<u64>() {
            Ok(n) if n <= max => n,
            _ => {
                self.error(l, format!("`{key}` is too large: `{text}` (at most {max})"));
                default
            }
        }
    }

    fn fill(&mut self, raw: &RawVassal, c: &mut VassalConfig) {
        self.sockets(raw, c);
        c.module = self.last_string(&raw.module);
        c.wsgi_file = self.last_path(&raw.wsgi_file);
        c.callable = self.last_string(&raw.callable);
        c.chdir = self.last_path(&raw.chdir);
        c.home = self.last_path(&raw.home);
        for l in &raw.pythonpath {
            match l.value.as_deref() {
                Some(v) if !v.is_empty() => c.pythonpath.push(PathBuf::from(v)),
                _ => self.error(l, "`pythonpath` needs a directory".to_string()),
            }
        }
        for l in &raw.env {
            match l.value.as_deref().and_then(|v| v.split_once('=')) {
                Some((k, v)) if !k.is_empty() => c.env.push((k.to_string(), v.to_string())),
                _ => {
                    let v = l.value.clone().unwrap_or_default();
                    self.error(l, format!("`env` needs `NAME=VALUE`, got `{v}`"));
                }
            }
        }
        c.master = self.last_bool(&raw.master, false);
        let u32_max = u64::from(u32::MAX);
        c.processes = u32::try_from(self.last_number(&raw.processes, 1, u32_max)).unwrap_or(1);
        if c.processes == 0 {
            if let Some(l) = raw.processes.last() {
                self.warning(l, "`processes = 0` means one worker; using 1".to_string());
            }
            c.processes = 1;
        }
        c.threads = u32::try_from(self.last_number(&raw.threads, 1, u32_max)).unwrap_or(1);
        if c.threads == 0 {
            if let Some(l) = raw.threads.last() {
                self.warning(l, "`threads = 0` means one thread; using 1".to_string());
            }
            c.threads = 1;
        }
        c.enable_threads = self.last_bool(&raw.enable_threads, true);
        c.lazy_apps = self.last_bool(&raw.lazy_apps, false);
        // Durations and sizes large enough to mean "never"; beyond that they would
        // overflow when turned into milliseconds or bytes.
        let secs_max = 100 * 365 * 24 * 3600;
        c.harakiri = self.last_number(&raw.harakiri, 0, secs_max);
        c.max_requests = self.last_number(&raw.max_requests, 0, u64::from(u32::MAX));
        c.max_requests_delta = self.last_number(&raw.max_requests_delta, 0, u64::from(u32::MAX));
        c.max_worker_lifetime = self.last_number(&raw.max_worker_lifetime, 0, secs_max);
        c.reload_on_rss = self.last_number(&raw.reload_on_rss, 0, 1 << 30);
        c.worker_reload_mercy = self.last_number(&raw.worker_reload_mercy, 60, secs_max);
        c.chmod_socket = self.chmod(&raw.chmod_socket);
        c.chown_socket = self.last_string(&raw.chown_socket);
        c.vacuum = self.last_bool(&raw.vacuum, false);
        c.die_on_term = self.last_bool(&raw.die_on_term, false);
        c.uid = self.last_string(&raw.uid);
        c.gid = self.last_string(&raw.gid);
        let buffer = self.last_number(&raw.buffer_size, 4096, u64::MAX);
        c.buffer_size = if buffer > 65535 {
            if let Some(l) = raw.buffer_size.last() {
                self.warning(
                    l,
                    format!("`buffer-size = {buffer}` is above the maximum; using 65535"),
                );
            }
            65535
        } else {
            usize::try_from(buffer).unwrap_or(65535)
        };
        c.listen = u32::try_from(self.last_number(&raw.listen, 100, u32_max)).unwrap_or(100);
        c.need_app = self.last_bool(&raw.need_app, true);
        let usize_max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
        c.post_buffering =
            usize::try_from(self.last_number(&raw.post_buffering, 0, usize_max)).unwrap_or(0);
        c.socket_timeout = self.last_number(&raw.socket_timeout, 4, u64::MAX);
        c.disable_logging = self.last_bool(&raw.disable_logging, false);
        c.logto = self.last_path(&raw.logto);
        c.pidfile = self.last_path(&raw.pidfile);
        // An empty forwarded-headers means none; an empty allow list trusts no TCP peer.
        c.forwarded_allow_ips = raw
            .forwarded_allow_ips
            .last()
            .map(|l| l.value.clone().unwrap_or_default());
        c.forwarded_headers = raw
            .forwarded_headers
            .last()
            .map(|l| l.value.clone().unwrap_or_default());
    }

    /// `socket`/`uwsgi-socket`/`http-socket`/`http`, merged in order of appearance.
    fn sockets(&mut self, raw: &RawVassal, c: &mut VassalConfig) {
        // uWSGI's `protocol` sets the default protocol of `socket =` sockets, wherever it is.
        let default = match raw.protocol.last() {
            None => Protocol::Uwsgi,
            Some(l) => match l.value.as_deref().unwrap_or("") {
                "uwsgi" => Protocol::Uwsgi,
                "http" => Protocol::Http,
                other => {
                    let key = self.key(l);
                    self.error(
                        l,
                        format!("`{key} = {other}`: only `uwsgi` and `http` are supported"),
                    );
                    Protocol::Uwsgi
                }
            },
        };
        let mut all: Vec<(&Located, Protocol)> = Vec::new();
        all.extend(raw.socket.iter().map(|l| (l, default.clone())));
        all.extend(raw.uwsgi_socket.iter().map(|l| (l, Protocol::Uwsgi)));
        all.extend(raw.http_socket.iter().map(|l| (l, Protocol::Http)));
        all.extend(raw.http.iter().map(|l| (l, Protocol::Http)));
        all.sort_by_key(|(l, _)| l.seq);
        for (l, protocol) in all {
            match l.value.as_deref().map(str::trim) {
                Some(address) if !address.is_empty() => c.sockets.push(SocketSpec {
                    address: address.to_string(),
                    protocol,
                }),
                _ => {
                    let key = self.key(l);
                    self.error(l, format!("`{key}` needs an address (`:8000`, `127.0.0.1:8000` or `/run/app.sock`)"));
                }
            }
        }
    }

    /// `chmod-socket`: no value or `1` means 666, else exactly three octal digits.
    fn chmod(&mut self, list: &[Located]) -> Option<u32> {
        let l = list.last()?;
        let value = l.value.as_deref().unwrap_or("");
        if value.is_empty() || value == "1" {
            return Some(0o666);
        }
        if value.len() == 3 && value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return u32::from_str_radix(value, 8).ok();
        }
        let key = self.key(l);
        self.error(
            l,
            format!("`{key}` must be three octal digits such as `660`, got `{value}`"),
        );
        None
    }
}
