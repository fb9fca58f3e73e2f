//! CGI/WSGI variables for a parsed HTTP head, shaped like what nginx sends over uwsgi.

use super::head::{strip_http_scheme, BodyFraming, RequestHead};

/// Facts about the connection that the request head does not carry.
#[derive(Debug, Clone, Copy)]
pub struct ServerInfo<'a> {
    pub server_name: &'a str,
    pub server_port: &'a str,
    pub remote_addr: &'a str,
    pub remote_port: &'a str,
    /// Whether the connection is TLS (sets `HTTPS=on`).
    pub https: bool,
}

/// Calls `f(name, value)` with the CGI variables for `head`, the way nginx's `uwsgi_params`
/// would send them, so the WSGI environ is built by one code path for both protocols.
///
/// Fixed variables come first (REQUEST_METHOD, REQUEST_URI, PATH_INFO, QUERY_STRING,
/// SERVER_PROTOCOL, SCRIPT_NAME, SERVER_NAME, SERVER_PORT, REMOTE_ADDR, REMOTE_PORT, HTTPS when
/// set, CONTENT_TYPE and CONTENT_LENGTH when present), then one `HTTP_*` variable per distinct
/// header name in order of first arrival. Repeated headers are joined with `", "` (Cookie with
/// `"; "`). Names containing `_` are dropped, because `Content_Length` and `Content-Length` would
/// otherwise both become `HTTP_CONTENT_LENGTH`; Transfer-Encoding is dropped because the server
/// removes the chunking; Content-Type and Content-Length are not repeated as `HTTP_*`.
pub fn cgi_vars(head: &RequestHead, info: &ServerInfo, mut f: impl FnMut(&str, &[u8])) {
    let (path, query) = split_target(&head.target);
    f("REQUEST_METHOD", head.method.as_bytes());
    f("REQUEST_URI", &head.target);
    if path.contains(&b'%') {
        f("PATH_INFO", &percent_decode(path));
    } else {
        f("PATH_INFO", path);
    }
    f("QUERY_STRING", query);
    f("SERVER_PROTOCOL", head.version.as_str().as_bytes());
    f("SCRIPT_NAME", b"");
    f("SERVER_NAME", info.server_name.as_bytes());
    f("SERVER_PORT", info.server_port.as_bytes());
    f("REMOTE_ADDR", info.remote_addr.as_bytes());
    f("REMOTE_PORT", info.remote_port.as_bytes());
    if info.https {
        f("HTTPS", b"on");
    }
    if let Some(ct) = head.header("content-type") {
        f("CONTENT_TYPE", ct);
    }
    if let BodyFraming::Length(n) = head.body {
        f("CONTENT_LENGTH", n.to_string().as_bytes());
    }

    let passed = |name: &str| {
        !(name.contains('_')
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("content-length"))
    };
    // `HTTP_*` names are built on the stack (heap only for very long names). Header
    // counts are bounded by Limits::max_headers, so finding repeats by scanning is
    // cheaper than a map.
    let mut stack = [0u8; 128];
    let mut long = String::new();
    let mut joined = Vec::new();
    for (i, (name, value)) in head.headers.iter().enumerate() {
        if !passed(name) {
            continue;
        }
        let same = |other: &String| other.eq_ignore_ascii_case(name);
        if head.headers[..i].iter().any(|(n, _)| same(n)) {
            continue; // joined into its first occurrence already
        }
        let key = cgi_header_name_in(&mut stack, &mut long, name);
        let mut later = head.headers[i + 1..].iter().filter(|(n, _)| same(n));
        match later.next() {
            None => f(key, value),
            Some((_, second)) => {
                let sep: &[u8] = if key == "HTTP_COOKIE" { b"; " } else { b", " };
                joined.clear();
                joined.extend_from_slice(value);
                for v in std::iter::once(second).chain(later.map(|(_, v)| v)) {
                    joined.extend_from_slice(sep);
                    joined.extend_from_slice(v);
                }
                f(key, &joined);
            }
        }
    }
}

/// `HTTP_` + the name upper-cased with `-` turned into `_`, in `stack` when it fits,
/// else in `long`.
fn cgi_header_name_in<'a>(stack: &'a mut [u8; 128], long: &'a mut String, name: &str) -> &'a str {
    let map = |c: u8| {
        if c == b'-' {
            b'_'
        } else {
            c.to_ascii_uppercase()
        }
    };
    if name.is_ascii() && name.len() + 5 <= stack.len() {
        stack[..5].copy_from_slice(b"HTTP_");
        for (d, &c) in stack[5..].iter_mut().zip(name.as_bytes()) {
            *d = map(c);
        }
        // ASCII in, ASCII out.
        if let Ok(s) = std::str::from_utf8(&stack[..5 + name.len()]) {
            return s;
        }
    }
    long.clear();
    long.push_str("HTTP_");
    long.extend(name.chars().map(|c| match u8::try_from(c) {
        Ok(b) => char::from(map(b)),
        Err(_) => c,
    }));
    long
}

/// Splits a request-target into (path, query) per PEP 3333: drop a `#fragment`, drop
/// `scheme://authority` of an absolute-form target, split at the first `?`. The query stays
/// encoded. The asterisk form gives path `*`; the authority form (CONNECT) gives an empty path.
fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let t = match target.iter().position(|&b| b == b'#') {
        Some(i) => &target[..i],
        None => target,
    };
    let t = if let Some(rest) = strip_http_scheme(t) {
        let end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        &rest[end..]
    } else if t.first().is_some_and(|&b| b != b'/' && b != b'*') {
        // authority-form: no path.
        &t[t.len()..]
    } else {
        t
    };
    match t.iter().position(|&b| b == b'?') {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, b""),
    }
}

/// Decodes `%XX` escapes to raw bytes. A `%` not followed by two hex digits is kept as is (as
/// uWSGI and gunicorn do), so decoding never fails.
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[path = "cgi_tests.rs"]
mod tests;
