//! The emperor package under a real systemd: runs `tests/systemd/run.sh`, which boots
//! Debian 12's systemd 252 in a systemd-nspawn container, installs the package with `dpkg -i`
//! and checks start, status, reload (also with new code that fails to import), stop with a
//! request in flight, the watchdog, journald fields, restart and kill -9 under load, reboot,
//! `dpkg -r` and `dpkg -P`. Each check prints a `CHECK name: ...` line with its figures.
//!
//! The package is scripts/package.sh's, made from this checkout's debug binaries (or the
//! .deb `EMPEROR_DEB` names). This test compiles nothing. The script's output is streamed as it comes:
//! `cargo test -p emperor-e2e --test systemd -- --nocapture`.
//!
//! It needs root with CAP_SYS_ADMIN (CI has both, and with CI set a missing one fails the
//! test); elsewhere it prints `SKIPPED systemd: ...` and passes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use emperor_e2e::repo_root;

/// The whole run: cold (debootstrap and a release build) is ~5 min, warm well under 1 min.
/// The script bounds every wait itself; this only catches a wedged script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(900);

/// Why this machine cannot run systemd-nspawn, if it cannot.
fn cannot_run_nspawn() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (systemd-nspawn, mount and nsenter need root)".into());
    }
    const CAP_SYS_ADMIN: u32 = 21;
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => status,
        Err(e) => return Some(format!("cannot read /proc/self/status: {e}")),
    };
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    match effective {
        Some(caps) if caps & (1 << CAP_SYS_ADMIN) != 0 => None,
        Some(_) => Some("no CAP_SYS_ADMIN (mount and systemd-nspawn need it)".into()),
        None => Some("no CapEff line in /proc/self/status".into()),
    }
}

/// The newest `emperor_*.deb` in `dir`, by modification time.
fn newest_deb(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("emperor_") && name.ends_with(".deb")
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .max()
        .map(|(_, path)| path)
}

/// Starts `command`; every line of its stdout and stderr is printed (with `prefix`) as it
/// arrives and sent to the returned channel, which disconnects once both pipes are closed.
fn spawn_streamed(mut command: Command, prefix: &'static str) -> (Child, mpsc::Receiver<String>) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let (lines_tx, lines_rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    stream_lines(stdout, prefix, lines_tx.clone());
    stream_lines(stderr, prefix, lines_tx);
    (child, lines_rx)
}

fn stream_lines(
    pipe: impl Read + Send + 'static,
    prefix: &'static str,
    lines: mpsc::Sender<String>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            println!("{prefix}{line}");
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

/// Every line the stream sent until its write ends closed (or 30 s more, should something
/// the script left behind still hold the pipe).
fn collect_lines(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut collected = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => collected.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                println!("systemd: the output pipe is still open 30 s after the script exited");
                break;
            }
        }
    }
    collected
}

/// Waits for `child` until `timeout`; then SIGTERM (the script's EXIT trap powers the
/// container off and unmounts), 30 s more, then SIGKILL.
fn wait_with_deadline(child: &mut Child, what: &str, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on our own child") {
            return status;
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    println!("{what} still running after {timeout:?}: SIGTERM");
    let pid = i32::try_from(child.id()).expect("pids fit in i32");
    // SAFETY: kill with our own child's pid (not yet reaped, so not reused) and a valid signal.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let grace = Instant::now() + Duration::from_secs(30);
    while Instant::now() < grace {
        if let Some(status) = child.try_wait().expect("try_wait on our own child") {
            panic!("{what} timed out after {timeout:?} (exited {status} on SIGTERM)");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let status = child.wait().expect("wait on our own child");
    panic!("{what} timed out after {timeout:?} and ignored SIGTERM ({status} after SIGKILL)");
}

#[test]
fn emperor_package_under_real_systemd() {
    if let Some(why) = cannot_run_nspawn() {
        // CI runs as root with CAP_SYS_ADMIN: there a skip would hide a broken machine.
        assert!(
            std::env::var_os("CI").is_none(),
            "the systemd test cannot run in CI: {why}"
        );
        println!("SKIPPED systemd: {why}");
        return;
    }
    let root = repo_root();
    let script = root.join("tests/systemd/run.sh");
    let started = Instant::now();

    // The package of this checkout's binaries (scripts/package.sh with the debug build
    // that scripts/test.sh made: cargo cannot run inside cargo test), built while the
    // script prepares its cached rootfs (debootstrap is network-bound, packaging quick).
    // EMPEROR_DEB names another .deb to test instead (a release package).
    let deb = match std::env::var_os("EMPEROR_DEB") {
        Some(deb) => PathBuf::from(deb),
        None => {
            let out = root.join("target/systemd-deb");
            let _ = std::fs::remove_dir_all(&out);
            let mut rootfs = Command::new(&script);
            rootfs.arg("--rootfs-only");
            let (mut rootfs, rootfs_lines) = spawn_streamed(rootfs, "[rootfs] ");
            let mut build = Command::new(root.join("scripts/package.sh"));
            build
                .env("PACKAGE_PROFILE", "debug")
                .env("PACKAGE_NO_BUILD", "1")
                .env("PACKAGE_OUT", &out)
                .current_dir(&root);
            let (mut build, lines) = spawn_streamed(build, "[package] ");
            let built = wait_with_deadline(&mut build, "scripts/package.sh", SCRIPT_TIMEOUT);
            let rootfs_done =
                wait_with_deadline(&mut rootfs, "run.sh --rootfs-only", SCRIPT_TIMEOUT);
            collect_lines(&rootfs_lines);
            collect_lines(&lines);
            assert!(built.success(), "scripts/package.sh failed: {built}");
            assert!(
                rootfs_done.success(),
                "tests/systemd/run.sh --rootfs-only failed: {rootfs_done}"
            );
            let deb = newest_deb(&out).expect("scripts/package.sh wrote a .deb");
            println!(
                "systemd: packaged {} and prepared the rootfs in {:.1} s",
                deb.display(),
                started.elapsed().as_secs_f64()
            );
            deb
        }
    };
    println!("systemd: installing {}", deb.display());

    let mut run = Command::new(&script);
    run.env("EMPEROR_DEB", &deb).current_dir(&root);
    let (mut run, lines) = spawn_streamed(run, "");
    let status = wait_with_deadline(&mut run, "tests/systemd/run.sh", SCRIPT_TIMEOUT);
    println!(
        "systemd: run.sh exited {status} after {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<String> = collect_lines(&lines)
        .into_iter()
        .filter(|line| line.starts_with("CHECK ") && line.contains(": FAIL"))
        .collect();
    assert!(
        status.success() && failed.is_empty(),
        "tests/systemd/run.sh exited {status}; failed checks:\n{}",
        failed.join("\n")
    );
}
