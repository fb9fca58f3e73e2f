//! The emperor's own config: the `[emperor]` section of `/etc/emperor/emperor.ini`,
//! read with the same uWSGI ini rules (and the same file:line diagnostics) as a
//! vassal's file. Every key may also be given as a command-line flag, which wins.

use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Origin};
use crate::host::{Host, RealHost};
use crate::suggest::suggest;
use crate::ConfigError;

/// Every key of the `[emperor]` section.
pub const EMPEROR_KEYS: &[&str] = &[
    "apps-enabled",
    "run-dir",
    "vassal",
    "control-socket",
    "backoff-min",
    "backoff-max",
    "reload-mercy",
    "start-timeout",
    "vassals-include",
    "vassal-watchdog",
    "max-ini-size",
];

/// Values are `None` when the file does not set them (the emperor's defaults apply).
/// Durations are in milliseconds (the file gives seconds, fractions allowed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmperorConfig {
    pub apps_enabled: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub vassal: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    pub backoff_min_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub reload_mercy_ms: Option<u64>,
    pub start_timeout_ms: Option<u64>,
    /// A ready vassal silent (no WATCHDOG=1) this long is killed; 0 disables.
    pub vassal_watchdog_ms: Option<u64>,
    pub vassals_include: Vec<PathBuf>,
    /// Inis larger than this many bytes are refused unread (`1048576`, `512K`, `1M`).
    pub max_ini_size: Option<u64>,
}

/// A size in bytes with an optional K/M/G suffix (powers of 1024).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (digits, mult) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Reads `[emperor]` from `path`. Unknown keys are warnings with a suggestion;
/// unreadable files and bad values are errors, all reported together.
pub fn load_emperor(path: &Path) -> Result<(EmperorConfig, Vec<Diagnostic>), ConfigError> {
    load_emperor_with(&RealHost::new(), path)
}

pub fn load_emperor_with(
    host: &dyn Host,
    path: &Path,
) -> Result<(EmperorConfig, Vec<Diagnostic>), ConfigError> {
    let spec = format!("{}:emperor", path.display());
    let resolved = crate::resolve_ini(host, &spec);
    let mut diags = resolved.diagnostics;
    let mut cfg = EmperorConfig::default();
    for opt in &resolved.options {
        if opt.placeholder {
            continue;
        }
        let value = opt.value.clone().unwrap_or_default();
        let origin = &opt.origin;
        let path_of = |v: &str| Some(PathBuf::from(v.trim()));
        let mut seconds = |v: &str| -> Option<u64> {
            match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => Some((s * 1000.0).round() as u64),
                _ => {
                    diags.push(Diagnostic::error(
                        origin,
                        format!("`{}` takes seconds (e.g. 0.5 or 30), not `{v}`", opt.key),
                    ));
                    None
                }
            }
        };
        match opt.key.as_str() {
            "apps-enabled" => cfg.apps_enabled = path_of(&value),
            "run-dir" => cfg.run_dir = path_of(&value),
            "vassal" => cfg.vassal = path_of(&value),
            "control-socket" => cfg.control_socket = path_of(&value),
            "backoff-min" => cfg.backoff_min_ms = seconds(&value).or(cfg.backoff_min_ms),
            "backoff-max" => cfg.backoff_max_ms = seconds(&value).or(cfg.backoff_max_ms),
            "reload-mercy" => cfg.reload_mercy_ms = seconds(&value).or(cfg.reload_mercy_ms),
            "start-timeout" => cfg.start_timeout_ms = seconds(&value).or(cfg.start_timeout_ms),
            "vassal-watchdog" => {
                cfg.vassal_watchdog_ms = seconds(&value).or(cfg.vassal_watchdog_ms)
            }
            "vassals-include" => cfg.vassals_include.push(PathBuf::from(value.trim())),
            "max-ini-size" => match parse_size(&value) {
                Some(n) if n > 0 => cfg.max_ini_size = Some(n),
                _ => diags.push(Diagnostic::error(
                    origin,
                    format!("`max-ini-size` takes a size in bytes (e.g. 1048576, 512K or 1M), not `{value}`"),
                )),
            },
            // Directives the reader already applied.
            "ini" | "include" | "set" | "strict" => {}
            key => {
                let mut message = format!("unknown option `{key}` in [emperor]");
                if let Some(s) = suggest(key, EMPEROR_KEYS.iter().copied()) {
                    message.push_str(&format!("; did you mean `{s}`?"));
                }
                diags.push(if resolved.strict {
                    Diagnostic::error(origin, message)
                } else {
                    Diagnostic::warning(origin, message)
                });
            }
        }
    }
    if let (Some(min), Some(max)) = (cfg.backoff_min_ms, cfg.backoff_max_ms) {
        if min > max {
            diags.push(Diagnostic::error(
                &Origin::File {
                    path: path.to_owned(),
                    line: 0,
                },
                "backoff-min is larger than backoff-max",
            ));
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        Err(ConfigError { diagnostics: diags })
    } else {
        Ok((cfg, diags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::MemHost;

    fn load(text: &str) -> Result<(EmperorConfig, Vec<Diagnostic>), ConfigError> {
        let host = MemHost::new("/etc/emperor").file("/etc/emperor/emperor.ini", text);
        load_emperor_with(&host, Path::new("/etc/emperor/emperor.ini"))
    }

    #[test]
    fn reads_the_emperor_section() {
        let (c, w) = load(
            "[uwsgi]\nsocket = x\n[emperor]\napps-enabled = /srv/enabled\nrun-dir = /run\n\
             backoff-min = 0.25\nbackoff-max = 30\nreload-mercy = 10\nvassals-include = /a.ini\n\
             vassals-include = /b.ini\n",
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.apps_enabled, Some(PathBuf::from("/srv/enabled")));
        assert_eq!(c.backoff_min_ms, Some(250));
        assert_eq!(c.backoff_max_ms, Some(30_000));
        assert_eq!(c.reload_mercy_ms, Some(10_000));
        assert_eq!(c.vassals_include.len(), 2);
    }

    #[test]
    fn typos_warn_with_a_suggestion_and_bad_values_fail_with_lines() {
        let (_, w) = load("[emperor]\napps-enabeld = /x\n").unwrap();
        assert_eq!(
            w[0].to_string(),
            "/etc/emperor/emperor.ini:2: warning: unknown option `apps-enabeld` in [emperor]; did you mean `apps-enabled`?"
        );
        let e = load("[emperor]\nreload-mercy = soon\nbackoff-min = -1\n").unwrap_err();
        assert_eq!(e.diagnostics.len(), 2);
        assert_eq!(e.diagnostics[0].line, Some(2));
        assert_eq!(e.diagnostics[1].line, Some(3));
    }

    #[test]
    fn max_ini_size_takes_bytes_with_a_suffix() {
        for (v, want) in [
            ("4096", 4096),
            ("512K", 512 << 10),
            ("1M", 1 << 20),
            ("2g", 2 << 30),
        ] {
            let (c, _) = load(&format!("[emperor]\nmax-ini-size = {v}\n")).unwrap();
            assert_eq!(c.max_ini_size, Some(want), "{v}");
        }
        assert!(load("[emperor]\nmax-ini-size = lots\n").is_err());
        assert!(load("[emperor]\nmax-ini-size = 0\n").is_err());
    }

    #[test]
    fn strict_makes_unknown_keys_errors() {
        assert!(load("[emperor]\nstrict = true\nbogus = 1\n").is_err());
    }
}
