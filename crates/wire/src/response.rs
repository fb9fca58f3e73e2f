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
    #[error("invalid Content-Length {0:?} (expected a decimal number of bytes)")]
    BadContentLength(String),
    #[error("two different Content-Length values, {0} and {1}")]
    ConflictingContentLength(u64, u64),
    #[error(
        "hop-by-hop header {0:?} is not allowed from a WSGI application (PEP 3333): \
         the server decides the connection's framing and persistence"
    )]
    HopByHop(String),
}

/// What an application's response header means for the framing of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRole {
    /// Passed through untouched.
    Plain,
    /// `Content-Length`, parsed.
    ContentLength(u64),
}

/// Classifies one (already validated) application header. A hop-by-hop header
/// (`Connection`, `Transfer-Encoding`, `Keep-Alive`, `Upgrade`, `TE`, `Trailer`,
/// `Proxy-Authenticate`, `Proxy-Authorization`) is refused, as PEP 3333 forbids them
/// and a second framing header could contradict ours; so is a Content-Length that is
/// not a plain decimal number.
pub fn header_role(name: &str, value: &str) -> Result<HeaderRole, HeaderError> {
    // By length first: most headers are refused a string comparison.
    let hop = match name.len() {
        2 => name.eq_ignore_ascii_case("te"),
        7 => name.eq_ignore_ascii_case("trailer") || name.eq_ignore_ascii_case("upgrade"),
        8 => name.eq_ignore_ascii_case("trailers"),
        10 => name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"),
        14 if name.eq_ignore_ascii_case("content-length") => {
            let v = value.trim_matches([' ', '\t']);
            return match v.parse::<u64>() {
                Ok(n) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(HeaderRole::ContentLength(n))
                }
                _ => Err(HeaderError::BadContentLength(value.to_owned())),
            };
        }
        17 => name.eq_ignore_ascii_case("transfer-encoding"),
        18 => name.eq_ignore_ascii_case("proxy-authenticate"),
        19 => name.eq_ignore_ascii_case("proxy-authorization"),
        _ => false,
    };
    if hop {
        Err(HeaderError::HopByHop(name.to_owned()))
    } else {
        Ok(HeaderRole::Plain)
    }
}

/// How the response goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// nginx's uwsgi_pass: the response ends when the connection closes.
    Uwsgi,
    Http {
        http11: bool,
        /// The request allows another one on the connection.
        keep_alive: bool,
        /// A HEAD request: no body goes out.
        head: bool,
    },
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Bytes as they come; the end is the connection's close.
    Close,
    Length(u64),
    Chunked,
    /// HEAD, 1xx, 204, 304: body bytes from the app are dropped.
    NoBody,
}

/// The framing of one response and the headers the server adds for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyFraming,
    /// Add `Content-Length: n` (the app gave none, the whole body was known).
    pub add_length: Option<u64>,
    /// Add `Transfer-Encoding: chunked`.
    pub add_chunked: bool,
    /// Add `Connection: close` (HTTP/1.1) or `Connection: keep-alive` (HTTP/1.0).
    pub add_connection: Option<&'static str>,
    /// The connection may carry another request afterwards.
    pub keep_alive: bool,
}

/// Decides a response's framing, the one place that does. `app_length` is the app's
/// Content-Length (already checked by [`header_role`]); `total` is the whole body's
/// length when it is known before the first byte goes out.
pub fn decide_framing(
    transport: Transport,
    status: u16,
    app_length: Option<u64>,
    total: Option<u64>,
) -> Framing {
    let Transport::Http {
        http11,
        keep_alive,
        head,
    } = transport
    else {
        return Framing {
            body: BodyFraming::Close,
            add_length: None,
            add_chunked: false,
            add_connection: None,
            keep_alive: false,
        };
    };
    let no_body_status = matches!(status, 100..=199 | 204 | 304);
    let mut add_length = None;
    let mut add_chunked = false;
    let mut keep_alive = keep_alive;
    let body = if no_body_status {
        BodyFraming::NoBody
    } else if let Some(len) = app_length {
        if head {
            BodyFraming::NoBody
        } else {
            BodyFraming::Length(len)
        }
    } else if let Some(len) = total {
        add_length = Some(len);
        if head {
            BodyFraming::NoBody
        } else {
            BodyFraming::Length(len)
        }
    } else if head {
        BodyFraming::NoBody
    } else if http11 {
        add_chunked = true;
        BodyFraming::Chunked
    } else {
        keep_alive = false;
        BodyFraming::Close
    };
    let add_connection = match (keep_alive, http11) {
        (false, true) => Some("close"),
        (true, false) => Some("keep-alive"),
        _ => None,
    };
    Framing {
        body,
        add_length,
        add_chunked,
        add_connection,
        keep_alive,
    }
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
