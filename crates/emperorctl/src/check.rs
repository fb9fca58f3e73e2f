//! `emperorctl check FILE...`: validates app ini files with the same loader the emperor
//! uses, without talking to it.

use std::io::Write;

use config::{Diagnostic, Severity};
use serde_json::json;

use crate::error::CtlError;

/// The result of loading one file.
pub struct FileReport {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl FileReport {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Loads one `FILE` or `FILE:SECTION` (the same spec `vassal --ini` takes).
pub fn check_file(spec: &str) -> FileReport {
    let diagnostics = match config::load_ini(spec) {
        Ok(loaded) => loaded.warnings,
        Err(error) => error.diagnostics,
    };
    FileReport {
        file: spec.to_string(),
        diagnostics,
    }
}

/// Prints every diagnostic of every file, then one verdict line per file; fails when any
/// file has an error.
pub fn run(specs: &[String], json: bool, out: &mut impl Write) -> Result<(), CtlError> {
    let reports: Vec<FileReport> = specs.iter().map(|s| check_file(s)).collect();
    if json {
        serde_json::to_writer_pretty(&mut *out, &to_json(&reports))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&reports).as_bytes())?;
    }
    match reports.iter().filter(|r| r.has_errors()).count() {
        0 => Ok(()),
        failed => Err(CtlError::CheckFailed(failed)),
    }
}

fn render(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for report in reports {
        for diagnostic in &report.diagnostics {
            out.push_str(&format!("{diagnostic}\n"));
        }
        let count = |severity| {
            report
                .diagnostics
                .iter()
                .filter(|d| d.severity == severity)
                .count()
        };
        let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
        let verdict = match (errors, warnings) {
            (0, 0) => "ok".to_string(),
            (0, w) => format!("ok, {w} warning{}", plural(w)),
            (e, 0) => format!("invalid, {e} error{}", plural(e)),
            (e, w) => format!("invalid, {e} error{}, {w} warning{}", plural(e), plural(w)),
        };
        out.push_str(&format!("{}: {verdict}\n", report.file));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn to_json(reports: &[FileReport]) -> serde_json::Value {
    let files: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let diagnostics: Vec<serde_json::Value> = r
                .diagnostics
                .iter()
                .map(|d| {
                    json!({
                        "severity": d.severity.to_string(),
                        "file": d.file.as_ref().map(|f| f.display().to_string()),
                        "line": d.line,
                        "message": d.message,
                    })
                })
                .collect();
            json!({ "file": r.file, "ok": !r.has_errors(), "diagnostics": diagnostics })
        })
        .collect();
    json!({ "files": files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(severity: Severity, line: u32, message: &str) -> Diagnostic {
        Diagnostic {
            severity,
            file: Some("app.ini".into()),
            line: Some(line),
            message: message.into(),
        }
    }

    #[test]
    fn verdicts() {
        let reports = [
            FileReport {
                file: "good.ini".into(),
                diagnostics: vec![],
            },
            FileReport {
                file: "app.ini".into(),
                diagnostics: vec![
                    diag(Severity::Warning, 2, "unknown option `procesess`"),
                    diag(Severity::Error, 3, "bad value"),
                ],
            },
        ];
        assert_eq!(
            render(&reports),
            "good.ini: ok\n\
             app.ini:2: warning: unknown option `procesess`\n\
             app.ini:3: error: bad value\n\
             app.ini: invalid, 1 error, 1 warning\n"
        );
        let json = to_json(&reports);
        assert_eq!(json["files"][0]["ok"], true);
        assert_eq!(json["files"][1]["ok"], false);
        assert_eq!(json["files"][1]["diagnostics"][1]["line"], 3);
    }
}
