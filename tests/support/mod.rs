//! End-to-end test support: everything the tests in this package need to run the real
//! `vassal` binary (and a real nginx) as child processes and talk to them.
//!
//! Every wait here has a deadline and, when it expires, fails with what the child printed.
//! Readiness is a message: the vassal's `READY=1` on a NOTIFY_SOCKET we bind, nginx's
//! listening socket accepting a connection. [`wait::wait_until`] polls and exists only for
//! conditions that announce nothing (a file disappearing, a log line being flushed).
//!
//! Processes never share fixed TCP ports (except the seed test, which must use :8000):
//! sockets are unix sockets inside a per-test [`tmp::TempDir`], so tests run in parallel.

pub mod emperor;
pub mod http;
pub mod load;
pub mod nginx;
pub mod notify;
pub mod proc;
#[cfg(test)]
mod selftest;
pub mod tmp;
pub mod uwsgi;
pub mod vassal;
pub mod wait;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use tmp::TempDir;
pub use vassal::{Vassal, VassalBuilder};

/// How long a vassal may take to report READY=1. Generous: the machine is shared and a
/// Django import in a debug build under load takes a few seconds.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a process may take to exit after a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Socket read/write timeout for clients: a request that hangs longer is a failure.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository root (the parent of this package's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e package lives one level below the repository root")
        .to_path_buf()
}

/// `tests/apps`, where the Python test applications live.
pub fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps")
}

/// The cargo target profile directory of the running test binary
/// (`target/debug/deps/vassal-abc123` -> `target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let deps = exe.parent().expect("the test binary sits in a directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// Path of a workspace binary (e.g. `vassal`); panics with a hint if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The test virtualenv with Flask and Django, from `EMPEROR_TEST_VENV`.
pub fn venv() -> PathBuf {
    let Some(v) = std::env::var_os("EMPEROR_TEST_VENV") else {
        panic!(
            "EMPEROR_TEST_VENV is not set: run scripts/test.sh, which creates the test venv \
             (.venv-test) and sets it"
        );
    };
    let v = PathBuf::from(v);
    assert!(
        v.join("bin/python").exists(),
        "EMPEROR_TEST_VENV={} has no bin/python: run scripts/test.sh to (re)create it",
        v.display()
    );
    v
}

/// Starts a vassal serving `tests/apps/<app_file>` over HTTP on a unix socket in `tmp`
/// (`--http-socket`), waits for READY=1 and returns it with the socket address.
pub fn http_vassal(tmp: &TempDir, app_file: &str, extra: &[&str]) -> (Vassal, http::Addr) {
    let sock = tmp.join("http.sock");
    let v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(&sock)
        .arg("--wsgi-file")
        .arg(apps_dir().join(app_file))
        .args(extra)
        .cwd(tmp.path())
        .spawn_ready();
    (v, http::Addr::Unix(sock))
}

/// Starts a vassal serving `tests/apps/<app_file>` over the uwsgi protocol on a unix
/// socket in `tmp` (`--socket`), waits for READY=1 and returns it with the socket path.
pub fn uwsgi_vassal(tmp: &TempDir, app_file: &str, extra: &[&str]) -> (Vassal, PathBuf) {
    let sock = tmp.join("uwsgi.sock");
    let v = VassalBuilder::new()
        .arg("--socket")
        .arg(&sock)
        .arg("--wsgi-file")
        .arg(apps_dir().join(app_file))
        .args(extra)
        .cwd(tmp.path())
        .spawn_ready();
    (v, sock)
}

/// SHA-256 of `data` as lowercase hex (via coreutils' sha256sum: no extra crate).
pub fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) is installed");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("sha256sum runs");
    writer
        .join()
        .expect("writer thread")
        .expect("write to sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_string()
}
