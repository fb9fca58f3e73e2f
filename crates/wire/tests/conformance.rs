//! gunicorn's HTTP request corpus (tests/data/gunicorn-http-corpus.json, MIT, see
//! LICENSE-gunicorn.txt next to it), run at parser level.
//!
//! Every case is fed whole and in several chunkings. A valid case must give the expected
//! requests, as the application sees them through `cgi_vars` and body decoding; an invalid case
//! must be refused (or end truncated, which a server answers by closing). The README of the
//! corpus documents where a strict server may differ; those differences are the explicit tables
//! below, each entry with its reason. The test prints a summary line with the counts.

mod support;

use serde_json::Value;
use support::{load_corpus, run_stream, Case, Outcome, Request};
use wire::http::{cgi_vars, Limits, ServerInfo, Version};

/// gunicorn's defaults, which the corpus assumes: a 4094-byte request line, 100 fields, 8190
/// bytes per field line including CRLF, and no limit on the whole head beyond those.
fn gunicorn_limits() -> Limits {
    Limits {
        max_request_line: 4094,
        max_headers: 100,
        max_field_size: 8190,
        max_head_size: 1 << 20,
    }
}

/// Cases run under settings we do not model (compat flags, PROXY protocol, gunicorn features),
/// skipped by name. The test checks this table matches the corpus exactly.
const SKIPPED: &[(&str, &str)] = &[
    (
        "valid/028",
        "strip_header_spaces compat flag; default counterpart invalid/020 is run",
    ),
    (
        "valid/031compat",
        "permit_unconventional_http_method/casefold compat flags",
    ),
    (
        "valid/031compat2",
        "permit_unconventional_http_method compat flag",
    ),
    (
        "valid/040_compat",
        "header_map=dangerous compat flag; default counterpart valid/040 is run",
    ),
    (
        "valid/compat_obs_fold",
        "permit_obsolete_folding; default counterpart invalid/obs_fold_01 is run",
    ),
    (
        "valid/compat_obs_fold_huge",
        "permit_obsolete_folding compat flag",
    ),
    ("valid/pp_01", "PROXY protocol, not HTTP"),
    ("valid/pp_02", "PROXY protocol, not HTTP"),
    ("valid/pp_03", "proxy_protocol=True setting"),
    ("valid/pp_04", "PROXY protocol v2, not HTTP"),
    ("valid/pp_05", "PROXY protocol v2, not HTTP"),
    (
        "invalid/013",
        "permit_obsolete_folding compat flag (obs-fold is always refused here)",
    ),
    (
        "invalid/019",
        "forwarded_allow_ips: gunicorn's secure_scheme_headers feature",
    ),
    (
        "invalid/040",
        "header_map=refuse; we drop '_' names like the default (valid/040)",
    ),
    (
        "invalid/chunked_07",
        "header_map=refuse; we drop '_' names like the default",
    ),
    ("invalid/pp_01", "PROXY protocol, not HTTP"),
    ("invalid/pp_02", "PROXY protocol, not HTTP"),
    ("invalid/pp_03", "PROXY protocol, not HTTP"),
];

/// HTTP/1.1 requests without Host, which RFC 9112 §3.2 makes a MUST-400 but gunicorn accepts.
/// Per the corpus README, `Host: localhost` is inserted after the request line of each such
/// HTTP/1.1 request (and expected first among the headers of valid cases), so the case still
/// tests what it was written for.
const HOST_INSERTED: &[&str] = &[
    "valid/004",
    "valid/005",
    "valid/006",
    "valid/007",
    "valid/009",
    "valid/010",
    "valid/011",
    "valid/012",
    "valid/013",
    "valid/014",
    "valid/018",
    "valid/021",
    "valid/022",
    "valid/023",
    "valid/025",
    "valid/025_line",
    "valid/029",
    "valid/030",
    "valid/031",
    "valid/100",
    "invalid/003b",
    "invalid/003c",
    "invalid/005",
    "invalid/016",
    "invalid/017",
    "invalid/020",
    "invalid/021",
    "invalid/chunked_01",
    "invalid/chunked_02",
    "invalid/chunked_03",
    "invalid/chunked_04",
    "invalid/chunked_06",
    "invalid/chunked_08",
    "invalid/chunked_09",
    "invalid/chunked_10",
    "invalid/chunked_11",
    "invalid/chunked_12",
    "invalid/chunked_13",
    "invalid/chunked_14",
    "invalid/nonascii_03",
    "invalid/nonascii_04",
    "invalid/prefix_03",
    "invalid/prefix_04",
    "invalid/prefix_05",
];

/// Valid cases a strict server may refuse (corpus README). If accepted, they must still match.
const VALID_MAY_REFUSE: &[(&str, &str)] = &[
    (
        "valid/005",
        "#fragment in the request-target (not origin-form)",
    ),
    (
        "valid/009",
        "Transfer-Encoding identity (dropped from HTTP/1.1) together with Content-Length",
    ),
    (
        "valid/029",
        "Transfer-Encoding identity before chunked: 501",
    ),
    (
        "valid/030",
        "Transfer-Encoding identity before chunked: 501",
    ),
    (
        "valid/rfc9112_smuggle_te_identity_chunked_01",
        "identity before chunked: 501",
    ),
    ("valid/014", "'\"' in the target is outside RFC 3986"),
    ("valid/027", "raw 8-bit bytes in the target"),
    (
        "valid/025",
        "gzip before chunked: we do not decode gzip, 501 (RFC 9112 §6.1)",
    ),
    ("valid/025_line", "gzip before chunked: 501"),
    (
        "valid/rfc9112_smuggle_gzip_chunked_01",
        "gzip before chunked: 501",
    ),
    (
        "valid/040",
        "Transfer_Encoding/Content_Length names (we drop them, like gunicorn)",
    ),
    (
        "valid/099",
        "Content-Length 17914 but 8599 body bytes: a truncated request",
    ),
    (
        "valid/rfc9112_target_absolute_userinfo_01",
        "userinfo in an http URI (RFC 9110 §4.2.4)",
    ),
    (
        "valid/rfc9112_target_authority_connect_01",
        "CONNECT: a WSGI server may refuse tunnels",
    ),
    (
        "valid/rfc9112_target_authority_ipv6_01",
        "CONNECT: a WSGI server may refuse tunnels",
    ),
];

/// Invalid cases a server may accept (corpus README): RFC 9110/9112 allow both outcomes.
const INVALID_MAY_ACCEPT: &[(&str, &str)] = &[
    (
        "invalid/003c",
        "`-bl` is a valid token; refusing lower-case methods is policy",
    ),
    (
        "invalid/obs_fold_01",
        "RFC 9112 §5.2 allows replacing obs-fold with SP",
    ),
    (
        "invalid/rfc9110_trailer_forbidden_cl_01",
        "trailers may be discarded (RFC 9112 §7.1.2)",
    ),
    (
        "invalid/rfc9110_trailer_forbidden_host_01",
        "trailers may be discarded",
    ),
    (
        "invalid/rfc9110_trailer_forbidden_te_01",
        "trailers may be discarded",
    ),
];

/// The limits a case runs under, or why it is skipped.
fn limits_for(case: &Case) -> Result<Limits, String> {
    let mut l = gunicorn_limits();
    for (k, v) in &case.settings {
        let n = v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("{k}={v}"));
        match k.as_str() {
            "limit_request_line" => l.max_request_line = n?,
            // gunicorn replaces 0 with its default.
            "limit_request_field_size" => {
                l.max_field_size = Some(n?).filter(|&n| n > 0).unwrap_or(8190)
            }
            "limit_request_fields" => l.max_headers = n?,
            _ => return Err(format!("unsupported setting {k}={v}")),
        }
    }
    Ok(l)
}

/// Chunkings: whole, byte by byte (small cases), several fixed sizes, and every two-piece split
/// of small cases.
fn chunkings(len: usize) -> Vec<Vec<usize>> {
    let mut v = vec![
        vec![len.max(1)],
        vec![2],
        vec![7],
        vec![13],
        vec![64],
        vec![1000],
    ];
    if len <= 2048 {
        v.push(vec![1]);
    }
    if len <= 600 {
        v.extend((1..len).map(|k| vec![k, len]));
    }
    v
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(c).expect("corpus strings are ISO-8859-1"))
        .collect()
}

/// Compares one accepted request with its `expect` entry; returns what differs.
fn check_request(got: &Request, want: &Value) -> Result<(), String> {
    let h = &got.head;
    let mut errs = Vec::new();
    if h.method != want["method"].as_str().unwrap_or_default() {
        errs.push(format!("method {:?}", h.method));
    }
    if h.target != latin1(want["target"].as_str().unwrap_or_default()) {
        errs.push(format!("target {:?}", String::from_utf8_lossy(&h.target)));
    }
    let version = match h.version {
        Version::Http10 => [1, 0],
        Version::Http11 => [1, 1],
    };
    if want["version"] != serde_json::json!(version) {
        errs.push(format!("version {version:?}"));
    }
    // Expected headers, as gunicorn stores them (names upper-cased, '_' names dropped).
    let mut want_headers: Vec<(String, Vec<u8>)> = Vec::new();
    if got.host_inserted {
        want_headers.push(("HOST".into(), b"localhost".to_vec()));
    }
    for pair in want["headers"].as_array().into_iter().flatten() {
        let name = pair[0].as_str().unwrap_or_default().to_owned();
        want_headers.push((name, latin1(pair[1].as_str().unwrap_or_default())));
    }
    let got_headers: Vec<(String, Vec<u8>)> = h
        .headers
        .iter()
        .filter(|(n, _)| !n.contains('_'))
        .map(|(n, v)| (n.to_ascii_uppercase(), v.clone()))
        .collect();
    if got_headers != want_headers {
        errs.push(format!("headers {got_headers:?} != {want_headers:?}"));
    }
    // The same through the environ.
    let info = ServerInfo {
        server_name: "localhost",
        server_port: "80",
        remote_addr: "127.0.0.1",
        remote_port: "1",
        https: false,
    };
    let mut env: Vec<(String, Vec<u8>)> = Vec::new();
    cgi_vars(h, &info, |k, v| env.push((k.to_owned(), v.to_vec())));
    let mut want_env: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in &want_headers {
        let key = match name.as_str() {
            "TRANSFER-ENCODING" => continue,
            "CONTENT-TYPE" => "CONTENT_TYPE".to_owned(),
            "CONTENT-LENGTH" => "CONTENT_LENGTH".to_owned(),
            n => format!("HTTP_{}", n.replace('-', "_")),
        };
        match want_env.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.extend_from_slice(if key == "HTTP_COOKIE" { b"; " } else { b", " });
                v.extend_from_slice(value);
            }
            None => want_env.push((key, value.clone())),
        }
    }
    let got_env: Vec<(String, Vec<u8>)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("HTTP_") || k.starts_with("CONTENT_"))
        .cloned()
        .collect();
    let mut sorted_want = want_env.clone();
    let mut sorted_got = got_env.clone();
    sorted_want.sort();
    sorted_got.sort();
    if sorted_got != sorted_want {
        errs.push(format!("environ {got_env:?} != {want_env:?}"));
    }
    let fixed = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if fixed("REQUEST_URI").as_deref() != Some(&h.target[..])
        || fixed("REQUEST_METHOD").as_deref() != Some(h.method.as_bytes())
    {
        errs.push("REQUEST_URI/REQUEST_METHOD".into());
    }
    let body = support::b64(want["body_b64"].as_str().unwrap_or_default());
    if got.body != body {
        errs.push(format!("body {:?}", String::from_utf8_lossy(&got.body)));
    }
    // Trailers (only valid/012) are discarded by design: WSGI cannot show them.
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Statuses acceptable for a gunicorn error class (README's suggestions). `None` stands for a
/// truncated stream, which the server answers by closing.
fn acceptable(class: &str, got: Option<u16>) -> bool {
    matches!(
        (class, got),
        ("NoMoreData" | "ChunkMissingTerminator", None)
            | ("LimitRequestLine", Some(414 | 400))
            | ("LimitRequestHeaders", Some(431))
            | ("InvalidHTTPVersion", Some(400 | 505))
            | (_, Some(400))
    )
}

enum Verdict {
    Pass,
    Allowed(&'static str),
    Fail(String),
}

fn judge(case: &Case, outcome: &Outcome) -> Verdict {
    let allowance = |table: &[(&str, &'static str)]| {
        table.iter().find(|(n, _)| *n == case.name).map(|(_, r)| *r)
    };
    if case.valid {
        let want = case.expect.as_array().cloned().unwrap_or_default();
        match outcome {
            Outcome::Accepted(reqs) => {
                if reqs.len() != want.len() {
                    return Verdict::Fail(format!(
                        "{} requests, expected {}",
                        reqs.len(),
                        want.len()
                    ));
                }
                for (i, (got, w)) in reqs.iter().zip(&want).enumerate() {
                    if let Err(e) = check_request(got, w) {
                        return Verdict::Fail(format!("request {i}: {e}"));
                    }
                }
                Verdict::Pass
            }
            _ => match allowance(VALID_MAY_REFUSE) {
                Some(r) => Verdict::Allowed(r),
                None => Verdict::Fail(outcome.summary()),
            },
        }
    } else {
        let class = case.expect["error"].as_str().unwrap_or_default();
        let status = match outcome {
            Outcome::Accepted(_) => {
                return match allowance(INVALID_MAY_ACCEPT) {
                    Some(r) => Verdict::Allowed(r),
                    None => Verdict::Fail(format!("accepted, expected {class}")),
                }
            }
            Outcome::Refused(_, e) => Some(e.status),
            Outcome::Truncated(_) => None,
        };
        if acceptable(class, status) {
            Verdict::Pass
        } else {
            Verdict::Fail(format!("{}, expected {class}", outcome.summary()))
        }
    }
}

#[test]
fn gunicorn_corpus() {
    let cases = load_corpus();
    assert_eq!(cases.len(), 137);
    let (mut passed, mut allowed, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut unsupported = Vec::new();
    for case in &cases {
        let limits = match limits_for(case) {
            Ok(l) => l,
            Err(why) => {
                unsupported.push(case.name.clone());
                let listed = SKIPPED.iter().find(|(n, _)| *n == case.name);
                assert!(
                    listed.is_some(),
                    "{} needs a SKIPPED entry: {why}",
                    case.name
                );
                skipped += 1;
                continue;
            }
        };
        let host = HOST_INSERTED.contains(&case.name.as_str());
        let whole = run_stream(&case.raw, &limits, &[case.raw.len()], host);
        // Every chunking must give the same answer as the whole input.
        for pieces in chunkings(case.raw.len()) {
            let split = run_stream(&case.raw, &limits, &pieces, host);
            if split.digest() != whole.digest() {
                failures.push(format!(
                    "{}: pieces {pieces:?} gave {} but whole gave {}",
                    case.name,
                    split.summary(),
                    whole.summary()
                ));
                break;
            }
        }
        match judge(case, &whole) {
            Verdict::Pass => passed += 1,
            Verdict::Allowed(reason) => {
                allowed += 1;
                println!("allowed   {}: {} ({reason})", case.name, whole.summary());
            }
            Verdict::Fail(why) => failures.push(format!("{}: {why}", case.name)),
        }
    }
    let listed: Vec<&str> = SKIPPED.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        unsupported, listed,
        "SKIPPED must list exactly the unsupported cases"
    );
    for f in &failures {
        println!("FAILED    {f}");
    }
    println!(
        "gunicorn corpus: {passed} passed, {allowed} refused/accepted with allowance, {} failed, {skipped} skipped",
        failures.len()
    );
    assert!(failures.is_empty(), "{} corpus failures", failures.len());
}
