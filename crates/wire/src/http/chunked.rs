//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally.
//!
//! The decoder is a byte-level state machine for the control lines (chunk size, extensions,
//! CRLFs, trailer fields) and copies chunk data in bulk, so input may be split anywhere. Chunk
//! extensions are checked for stray control bytes and ignored. Trailer fields are checked and
//! discarded: WSGI has nowhere to put them.

use super::syntax::{is_field_value_byte, split_field_line};
use super::HttpError;

/// Longest chunk-size line (size, extensions) we accept.
const MAX_SIZE_LINE: usize = 4096;
/// Longest single trailer field line.
const MAX_TRAILER_LINE: usize = 8190;
/// Most bytes of trailer section.
const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// Reading hex digits.
    Size,
    /// After `;`: extension bytes until CR.
    Extension,
    /// Saw the CR ending the size line.
    SizeLf,
    /// Copying chunk data.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// Reading a trailer line (or the final empty line) into `trailer_line`.
    Trailer,
    /// Saw the CR of a trailer line.
    TrailerLf,
    Done,
}

/// Removes the chunked coding from a request body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read, then the bytes of the current chunk still to copy.
    remaining: u64,
    /// Bytes of the current size line (for [`MAX_SIZE_LINE`]).
    line_len: usize,
    trailer_line: Vec<u8>,
    trailer_total: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

fn bad_size() -> HttpError {
    HttpError::bad("invalid chunk size line")
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            remaining: 0,
            line_len: 0,
            trailer_line: Vec::new(),
            trailer_total: 0,
        }
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as possible, appending body bytes to `out` (never more than
    /// `max_out` new bytes per call, so a caller can bound memory). Returns the number of input
    /// bytes consumed and whether the body is complete; bytes after the end of the body are not
    /// consumed (they belong to the next pipelined request).
    ///
    /// With `max_out == 0` and chunk data pending, nothing can be consumed: the caller must drain
    /// `out` and call again with room.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(usize, bool), HttpError> {
        let mut pos = 0;
        let mut room = max_out;
        while pos < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let avail = input.len() - pos;
                let want = usize::try_from(self.remaining).unwrap_or(usize::MAX);
                let n = want.min(avail).min(room);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&input[pos..pos + n]);
                pos += n;
                room -= n;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(input[pos])?;
            pos += 1;
        }
        Ok((pos, self.state == State::Done))
    }

    /// Advances the control-line state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        match self.state {
            State::SizeStart | State::Size => {
                if let Some(d) = hex_value(b) {
                    if self.state == State::SizeStart {
                        self.remaining = 0;
                        self.line_len = 0;
                    }
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u64::from(d)))
                        .ok_or(HttpError::bad("chunk size overflows"))?;
                    self.state = State::Size;
                } else if self.state == State::Size && b == b';' {
                    self.state = State::Extension;
                } else if self.state == State::Size && b == b'\r' {
                    self.state = State::SizeLf;
                } else {
                    return Err(bad_size());
                }
                self.bump_line()?;
            }
            State::Extension => {
                if b == b'\r' {
                    self.state = State::SizeLf;
                } else if is_field_value_byte(b) {
                    self.bump_line()?;
                } else {
                    return Err(HttpError::bad("invalid chunk extension"));
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(HttpError::bad("chunk size line not terminated by CRLF"));
                }
                self.state = if self.remaining == 0 {
                    State::Trailer
                } else {
                    State::Data
                };
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(HttpError::bad("chunk data not followed by CRLF"));
                }
                self.state = State::DataLf;
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(HttpError::bad("chunk data not followed by CRLF"));
                }
                self.state = State::SizeStart;
            }
            State::Trailer => {
                self.trailer_total += 1;
                if b == b'\r' {
                    self.state = State::TrailerLf;
                } else if b == b'\n' {
                    return Err(HttpError::bad("trailer line not terminated by CRLF"));
                } else if self.trailer_line.len() >= MAX_TRAILER_LINE
                    || self.trailer_total > MAX_TRAILERS
                {
                    return Err(HttpError::new(431, "chunked trailer section too large"));
                } else {
                    self.trailer_line.push(b);
                }
            }
            State::TrailerLf => {
                if b != b'\n' {
                    return Err(HttpError::bad("trailer line not terminated by CRLF"));
                }
                if self.trailer_line.is_empty() {
                    self.state = State::Done;
                } else {
                    check_trailer(&self.trailer_line)?;
                    self.trailer_line.clear();
                    self.state = State::Trailer;
                }
            }
            State::Data | State::Done => {}
        }
        Ok(())
    }

    fn bump_line(&mut self) -> Result<(), HttpError> {
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE {
            return Err(HttpError::bad("chunk size line too long"));
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A trailer field must be well-formed and must not be one that frames or routes the message
/// (RFC 9110 §6.5.1); gunicorn refuses those too.
fn check_trailer(line: &[u8]) -> Result<(), HttpError> {
    if matches!(line[0], b' ' | b'\t') {
        return Err(HttpError::bad("obsolete line folding in trailer"));
    }
    let (name, _) = split_field_line(line).ok_or(HttpError::bad("malformed trailer field"))?;
    const FORBIDDEN: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"host"];
    if FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return Err(HttpError::bad("forbidden field in chunked trailer"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
