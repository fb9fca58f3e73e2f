//! HTTP/1 conformance: every default-settings case of gunicorn's request corpus, sent
//! byte for byte to the vassal's HTTP socket running the echo app.
//!
//! Rules (from shared/conformance/README.md):
//! - valid cases: each request gets a 2xx and the echo shows the expected method, path,
//!   query, headers and body. The listed "a strict server may refuse" cases may instead get
//!   a 4xx/5xx or a close without 2xx.
//! - invalid cases: no 2xx (a 4xx/5xx or a close).
//! - HTTP/1.1 requests lacking Host get `Host: localhost` inserted (the README's list for
//!   invalid cases; computed per request for valid ones), and HOST joins the expectations.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use emperor_e2e::http::{Conn, Response};
use emperor_e2e::{http_vassal, repo_root, TempDir};
use serde_json::Value;

/// Valid cases a strict server may refuse (README, "Where a strict HTTP/1.1 server may
/// reasonably differ").
const MAY_REFUSE: &[&str] = &[
    "valid/005",
    "valid/009",
    "valid/029",
    "valid/030",
    "valid/rfc9112_smuggle_te_identity_chunked_01",
    "valid/014",
    "valid/027",
    "valid/025",
    "valid/025_line",
    "valid/rfc9112_smuggle_gzip_chunked_01",
    "valid/040",
    "valid/099",
    "valid/rfc9112_target_absolute_userinfo_01",
    "valid/rfc9112_target_authority_connect_01",
    "valid/rfc9112_target_authority_ipv6_01",
];

/// Invalid cases a server may accept (README, "Invalid cases a server may accept").
const MAY_ACCEPT: &[&str] = &[
    "invalid/003c",
    "invalid/obs_fold_01",
    "invalid/rfc9110_trailer_forbidden_cl_01",
    "invalid/rfc9110_trailer_forbidden_host_01",
    "invalid/rfc9110_trailer_forbidden_te_01",
];

/// Invalid cases that lack Host (README, "HTTP/1.1 requests without Host").
const INVALID_NEED_HOST: &[&str] = &[
    "003b",
    "003c",
    "005",
    "016",
    "017",
    "020",
    "021",
    "chunked_01",
    "chunked_02",
    "chunked_03",
    "chunked_04",
    "chunked_06",
    "chunked_08",
    "chunked_09",
    "chunked_10",
    "chunked_11",
    "chunked_12",
    "chunked_13",
    "chunked_14",
    "nonascii_03",
    "nonascii_04",
    "prefix_03",
    "prefix_04",
    "prefix_05",
];

const HOST_LINE: &[u8] = b"Host: localhost\r\n";

fn corpus_path() -> PathBuf {
    let in_repo = repo_root().join("crates/wire/tests/data/gunicorn-http-corpus.json");
    if in_repo.exists() {
        return in_repo;
    }
    let shared = repo_root().join("../shared/conformance/gunicorn-http-corpus.json");
    assert!(
        shared.exists(),
        "the corpus is missing: expected {}",
        in_repo.display()
    );
    shared
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(c as u32).expect("corpus strings are ISO-8859-1"))
        .collect()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Inserts Host after the request line that starts at `at`.
fn insert_host(raw: &mut Vec<u8>, at: usize) -> bool {
    match find(raw, b"\n", at) {
        Some(nl) => {
            raw.splice(nl + 1..nl + 1, HOST_LINE.iter().copied());
            true
        }
        None => false,
    }
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let Ok(b) =
                u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// (PATH_INFO bytes, QUERY_STRING) a WSGI server derives from a request-target.
fn path_and_query(target: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let t = target.split(|&b| b == b'#').next().unwrap_or(b"");
    let t = if t.starts_with(b"http://") || t.starts_with(b"https://") {
        let after = find(t, b"://", 0).map(|p| p + 3).unwrap_or(0);
        // Drop scheme://authority; what is left starts with '/' or '?', or is empty.
        match t[after..].iter().position(|&b| b == b'/' || b == b'?') {
            Some(p) => &t[after + p..],
            None => b"",
        }
    } else {
        t
    };
    let (path, query) = match t.iter().position(|&b| b == b'?') {
        Some(q) => (&t[..q], &t[q + 1..]),
        None => (t, &b""[..]),
    };
    let mut path = percent_decode(path);
    if path.is_empty() {
        path = b"/".to_vec();
    }
    (path, query.to_vec())
}

fn env_key(name: &str) -> String {
    match name {
        "CONTENT-TYPE" => "CONTENT_TYPE".into(),
        "CONTENT-LENGTH" => "CONTENT_LENGTH".into(),
        n => format!("HTTP_{}", n.replace('-', "_")),
    }
}

fn norm_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Compares one echo response with one expected request; returns the mismatches.
fn check_echo(resp: &Response, exp: &Value, host_added: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let doc: Value = match serde_json::from_slice(&resp.body) {
        Ok(d) => d,
        Err(e) => {
            return vec![format!(
                "body is not the echo JSON ({e}): {}",
                resp.summary()
            )]
        }
    };
    let env = &doc["environ"];
    let method = exp["method"].as_str().unwrap_or("");
    if env["REQUEST_METHOD"] != method {
        problems.push(format!(
            "REQUEST_METHOD {:?}, expected {method:?}",
            env["REQUEST_METHOD"]
        ));
    }
    let target = latin1(exp["target"].as_str().unwrap_or(""));
    if target != b"*" && method != "CONNECT" {
        let (path, query) = path_and_query(&target);
        let got_path = latin1(env["PATH_INFO"].as_str().unwrap_or("\u{100}missing"));
        let script = latin1(env["SCRIPT_NAME"].as_str().unwrap_or(""));
        let full = [script, got_path].concat();
        if full != path {
            problems.push(format!(
                "PATH_INFO {:?}, expected {:?}",
                String::from_utf8_lossy(&full),
                String::from_utf8_lossy(&path)
            ));
        }
        let got_q = latin1(env["QUERY_STRING"].as_str().unwrap_or(""));
        if got_q != query {
            problems.push(format!(
                "QUERY_STRING {:?}, expected {:?}",
                String::from_utf8_lossy(&got_q),
                String::from_utf8_lossy(&query)
            ));
        }
    }
    // Expected headers, repeated names joined (gunicorn joins with ",").
    let mut expected: Vec<(String, Vec<String>)> = Vec::new();
    let mut headers: Vec<(String, String)> = exp["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap_or("").to_string(),
                        h[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if host_added {
        headers.push(("HOST".into(), "localhost".into()));
    }
    let chunked = headers.iter().any(|(n, _)| n == "TRANSFER-ENCODING");
    for (n, v) in headers {
        match expected.iter_mut().find(|(k, _)| *k == n) {
            Some((_, vals)) => vals.extend(norm_list(&v)),
            None => expected.push((n, if v.is_empty() { vec![] } else { norm_list(&v) })),
        }
    }
    for (name, vals) in expected {
        // A server that de-chunks may drop Transfer-Encoding and set its own length.
        if chunked && (name == "TRANSFER-ENCODING" || name == "CONTENT-LENGTH") {
            continue;
        }
        let key = env_key(&name);
        let got = env[&key].as_str().map(norm_list);
        if got.as_deref() != Some(&vals[..]) {
            problems.push(format!("{key} = {:?}, expected {vals:?}", env[&key]));
        }
    }
    if doc["body_b64"] != exp["body_b64"] {
        problems.push(format!(
            "body {:?}, expected {:?}",
            doc["body_b64"], exp["body_b64"]
        ));
    }
    problems
}

enum Outcome {
    Responses(Vec<Response>),
    /// The connection ended (or failed) after these responses.
    Ended(Vec<Response>, String),
}

/// Reads up to `n` responses; on a timeout, half-closes once (the server may wait for a
/// body that never comes) and keeps reading.
fn read_responses(c: &mut Conn, n: usize, head_flags: &[bool]) -> Outcome {
    let mut got = Vec::new();
    let mut half_closed = false;
    while got.len() < n {
        match c.read_final(head_flags.get(got.len()).copied().unwrap_or(false)) {
            Ok(r) => got.push(r),
            Err(e)
                if !half_closed
                    && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                half_closed = true;
                let _ = c.shutdown_write();
            }
            Err(e) => return Outcome::Ended(got, e.to_string()),
        }
    }
    Outcome::Responses(got)
}

#[test]
fn gunicorn_corpus_default_settings() {
    let corpus: Value = serde_json::from_slice(&std::fs::read(corpus_path()).expect("read corpus"))
        .expect("corpus is JSON");
    let tmp = TempDir::new("conf");
    let (v, addr) = http_vassal(&tmp, "echo.py", &["--processes", "2"]);
    let b64 = base64::engine::general_purpose::STANDARD;

    let mut failures: Vec<String> = Vec::new();
    let (mut valid_ok, mut valid_refused, mut invalid_ok, mut invalid_accepted, mut total) =
        (0, 0, 0, 0, 0);
    let mut host_inserted: Vec<String> = Vec::new();
    let mut refused_names: Vec<String> = Vec::new();
    for case in corpus["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or("?").to_string();
        let settings = &case["settings"];
        let default = settings.as_object().is_none_or(|m| m.is_empty())
            || (name == "invalid/limit_header_default_01");
        if !default {
            continue;
        }
        total += 1;
        let mut raw = b64
            .decode(case["raw_b64"].as_str().unwrap_or(""))
            .expect("raw_b64");
        let mut c =
            Conn::connect(&addr).unwrap_or_else(|e| v.fail(&format!("{name}: connect: {e}")));
        c.stream().set_timeout(Duration::from_secs(3)).unwrap();

        if case["kind"] == "valid" {
            let exps = case["expect"].as_array().expect("expect list").clone();
            // Insert Host into each HTTP/1.1 request that lacks it, last first.
            let mut host_added = vec![false; exps.len()];
            let mut pos = 0;
            let mut at = Vec::new();
            for (i, e) in exps.iter().enumerate() {
                let line = [
                    latin1(e["method"].as_str().unwrap_or("")),
                    b" ".to_vec(),
                    latin1(e["target"].as_str().unwrap_or("")),
                ]
                .concat();
                let Some(p) = find(&raw, &line, pos) else {
                    continue;
                };
                pos = p + line.len();
                let v11 = e["version"] == serde_json::json!([1, 1]);
                let has_host = e["headers"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|h| h[0] == "HOST"));
                if v11 && !has_host {
                    at.push((i, p));
                }
            }
            for &(i, p) in at.iter().rev() {
                host_added[i] = insert_host(&mut raw, p);
            }
            if !at.is_empty() {
                host_inserted.push(name.clone());
            }
            let _ = c.send(&raw);
            let heads: Vec<bool> = exps.iter().map(|e| e["method"] == "HEAD").collect();
            let (resps, ended) = match read_responses(&mut c, exps.len(), &heads) {
                Outcome::Responses(r) => (r, None),
                Outcome::Ended(r, why) => (r, Some(why)),
            };
            let refused = resps.iter().any(|r| !(200..300).contains(&r.status))
                || (resps.is_empty() && ended.is_some());
            if refused {
                if MAY_REFUSE.contains(&name.as_str()) {
                    valid_refused += 1;
                    refused_names.push(name.clone());
                } else {
                    failures.push(format!(
                        "{name} (valid): refused: statuses {:?}{}",
                        resps
                            .iter()
                            .map(|r| format!(
                                "{} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body[..r.body.len().min(120)])
                            ))
                            .collect::<Vec<_>>(),
                        ended.map(|w| format!(", then: {w}")).unwrap_or_default()
                    ));
                }
                continue;
            }
            let mut problems = Vec::new();
            if resps.len() < exps.len() && !resps.last().is_some_and(|r| r.closes()) {
                problems.push(format!(
                    "only {} of {} pipelined requests answered without announcing the close ({})",
                    resps.len(),
                    exps.len(),
                    ended.clone().unwrap_or_default()
                ));
            }
            for (i, (r, e)) in resps.iter().zip(&exps).enumerate() {
                for p in check_echo(r, e, host_added[i]) {
                    problems.push(format!("request {}: {p}", i + 1));
                }
            }
            if problems.is_empty() {
                valid_ok += 1;
            } else {
                failures.push(format!("{name} (valid): {}", problems.join("; ")));
            }
        } else {
            let stem = name.trim_start_matches("invalid/");
            if INVALID_NEED_HOST.contains(&stem) && insert_host(&mut raw, 0) {
                host_inserted.push(name.clone());
            }
            let _ = c.send(&raw);
            let _ = c.shutdown_write();
            let mut statuses = Vec::new();
            let mut end = String::from("closed");
            loop {
                match c.read_final(false) {
                    Ok(r) => statuses.push(r.status),
                    Err(e) => {
                        if !matches!(e.kind(), ErrorKind::UnexpectedEof) {
                            end = e.to_string();
                        }
                        break;
                    }
                }
            }
            let timed_out = end.contains("timed out") || end.contains("temporarily unavailable");
            let accepted = statuses.iter().any(|s| (200..300).contains(s));
            if timed_out {
                failures.push(format!("{name} (invalid, {}): no answer and no close within 3 s (statuses {statuses:?})", case["expect"]["error"]));
            } else if accepted && !MAY_ACCEPT.contains(&name.as_str()) {
                failures.push(format!(
                    "{name} (invalid, {}): accepted with statuses {statuses:?}",
                    case["expect"]["error"]
                ));
            } else if accepted {
                invalid_accepted += 1;
            } else {
                invalid_ok += 1;
            }
        }
    }
    let summary = format!(
        "conformance: {total} default-settings cases: valid {valid_ok} ok + {valid_refused} refused (allowed); \
         invalid {invalid_ok} rejected + {invalid_accepted} accepted (allowed); {} failures. Host inserted into {} cases.",
        failures.len(),
        host_inserted.len()
    );
    eprintln!("{summary}");
    eprintln!(
        "  refused valid cases (allowed): {}",
        refused_names.join(" ")
    );
    for f in &failures {
        eprintln!("  FAIL {f}");
    }
    assert!(
        total >= 114,
        "expected 114 default-settings cases in the corpus, found {total}"
    );
    if !failures.is_empty() {
        v.fail(&format!(
            "{summary}\n{}",
            failures
                .iter()
                .map(|f| format!("  FAIL {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
}
