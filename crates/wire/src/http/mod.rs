//! HTTP/1.x request parsing for `http-socket`.
//!
//! [`parse_head`] reads the request line and header section strictly (CRLF line endings only, no
//! obs-fold, one framing header, limits enforced while the head is still arriving), decides the
//! body framing and the connection semantics, and reports how many bytes the head used. The body
//! is then either `Content-Length` bytes or chunked, decoded by [`ChunkedDecoder`]. [`cgi_vars`]
//! maps a parsed head onto the CGI variables nginx would send over uwsgi.
//!
//! [`parse_head`] keeps no state and re-scans the buffer on each call, so a connection should
//! call it again only when a read added a `\n` (a head cannot complete otherwise) or pushed the
//! buffer past a limit; that keeps a client who dribbles bytes from costing quadratic time.
//!
//! ```
//! use wire::http::{parse_head, BodyFraming, ChunkedDecoder, Limits, Parsed};
//!
//! let buf = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
//! let Parsed::Complete { head, consumed } = parse_head(buf, &Limits::default())? else {
//!     unreachable!("the head is complete");
//! };
//! assert_eq!(head.body, BodyFraming::Chunked);
//! let mut body = Vec::new();
//! let (used, done) = ChunkedDecoder::new().decode(&buf[consumed..], &mut body, 64 * 1024)?;
//! assert!(done && consumed + used == buf.len());
//! assert_eq!(body, b"hello");
//! # Ok::<(), wire::http::HttpError>(())
//! ```

mod cgi;
mod chunked;
pub mod forwarded;
mod head;
mod syntax;

pub use cgi::{cgi_vars, percent_decode, ServerInfo};
pub use chunked::ChunkedDecoder;
pub use head::{parse_head, BodyFraming, Limits, Parsed, RequestHead, Version};

/// A request the server refuses, with the status code to answer before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {detail}")]
pub struct HttpError {
    /// The HTTP status to answer with (400, 414, 431, 501, 505).
    pub status: u16,
    /// What was wrong, for the log and the plain-text error body.
    pub detail: &'static str,
}

impl HttpError {
    pub(crate) const fn new(status: u16, detail: &'static str) -> Self {
        HttpError { status, detail }
    }

    pub(crate) const fn bad(detail: &'static str) -> Self {
        HttpError::new(400, detail)
    }
}

/// Whether `s` is an RFC 9110 token (a valid method or field name).
pub fn is_token_str(s: &str) -> bool {
    syntax::is_token(s.as_bytes())
}
