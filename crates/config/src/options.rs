//! The option tables: which keys the vassal understands (and under which canonical name),
//! which keys are directives handled while reading, and every option uWSGI 2.0.31 knows
//! (so a real-but-unsupported option is told apart from a typo).

use std::collections::HashMap;
use std::sync::LazyLock;

/// How a command-line option takes its value (getopt's `has_arg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A flag: `--master`.
    None,
    /// `--socket X` or `--socket=X`.
    Required,
    /// Only `--chmod-socket=664`; a following argument is NOT taken.
    Optional,
}

/// Keys the vassal implements, with their canonical name (the `VassalConfig` field they
/// fill). Names are exact, with dashes, as uWSGI spells them.
pub const SUPPORTED: &[(&str, &str)] = &[
    ("socket", "socket"),
    ("uwsgi-socket", "uwsgi-socket"),
    ("http-socket", "http-socket"),
    ("http", "http"),
    ("protocol", "protocol"),
    ("socket-protocol", "protocol"),
    ("module", "module"),
    ("wsgi", "module"),
    ("wsgi-file", "wsgi-file"),
    ("file", "wsgi-file"),
    ("callable", "callable"),
    ("chdir", "chdir"),
    ("home", "home"),
    ("virtualenv", "home"),
    ("venv", "home"),
    ("pyhome", "home"),
    ("pythonpath", "pythonpath"),
    ("python-path", "pythonpath"),
    ("pp", "pythonpath"),
    ("env", "env"),
    ("master", "master"),
    ("processes", "processes"),
    ("workers", "processes"),
    ("threads", "threads"),
    ("enable-threads", "enable-threads"),
    ("lazy-apps", "lazy-apps"),
    // uWSGI's older spelling: it also loads the app in each worker after the fork.
    ("lazy", "lazy-apps"),
    ("harakiri", "harakiri"),
    ("max-requests", "max-requests"),
    ("max-requests-delta", "max-requests-delta"),
    ("max-worker-lifetime", "max-worker-lifetime"),
    ("reload-on-rss", "reload-on-rss"),
    ("worker-reload-mercy", "worker-reload-mercy"),
    ("chmod-socket", "chmod-socket"),
    ("chmod", "chmod-socket"),
    ("chown-socket", "chown-socket"),
    ("vacuum", "vacuum"),
    ("die-on-term", "die-on-term"),
    ("uid", "uid"),
    ("gid", "gid"),
    ("buffer-size", "buffer-size"),
    ("listen", "listen"),
    ("need-app", "need-app"),
    ("post-buffering", "post-buffering"),
    ("socket-timeout", "socket-timeout"),
    ("disable-logging", "disable-logging"),
    ("logto", "logto"),
    ("pidfile", "pidfile"),
    // Ours (see OWN).
    ("forwarded-allow-ips", "forwarded-allow-ips"),
    ("forwarded-headers", "forwarded-headers"),
    ("strict", "strict"),
];

/// Options of ours that uWSGI does not have (gunicorn's `forwarded_allow_ips`, for an
/// http-socket behind a proxy).
pub const OWN: &[&str] = &["forwarded-allow-ips", "forwarded-headers"];

/// Keys consumed while reading (includes, `set`, ...) or meaningless for us (`plugins`:
/// the Python support is built in). They are accepted silently.
pub const DIRECTIVES: &[&str] = &[
    "ini",
    "include",
    "set",
    "set-placeholder",
    "set-ph",
    "plugins",
    "plugin",
    "need-plugin",
    "need-plugins",
    "plugins-dir",
    "plugin-dir",
];

/// uWSGI's logic blocks. They change which of the FOLLOWING options apply, so ignoring them
/// would silently apply options meant to be conditional: they are errors.
pub const LOGIC: &[&str] = &[
    "for",
    "for-glob",
    "for-times",
    "for-readline",
    "endfor",
    "end-for",
    "if-opt",
    "if-not-opt",
    "if-env",
    "if-not-env",
    "ifenv",
    "if-reload",
    "if-not-reload",
    "if-exists",
    "if-not-exists",
    "ifexists",
    "if-file",
    "if-not-file",
    "if-dir",
    "if-not-dir",
    "ifdir",
    "if-plugin",
    "if-not-plugin",
    "if-hostname",
    "if-not-hostname",
    "if-hostname-match",
    "if-not-hostname-match",
    "endif",
    "end-if",
];

/// Command-line shortcuts uWSGI defines for the options above (and a few others), as
/// `(letter, long name)`.
pub const SHORTCUTS: &[(char, &str)] = &[
    ('w', "module"),
    ('s', "socket"),
    ('p', "processes"),
    ('M', "master"),
    ('H', "home"),
    ('T', "enable-threads"),
    ('b', "buffer-size"),
    ('L', "disable-logging"),
    ('l', "listen"),
    ('z', "socket-timeout"),
    ('C', "chmod-socket"),
    ('S', "set"),
    ('t', "harakiri"),
    ('R', "max-requests"),
    ('d', "daemonize"),
    ('i', "single-interpreter"),
    ('m', "memory-report"),
    ('a', "abstract-socket"),
    ('r', "reaper"),
    ('Q', "spooler"),
    ('O', "optimize"),
    ('A', "sharedarea"),
    ('v', "max-vars"),
    ('c', "cgi-mode"),
    ('J', "test"),
];

/// What uWSGI 2.0.31 knows about an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UwsgiOption {
    pub arity: Arity,
    /// Applied while parsing (`UWSGI_OPT_IMMEDIATE`): its value is NOT rewritten by the
    /// `$`/`@`/`%` passes.
    pub immediate: bool,
}

static UWSGI_OPTIONS: LazyLock<HashMap<&'static str, UwsgiOption>> = LazyLock::new(|| {
    include_str!("data/uwsgi_options.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let arity = match fields.next()? {
                "no" => Arity::None,
                "optional" => Arity::Optional,
                _ => Arity::Required,
            };
            let immediate = fields.next() == Some("immediate");
            Some((name, UwsgiOption { arity, immediate }))
        })
        .collect()
});

/// uWSGI's own knowledge of `name`, if it is a uWSGI option.
pub fn uwsgi_option(name: &str) -> Option<UwsgiOption> {
    UWSGI_OPTIONS.get(name).copied()
}

/// Every uWSGI option name (for suggestions).
pub fn uwsgi_option_names() -> impl Iterator<Item = &'static str> {
    UWSGI_OPTIONS.keys().copied()
}

/// The canonical name of a supported key.
pub fn canonical(name: &str) -> Option<&'static str> {
    SUPPORTED.iter().find(|(k, _)| *k == name).map(|(_, c)| *c)
}

pub fn is_directive(name: &str) -> bool {
    DIRECTIVES.contains(&name)
}

pub fn is_logic(name: &str) -> bool {
    LOGIC.contains(&name)
}

/// The long name of a command-line shortcut letter.
pub fn shortcut(letter: char) -> Option<&'static str> {
    SHORTCUTS
        .iter()
        .find(|(c, _)| *c == letter)
        .map(|(_, n)| *n)
}

/// True when `name` is an option (ours or uWSGI's): such names cannot be placeholders.
pub fn is_option(name: &str) -> bool {
    canonical(name).is_some() || uwsgi_option(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_and_directives_are_real_uwsgi_options() {
        for (name, _) in SUPPORTED.iter().filter(|(n, _)| !OWN.contains(n)) {
            assert!(uwsgi_option(name).is_some(), "{name} is not a uWSGI option");
        }
        for name in OWN {
            assert!(
                uwsgi_option(name).is_none(),
                "{name} is a uWSGI option after all"
            );
            assert!(canonical(name).is_some(), "{name} is not supported");
        }
        for name in DIRECTIVES.iter().chain(LOGIC) {
            assert!(uwsgi_option(name).is_some(), "{name} is not a uWSGI option");
        }
        for (_, name) in SHORTCUTS {
            assert!(uwsgi_option(name).is_some(), "{name} is not a uWSGI option");
        }
    }

    #[test]
    fn table_facts() {
        assert!(uwsgi_option_names().count() > 1000);
        assert_eq!(uwsgi_option("master").map(|o| o.arity), Some(Arity::None));
        assert_eq!(
            uwsgi_option("chmod-socket").map(|o| o.arity),
            Some(Arity::Optional)
        );
        assert_eq!(
            uwsgi_option("socket").map(|o| o.arity),
            Some(Arity::Required)
        );
        assert_eq!(uwsgi_option("listen").map(|o| o.immediate), Some(true));
        assert_eq!(uwsgi_option("socket").map(|o| o.immediate), Some(false));
        assert_eq!(canonical("workers"), Some("processes"));
        assert_eq!(canonical("harakiri-verbose"), None);
        assert_eq!(canonical("lazy"), Some("lazy-apps"));
        assert_eq!(shortcut('w'), Some("module"));
    }

    #[test]
    fn census_options_are_known() {
        for name in [
            "harakiri",
            "max-requests",
            "static-map",
            "plugins",
            "py-autoreload",
            "cheaper",
            "thunder-lock",
            "lazy",
            "tuntap-router",
            "zerg-pool",
        ] {
            assert!(uwsgi_option(name).is_some(), "{name}");
        }
        for typo in [
            "procesess",
            "vaccum",
            "chmod-sock",
            "guid",
            "harakiri_verbose",
        ] {
            assert!(uwsgi_option(typo).is_none(), "{typo}");
        }
    }
}
