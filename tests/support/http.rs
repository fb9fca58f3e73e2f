//! A small, strict HTTP/1.x client over unix or TCP streams, written by hand so tests
//! control every byte sent and see every byte received.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::IO_TIMEOUT;

/// Where a server listens.
#[derive(Clone, Debug)]
pub enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

impl Addr {
    pub fn unix(p: impl Into<PathBuf>) -> Addr {
        Addr::Unix(p.into())
    }
}

/// A connected stream of either kind.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub fn connect(addr: &Addr) -> io::Result<Stream> {
        let s = match addr {
            Addr::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
            Addr::Tcp(a) => Stream::Tcp(TcpStream::connect(a.as_str())?),
        };
        s.set_timeout(IO_TIMEOUT)?;
        Ok(s)
    }

    pub fn set_timeout(&self, t: std::time::Duration) -> io::Result<()> {
        match self {
            Stream::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A parsed response.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header names as received (case preserved), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was chunked (Transfer-Encoding: chunked).
    pub chunked: bool,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name`, in order.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Whether the server announced it will close the connection.
    pub fn closes(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        conn.contains("close") || (self.version == "HTTP/1.0" && !conn.contains("keep-alive"))
    }

    /// A short description for assertion messages.
    pub fn summary(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(600)]).into_owned();
        format!(
            "{} {} {} headers={:?} body[{}]={:?}",
            self.version,
            self.status,
            self.reason,
            self.headers,
            self.body.len(),
            body
        )
    }
}

/// An HTTP connection with a buffered reader, for keep-alive and pipelining.
pub struct Conn {
    r: BufReader<Stream>,
}

impl Conn {
    pub fn connect(addr: &Addr) -> io::Result<Conn> {
        Ok(Conn {
            r: BufReader::new(Stream::connect(addr)?),
        })
    }

    pub fn from_stream(s: Stream) -> Conn {
        Conn {
            r: BufReader::new(s),
        }
    }

    pub fn stream(&self) -> &Stream {
        self.r.get_ref()
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.r.get_mut().write_all(bytes)
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        self.r.get_ref().shutdown_write()
    }

    /// Reads one response, interim (1xx) ones included. `head`: the request was HEAD.
    pub fn read_response(&mut self, head: bool) -> io::Result<Response> {
        read_response(&mut self.r, head)
    }

    /// Reads responses until a final (non-1xx) one.
    pub fn read_final(&mut self, head: bool) -> io::Result<Response> {
        loop {
            let r = self.read_response(head)?;
            if !(100..200).contains(&r.status) || r.status == 101 {
                return Ok(r);
            }
        }
    }

    /// Sends a request and reads the final response.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        self.send(&request_bytes(method, target, headers, body))?;
        self.read_final(method == "HEAD")
    }

    /// Reads raw bytes (for responses a test abandons half way).
    pub fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read(buf)
    }

    /// Reads whatever remains until EOF.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.r.read_to_end(&mut v)?;
        Ok(v)
    }

    /// True if the server closed the connection (EOF or reset), false if bytes arrived.
    pub fn closed_by_peer(&mut self) -> io::Result<bool> {
        let mut b = [0u8; 1];
        match self.r.read(&mut b) {
            Ok(0) => Ok(true),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// Builds an HTTP/1.1 request. Adds `Host: localhost` unless given, and Content-Length
/// for a non-empty body unless a Content-Length or Transfer-Encoding header is given.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        out.extend_from_slice(b"Host: localhost\r\n");
    }
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One request on a fresh connection (with `Connection: close`).
pub fn request(
    addr: &Addr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut h = headers.to_vec();
    h.push(("Connection", "close"));
    let mut c = Conn::connect(addr).unwrap_or_else(|e| panic!("connect to {addr:?}: {e}"));
    c.request(method, target, &h, body)
        .unwrap_or_else(|e| panic!("{method} {target} on {addr:?}: {e}"))
}

/// GET on a fresh connection.
pub fn get(addr: &Addr, target: &str) -> Response {
    request(addr, "GET", target, &[], b"")
}

/// Parses a complete response held in memory (e.g. what a uwsgi socket sent until EOF).
pub fn parse_response(bytes: &[u8]) -> io::Result<Response> {
    let mut r = BufReader::new(bytes);
    read_response(&mut r, false)
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete line",
        ));
    }
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("truncated line {:?}", String::from_utf8_lossy(&line)),
        ));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    // Header values are ISO-8859-1 on the wire.
    Ok(line.iter().map(|&b| b as char).collect())
}

/// Reads one response from `r`.
pub fn read_response<R: BufRead>(r: &mut R, head: bool) -> io::Result<Response> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line {status_line:?}"),
        )
    })?;
    if !version.starts_with("HTTP/1.") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line {status_line:?}"),
        ));
    }
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad header line {line:?}"),
            )
        })?;
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let mut resp = Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
        chunked: false,
    };
    if head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(resp);
    }
    let te = resp
        .header("transfer-encoding")
        .map(|s| s.to_ascii_lowercase());
    if te.as_deref().is_some_and(|t| t.contains("chunked")) {
        resp.chunked = true;
        loop {
            let line = read_line(r)?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size line {line:?}"),
                )
            })?;
            if size == 0 {
                // Trailers until the empty line.
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            if !read_line(r)?.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk not followed by CRLF",
                ));
            }
        }
    } else if let Some(cl) = resp.header("content-length") {
        let n: usize = cl.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad Content-Length {cl:?}"),
            )
        })?;
        resp.body.resize(n, 0);
        let mut got = 0;
        while got < n {
            let k = r.read(&mut resp.body[got..])?;
            if k == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body truncated: {got} of {n} bytes (Content-Length)"),
                ));
            }
            got += k;
        }
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}
