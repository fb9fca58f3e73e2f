//! The request body as `wsgi.input` sees it: exactly CONTENT_LENGTH bytes, or a
//! de-chunked HTTP body, read lazily from the connection. Never reads past the end
//! of this request, so pipelined requests stay in the connection's buffer.

use std::io;
use std::sync::{Arc, Mutex};

use wire::http::ChunkedDecoder;

use crate::conn::{Reader, Stream};

#[derive(Debug)]
enum Framing {
    Length {
        remaining: u64,
    },
    Chunked {
        decoder: Box<ChunkedDecoder>,
        done: bool,
    },
}

#[derive(Debug)]
pub struct Body {
    reader: Reader,
    framing: Framing,
    /// `Expect: 100-continue` not yet answered: answer on the first read.
    continue_pending: bool,
    /// Decoded chunked bytes not yet handed out.
    pending: Vec<u8>,
    pending_pos: usize,
    /// The client's chunked framing was invalid: the request gets a 400, not a 500.
    pub bad_framing: bool,
}

/// How much a chunked body may decode per step (bounds memory for huge uploads).
const CHUNK_STEP: usize = 64 * 1024;

impl Body {
    pub fn with_length(reader: Reader, len: u64) -> Self {
        Self::new(reader, Framing::Length { remaining: len })
    }

    pub fn chunked(reader: Reader) -> Self {
        Self::new(
            reader,
            Framing::Chunked {
                decoder: Box::new(ChunkedDecoder::new()),
                done: false,
            },
        )
    }

    fn new(reader: Reader, framing: Framing) -> Self {
        Body {
            reader,
            framing,
            continue_pending: false,
            pending: Vec::new(),
            pending_pos: 0,
            bad_framing: false,
        }
    }

    pub fn expect_continue(&mut self) {
        self.continue_pending = true;
    }

    pub fn continue_pending(&self) -> bool {
        self.continue_pending
    }

    /// Body bytes still to come, when the length is known (not chunked).
    pub fn remaining(&self) -> Option<u64> {
        match &self.framing {
            Framing::Length { remaining } => Some(*remaining),
            Framing::Chunked { .. } => None,
        }
    }

    pub fn is_finished(&self) -> bool {
        match &self.framing {
            Framing::Length { remaining } => *remaining == 0,
            Framing::Chunked { done, .. } => *done && self.pending_pos >= self.pending.len(),
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.reader.stream
    }

    fn send_continue(&mut self) -> io::Result<()> {
        if self.continue_pending {
            self.continue_pending = false;
            self.reader
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        Ok(())
    }

    /// Reads up to `out.len()` body bytes; 0 means the body is complete.
    pub fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.is_finished() {
            return Ok(0);
        }
        self.send_continue()?;
        match &mut self.framing {
            Framing::Length { remaining } => {
                let want = (*remaining).min(out.len() as u64) as usize;
                let n = self.reader.read_into(&mut out[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("client closed the connection with {remaining} body bytes unsent"),
                    ));
                }
                *remaining -= n as u64;
                Ok(n)
            }
            Framing::Chunked { decoder, done } => {
                while self.pending_pos >= self.pending.len() && !*done {
                    self.pending.clear();
                    self.pending_pos = 0;
                    if !self.reader.buffered().is_empty() {
                        let decoded =
                            decoder.decode(self.reader.buffered(), &mut self.pending, CHUNK_STEP);
                        let (used, finished) = match decoded {
                            Ok(r) => r,
                            Err(e) => {
                                self.bad_framing = true;
                                return Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    format!("bad chunked request body: {}", e.detail),
                                ));
                            }
                        };
                        self.reader.consume(used);
                        *done = finished;
                        if used > 0 || !self.pending.is_empty() || finished {
                            continue;
                        }
                    }
                    // A chunk-size line or trailer can be at most this long.
                    if self.reader.fill(64 * 1024)? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "client closed the connection inside a chunked body",
                        ));
                    }
                }
                let avail = &self.pending[self.pending_pos..];
                let n = avail.len().min(out.len());
                out[..n].copy_from_slice(&avail[..n]);
                self.pending_pos += n;
                Ok(n)
            }
        }
    }

    /// Discards the rest of the body, up to `limit` bytes, so the connection can be
    /// reused. Returns true when the body was fully consumed. A pending 100-continue
    /// means the client has not sent the body: the connection cannot be reused.
    pub fn drain(&mut self, limit: u64) -> bool {
        if self.continue_pending {
            return false;
        }
        if self.is_finished() {
            return true;
        }
        let mut scratch = [0u8; 8192];
        let mut total = 0u64;
        while !self.is_finished() {
            if total > limit {
                return false;
            }
            match self.read(&mut scratch) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(_) => return false,
            }
        }
        self.is_finished()
    }

    pub fn into_reader(self) -> Reader {
        self.reader
    }
}

/// The body shared between the driver and Python's `wsgi.input` object. The driver
/// takes it back after the response; an app that kept `wsgi.input` then reads EOF.
pub type SharedBody = Arc<Mutex<Option<Body>>>;

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
