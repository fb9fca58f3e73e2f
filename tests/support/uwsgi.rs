//! A uwsgi-protocol client: what nginx's `uwsgi_pass` sends, byte for byte.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::http::{parse_response, Response};
use crate::IO_TIMEOUT;

/// A list of uwsgi vars (key, value) as raw bytes.
pub type Vars = Vec<(Vec<u8>, Vec<u8>)>;

/// Encodes a request: header (modifier1 = 0, u16 LE vars size, modifier2 = 0), the vars
/// (u16 LE length + bytes each), then the body.
pub fn packet(vars: &Vars, body: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (k, v) in vars {
        block.extend_from_slice(&(k.len() as u16).to_le_bytes());
        block.extend_from_slice(k);
        block.extend_from_slice(&(v.len() as u16).to_le_bytes());
        block.extend_from_slice(v);
    }
    assert!(
        block.len() <= u16::MAX as usize,
        "vars block too large for a uwsgi packet"
    );
    let mut out = vec![0u8];
    out.extend_from_slice(&(block.len() as u16).to_le_bytes());
    out.push(0);
    out.extend_from_slice(&block);
    out.extend_from_slice(body);
    out
}

/// The vars nginx sends (Debian's uwsgi_params) for `method uri` with a body of `body_len`.
pub fn vars(method: &str, uri: &str, body_len: usize) -> Vars {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let v: Vec<(&str, String)> = vec![
        ("QUERY_STRING", query.into()),
        ("REQUEST_METHOD", method.into()),
        (
            "CONTENT_TYPE",
            if body_len > 0 {
                "application/octet-stream".into()
            } else {
                String::new()
            },
        ),
        (
            "CONTENT_LENGTH",
            if body_len > 0 {
                body_len.to_string()
            } else {
                String::new()
            },
        ),
        ("REQUEST_URI", uri.into()),
        ("PATH_INFO", path.into()),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("REQUEST_SCHEME", "http".into()),
        ("REMOTE_ADDR", "127.0.0.1".into()),
        ("REMOTE_PORT", "54321".into()),
        ("SERVER_PORT", "80".into()),
        ("SERVER_NAME", "localhost".into()),
        ("HTTP_HOST", "localhost".into()),
    ];
    // nginx sends empty CONTENT_TYPE / CONTENT_LENGTH / QUERY_STRING as empty values.
    v.into_iter()
        .map(|(k, val)| (k.as_bytes().to_vec(), val.into_bytes()))
        .collect()
}

/// Sends `packet` on a fresh connection to the unix socket `sock`, then reads to EOF.
///
/// A server that answers early (e.g. an error for an oversized vars block) and closes
/// with part of the request unread makes the kernel reset the connection: the write may
/// fail and the read ends in ECONNRESET after the response bytes. Like nginx, this client
/// keeps what arrived; it fails only if nothing did.
pub fn send(sock: &Path, packet: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let write_err = s.write_all(packet).err();
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !out.is_empty() => {
                return Ok(out)
            }
            Err(e) => return Err(write_err.unwrap_or(e)),
        }
    }
}

/// One uwsgi request; the raw reply parsed as an HTTP response (body = bytes until EOF,
/// or Content-Length if the app set one). Panics with the raw bytes if unparsable.
pub fn request(sock: &Path, method: &str, uri: &str, body: &[u8]) -> Response {
    let raw = send(sock, &packet(&vars(method, uri, body.len()), body))
        .unwrap_or_else(|e| panic!("uwsgi {method} {uri} on {}: {e}", sock.display()));
    parse_response(&raw).unwrap_or_else(|e| {
        panic!(
            "uwsgi {method} {uri}: unparsable reply ({e}): {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

pub fn get(sock: &Path, uri: &str) -> Response {
    request(sock, "GET", uri, b"")
}
