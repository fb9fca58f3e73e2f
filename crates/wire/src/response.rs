//! Response heads: WSGI status and header validation, and the bytes of a status line and
//! header block.
//!
//! WSGI strings are "native strings" holding ISO-8859-1 (PEP 3333), so [`write_head`] writes
//! each char as one byte, and [`validate_header`] refuses chars above U+00FF.

use thiserror::Error;

/// A status or header an application passed to `start_response` that cannot be sent.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("invalid WSGI status {0:?} (expected e.g. \"200 OK\")")]
    BadStatus(String),
    #[error("invalid response header name {0:?}")]
    BadName(String),
    #[error("invalid response header value {0:?} (CR, LF, NUL or a char above U+00FF)")]
    BadValue(String),
}

/// The standard reason phrase for `code`, or `"Unknown"`.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

fn has_line_breaking_char(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// A str with a char above U+00FF (not ISO-8859-1); ASCII is checked a word at a time.
fn beyond_latin1(s: &str) -> bool {
    !s.is_ascii() && s.chars().any(|c| c > '\u{ff}')
}

/// Parses a WSGI status such as `"200 OK"`: three digits (100-999), then either nothing (as
/// uWSGI accepts a bare `"200"`) or a space and a reason, which may be empty. CR, LF and NUL are
/// refused anywhere, as they would let an application split the response.
pub fn parse_status(status: &str) -> Result<u16, HeaderError> {
    let bad = || HeaderError::BadStatus(status.to_owned());
    let b = status.as_bytes();
    if b.len() < 3 || has_line_breaking_char(status) || beyond_latin1(status) {
        return Err(bad());
    }
    let (digits, rest) = b.split_at(3);
    if !digits.iter().all(u8::is_ascii_digit) || !(rest.is_empty() || rest[0] == b' ') {
        return Err(bad());
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    if code < 100 {
        return Err(bad());
    }
    Ok(code)
}

/// Checks one response header: the name must be an RFC 9110 token, the value must not contain
/// CR, LF or NUL, and both must be ISO-8859-1 (PEP 3333).
pub fn validate_header(name: &str, value: &str) -> Result<(), HeaderError> {
    if !crate::http::is_token_str(name) {
        return Err(HeaderError::BadName(name.to_owned()));
    }
    if has_line_breaking_char(value) || beyond_latin1(value) {
        return Err(HeaderError::BadValue(value.to_owned()));
    }
    Ok(())
}

/// Appends `s` as ISO-8859-1; chars above U+00FF (which validation refuses) become `?`.
fn push_latin1(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
    } else {
        out.extend(s.chars().map(|c| u8::try_from(c).unwrap_or(b'?')));
    }
}

/// Appends a status line, `headers`, `extra` and the blank line, e.g. `HTTP/1.1 200 OK\r\n`.
/// `protocol` is the request's protocol (`b"HTTP/1.1"`); a `status` of only 3 digits gets the
/// standard reason phrase. Nothing is validated here: run [`parse_status`] and
/// [`validate_header`] on application input first.
pub fn write_head(
    out: &mut Vec<u8>,
    protocol: &[u8],
    status: &str,
    headers: &[(String, String)],
    extra: &[(&str, &str)],
) {
    out.extend_from_slice(protocol);
    out.push(b' ');
    push_latin1(out, status);
    if status.len() == 3 {
        if let Ok(code) = parse_status(status) {
            out.push(b' ');
            out.extend_from_slice(reason_phrase(code).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    let all = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(extra.iter().copied());
    for (name, value) in all {
        push_latin1(out, name);
        out.extend_from_slice(b": ");
        push_latin1(out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete plain-text response for errors the server answers itself (400, 431, 500, ...).
pub fn simple_response(protocol: &[u8], code: u16, body: &str, close: bool) -> Vec<u8> {
    let status = format!("{code} {}", reason_phrase(code));
    let len = body.len().to_string();
    let mut extra = vec![
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", len.as_str()),
    ];
    if close {
        extra.push(("Connection", "close"));
    }
    let mut out = Vec::with_capacity(128 + body.len());
    write_head(&mut out, protocol, &status, &[], &extra);
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
