//! The files in packaging/ checked by systemd's own tools.
//!
//! `systemd-analyze verify` reports unknown keys, bad values and unsupported types
//! (`Type=notify-reload` on systemd 252) as warnings with exit status 0, so these tests fail
//! on ANY output, not on the exit status alone. A negative control proves the check is not
//! vacuous on the machine it runs on.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use emperor_e2e::{repo_root, TempDir};

/// The unit as shipped.
fn unit_path() -> PathBuf {
    repo_root().join("packaging/systemd/emperor.service")
}

fn unit_text() -> String {
    let path = unit_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs a systemd tool; a missing tool fails with the package to install.
fn systemd_tool(tool: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): install the Debian package `systemd` \
             (apt-get install systemd); it works without systemd as PID 1"
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// `systemd-analyze verify` on a copy of `unit` named emperor.service. verify checks that
/// ExecStart and ExecReload exist, and /usr/bin/emperor and emperorctl are not installed
/// here: the copy points them at /bin/true. Every other absolute binary must exist as
/// written.
fn verify(tmp: &TempDir, unit: &str) -> (i32, String) {
    let rewritten: String = unit
        .lines()
        .map(|line| {
            match (
                line.strip_prefix("ExecStart=/usr/bin/emperor"),
                line.strip_prefix("ExecReload=/usr/bin/emperorctl"),
            ) {
                (Some(args), _) => format!("ExecStart=/bin/true{args}\n"),
                (_, Some(args)) => format!("ExecReload=/bin/true{args}\n"),
                _ => format!("{line}\n"),
            }
        })
        .collect();
    assert_ne!(
        rewritten,
        format!("{unit}\n"),
        "ExecStart=/usr/bin/emperor not found"
    );
    let copy = tmp.write("emperor.service", rewritten);
    systemd_tool(
        "systemd-analyze",
        &["verify", copy.to_str().expect("UTF-8 temp path")],
    )
}

#[test]
fn unit_verifies_without_any_output() {
    let tmp = TempDir::new("unit");
    let (code, output) = verify(&tmp, &unit_text());
    assert!(
        code == 0 && output.trim().is_empty(),
        "systemd-analyze verify {} (ExecStart rewritten to /bin/true) exited {code} and \
         printed:\n{output}",
        unit_path().display()
    );
}

/// Guards the test above: on this machine, verify does complain about a typo, with exit
/// status 0, so only "no output" catches it.
#[test]
fn unit_check_catches_warnings() {
    let tmp = TempDir::new("unit-neg");
    let broken = unit_text().replace("ExecReload=", "ExecReloadd=");
    let (_, output) = verify(&tmp, &broken);
    assert!(
        output.contains("ExecReloadd"),
        "systemd-analyze verify did not report an unknown key; output:\n{output}"
    );
}

/// The settings the emperor's behaviour depends on, so an edit that drops one fails here
/// and not on a production host.
#[test]
fn unit_has_the_settings_the_emperor_relies_on() {
    let unit = unit_text();
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .collect();
    for want in [
        // systemd 252 does not know notify-reload (it warns and falls back, rc 0).
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/bin/emperor --config /etc/emperor/emperor.ini",
        // Waits for every app's new generation; fails when one fails (kill -HUP cannot).
        "ExecReload=/usr/bin/emperorctl reload --all",
        // The emperor stops its vassals itself; when it dies they drain on their own.
        "KillMode=process",
        // Above the emperor's default 30 s reload-mercy.
        "TimeoutStopSec=45s",
        "Restart=on-failure",
        // The sockets outlive a crashed emperor in systemd's fd store.
        "FileDescriptorStoreMax=4096",
        "WatchdogSec=30s",
        "RuntimeDirectory=emperor",
        "RuntimeDirectoryPreserve=no",
        "LimitNOFILE=65536",
        "WantedBy=multi-user.target",
    ] {
        assert!(settings.contains(&want), "{want:?} missing from the unit");
    }
    // Settings that would break apps: nginx shares /tmp sockets with apps, apps live in /home.
    for banned in [
        "PrivateTmp=",
        "ProtectHome=",
        "Type=notify-reload",
        "DynamicUser=",
    ] {
        assert!(
            !settings.iter().any(|l| l.starts_with(banned)),
            "{banned} must not be set (see the comments in the unit)"
        );
    }
}

/// systemd 252's systemd-tmpfiles has no --dry-run; --root applies the file to a scratch
/// directory instead, which parses it and creates what it declares.
#[test]
fn tmpfiles_entry_creates_run_emperor() {
    let conf = repo_root().join("packaging/tmpfiles.d/emperor.conf");
    let text = std::fs::read_to_string(&conf)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", conf.display()));
    let tmp = TempDir::new("tmpfiles");
    // Without root, chown to root fails; the owner is then left as is ("-"), which still
    // checks the syntax, the path and the mode.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let text = if root {
        text
    } else {
        text.replace(" root root ", " -    -    ")
    };
    let copy = tmp.write("emperor.conf", text);
    let scratch = tmp.join("root");
    std::fs::create_dir(&scratch).expect("create scratch root");
    let (code, output) = systemd_tool(
        "systemd-tmpfiles",
        &[
            "--create",
            &format!("--root={}", scratch.display()),
            copy.to_str().expect("UTF-8 temp path"),
        ],
    );
    assert!(
        code == 0 && output.trim().is_empty(),
        "systemd-tmpfiles --create {} exited {code} and printed:\n{output}",
        conf.display()
    );
    let dir = scratch.join("run/emperor");
    let meta =
        std::fs::metadata(&dir).unwrap_or_else(|e| panic!("{} not created: {e}", dir.display()));
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert!(
        !Path::new(&scratch).join("etc").exists(),
        "tmpfiles must not create configuration directories"
    );
}
