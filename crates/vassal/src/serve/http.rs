//! HTTP/1.1 on an `http-socket`: keep-alive, pipelining (bytes after one request stay
//! in the connection's buffer for the next), chunked request bodies, 100-continue.
//! A parse error gets its status (400/414/431/501/505) and the connection is closed:
//! after a framing error nothing that follows can be trusted.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use wire::http::{self, BodyFraming, HttpError, Parsed, RequestHead, Version};

use super::{run_request, Incoming, Shared, ThreadState};
use crate::body::Body;
use crate::conn::{Reader, Stream};
use crate::python::Python;
use crate::response::Proto;

/// How much unread request body we discard to keep a connection alive.
const DRAIN_LIMIT: u64 = 1 << 20;

enum ReadError {
    Closed,
    Http(HttpError),
    Io(io::Error),
}

/// Parses the request head from what has arrived, reading without blocking.
/// Ok(None): the head is not all here yet (park the connection). `scanned` is how
/// many buffered bytes earlier calls already looked at for a line end.
fn try_head(
    r: &mut Reader,
    scanned: &mut usize,
    limits: &http::Limits,
) -> Result<Option<RequestHead>, ReadError> {
    // The parser rescans from the start, so only call it when the bytes that just
    // arrived finish a line: a client sending one byte at a time then costs one
    // parse per line, not one per byte.
    loop {
        let buffered = r.buffered();
        if buffered[(*scanned).min(buffered.len())..].contains(&b'\n') {
            match http::parse_head(buffered, limits) {
                Ok(Parsed::Complete { head, consumed }) => {
                    r.consume(consumed);
                    *scanned = 0;
                    return Ok(Some(head));
                }
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(ReadError::Http(e)),
            }
        }
        *scanned = buffered.len();
        match r.try_fill(limits.max_head_size) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(ReadError::Http(HttpError {
                    status: 431,
                    detail: "request head too large",
                }))
            }
            // Reset by the peer between requests: nothing to answer.
            Err(_) if r.buffered().is_empty() => return Err(ReadError::Closed),
            Err(e) => return Err(ReadError::Io(e)),
        }
        // try_fill may have moved the unconsumed bytes to the buffer's start; `scanned`
        // counts from the first unconsumed byte, so it stays valid.
    }
}

pub struct Peer {
    pub addr: String,
    pub port: String,
    pub server_port: String,
    /// Its forwarded headers are believed (a unix-socket peer, or a TCP peer in
    /// `forwarded-allow-ips`).
    pub trusted: bool,
}

/// What a trusted proxy said about the client replaces what the connection says. The
/// variables are pushed again: the environ, like a dict, keeps the last value.
fn apply_forwarded(
    head: &RequestHead,
    which: http::forwarded::Which,
    vars: &mut crate::vars::VarList,
) {
    let f = http::forwarded::forwarded(head, which);
    if let Some(addr) = &f.remote_addr {
        vars.push(b"REMOTE_ADDR", addr.as_bytes());
        // The proxy's own port says nothing about the client's.
        vars.push(
            b"REMOTE_PORT",
            f.remote_port.as_deref().unwrap_or("").as_bytes(),
        );
    }
    match f.scheme {
        Some("https") => vars.push(b"HTTPS", b"on"),
        Some(_) => vars.push(b"HTTPS", b"off"),
        None => {}
    }
    if let Some(host) = &f.host {
        // `name`, `name:port`, `[v6]`, `[v6]:port`.
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) if p.parse::<u16>().is_ok() && (!n.contains(':') || n.ends_with(']')) => {
                (n, Some(p))
            }
            _ => (host.as_str(), None),
        };
        vars.push(b"SERVER_NAME", name.as_bytes());
        if let Some(p) = port {
            vars.push(b"SERVER_PORT", p.as_bytes());
        }
    }
    if let Some(port) = &f.port {
        vars.push(b"SERVER_PORT", port.as_bytes());
    }
    if let Some(script) = &f.script_name {
        let path = vars.get(b"PATH_INFO").unwrap_or(b"").to_vec();
        if let Some(rest) = path.strip_prefix(script.as_bytes()) {
            if rest.is_empty() || rest.starts_with(b"/") {
                vars.push(b"SCRIPT_NAME", script.as_bytes());
                vars.push(b"PATH_INFO", rest);
            }
        }
    }
}

/// An HTTP connection between or before requests. While its next request has not
/// fully arrived (nothing yet, part of the head, or a small body still coming) the
/// serving thread parks it in its poll set instead of blocking on it, so a slow or
/// idle client never holds the thread.
pub struct HttpConn {
    stream: Arc<Stream>,
    /// None only while a request is being served (the body owns it then).
    reader: Option<Reader>,
    peer: Peer,
    /// When the connection is closed if its next request has not arrived.
    pub deadline: Instant,
    /// The head of a request whose small body is still arriving.
    head: Option<RequestHead>,
    /// Buffered head bytes already scanned for a line end.
    scanned: usize,
    /// A request has been served on this connection.
    served: bool,
}

/// What the serving thread does with a connection after `serve_ready`.
pub enum Next {
    /// Its next request has not arrived: poll it.
    Park,
    Close,
}

impl HttpConn {
    pub fn new(stream: Stream, peer: Peer, shared: &Shared) -> HttpConn {
        let _ = stream.set_timeouts(Some(shared.socket_timeout));
        let stream = Arc::new(stream);
        HttpConn {
            reader: Some(Reader::new(stream.clone(), 8192)),
            stream,
            peer,
            deadline: Instant::now() + shared.socket_timeout,
            head: None,
            scanned: 0,
            served: false,
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.raw_fd()
    }

    /// Part of a request has arrived.
    pub fn has_bytes(&self) -> bool {
        self.head.is_some()
            || self
                .reader
                .as_ref()
                .is_some_and(|r| !r.buffered().is_empty())
    }

    /// Served before and nothing of a next request has arrived.
    pub fn idle(&self) -> bool {
        self.served
            && self.head.is_none()
            && self.reader.as_ref().is_none_or(|r| r.buffered().is_empty())
    }
}

/// Serves every request the connection has ready, then parks or closes it. Never
/// waits for bytes that have not arrived.
pub fn serve_ready(
    py: Python<'_>,
    conn: &mut HttpConn,
    shared: &Shared,
    ts: &mut ThreadState,
) -> Next {
    let limits = &shared.http_limits;
    loop {
        let Some(reader) = conn.reader.as_mut() else {
            return Next::Close;
        };
        let head = match conn.head.take() {
            Some(h) => h,
            None => match try_head(reader, &mut conn.scanned, limits) {
                Ok(Some(h)) => h,
                Ok(None) => return Next::Park,
                Err(ReadError::Closed) => return Next::Close,
                Err(ReadError::Io(e)) => {
                    tracing::info!("http: error reading a request: {e}; connection closed");
                    return Next::Close;
                }
                Err(ReadError::Http(e)) => {
                    tracing::info!("http: rejected a request: {} {}", e.status, e.detail);
                    let body = format!("{}\n", e.detail);
                    let reply = wire::response::simple_response(b"HTTP/1.1", e.status, &body, true);
                    let stream = &conn.stream;
                    py.detach(|| {
                        let _ = stream.write_all(&reply);
                        stream.shutdown_write();
                    });
                    return Next::Close;
                }
            },
        };
        // A small body is read completely before the app is called, off-thread: an
        // uploader dripping bytes then costs a parked slot, not a serving thread.
        if let BodyFraming::Length(n) = head.body {
            if n <= shared.prebuffer && !head.expect_continue {
                while (reader.buffered().len() as u64) < n {
                    match reader.try_fill(n as usize) {
                        Ok(0) => return Next::Close,
                        // Between reads a body gets socket-timeout each time.
                        Ok(_) => conn.deadline = Instant::now() + shared.socket_timeout,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            conn.head = Some(head);
                            return Next::Park;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                }
            }
        }
        let reader = conn.reader.take().expect("checked above");
        conn.served = true;
        match serve_one(py, &conn.stream, reader, head, &conn.peer, shared, ts) {
            Some(reader) => {
                conn.reader = Some(reader);
                conn.deadline = Instant::now() + shared.socket_timeout;
            }
            None => return Next::Close,
        }
    }
}

/// One request whose head (and small body) has arrived: call the app, answer.
/// Returns the reader when the connection may serve another request.
fn serve_one(
    py: Python<'_>,
    stream: &Arc<Stream>,
    reader: Reader,
    head: RequestHead,
    peer: &Peer,
    shared: &Shared,
    ts: &mut ThreadState,
) -> Option<Reader> {
    let started = Instant::now();
    let vars = &mut ts.vars;
    vars.clear();
    let info = http::ServerInfo {
        server_name: &shared.server_name,
        server_port: &peer.server_port,
        remote_addr: &peer.addr,
        remote_port: &peer.port,
        https: false,
    };
    http::cgi_vars(&head, &info, |k, v| vars.push(k.as_bytes(), v));
    // Every forwarded header starts with X or F: most requests skip the look entirely.
    if peer.trusted
        && shared.forwarded_headers.any()
        && head
            .headers
            .iter()
            .any(|(n, _)| matches!(n.as_bytes().first(), Some(b'x' | b'X' | b'f' | b'F')))
    {
        apply_forwarded(&head, shared.forwarded_headers, vars);
    }
    let chunked = head.body == BodyFraming::Chunked;
    let mut body = match head.body {
        BodyFraming::Empty => Body::with_length(reader, 0),
        BodyFraming::Length(n) => Body::with_length(reader, n),
        BodyFraming::Chunked => Body::chunked(reader),
    };
    if head.expect_continue && !body.is_finished() {
        body.expect_continue();
    }
    let keep_alive = head.keep_alive && !shared.stopping.load(Ordering::Relaxed);
    let proto = Proto::Http {
        http11: head.version == Version::Http11,
        keep_alive,
        head: head.method == "HEAD",
    };
    let req = Incoming {
        stream,
        body,
        chunked_input: chunked,
        proto,
        started,
    };
    let served = run_request(py, shared, ts, req);
    let mut again = served.keep_alive;
    let mut body = served.body?;
    if again && !body.is_finished() {
        again = crate::python::io(py, || body.drain(DRAIN_LIMIT));
    }
    if !again && !body.is_finished() {
        // Closing with body bytes unread would reset the connection under our answer.
        crate::python::io(py, || super::linger(stream, super::LINGER_LIMIT));
    }
    (again && !shared.stopping.load(Ordering::Relaxed)).then(|| body.into_reader())
}
