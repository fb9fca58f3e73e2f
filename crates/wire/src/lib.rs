//! Pure protocol code for the emperor's vassal: no sockets, no I/O.
//!
//! - [`uwsgi`]: the uwsgi packet format nginx's `uwsgi_pass` speaks (a 4-byte header, then
//!   length-prefixed key/value pairs). [`uwsgi::parse_vars`] calls back with slices borrowed
//!   from the caller's buffer.
//! - [`http`]: a strict HTTP/1.1 request-head parser ([`http::parse_head`]), a resumable
//!   chunked-body decoder ([`http::ChunkedDecoder`]), and [`http::cgi_vars`], which turns a parsed
//!   head into the same CGI variables nginx would send over uwsgi. The vassal therefore builds the
//!   WSGI environ through one code path whichever protocol the socket speaks.
//! - [`response`]: WSGI status and header validation and the response head writer.
//!
//! Every parser is incremental in the simplest way: the caller appends what it read to a buffer
//! and calls again; a parser answers "complete (and how many bytes it used)", "need more", or an
//! error that carries the HTTP status to answer with. Input never causes a panic; the test suite
//! runs gunicorn's request corpus and a deterministic mutation smoke test, and `fuzz/` holds
//! cargo-fuzz targets for the same entry points.

#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod response;
pub mod uwsgi;
