//! Diagnostics: every problem found while reading a configuration, with where it came from.
//!
//! The loader never stops at the first problem: it collects [`Diagnostic`]s and the caller
//! decides (errors make [`crate::load_ini`] fail, warnings ride along in [`crate::Loaded`]).

use std::fmt;
use std::path::PathBuf;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The configuration is usable; something was ignored or adjusted.
    Warning,
    /// The configuration must not be used.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem, located at `file:line` (or on the command line when `file` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Option<PathBuf>,
    pub line: Option<u32>,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(severity: Severity, origin: &Origin, message: impl Into<String>) -> Self {
        let (file, line) = match origin {
            Origin::File { path, line } => (Some(path.clone()), (*line > 0).then_some(*line)),
            Origin::CommandLine => (None, None),
        };
        Diagnostic {
            severity,
            file,
            line,
            message: message.into(),
        }
    }

    pub(crate) fn error(origin: &Origin, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, origin, message)
    }

    pub(crate) fn warning(origin: &Origin, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, origin, message)
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => f.write_str("command line: ")?,
        }
        write!(f, "{}: {}", self.severity, self.message)
    }
}

/// Where an option came from. Line 0 means "the file as a whole" (e.g. it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: u32 },
    CommandLine,
}

/// The configuration cannot be used; `diagnostics` holds every problem found (errors and
/// the warnings that came with them), in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let cases = [
            (
                Diagnostic {
                    severity: Severity::Warning,
                    file: Some("path/to/app.ini".into()),
                    line: Some(12),
                    message: "unknown option `procesess`; did you mean `processes`?".into(),
                },
                "path/to/app.ini:12: warning: unknown option `procesess`; did you mean `processes`?",
            ),
            (
                Diagnostic {
                    severity: Severity::Error,
                    file: None,
                    line: None,
                    message: "x".into(),
                },
                "command line: error: x",
            ),
            (
                Diagnostic {
                    severity: Severity::Error,
                    file: Some("a.ini".into()),
                    line: None,
                    message: "cannot read".into(),
                },
                "a.ini: error: cannot read",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(d.to_string(), want);
        }
    }

    #[test]
    fn config_error_lists_all() {
        let o = Origin::CommandLine;
        let e = ConfigError {
            diagnostics: vec![Diagnostic::error(&o, "a"), Diagnostic::warning(&o, "b")],
        };
        assert_eq!(
            e.to_string(),
            "command line: error: a\ncommand line: warning: b"
        );
    }
}
