//! `vassal` serves one WSGI app, like `uwsgi --ini app.ini` does.
//!
//! Start-up order (mirrors uWSGI where it matters): read the config, redirect logs
//! (`logto`), set `env`, take the listening sockets from LISTEN_FDS or bind them
//! (chmod/chown applied before listen), write the pidfile, `chdir`, drop privileges,
//! start CPython (with the venv), import the app once, then fork the workers from the
//! single-threaded master (`master.rs`). With `lazy-apps` the master never starts
//! CPython; each worker does after the fork. Workers report to the master through a
//! shared-memory scoreboard (`scoreboard.rs`); harakiri runs in each worker
//! (`harakiri.rs`); a SIGHUP reload re-executes the master (`restart.rs`).
//! Everything that touches CPython is in `python/`.

pub mod body;
pub mod conn;
mod harakiri;
pub mod log;
mod master;
mod meter;
pub mod python;
pub mod response;
mod restart;
pub mod scoreboard;
mod serve;
pub mod vars;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use config::VassalConfig;

/// Exit code when the app cannot be loaded (uWSGI's UWSGI_FAILED_APP_CODE), so a
/// supervisor can tell a broken deploy from a crash.
pub const EXIT_APP_LOAD_FAILED: i32 = 22;

pub fn run(cfg: VassalConfig) -> anyhow::Result<i32> {
    let restart = restart::Restart::capture();
    let reloaded = restart.reloads > 0;
    // After a reload the log descriptors are inherited (and the file may no longer be
    // writable by the unprivileged user), like uWSGI.
    if let Some(path) = &cfg.logto {
        if reloaded {
            log::inherited(path);
        } else {
            log::redirect(path);
        }
    }
    for (k, v) in &cfg.env {
        // SAFETY: single-threaded start-up, before Python or any thread exists.
        unsafe { std::env::set_var(k, v) };
    }
    let notifier = sockets::notify::Notifier::from_env();
    forwarded(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nofile = raise_nofile();
    tracing::debug!(
        "open-files limit {nofile}: a worker parks up to {} connections waiting for their request",
        park_limit(nofile)
    );

    let listeners = match sockets::from_listen_fds(&cfg.sockets).context("LISTEN_FDS")? {
        Some(mut l) => {
            // Our own earlier image bound these: keep vacuuming what it created.
            for (listener, path) in l.iter_mut().zip(&restart.created_sockets) {
                if listener.name == path.display().to_string()
                    || std::fs::canonicalize(&listener.name).ok()
                        == std::fs::canonicalize(path).ok()
                {
                    listener.created_path = Some(path.clone());
                }
            }
            l
        }
        None => {
            if cfg.sockets.is_empty() {
                anyhow::bail!(
                    "no socket to serve on: add `socket = /run/app/socket` (uwsgi protocol, for \
                     nginx uwsgi_pass) or `http-socket = :8000` (HTTP) to the config"
                );
            }
            let opts = sockets::BindOptions {
                backlog: cfg.listen,
                chmod: cfg.chmod_socket,
                chown: cfg.chown_socket.as_deref(),
            };
            let mut out = Vec::new();
            for spec in &cfg.sockets {
                out.push(sockets::bind(spec, &opts)?);
            }
            out
        }
    };
    for l in &listeners {
        l.set_nonblocking().context("listening socket")?;
    }
    if let Some(p) = cfg.pidfile.as_ref().filter(|_| !reloaded) {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("pidfile {}", p.display()))?;
    }
    if let Some(dir) = &cfg.chdir {
        std::env::set_current_dir(dir).with_context(|| format!("chdir {}", dir.display()))?;
    }
    sockets::privileges::drop_privileges(cfg.uid.as_deref(), cfg.gid.as_deref())
        .map_err(|e| anyhow::anyhow!("dropping privileges: {e}"))?;

    let app = if cfg.lazy_apps {
        // The master never starts CPython: each worker does, after the fork.
        let cfg = cfg.clone();
        worker::App::Lazy(Arc::new(move || {
            if let Err(e) = python::initialize(venv(&cfg).as_deref()) {
                tracing::error!("{e}");
                return Err(1);
            }
            match load_app(&cfg) {
                Ok(app) => Ok(shared(&cfg, Some(app))),
                Err(()) if cfg.need_app => Err(EXIT_APP_LOAD_FAILED),
                Err(()) => {
                    tracing::error!("need-app = false: serving 500 for every request");
                    Ok(shared(&cfg, None))
                }
            }
        }))
    } else {
        python::initialize(venv(&cfg).as_deref())?;
        let app = match load_app(&cfg) {
            Ok(app) => Some(app),
            Err(()) if cfg.need_app => {
                cleanup(&cfg, &listeners);
                return Ok(EXIT_APP_LOAD_FAILED);
            }
            Err(()) => {
                tracing::error!("need-app = false: serving 500 for every request");
                None
            }
        };
        let threads = python::python_thread_count();
        if threads > 1 {
            tracing::warn!(
                "the app started {} Python thread(s) while being imported; the workers are \
                 forked from this process, and those threads do not run in them (set \
                 `lazy-apps = true` to import the app in each worker instead)",
                threads - 1
            );
        }
        worker::App::Preloaded(shared(&cfg, app))
    };

    let listeners = Arc::new(listeners);
    let outcome = master::run(
        listeners.clone(),
        app,
        master::MasterSpec {
            processes: cfg.processes.max(1),
            threads: cfg.threads.max(1),
            mercy: Duration::from_secs(cfg.worker_reload_mercy),
            lazy: cfg.lazy_apps,
            harakiri: (cfg.harakiri > 0).then(|| Duration::from_secs(cfg.harakiri)),
            max_requests: cfg.max_requests,
            max_requests_delta: cfg.max_requests_delta,
            max_worker_lifetime: (cfg.max_worker_lifetime > 0)
                .then(|| Duration::from_secs(cfg.max_worker_lifetime)),
            reload_on_rss_kb: cfg.reload_on_rss * 1024,
        },
        &notifier,
    )?;
    match outcome {
        master::Outcome::Exit(code) => {
            cleanup(&cfg, &listeners);
            tracing::info!("stopped");
            Ok(code)
        }
        master::Outcome::Reexec => Err(restart.exec(&listeners).context("re-exec for SIGHUP")),
    }
}

fn venv(cfg: &VassalConfig) -> Option<PathBuf> {
    cfg.home
        .clone()
        .or_else(|| std::env::var_os("VIRTUAL_ENV").map(PathBuf::from))
}

/// What every serving thread of a worker shares.
fn shared(cfg: &VassalConfig, app: Option<python::Py<python::PyAny>>) -> Arc<serve::Shared> {
    Arc::new(serve::Shared {
        app,
        buffer_size: cfg.buffer_size,
        socket_timeout: Duration::from_secs(cfg.socket_timeout.max(1)),
        log_requests: !cfg.disable_logging,
        // gunicorn's request-line limit (4094) unless buffer-size asks for more: long
        // URLs need the same knob as big uwsgi vars blocks.
        http_limits: wire::http::Limits {
            max_request_line: cfg.buffer_size.max(4094),
            max_head_size: (64 * 1024).max(cfg.buffer_size),
            ..wire::http::Limits::default()
        },
        server_name: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
        prebuffer: prebuffer(cfg.post_buffering),
        forwarded_headers: forwarded(cfg).map(|f| f.0).unwrap_or_default(),
        forwarded_allow: forwarded(cfg)
            .map(|f| f.1)
            .unwrap_or_else(|_| wire::http::forwarded::AllowIps::parse("").expect("empty")),
        park_limit: park_limit(nofile_limit()),
        stopping: AtomicBool::new(false),
        in_accept: std::sync::atomic::AtomicUsize::new(0),
    })
}

/// `forwarded-headers` and `forwarded-allow-ips`, parsed (checked once at start-up).
fn forwarded(
    cfg: &VassalConfig,
) -> Result<
    (
        wire::http::forwarded::Which,
        wire::http::forwarded::AllowIps,
    ),
    String,
> {
    use wire::http::forwarded::{AllowIps, Which};
    let which = match &cfg.forwarded_headers {
        Some(list) => Which::parse(list).map_err(|e| format!("forwarded-headers: {e}"))?,
        None => Which::DEFAULT,
    };
    let allow = match &cfg.forwarded_allow_ips {
        Some(list) => AllowIps::parse(list).map_err(|e| format!("forwarded-allow-ips: {e}"))?,
        None => AllowIps::loopback(),
    };
    Ok((which, allow))
}

/// Bodies read whole before the app is called (see README, "Where we differ"): at
/// least 64 KiB, `post-buffering` when larger, at most 1 MiB (uWSGI would spool
/// bigger ones to a temp file; those stream to the app here).
fn prebuffer(post_buffering: usize) -> u64 {
    (post_buffering as u64).clamp(64 << 10, 1 << 20)
}

/// Connections a worker parks at most: 1024, or fewer when the fd limit is low
/// (64 fds stay free for the app and the listeners).
fn park_limit(nofile: u64) -> usize {
    nofile.saturating_sub(64).clamp(16, 1024) as usize
}

fn nofile_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

/// Raises the soft fd limit to the hard one (as nginx and systemd do for their
/// services): parked client connections each hold an fd. Returns the limit in force.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the open-files limit from {soft} to {hard}: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

fn app_source(cfg: &VassalConfig) -> Option<python::AppSource> {
    let callable = cfg.callable.clone();
    if let Some(m) = &cfg.module {
        // uWSGI also accepts a file path as `module`.
        if m.ends_with(".py") || m.contains('/') {
            return Some(python::AppSource::File {
                path: PathBuf::from(m),
                callable: callable.unwrap_or_else(|| "application".into()),
            });
        }
        let (module, c) = match m.split_once(':') {
            Some((m, c)) => (m.to_owned(), Some(c.to_owned())),
            None => (m.clone(), None),
        };
        return Some(python::AppSource::Module {
            module,
            callable: c.or(callable).unwrap_or_else(|| "application".into()),
        });
    }
    cfg.wsgi_file.as_ref().map(|f| python::AppSource::File {
        path: f.clone(),
        callable: callable.unwrap_or_else(|| "application".into()),
    })
}

/// Imports the app; on failure prints the traceback and a one-line reason.
fn load_app(cfg: &VassalConfig) -> Result<python::Py<python::PyAny>, ()> {
    let Some(source) = app_source(cfg) else {
        tracing::error!(
            "no app configured: set `module = wsgi:application` or `wsgi-file = app.py`"
        );
        return Err(());
    };
    python::Python::attach(|py| {
        if log::logto().is_some() {
            if let Err(e) = python::install_log_streams(py) {
                tracing::warn!("cannot route Python's stdout/stderr through the log writer: {e}");
            }
        }
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        if let Err(e) = python::extend_sys_path(py, &cwd, &cfg.pythonpath) {
            python::print_error(py, &e);
            return Err(());
        }
        match python::load_app(py, &source) {
            Ok(app) => {
                tracing::info!("loaded app {source}");
                Ok(app)
            }
            Err(python::LoadError::Python(e)) => {
                python::print_error(py, &e);
                tracing::error!("cannot load app {source}: {}", e);
                Err(())
            }
            Err(e) => {
                tracing::error!("cannot load app {source}: {e}");
                Err(())
            }
        }
    })
}

fn cleanup(cfg: &VassalConfig, listeners: &[sockets::Listener]) {
    if cfg.vacuum {
        for l in listeners {
            if let Some(p) = &l.created_path {
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some(p) = &cfg.pidfile {
            let _ = std::fs::remove_file(p);
        }
    }
}
