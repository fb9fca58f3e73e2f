//! The fault suite, vassal side: hostile and slow clients, bodies an app leaves unread
//! (behind a real nginx), logs that cannot be written, framing headers from the app,
//! harakiri without faulthandler. Each test is named after what broke; each prints the
//! figures it measured (`cargo test -p emperor-e2e --test faults -- --nocapture`).
//!
//! Bounded: every client has a timeout, every loop a count; unix sockets in temp dirs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use emperor_e2e::http::{self, Addr, Conn};
use emperor_e2e::nginx::Nginx;
use emperor_e2e::uwsgi;
use emperor_e2e::{TempDir, Vassal, VassalBuilder, IO_TIMEOUT};

/// A WSGI app for fault tests: `/` answers "ok"; `/reject` answers 405 without
/// reading the body; `/len` reads the body and answers its length.
const APP: &str = r#"
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/reject":
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not here\n\n"]
    if path == "/len":
        body = str(len(environ["wsgi.input"].read())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"#;

/// A vassal serving [`APP`] with 2 workers x 1 thread on `kind` (`socket` or
/// `http-socket`) at `<tmp>/app.sock`. socket-timeout is long (60 s) so that a thread
/// held by a slow client would show as a hang, not be rescued by the timeout.
fn vassal(tmp: &TempDir, kind: &str, extra: &str) -> (Vassal, std::path::PathBuf) {
    tmp.write("app.py", APP);
    let sock = tmp.join("app.sock");
    let ini = tmp.write(
        "app.ini",
        format!(
            "[uwsgi]\nwsgi-file = {}\nmaster = true\nprocesses = 2\nthreads = 1\n{kind} = {}\nsocket-timeout = 60\n{extra}",
            tmp.join("app.py").display(),
            sock.display()
        ),
    );
    let v = VassalBuilder::new()
        .arg("--ini")
        .arg(&ini)
        .cwd(tmp.path())
        .spawn_ready();
    (v, sock)
}

fn connect(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).expect("connect to the app socket");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("set timeout");
    s
}

/// Latencies of `n` sequential requests made by `one`, in ms (sorted).
fn latencies(n: usize, mut one: impl FnMut()) -> Vec<f64> {
    let mut out: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            one();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

/// Before the fix each fresh connection was read by a serving thread, blocking up to
/// socket-timeout: 4 silent clients stalled 2 workers x 1 thread. The bound asserted
/// here (2 s per request, against a 60 s socket-timeout) only separates "stalled" from
/// "served"; the figure printed is what the < 100 ms target is read from.
fn check_latencies(v: &Vassal, what: &str, lat: &[f64]) {
    println!(
        "{what}: 10 normal requests beside 16 idle, 16 partial-head, 8 slow-body connections: \
         min {:.1} ms, median {:.1} ms, max {:.1} ms",
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    if lat[lat.len() - 1] > 2000.0 {
        v.fail(&format!(
            "{what}: a normal request waited {:.0} ms behind slow clients",
            lat[lat.len() - 1]
        ));
    }
}

/// Sends the rest of each slow upload: once complete, each is served whole (its 1000
/// bytes counted by the app).
fn finish_slow_uploads(v: &Vassal, mut slow: Vec<UnixStream>, rest: &[u8]) {
    for s in &mut slow {
        s.write_all(rest).expect("send the rest of the body");
    }
    for mut s in slow {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let r = http::parse_response(&out).expect("a response to the slow upload");
        if r.status != 200 || r.body != b"1000" {
            v.fail(&format!("the slow upload, once complete: {}", r.summary()));
        }
    }
}

#[test]
fn slow_clients_do_not_stall_the_uwsgi_socket() {
    let tmp = TempDir::new("slowloris-uwsgi");
    let (v, sock) = vassal(&tmp, "socket", "");
    let idle: Vec<UnixStream> = (0..16).map(|_| connect(&sock)).collect();
    let full = uwsgi::packet(&uwsgi::vars("GET", "/", 0), b"");
    let partial: Vec<UnixStream> = (0..16)
        .map(|i| {
            let mut s = connect(&sock);
            // Part of the header, or part of the vars block.
            let cut = if i % 2 == 0 { 2 } else { full.len() / 2 };
            s.write_all(&full[..cut]).expect("send a partial packet");
            s
        })
        .collect();
    let body = vec![b'x'; 1000];
    let upload = uwsgi::packet(&uwsgi::vars("POST", "/len", body.len()), &body);
    let head_len = upload.len() - body.len();
    let slow: Vec<UnixStream> = (0..8)
        .map(|_| {
            let mut s = connect(&sock);
            s.write_all(&upload[..head_len + 10])
                .expect("send the packet and 10 body bytes");
            s
        })
        .collect();
    let lat = latencies(10, || {
        let r = uwsgi::get(&sock, "/");
        if r.status != 200 || r.body != b"ok" {
            v.fail(&format!("GET / beside slow clients: {}", r.summary()));
        }
    });
    check_latencies(&v, "uwsgi socket", &lat);
    finish_slow_uploads(&v, slow, &upload[head_len + 10..]);
    drop((idle, partial));
}

#[test]
fn slow_clients_do_not_stall_the_http_socket() {
    let tmp = TempDir::new("slowloris-http");
    let (v, sock) = vassal(&tmp, "http-socket", "");
    let addr = Addr::unix(&sock);
    let idle: Vec<UnixStream> = (0..16).map(|_| connect(&sock)).collect();
    let partial: Vec<UnixStream> = (0..16)
        .map(|i| {
            let mut s = connect(&sock);
            let part: &[u8] = if i % 2 == 0 {
                b"GET / HT"
            } else {
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
            };
            s.write_all(part).expect("send a partial head");
            s
        })
        .collect();
    let head =
        b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n";
    let slow: Vec<UnixStream> = (0..8)
        .map(|_| {
            let mut s = connect(&sock);
            s.write_all(head).expect("send the head");
            s.write_all(&[b'x'; 10]).expect("send 10 body bytes");
            s
        })
        .collect();
    let lat = latencies(10, || {
        let r = http::get(&addr, "/");
        if r.status != 200 || r.body != b"ok" {
            v.fail(&format!("GET / beside slow clients: {}", r.summary()));
        }
    });
    check_latencies(&v, "http socket", &lat);
    finish_slow_uploads(&v, slow, &[b'x'; 990]);
    drop((idle, partial));
}

/// With a low fd limit the per-worker bound on parked connections is small; past it
/// the oldest idle connections are closed, the log says so, and the app still answers.
#[test]
fn parked_connections_past_the_bound_are_closed_and_logged() {
    let tmp = TempDir::new("park-bound");
    tmp.write("app.py", APP);
    let sock = tmp.join("app.sock");
    // 96 fds: a bound of 32 connections for the one worker.
    let v = VassalBuilder::new()
        .args(["--socket", sock.to_str().expect("utf-8 path")])
        .arg("--wsgi-file")
        .arg(tmp.join("app.py"))
        .args(["--master", "--processes", "1", "--socket-timeout", "60"])
        .nofile(96)
        .cwd(tmp.path())
        .spawn_ready();
    let mut silent: Vec<UnixStream> = (0..50).map(|_| connect(&sock)).collect();
    let r = uwsgi::get(&sock, "/");
    if r.status != 200 {
        v.fail(&format!("GET / past the bound: {}", r.summary()));
    }
    v.wait_log("(its bound)", Duration::from_secs(10));
    // The oldest went: reading them ends (EOF) instead of timing out.
    let mut closed = 0;
    for s in &mut silent[..10] {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    println!("50 silent connections, bound 32: {closed} of the 10 oldest were closed");
    if closed < 10 {
        v.fail(&format!(
            "only {closed} of the 10 oldest silent connections were closed"
        ));
    }
}

/// Behind nginx, an app that answers without reading the body (405 here) made the
/// vassal close with body bytes unread: nginx saw a reset and answered 502.
#[test]
fn unread_request_body_behind_nginx_is_not_a_502() {
    let tmp = TempDir::new("unread-body");
    let (v, sock) = vassal(&tmp, "socket", "");
    let nginx = Nginx::start(&sock);
    let addr = nginx.addr();
    let body = vec![b'x'; 100 * 1024];
    let mut codes = std::collections::BTreeMap::<u16, u32>::new();
    for _ in 0..100 {
        let r = http::request(&addr, "POST", "/reject", &[], &body);
        *codes.entry(r.status).or_default() += 1;
    }
    println!("100 POSTs of 100 KiB to a 405 endpoint through nginx: {codes:?}");
    if codes.get(&405) != Some(&100) {
        v.fail(&format!(
            "expected 100 x 405, got {codes:?}; nginx error log:\n{}",
            nginx.logs()
        ));
    }
    // The direct HTTP socket keeps the connection usable after a body the app skipped.
    let tmp2 = TempDir::new("unread-body-http");
    let (v2, sock2) = vassal(&tmp2, "http-socket", "");
    let mut c = Conn::connect(&Addr::unix(&sock2)).expect("connect");
    let r = c
        .request("POST", "/reject", &[("Connection", "close")], &body)
        .expect("a response to the skipped upload");
    if r.status != 405 {
        v2.fail(&format!("HTTP POST /reject: {}", r.summary()));
    }
}

/// An app's framing headers were passed through while the server added its own: a
/// response could say both `Content-Length` and `Transfer-Encoding: chunked`, or carry
/// an unparsable length. Now refused with a 500 and a log line naming the header.
#[test]
fn app_framing_headers_that_contradict_ours_get_a_500() {
    let tmp = TempDir::new("framing");
    tmp.write(
        "app.py",
        r#"
HEADERS = {
    "/te": [("Transfer-Encoding", "chunked")],
    "/connection": [("Connection", "keep-alive")],
    "/badlen": [("Content-Length", "12abc")],
    "/twolen": [("Content-Length", "2"), ("Content-Length", "3")],
    "/samelen": [("Content-Length", "2"), ("content-length", "2")],
    "/ok": [("Content-Length", "2")],
}

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")] + HEADERS[environ["PATH_INFO"]])
    return [b"hi"]
"#,
    );
    let sock = tmp.join("app.sock");
    let v = VassalBuilder::new()
        .args(["--http-socket", sock.to_str().expect("utf-8 path")])
        .arg("--wsgi-file")
        .arg(tmp.join("app.py"))
        .cwd(tmp.path())
        .spawn_ready();
    let addr = Addr::unix(&sock);
    let cases: &[(&str, u16, &str)] = &[
        ("/te", 500, "hop-by-hop header \"Transfer-Encoding\""),
        ("/connection", 500, "hop-by-hop header \"Connection\""),
        ("/badlen", 500, "invalid Content-Length \"12abc\""),
        (
            "/twolen",
            500,
            "two different Content-Length values, 2 and 3",
        ),
        ("/samelen", 200, ""),
        ("/ok", 200, ""),
    ];
    for (path, status, logged) in cases {
        let r = http::get(&addr, path);
        if r.status != *status {
            v.fail(&format!(
                "GET {path}: expected {status}, got {}",
                r.summary()
            ));
        }
        if *status == 200 && (r.body != b"hi" || r.header("transfer-encoding").is_some()) {
            v.fail(&format!("GET {path}: {}", r.summary()));
        }
        if !logged.is_empty() {
            v.wait_log(logged, Duration::from_secs(10));
        }
    }
}

/// If faulthandler could not be registered (here: the app sets `sys.stderr = None`, so
/// `faulthandler.register` raises), SIGUSR2's default action killed the worker: no 504,
/// the client saw the connection drop. Now the worker still answers 504 and is replaced.
#[test]
fn harakiri_without_faulthandler_still_answers_504() {
    let tmp = TempDir::new("hara-nofh");
    tmp.write(
        "app.py",
        r#"
import os, sys, time
sys.stderr = None

def application(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(30)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#,
    );
    let sock = tmp.join("app.sock");
    let v = VassalBuilder::new()
        .args(["--http-socket", sock.to_str().expect("utf-8 path")])
        .arg("--wsgi-file")
        .arg(tmp.join("app.py"))
        .args(["--master", "--processes", "1", "--harakiri", "1"])
        .cwd(tmp.path())
        .spawn_ready();
    let addr = Addr::unix(&sock);
    let first = http::get(&addr, "/").text();
    let t0 = Instant::now();
    let r = http::get(&addr, "/sleep");
    let took = t0.elapsed();
    if r.status != 504 {
        v.fail(&format!(
            "harakiri without faulthandler: expected 504, got {}",
            r.summary()
        ));
    }
    v.wait_log(
        "no Python traceback (faulthandler could not be registered)",
        Duration::from_secs(10),
    );
    let second = http::get(&addr, "/").text();
    println!(
        "harakiri = 1 without faulthandler: 504 after {:.2} s; worker {first} replaced by {second}",
        took.as_secs_f64()
    );
    if second == first {
        v.fail("the worker was not replaced after harakiri");
    }
}

/// An app that prints on every request (stdout and stderr), for the log tests.
const CHATTY_APP: &str = r#"
import sys

def application(environ, start_response):
    print("print to stdout", environ["PATH_INFO"])
    print("print to stderr", environ["PATH_INFO"], file=sys.stderr)
    environ["wsgi.errors"].write("wsgi.errors line\n")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"#;

fn chatty_vassal(tmp: &TempDir, logto: &Path) -> (Vassal, std::path::PathBuf) {
    tmp.write("app.py", CHATTY_APP);
    let sock = tmp.join("app.sock");
    let ini = tmp.write(
        "app.ini",
        format!(
            "[uwsgi]\nwsgi-file = {}\nmaster = true\nprocesses = 2\nhttp-socket = {}\nlogto = {}\n",
            tmp.join("app.py").display(),
            sock.display(),
            logto.display()
        ),
    );
    let v = VassalBuilder::new()
        .arg("--ini")
        .arg(&ini)
        .cwd(tmp.path())
        .spawn_ready();
    (v, sock)
}

/// `logto` on a full filesystem made the vassal panic at start-up (exit 101, nothing
/// printed): tracing fell back to eprintln!, which panics on ENOSPC. /dev/full fails
/// every write with ENOSPC, exactly as a full disk does.
#[test]
fn logto_on_a_full_disk_keeps_serving_and_reports_once() {
    let tmp = TempDir::new("logfull");
    let (v, sock) = chatty_vassal(&tmp, Path::new("/dev/full"));
    let addr = Addr::unix(&sock);
    for i in 0..20 {
        let r = http::get(&addr, &format!("/r{i}"));
        if r.status != 200 || r.body != b"ok" {
            v.fail(&format!(
                "request {i} with the log on a full disk: {}",
                r.summary()
            ));
        }
    }
    // The vassal's own stderr (its log file here: what the emperor would read) holds
    // the report, once per process (master + 2 workers at most), and no panic.
    let log = v.log();
    let reports = log.matches("cannot write the log (/dev/full)").count();
    println!("logto = /dev/full: 20 requests answered 200; {reports} report line(s) on stderr");
    if reports == 0 || reports > 3 || log.contains("panicked") {
        v.fail(&format!("expected 1-3 reports and no panic, got {reports}"));
    }
}

/// After the disk fills, serving goes on; once space is back the log resumes with a
/// line saying how many records were dropped. A 64 KiB tmpfs is the full disk.
#[test]
fn logto_resumes_after_the_disk_had_filled_and_counts_dropped_records() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let tmp = TempDir::new("logfill");
    let mnt = tmp.join("disk");
    std::fs::create_dir(&mnt).expect("mkdir");
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(st.success(), "mount a tmpfs at {}", mnt.display());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let logfile = mnt.join("app.log");
    let (v, sock) = chatty_vassal(&tmp, &logfile);
    let addr = Addr::unix(&sock);
    // Fill the disk.
    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("create filler");
        let chunk = [b'x'; 4096];
        while f.write_all(&chunk).is_ok() {}
        // The log file's last page still has room: fill it too.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&logfile)
            .expect("open the log");
        while log.write_all(b"\n").is_ok() {}
    }
    for i in 0..10 {
        let r = http::get(&addr, &format!("/full{i}"));
        if r.status != 200 {
            v.fail(&format!("request {i} on a full disk: {}", r.summary()));
        }
    }
    std::fs::remove_file(&filler).expect("free the disk");
    for i in 0..4 {
        let r = http::get(&addr, &format!("/after{i}"));
        if r.status != 200 {
            v.fail(&format!(
                "request {i} after freeing the disk: {}",
                r.summary()
            ));
        }
    }
    let text = std::fs::read_to_string(&logfile).unwrap_or_default();
    let resumed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("the log is writable again"))
        .collect();
    println!("log after the disk filled and was freed: {resumed:?}");
    if resumed.is_empty() || !text.contains("/after") || text.contains("/full0") {
        v.fail(&format!("the log did not resume as expected:\n{text}"));
    }
    if !v.log().contains("cannot write the log") {
        v.fail("the failure was not reported on the original stderr");
    }
}

/// 1000 connections that send nothing made the app unreachable for ~200 s (each held a
/// serving thread until socket-timeout, one after another). Now they wait parked.
#[test]
fn a_thousand_silent_connections_do_not_make_the_app_unreachable() {
    // This process needs ~1000 fds for the clients.
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    for kind in ["socket", "http-socket"] {
        let tmp = TempDir::new("silent-1000");
        let (v, sock) = vassal(&tmp, kind, "listen = 1024\n");
        let t0 = Instant::now();
        let silent: Vec<UnixStream> = (0..1000).map(|_| connect(&sock)).collect();
        let opened = t0.elapsed();
        let lat = latencies(5, || {
            let r = if kind == "socket" {
                uwsgi::get(&sock, "/")
            } else {
                http::get(&Addr::unix(&sock), "/")
            };
            if r.status != 200 {
                v.fail(&format!(
                    "GET / beside 1000 silent connections: {}",
                    r.summary()
                ));
            }
        });
        println!(
            "{kind}: 1000 silent connections opened in {:.0} ms; 5 requests beside them: max {:.1} ms",
            opened.as_secs_f64() * 1000.0,
            lat[lat.len() - 1]
        );
        // Each silent connection costs the thread that accepts it a short wait for its
        // first bytes (serve/park.rs FirstByteGrace), so 1000 of them delay a request
        // by about half a second; before, each held a thread for socket-timeout (60 s).
        if lat[lat.len() - 1] > 15_000.0 {
            v.fail("a request waited behind silent connections");
        }
        drop(silent);
    }
}

/// Behind a proxy the client's address and scheme come from forwarded headers, believed
/// only from a trusted peer and only for the headers named: a client cannot set them
/// through an untrusted peer, and only the entry the trusted proxy appended counts.
#[test]
fn forwarded_headers_are_believed_only_from_trusted_peers() {
    let tmp = TempDir::new("forwarded");
    tmp.write(
        "app.py",
        r#"
import json

def application(environ, start_response):
    keys = ["REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO"]
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"#,
    );
    // A TCP http-socket on loopback, handed over already bound (no port race).
    let start = |extra: &[&str]| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr").to_string();
        let v = VassalBuilder::new()
            .args(["--http-socket", addr.as_str()])
            .arg("--wsgi-file")
            .arg(tmp.join("app.py"))
            .args(extra)
            .listen_fd(listener.into())
            .cwd(tmp.path())
            .spawn_ready();
        (v, Addr::Tcp(addr))
    };
    let ask = |addr: &Addr, headers: &[(&str, &str)]| -> serde_json::Value {
        http::request(addr, "GET", "/app/page", headers, b"").json()
    };
    let spoof: &[(&str, &str)] = &[
        ("X-Forwarded-For", "6.6.6.6, 10.1.2.3"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "7.7.7.7"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Script-Name", "/app"),
    ];

    // Default: loopback is trusted, X-Forwarded-For (its last entry) and -Proto count.
    let (v, addr) = start(&[]);
    let env = ask(&addr, spoof);
    println!("trusted loopback peer, default headers: {env}");
    if env["REMOTE_ADDR"] != "10.1.2.3" || env["wsgi.url_scheme"] != "https" {
        v.fail(&format!("trusted peer: {env}"));
    }
    if env["SERVER_NAME"] == "evil.example" || env["SCRIPT_NAME"] != "" {
        v.fail(&format!("headers that were not named were believed: {env}"));
    }
    let plain = ask(&addr, &[]);
    if plain["REMOTE_ADDR"] != "127.0.0.1" || plain["wsgi.url_scheme"] != "http" {
        v.fail(&format!("no forwarded headers: {plain}"));
    }
    drop(v);

    // An untrusted peer (loopback not in the list): nothing it says is believed.
    let (v, addr) = start(&["--forwarded-allow-ips", "10.9.9.9,192.168.0.0/16"]);
    let env = ask(&addr, spoof);
    println!("untrusted peer: {env}");
    if env["REMOTE_ADDR"] != "127.0.0.1" || env["wsgi.url_scheme"] != "http" {
        v.fail(&format!("an untrusted peer's headers were believed: {env}"));
    }
    drop(v);

    // Every header named: host, port and the mount point too.
    let (v, addr) = start(&[
        "--forwarded-headers",
        "x-forwarded-for,x-forwarded-proto,x-forwarded-host,x-forwarded-port,x-script-name",
    ]);
    let mut all = spoof.to_vec();
    all.push(("X-Forwarded-Port", "8443"));
    let env = ask(&addr, &all);
    println!("all headers named: {env}");
    let want = serde_json::json!({
        "REMOTE_ADDR": "10.1.2.3", "REMOTE_PORT": "", "wsgi.url_scheme": "https",
        "SERVER_NAME": "evil.example", "SERVER_PORT": "8443", "SCRIPT_NAME": "/app",
        "PATH_INFO": "/page",
    });
    if env != want {
        v.fail(&format!("expected {want}, got {env}"));
    }
    drop(v);

    // A bad list is refused at start-up with a clear message.
    let mut bad = VassalBuilder::new()
        .args([
            "--http-socket",
            tmp.join("bad.sock").to_str().expect("utf-8"),
        ])
        .arg("--wsgi-file")
        .arg(tmp.join("app.py"))
        .args(["--forwarded-allow-ips", "localhost"])
        .cwd(tmp.path())
        .spawn();
    let st = bad.wait_exit(Duration::from_secs(30));
    if st.success()
        || !bad
            .log()
            .contains("forwarded-allow-ips: `localhost` is not an IP address")
    {
        bad.fail(&format!("a bad forwarded-allow-ips: {st:?}"));
    }
}

/// Through a real nginx `proxy_pass` with a keep-alive upstream (the configuration in
/// etc/nginx/example-app-keepalive.conf): what a client claims in X-Forwarded-For and
/// X-Forwarded-Proto does not reach the app as its address or scheme, because nginx appends
/// its own entry (`$proxy_add_x_forwarded_for`) and sets the scheme, and only those count.
#[test]
fn a_client_cannot_spoof_its_address_through_nginx_proxy_pass() {
    let tmp = TempDir::new("forwarded-nginx");
    tmp.write(
        "app.py",
        r#"
import json

def application(environ, start_response):
    keys = ["REMOTE_ADDR", "wsgi.url_scheme", "HTTP_X_FORWARDED_FOR"]
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"#,
    );
    let sock = tmp.join("http.sock");
    let v = VassalBuilder::new()
        .args(["--http-socket", sock.to_str().expect("utf-8 path")])
        .arg("--wsgi-file")
        .arg(tmp.join("app.py"))
        .cwd(tmp.path())
        .spawn_ready();
    let nginx = Nginx::start_with(
        &format!(
            "    upstream app {{ server unix:{}; keepalive 8; }}",
            sock.display()
        ),
        "proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;",
    );
    let addr = nginx.addr();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = http::request(
            &addr,
            "GET",
            "/",
            &[
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Proto", "https"),
            ],
            b"",
        );
        if r.status != 200 {
            v.fail(&format!(
                "through nginx: {}; nginx log:\n{}",
                r.summary(),
                nginx.logs()
            ));
        }
        seen.push(r.json());
    }
    println!("a client claiming X-Forwarded-For 6.6.6.6 and https, through nginx: {seen:?}");
    for env in &seen {
        // nginx's own entry (it listens on a unix socket here: `unix:`) is last; the
        // client's 6.6.6.6 stays visible in the header, never as REMOTE_ADDR.
        if env["REMOTE_ADDR"] == "6.6.6.6" || env["wsgi.url_scheme"] != "http" {
            v.fail(&format!("the client's claim was believed: {env}"));
        }
        if env["HTTP_X_FORWARDED_FOR"] != "6.6.6.6, unix:" {
            v.fail(&format!("nginx did not append its entry: {env}"));
        }
    }
}
