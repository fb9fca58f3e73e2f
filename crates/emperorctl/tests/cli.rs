//! The built `emperorctl` binary against ini files and against a scripted fake emperor
//! (a thread answering on a unix socket in a temp dir). End-to-end tests against the real
//! emperor live in the workspace's tests/ package.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use proto::{read_frame, write_frame, AppStatus, Request, Response, PROTOCOL_VERSION};

/// A fresh directory under cargo's per-target temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "ctl-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path.to_str().expect("temp paths are UTF-8").to_string()
    }

    fn socket(&self) -> PathBuf {
        self.0.join("control.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn emperorctl(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_emperorctl"))
        .args(args)
        .env_remove("EMPEROR_CONTROL_SOCKET")
        .output()
        .expect("run emperorctl");
    Run {
        code: status.code().expect("emperorctl exited, not killed"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs emperorctl with `--socket SOCKET` first.
fn ctl(socket: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--socket", socket.to_str().expect("UTF-8 socket path")];
    all.extend_from_slice(args);
    emperorctl(&all)
}

/// A fake emperor for one connection: answers the hello with `hello`, then the one request
/// with `reply`. Joining returns the request it received.
fn fake_emperor(socket: &Path, hello: Response, reply: Response) -> JoinHandle<Option<Request>> {
    let listener = UnixListener::bind(socket).expect("bind fake emperor");
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let first: Request = read_frame(&mut conn).expect("hello frame");
        assert!(
            matches!(
                first,
                Request::Hello {
                    version: PROTOCOL_VERSION,
                    ..
                }
            ),
            "{first:?}"
        );
        let refused = !matches!(
            hello,
            Response::Hello {
                version: PROTOCOL_VERSION,
                ..
            }
        );
        write_frame(&mut conn, &hello).expect("write hello");
        if refused {
            // The client must hang up without sending a request.
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).expect("read to end");
            assert!(
                rest.is_empty(),
                "client sent {} bytes after a bad hello",
                rest.len()
            );
            return None;
        }
        let request: Request = read_frame(&mut conn).expect("request frame");
        write_frame(&mut conn, &reply).expect("write reply");
        Some(request)
    })
}

fn hello() -> Response {
    Response::Hello {
        version: PROTOCOL_VERSION,
        server: "emperor test".into(),
    }
}

const GOOD_INI: &str = "[uwsgi]\nmodule = wsgi:application\nprocesses = 2\n";

#[test]
fn check_good_file_exits_0() {
    let dir = TempDir::new();
    let good = dir.write("good.ini", GOOD_INI);
    let run = emperorctl(&["check", &good]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.stdout, format!("{good}: ok\n"));
}

#[test]
fn check_reports_every_problem_with_file_and_line_and_exits_1() {
    let dir = TempDir::new();
    let good = dir.write("good.ini", GOOD_INI);
    let bad = dir.write(
        "bad.ini",
        "[uwsgi]\nmodule = wsgi\nprocesess = 2\nprocesses = many\n",
    );
    let missing = dir.0.join("missing.ini").display().to_string();
    let run = emperorctl(&["check", &good, &bad, &missing]);
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let out = &run.stdout;
    assert!(out.contains(&format!("{good}: ok\n")), "{out}");
    assert!(out.contains(&format!("{bad}:3: warning: ")), "{out}");
    assert!(out.contains(&format!("{bad}:4: error: ")), "{out}");
    assert!(out.contains(&format!("{bad}: invalid")), "{out}");
    assert!(out.contains(&format!("{missing}: invalid")), "{out}");
    assert!(
        run.stderr.contains("2 of the files checked have errors"),
        "{}",
        run.stderr
    );

    let json = emperorctl(&["--json", "check", &good, &bad]);
    assert_eq!(json.code, 1);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON output");
    assert_eq!(value["files"][0]["ok"], true);
    assert_eq!(value["files"][1]["ok"], false);
}

#[test]
fn missing_socket_exits_3_with_hint() {
    let dir = TempDir::new();
    let socket = dir.0.join("no-such-dir").join("control.sock");
    for args in [&["status"][..], &["reload", "app"], &["stop", "app"]] {
        let run = ctl(&socket, args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(&socket.display().to_string()),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("systemctl status emperor"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn stale_socket_exits_3() {
    let dir = TempDir::new();
    let socket = dir.socket();
    drop(UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists(), "the stale socket file stays behind");
    let run = ctl(&socket, &["status"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
}

#[test]
fn status_prints_table_and_json() {
    let dir = TempDir::new();
    let socket = dir.socket();
    let app = AppStatus {
        name: "example-app".into(),
        state: "ready".into(),
        pid: Some(4242),
        uptime_secs: Some(192),
        socket: "/run/example-app/socket".into(),
        ..AppStatus::default()
    };
    let reply = Response::Status {
        apps: vec![app.clone()],
    };

    let server = fake_emperor(&socket, hello(), reply.clone());
    let run = ctl(&socket, &["status"]);
    assert_eq!(
        server.join().unwrap(),
        Some(Request::Status { apps: vec![] })
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut lines = run.stdout.lines();
    assert!(lines.next().unwrap().starts_with("APP  "), "{}", run.stdout);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            "example-app",
            "ready",
            "4242",
            "0",
            "3m12s",
            "0",
            "-",
            "/run/example-app/socket"
        ]
    );

    std::fs::remove_file(&socket).unwrap();
    let server = fake_emperor(&socket, hello(), reply.clone());
    let run = ctl(&socket, &["--json", "status", "example-app"]);
    assert_eq!(
        server.join().unwrap(),
        Some(Request::Status {
            apps: vec!["example-app".into()]
        })
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: Response = serde_json::from_str(&run.stdout).expect("JSON response");
    assert_eq!(printed, reply);
}

#[test]
fn replies_map_to_exit_codes() {
    let cases: Vec<(&[&str], Request, Response, i32, &str)> = vec![
        (
            &["reload", "app"],
            Request::Reload {
                app: Some("app".into()),
            },
            Response::Done {
                message: "app reloaded".into(),
            },
            0,
            "",
        ),
        (
            &["reload", "--all"],
            Request::Reload { app: None },
            Response::Failed {
                message: "app: ModuleNotFoundError: No module named 'flask'".into(),
            },
            1,
            "No module named 'flask'",
        ),
        (
            &["restart", "nope"],
            Request::Restart { app: "nope".into() },
            Response::UnknownApp { app: "nope".into() },
            4,
            "unknown app `nope`",
        ),
        (
            &["stop", "app"],
            Request::Stop { app: "app".into() },
            Response::Error {
                message: "bad request".into(),
            },
            1,
            "bad request",
        ),
        (
            &["start", "app"],
            Request::Start { app: "app".into() },
            Response::Status { apps: vec![] },
            1,
            "unexpected response",
        ),
    ];
    for (args, want_request, reply, want_code, want_stderr) in cases {
        let dir = TempDir::new();
        let socket = dir.socket();
        let server = fake_emperor(&socket, hello(), reply);
        let run = ctl(&socket, args);
        assert_eq!(server.join().unwrap(), Some(want_request), "{args:?}");
        assert_eq!(run.code, want_code, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want_stderr), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn version_mismatch_exits_1_without_sending_the_request() {
    let dir = TempDir::new();
    let socket = dir.socket();
    let server = fake_emperor(
        &socket,
        Response::Hello {
            version: PROTOCOL_VERSION + 1,
            server: "emperor future".into(),
        },
        Response::Done {
            message: String::new(),
        },
    );
    let run = ctl(&socket, &["stop", "app"]);
    assert_eq!(server.join().unwrap(), None);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("protocol version mismatch"),
        "{}",
        run.stderr
    );
}

#[test]
fn timeout_exits_1() {
    let dir = TempDir::new();
    let socket = dir.socket();
    let listener = UnixListener::bind(&socket).expect("bind");
    // Accept and read, never answer: the listener is held until the client gave up.
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let _hello: Request = read_frame(&mut conn).expect("hello");
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    });
    let run = ctl(&socket, &["--timeout", "1", "reload", "app"]);
    server.join().unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no reply from the emperor within 1s"),
        "{}",
        run.stderr
    );
}

#[test]
fn version_works_without_the_emperor() {
    let dir = TempDir::new();
    let run = ctl(&dir.socket(), &["version"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(&format!(
            "emperorctl {} (protocol {PROTOCOL_VERSION})\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("not running"), "{}", run.stdout);
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["reload"][..], &["frobnicate"], &[]] {
        assert_eq!(emperorctl(args).code, 2, "{args:?}");
    }
}
