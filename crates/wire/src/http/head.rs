//! The request line and header section.
//!
//! The parser is deliberately stricter than RFC 9112's "robustness" allowances, because every
//! leniency is a chance for a front proxy and this server to disagree about where a request ends
//! (request smuggling): lines end in CRLF only, obs-fold is refused, a request carries at most
//! one of Content-Length / Transfer-Encoding, and Transfer-Encoding must end in `chunked`.
//! It re-scans from the start of the buffer on every call; heads are small (bounded by
//! [`Limits::max_head_size`]) so this costs less than keeping state between reads.

use super::syntax::{is_tchar, list_elements, split_field_line};
use super::HttpError;

/// Size limits for a request head. Breaking one gives 414 (request line) or 431 (fields).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line, excluding its CRLF.
    pub max_request_line: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// Longest header field line, *including* its CRLF (this is how gunicorn counts
    /// `limit_request_field_size`, so the corpus limit cases land on the same side).
    pub max_field_size: usize,
    /// Largest whole head: request line, fields and the blank line.
    pub max_head_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8190,
            max_headers: 100,
            max_field_size: 8190,
            max_head_size: 64 * 1024,
        }
    }
}

/// The HTTP versions served. `HTTP/1.2`..`HTTP/1.9` are read as 1.1 (RFC 9110 §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// The protocol name as written in a status line and in `SERVER_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither Content-Length nor Transfer-Encoding: no body.
    Empty,
    /// Exactly this many bytes follow the head (may be 0 when `Content-Length: 0` was sent).
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with [`super::ChunkedDecoder`].
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method, case preserved (methods are case-sensitive).
    pub method: String,
    /// The request-target exactly as sent.
    pub target: Vec<u8>,
    pub version: Version,
    /// Field names as sent, values trimmed of SP/HTAB, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: BodyFraming,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The first value of the named header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The outcome of [`parse_head`] on the bytes received so far.
#[derive(Debug)]
pub enum Parsed {
    /// The head is complete; the body (if any) starts at `buf[consumed..]`.
    Complete { head: RequestHead, consumed: usize },
    /// More bytes are needed. Nothing is consumed; call again with the buffer extended.
    Partial,
}

/// The target as a request-line shape (RFC 9112 §3.2).
#[derive(PartialEq, Eq)]
enum TargetForm {
    Origin,
    Absolute,
    Authority,
    Asterisk,
}

/// Parses a request head from the start of `buf`.
///
/// Leading empty lines (CRLF) before the request line are skipped, as RFC 9112 §2.2 suggests
/// (some clients send one after a POST body). Limits are enforced on incomplete input too, so a
/// client cannot make the caller buffer more than about `max_head_size` bytes.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    let mut pos = 0;
    while buf[pos..].starts_with(b"\r\n") {
        pos += 2;
        if pos > limits.max_request_line {
            return Err(HttpError::bad(
                "too many empty lines before the request line",
            ));
        }
    }

    // The request line.
    let Some(lf) = find_lf(buf, pos) else {
        if buf.len() - pos > limits.max_request_line + 1 {
            return Err(HttpError::new(414, "request line too long"));
        }
        return Ok(Parsed::Partial);
    };
    let line = crlf_line(buf, pos, lf)?;
    if line.len() > limits.max_request_line {
        return Err(HttpError::new(414, "request line too long"));
    }
    let (method, target, version) = parse_request_line(line)?;
    pos = lf + 1;

    // The field lines, up to the empty line.
    let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(16);
    loop {
        let Some(lf) = find_lf(buf, pos) else {
            // The unfinished line, plus the CRLF it still needs (its CR may be here already).
            if buf.len() - pos + 1 > limits.max_field_size {
                return Err(HttpError::new(431, "request header field too large"));
            }
            if buf.len() > limits.max_head_size {
                return Err(HttpError::new(431, "request head too large"));
            }
            return Ok(Parsed::Partial);
        };
        let line = crlf_line(buf, pos, lf)?;
        pos = lf + 1;
        if pos > limits.max_head_size {
            return Err(HttpError::new(431, "request head too large"));
        }
        if line.is_empty() {
            break;
        }
        if line.len() + 2 > limits.max_field_size {
            return Err(HttpError::new(431, "request header field too large"));
        }
        if fields.len() >= limits.max_headers {
            return Err(HttpError::new(431, "too many request header fields"));
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(HttpError::bad("obsolete line folding in header field"));
        }
        let field = split_field_line(line).ok_or(HttpError::bad("malformed header field"))?;
        fields.push(field);
    }

    let head = interpret(method, target, version, &fields)?;
    Ok(Parsed::Complete {
        head,
        consumed: pos,
    })
}

fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}

/// The line `buf[start..lf]` without its CR; a bare LF is an error.
fn crlf_line(buf: &[u8], start: usize, lf: usize) -> Result<&[u8], HttpError> {
    if lf == start || buf[lf - 1] != b'\r' {
        return Err(HttpError::bad("line not terminated by CRLF"));
    }
    Ok(&buf[start..lf - 1])
}

fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8], Version), HttpError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::bad("malformed request line"));
    };
    // gunicorn's default policy: a token without lower-case letters or '#'. Methods are
    // case-sensitive, so `get` is not GET and is refused rather than guessed at.
    if method.is_empty()
        || !method
            .iter()
            .all(|&b| is_tchar(b) && !b.is_ascii_lowercase() && b != b'#')
    {
        return Err(HttpError::bad("invalid request method"));
    }
    let version = parse_version(version)?;
    let form = target_form(target)?;
    let ok = match form {
        TargetForm::Asterisk => method == b"OPTIONS",
        TargetForm::Authority => method == b"CONNECT",
        TargetForm::Origin | TargetForm::Absolute => method != b"CONNECT",
    };
    if !ok {
        return Err(HttpError::bad(
            "request target form does not fit the method",
        ));
    }
    Ok((method, target, version))
}

fn parse_version(v: &[u8]) -> Result<Version, HttpError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major == b'1' {
                Ok(Version::Http11)
            } else {
                Err(HttpError::new(505, "HTTP version not supported"))
            }
        }
        _ => Err(HttpError::bad("malformed HTTP version")),
    }
}

/// Classifies and checks the request-target. Bytes must be visible ASCII or obs-text (raw UTF-8
/// from sloppy clients is tolerated, as gunicorn does); controls, SP and DEL never are.
fn target_form(t: &[u8]) -> Result<TargetForm, HttpError> {
    let bad = || HttpError::bad("invalid request target");
    if t.is_empty() || !t.iter().all(|&b| (0x21..0x7f).contains(&b) || b >= 0x80) {
        return Err(bad());
    }
    if t == b"*" {
        return Ok(TargetForm::Asterisk);
    }
    if t[0] == b'/' {
        return Ok(TargetForm::Origin);
    }
    if let Some(rest) = strip_http_scheme(t) {
        let end = rest
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        return if valid_authority(&rest[..end], false) {
            Ok(TargetForm::Absolute)
        } else {
            Err(bad())
        };
    }
    if valid_authority(t, true) {
        return Ok(TargetForm::Authority);
    }
    Err(bad())
}

/// The part after `http://` or `https://` (scheme case-insensitive), if the target has one.
/// Other schemes are refused: an origin server has nothing to do with them.
pub(crate) fn strip_http_scheme(t: &[u8]) -> Option<&[u8]> {
    let sep = t.windows(3).position(|w| w == b"://")?;
    let scheme = &t[..sep];
    (scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https"))
        .then(|| &t[sep + 3..])
}

/// RFC 3986 authority: `[userinfo@]host[:port]`, host a reg-name or `[IP-literal]`. In
/// authority-form (CONNECT) there is no userinfo and the port is required.
fn valid_authority(a: &[u8], connect: bool) -> bool {
    fn reg(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)
    }
    let hostport = match a.iter().rposition(|&b| b == b'@') {
        Some(at) if !connect => {
            if !a[..at].iter().all(|&b| reg(b) || b == b':') {
                return false;
            }
            &a[at + 1..]
        }
        Some(_) => return false,
        None => a,
    };
    let (host_ok, port) = if let Some(inner) = hostport.strip_prefix(b"[") {
        let Some(close) = inner.iter().position(|&b| b == b']') else {
            return false;
        };
        let lit = &inner[..close];
        let ok = !lit.is_empty()
            && lit
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b":.vV".contains(&b) || reg(b));
        (ok, &inner[close + 1..])
    } else {
        let colon = hostport.iter().position(|&b| b == b':');
        let host = &hostport[..colon.unwrap_or(hostport.len())];
        let ok = !host.is_empty() && host.iter().all(|&b| reg(b));
        (ok, colon.map_or(&b""[..], |c| &hostport[c..]))
    };
    let port_ok = match port {
        [] => !connect,
        [b':', digits @ ..] => {
            digits.iter().all(u8::is_ascii_digit) && !(connect && digits.is_empty())
        }
        _ => false,
    };
    host_ok && port_ok
}

/// Applies the semantic rules to a syntactically valid head.
fn interpret(
    method: &[u8],
    target: &[u8],
    version: Version,
    fields: &[(&[u8], &[u8])],
) -> Result<RequestHead, HttpError> {
    let mut hosts = 0;
    let mut content_types = 0;
    let mut content_length: Option<u64> = None;
    let mut te_codings: Vec<&[u8]> = Vec::new();
    let mut saw_te = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;

    for &(name, value) in fields {
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-type") {
            content_types += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(HttpError::bad("more than one Content-Length"));
            }
            content_length = Some(
                crate::uwsgi::parse_content_length(value)
                    .ok_or(HttpError::bad("malformed Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            saw_te = true;
            te_codings.extend(list_elements(value));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for opt in list_elements(value) {
                conn_close |= opt.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= opt.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        }
    }

    if hosts > 1 {
        return Err(HttpError::bad("more than one Host"));
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(HttpError::bad("HTTP/1.1 request without Host"));
    }
    if content_types > 1 {
        return Err(HttpError::bad("more than one Content-Type"));
    }

    let body = if saw_te {
        transfer_framing(version, content_length.is_some(), &te_codings)?
    } else {
        content_length.map_or(BodyFraming::Empty, BodyFraming::Length)
    };

    let keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };

    Ok(RequestHead {
        method: ascii_string(method),
        target: target.to_vec(),
        version,
        headers: fields
            .iter()
            .map(|&(n, v)| (ascii_string(n), v.to_vec()))
            .collect(),
        body,
        keep_alive,
        expect_continue: expect_continue && version == Version::Http11,
    })
}

/// The framing for a request with Transfer-Encoding (RFC 9112 §6.1, §6.3).
fn transfer_framing(
    version: Version,
    has_length: bool,
    codings: &[&[u8]],
) -> Result<BodyFraming, HttpError> {
    if version == Version::Http10 {
        // RFC 9112 §6.1: the framing of an HTTP/1.0 message with Transfer-Encoding is faulty.
        return Err(HttpError::bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if has_length {
        return Err(HttpError::bad("both Content-Length and Transfer-Encoding"));
    }
    let is_chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
    match codings.split_last() {
        Some((last, before)) if is_chunked(last) => {
            if before.iter().any(is_chunked) {
                Err(HttpError::bad("chunked applied more than once"))
            } else if before.is_empty() {
                Ok(BodyFraming::Chunked)
            } else {
                // gzip, identity, ...: we only remove the chunking and do not decode content
                // codings, so refuse rather than hand the application coded bytes.
                Err(HttpError::new(501, "transfer coding not implemented"))
            }
        }
        _ => Err(HttpError::bad("Transfer-Encoding does not end in chunked")),
    }
}

/// Tokens are ASCII by construction (so the UTF-8 check always passes); the fallback
/// only avoids an unwrap.
fn ascii_string(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => b.iter().map(|&c| char::from(c)).collect(),
    }
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
