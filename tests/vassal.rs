//! End-to-end tests of the `vassal` binary: the seed commands, configuration, lifecycle
//! (readiness, signals, vacuum, socket activation) and what it does with bad input.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use emperor_e2e::http::{self, Addr, Conn};
use emperor_e2e::nginx::Nginx;
use emperor_e2e::vassal::show_status;
use emperor_e2e::{
    apps_dir, http_vassal, uwsgi, uwsgi_vassal, wait, TempDir, VassalBuilder, EXIT_TIMEOUT,
};

const HELLO_WSGI: &str = "def application(env, start_response):
    start_response('200 OK', [('Content-Type', 'text/html')])
    return [b'Hello World']
";

/// The three commands from the uWSGI quick start, with `vassal` for `uwsgi`, exactly as
/// written. They use TCP port 8000, so they run one after another in this one test.
#[test]
fn seed_commands_run_unchanged() {
    let tmp = TempDir::new("seed");
    tmp.write("wsgi.py", HELLO_WSGI);
    tmp.write("test.py", HELLO_WSGI);
    // The seeds say :8000. EMPEROR_TEST_SEED_PORT moves them when 8000 is taken on a
    // shared machine; the commands are otherwise unchanged.
    let port = std::env::var("EMPEROR_TEST_SEED_PORT").unwrap_or_else(|_| "8000".into());
    if let Err(e) = std::net::TcpListener::bind((
        "127.0.0.1",
        port.parse::<u16>()
            .expect("EMPEROR_TEST_SEED_PORT is a port"),
    )) {
        panic!("TCP port {port} is not free ({e}): another process listens there (see `ss -ltnp`); stop it or set EMPEROR_TEST_SEED_PORT");
    }
    let tcp = Addr::Tcp(format!("127.0.0.1:{port}"));
    let with_port = |a: &str| a.replace("8000", &port);

    // 1. vassal --socket 127.0.0.1:8000 --protocol=http -w wsgi
    {
        let mut v = VassalBuilder::new()
            .args([
                "--socket",
                &with_port("127.0.0.1:8000"),
                "--protocol=http",
                "-w",
                "wsgi",
            ])
            .cwd(tmp.path())
            .spawn_ready();
        let r = http::get(&tcp, "/");
        if r.status != 200 || r.body != b"Hello World" {
            v.fail(&format!(
                "--protocol=http -w wsgi: expected 200 Hello World, got {}",
                r.summary()
            ));
        }
        let st = v.terminate();
        assert!(
            st.success(),
            "SIGTERM should stop it with exit 0, got {}\n{}",
            show_status(st),
            v.log()
        );
    }

    // 2. vassal --http :8000 --wsgi-file test.py
    {
        let mut v = VassalBuilder::new()
            .args(["--http", &with_port(":8000"), "--wsgi-file", "test.py"])
            .cwd(tmp.path())
            .spawn_ready();
        let r = http::get(&tcp, "/");
        if r.status != 200 || r.body != b"Hello World" {
            v.fail(&format!(
                "--http :8000 --wsgi-file: expected 200 Hello World, got {}",
                r.summary()
            ));
        }
        let st = v.terminate();
        assert!(
            st.success(),
            "SIGTERM should stop it with exit 0, got {}\n{}",
            show_status(st),
            v.log()
        );
    }

    // 3. vassal --ini mysimplewsgi.ini (relative socket, chmod-socket, vacuum, 5 workers)
    {
        tmp.write(
            "mysimplewsgi.ini",
            "[uwsgi]\nmodule = wsgi:application\nmaster = true\nprocesses = 5\nsocket = myapp.sock\n\
             chmod-socket = 664\nvacuum = true\ndie-on-term = true\n",
        );
        let mut v = VassalBuilder::new()
            .args(["--ini", "mysimplewsgi.ini"])
            .cwd(tmp.path())
            .spawn_ready();
        let sock = tmp.join("myapp.sock");
        let meta = std::fs::metadata(&sock).unwrap_or_else(|e| {
            v.fail(&format!(
                "socket = myapp.sock should be created in the cwd: {e}"
            ))
        });
        let mode = meta.permissions().mode() & 0o777;
        if mode != 0o664 {
            v.fail(&format!("chmod-socket = 664: socket mode is {mode:o}"));
        }
        let procs = emperor_e2e::proc::tree(v.pid()).len();
        if procs < 6 {
            v.fail(&format!("master = true + processes = 5: expected a master and 5 workers, found {procs} processes"));
        }
        let r = uwsgi::get(&sock, "/");
        if r.status != 200 || r.body != b"Hello World" {
            v.fail(&format!(
                "uwsgi request: expected 200 Hello World, got {}",
                r.summary()
            ));
        }
        let nginx = Nginx::start(&sock);
        for _ in 0..3 {
            let r = http::get(&nginx.addr(), "/");
            if r.status != 200 || r.body != b"Hello World" {
                v.fail(&format!(
                    "through nginx: expected 200 Hello World, got {}\n{}",
                    r.summary(),
                    nginx.logs()
                ));
            }
        }
        let st = v.terminate();
        assert!(
            st.success(),
            "die-on-term + SIGTERM: expected exit 0, got {}\n{}",
            show_status(st),
            v.log()
        );
        assert!(
            !sock.exists(),
            "vacuum = true: {} should be removed on exit\n{}",
            sock.display(),
            v.log()
        );
    }
}

#[test]
fn check_accepts_valid_ini_and_reports_broken_ini_with_file_and_line() {
    let tmp = TempDir::new("check");
    tmp.write("wsgi.py", HELLO_WSGI);
    let good = tmp.write(
        "good.ini",
        "[uwsgi]\n; a comment\nmodule = wsgi:application\nmaster = true\nprocesses = 2\nsocket = %d/app.sock\nvacuum = true\n",
    );
    let out = std::process::Command::new(emperor_e2e::bin("vassal"))
        .args(["--check", "--ini"])
        .arg(&good)
        .output()
        .expect("run vassal --check");
    assert!(
        out.status.success(),
        "vassal --check on a valid ini should exit 0, got {}\nstdout: {}\nstderr: {}",
        show_status(out.status),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !tmp.join("app.sock").exists(),
        "--check must not bind the socket"
    );

    let bad = tmp.write(
        "broken.ini",
        "[uwsgi]\nmodule = wsgi:application\nprocesses = many\nsocket = app.sock\n",
    );
    let out = std::process::Command::new(emperor_e2e::bin("vassal"))
        .args(["--check", "--ini"])
        .arg(&bad)
        .output()
        .expect("run vassal --check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "vassal --check on a broken ini must fail, exited 0\n{text}"
    );
    assert!(
        text.contains("broken.ini:3"),
        "the error must name broken.ini:3 (processes = many), got:\n{text}"
    );
}

#[test]
fn broken_ini_refuses_to_start_with_a_clear_error() {
    let tmp = TempDir::new("badini");
    tmp.write("wsgi.py", HELLO_WSGI);
    tmp.write(
        "app.ini",
        "[uwsgi]\nmodule = wsgi:application\nsocket = app.sock\nprocesses = -3x\n",
    );
    let mut v = VassalBuilder::new()
        .args(["--ini", "app.ini"])
        .cwd(tmp.path())
        .spawn();
    let st = v.wait_exit(EXIT_TIMEOUT);
    assert!(
        !st.success(),
        "a broken ini must not start, exit status {}\n{}",
        show_status(st),
        v.log()
    );
    assert!(
        v.log().contains("app.ini:4"),
        "the error must name app.ini:4, log:\n{}",
        v.log()
    );
    assert!(
        !v.notifications().iter().any(|m| m.contains("READY=1")),
        "a broken ini must never report READY=1"
    );
}

fn assert_import_failure(app_file: &str, expect_in_log: &[&str]) {
    let tmp = TempDir::new("imp");
    let sock = tmp.join("http.sock");
    let mut v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(&sock)
        .arg("--wsgi-file")
        .arg(apps_dir().join(app_file))
        .cwd(tmp.path())
        .spawn();
    let st = v.wait_exit(EXIT_TIMEOUT);
    let log = v.log();
    assert!(
        !st.success(),
        "{app_file} cannot be imported: the vassal must exit non-zero, got {}\n{log}",
        show_status(st)
    );
    assert!(
        !v.notifications().iter().any(|m| m.contains("READY=1")),
        "{app_file}: READY=1 sent for an app that failed to import\n{log}"
    );
    assert!(
        log.contains("Traceback") || log.contains("File \""),
        "{app_file}: the log must show the Python traceback:\n{log}"
    );
    for needle in expect_in_log {
        assert!(
            log.contains(needle),
            "{app_file}: the log must mention {needle:?}:\n{log}"
        );
    }
}

#[test]
fn import_error_exits_nonzero_with_traceback_and_reason() {
    assert_import_failure(
        "import_error.py",
        &[
            "ModuleNotFoundError",
            "emperor_e2e_module_that_does_not_exist",
        ],
    );
}

#[test]
fn syntax_error_exits_nonzero_with_traceback_and_reason() {
    assert_import_failure("syntax_error.py", &["SyntaxError"]);
}

#[test]
fn missing_module_exits_nonzero() {
    let tmp = TempDir::new("nomod");
    let mut v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(tmp.join("s.sock"))
        .args(["--module", "no_such_module_e2e:application"])
        .cwd(tmp.path())
        .spawn();
    let st = v.wait_exit(EXIT_TIMEOUT);
    assert!(
        !st.success(),
        "an unknown module must make the vassal exit non-zero\n{}",
        v.log()
    );
    assert!(
        v.log().contains("no_such_module_e2e"),
        "the log must name the missing module:\n{}",
        v.log()
    );
}

#[test]
fn sigterm_is_graceful_and_vacuum_removes_the_socket() {
    let tmp = TempDir::new("term");
    let close_log = tmp.join("close.log");
    let (mut v, sock) = uwsgi_vassal(
        &tmp,
        "features.py",
        &[
            "--master",
            "--processes",
            "2",
            "--vacuum",
            "--env",
            &format!("CLOSE_LOG={}", close_log.display()),
        ],
    );
    assert!(sock.exists());
    // An in-flight request must complete although SIGTERM arrives while the app runs.
    let sock2 = sock.clone();
    let inflight = std::thread::spawn(move || uwsgi::get(&sock2, "/sleep?ms=1500"));
    wait::wait_until(
        Duration::from_secs(20),
        "the /sleep request to reach the app",
        || {
            std::fs::read_to_string(&close_log)
                .unwrap_or_default()
                .contains("sleep-start")
        },
    );
    let pids = emperor_e2e::proc::tree(v.pid());
    v.signal(libc::SIGTERM);
    let r = inflight.join().expect("request thread");
    if r.status != 200 || r.body != b"slept" {
        v.fail(&format!(
            "SIGTERM is graceful: the in-flight request should finish with 200, got {}",
            r.summary()
        ));
    }
    let st = v.wait_exit(EXIT_TIMEOUT);
    assert!(
        st.success(),
        "SIGTERM: expected exit 0, got {}\n{}",
        show_status(st),
        v.log()
    );
    assert!(
        !sock.exists(),
        "--vacuum: the socket file should be removed\n{}",
        v.log()
    );
    assert!(
        v.wait_notification("STOPPING=1", Duration::from_secs(1)),
        "expected STOPPING=1 on the notify socket, got {:?}",
        v.notifications()
    );
    assert_all_gone(&pids);
}

/// Every process in `pids` has exited (a zombie counts as gone): no orphaned workers.
fn assert_all_gone(pids: &std::collections::BTreeSet<u32>) {
    wait::wait_until(
        Duration::from_secs(10),
        "the vassal's workers to exit with the master",
        || {
            pids.iter().all(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| {
                        s.rsplit_once(')')
                            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(true)
            })
        },
    );
}

#[test]
fn sigint_stops_with_exit_zero() {
    let tmp = TempDir::new("int");
    let (mut v, addr) = http_vassal(&tmp, "features.py", &["--master", "--processes", "2"]);
    assert_eq!(http::get(&addr, "/head").status, 200);
    let pids = emperor_e2e::proc::tree(v.pid());
    v.signal(libc::SIGINT);
    let st = v.wait_exit(EXIT_TIMEOUT);
    assert!(
        st.success(),
        "SIGINT: expected exit 0, got {}\n{}",
        show_status(st),
        v.log()
    );
    assert_all_gone(&pids);
}

#[test]
fn readiness_notification_reports_mainpid_and_status() {
    let tmp = TempDir::new("ready");
    let (mut v, addr) = http_vassal(&tmp, "echo.py", &[]);
    // READY=1 means workers accept: a request right now must succeed without retries.
    let r = http::get(&addr, "/x");
    assert_eq!(r.status, 200, "{}", r.summary());
    let msgs = v.notifications().join("\n");
    assert!(
        msgs.contains(&format!("MAINPID={}", v.pid())),
        "expected MAINPID={} among {msgs:?}",
        v.pid()
    );
}

#[test]
fn serves_an_inherited_socket_with_listen_fds() {
    let tmp = TempDir::new("lfd");
    let path = tmp.join("inherited.sock");
    let listener = UnixListener::bind(&path).expect("bind listener");
    let ino = std::fs::metadata(&path).expect("stat socket").ino();
    let mut v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(&path)
        .arg("--wsgi-file")
        .arg(apps_dir().join("echo.py"))
        .listen_fd(listener.into())
        .cwd(tmp.path())
        .spawn_ready();
    let r = http::get(&Addr::Unix(path.clone()), "/via-fd3");
    if r.status != 200 {
        v.fail(&format!("LISTEN_FDS: expected 200, got {}", r.summary()));
    }
    let now = std::fs::metadata(&path).map(|m| m.ino()).ok();
    if now != Some(ino) {
        v.fail("LISTEN_FDS=1: the vassal must serve the inherited fd 3, not bind the path again");
    }
    let st = v.terminate();
    assert!(st.success(), "{}", show_status(st));
}

// ---------------------------------------------------------------------------------------
// Bad input.

fn pseudo_random(n: usize, mut seed: u32) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        })
        .collect()
}

/// Sends raw bytes, half-closes, reads to EOF. Returns the bytes the server sent.
fn send_raw_uwsgi(sock: &std::path::Path, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut s = UnixStream::connect(sock).expect("connect uwsgi socket");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may close before reading everything; a write error is then fine.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the vassal did not close the connection after garbage: {e} (got {:?})",
            String::from_utf8_lossy(&out)
        ),
    }
    out
}

#[test]
fn garbage_on_the_uwsgi_socket_is_closed_and_the_vassal_keeps_serving() {
    let tmp = TempDir::new("garb");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &["--processes", "1"]);
    // A 12-byte vars block whose first key claims 65535 bytes.
    let mut overrun = vec![0u8, 12, 0, 0, 0xff, 0xff];
    overrun.extend_from_slice(b"0123456789");
    let zero_key = vec![0u8, 6, 0, 0, 0, 0, 2, 0, b'h', b'i'];
    let mut unknown_modifier = uwsgi::packet(&uwsgi::vars("GET", "/head", 0), b"");
    unknown_modifier[0] = 99;
    // (what, bytes, must the vassal log it?) A request cut short by EOF is a client that
    // went away, which need not be logged; malformed requests must be.
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("a key length overrunning the vars block", overrun, true),
        ("a zero-length key", zero_key, true),
        ("300 pseudo-random bytes", pseudo_random(300, 7), true),
        ("an empty vars block", vec![0u8, 0, 0, 0], true),
        ("an unknown modifier1", unknown_modifier, true),
        (
            "a vars block cut short by EOF",
            vec![0u8, 200, 0, 0, 4, 0, b'P', b'A'],
            false,
        ),
    ];
    for (what, bytes, must_log) in cases {
        let before = v.log().len();
        let out = send_raw_uwsgi(&sock, &bytes);
        if let Ok(r) = http::parse_response(&out) {
            if (200..300).contains(&r.status) {
                v.fail(&format!("{what}: a 2xx answer to garbage: {}", r.summary()));
            }
        }
        if must_log && !wait::try_wait_until(Duration::from_secs(5), || v.log().len() > before) {
            v.fail(&format!(
                "{what}: the vassal should log the rejected request"
            ));
        }
        let r = uwsgi::get(&sock, "/head");
        if r.status != 200 {
            v.fail(&format!(
                "after {what}: the next normal request failed: {}",
                r.summary()
            ));
        }
    }
}

#[test]
fn http_sent_to_the_uwsgi_socket_is_rejected() {
    let tmp = TempDir::new("h2u");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &["--processes", "1"]);
    // "GET " reads as modifier1 = 71 and a vars size of 21573: the classic misconfiguration.
    let out = send_raw_uwsgi(&sock, b"GET /head HTTP/1.1\r\nHost: localhost\r\n\r\n");
    if let Ok(r) = http::parse_response(&out) {
        if (200..300).contains(&r.status) {
            v.fail(&format!(
                "HTTP on a uwsgi socket must not get a 2xx: {}",
                r.summary()
            ));
        }
    }
    assert_eq!(
        uwsgi::get(&sock, "/head").status,
        200,
        "the vassal keeps serving"
    );
}

#[test]
fn oversized_vars_block_gets_an_error_response_and_names_buffer_size() {
    let tmp = TempDir::new("big");
    let (v, sock) = uwsgi_vassal(&tmp, "echo.py", &["--processes", "1"]);
    let mut vars = uwsgi::vars("GET", "/big", 0);
    vars.push((b"HTTP_X_BIG".to_vec(), vec![b'a'; 5000]));
    let packet = uwsgi::packet(&vars, b"");
    let out = uwsgi::send(&sock, &packet).expect("send oversized request");
    let r = http::parse_response(&out).unwrap_or_else(|e| {
        v.fail(&format!(
            "vars block > buffer-size (4096): expected an error response, got {e}: {:?}",
            String::from_utf8_lossy(&out)
        ))
    });
    if !(400..600).contains(&r.status) || r.body.is_empty() {
        v.fail(&format!(
            "vars block > buffer-size: expected a 4xx/5xx with a body, got {}",
            r.summary()
        ));
    }
    v.wait_log("buffer-size", Duration::from_secs(5));
    assert_eq!(
        uwsgi::get(&sock, "/after").status,
        200,
        "the vassal keeps serving"
    );

    // The same request fits once buffer-size is raised.
    let tmp2 = TempDir::new("big2");
    let (v2, sock2) = uwsgi_vassal(&tmp2, "echo.py", &["--buffer-size", "16384"]);
    let out = uwsgi::send(&sock2, &packet).expect("send");
    let r = http::parse_response(&out).expect("parse response");
    if r.status != 200 || r.json()["environ"]["HTTP_X_BIG"].as_str().map(str::len) != Some(5000) {
        v2.fail(&format!(
            "--buffer-size 16384: a 5 KB vars block should be served, got {}",
            r.summary()
        ));
    }
}

#[test]
fn client_disconnecting_mid_body_does_not_stop_the_vassal() {
    let tmp = TempDir::new("midbody");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &["--processes", "1"]);
    for _ in 0..3 {
        let mut s = UnixStream::connect(&sock).expect("connect");
        let p = uwsgi::packet(&uwsgi::vars("POST", "/slow_body", 1_000_000), &[b'z'; 1000]);
        s.write_all(&p).expect("send partial body");
        drop(s);
    }
    let r = uwsgi::get(&sock, "/head");
    if r.status != 200 {
        v.fail(&format!(
            "after clients vanished mid-body, expected 200, got {}",
            r.summary()
        ));
    }

    // The same over HTTP.
    let tmp = TempDir::new("midbody-h");
    let (v, addr) = http_vassal(&tmp, "features.py", &["--processes", "1"]);
    let mut c = Conn::connect(&addr).unwrap();
    c.send(b"POST /slow_body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")
        .unwrap();
    drop(c);
    let r = http::get(&addr, "/head");
    if r.status != 200 {
        v.fail(&format!(
            "HTTP: after a client vanished mid-body, expected 200, got {}",
            r.summary()
        ));
    }
}

#[test]
fn exception_before_start_response_gives_500_and_logs_the_traceback() {
    let tmp = TempDir::new("exc1");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let r = http::get(&addr, "/raise_before");
    if r.status != 500 {
        v.fail(&format!(
            "an app exception before start_response: expected a 500, got {}",
            r.summary()
        ));
    }
    v.wait_log("boom-before-start-response", Duration::from_secs(5));
    assert!(
        v.log().contains("Traceback"),
        "the traceback must be logged:\n{}",
        v.log()
    );
    assert_eq!(
        http::get(&addr, "/head").status,
        200,
        "the vassal keeps serving"
    );

    let tmp = TempDir::new("exc1u");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &[]);
    let r = uwsgi::get(&sock, "/raise_before");
    if r.status != 500 {
        v.fail(&format!("uwsgi: an exception before start_response must give a 500 (not an empty reply), got {}", r.summary()));
    }
}

#[test]
fn exception_after_the_first_chunk_truncates_and_logs() {
    let tmp = TempDir::new("exc2");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let mut c = Conn::connect(&addr).unwrap();
    c.send(&http::request_bytes("GET", "/raise_after", &[], b""))
        .unwrap();
    match c.read_final(false) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => v.fail(&format!(
            "an exception after bytes were sent: the connection must be closed with a truncated body, got {other:?}"
        )),
    }
    v.wait_log("boom-after-first-chunk", Duration::from_secs(5));
    assert_eq!(
        http::get(&addr, "/head").status,
        200,
        "the vassal keeps serving"
    );

    let tmp = TempDir::new("exc2u");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &[]);
    let raw = uwsgi::send(
        &sock,
        &uwsgi::packet(&uwsgi::vars("GET", "/raise_after", 0), b""),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    if !text.starts_with("HTTP/1.1 200") || !text.ends_with("first chunk;") {
        v.fail(&format!(
            "uwsgi: expected the status, headers and the first chunk, then EOF; got {text:?}"
        ));
    }
    v.wait_log("boom-after-first-chunk", Duration::from_secs(5));
}

#[test]
fn http_parse_errors_get_an_error_status_then_close() {
    let tmp = TempDir::new("perr");
    let (v, addr) = http_vassal(&tmp, "echo.py", &[]);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-Filler: 0123456789012345678901234567890123456789\r\n".repeat(2000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header line without colon", b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec()),
        ("space before colon", b"GET / HTTP/1.1\r\nHost: x\r\nFoo : bar\r\n\r\n".to_vec()),
        ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("CL and TE together", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("two Content-Lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec()),
        ("unknown transfer coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: bogus\r\n\r\n".to_vec()),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("request line too long", long_uri.into_bytes()),
        ("header section too large", many_headers.into_bytes()),
    ];
    let mut failures = Vec::new();
    for (what, bytes) in cases {
        let mut c = Conn::connect(&addr).unwrap();
        let _ = c.send(&bytes);
        let _ = c.shutdown_write();
        match c.read_response(false) {
            Ok(r) => {
                if ![400, 413, 414, 431, 501, 505].contains(&r.status) {
                    failures.push(format!(
                        "{what}: expected 400/413/414/431/501/505, got {}",
                        r.summary()
                    ));
                } else if !c.closed_by_peer().unwrap_or(true) {
                    failures.push(format!(
                        "{what}: the connection must be closed after a parse error"
                    ));
                }
            }
            Err(e) => failures.push(format!(
                "{what}: expected an error response before the close, got {e}"
            )),
        }
    }
    if !failures.is_empty() {
        v.fail(&failures.join("\n"));
    }
    assert_eq!(http::get(&addr, "/still-up").status, 200);
}

#[test]
fn pidfile_logto_pythonpath_and_bare_chmod_socket() {
    let tmp = TempDir::new("opts");
    let sock = tmp.join("s.sock");
    let pidfile = tmp.join("app.pid");
    let logto = tmp.join("app.log");
    let mut v = VassalBuilder::new()
        .arg("--socket")
        .arg(&sock)
        .arg("--chmod-socket")
        .arg("--pythonpath")
        .arg(apps_dir())
        .args(["-w", "echo:application", "--master"])
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--logto")
        .arg(&logto)
        .cwd(tmp.path())
        .spawn_ready();
    let mode = std::fs::metadata(&sock)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode != 0o666 {
        v.fail(&format!(
            "--chmod-socket without a value means 666, socket mode is {mode:o}"
        ));
    }
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    if pid.trim() != v.pid().to_string() {
        v.fail(&format!(
            "--pidfile should hold the master pid {}, holds {pid:?}",
            v.pid()
        ));
    }
    let r = uwsgi::get(&sock, "/logged-request");
    if r.status != 200 {
        v.fail(&format!(
            "--pythonpath + -w echo:application: {}",
            r.summary()
        ));
    }
    let ok = wait::try_wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&logto)
            .unwrap_or_default()
            .contains("/logged-request")
    });
    if !ok {
        v.fail(&format!(
            "--logto: the request log line should be in {}, which holds {:?}",
            logto.display(),
            std::fs::read_to_string(&logto).unwrap_or_default()
        ));
    }
    let st = v.terminate();
    assert!(st.success(), "{}", show_status(st));
}

#[test]
fn venv_made_by_another_python_is_refused_naming_both_versions() {
    // A venv as another interpreter would leave it: its pyvenv.cfg names a different
    // base install and version. Running the app on it would mix two stdlibs.
    let tmp = TempDir::new("venvmix");
    let venv = tmp.join("venv312");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        "home = /opt/python3.12/bin\ninclude-system-site-packages = false\nversion = 3.12.1\n",
    )
    .unwrap();
    let mut v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(tmp.join("s.sock"))
        .arg("--home")
        .arg(&venv)
        .arg("--wsgi-file")
        .arg(apps_dir().join("echo.py"))
        .cwd(tmp.path())
        .spawn();
    let st = v.wait_exit(EXIT_TIMEOUT);
    let log = v.log();
    assert!(!st.success(), "a foreign venv must be refused\n{log}");
    assert!(
        log.contains("3.12.1") && log.contains("3.11"),
        "the refusal must name both Python versions:\n{log}"
    );
}

#[test]
fn serves_uwsgi_and_http_on_several_sockets_at_once() {
    let tmp = TempDir::new("multi");
    let uwsgi_sock = tmp.join("app.sock");
    let http_sock = tmp.join("http.sock");
    let mut v = VassalBuilder::new()
        .arg("--socket")
        .arg(format!("unix:{}", uwsgi_sock.display()))
        .arg("--http-socket")
        .arg(&http_sock)
        .arg("--wsgi-file")
        .arg(apps_dir().join("echo.py"))
        .cwd(tmp.path())
        .spawn_ready();
    let r = http::get(&Addr::Unix(http_sock.clone()), "/over-http");
    if r.status != 200 || !r.text().contains("/over-http") {
        v.fail(&format!("http socket: {}", r.summary()));
    }
    let r = emperor_e2e::uwsgi::get(&uwsgi_sock, "/over-uwsgi");
    if r.status != 200 || !r.text().contains("/over-uwsgi") {
        v.fail(&format!(
            "uwsgi socket (nginx-style unix: name): {}",
            r.summary()
        ));
    }
    let st = v.terminate();
    assert!(st.success(), "{}", show_status(st));
}
