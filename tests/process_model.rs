//! End-to-end tests of the vassal's process model: pre-forked workers and threads,
//! respawn, harakiri, recycling, lazy-apps, privilege drop, stop and reload signals.
//! Every test prints its figures (timings, pids, failure counts) with `eprintln!`; run
//! with `--nocapture` to see them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use emperor_e2e::http::{self, Addr};
use emperor_e2e::load::Load;
use emperor_e2e::vassal::show_status;
use emperor_e2e::{apps_dir, proc, uwsgi, venv, wait, TempDir, Vassal, VassalBuilder};

/// The worker pids of a vassal (its children).
fn workers(v: &Vassal) -> BTreeSet<u32> {
    let mut t = proc::tree(v.pid());
    t.remove(&v.pid());
    t
}

/// Starts a vassal on an HTTP unix socket serving `app` (a file in tests/apps).
fn start(tmp: &TempDir, app: &str, extra: &[&str]) -> (Vassal, Addr) {
    let sock = tmp.join("http.sock");
    let v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(&sock)
        .arg("--wsgi-file")
        .arg(apps_dir().join(app))
        .arg("--home")
        .arg(venv())
        .args(extra)
        .cwd(tmp.path())
        .spawn_ready();
    (v, Addr::Unix(sock))
}

/// `n` concurrent GETs; returns (wall time, bodies).
fn concurrent(addr: &Addr, target: &str, n: usize) -> (Duration, Vec<String>) {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (addr, target) = (addr.clone(), target.to_string());
            std::thread::spawn(move || {
                let r = http::get(&addr, &target);
                assert_eq!(r.status, 200, "{}", r.summary());
                r.text()
            })
        })
        .collect();
    let bodies = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    (t0.elapsed(), bodies)
}

fn pid_of(body: &str) -> u32 {
    body.trim()
        .parse()
        .unwrap_or_else(|_| panic!("expected a pid, got {body:?}"))
}

fn count_ready(v: &mut Vassal) -> usize {
    v.notifications()
        .iter()
        .filter(|m| m.lines().any(|l| l == "READY=1"))
        .count()
}

#[test]
fn seed_ini_with_five_processes_serves_five_requests_in_parallel() {
    let tmp = TempDir::new("pm5");
    std::fs::copy(apps_dir().join("procmodel.py"), tmp.join("wsgi.py")).expect("copy app");
    tmp.write(
        "mysimplewsgi.ini",
        format!(
            "[uwsgi]\nmodule = wsgi:application\nmaster = true\nprocesses = 5\nsocket = myapp.sock\n\
             chmod-socket = 664\nvacuum = true\ndie-on-term = true\nhome = {}\n",
            venv().display()
        ),
    );
    let mut v = VassalBuilder::new()
        .args(["--ini", "mysimplewsgi.ini"])
        .cwd(tmp.path())
        .spawn_ready();
    let pids = workers(&v);
    if pids.len() != 5 {
        v.fail(&format!(
            "processes = 5: expected 5 workers, found {pids:?}"
        ));
    }
    let sock = tmp.join("myapp.sock");
    let t0 = Instant::now();
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || uwsgi::get(&sock, "/sleep?s=1"))
        })
        .collect();
    let served: BTreeSet<u32> = handles
        .into_iter()
        .map(|h| {
            let r = h.join().expect("client thread");
            assert_eq!(r.status, 200, "{}", r.summary());
            pid_of(&r.text())
        })
        .collect();
    let took = t0.elapsed();
    eprintln!(
        "PARALLELISM processes=5: 5 concurrent 1 s requests took {:.2} s, served by {} distinct workers {served:?}",
        took.as_secs_f64(),
        served.len()
    );
    if took >= Duration::from_millis(1900) || served.len() != 5 {
        v.fail(&format!(
            "5 workers should serve 5 one-second requests together: took {took:?}, pids {served:?}"
        ));
    }
    let st = v.terminate();
    assert!(st.success(), "SIGTERM: {}", show_status(st));
}

#[test]
fn four_threads_in_one_worker_serve_four_sleeping_requests_in_parallel() {
    let tmp = TempDir::new("pmth");
    let (v, addr) = start(
        &tmp,
        "procmodel.py",
        &["--processes", "1", "--threads", "4"],
    );
    let (took, bodies) = concurrent(&addr, "/sleep?s=1", 4);
    let pids: BTreeSet<&String> = bodies.iter().collect();
    eprintln!(
        "PARALLELISM threads=4: 4 concurrent 1 s requests took {:.2} s in {} worker(s)",
        took.as_secs_f64(),
        pids.len()
    );
    if took >= Duration::from_millis(1900) || pids.len() != 1 {
        v.fail(&format!(
            "4 threads should serve 4 sleeping requests together in one worker: took {took:?}, pids {pids:?}"
        ));
    }
}

#[test]
fn killed_worker_is_replaced_and_only_its_request_fails() {
    let tmp = TempDir::new("pmkill");
    let (v, addr) = start(&tmp, "procmodel.py", &["--processes", "2"]);
    let before = workers(&v);
    let load = Load::start(&addr, "/sleep?s=0.05", 3, Duration::from_secs(8));
    wait::wait_until(Duration::from_secs(10), "some requests served", || {
        load.snapshot().ok >= 5
    });
    let victim = *before.iter().next().expect("a worker");
    proc::signal(victim, libc::SIGKILL);
    wait::wait_until(Duration::from_secs(10), "a replacement worker", || {
        let now = workers(&v);
        now.len() == 2 && !now.contains(&victim)
    });
    let at_kill = load.snapshot().ok;
    wait::wait_until(
        Duration::from_secs(10),
        "more requests after the kill",
        || load.snapshot().ok >= at_kill + 10,
    );
    let report = load.finish();
    let after = workers(&v);
    eprintln!(
        "KILL -9: workers before {before:?}, killed {victim}, after {after:?}; {} ok, {} failed {:?}",
        report.ok,
        report.failures.len(),
        report.failures
    );
    // The victim held at most one request (one thread).
    if report.failures.len() > 1 {
        v.fail(&format!(
            "only the killed worker's request may fail: {:?}",
            report.failures
        ));
    }
}

#[test]
fn harakiri_logs_the_traceback_answers_504_and_replaces_the_worker() {
    let tmp = TempDir::new("pmhara");
    let (v, addr) = start(
        &tmp,
        "procmodel.py",
        &["--processes", "1", "--harakiri", "2"],
    );
    let first = pid_of(&http::get(&addr, "/").text());
    let t0 = Instant::now();
    let r = http::get(&addr, "/sleep?s=30");
    let took = t0.elapsed();
    if r.status != 504 {
        v.fail(&format!("harakiri = 2: expected 504, got {}", r.summary()));
    }
    let source = std::fs::read_to_string(apps_dir().join("procmodel.py")).expect("app source");
    let line = source
        .lines()
        .position(|l| l.contains("SLEEPING-LINE"))
        .expect("marker line")
        + 1;
    let needle = format!("procmodel.py\", line {line}");
    v.wait_log(&needle, Duration::from_secs(10));
    v.wait_log("HARAKIRI", Duration::from_secs(1));
    let next = http::get(&addr, "/");
    let second = pid_of(&next.text());
    eprintln!(
        "HARAKIRI: 504 after {:.2} s; worker {first} replaced by {second}; traceback names line {line}",
        took.as_secs_f64()
    );
    if next.status != 200 || second == first || took > Duration::from_secs(10) {
        v.fail(&format!(
            "after harakiri a new worker must serve: {} (first pid {first}, took {took:?})",
            next.summary()
        ));
    }
}

/// Runs a bounded load while workers recycle; returns the distinct worker pids seen.
fn recycle_under_load(v: &Vassal, addr: &Addr, target: &str, what: &str) -> BTreeSet<String> {
    let start_pids = workers(v);
    let load = Load::start(addr, target, 2, Duration::from_secs(20));
    let ok = wait::try_wait_until(Duration::from_secs(15), || {
        load.snapshot().bodies.len() >= start_pids.len() + 3
    });
    let report = load.finish();
    eprintln!(
        "RECYCLE {what}: {} requests ok, {} failed, {} distinct worker pids {:?} (started with {start_pids:?})",
        report.ok,
        report.failures.len(),
        report.bodies.len(),
        report.bodies
    );
    if !ok {
        v.fail(&format!("{what}: workers were not recycled: {report:?}"));
    }
    if !report.failures.is_empty() {
        v.fail(&format!(
            "{what}: recycling must not fail requests: {:?}",
            report.failures
        ));
    }
    report.bodies
}

#[test]
fn max_requests_recycles_workers_without_failing_requests() {
    let tmp = TempDir::new("pmmax");
    let (mut v, addr) = start(
        &tmp,
        "procmodel.py",
        &[
            "--processes",
            "2",
            "--max-requests",
            "10",
            "--max-requests-delta",
            "3",
        ],
    );
    recycle_under_load(&v, &addr, "/", "max-requests=10");
    if !v.log().contains("max-requests reached") {
        v.fail("the log should say why workers were recycled");
    }
    let st = v.terminate();
    assert!(st.success(), "SIGTERM: {}", show_status(st));
}

#[test]
fn reload_on_rss_recycles_a_leaking_worker_without_failing_requests() {
    let tmp = TempDir::new("pmrss");
    // Each request keeps 8 MiB alive; a worker starts around 20 MiB.
    let (v, addr) = start(
        &tmp,
        "procmodel.py",
        &["--processes", "2", "--reload-on-rss", "80"],
    );
    recycle_under_load(&v, &addr, "/leak?kb=8192", "reload-on-rss=80");
    if !v.log().contains("reload-on-rss exceeded") {
        v.fail("the log should say why workers were recycled");
    }
}

#[test]
fn lazy_apps_runs_threads_started_at_import_and_preload_does_not_hang() {
    let tmp = TempDir::new("pmlazy");
    let (v, addr) = start(
        &tmp,
        "thread_at_import.py",
        &["--processes", "2", "--lazy-apps"],
    );
    let a = http::get(&addr, "/").json();
    wait::wait_until(Duration::from_secs(5), "the import thread ticking", || {
        http::get(&addr, "/").json()["ticks"].as_u64() > a["ticks"].as_u64()
    });
    if a["alive"] != true {
        v.fail(&format!(
            "lazy-apps: the thread started at import must run in the worker: {a}"
        ));
    }
    drop(v);

    // Preloaded: the fork hooks make it safe; the thread does not run in the workers,
    // and the log says so. A deadline (spawn_ready) guards against a hang.
    let tmp = TempDir::new("pmpre");
    let t0 = Instant::now();
    let (v, addr) = start(&tmp, "thread_at_import.py", &["--processes", "2"]);
    let r = http::get(&addr, "/");
    eprintln!(
        "PRELOAD with an import-time thread: ready and served in {:.2} s: {}",
        t0.elapsed().as_secs_f64(),
        r.text()
    );
    if r.status != 200 {
        v.fail(&format!("preload: {}", r.summary()));
    }
    v.wait_log("lazy-apps = true", Duration::from_secs(5));
}

#[test]
fn workers_dying_before_serving_make_the_vassal_give_up() {
    let tmp = TempDir::new("pmstorm");
    let mut v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(tmp.join("s.sock"))
        .arg("--wsgi-file")
        .arg(apps_dir().join("dies_at_import.py"))
        .args(["--lazy-apps", "--processes", "2", "--home"])
        .arg(venv())
        .cwd(tmp.path())
        .spawn();
    let st = v.wait_exit(Duration::from_secs(30));
    if st.code() != Some(1) || !v.log().contains("giving up") {
        v.fail(&format!(
            "expected exit 1 and a clear message, got {}",
            show_status(st)
        ));
    }

    // An import error in lazy workers ends like one in the master: exit 22.
    let mut v = VassalBuilder::new()
        .arg("--http-socket")
        .arg(tmp.join("i.sock"))
        .arg("--wsgi-file")
        .arg(apps_dir().join("import_error.py"))
        .args(["--lazy-apps", "--home"])
        .arg(venv())
        .cwd(tmp.path())
        .spawn();
    let st = v.wait_exit(Duration::from_secs(30));
    if st.code() != Some(22) {
        v.fail(&format!(
            "lazy import error: expected exit 22, got {}",
            show_status(st)
        ));
    }
}

/// (Uid, Gid, Groups) lines of /proc/PID/status.
fn ids(pid: u32) -> (String, String, String) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

#[test]
fn uid_gid_drop_runs_workers_unprivileged_and_nginx_still_connects() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED uid_gid_drop: not root, so no user switch can be tested");
        return;
    }
    let user = "emperor-test";
    let exists = std::process::Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let st = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ])
            .status()
            .expect("run useradd");
        assert!(st.success(), "useradd {user} failed");
    }
    let out = |args: &[&str]| {
        let o = std::process::Command::new("id")
            .args(args)
            .output()
            .expect("id");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let (uid, gid) = (out(&["-u", user]), out(&["-g", user]));
    let tmp = TempDir::new("pmuid");
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod tmp");
    let sock = tmp.join("app.sock");
    let v = VassalBuilder::new()
        .arg("--socket")
        .arg(&sock)
        .arg("--wsgi-file")
        .arg(apps_dir().join("procmodel.py"))
        .args(["--processes", "2", "--uid", user, "--gid", user, "--home"])
        .arg(venv())
        .cwd(tmp.path())
        .spawn_ready();
    let want_uid = format!("{uid} {uid} {uid} {uid}");
    let want_gid = format!("{gid} {gid} {gid} {gid}");
    for pid in workers(&v).into_iter().chain([v.pid()]) {
        let (u, g, groups) = ids(pid);
        eprintln!("PRIVILEGES pid {pid}: Uid {u} / Gid {g} / Groups [{groups}]");
        if u != want_uid || g != want_gid || !groups.is_empty() {
            v.fail(&format!(
                "pid {pid} should run as {user} ({uid}:{gid}) without supplementary groups: Uid {u}, Gid {g}, Groups [{groups}]"
            ));
        }
    }
    let nginx = emperor_e2e::nginx::Nginx::start(&sock);
    let r = http::get(&nginx.addr(), "/");
    if r.status != 200 {
        v.fail(&format!("through nginx: {}\n{}", r.summary(), nginx.logs()));
    }
}

#[test]
fn sigterm_under_load_lets_in_flight_requests_finish_then_exits_zero() {
    let tmp = TempDir::new("pmterm");
    let (mut v, addr) = start(
        &tmp,
        "procmodel.py",
        &["--processes", "2", "--threads", "2"],
    );
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = http::Conn::connect(&addr).expect("connect");
                c.request("GET", "/sleep?s=1.5", &[("Connection", "close")], b"")
            })
        })
        .collect();
    // Wait until the four requests are running (the stats say busy), then TERM.
    wait::wait_until(Duration::from_secs(10), "4 requests in flight", || {
        v.notifications()
            .iter()
            .rev()
            .find_map(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("X_VASSAL_WORKERS=").map(str::to_owned))
            })
            .is_some_and(|j| j.matches("\"busy\"").count() == 2)
    });
    let t0 = Instant::now();
    v.signal(libc::SIGTERM);
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect();
    let st = v.wait_exit(Duration::from_secs(20));
    let ok = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status == 200))
        .count();
    eprintln!(
        "SIGTERM under load: {ok}/4 in-flight requests completed; exit {} after {:.2} s",
        show_status(st),
        t0.elapsed().as_secs_f64()
    );
    if ok != 4 || !st.success() {
        v.fail(&format!(
            "in-flight requests must finish and the exit be 0: {results:?}"
        ));
    }
}

fn write_versioned_app(tmp: &TempDir, version: &str) {
    tmp.write(
        "versioned.py",
        format!(
            "import os\nVERSION = {version:?}\n\ndef application(environ, start_response):\n    \
             body = VERSION.encode()\n    start_response('200 OK', [('Content-Length', str(len(body)))])\n    \
             return [body]\n"
        ),
    );
}

fn hup_reload(lazy: bool) {
    let tmp = TempDir::new(if lazy { "pmhupl" } else { "pmhup" });
    write_versioned_app(&tmp, "v1");
    let sock = tmp.join("http.sock");
    let mut b = VassalBuilder::new()
        .arg("--http-socket")
        .arg(&sock)
        .arg("--wsgi-file")
        .arg(tmp.join("versioned.py"))
        .args(["--processes", "2", "--home"])
        .arg(venv())
        .cwd(tmp.path());
    if lazy {
        b = b.arg("--lazy-apps");
    }
    let mut v = b.spawn_ready();
    let addr = Addr::Unix(sock);
    assert_eq!(http::get(&addr, "/").text(), "v1");
    let master = v.pid();
    let load = Load::start(&addr, "/", 2, Duration::from_secs(30));
    wait::wait_until(Duration::from_secs(10), "load running", || {
        load.snapshot().ok >= 5
    });
    write_versioned_app(&tmp, "v2");
    let readies = count_ready(&mut v);
    let t0 = Instant::now();
    v.signal(libc::SIGHUP);
    wait::wait_until(Duration::from_secs(30), "READY=1 after the reload", || {
        count_ready(&mut v) > readies
    });
    let took = t0.elapsed();
    wait::wait_until(Duration::from_secs(10), "new code served", || {
        http::get(&addr, "/").text() == "v2"
    });
    let report = load.finish();
    let mode = if lazy {
        "lazy-apps worker by worker"
    } else {
        "preload re-exec"
    };
    eprintln!(
        "SIGHUP ({mode}): reloaded in {:.2} s; {} requests ok, {} failed {:?}; versions seen {:?}",
        took.as_secs_f64(),
        report.ok,
        report.failures.len(),
        report.failures,
        report.bodies
    );
    if !report.failures.is_empty() {
        v.fail(&format!(
            "no request may fail during a reload: {:?}",
            report.failures
        ));
    }
    if v.try_exit().is_some() || v.pid() != master {
        v.fail("the master must survive the reload with its pid");
    }
    let st = v.terminate();
    assert!(st.success(), "SIGTERM after reload: {}", show_status(st));
}

#[test]
fn sighup_reexecs_a_preloading_master_and_serves_new_code_without_refusing() {
    hup_reload(false);
}

#[test]
fn sighup_with_lazy_apps_replaces_workers_one_by_one_with_new_code() {
    hup_reload(true);
}

#[test]
fn worker_stats_are_reported_on_the_notify_socket() {
    let tmp = TempDir::new("pmstats");
    let (mut v, addr) = start(&tmp, "procmodel.py", &["--processes", "2"]);
    for _ in 0..3 {
        assert_eq!(http::get(&addr, "/").status, 200);
    }
    assert_eq!(http::get(&addr, "/raise").status, 500);
    let mut last = serde_json::Value::Null;
    let ok = wait::try_wait_until(Duration::from_secs(10), || {
        let Some(line) = v.notifications().iter().rev().find_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("X_VASSAL_WORKERS=").map(str::to_owned))
        }) else {
            return false;
        };
        last = serde_json::from_str(&line).expect("X_VASSAL_WORKERS is JSON");
        let list = last.as_array().expect("an array");
        let sum = |k: &str| list.iter().map(|w| w[k].as_u64().unwrap_or(0)).sum::<u64>();
        list.len() == 2 && sum("requests") == 4 && sum("exceptions") == 1
    });
    eprintln!("STATS: X_VASSAL_WORKERS={last}");
    if !ok {
        v.fail(&format!(
            "expected 2 workers, 4 requests, 1 exception: {last}"
        ));
    }
    let w = &last[0];
    for key in [
        "id",
        "pid",
        "state",
        "requests",
        "exceptions",
        "rss_kb",
        "busy_ms",
    ] {
        assert!(w.get(key).is_some(), "missing {key} in {w}");
    }
    assert_eq!(
        w.as_object().map(|o| o.len()),
        Some(7),
        "exactly the WorkerStatus fields: {w}"
    );
    assert_eq!(w["state"], "idle");
    assert!(w["rss_kb"].as_u64().unwrap_or(0) > 1024, "{w}");
    assert!(v
        .notifications()
        .iter()
        .any(|m| m.contains("STATUS=serving, 2 workers, 4 requests")));
}
