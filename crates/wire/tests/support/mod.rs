//! Shared by the conformance and smoke tests: the gunicorn corpus and a driver that feeds a
//! byte stream to the parsers the way a connection would, in arbitrary pieces.

#![allow(dead_code)]

use base64::Engine as _;
use serde_json::Value;
use wire::http::{parse_head, BodyFraming, ChunkedDecoder, HttpError, Limits, Parsed, RequestHead};

pub struct Case {
    pub name: String,
    pub valid: bool,
    pub raw: Vec<u8>,
    pub settings: serde_json::Map<String, Value>,
    pub expect: Value,
}

pub fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("corpus base64 is valid")
}

pub fn load_corpus() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/gunicorn-http-corpus.json"
    );
    let text = std::fs::read_to_string(path).expect("corpus file is committed with the tests");
    let doc: Value = serde_json::from_str(&text).expect("corpus is JSON");
    doc["cases"]
        .as_array()
        .expect("cases array")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().expect("name").to_owned(),
            valid: c["kind"] == "valid",
            raw: b64(c["raw_b64"].as_str().expect("raw_b64")),
            settings: c["settings"].as_object().cloned().unwrap_or_default(),
            expect: c["expect"].clone(),
        })
        .collect()
}

/// One request as the application would see it.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: RequestHead,
    pub body: Vec<u8>,
    /// Whether the driver inserted `Host: localhost` into this request.
    pub host_inserted: bool,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every request was read; the connection ended (or was closed by keep-alive rules).
    Accepted(Vec<Request>),
    /// A parser refused the input.
    Refused(Vec<Request>, HttpError),
    /// The input ended inside a request (the server would close; gunicorn: NoMoreData).
    Truncated(Vec<Request>),
}

impl Outcome {
    pub fn summary(&self) -> String {
        match self {
            Outcome::Accepted(r) => format!("accepted {} request(s)", r.len()),
            Outcome::Refused(r, e) => format!("refused with {e} after {} request(s)", r.len()),
            Outcome::Truncated(r) => format!("truncated after {} request(s)", r.len()),
        }
    }

    /// A comparable digest, to check that every chunking gives the same answer.
    pub fn digest(&self) -> String {
        let reqs = |r: &[Request]| {
            r.iter()
                .map(|q| {
                    format!(
                        "{:?}{:?}{:?}{:?}{:?}",
                        q.head.method, q.head.target, q.head.headers, q.head.body, q.body
                    )
                })
                .collect::<Vec<_>>()
                .join("|")
        };
        match self {
            Outcome::Accepted(r) => format!("A{}", reqs(r)),
            Outcome::Refused(r, e) => format!("R{}{e}", reqs(r)),
            Outcome::Truncated(r) => format!("T{}", reqs(r)),
        }
    }
}

/// Inserts `Host: localhost\r\n` after the request line starting at `pos` when that request is
/// HTTP/1.1 and has no Host field. Returns whether it did.
fn insert_host(data: &mut Vec<u8>, pos: usize) -> bool {
    let rest = &data[pos..];
    let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if !rest[..line_end].ends_with(b"HTTP/1.1") {
        return false;
    }
    let head_end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(rest.len());
    let has_host = rest[line_end..head_end]
        .split(|&b| b == b'\n')
        .any(|l| l.len() >= 5 && l[..5].eq_ignore_ascii_case(b"host:"));
    if has_host {
        return false;
    }
    let at = pos + line_end + 2;
    data.splice(at..at, b"Host: localhost\r\n".iter().copied());
    true
}

/// Feeds `data` to the parsers as a connection would receive it: `pieces` gives the sizes of
/// successive reads (the last size repeats). Chunked bodies are decoded with a small `max_out`
/// to exercise resumption.
pub fn run_stream(data: &[u8], limits: &Limits, pieces: &[usize], host_insert: bool) -> Outcome {
    let mut data = data.to_vec();
    let mut reqs = Vec::new();
    let mut pos = 0;
    let mut avail = 0;
    let mut piece = 0;
    // Makes more input "arrive"; false at the end of the stream.
    let mut grow = |avail: &mut usize, len: usize| -> bool {
        if *avail >= len {
            return false;
        }
        let n = pieces[piece.min(pieces.len() - 1)].max(1);
        piece += 1;
        *avail = (*avail + n).min(len);
        true
    };
    grow(&mut avail, data.len());
    loop {
        if data[pos..].iter().all(|&b| b == b'\r' || b == b'\n') {
            return Outcome::Accepted(reqs);
        }
        let host_inserted = host_insert && insert_host(&mut data, pos);
        if host_inserted && avail > pos {
            avail += b"Host: localhost\r\n".len();
            avail = avail.min(data.len());
        }
        let (head, consumed) = loop {
            match parse_head(&data[pos..avail], limits) {
                Ok(Parsed::Complete { head, consumed }) => break (head, consumed),
                Ok(Parsed::Partial) => {
                    if !grow(&mut avail, data.len()) {
                        return Outcome::Truncated(reqs);
                    }
                }
                Err(e) => return Outcome::Refused(reqs, e),
            }
        };
        pos += consumed;
        let mut body = Vec::new();
        match head.body {
            BodyFraming::Empty => {}
            BodyFraming::Length(n) => {
                let Ok(n) = usize::try_from(n) else {
                    return Outcome::Truncated(reqs);
                };
                while avail - pos < n {
                    if !grow(&mut avail, data.len()) {
                        return Outcome::Truncated(reqs);
                    }
                }
                body.extend_from_slice(&data[pos..pos + n]);
                pos += n;
            }
            BodyFraming::Chunked => {
                let mut dec = ChunkedDecoder::new();
                loop {
                    match dec.decode(&data[pos..avail], &mut body, 7) {
                        Ok((used, done)) => {
                            pos += used;
                            if done {
                                break;
                            }
                            if used == 0 && !grow(&mut avail, data.len()) {
                                return Outcome::Truncated(reqs);
                            }
                        }
                        Err(e) => return Outcome::Refused(reqs, e),
                    }
                }
            }
        }
        let keep_alive = head.keep_alive;
        reqs.push(Request {
            head,
            body,
            host_inserted,
        });
        if !keep_alive {
            return Outcome::Accepted(reqs);
        }
        avail = avail.max(pos);
    }
}
