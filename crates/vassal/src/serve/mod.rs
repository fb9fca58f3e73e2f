//! Serving one accepted connection: read a request (GIL released), call the app
//! (GIL held only while Python runs), write the response (GIL released).

pub mod http;
pub mod uwsgi;

use std::io::Write as _;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::python::{EnvironBuilder, Py, PyAny};
use crate::vars::VarList;

/// What every serving thread of a worker shares.
pub struct Shared {
    /// None when the app failed to load and `need-app = false`: every request gets 500.
    pub app: Option<Py<PyAny>>,
    pub buffer_size: usize,
    pub socket_timeout: Duration,
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
    pub vars: VarList,
    pub buf: Vec<u8>,
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
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
