//! Writing a WSGI response on the wire.
//!
//! On a uwsgi socket the response is a raw HTTP/1.x response ended by closing the
//! connection (what nginx's uwsgi module expects). On an HTTP socket the framing is
//! ours to choose: the app's Content-Length when it gave one, a computed one when the
//! whole body is known up front, chunked for HTTP/1.1 streams, close-delimited for
//! HTTP/1.0. HEAD responses and 1xx/204/304 carry no body.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use crate::conn::Stream;

#[derive(Debug, Clone)]
pub enum Proto {
    /// `protocol` is SERVER_PROTOCOL as nginx sent it (the status line echoes it).
    Uwsgi { protocol: Vec<u8> },
    Http {
        http11: bool,
        keep_alive: bool,
        head: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Not decided yet (head not sent).
    Undecided,
    /// Bytes as they come; the end is the connection's close (uwsgi, HTTP/1.0).
    Raw,
    Length {
        remaining: u64,
    },
    Chunked,
    /// HEAD, 204, 304, 1xx: body bytes from the app are dropped.
    NoBody,
}

#[derive(Debug)]
pub struct Response {
    /// Weak: the connection belongs to the code serving it, and closes when that is
    /// done with it even if the app kept `write` (which holds this response).
    stream: Weak<Stream>,
    /// The request is over: nothing more may be written (an app's kept `write` must
    /// not reach the connection's next request).
    over: bool,
    proto: Proto,
    /// The status line after the protocol and the app's header lines, latin-1, each
    /// line ended by CRLF ("200 OK\r\nContent-Type: text/plain\r\n"); None before
    /// start_response.
    start: Option<Vec<u8>>,
    code: u16,
    /// The app's Content-Length header.
    app_length: Option<u64>,
    framing: Framing,
    /// Body bytes put on the wire.
    pub sent: u64,
    /// The client went away or the framing broke: stop writing, close the connection.
    pub broken: bool,
    head_buf: Vec<u8>,
    /// Set to 1 just before the head goes out (the harakiri monitor then knows it is
    /// too late for a 504).
    head_flag: Option<&'static AtomicU32>,
}

/// Bodies smaller than this are copied behind the head and sent in one write.
const COALESCE: usize = 16 * 1024;

impl Response {
    /// `head_buf` is a buffer to build the head in (its capacity is reused; see
    /// [`Response::take_head_buf`]).
    pub fn new(stream: &Arc<Stream>, proto: Proto, mut head_buf: Vec<u8>) -> Self {
        head_buf.clear();
        Response {
            stream: Arc::downgrade(stream),
            over: false,
            proto,
            start: None,
            code: 0,
            app_length: None,
            framing: Framing::Undecided,
            sent: 0,
            broken: false,
            head_buf,
            head_flag: None,
        }
    }

    /// The head buffer, for the next request's response (not kept when an unusual
    /// response made it large).
    pub fn take_head_buf(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.head_buf);
        if buf.capacity() > 64 * 1024 {
            Vec::with_capacity(256)
        } else {
            buf
        }
    }

    /// Where to record that the head is being sent (see [`crate::scoreboard::ThreadSlot`]).
    pub fn set_head_flag(&mut self, flag: &'static AtomicU32) {
        self.head_flag = Some(flag);
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn has_status(&self) -> bool {
        self.start.is_some()
    }

    pub fn headers_sent(&self) -> bool {
        self.framing != Framing::Undecided
    }

    /// Records (or, before the head is sent, replaces) status and headers: `start`
    /// holds the status line after the protocol and the header lines, each ended by
    /// CRLF; `app_length` is the Content-Length among them.
    pub fn set_start(&mut self, code: u16, start: Vec<u8>, app_length: Option<u64>) {
        self.app_length = app_length;
        self.code = code;
        self.start = Some(start);
    }

    /// Whether the connection may serve another request after this response.
    pub fn keep_alive(&self) -> bool {
        match &self.proto {
            Proto::Uwsgi { .. } => false,
            Proto::Http { keep_alive, .. } => {
                *keep_alive
                    && !self.broken
                    && match self.framing {
                        Framing::Raw => false,
                        Framing::Length { remaining } => remaining == 0,
                        _ => true,
                    }
            }
        }
    }

    fn no_body_status(&self) -> bool {
        matches!(self.code, 100..=199 | 204 | 304)
    }

    /// Builds the head into `head_buf` and decides the framing. `total` is the whole
    /// body length when known before the first byte goes out.
    fn prepare_head(&mut self, total: Option<u64>) {
        if let Some(f) = self.head_flag {
            f.store(1, Ordering::Relaxed);
        }
        let out = &mut self.head_buf;
        out.clear();
        match &self.proto {
            Proto::Uwsgi { protocol } => {
                out.extend_from_slice(if protocol.is_empty() {
                    b"HTTP/1.0"
                } else {
                    protocol
                });
            }
            Proto::Http { http11, .. } => {
                out.extend_from_slice(if *http11 { b"HTTP/1.1" } else { b"HTTP/1.0" })
            }
        }
        out.push(b' ');
        out.extend_from_slice(self.start.as_deref().unwrap_or(b"200 OK\r\n"));
        let transport = match &self.proto {
            Proto::Uwsgi { .. } => wire::response::Transport::Uwsgi,
            Proto::Http {
                http11,
                keep_alive,
                head,
            } => wire::response::Transport::Http {
                http11: *http11,
                keep_alive: *keep_alive,
                head: *head,
            },
        };
        let f = wire::response::decide_framing(transport, self.code, self.app_length, total);
        if let Some(len) = f.add_length {
            out.extend_from_slice(b"Content-Length: ");
            let _ = io::Write::write_fmt(out, format_args!("{len}"));
            out.extend_from_slice(b"\r\n");
        }
        if f.add_chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if let Some(c) = f.add_connection {
            out.extend_from_slice(b"Connection: ");
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Proto::Http { keep_alive, .. } = &mut self.proto {
            *keep_alive = f.keep_alive;
        }
        self.framing = match f.body {
            wire::response::BodyFraming::Close => Framing::Raw,
            wire::response::BodyFraming::Length(remaining) => Framing::Length { remaining },
            wire::response::BodyFraming::Chunked => Framing::Chunked,
            wire::response::BodyFraming::NoBody => Framing::NoBody,
        };
        out.extend_from_slice(b"\r\n");
    }

    fn fail(&mut self, e: io::Error) -> io::Error {
        self.broken = true;
        e
    }

    /// Marks the request over: later writes fail.
    pub fn end(&mut self) {
        self.over = true;
    }

    /// The connection, while the request is being served.
    fn live_stream(&self) -> io::Result<Arc<Stream>> {
        if self.over {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the request is over",
            ));
        }
        self.stream
            .upgrade()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
    }

    /// Sends the head (if not yet sent) and `data`. `total` is passed when `data` is
    /// known to be the entire body.
    pub fn write_body(&mut self, data: &[u8], total: Option<u64>) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "response aborted",
            ));
        }
        let stream = self.live_stream()?;
        let first = !self.headers_sent();
        if first {
            self.prepare_head(total);
        }
        let data = match self.framing {
            Framing::NoBody => &[][..],
            Framing::Length { remaining } => {
                if data.len() as u64 > remaining {
                    // The app wrote more than its Content-Length: send what fits, then
                    // close, because the framing is gone.
                    tracing::warn!(
                        "app wrote more than its Content-Length; response truncated, connection closed"
                    );
                    self.broken = true;
                    &data[..remaining as usize]
                } else {
                    data
                }
            }
            _ => data,
        };
        let result = if self.framing == Framing::Chunked && !data.is_empty() {
            let size = format!("{:x}\r\n", data.len());
            if first {
                let head = std::mem::take(&mut self.head_buf);
                let r = stream.write_all_vectored(&[&head, size.as_bytes(), data, b"\r\n"]);
                self.head_buf = head;
                r
            } else {
                stream.write_all_vectored(&[size.as_bytes(), data, b"\r\n"])
            }
        } else if first {
            if data.len() <= COALESCE {
                self.head_buf.extend_from_slice(data);
                stream.write_all(&self.head_buf)
            } else {
                let head = std::mem::take(&mut self.head_buf);
                let r = stream.write_all_vectored(&[&head, data]);
                self.head_buf = head;
                r
            }
        } else if data.is_empty() {
            Ok(())
        } else {
            stream.write_all(data)
        };
        result.map_err(|e| self.fail(e))?;
        self.sent += data.len() as u64;
        if let Framing::Length { remaining } = &mut self.framing {
            *remaining -= data.len() as u64;
        }
        Ok(())
    }

    /// Sends `len` bytes of `fd` from `offset` with sendfile(2) where the framing
    /// allows (not inside a chunked stream); returns false if the caller must fall
    /// back to reading the file itself.
    pub fn send_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<bool> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "response aborted",
            ));
        }
        let stream = self.live_stream()?;
        if !self.headers_sent() {
            let total = if self.app_length.is_some() {
                None
            } else {
                Some(len)
            };
            self.prepare_head(total);
            let head = std::mem::take(&mut self.head_buf);
            let r = stream.write_all(&head);
            self.head_buf = head;
            r.map_err(|e| self.fail(e))?;
        }
        let len = match self.framing {
            Framing::NoBody => return Ok(true),
            Framing::Chunked => return Ok(false),
            Framing::Length { remaining } => len.min(remaining),
            _ => len,
        };
        // sendfile blocks: the socket-timeout must be in force first.
        stream.ensure_timeouts().map_err(|e| self.fail(e))?;
        let mut off = offset as i64;
        let end = offset + len;
        while (off as u64) < end {
            let want = ((end - off as u64) as usize).min(1 << 30);
            match nix::sys::sendfile::sendfile(&*stream, fd, Some(&mut off), want) {
                Ok(0) => break, // file shrank
                Ok(n) => {
                    self.sent += n as u64;
                    if let Framing::Length { remaining } = &mut self.framing {
                        *remaining -= n as u64;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(self.fail(io::Error::from(e))),
            }
        }
        Ok(true)
    }

    /// Ends the response: sends the head if nothing was sent yet and the chunked
    /// terminator; a Length response that fell short marks the connection broken.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.broken {
            return Ok(());
        }
        if !self.headers_sent() {
            return self.write_body(&[], Some(0));
        }
        match self.framing {
            Framing::Chunked => {
                self.framing = Framing::NoBody;
                let r = self.live_stream().and_then(|s| s.write_all(b"0\r\n\r\n"));
                r.map_err(|e| self.fail(e))
            }
            Framing::Length { remaining } if remaining > 0 => {
                tracing::warn!(
                    missing = remaining,
                    "app sent less than its Content-Length; closing the connection"
                );
                self.broken = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Replaces whatever the app started with a plain error response, if nothing has
    /// been sent yet. Returns false when it was too late (bytes already went out).
    pub fn error(&mut self, code: u16, body: &str) -> bool {
        if self.headers_sent() {
            self.broken = true;
            return false;
        }
        let reason = wire::response::reason_phrase(code);
        self.set_start(
            code,
            format!("{code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n").into_bytes(),
            None,
        );
        if let Proto::Http { keep_alive, .. } = &mut self.proto {
            *keep_alive = false;
        }
        let _ = self.write_body(body.as_bytes(), Some(body.len() as u64));
        true
    }

    pub fn is_head_request(&self) -> bool {
        matches!(self.proto, Proto::Http { head: true, .. })
    }

    pub fn wants_body(&self) -> bool {
        !self.no_body_status() && !self.is_head_request()
    }
}
