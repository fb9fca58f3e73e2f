//! End-to-end tests of the vassal's PEP 3333 behaviour, straight on its HTTP and uwsgi
//! sockets (no nginx): environ, wsgi.input, start_response, write(), close(),
//! file_wrapper, and the HTTP/1.1 framing around them.

use std::time::Duration;

use emperor_e2e::http::{self, Conn};
use emperor_e2e::{http_vassal, uwsgi, uwsgi_vassal, wait, TempDir};

#[test]
fn environ_over_uwsgi_follows_pep3333() {
    let tmp = TempDir::new("env");
    let (v, sock) = uwsgi_vassal(&tmp, "echo.py", &["--master", "--processes", "2"]);
    let mut vars = uwsgi::vars("POST", "/some/path?x=1&y=%20", 5);
    // nginx's own uwsgi_params (no REQUEST_SCHEME, that is a distro addition) over TLS.
    vars.retain(|(k, _)| k != b"REQUEST_SCHEME");
    vars.push((b"HTTP_X_CUSTOM".to_vec(), b"value".to_vec()));
    vars.push((b"HTTPS".to_vec(), b"on".to_vec()));
    let raw = uwsgi::send(&sock, &uwsgi::packet(&vars, b"hello")).unwrap();
    let r = http::parse_response(&raw).unwrap();
    if r.status != 200 {
        v.fail(&format!("echo over uwsgi: {}", r.summary()));
    }
    let doc = r.json();
    let env = &doc["environ"];
    let expect = [
        ("REQUEST_METHOD", "POST"),
        ("PATH_INFO", "/some/path"),
        ("QUERY_STRING", "x=1&y=%20"),
        ("REQUEST_URI", "/some/path?x=1&y=%20"),
        ("CONTENT_LENGTH", "5"),
        ("CONTENT_TYPE", "application/octet-stream"),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("HTTP_HOST", "localhost"),
        ("HTTP_X_CUSTOM", "value"),
        ("wsgi.version", "(1, 0)"),
        ("wsgi.url_scheme", "https"),
        ("wsgi.multiprocess", "True"),
        ("wsgi.multithread", "False"),
        ("wsgi.run_once", "False"),
    ];
    for (k, want) in expect {
        if env[k].as_str() != Some(want) {
            v.fail(&format!(
                "environ[{k:?}]: expected {want:?}, got {:?}\nenviron: {env:#}",
                env[k]
            ));
        }
    }
    for k in ["wsgi.input", "wsgi.errors", "wsgi.file_wrapper"] {
        assert!(env.get(k).is_some(), "environ must have {k}: {env:#}");
    }
    assert_eq!(
        doc["body_b64"], "aGVsbG8=",
        "wsgi.input must yield the body"
    );
}

/// The environ builder reuses the key and value objects of the previous request when
/// the same variable comes at the same position with the same bytes. Successive requests
/// on one worker thread that change values, drop, add and reorder variables must each
/// see exactly their own.
#[test]
fn environ_of_successive_requests_is_each_requests_own() {
    let tmp = TempDir::new("env-seq");
    let (v, sock) = uwsgi_vassal(&tmp, "echo.py", &["--processes", "1"]);
    let base = uwsgi::vars("GET", "/a", 0);
    let long = "L".repeat(300);
    let mut cases: Vec<Vec<(Vec<u8>, Vec<u8>)>> = Vec::new();
    for i in 0..3 {
        let mut vars = base.clone();
        vars.push((b"HTTP_X_N".to_vec(), format!("{i}").into_bytes()));
        vars.push((b"HTTP_X_LONG".to_vec(), long.clone().into_bytes()));
        cases.push(vars);
    }
    let mut changed = base.clone();
    changed.retain(|(k, _)| k != b"REMOTE_ADDR");
    changed.reverse();
    changed.push((b"HTTP_X_LONG".to_vec(), format!("{long}2").into_bytes()));
    cases.push(changed);
    cases.push(uwsgi::vars("POST", "/b?q=1", 0));
    cases.push(base.clone());
    for (n, vars) in cases.iter().enumerate() {
        let raw = uwsgi::send(&sock, &uwsgi::packet(vars, b"")).unwrap();
        let r = http::parse_response(&raw).unwrap();
        if r.status != 200 {
            v.fail(&format!("request {n}: {}", r.summary()));
        }
        let doc = r.json();
        let env = doc["environ"].as_object().unwrap();
        let mut want = std::collections::BTreeMap::new();
        for (k, val) in vars {
            want.insert(
                String::from_utf8(k.clone()).unwrap(),
                String::from_utf8(val.clone()).unwrap(),
            );
        }
        want.entry("SCRIPT_NAME".into()).or_default();
        let got: std::collections::BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| !k.starts_with("wsgi."))
            .map(|(k, val)| (k.clone(), val.as_str().unwrap().to_string()))
            .collect();
        assert_eq!(got, want, "request {n}: environ differs from what was sent");
    }
}

#[test]
fn environ_over_http_socket() {
    let tmp = TempDir::new("envh");
    let (v, addr) = http_vassal(&tmp, "echo.py", &["--threads", "2"]);
    let r = http::request(
        &addr,
        "PUT",
        "/a%20b/c?q=%41",
        &[("X-Thing", "1"), ("Content-Type", "text/plain")],
        b"data",
    );
    if r.status != 200 {
        v.fail(&format!("echo over http: {}", r.summary()));
    }
    let doc = r.json();
    let env = &doc["environ"];
    let expect = [
        ("REQUEST_METHOD", "PUT"),
        ("PATH_INFO", "/a b/c"),
        ("QUERY_STRING", "q=%41"),
        ("CONTENT_LENGTH", "4"),
        ("CONTENT_TYPE", "text/plain"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_X_THING", "1"),
        ("HTTP_HOST", "localhost"),
        ("wsgi.url_scheme", "http"),
        ("wsgi.multithread", "True"),
    ];
    for (k, want) in expect {
        if env[k].as_str() != Some(want) {
            v.fail(&format!(
                "environ[{k:?}]: expected {want:?}, got {:?}\nenviron: {env:#}",
                env[k]
            ));
        }
    }
    assert!(
        env.get("HTTP_CONTENT_TYPE").is_none() && env.get("HTTP_CONTENT_LENGTH").is_none(),
        "CONTENT_* without HTTP_ prefix: {env:#}"
    );
    assert_eq!(doc["body_b64"], "ZGF0YQ==");
}

#[test]
fn validator_wrapped_app_passes() {
    let tmp = TempDir::new("valid");
    let (v, addr) = http_vassal(&tmp, "validated.py", &[]);
    for (method, body) in [("GET", &b""[..]), ("POST", &b"line one\nline two\n"[..])] {
        let r = http::request(&addr, method, "/validated", &[], body);
        let mut want = format!("validated:{method}:").into_bytes();
        want.extend_from_slice(body);
        if r.status != 200 || r.body != want {
            v.fail(&format!(
                "wsgiref.validate over http, {method}: expected 200 {:?}, got {}",
                String::from_utf8_lossy(&want),
                r.summary()
            ));
        }
    }
    assert!(
        !v.log().contains("AssertionError"),
        "the validator found a PEP 3333 violation:\n{}",
        v.log()
    );

    let tmp = TempDir::new("validu");
    let (v, sock) = uwsgi_vassal(&tmp, "validated.py", &[]);
    let r = uwsgi::request(&sock, "POST", "/validated", b"abc");
    if r.status != 200 || r.body != b"validated:POST:abc" {
        v.fail(&format!("wsgiref.validate over uwsgi: {}", r.summary()));
    }
    assert!(
        !v.log().contains("AssertionError"),
        "the validator found a PEP 3333 violation:\n{}",
        v.log()
    );
}

#[test]
fn write_callable_output_comes_before_the_returned_iterable() {
    let tmp = TempDir::new("write");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let r = http::get(&addr, "/write");
    if r.status != 200 || r.body != b"written-1;written-2;returned" {
        v.fail(&format!("write(): {}", r.summary()));
    }
}

#[test]
fn start_response_with_exc_info_replaces_headers_before_sending() {
    let tmp = TempDir::new("excinfo");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let r = http::get(&addr, "/exc_info");
    if r.status != 503 || r.body != b"middleware error page" || r.header("X-Not-Sent").is_some() {
        v.fail(&format!("start_response(..., exc_info) before any byte was sent must replace the status and headers: {}", r.summary()));
    }
    // After bytes were sent, start_response(exc_info) must re-raise (PEP 3333).
    let r = http::get(&addr, "/exc_info_late");
    if r.status != 200 || r.body != b"partial;reraised-ok" {
        v.fail(&format!(
            "start_response(..., exc_info) after headers were sent must re-raise exc_info: {}",
            r.summary()
        ));
    }
}

#[test]
fn file_wrapper_sends_the_whole_file() {
    let tmp = TempDir::new("fw");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let mut want = b"0123456789".repeat(10000);
    want.extend_from_slice(b"END");
    let r = http::get(&addr, "/file_wrapper");
    if r.status != 200 || r.body != want {
        v.fail(&format!(
            "wsgi.file_wrapper (real file): expected {} bytes, got {}",
            want.len(),
            r.summary()
        ));
    }
    let r = http::get(&addr, "/file_wrapper_read");
    if r.status != 200 || r.body != b"abcdef" {
        v.fail(&format!(
            "wsgi.file_wrapper (object with read() only): {}",
            r.summary()
        ));
    }
    let tmp = TempDir::new("fwu");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &[]);
    let r = uwsgi::get(&sock, "/file_wrapper");
    if r.status != 200 || r.body != want {
        v.fail(&format!(
            "wsgi.file_wrapper over uwsgi: expected {} bytes, got {}",
            want.len(),
            r.summary()
        ));
    }
}

fn close_lines(path: &std::path::Path, tag: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("close {tag} ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn iterable_close_is_called_exactly_once() {
    let tmp = TempDir::new("close");
    let log = tmp.join("close.log");
    let env = format!("CLOSE_LOG={}", log.display());
    let (v, addr) = http_vassal(
        &tmp,
        "features.py",
        &["--processes", "1", "--threads", "1", "--env", &env],
    );
    let r = http::get(&addr, "/close?tag=normal&count=3&size=5");
    if r.status != 200 || r.body != b"xxxxxxxxxxxxxxx" {
        v.fail(&format!("/close: {}", r.summary()));
    }
    wait::wait_until(
        Duration::from_secs(10),
        "close() of the normal response to be called",
        || !close_lines(&log, "normal").is_empty(),
    );
    // One worker, one thread: once the next request is answered, the first is fully done.
    assert_eq!(http::get(&addr, "/close?tag=fence").status, 200);
    wait::wait_until(
        Duration::from_secs(10),
        "close() of the fence response",
        || !close_lines(&log, "fence").is_empty(),
    );
    let lines = close_lines(&log, "normal");
    if lines != ["close normal 1"] {
        v.fail(&format!(
            "close() must be called exactly once, CLOSE_LOG shows {lines:?}"
        ));
    }
}

#[test]
fn iterable_close_is_called_once_when_the_client_disconnects_mid_response() {
    let tmp = TempDir::new("disc");
    let log = tmp.join("close.log");
    let env = format!("CLOSE_LOG={}", log.display());
    let (v, addr) = http_vassal(
        &tmp,
        "features.py",
        &["--processes", "1", "--threads", "1", "--env", &env],
    );
    {
        // About 6.5 GB if nobody stops it: the vassal must notice the client is gone.
        let mut c = Conn::connect(&addr).unwrap();
        c.send(&http::request_bytes(
            "GET",
            "/close?tag=disc&count=100000&size=65536",
            &[],
            b"",
        ))
        .unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < (1 << 20) {
            let n = c.read_raw(&mut buf).unwrap();
            assert!(n > 0, "the response ended early");
            got += n;
        }
    }
    wait::wait_until(
        Duration::from_secs(20),
        "close() after the client disconnected mid-response",
        || !close_lines(&log, "disc").is_empty(),
    );
    assert_eq!(
        http::get(&addr, "/close?tag=fence").status,
        200,
        "the vassal keeps serving"
    );
    wait::wait_until(
        Duration::from_secs(10),
        "close() of the fence response",
        || !close_lines(&log, "fence").is_empty(),
    );
    let lines = close_lines(&log, "disc");
    if lines != ["close disc 1"] {
        v.fail(&format!(
            "close() must be called exactly once after a disconnect, CLOSE_LOG shows {lines:?}"
        ));
    }
}

#[test]
fn chunked_upload_over_http_is_dechunked_for_the_app() {
    let tmp = TempDir::new("chunk");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut body = Vec::new();
    for piece in data.chunks(7919) {
        body.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let r = http::request(
        &addr,
        "POST",
        "/upload",
        &[("Transfer-Encoding", "chunked")],
        &body,
    );
    let want = serde_json::json!({"bytes": data.len(), "sha256": emperor_e2e::sha256_hex(&data)});
    if r.status != 200 || r.json() != want {
        v.fail(&format!(
            "chunked upload: expected {want}, got {}",
            r.summary()
        ));
    }
}

#[test]
fn expect_100_continue_is_answered_when_the_app_reads() {
    let tmp = TempDir::new("100c");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let mut c = Conn::connect(&addr).unwrap();
    c.send(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").unwrap();
    let interim = c
        .read_response(false)
        .unwrap_or_else(|e| v.fail(&format!("expected 100 Continue, got {e}")));
    if interim.status != 100 {
        v.fail(&format!(
            "Expect: 100-continue: expected an interim 100, got {}",
            interim.summary()
        ));
    }
    c.send(b"hello").unwrap();
    let r = c.read_final(false).unwrap();
    let want = serde_json::json!({"bytes": 5, "sha256": emperor_e2e::sha256_hex(b"hello")});
    if r.status != 200 || r.json() != want {
        v.fail(&format!("after 100-continue: {}", r.summary()));
    }
}

#[test]
fn wsgi_input_readline_readlines_and_iteration() {
    let tmp = TempDir::new("lines");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let body = b"first line\nsecond\n\nlast without newline";
    let want = serde_json::json!(["first line\n", "second\n", "\n", "last without newline"]);
    for mode in ["readline", "readlines", "iter"] {
        let r = http::request(&addr, "POST", &format!("/lines?mode={mode}"), &[], body);
        if r.status != 200 || r.json()["lines"] != want {
            v.fail(&format!(
                "wsgi.input {mode}: expected {want}, got {}",
                r.summary()
            ));
        }
    }
    let r = http::request(&addr, "POST", "/lines?mode=sized", &[], body);
    let want = serde_json::json!(["firs", "t line\n", "second\n\nlast without newline"]);
    if r.status != 200 || r.json()["lines"] != want {
        v.fail(&format!(
            "wsgi.input readline(4): expected {want}, got {}",
            r.summary()
        ));
    }
    // Same over uwsgi.
    let tmp = TempDir::new("linesu");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &[]);
    let r = uwsgi::request(&sock, "POST", "/lines?mode=readlines", body);
    if r.status != 200
        || r.json()["lines"]
            != serde_json::json!(["first line\n", "second\n", "\n", "last without newline"])
    {
        v.fail(&format!("uwsgi wsgi.input readlines: {}", r.summary()));
    }
}

#[test]
fn several_set_cookie_headers_are_preserved() {
    let want = [
        "a=1; Path=/",
        "b=2; Path=/; HttpOnly",
        "c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
    ];
    let tmp = TempDir::new("cookie");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let r = http::get(&addr, "/cookies");
    if r.status != 200 || r.headers_all("set-cookie") != want {
        v.fail(&format!(
            "HTTP: three Set-Cookie headers expected as sent, got {}",
            r.summary()
        ));
    }
    let tmp = TempDir::new("cookieu");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &[]);
    let r = uwsgi::get(&sock, "/cookies");
    if r.status != 200 || r.headers_all("set-cookie") != want {
        v.fail(&format!(
            "uwsgi: three Set-Cookie headers expected as sent, got {}",
            r.summary()
        ));
    }
}

#[test]
fn non_ascii_path_reaches_the_app_as_latin1_bytes() {
    let raw_path: &[u8] = b"/caf\xc3\xa9/\xff";
    let want_hex: String = raw_path.iter().map(|b| format!("{b:02x}")).collect();
    // uwsgi: nginx sends the decoded path bytes in PATH_INFO.
    let tmp = TempDir::new("nonascii");
    let (v, sock) = uwsgi_vassal(&tmp, "echo.py", &[]);
    let mut vars = uwsgi::vars("GET", "/x", 0);
    for (k, val) in vars.iter_mut() {
        if k == b"PATH_INFO" {
            *val = raw_path.to_vec();
        }
        if k == b"REQUEST_URI" {
            *val = b"/caf%C3%A9/%FF".to_vec();
        }
    }
    let raw = uwsgi::send(&sock, &uwsgi::packet(&vars, b"")).unwrap();
    let r = http::parse_response(&raw).unwrap();
    if r.status != 200 || r.json()["path_info_hex"] != want_hex.as_str() {
        v.fail(&format!(
            "uwsgi PATH_INFO bytes {raw_path:?}: expected hex {want_hex}, got {}",
            r.summary()
        ));
    }
    // HTTP: percent-decoded, then latin-1.
    let tmp = TempDir::new("nonasciih");
    let (v, addr) = http_vassal(&tmp, "echo.py", &[]);
    let r = http::get(&addr, "/caf%C3%A9/%FF");
    if r.status != 200 || r.json()["path_info_hex"] != want_hex.as_str() {
        v.fail(&format!(
            "HTTP /caf%C3%A9/%FF: expected PATH_INFO bytes {want_hex}, got {}",
            r.summary()
        ));
    }
    if r.json()["environ"]["REQUEST_URI"] != "/caf%C3%A9/%FF" {
        v.fail(&format!("REQUEST_URI stays encoded: {}", r.summary()));
    }
}

#[test]
fn head_has_no_body_and_keep_alive_continues() {
    let tmp = TempDir::new("head");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let mut c = Conn::connect(&addr).unwrap();
    for path in ["/head", "/head_unsized"] {
        let r = c
            .request("HEAD", path, &[], b"")
            .unwrap_or_else(|e| v.fail(&format!("HEAD {path}: {e}")));
        if r.status != 200 {
            v.fail(&format!("HEAD {path}: {}", r.summary()));
        }
        // If a body leaked after the HEAD response, this GET reads garbage.
        let r = c.request("GET", "/head", &[], b"").unwrap_or_else(|e| {
            v.fail(&format!(
                "GET after HEAD {path} on the same connection: {e}"
            ))
        });
        if r.status != 200 || r.body != b"this body must not be sent for HEAD" {
            v.fail(&format!(
                "GET after HEAD {path}: a body was sent for HEAD? got {}",
                r.summary()
            ));
        }
    }
}

#[test]
fn keep_alive_pipelining_and_chunked_responses() {
    let tmp = TempDir::new("ka");
    let (v, addr) = http_vassal(&tmp, "features.py", &[]);
    let mut c = Conn::connect(&addr).unwrap();
    // No Content-Length from the app: HTTP/1.1 gets a chunked response.
    let r = c
        .request("GET", "/download?bytes=100000", &[], b"")
        .unwrap();
    if r.status != 200 || r.body.len() != 100_000 || !r.chunked {
        v.fail(&format!(
            "an unsized body on HTTP/1.1 must be chunked: {}",
            r.summary()
        ));
    }
    // Three pipelined requests on the same connection, answered in order.
    let mut pipelined = Vec::new();
    for p in ["/write", "/head", "/cookies"] {
        pipelined.extend_from_slice(&http::request_bytes("GET", p, &[], b""));
    }
    c.send(&pipelined).unwrap();
    let bodies: Vec<Vec<u8>> = (0..3).map(|_| c.read_final(false).unwrap().body).collect();
    let want: [&[u8]; 3] = [
        b"written-1;written-2;returned",
        b"this body must not be sent for HEAD",
        b"cookies",
    ];
    if bodies != want {
        v.fail(&format!(
            "pipelined responses out of order or wrong: {:?}",
            bodies
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>()
        ));
    }
    // HTTP/1.0 without keep-alive: the body ends at the close.
    c.send(b"GET /download?bytes=1000 HTTP/1.0\r\n\r\n")
        .unwrap();
    let r = c.read_final(false).unwrap();
    if r.status != 200 || r.body.len() != 1000 || r.chunked {
        v.fail(&format!(
            "HTTP/1.0: no chunking, body to close: {}",
            r.summary()
        ));
    }
}

#[test]
fn an_idle_keep_alive_connection_does_not_hold_the_only_thread() {
    // One worker, one thread: before, the thread blocked on an idle keep-alive client
    // until socket-timeout and every other client waited. Idle connections are now
    // parked in the thread's poll set.
    let tmp = TempDir::new("idle");
    let (v, addr) = http_vassal(&tmp, "features.py", &["--socket-timeout", "30"]);
    let mut idle = Conn::connect(&addr).unwrap();
    let r = idle
        .request("GET", "/head", &[], b"")
        .unwrap_or_else(|e| v.fail(&format!("first client: {e}")));
    if r.status != 200 || r.closes() {
        v.fail(&format!("first client should stay open: {}", r.summary()));
    }
    for i in 0..3 {
        let mut other = Conn::connect(&addr).unwrap();
        // Far below the 30 s socket-timeout the idle client would otherwise hold.
        other.stream().set_timeout(Duration::from_secs(3)).unwrap();
        let r = other
            .request("GET", "/head", &[("Connection", "close")], b"")
            .unwrap_or_else(|e| {
                v.fail(&format!(
                    "client {i} waited behind an idle keep-alive one: {e}"
                ))
            });
        if r.status != 200 {
            v.fail(&format!("client {i}: {}", r.summary()));
        }
    }
    // The idle connection still works afterwards.
    let r = idle
        .request("GET", "/head", &[], b"")
        .unwrap_or_else(|e| v.fail(&format!("first client, second request: {e}")));
    if r.status != 200 {
        v.fail(&format!("first client, second request: {}", r.summary()));
    }
}

/// start_response's status and headers reach the wire byte for byte (latin-1, a reason
/// phrase added to a bare code); a bad one raises in the app, which answers 500 and
/// leaves the worker serving.
#[test]
fn start_response_status_and_headers_are_checked_and_sent_as_latin1() {
    let tmp = TempDir::new("start");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &["--processes", "1"]);
    let raw = |case: &str| {
        uwsgi::send(
            &sock,
            &uwsgi::packet(&uwsgi::vars("GET", &format!("/start?case={case}"), 0), b""),
        )
        .unwrap()
    };
    let ok: [(&str, &[u8]); 3] = [
        (
            "bare_code",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "latin1",
            b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "two_lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
        ),
    ];
    for (case, want) in ok {
        let got = raw(case);
        if got != want {
            v.fail(&format!(
                "{case}: expected {:?}, got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    for case in [
        "crlf_in_value",
        "not_latin1",
        "bad_status",
        "not_a_list",
        "not_a_pair",
        "bytes_name",
    ] {
        let got = raw(case);
        let r = http::parse_response(&got).unwrap();
        if r.status != 500 || got.windows(8).any(|w| w == b"Injected") {
            v.fail(&format!(
                "{case}: expected a clean 500, got {}",
                r.summary()
            ));
        }
    }
    let r = uwsgi::get(&sock, "/start?case=latin1");
    if r.status != 200 {
        v.fail(&format!("the worker must still serve: {}", r.summary()));
    }
}

/// Request variables named like `wsgi.*` (a front server can send anything) never
/// replace the server's own entries, on the first request or on later ones.
#[test]
fn request_variables_cannot_replace_wsgi_entries() {
    let tmp = TempDir::new("env-wsgi");
    let (v, sock) = uwsgi_vassal(&tmp, "echo.py", &["--processes", "1"]);
    for round in 0..2 {
        let mut vars = uwsgi::vars("GET", "/", 0);
        vars.push((b"wsgi.version".to_vec(), b"evil".to_vec()));
        vars.push((b"wsgi.url_scheme".to_vec(), b"evil".to_vec()));
        vars.push((b"wsgi.run_once".to_vec(), b"evil".to_vec()));
        let raw = uwsgi::send(&sock, &uwsgi::packet(&vars, b"")).unwrap();
        let r = http::parse_response(&raw).unwrap();
        if r.status != 200 {
            v.fail(&format!("round {round}: {}", r.summary()));
        }
        let env = &r.json()["environ"];
        assert_eq!(env["wsgi.version"], "(1, 0)", "round {round}: {env:#}");
        assert_eq!(env["wsgi.url_scheme"], "http", "round {round}: {env:#}");
        assert_eq!(env["wsgi.run_once"], "False", "round {round}: {env:#}");
        // And an ordinary request after it sees a clean environ.
        let r = uwsgi::get(&sock, "/");
        assert_eq!(r.json()["environ"]["wsgi.url_scheme"], "http");
    }
}

/// The only serving thread of a worker keeps the GIL around socket I/O while no other
/// Python thread exists (a saving of three GIL hand-offs per request). An app thread,
/// started during a request or (with lazy-apps) while the worker imported the app, must
/// run while the serving thread waits for a slow client.
#[test]
fn an_app_thread_runs_while_the_only_serving_thread_waits_for_a_client() {
    let tmp = TempDir::new("gil");
    let ticks = tmp.path().join("ticks");
    // A socket-timeout longer than the wait below: the stalled read must still be
    // pending while the ticks are counted.
    let (v, sock) = uwsgi_vassal(
        &tmp,
        "features.py",
        &["--processes", "1", "--socket-timeout", "60"],
    );
    let r = uwsgi::get(&sock, &format!("/ticker?file={}", ticks.display()));
    if r.status != 200 {
        v.fail(&format!("/ticker: {}", r.summary()));
    }
    ticks_while_stalled(&sock, &ticks, "/head");
    drop(v);

    let tmp = TempDir::new("gil-lazy");
    let ticks = tmp.path().join("ticks");
    let env = format!("TICKS_FILE={}", ticks.display());
    let (_v, sock) = uwsgi_vassal(
        &tmp,
        "ticker_at_import.py",
        &[
            "--processes",
            "1",
            "--lazy-apps",
            "--socket-timeout",
            "60",
            "--env",
            &env,
        ],
    );
    ticks_while_stalled(&sock, &ticks, "/");
}

/// Stalls a uwsgi request halfway through its header and waits until the ticker has
/// written 50 more ticks to `ticks`, then completes the request.
fn ticks_while_stalled(sock: &std::path::Path, ticks: &std::path::Path, uri: &str) {
    use std::io::Write as _;
    let read = || {
        std::fs::read_to_string(ticks)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    wait::wait_until(
        Duration::from_secs(10),
        "the ticker thread's first tick",
        || read().is_some(),
    );
    let packet = uwsgi::packet(&uwsgi::vars("GET", uri, 0), b"");
    let mut slow = std::os::unix::net::UnixStream::connect(sock).unwrap();
    slow.write_all(&packet[..2]).unwrap();
    let before = read().unwrap();
    wait::wait_until(
        Duration::from_secs(10),
        "the app's thread to tick 50 times while the serving thread waits",
        || read().is_some_and(|n| n >= before + 50),
    );
    slow.write_all(&packet[2..]).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut slow, &mut raw).unwrap();
    let r = http::parse_response(&raw).unwrap();
    assert_eq!(r.status, 200, "the stalled request: {}", r.summary());
}

/// wsgi.input, start_response and write are reused by the next request only when the
/// app kept no reference to them. Objects an app keeps from an earlier request cannot
/// touch a later request's response or body.
#[test]
fn objects_an_app_keeps_never_reach_a_later_request() {
    let tmp = TempDir::new("kept");
    let (v, sock) = uwsgi_vassal(&tmp, "features.py", &["--processes", "1"]);
    let r = uwsgi::get(&sock, "/keep");
    if r.status != 200 || r.body != b"kept" {
        v.fail(&format!("/keep: {}", r.summary()));
    }
    for (round, uri) in ["/use_kept", "/use_kept?drop=1"].iter().enumerate() {
        let r = uwsgi::request(&sock, "POST", uri, b"this request's body");
        if r.status != 200 {
            v.fail(&format!("{uri}: {}", r.summary()));
        }
        let doc = r.json();
        assert!(
            !String::from_utf8_lossy(&r.body).contains("INJECTED"),
            "round {round}: a kept write() reached a later response: {}",
            r.summary()
        );
        assert_eq!(
            doc["input"], "",
            "round {round}: a kept wsgi.input read a later body"
        );
        assert_ne!(doc["start_response"], "no error", "round {round}: {doc}");
    }
    // After the app let go of them, requests go on normally (and reuse objects).
    for _ in 0..3 {
        let r = uwsgi::request(&sock, "POST", "/upload", b"abc");
        if r.status != 200 || r.json()["bytes"] != 3 {
            v.fail(&format!("/upload after: {}", r.summary()));
        }
    }
}
