//! `emperor [--config /etc/emperor/emperor.ini] [flags]`: flags override the file's
//! `[emperor]` section, which overrides the defaults.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use emperor::cli::Args;

fn main() -> ExitCode {
    emperor::journal::init_logging();
    let args = Args::parse();
    if let Some(name) = &args.keep_sockets {
        emperor::keeper::run(name);
    }
    let vassal_nofile = emperor::raise_fd_limit();
    match settings(args, vassal_nofile).and_then(emperor::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emperor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn settings(args: Args, vassal_nofile: Option<(u64, u64)>) -> anyhow::Result<emperor::Settings> {
    let file = if args.config.exists() {
        let (cfg, warnings) = config::emperor::load_emperor(&args.config)?;
        for w in warnings {
            eprintln!("{w}");
        }
        cfg
    } else if args.config.as_os_str() != "/etc/emperor/emperor.ini" {
        anyhow::bail!("config file {} does not exist", args.config.display());
    } else {
        config::emperor::EmperorConfig::default()
    };
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let run_dir = absolute(
        args.run_dir
            .or(file.run_dir)
            .unwrap_or_else(proto::default_run_dir),
    );
    let vassal = args.vassal.or(file.vassal).unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("vassal")))
            .unwrap_or_else(|| PathBuf::from("/usr/bin/vassal"))
    });
    let defaults = supervisor::Policy::default();
    let mut backoff = defaults.backoff.clone();
    backoff.min = file.backoff_min_ms.unwrap_or(backoff.min);
    backoff.max = file.backoff_max_ms.unwrap_or(backoff.max);
    Ok(emperor::Settings {
        apps_enabled: absolute(
            args.apps_enabled
                .or(file.apps_enabled)
                .unwrap_or_else(|| PathBuf::from("/etc/emperor/apps-enabled")),
        ),
        control_socket: absolute(
            args.control_socket
                .or(file.control_socket)
                .unwrap_or_else(|| proto::control_socket_in(&run_dir)),
        ),
        run_dir,
        vassal: absolute(vassal),
        vassals_include: file.vassals_include.into_iter().map(absolute).collect(),
        policy: supervisor::Policy {
            backoff,
            start_timeout: file.start_timeout_ms.unwrap_or(defaults.start_timeout),
            reload_mercy: file.reload_mercy_ms.unwrap_or(defaults.reload_mercy),
            stable_after: defaults.stable_after,
            watchdog: file.vassal_watchdog_ms.unwrap_or(defaults.watchdog),
        },
        rescan_every: Duration::from_secs(10),
        debounce: Duration::from_millis(50),
        max_ini_size: file.max_ini_size.unwrap_or(emperor::DEFAULT_MAX_INI_SIZE),
        vassal_nofile,
    })
}
