//! Table-driven tests of the typed layer: ini text in, VassalConfig or diagnostics out.

use config::{
    from_args_with, load_ini_with, ConfigError, Loaded, MemHost, Protocol, Severity, SocketSpec,
    VassalConfig,
};

fn host_with(ini: &str) -> MemHost {
    MemHost::new("/srv/app")
        .file("/srv/app/app.ini", ini)
        .env("PORT", "8000")
}

fn load(ini: &str) -> Result<Loaded, ConfigError> {
    load_ini_with(&host_with(ini), "app.ini")
}

fn config(ini: &str) -> VassalConfig {
    match load(&format!("[uwsgi]\n{ini}")) {
        Ok(l) => l.config,
        Err(e) => panic!("{ini:?} failed:\n{e}"),
    }
}

/// Diagnostics as "line: severity: message" strings.
fn problems(ini: &str) -> Vec<String> {
    let diagnostics = match load(&format!("[uwsgi]\n{ini}")) {
        Ok(l) => l.warnings,
        Err(e) => e.diagnostics,
    };
    diagnostics
        .iter()
        .map(|d| format!("{}: {}: {}", d.line.unwrap_or(0), d.severity, d.message))
        .collect()
}

#[test]
fn booleans() {
    for (value, want) in [
        ("true", true),
        ("True", true),
        ("1", true),
        ("yes", true),
        ("on", true),
        ("", true),
        ("anything", true),
        ("false", false),
        ("FALSE", false),
        ("off", false),
        ("No", false),
        ("0", false),
        ("00", true),
    ] {
        assert_eq!(
            config(&format!("master = {value}")).master,
            want,
            "master = {value}"
        );
    }
    assert!(config("master").master, "bare key");
    assert!(!config("master\nmaster = false").master, "last wins");
    assert!(!config("enable-threads = false").enable_threads);
    for (ini, lazy) in [
        ("", false),
        ("lazy-apps = true", true),
        ("lazy = true", true),
        ("lazy", true),
        ("lazy-apps = true\nlazy = false", false),
    ] {
        assert_eq!(config(ini).lazy_apps, lazy, "{ini}");
    }
    assert!(config("").enable_threads, "default");
    assert!(config("").need_app, "default");
}

#[test]
fn integers() {
    for (ini, processes) in [
        ("processes = 4", 4),
        ("processes =  4  ", 4),
        ("workers = 3", 3),
        ("processes = 2\nworkers = 5", 5),
        ("", 1),
    ] {
        assert_eq!(config(ini).processes, processes, "{ini}");
    }
    #[rustfmt::skip]
    let bad: &[(&str, &str)] = &[
        ("processes = -1", "2: error: `processes` must be a non-negative whole number, got `-1`"),
        ("processes = 4x", "2: error: `processes` must be a non-negative whole number, got `4x`"),
        ("processes", "2: error: `processes` must be a non-negative whole number, got ``"),
        ("threads = 1.5", "2: error: `threads` must be a non-negative whole number, got `1.5`"),
        ("processes = 99999999999", "2: error: `processes` is too large: `99999999999` (at most 4294967295)"),
        ("buffer-size = 65536  # Increase buffer", "2: error: `buffer-size` must be a non-negative whole number, got `65536  # Increase buffer` (uWSGI ini files have no inline comments: put the comment on its own line)"),
        ("processes = 0", "2: warning: `processes = 0` means one worker; using 1"),
        ("listen = $(PORT)", "2: error: `listen` must be a non-negative whole number, got `$(PORT)` (uWSGI applies `listen` while reading, before `$(...)`, `@(...)` and `%(...)` are expanded)"),
        ("buffer-size = 81920", "2: warning: `buffer-size = 81920` is above the maximum; using 65535"),
    ];
    for (ini, want) in bad {
        assert_eq!(problems(ini), vec![want.to_string()], "{ini}");
    }
    let c = config("buffer-size = 32768\nlisten = 1024\npost-buffering = 8192\nsocket-timeout = 30\nthreads = 8");
    assert_eq!(
        (
            c.buffer_size,
            c.listen,
            c.post_buffering,
            c.socket_timeout,
            c.threads
        ),
        (32768, 1024, 8192, 30, 8)
    );
    assert_eq!(config("buffer-size = 99999").buffer_size, 65535);
    #[rustfmt::skip]
    let health: &[(&str, [u64; 6])] = &[
        // [harakiri, max-requests, max-requests-delta, max-worker-lifetime, reload-on-rss, worker-reload-mercy]
        ("", [0, 0, 0, 0, 0, 60]),
        ("harakiri = 30", [30, 0, 0, 0, 0, 60]),
        ("max-requests = 1000\nmax-requests-delta = 10", [0, 1000, 10, 0, 0, 60]),
        ("max-worker-lifetime = 3600\nreload-on-rss = 512", [0, 0, 0, 3600, 512, 60]),
        ("worker-reload-mercy = 5\nworker-reload-mercy = 7", [0, 0, 0, 0, 0, 7]),
    ];
    for (ini, want) in health {
        let c = config(ini);
        let got = [
            c.harakiri,
            c.max_requests,
            c.max_requests_delta,
            c.max_worker_lifetime,
            c.reload_on_rss,
            c.worker_reload_mercy,
        ];
        assert_eq!(&got, want, "{ini}");
    }
    #[rustfmt::skip]
    let bad_health: &[(&str, &str)] = &[
        ("harakiri = 3s", "2: error: `harakiri` must be a non-negative whole number, got `3s`"),
        ("reload-on-rss = 1.5", "2: error: `reload-on-rss` must be a non-negative whole number, got `1.5`"),
        ("max-requests = 99999999999", "2: error: `max-requests` is too large: `99999999999` (at most 4294967295)"),
    ];
    for (ini, want) in bad_health {
        assert_eq!(problems(ini), vec![want.to_string()], "{ini}");
    }
    // Magic variables first, then placeholder math (the fixed test host has 4 cores).
    assert_eq!(config("processes = %(%k * 2)").processes, 8);
    assert_eq!(config("http-socket = :$(PORT)\nlisten = 64").listen, 64);
}

#[test]
fn chmod_socket() {
    for (ini, want) in [
        ("", None),
        ("chmod-socket", Some(0o666)),
        ("chmod-socket = 1", Some(0o666)),
        ("chmod-socket = 660", Some(0o660)),
        ("chmod = 777", Some(0o777)),
        ("chmod-socket = 000", Some(0)),
    ] {
        assert_eq!(config(ini).chmod_socket, want, "{ini}");
    }
    for bad in ["66", "0660", "888", "abc", "6 6"] {
        let p = problems(&format!("chmod-socket = {bad}"));
        assert_eq!(
            p,
            vec![format!(
                "2: error: `chmod-socket` must be three octal digits such as `660`, got `{bad}`"
            )]
        );
    }
}

#[test]
fn strings_and_paths() {
    let c = config("module = wsgi:app\nwsgi = mysite.wsgi\nfile = app.py\ncallable = app\nchdir = /srv\nvirtualenv = /venv\nhome = /venv2\npythonpath = .\npython-path = /lib\nuid = www-data\ngid = 33\nchown-socket = nginx:nginx\nlogto = /var/log/app.log\npidfile = /run/app.pid");
    assert_eq!(c.module.as_deref(), Some("mysite.wsgi"));
    assert_eq!(c.wsgi_file.as_deref(), Some(std::path::Path::new("app.py")));
    assert_eq!(c.callable.as_deref(), Some("app"));
    assert_eq!(c.home.as_deref(), Some(std::path::Path::new("/venv2")));
    assert_eq!(
        c.pythonpath,
        vec![std::path::PathBuf::from("."), "/lib".into()]
    );
    assert_eq!(
        (c.uid.as_deref(), c.gid.as_deref()),
        (Some("www-data"), Some("33"))
    );
    assert_eq!(c.chown_socket.as_deref(), Some("nginx:nginx"));
    assert!(c.logto.is_some() && c.pidfile.is_some() && c.chdir.is_some());
    assert_eq!(
        problems("module ="),
        vec!["2: error: `module` needs a value".to_string()]
    );
}

#[test]
fn env_lines() {
    let c = config("env = A=1\nenv = B=x=y\nenv = C=");
    assert_eq!(
        c.env,
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "x=y".into()),
            ("C".into(), String::new())
        ]
    );
    assert_eq!(
        problems("env = NOVALUE"),
        vec!["2: error: `env` needs `NAME=VALUE`, got `NOVALUE`".to_string()]
    );
    assert_eq!(
        problems("env = =x"),
        vec!["2: error: `env` needs `NAME=VALUE`, got `=x`".to_string()]
    );
}

#[test]
fn sockets() {
    let uwsgi = |a: &str| SocketSpec {
        address: a.into(),
        protocol: Protocol::Uwsgi,
    };
    let http = |a: &str| SocketSpec {
        address: a.into(),
        protocol: Protocol::Http,
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<SocketSpec>)> = vec![
        ("socket = /run/app.sock", vec![uwsgi("/run/app.sock")]),
        ("socket = 127.0.0.1:3031\nhttp = :8000", vec![uwsgi("127.0.0.1:3031"), http(":8000")]),
        ("http-socket = :$(PORT)", vec![http(":8000")]),
        ("http = :1\nsocket = :2\nuwsgi-socket = :3\nhttp-socket = :4", vec![http(":1"), uwsgi(":2"), uwsgi(":3"), http(":4")]),
        // `protocol` applies to every `socket`, before or after it, never to uwsgi-socket.
        ("socket = :1\nprotocol = http\nsocket = :2\nuwsgi-socket = :3", vec![http(":1"), http(":2"), uwsgi(":3")]),
        ("socket = :1\nprotocol = http\nprotocol = uwsgi", vec![uwsgi(":1")]),
        ("socket = unix:/run/x.sock", vec![uwsgi("unix:/run/x.sock")]),
    ];
    for (ini, want) in cases {
        assert_eq!(config(ini).sockets, want, "{ini}");
    }
    assert_eq!(
        problems("socket ="),
        vec![
            "2: error: `socket` needs an address (`:8000`, `127.0.0.1:8000` or `/run/app.sock`)"
                .to_string()
        ]
    );
    assert_eq!(
        problems("protocol = fastcgi"),
        vec!["2: error: `protocol = fastcgi`: only `uwsgi` and `http` are supported".to_string()]
    );
}

#[test]
fn unknown_keys() {
    #[rustfmt::skip]
    let cases: &[(&str, &[&str])] = &[
        ("procesess = 4", &["2: warning: unknown option `procesess`; did you mean `processes`?"]),
        ("cheaper = 2", &["2: warning: `cheaper` is a uWSGI option vassal does not support yet; ignored"]),
        ("plugins = python3\nplugin = python\nneed-plugin = python3", &[]),
        ("strict\nprocesess = 4", &["3: error: unknown option `procesess`; did you mean `processes`?"]),
        ("strict = true\ncheaper = 2", &["3: error: `cheaper` is a uWSGI option vassal does not support yet; ignored"]),
        ("strict = false\ncheaper = 2", &["3: warning: `cheaper` is a uWSGI option vassal does not support yet; ignored"]),
        // A key referenced as a placeholder is a user placeholder, not a typo...
        ("base = /srv\nchdir = %(base)", &[]),
        ("set-ph = base=/srv\nchdir = %(base)", &[]),
        // ...except in strict mode, like uWSGI.
        ("strict\nbase = /srv\nchdir = %(base)", &["3: error: unknown option `base` (used as a placeholder; strict mode only allows `set-placeholder`)"]),
        ("strict\nset-ph = base=/srv\nchdir = %(base)", &[]),
        ("set-ph = processes=3", &["2: error: `processes` is an option, it cannot be a placeholder (use `set` instead)"]),
        ("set = processes", &["2: error: `set` needs `name=value`, got `processes`"]),
        ("if-env = FOO\nprocesses = 2\nendif", &[
            "2: error: `if-env`: uWSGI logic blocks (for/if-*/end*) are not supported; the options they guard would apply unconditionally",
            "4: error: `endif`: uWSGI logic blocks (for/if-*/end*) are not supported; the options they guard would apply unconditionally",
        ]),
        ("b = 32768", &["2: warning: unknown option `b`; `-b` is the command-line shortcut of `buffer-size`, write `buffer-size` in ini files"]),
    ];
    for (ini, want) in cases {
        assert_eq!(problems(ini), *want, "{ini}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = problems(
        "processes = x\nthreads = y\nchmod-socket = 9\nenv = E\nprocesess = 1\nx = @(/nope)",
    );
    assert_eq!(p.len(), 7, "{p:#?}");
    let err = load("[uwsgi]\nprocesses = x\nthreads = y\n").expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "app.ini:2: error: `processes` must be a non-negative whole number, got `x`\napp.ini:3: error: `threads` must be a non-negative whole number, got `y`"
    );
}

#[test]
fn files_name_and_sections() {
    let host = MemHost::new("/srv")
        .file(
            "/srv/apps/example-app.ini",
            "[uwsgi]\nini = %dcommon.ini\nsocket = /run/%n.sock\n[dev]\nhttp = :8000\n",
        )
        .file(
            "/srv/apps/common.ini",
            "[uwsgi]\nmaster = true\nlogto = /var/log/%n.log\n",
        );
    let l = load_ini_with(&host, "apps/example-app.ini").expect("valid");
    assert_eq!(l.config.name, "example-app");
    assert_eq!(
        l.config.files,
        vec![
            std::path::PathBuf::from("apps/example-app.ini"),
            "/srv/apps/common.ini".into()
        ]
    );
    assert!(l.config.master);
    assert_eq!(
        l.config.logto.as_deref(),
        Some(std::path::Path::new("/var/log/common.log")),
        "magic refers to the included file"
    );
    assert_eq!(l.config.sockets[0].address, "/run/example-app.sock");

    let dev = load_ini_with(&host, "apps/example-app.ini:dev").expect("valid");
    assert_eq!(dev.config.sockets[0].address, ":8000");

    let missing = load_ini_with(&host, "apps/example-app.ini:prod").expect("only a warning");
    assert_eq!(
        missing.warnings[0].to_string(),
        "apps/example-app.ini: warning: no `[prod]` section with options in `apps/example-app.ini`"
    );

    let err = load_ini_with(&host, "nope.ini").expect_err("missing file");
    assert_eq!(err.diagnostics[0].severity, Severity::Error);
    assert!(
        err.to_string()
            .starts_with("nope.ini: error: cannot read `nope.ini`"),
        "{err}"
    );

    let err = load_ini_with(
        &MemHost::new("/").file("/a.ini", "[uwsgi]\nini = b.ini\n"),
        "a.ini",
    )
    .expect_err("missing include");
    assert!(
        err.to_string()
            .starts_with("a.ini:2: error: cannot read `b.ini`"),
        "{err}"
    );
}

#[test]
fn include_loops_are_errors_not_hangs() {
    let host = MemHost::new("/").file("/a.ini", "[uwsgi]\nini = a.ini\nini = a.ini\n");
    let err = load_ini_with(&host, "a.ini").expect_err("loop");
    assert!(
        err.to_string().contains("giving up") || err.to_string().contains("nested"),
        "{err}"
    );
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn command_lines() {
    let host = MemHost::new("/srv")
        .file(
            "/srv/mysimplewsgi.ini",
            "[uwsgi]\nmodule = simple\nprocesses = 3\n[other]\nhttp = :9\n",
        )
        .env("PORT", "8000");
    let ok = |a: &[&str]| match from_args_with(&host, &args(a)) {
        Ok(l) => l.config,
        Err(e) => panic!("{a:?}: {e}"),
    };
    let c = ok(&[
        "--socket",
        "127.0.0.1:8000",
        "--protocol=http",
        "-w",
        "wsgi",
    ]);
    assert_eq!(
        c.sockets,
        vec![SocketSpec {
            address: "127.0.0.1:8000".into(),
            protocol: Protocol::Http
        }]
    );
    assert_eq!(
        (c.module.as_deref(), c.name.as_str()),
        (Some("wsgi"), "vassal")
    );

    let c = ok(&["--http", ":8000", "--wsgi-file", "test.py"]);
    assert_eq!(c.sockets[0].protocol, Protocol::Http);
    assert!(c.wsgi_file.is_some());

    let c = ok(&["--ini", "mysimplewsgi.ini"]);
    assert_eq!(
        (c.module.as_deref(), c.processes, c.name.as_str()),
        (Some("simple"), 3, "mysimplewsgi")
    );
    assert_eq!(
        ok(&["--ini", "mysimplewsgi.ini:other"]).sockets[0].address,
        ":9"
    );
    assert_eq!(
        ok(&["--ini", "mysimplewsgi.ini", "--processes", "2"]).processes,
        2,
        "--ini is read in place"
    );
    assert_eq!(
        ok(&["--processes", "2", "--ini", "mysimplewsgi.ini"]).processes,
        3
    );
    // Like uWSGI (getopt permutes arguments), a bare ini file is read after all options.
    assert_eq!(ok(&["mysimplewsgi.ini", "--processes", "2"]).processes, 3);
    assert_eq!(ok(&["--master", "--processes", "4"]).processes, 4);
    let c = ok(&[
        "-M", "-p", "4", "-T", "-L", "-l", "512", "-z", "9", "-b", "8192", "-H", "/venv", "-s",
        ":1",
    ]);
    assert!(c.master && c.enable_threads && c.disable_logging);
    assert_eq!(
        (c.processes, c.listen, c.socket_timeout, c.buffer_size),
        (4, 512, 9, 8192)
    );
    let c = ok(&["-Mp4", "-wapp"]);
    assert_eq!(
        (c.master, c.processes, c.module.as_deref()),
        (true, 4, Some("app"))
    );
    for (a, want) in [
        (&["-C"][..], Some(0o666)),
        (&["--chmod-socket"], Some(0o666)),
        (&["--chmod-socket=660"], Some(0o660)),
        (&["-C660"], Some(0o660)),
    ] {
        assert_eq!(ok(a).chmod_socket, want, "{a:?}");
    }
    // An optional value is never taken from the next argument.
    assert_eq!(
        ok(&["--chmod-socket", "mysimplewsgi.ini"])
            .module
            .as_deref(),
        Some("simple")
    );
    let c = ok(&[
        "--vacuum",
        "--enable-threads",
        "--lazy-apps",
        "--die-on-term",
        "--disable-logging",
        "--need-app",
        "--strict",
        "--env",
        "K=$(PORT)",
    ]);
    assert!(
        c.vacuum
            && c.enable_threads
            && c.lazy_apps
            && c.die_on_term
            && c.disable_logging
            && c.need_app
            && c.strict
    );
    assert_eq!(c.env, vec![("K".into(), "8000".into())]);
    assert!(!ok(&["--master=false"]).master);

    let problems = |a: &[&str]| -> Vec<String> {
        match from_args_with(&host, &args(a)) {
            Ok(l) => l.warnings.iter().map(ToString::to_string).collect(),
            Err(e) => e.diagnostics.iter().map(ToString::to_string).collect(),
        }
    };
    assert_eq!(
        problems(&["--processes"]),
        vec!["command line: error: option `--processes` needs a value"]
    );
    assert_eq!(
        problems(&["-p"]),
        vec!["command line: error: option `-p` (`--processes`) needs a value"]
    );
    assert_eq!(
        problems(&["-q"]),
        vec!["command line: error: unknown option `-q`"]
    );
    assert_eq!(
        problems(&["--procesess", "4"]),
        vec!["command line: warning: unknown option `procesess`; did you mean `processes`?"]
    );
    assert_eq!(problems(&["--cheaper", "2"]), vec!["command line: warning: `cheaper` is a uWSGI option vassal does not support yet; ignored"]);
    assert_eq!(
        problems(&["--strict", "--cheaper", "2"]),
        vec![
            "command line: error: `cheaper` is a uWSGI option vassal does not support yet; ignored"
        ]
    );
    assert_eq!(problems(&["app.json"]), vec!["command line: error: cannot load configuration from `app.json`: only .ini files are supported"]);
    assert_eq!(
        problems(&["--", "--x.ini"]).len(),
        1,
        "after `--` everything is a file"
    );
    assert!(
        problems(&["[ignored]"]).is_empty(),
        "uWSGI skips arguments starting with `[`"
    );
    assert_eq!(problems(&["mysimplewsgi.ini:other"]), vec!["command line: error: cannot load `mysimplewsgi.ini:other`: files loaded by extension cannot select a section; use `ini = mysimplewsgi.ini:other` or `--ini mysimplewsgi.ini:other`"]);
    assert_eq!(
        problems(&["--unknown-flag", "--master"]),
        vec!["command line: warning: unknown option `unknown-flag`"]
    );
    assert_eq!(
        ok(&["--unknown=1", "--socket=:5", "--processes=2"]).processes,
        2
    );
}

#[test]
fn load_ini_reads_the_real_filesystem() {
    let dir = std::env::temp_dir().join(format!("emperor-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ini = dir.join("real-app.ini");
    std::fs::write(
        &ini,
        "[uwsgi]\nsocket = %dreal.sock\nmodule = wsgi\n[dev]\nhttp = :8000\n",
    )
    .expect("write ini");
    let spec = ini.to_string_lossy().into_owned();
    let loaded = config::load_ini(&spec);
    let dev = config::from_args(&args(&["--ini", &format!("{spec}:dev")]));
    let _ = std::fs::remove_dir_all(&dir);
    let loaded = loaded.expect("valid ini");
    assert_eq!(loaded.config.name, "real-app");
    let canonical_dir = dir.canonicalize().unwrap_or(dir.clone());
    assert_eq!(
        loaded.config.sockets[0].address,
        format!("{}/real.sock", canonical_dir.display())
    );
    assert_eq!(dev.expect("valid").config.sockets[0].address, ":8000");
}

#[test]
fn real_host_with_cwd_resolves_relative_paths_there() {
    let dir = std::env::temp_dir().join(format!("emperor-config-cwd-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
    std::fs::write(dir.join("sub/secret"), "s3cret\n").expect("write");
    std::fs::write(
        dir.join("app.ini"),
        "[uwsgi]\nini = sub/more.ini\nmodule = @(sub/secret)\n",
    )
    .expect("write");
    std::fs::write(dir.join("sub/more.ini"), "[uwsgi]\nsocket = %dmore.sock\n").expect("write");
    let host = config::RealHost::with_cwd(&dir);
    let loaded = config::from_args_with(&host, &args(&["--ini", "app.ini"]));
    let _ = std::fs::remove_dir_all(&dir);
    let c = loaded.expect("valid").config;
    assert_eq!(c.module.as_deref(), Some("s3cret"));
    assert!(
        c.sockets[0].address.ends_with("/sub/more.sock"),
        "{:?}",
        c.sockets
    );
    assert_eq!(c.name, "app");
}
