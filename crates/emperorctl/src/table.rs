//! The `status` table: one row per app, and one row per worker under each app when apps
//! were named.

use proto::{AppStatus, WorkerStatus};

const APP_HEADER: [&str; 8] = [
    "APP",
    "STATE",
    "PID",
    "WORKERS",
    "UPTIME",
    "RESTARTS",
    "LAST EXIT / ERROR",
    "SOCKET",
];

const WORKER_HEADER: [&str; 7] = [
    "ID",
    "PID",
    "STATE",
    "REQUESTS",
    "EXCEPTIONS",
    "RSS",
    "BUSY",
];

/// Indentation of the worker table under its app.
const WORKER_INDENT: &str = "    ";

/// Renders the status table. With `with_workers`, each app row is followed by its
/// workers' table, indented.
pub fn render_status(apps: &[AppStatus], with_workers: bool) -> String {
    if apps.is_empty() {
        return "no apps enabled\n".to_string();
    }
    let rows: Vec<Vec<String>> = apps.iter().map(app_row).collect();
    let app_widths = widths(&APP_HEADER, &rows);
    let mut out = line(&APP_HEADER.map(String::from), &app_widths, "");
    for (app, row) in apps.iter().zip(&rows) {
        out.push_str(&line(row, &app_widths, ""));
        if with_workers && !app.workers.is_empty() {
            let rows: Vec<Vec<String>> = app.workers.iter().map(worker_row).collect();
            let worker_widths = widths(&WORKER_HEADER, &rows);
            out.push_str(&line(
                &WORKER_HEADER.map(String::from),
                &worker_widths,
                WORKER_INDENT,
            ));
            for row in &rows {
                out.push_str(&line(row, &worker_widths, WORKER_INDENT));
            }
        }
        if with_workers {
            out.push_str(&detail(app));
        }
    }
    out
}

/// For `status APP`: the last exit's output, under the row (the column shows only the
/// reason).
fn detail(app: &AppStatus) -> String {
    let Some(output) = app.last_output.as_deref().filter(|o| !o.trim().is_empty()) else {
        return String::new();
    };
    let mut out = format!(
        "{WORKER_INDENT}last output before \"{}\":\n",
        app.last_exit.as_deref().unwrap_or("the last exit")
    );
    for l in output.lines() {
        out.push_str(&format!("{WORKER_INDENT}  {}\n", l.trim_end()));
    }
    out
}

fn app_row(app: &AppStatus) -> Vec<String> {
    vec![
        app.name.clone(),
        app.state.clone(),
        opt(app.pid),
        if app.pid.is_some() || !app.workers.is_empty() {
            app.workers.len().to_string()
        } else {
            "-".to_string()
        },
        app.uptime_secs.map_or_else(dash, duration),
        app.restarts.to_string(),
        exit_or_error(app),
        if app.socket.is_empty() {
            dash()
        } else {
            app.socket.clone()
        },
    ]
}

fn worker_row(w: &WorkerStatus) -> Vec<String> {
    vec![
        w.id.to_string(),
        w.pid.to_string(),
        w.state.clone(),
        w.requests.to_string(),
        w.exceptions.to_string(),
        kib(w.rss_kb),
        w.busy_ms.map_or_else(dash, millis),
    ]
}

/// The error wins over the last exit (it says why the app is not serving); a backoff adds
/// when the next attempt comes. The emperor puts an error's headline first (the exit
/// reason, the first config problem) and detail such as a traceback after it, so a
/// multi-line error is shown by its first line; `status APP` and `--json` have the rest.
fn exit_or_error(app: &AppStatus) -> String {
    let text = match (&app.error, &app.last_exit) {
        (Some(error), _) => first_line(error).to_string(),
        (None, Some(exit)) => first_line(exit).to_string(),
        (None, None) => String::new(),
    };
    let text = match app.next_attempt_secs {
        Some(secs) if text.is_empty() => format!("retry in {}", duration(secs)),
        Some(secs) => format!("{text} (retry in {})", duration(secs)),
        None => text,
    };
    if text.is_empty() {
        dash()
    } else {
        text
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// A human duration: `42s`, `3m12s`, `1h02m`, `2d03h`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// Milliseconds: `850ms`, `1.2s`, then as [`duration`].
fn millis(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        _ => duration(ms / 1000),
    }
}

/// KiB as `512K`, `20.0M`, `1.5G`.
fn kib(kb: u64) -> String {
    match kb {
        0..1024 => format!("{kb}K"),
        1024..1_048_576 => format!("{:.1}M", kb as f64 / 1024.0),
        _ => format!("{:.1}G", kb as f64 / 1_048_576.0),
    }
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(dash, |v| v.to_string())
}

fn dash() -> String {
    "-".to_string()
}

fn widths<const N: usize>(header: &[&str; N], rows: &[Vec<String>]) -> [usize; N] {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// One left-aligned line, columns two spaces apart, no trailing spaces.
fn line(cells: &[String], widths: &[usize], indent: &str) -> String {
    let mut out = String::from(indent);
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            out.push_str(cell);
        } else {
            let pad = width.saturating_sub(cell.chars().count()) + 2;
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_app() -> AppStatus {
        AppStatus {
            name: "example-app".into(),
            state: "ready".into(),
            pid: Some(4242),
            workers: vec![
                WorkerStatus {
                    id: 1,
                    pid: 4243,
                    state: "idle".into(),
                    requests: 1200,
                    exceptions: 0,
                    rss_kb: 20480,
                    busy_ms: None,
                },
                WorkerStatus {
                    id: 2,
                    pid: 4244,
                    state: "busy".into(),
                    requests: 7,
                    exceptions: 1,
                    rss_kb: 512,
                    busy_ms: Some(1250),
                },
            ],
            uptime_secs: Some(192),
            restarts: 0,
            socket: "/run/example-app/socket".into(),
            config: "/etc/emperor/apps-enabled/example-app.ini".into(),
            ..AppStatus::default()
        }
    }

    fn crashing_app() -> AppStatus {
        AppStatus {
            name: "broken".into(),
            state: "backoff".into(),
            restarts: 5,
            last_exit: Some("exited with code 22 (the app could not be loaded)".into()),
            last_output: Some(
                "Traceback (most recent call last):\n  File \"wsgi.py\", line 1\n\
                 ModuleNotFoundError: No module named 'flask'\n"
                    .into(),
            ),
            error: Some(
                "exited with code 22 (the app could not be loaded)\nlast output:\n\
                 Traceback (most recent call last):\n  File \"wsgi.py\", line 1\n\
                 ModuleNotFoundError: No module named 'flask'\n"
                    .into(),
            ),
            socket: "/run/broken/socket".into(),
            next_attempt_secs: Some(16),
            ..AppStatus::default()
        }
    }

    #[test]
    fn app_table() {
        let got = render_status(&[ready_app(), crashing_app()], false);
        let want = "\
APP          STATE    PID   WORKERS  UPTIME  RESTARTS  LAST EXIT / ERROR                                                 SOCKET
example-app  ready    4242  2        3m12s   0         -                                                                 /run/example-app/socket
broken       backoff  -     -        -       5         exited with code 22 (the app could not be loaded) (retry in 16s)  /run/broken/socket
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn app_table_with_workers() {
        let got = render_status(&[ready_app(), crashing_app()], true);
        let want = "\
APP          STATE    PID   WORKERS  UPTIME  RESTARTS  LAST EXIT / ERROR                                                 SOCKET
example-app  ready    4242  2        3m12s   0         -                                                                 /run/example-app/socket
    ID  PID   STATE  REQUESTS  EXCEPTIONS  RSS    BUSY
    1   4243  idle   1200      0           20.0M  -
    2   4244  busy   7         1           512K   1.2s
broken       backoff  -     -        -       5         exited with code 22 (the app could not be loaded) (retry in 16s)  /run/broken/socket
    last output before \"exited with code 22 (the app could not be loaded)\":
      Traceback (most recent call last):
        File \"wsgi.py\", line 1
      ModuleNotFoundError: No module named 'flask'
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn no_apps() {
        assert_eq!(render_status(&[], false), "no apps enabled\n");
    }

    #[test]
    fn exit_or_error_column() {
        let base = AppStatus::default();
        let cases = [
            (base.clone(), "-"),
            (
                AppStatus {
                    last_exit: Some("killed by SIGKILL".into()),
                    ..base.clone()
                },
                "killed by SIGKILL",
            ),
            (
                AppStatus {
                    last_exit: Some("exit status 1".into()),
                    error: Some("app.ini:3: error: bad value".into()),
                    ..base.clone()
                },
                "app.ini:3: error: bad value",
            ),
            (
                // Issue 9 #5: a kill -9 after the app printed a warning.
                AppStatus {
                    last_exit: Some("killed by signal SIGKILL".into()),
                    last_output: Some("WARN the app runs as root".into()),
                    ..base.clone()
                },
                "killed by signal SIGKILL",
            ),
            (
                AppStatus {
                    last_exit: Some("killed by signal SIGSEGV (core dumped)".into()),
                    error: Some(
                        "killed by signal SIGSEGV (core dumped)\nlast output:\nWARN x".into(),
                    ),
                    ..base.clone()
                },
                "killed by signal SIGSEGV (core dumped)",
            ),
            (
                AppStatus {
                    next_attempt_secs: Some(90),
                    ..base.clone()
                },
                "retry in 1m30s",
            ),
        ];
        for (app, want) in cases {
            assert_eq!(exit_or_error(&app), want, "{app:?}");
        }
    }

    #[test]
    fn human_units() {
        let durations = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m00s"),
            (192, "3m12s"),
            (3599, "59m59s"),
            (3600, "1h00m"),
            (3720, "1h02m"),
            (86399, "23h59m"),
            (86400, "1d00h"),
            (183600, "2d03h"),
        ];
        for (secs, want) in durations {
            assert_eq!(duration(secs), want, "{secs}s");
        }
        for (ms, want) in [
            (0, "0ms"),
            (999, "999ms"),
            (1250, "1.2s"),
            (61_000, "1m01s"),
        ] {
            assert_eq!(millis(ms), want, "{ms}ms");
        }
        for (kb, want) in [
            (0, "0K"),
            (1023, "1023K"),
            (1536, "1.5M"),
            (3_145_728, "3.0G"),
        ] {
            assert_eq!(kib(kb), want, "{kb}K");
        }
    }
}
