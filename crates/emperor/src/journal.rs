//! Logging to journald the way it reads well.
//!
//! Under systemd the emperor's stderr is a journal stream (`JOURNAL_STREAM` names its
//! device and inode). Then the emperor logs natively instead (tracing-journald: one
//! datagram per record to /run/systemd/journal/socket): `PRIORITY` from the level,
//! `SYSLOG_IDENTIFIER=emperor`, `EMPEROR_APP` and `EMPEROR_GENERATION` fields, no
//! timestamp inside the message, and a multi-line message as one entry. So
//! `journalctl -u emperor EMPEROR_APP=shop` shows one app, and `-p warning` its
//! problems.
//!
//! A vassal's output arrives as lines on a pipe; [`OutputClassifier`] gives each the
//! priority its text says (the vassal's own `WARN`/`ERROR`, Python logging's
//! `WARNING:`/`ERROR:`/`CRITICAL:`, a traceback) and, natively, joins a traceback
//! into one record. It is pure and table-tested.

use std::sync::atomic::{AtomicBool, Ordering};

static NATIVE: AtomicBool = AtomicBool::new(false);

/// Whether records go to journald natively (multi-line messages stay whole).
pub fn native() -> bool {
    NATIVE.load(Ordering::Relaxed)
}

pub fn set_native(on: bool) {
    NATIVE.store(on, Ordering::Relaxed);
}

/// Installs the emperor's log subscriber: journald natively when stderr is a journal
/// stream (and the native socket answers), else lines on stderr (with timestamps,
/// unless journald reads them anyway). `EMPEROR_LOG` filters, as RUST_LOG would.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("EMPEROR_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let journal = stderr_is_journal();
    if journal {
        if let Ok(layer) = tracing_journald::layer() {
            let layer = layer
                .with_field_prefix(Some("EMPEROR".into()))
                .with_syslog_identifier("emperor".into())
                .with_priority_mappings(tracing_journald::PriorityMappings {
                    info: tracing_journald::Priority::Informational,
                    debug: tracing_journald::Priority::Debug,
                    ..tracing_journald::PriorityMappings::new()
                });
            set_native(true);
            tracing_subscriber::registry()
                .with(filter())
                .with(layer)
                .init();
            return;
        }
    }
    let fmt = tracing_subscriber::fmt()
        .with_writer(|| StderrIgnoringErrors)
        .with_env_filter(filter())
        .with_target(false)
        .with_ansi(!journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if journal {
        // journald stamps every line itself.
        fmt.without_time().init();
    } else {
        fmt.init();
    }
}

/// stderr whose write errors are swallowed: tracing's fmt layer falls back to
/// eprintln! (which panics) when its writer fails, and a log must never stop the
/// emperor.
struct StderrIgnoringErrors;

impl std::io::Write for StderrIgnoringErrors {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// True when fd 2 is the journal stream systemd set up (`JOURNAL_STREAM=dev:ino`).
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a zeroed stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(2, &mut st) == 0 && st.st_dev == dev && st.st_ino == ino
    }
}

/// The severity of one record of a vassal's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warn,
    Info,
    Debug,
}

/// The severity a line names in its first few words: the vassal's own records
/// (`WARN the app runs as root`, padded as ` WARN`), Python logging's default format
/// (`WARNING:root:...`) and Flask's (`[date] ERROR in app: ...`).
pub fn line_severity(line: &str) -> Option<Severity> {
    // A leading bracketed timestamp is not a word.
    let line = match line.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((_, rest)) => rest,
        None => line,
    };
    line.split(|c: char| c.is_whitespace() || c == ':' || c == '[' || c == ']')
        .filter(|w| !w.is_empty())
        .take(3)
        .find_map(|w| match w {
            "ERROR" | "CRITICAL" | "FATAL" => Some(Severity::Error),
            "WARN" | "WARNING" => Some(Severity::Warn),
            "INFO" | "NOTICE" => Some(Severity::Info),
            "DEBUG" | "TRACE" => Some(Severity::Debug),
            _ => None,
        })
}

/// A vassal's request log line, `[pid 12] 10.0.0.1 GET /x => 200 (5 bytes) in 0.31 ms`
/// (the address is empty on a unix http-socket).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLine<'a> {
    pub worker_pid: u32,
    pub remote_addr: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub ms: f64,
}

pub fn parse_request_line(line: &str) -> Option<RequestLine<'_>> {
    let rest = line.strip_prefix("[pid ")?;
    let (pid, rest) = rest.split_once("] ")?;
    let (left, right) = rest.rsplit_once(" => ")?;
    let (addr, left) = left.split_once(' ')?;
    let (method, uri) = left.split_once(' ')?;
    let (status, right) = right.split_once(" (")?;
    let (bytes, right) = right.split_once(" bytes) in ")?;
    let ms = right.strip_suffix(" ms")?;
    Some(RequestLine {
        worker_pid: pid.parse().ok()?,
        remote_addr: addr,
        method,
        uri,
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        ms: ms.parse().ok()?,
    })
}

/// Turns a vassal's output lines into log records. A Python traceback
/// (`Traceback (most recent call last):`, its indented lines, and the exception line
/// that ends it) is an error; with `join`, it is one record.
#[derive(Debug, Default)]
pub struct OutputClassifier {
    join: bool,
    /// The traceback being read.
    block: Option<String>,
}

impl OutputClassifier {
    pub fn new(join: bool) -> Self {
        OutputClassifier { join, block: None }
    }

    /// The records `line` completes.
    pub fn feed(&mut self, line: &str) -> Vec<(Severity, String)> {
        let indented = line.starts_with([' ', '\t']);
        if let Some(block) = self.block.as_mut() {
            if self.join {
                block.push('\n');
                block.push_str(line);
            }
            if !indented {
                // The exception line ends the traceback.
                let done = self.block.take().expect("checked");
                return vec![(
                    Severity::Error,
                    if self.join { done } else { line.to_owned() },
                )];
            }
            return if self.join {
                Vec::new()
            } else {
                vec![(Severity::Error, line.to_owned())]
            };
        }
        if line.starts_with("Traceback (most recent call last):") {
            self.block = Some(line.to_owned());
            return if self.join {
                Vec::new()
            } else {
                vec![(Severity::Error, line.to_owned())]
            };
        }
        vec![(
            line_severity(line).unwrap_or(Severity::Info),
            line.to_owned(),
        )]
    }

    /// At the end of the output: what is still held.
    pub fn flush(&mut self) -> Option<(Severity, String)> {
        let block = self.block.take()?;
        self.join.then_some((Severity::Error, block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_table() {
        use Severity::*;
        let cases: &[(&str, Option<Severity>)] = &[
            (
                " WARN the app runs as root; set uid = and gid =",
                Some(Warn),
            ),
            ("ERROR cannot load app wsgi:application: boom", Some(Error)),
            (" INFO ready: 2 worker(s)", Some(Info)),
            ("WARNING:root:disk almost full", Some(Warn)),
            ("CRITICAL:app:down", Some(Error)),
            (
                "ERROR:django.request:Internal Server Error: /x",
                Some(Error),
            ),
            (
                "[2026-12-04 03:00:00,123] ERROR in app: Exception on / [GET]",
                Some(Error),
            ),
            (
                "[2026-12-04 03:00:00 +0000] [12] [INFO] Booting",
                Some(Info),
            ),
            ("[pid 12] 127.0.0.1 GET / => 200 (2 bytes) in 0.1 ms", None),
            ("hello from print()", None),
            // A level word late in the line is text, not a level.
            ("user said the word ERROR in a form field", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(line_severity(line), *want, "{line:?}");
        }
    }

    #[test]
    fn request_lines() {
        let r = parse_request_line("[pid 12] 10.0.0.1 GET /x?a=b c => 200 (5 bytes) in 0.31 ms");
        assert_eq!(
            r,
            Some(RequestLine {
                worker_pid: 12,
                remote_addr: "10.0.0.1",
                method: "GET",
                uri: "/x?a=b c",
                status: 200,
                bytes: 5,
                ms: 0.31,
            })
        );
        let unix = parse_request_line("[pid 5673]  POST /full0 => 500 (2 bytes) in 10.57 ms")
            .expect("an empty address");
        assert_eq!(
            (unix.remote_addr, unix.method, unix.status),
            ("", "POST", 500)
        );
        for not in [
            "[pid x] 1 GET / => 200 (1 bytes) in 1 ms",
            "[pid 1] 1 GET / => 200 (1 bytes)",
            "print from the app",
            " WARN the app runs as root",
        ] {
            assert_eq!(parse_request_line(not), None, "{not}");
        }
    }

    const TRACEBACK: &[&str] = &[
        "Traceback (most recent call last):",
        "  File \"/srv/app/wsgi.py\", line 3, in <module>",
        "    import missing",
        "ModuleNotFoundError: No module named 'missing'",
    ];

    #[test]
    fn a_traceback_is_one_error_record_when_joined() {
        let mut c = OutputClassifier::new(true);
        let mut out = c.feed(" WARN before");
        for l in TRACEBACK {
            out.extend(c.feed(l));
        }
        out.extend(c.feed("after"));
        assert_eq!(
            out,
            vec![
                (Severity::Warn, " WARN before".to_owned()),
                (Severity::Error, TRACEBACK.join("\n")),
                (Severity::Info, "after".to_owned()),
            ]
        );
        assert_eq!(c.flush(), None);
    }

    #[test]
    fn a_traceback_is_error_lines_when_not_joined() {
        let mut c = OutputClassifier::new(false);
        let out: Vec<(Severity, String)> = TRACEBACK.iter().flat_map(|l| c.feed(l)).collect();
        let want: Vec<(Severity, String)> = TRACEBACK
            .iter()
            .map(|l| (Severity::Error, (*l).to_owned()))
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn a_cut_off_traceback_is_flushed_at_the_end() {
        let mut c = OutputClassifier::new(true);
        assert!(c.feed(TRACEBACK[0]).is_empty());
        assert!(c.feed(TRACEBACK[1]).is_empty());
        assert_eq!(
            c.flush(),
            Some((Severity::Error, TRACEBACK[..2].join("\n")))
        );
    }
}
