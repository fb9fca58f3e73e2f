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

/// How far the request on a uwsgi connection has arrived.
enum PacketState {
    /// Keep reading: the packet (and, for a small body, the body) is not all here.
    /// `want` is how many unconsumed bytes the buffer must be able to hold; `body`:
    /// the packet is complete and only the body is still arriving.
    NeedMore {
        want: usize,
        body: bool,
    },
    /// Header, vars block (parsed into `vars`) and a small body are all buffered, or
    /// the body is large and will stream to the app.
    Ready {
        modifier1: u8,
        total: usize,
        length: u64,
    },
    Bad(UwsgiError),
}

/// Looks at what is buffered without consuming it. Parses the vars block into `vars`
/// once it is complete (to learn CONTENT_LENGTH); a body of up to `prebuffer` bytes
/// must be buffered too before the request is ready, so a slow uploader never holds
/// a serving thread.
fn packet_state(buf: &[u8], buffer_size: usize, prebuffer: u64, vars: &mut VarList) -> PacketState {
    if buf.len() < uwsgi::HEADER_LEN {
        return PacketState::NeedMore {
            want: buffer_size + uwsgi::HEADER_LEN,
            body: false,
        };
    }
    let header = uwsgi::parse_header([buf[0], buf[1], buf[2], buf[3]]);
    if let Err(e) = uwsgi::check_header(&header, buffer_size) {
        return PacketState::Bad(e);
    }
    let total = uwsgi::HEADER_LEN + header.datasize as usize;
    if buf.len() < total {
        return PacketState::NeedMore {
            want: total,
            body: false,
        };
    }
    vars.clear();
    if let Err(e) = uwsgi::parse_vars(
        &buf[uwsgi::HEADER_LEN..total],
        uwsgi::DEFAULT_MAX_VARS,
        |k, v| vars.push(k, v),
    ) {
        return PacketState::Bad(e);
    }
    let length = vars
        .get(b"CONTENT_LENGTH")
        .and_then(uwsgi::parse_content_length)
        .unwrap_or(0);
    if length <= prebuffer && ((buf.len() - total) as u64) < length {
        return PacketState::NeedMore {
            want: total + length as usize,
            body: true,
        };
    }
    PacketState::Ready {
        modifier1: header.modifier1,
        total,
        length,
    }
}

/// A uwsgi connection whose request has not fully arrived yet.
pub struct UwsgiConn {
    stream: Arc<Stream>,
    reader: Reader,
    /// When the connection is given up if the request is still incomplete.
    pub deadline: Instant,
    /// When the request started arriving (the connection was accepted).
    accepted: Instant,
}

impl UwsgiConn {
    /// Takes the thread's spare read buffer (given back when the request is served).
    pub fn new(stream: Stream, shared: &Shared, ts: &mut ThreadState) -> UwsgiConn {
        let _ = stream.set_timeouts(Some(shared.socket_timeout));
        let stream = Arc::new(stream);
        let buf = std::mem::take(&mut ts.buf);
        let now = Instant::now();
        UwsgiConn {
            reader: Reader::with_buffer(stream.clone(), buf, 4096),
            stream,
            deadline: now + shared.socket_timeout,
            accepted: now,
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.raw_fd()
    }

    /// Part of the request has arrived.
    pub fn has_bytes(&self) -> bool {
        !self.reader.buffered().is_empty()
    }
}

/// Reads what has arrived without blocking. Serves the request once it is all here
/// (None: the connection is done with); Some(conn) when it must be parked to wait
/// for more.
pub fn serve_ready(
    py: Python<'_>,
    mut conn: UwsgiConn,
    shared: &Shared,
    ts: &mut ThreadState,
) -> Option<UwsgiConn> {
    let bs = shared.buffer_size;
    loop {
        match packet_state(conn.reader.buffered(), bs, shared.prebuffer, &mut ts.vars) {
            PacketState::Ready {
                modifier1,
                total,
                length,
            } => {
                conn.reader.consume(total);
                serve_packet(py, conn, modifier1, length, shared, ts);
                return None;
            }
            PacketState::Bad(e) => {
                refuse(py, &conn.stream, e);
                ts.buf = conn.reader.into_buffer();
                return None;
            }
            PacketState::NeedMore { want, body } => match conn.reader.try_fill(want) {
                Ok(0) => {
                    ts.buf = conn.reader.into_buffer();
                    return None;
                }
                Ok(_) => {
                    // The packet has its whole socket-timeout from the accept; a body
                    // dripping in gets socket-timeout between reads (as nginx's
                    // client_header_timeout and client_body_timeout).
                    if body {
                        conn.deadline = Instant::now() + shared.socket_timeout;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(conn),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(
                        "uwsgi socket: error reading the request: {e}; connection closed"
                    );
                    ts.buf = conn.reader.into_buffer();
                    return None;
                }
            },
        }
    }
}

/// A packet we do not serve: logged, answered where that helps, closed.
fn refuse(py: Python<'_>, stream: &Stream, e: UwsgiError) {
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
            super::linger(stream, (size + 64 * 1024) as u64);
        });
    } else {
        tracing::warn!("bad uwsgi packet: {e}; connection closed");
    }
}

fn serve_packet(
    py: Python<'_>,
    conn: UwsgiConn,
    modifier1: u8,
    length: u64,
    shared: &Shared,
    ts: &mut ThreadState,
) {
    let UwsgiConn {
        stream,
        reader,
        accepted,
        ..
    } = conn;
    let vars = &mut ts.vars;
    if modifier1 == uwsgi::MODIFIER1_WSGI_STRIP {
        strip_script_name(vars);
    }
    // PEP 3333 requires SCRIPT_NAME; nginx's uwsgi_params does not send it.
    if vars.get(b"SCRIPT_NAME").is_none() {
        vars.push(b"SCRIPT_NAME", b"");
    }
    let protocol = vars.get(b"SERVER_PROTOCOL").unwrap_or(b"HTTP/1.0").to_vec();
    let body = Body::with_length(reader, length);
    let req = Incoming {
        stream: &stream,
        body,
        chunked_input: false,
        proto: Proto::Uwsgi { protocol },
        started: accepted,
    };
    let served = run_request(py, shared, ts, req);
    if let Some(b) = served.body {
        if let Some(left) = b.remaining().filter(|&n| n > 0) {
            // The app answered without reading the whole body (a 405, a CSRF 403, a
            // 413): a plain close here would turn its answer into nginx's 502.
            crate::python::io(py, || super::linger(&stream, left.min(super::LINGER_LIMIT)));
        }
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
