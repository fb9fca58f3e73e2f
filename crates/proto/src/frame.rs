//! Framing: a 4-byte big-endian payload length, then the payload (one JSON message).
//!
//! The length is checked against [`MAX_FRAME`] as soon as the four header bytes are known,
//! before any buffer is sized from it: a peer cannot make us allocate by announcing a huge
//! frame, only by actually sending bytes, and then at most one frame's worth.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::MAX_FRAME;

const HEADER: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame's announced (or, when writing, actual) payload length exceeds
    /// [`MAX_FRAME`]. The stream cannot be resynchronised: close the connection.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooBig(usize),
    /// The payload is not the expected JSON message. The frame has been consumed, so the
    /// stream is still in sync.
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    /// Reading or writing failed; a connection closed in the middle of a frame is
    /// [`io::ErrorKind::UnexpectedEof`].
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection cleanly, between two frames.
    #[error("connection closed")]
    Closed,
}

/// Encodes `msg` as one frame (header + JSON), without checking its size against
/// [`MAX_FRAME`]; use [`try_encode`] where an oversized message is possible.
///
/// # Panics
///
/// If `msg`'s `Serialize` implementation fails, which the types of this crate never do
/// (they hold no maps with non-string keys and no custom serializers).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut frame = vec![0; HEADER];
    serde_json::to_writer(&mut frame, msg)
        .expect("protocol messages serialize infallibly: plain structs, enums and strings");
    let len = u32::try_from(frame.len() - HEADER).unwrap_or(u32::MAX);
    frame[..HEADER].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Encodes `msg` as one frame, refusing one whose payload exceeds [`MAX_FRAME`] (the peer
/// would refuse it anyway) and returning serialization failures instead of panicking.
pub fn try_encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0; HEADER];
    serde_json::to_writer(&mut frame, msg)?;
    let len = frame.len() - HEADER;
    if len > MAX_FRAME {
        return Err(FrameError::TooBig(len));
    }
    let len = u32::try_from(len).expect("MAX_FRAME fits in u32");
    frame[..HEADER].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// Writes `msg` as one frame and flushes.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let frame = try_encode(msg)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Reads exactly one frame and decodes it, blocking.
///
/// End of stream before the first header byte is [`FrameError::Closed`]; anywhere later it
/// is [`FrameError::Io`] with [`io::ErrorKind::UnexpectedEof`].
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<T, FrameError> {
    let mut header = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        match r.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = payload_len(header)?;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(serde_json::from_slice(&payload)?)
}

/// The payload length announced by a header, refused above [`MAX_FRAME`].
fn payload_len(header: [u8; HEADER]) -> Result<usize, FrameError> {
    // A u32 always fits in usize on the 32- and 64-bit targets we build for.
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        Err(FrameError::TooBig(len))
    } else {
        Ok(len)
    }
}

/// An incremental frame decoder for non-blocking readers: [`push`](Self::push) whatever
/// bytes arrived, then call [`next`](Self::next) until it returns `Ok(None)`.
///
/// Memory stays bounded by one frame plus the last chunk pushed: an oversized header is
/// detected on push, after which the decoder drops its buffer, ignores further input and
/// keeps answering [`FrameError::TooBig`] (the stream cannot be resynchronised). A
/// [`FrameError::Json`] consumes its frame, so decoding can go on after it.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    refused: Option<usize>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.refused.is_some() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        self.check_header();
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    #[allow(clippy::should_implement_trait)] // Not an Iterator: it is fallible and generic per call.
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        self.check_header();
        if let Some(len) = self.refused {
            return Err(FrameError::TooBig(len));
        }
        let Some(header) = self.header() else {
            return Ok(None);
        };
        let len = payload_len(header)?;
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let decoded = serde_json::from_slice(&self.buf[HEADER..HEADER + len]);
        self.buf.drain(..HEADER + len);
        Ok(Some(decoded?))
    }

    /// How many bytes are buffered: non-zero at end of stream means the peer stopped in the
    /// middle of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn header(&self) -> Option<[u8; HEADER]> {
        self.buf.get(..HEADER).map(|h| {
            h.try_into()
                .expect("a slice of HEADER bytes converts to an array")
        })
    }

    fn check_header(&mut self) {
        if let Some(header) = self.header() {
            if let Err(FrameError::TooBig(len)) = payload_len(header) {
                self.refused = Some(len);
                self.buf = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests;
