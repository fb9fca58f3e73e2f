//! The files in packaging/ checked by systemd's own tools, and the Debian package
//! `scripts/package.sh` builds checked with dpkg's.
//!
//! `systemd-analyze verify` reports unknown keys, bad values and unsupported types
//! (`Type=notify-reload` on systemd 252) as warnings with exit status 0, so these tests fail
//! on ANY output, not on the exit status alone. A negative control proves the check is not
//! vacuous on the machine it runs on.
//!
//! The package test inspects `target/debian/emperor_<version>_amd64.deb` when it is newer
//! than the release binaries and the packaging sources (a `scripts/package.sh` run after the
//! last change); otherwise it packages the debug binaries this test run was built with
//! (`PACKAGE_PROFILE=debug PACKAGE_NO_BUILD=1`: cargo cannot run inside `cargo test`, which
//! holds its build lock) into a temp dir. Either way, it takes seconds.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use emperor_e2e::{bin, repo_root, target_dir, TempDir};

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

/// Runs `cmd`; panics with its output unless it exits 0. Returns stdout.
fn run_ok(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}): apt-get install dpkg-dev man-db"));
    assert!(
        output.status.success(),
        "{cmd:?} exited {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Every file under `dir` (recursively), for freshness checks.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The release package, if `scripts/package.sh` built it after the release binaries and
/// every packaging source last changed.
fn fresh_release_deb() -> Option<PathBuf> {
    let root = target_dir().parent()?.to_path_buf();
    let deb = root.join(format!(
        "debian/emperor_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    let built = mtime(&deb)?;
    let repo = repo_root();
    let mut inputs: Vec<PathBuf> = ["emperor", "vassal", "emperorctl", "emperor-docgen"]
        .iter()
        .map(|b| root.join("release").join(b))
        .collect();
    inputs.push(repo.join("scripts/package.sh"));
    inputs.push(repo.join("etc/emperor/emperor.ini"));
    inputs.extend(files_under(&repo.join("packaging")));
    inputs
        .iter()
        .all(|p| mtime(p).is_some_and(|t| t < built))
        .then_some(deb)
}

/// The .deb to inspect: the fresh release package, or one built now from the debug
/// binaries into `tmp`.
fn package_under_test(tmp: &TempDir) -> PathBuf {
    if let Some(deb) = fresh_release_deb() {
        eprintln!("inspecting {} (newer than its inputs)", deb.display());
        return deb;
    }
    for b in ["emperor", "vassal", "emperorctl", "emperor-docgen"] {
        bin(b);
    }
    let out = tmp.join("out");
    run_ok(
        Command::new(repo_root().join("scripts/package.sh"))
            .env("PACKAGE_PROFILE", "debug")
            .env("PACKAGE_NO_BUILD", "1")
            .env("PACKAGE_OUT", &out)
            .env(
                "CARGO_TARGET_DIR",
                target_dir().parent().expect("the profile dir has a parent"),
            ),
    );
    let deb = out.join(format!("emperor_{}_amd64.deb", env!("CARGO_PKG_VERSION")));
    assert!(
        deb.is_file(),
        "scripts/package.sh did not write {}",
        deb.display()
    );
    eprintln!("inspecting {} (debug binaries)", deb.display());
    deb
}

/// One line of `dpkg-deb --contents`: mode string, owner, path (without the leading `.`).
struct Entry {
    mode: String,
    owner: String,
    path: String,
}

fn contents(deb: &Path) -> Vec<Entry> {
    run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let path = f.get(5)?.strip_prefix('.')?.trim_end_matches('/');
            Some(Entry {
                mode: f[0].to_string(),
                owner: f[1].to_string(),
                path: if path.is_empty() { "/" } else { path }.to_string(),
            })
        })
        .collect()
}

/// gzip -9n: gzip magic, no original file name (FNAME flag) and no timestamp, so the
/// package is reproducible.
fn check_gzip_n(path: &Path, problems: &mut Vec<String>) {
    let data = std::fs::read(path).unwrap_or_default();
    if data.len() < 10 || data[..2] != [0x1f, 0x8b] {
        problems.push(format!("{} is not gzip", path.display()));
    } else if data[3] & 0x08 != 0 || data[4..8] != [0, 0, 0, 0] {
        problems.push(format!(
            "{} carries a file name or time stamp (use gzip -9n)",
            path.display()
        ));
    }
}

/// Renders a man page with man-db (`man -l`, groff warnings on) when it is installed,
/// else checks the troff's `.TH` line.
fn check_man_page(page: &Path, name: &str, problems: &mut Vec<String>) {
    check_gzip_n(page, problems);
    let has_man = Command::new("man").arg("--version").output().is_ok();
    if has_man {
        let output = Command::new("man")
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .expect("man ran a moment ago");
        let text = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || !stderr.trim().is_empty() {
            problems.push(format!(
                "man -l {} exited {} and printed:\n{stderr}",
                page.display(),
                output.status
            ));
        }
        if !text.contains("NAME") || !text.contains(&format!("{name}(8)")) {
            problems.push(format!(
                "man -l {} rendered no NAME section for {name}(8):\n{text}",
                page.display()
            ));
        }
    } else {
        let troff = run_ok(Command::new("zcat").arg(page));
        if !troff
            .lines()
            .any(|l| l.starts_with(".TH ") && l.contains(&format!("{name} 8")))
        {
            problems.push(format!("{} has no `.TH {name} 8` line", page.display()));
        }
    }
}

#[test]
fn deb_package_holds_everything_an_install_needs() {
    let tmp = TempDir::new("deb");
    let deb = package_under_test(&tmp);
    let mut problems = Vec::new();

    // The control file.
    let fields = run_ok(Command::new("dpkg-deb").arg("--field").arg(&deb));
    let field = |name: &str| -> Option<String> {
        fields
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
    };
    for (name, want) in [
        ("Package", "emperor"),
        ("Version", env!("CARGO_PKG_VERSION")),
        ("Architecture", "amd64"),
        ("Recommends", "nginx"),
        ("Section", "httpd"),
        ("Priority", "optional"),
    ] {
        if field(name).as_deref() != Some(want) {
            problems.push(format!("{name}: want {want:?}, got {:?}", field(name)));
        }
    }
    for name in ["Maintainer", "Description", "Installed-Size"] {
        if field(name).is_none_or(|v| v.trim().is_empty()) {
            problems.push(format!("no {name} field"));
        }
    }
    let depends = field("Depends").unwrap_or_default();
    for want in ["libpython3.11", "libc6"] {
        if !depends.split(',').any(|d| d.trim().starts_with(want)) {
            problems.push(format!("Depends lacks {want}: {depends}"));
        }
    }
    let conffiles = run_ok(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .arg("conffiles"),
    );
    if conffiles.lines().map(str::trim).collect::<Vec<_>>() != ["/etc/emperor/emperor.ini"] {
        problems.push(format!(
            "conffiles should list /etc/emperor/emperor.ini:\n{conffiles}"
        ));
    }

    // The file list: type, mode and root ownership of every path the install needs.
    let entries = contents(&deb);
    let mut want: Vec<(String, &str)> = vec![
        ("/usr/bin/emperor".into(), "-rwxr-xr-x"),
        ("/usr/bin/vassal".into(), "-rwxr-xr-x"),
        ("/usr/bin/emperorctl".into(), "-rwxr-xr-x"),
        ("/lib/systemd/system/emperor.service".into(), "-rw-r--r--"),
        ("/usr/lib/tmpfiles.d/emperor.conf".into(), "-rw-r--r--"),
        ("/etc/emperor/emperor.ini".into(), "-rw-r--r--"),
        ("/etc/emperor/apps-available".into(), "drwxr-xr-x"),
        ("/etc/emperor/apps-enabled".into(), "drwxr-xr-x"),
        ("/usr/share/doc/emperor/copyright".into(), "-rw-r--r--"),
        (
            "/usr/share/doc/emperor/changelog.Debian.gz".into(),
            "-rw-r--r--",
        ),
        ("/usr/share/doc/emperor/README.Debian".into(), "-rw-r--r--"),
        (
            "/usr/share/doc/emperor/examples/notify-reload.conf".into(),
            "-rw-r--r--",
        ),
    ];
    for b in ["emperor", "vassal", "emperorctl"] {
        want.push((format!("/usr/share/man/man8/{b}.8.gz"), "-rw-r--r--"));
        want.push((
            format!("/usr/share/bash-completion/completions/{b}"),
            "-rw-r--r--",
        ));
        want.push((
            format!("/usr/share/zsh/vendor-completions/_{b}"),
            "-rw-r--r--",
        ));
        want.push((
            format!("/usr/share/fish/vendor_completions.d/{b}.fish"),
            "-rw-r--r--",
        ));
    }
    for (path, mode) in &want {
        match entries.iter().find(|e| &e.path == path) {
            None => problems.push(format!("{path} is not in the package")),
            Some(e) if e.mode != *mode => {
                problems.push(format!("{path} has mode {}, want {mode}", e.mode))
            }
            Some(_) => {}
        }
    }
    for e in entries.iter().filter(|e| e.owner != "root/root") {
        problems.push(format!("{} is owned by {}, not root/root", e.path, e.owner));
    }

    // Unpacked: the files themselves.
    let root = tmp.join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run_ok(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(root.join("DEBIAN")),
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = root.join("DEBIAN").join(script);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.starts_with("#!/bin/sh\n") || !text.contains("\nset -e\n") {
            problems.push(format!("{script} is not a `#!/bin/sh` + `set -e` script"));
        }
        if text.contains("#DEBHELPER#") {
            problems.push(format!("{script} has a #DEBHELPER# token nothing fills in"));
        }
        let mode = std::fs::metadata(&path).map_or(0, |m| m.permissions().mode() & 0o777);
        if mode != 0o755 {
            problems.push(format!("{script} has mode {mode:o}, want 755"));
        }
        for shell in ["bash", "sh"] {
            let out = Command::new(shell).arg("-n").arg(&path).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => problems.push(format!(
                    "{shell} -n {script}: {}",
                    String::from_utf8_lossy(&o.stderr)
                )),
                Err(e) => problems.push(format!("cannot run {shell}: {e}")),
            }
        }
    }
    let md5 = Command::new("md5sum")
        .args(["--check", "--quiet", "DEBIAN/md5sums"])
        .current_dir(&root)
        .output()
        .expect("md5sum (coreutils) is installed");
    if !md5.status.success() {
        problems.push(format!(
            "DEBIAN/md5sums does not match:\n{}",
            String::from_utf8_lossy(&md5.stdout)
        ));
    }
    let packaged_unit = std::fs::read_to_string(root.join("lib/systemd/system/emperor.service"))
        .unwrap_or_default();
    if packaged_unit != unit_text() {
        problems.push("the packaged unit differs from packaging/systemd/emperor.service".into());
    }
    let man8 = root.join("usr/share/man/man8");
    for b in ["emperor", "vassal", "emperorctl", "emperorctl-reload"] {
        check_man_page(&man8.join(format!("{b}.8.gz")), b, &mut problems);
    }
    check_gzip_n(
        &root.join("usr/share/doc/emperor/changelog.Debian.gz"),
        &mut problems,
    );
    for b in ["emperor", "vassal", "emperorctl"] {
        let bash = root.join("usr/share/bash-completion/completions").join(b);
        if !Command::new("bash")
            .arg("-n")
            .arg(&bash)
            .status()
            .is_ok_and(|s| s.success())
        {
            problems.push(format!("bash -n {} fails", bash.display()));
        }
        let zsh = std::fs::read_to_string(
            root.join("usr/share/zsh/vendor-completions")
                .join(format!("_{b}")),
        )
        .unwrap_or_default();
        if !zsh.starts_with(&format!("#compdef {b}")) {
            problems.push(format!("_{b} does not start with `#compdef {b}`"));
        }
        let fish = std::fs::read_to_string(
            root.join("usr/share/fish/vendor_completions.d")
                .join(format!("{b}.fish")),
        )
        .unwrap_or_default();
        if !fish.contains(&format!("complete -c {b} ")) {
            problems.push(format!("{b}.fish completes nothing for {b}"));
        }
        // The packaged binaries run (the vassal finds Debian's libpython3.11).
        let out = Command::new(root.join("usr/bin").join(b))
            .arg("--version")
            .output();
        match out {
            Ok(o)
                if o.status.success()
                    && String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")) => {}
            other => problems.push(format!("/usr/bin/{b} --version: {other:?}")),
        }
    }

    assert!(
        problems.is_empty(),
        "{} has {} problem(s):\n- {}",
        deb.display(),
        problems.len(),
        problems.join("\n- ")
    );
}
