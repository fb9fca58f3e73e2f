//! Serving one accepted connection: read a request (GIL released), call the app
//! (GIL held only while Python runs), write the response (GIL released).

pub mod http;
pub mod park;
pub mod uwsgi;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::python::{EnvironBuilder, Py, PyAny};
use crate::vars::VarList;

/// Closing with request bytes unread makes the kernel reset the connection, and nginx,
/// still sending, answers 502 instead of our response. So end our side first (nginx
/// sees the response complete), then read and discard what the peer still sends, up to
/// `limit` bytes and [`LINGER_TIME`], before the caller closes.
pub fn linger(stream: &crate::conn::Stream, limit: u64) {
    stream.shutdown_write();
    let deadline = Instant::now() + LINGER_TIME;
    let _ = stream.set_timeouts(Some(LINGER_TIME));
    let mut scratch = [0u8; 16 * 1024];
    let mut left = limit;
    while left > 0 && Instant::now() < deadline {
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n as u64),
        }
    }
}

/// How long [`linger`] may hold a thread.
pub const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// How much unread request body [`linger`] discards at most (nginx has normally
/// buffered the whole body, so it arrives at memory speed).
pub const LINGER_LIMIT: u64 = 64 << 20;

/// What every serving thread of a worker shares.
pub struct Shared {
    /// None when the app failed to load and `need-app = false`: every request gets 500.
    pub app: Option<Py<PyAny>>,
    pub buffer_size: usize,
    pub socket_timeout: Duration,
    /// Request bodies of up to this many bytes (with a Content-Length) are read
    /// completely, without a thread waiting on them, before the app is called.
    pub prebuffer: u64,
    /// Connections one worker parks at most (split evenly between its threads).
    pub park_limit: usize,
    /// Which forwarded headers a trusted peer's requests may set (HTTP sockets).
    pub forwarded_headers: wire::http::forwarded::Which,
    /// TCP peers that are trusted (unix-socket peers always are).
    pub forwarded_allow: wire::http::forwarded::AllowIps,
    pub log_requests: bool,
    pub http_limits: wire::http::Limits,
    pub server_name: String,
    /// Set when the worker is stopping: finish the current request, take no more.
    pub stopping: AtomicBool,
    /// Serving threads inside `accept` right now. After `stopping` is set, once this
    /// reaches 0 no connection can be accepted any more (see worker::accept).
    pub in_accept: std::sync::atomic::AtomicUsize,
}

/// Per-thread state reused from request to request.
pub struct ThreadState {
    pub env: EnvironBuilder,
    /// wsgi.input, start_response and write, reused between requests.
    pub handed: crate::python::Handed,
    pub vars: VarList,
    pub buf: Vec<u8>,
    /// The response head is built here (kept from request to request).
    pub head_buf: Vec<u8>,
    /// This thread's scoreboard slot.
    pub meter: crate::meter::Meter,
}

/// One request log line, written with a single write(2) so lines from several
/// threads and workers never interleave.
pub fn log_request(shared: &Shared, vars: &VarList, code: u16, sent: u64, started: Instant) {
    if !shared.log_requests {
        return;
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let method = String::from_utf8_lossy(vars.get(b"REQUEST_METHOD").unwrap_or(b"-"));
    let uri = String::from_utf8_lossy(
        vars.get(b"REQUEST_URI")
            .or_else(|| vars.get(b"PATH_INFO"))
            .unwrap_or(b"-"),
    );
    let addr = String::from_utf8_lossy(vars.get(b"REMOTE_ADDR").unwrap_or(b"-"));
    let line = format!(
        "[pid {}] {addr} {method} {uri} => {code} ({sent} bytes) in {ms:.2} ms\n",
        std::process::id()
    );
    crate::log::write_record(line.as_bytes());
}

/// How one request ended, for the protocol that served it.
pub struct Served {
    /// The request body, handed back (None if the app kept nothing to give back).
    pub body: Option<crate::body::Body>,
    /// The response allows another request on the connection.
    pub keep_alive: bool,
}

/// One parsed request, whatever the protocol (its variables are in `ThreadState::vars`).
pub struct Incoming<'a> {
    pub stream: &'a std::sync::Arc<crate::conn::Stream>,
    pub body: crate::body::Body,
    pub chunked_input: bool,
    pub proto: crate::response::Proto,
    /// When the request started arriving (for the log line).
    pub started: Instant,
}

/// Calls the app for one request (or answers 500 when no app is loaded), meters it,
/// logs it, and hands the body back. Shared by the uwsgi and HTTP protocols.
pub fn run_request(
    py: crate::python::Python<'_>,
    shared: &Shared,
    ts: &mut ThreadState,
    req: Incoming<'_>,
) -> Served {
    use crate::body::lock;
    use std::sync::{Arc, Mutex};
    let Incoming {
        stream,
        body,
        chunked_input,
        proto,
        started,
    } = req;
    let body = Arc::new(Mutex::new(Some(body)));
    let mut response =
        crate::response::Response::new(stream, proto, std::mem::take(&mut ts.head_buf));
    response.set_head_flag(ts.meter.head_flag());
    let resp = Arc::new(Mutex::new(response));
    ts.meter.begin(stream.raw_fd());
    let raised = match &shared.app {
        Some(app) => crate::python::call_app(
            py,
            app,
            &mut ts.env,
            &mut ts.handed,
            crate::python::Request {
                vars: &ts.vars,
                body: body.clone(),
                chunked_input,
                resp: resp.clone(),
            },
        ),
        None => {
            py.detach(|| lock(&resp).error(500, "Internal Server Error: no app loaded\n"));
            false
        }
    };
    ts.meter.end(raised);
    let (code, sent, keep_alive) = {
        let mut r = lock(&resp);
        r.end();
        ts.head_buf = r.take_head_buf();
        (r.code(), r.sent, r.keep_alive())
    };
    log_request(shared, &ts.vars, code, sent, started);
    let body = lock(&body).take();
    Served { body, keep_alive }
}
