//! `vassal [uWSGI options]`: serve one WSGI app. `vassal --check --ini FILE`
//! validates a config and exits.

use std::process::ExitCode;

/// eprintln! without its panic when stderr cannot be written (a full disk).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// println! without its panic.
macro_rules! say_out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

const USAGE: &str = "usage: vassal --ini FILE[:SECTION] | vassal [uWSGI options]
       vassal --check --ini FILE      validate a config and exit
Common options (uWSGI names): --socket ADDR, --http-socket ADDR, --http ADDR,
  --protocol=http, -w/--module MOD[:CALLABLE], --wsgi-file FILE, --callable NAME,
  --chdir DIR, --home VENV, --pythonpath DIR, --env K=V, --processes N, --threads N,
  --master, --chmod-socket[=MODE], --vacuum, --buffer-size N, --disable-logging";

fn main() -> ExitCode {
    let fmt = tracing_subscriber::fmt()
        .with_writer(vassal::log::make_writer)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VASSAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Under the emperor (or journald) the supervisor timestamps each line already.
    if std::env::var_os("VASSAL_LOG_TIMESTAMPS").is_some_and(|v| v == "0") {
        fmt.without_time().init();
    } else {
        fmt.init();
    }

    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        say_out!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version") {
        say_out!(
            "vassal {} (embedded Python {})",
            env!("CARGO_PKG_VERSION"),
            vassal::python::BUILD_PYTHON_VERSION
        );
        return ExitCode::SUCCESS;
    }
    let check = args.iter().any(|a| a == "--check");
    args.retain(|a| a != "--check");
    if args.is_empty() {
        say!("{USAGE}");
        return ExitCode::from(2);
    }

    let loaded = match config::from_args(&args) {
        Ok(l) => l,
        Err(e) => {
            say!("{e}");
            say!("vassal: invalid configuration");
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        say!("{w}");
    }
    if check {
        let c = &loaded.config;
        if c.module.is_none() && c.wsgi_file.is_none() {
            say!(
                "error: no app configured: set `module = wsgi:application` or `wsgi-file = app.py`"
            );
            return ExitCode::from(1);
        }
        say_out!("configuration OK");
        return ExitCode::SUCCESS;
    }
    match vassal::run(loaded.config) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            say!("vassal: {e:#}");
            ExitCode::from(1)
        }
    }
}
