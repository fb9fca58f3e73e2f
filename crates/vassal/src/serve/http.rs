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

fn read_head(r: &mut Reader, limits: &http::Limits) -> Result<RequestHead, ReadError> {
    // The parser rescans from the start, so only call it when the bytes that just
    // arrived finish a line: a client sending one byte at a time then costs one
    // parse per line, not one per byte.
    let mut scanned = 0;
    loop {
        let buffered = r.buffered();
        if buffered[scanned.min(buffered.len())..].contains(&b'\n') {
            match http::parse_head(buffered, limits) {
                Ok(Parsed::Complete { head, consumed }) => {
                    r.consume(consumed);
                    return Ok(head);
                }
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(ReadError::Http(e)),
            }
        }
        scanned = buffered.len();
        match r.fill(limits.max_head_size) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(ReadError::Http(HttpError {
                    status: 431,
                    detail: "request head too large",
                }))
            }
            // Idle keep-alive connection timed out or reset: nothing to answer.
            Err(_) if r.buffered().is_empty() => return Err(ReadError::Closed),
            Err(e) => return Err(ReadError::Io(e)),
        }
        // fill() may have moved the unconsumed bytes to the buffer's start; `scanned`
        // counts from the first unconsumed byte, so it stays valid.
    }
}

pub struct Peer {
    pub addr: String,
    pub port: String,
    pub server_port: String,
}

/// A keep-alive connection between requests: the serving thread parks it in its poll
/// set instead of blocking on it, so one idle client never holds the thread.
pub struct HttpConn {
    stream: Arc<Stream>,
    /// None only while a request is being served (the body owns it then).
    reader: Option<Reader>,
    peer: Peer,
    pub idle_since: Instant,
    /// Accepted and not served yet. A fresh connection is never parked: its first
    /// request is read at once (blocking, up to socket-timeout), as a prefork worker
    /// must not hoard connections it cannot serve while another worker is idle.
    fresh: bool,
}

/// What the serving thread does with a connection after `serve_ready`.
pub enum Next {
    /// Idle: poll it for the next request.
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
            idle_since: Instant::now(),
            fresh: true,
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.raw_fd()
    }
}

/// Serves every request the connection has ready, then parks or closes it. Once a
/// connection has been served, never waits for a request that has not started to
/// arrive.
pub fn serve_ready(
    py: Python<'_>,
    conn: &mut HttpConn,
    shared: &Shared,
    ts: &mut ThreadState,
) -> Next {
    loop {
        let Some(reader) = conn.reader.as_mut() else {
            return Next::Close;
        };
        if reader.buffered().is_empty() && !conn.fresh {
            match reader.try_fill(shared.http_limits.max_head_size) {
                Ok(0) => return Next::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.idle_since = Instant::now();
                    return Next::Park;
                }
                Err(_) => return Next::Close,
            }
        }
        let reader = conn.reader.take().expect("checked above");
        conn.fresh = false;
        match serve_one(py, &conn.stream, reader, &conn.peer, shared, ts) {
            Some(reader) => conn.reader = Some(reader),
            None => return Next::Close,
        }
    }
}

/// One request: read its head (the rest of it may still be arriving: blocking, with
/// socket-timeout), call the app, answer. Returns the reader when the connection may
/// serve another request.
fn serve_one(
    py: Python<'_>,
    stream: &Arc<Stream>,
    mut reader: Reader,
    peer: &Peer,
    shared: &Shared,
    ts: &mut ThreadState,
) -> Option<Reader> {
    let limits = &shared.http_limits;
    let head = match crate::python::io(py, || read_head(&mut reader, limits)) {
        Ok(h) => h,
        Err(ReadError::Closed) => return None,
        Err(ReadError::Io(e)) => {
            tracing::info!("http: error reading a request: {e}; connection closed");
            return None;
        }
        Err(ReadError::Http(e)) => {
            tracing::info!("http: rejected a request: {} {}", e.status, e.detail);
            let body = format!("{}\n", e.detail);
            let reply = wire::response::simple_response(b"HTTP/1.1", e.status, &body, true);
            py.detach(|| {
                let _ = stream.write_all(&reply);
                stream.shutdown_write();
            });
            return None;
        }
    };
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
    (again && !shared.stopping.load(Ordering::Relaxed)).then(|| body.into_reader())
}
