//! The uwsgi protocol as nginx's `uwsgi_pass` speaks it: one packet (4-byte header +
//! vars block), the body (CONTENT_LENGTH bytes), one raw HTTP response, close.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use wire::uwsgi::{self, UwsgiError};

use super::{run_request, Incoming, Shared, ThreadState};
use crate::body::Body;
use crate::conn::{Reader, Stream};
use crate::python::Python;
use crate::response::Proto;
use crate::vars::VarList;

enum ReadError {
    /// The peer closed (or timed out) before sending a whole packet.
    Closed,
    Protocol(UwsgiError),
    Io(io::Error),
}

/// Reads header + vars block into `vars`. Returns modifier1.
fn read_packet(r: &mut Reader, buffer_size: usize, vars: &mut VarList) -> Result<u8, ReadError> {
    while r.buffered().len() < uwsgi::HEADER_LEN {
        match r.fill(buffer_size + uwsgi::HEADER_LEN) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) if r.buffered().is_empty() && e.kind() == io::ErrorKind::TimedOut => {
                return Err(ReadError::Closed)
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let b = r.buffered();
    let header = uwsgi::parse_header([b[0], b[1], b[2], b[3]]);
    uwsgi::check_header(&header, buffer_size).map_err(ReadError::Protocol)?;
    let total = uwsgi::HEADER_LEN + header.datasize as usize;
    while r.buffered().len() < total {
        match r.fill(total.max(buffer_size + uwsgi::HEADER_LEN)) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    vars.clear();
    uwsgi::parse_vars(
        &r.buffered()[uwsgi::HEADER_LEN..total],
        uwsgi::DEFAULT_MAX_VARS,
        |k, v| vars.push(k, v),
    )
    .map_err(ReadError::Protocol)?;
    r.consume(total);
    Ok(header.modifier1)
}

pub fn serve(py: Python<'_>, stream: Stream, shared: &Shared, ts: &mut ThreadState) {
    let _ = stream.set_timeouts(Some(shared.socket_timeout));
    let stream = Arc::new(stream);
    let buf = std::mem::take(&mut ts.buf);
    let mut reader = Reader::with_buffer(stream.clone(), buf, 4096);
    let vars = &mut ts.vars;
    let bs = shared.buffer_size;
    let read = crate::python::io(py, || read_packet(&mut reader, bs, vars));
    let started = Instant::now();
    let modifier1 = match read {
        Ok(m) => m,
        Err(ReadError::Closed) => {
            ts.buf = reader.into_buffer();
            return;
        }
        Err(ReadError::Io(e)) => {
            tracing::warn!("uwsgi socket: error reading the request: {e}; connection closed");
            ts.buf = reader.into_buffer();
            return;
        }
        Err(ReadError::Protocol(e)) => {
            if let UwsgiError::BlockTooBig { size, max } = e {
                // uWSGI closes silently here and nginx shows a bare 502; name the knob.
                tracing::error!(
                    "uwsgi request vars block of {size} bytes exceeds buffer-size {max}; \
                     raise buffer-size in the ini (at most 65535); answered 431"
                );
                let msg = format!(
                    "Request headers too large: {size} bytes exceed the vassal's buffer-size of {max}.\n"
                );
                let reply = wire::response::simple_response(b"HTTP/1.1", 431, &msg, true);
                py.detach(|| {
                    let _ = stream.write_all(&reply);
                    // Read what the client still sends before closing, so it sees our
                    // answer rather than a connection reset.
                    stream.shutdown_write();
                    let mut scratch = [0u8; 8192];
                    let mut left = size + 64 * 1024;
                    while left > 0 {
                        match stream.read(&mut scratch) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => left = left.saturating_sub(n),
                        }
                    }
                });
            } else {
                tracing::warn!("bad uwsgi packet: {e}; connection closed");
            }
            ts.buf = reader.into_buffer();
            return;
        }
    };
    let vars = &mut ts.vars;
    if modifier1 == 30 {
        strip_script_name(vars);
    }
    // PEP 3333 requires SCRIPT_NAME; nginx's uwsgi_params does not send it.
    if vars.get(b"SCRIPT_NAME").is_none() {
        vars.push(b"SCRIPT_NAME", b"");
    }
    let length = vars
        .get(b"CONTENT_LENGTH")
        .and_then(uwsgi::parse_content_length)
        .unwrap_or(0);
    let protocol = vars.get(b"SERVER_PROTOCOL").unwrap_or(b"HTTP/1.0").to_vec();
    let body = Body::with_length(reader, length);
    let req = Incoming {
        stream: &stream,
        body,
        chunked_input: false,
        proto: Proto::Uwsgi { protocol },
        started,
    };
    let served = run_request(py, shared, ts, req);
    if let Some(b) = served.body {
        ts.buf = b.into_reader().into_buffer();
    }
}

/// modifier1 30: PATH_INFO loses its SCRIPT_NAME prefix (uWSGI's mountpoint mode).
fn strip_script_name(vars: &mut VarList) {
    let (Some(script), Some(path)) = (vars.get(b"SCRIPT_NAME"), vars.get(b"PATH_INFO")) else {
        return;
    };
    if !script.is_empty() && path.starts_with(script) {
        let rest = path[script.len()..].to_vec();
        vars.set(b"PATH_INFO", &rest);
    }
}
