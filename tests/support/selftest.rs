//! Self-tests of the harness against an in-process stand-in for a vassal: a uwsgi server
//! thread that decodes what nginx sends. They check the nginx guard, the uwsgi codec and the
//! HTTP client without the vassal binary, so a harness bug is never blamed on the vassal.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

use crate::http::{self, Conn};
use crate::nginx::Nginx;
use crate::{uwsgi, TempDir};

/// Reads one uwsgi request; returns its vars and body.
fn read_uwsgi(s: &mut impl Read) -> (BTreeMap<String, String>, Vec<u8>) {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!((head[0], head[3]), (0, 0), "modifier1 and modifier2 are 0");
    let size = u16::from_le_bytes([head[1], head[2]]) as usize;
    let mut block = vec![0u8; size];
    s.read_exact(&mut block).unwrap();
    let mut vars = BTreeMap::new();
    let mut i = 0;
    let take = |i: &mut usize| {
        let n = u16::from_le_bytes([block[*i], block[*i + 1]]) as usize;
        let v = String::from_utf8_lossy(&block[*i + 2..*i + 2 + n]).into_owned();
        *i += 2 + n;
        v
    };
    while i < size {
        let k = take(&mut i);
        let v = take(&mut i);
        vars.insert(k, v);
    }
    let len: usize = vars
        .get("CONTENT_LENGTH")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (vars, body)
}

fn stub_server(listener: UnixListener, requests: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..requests {
            let (mut s, _) = listener.accept().unwrap();
            let (vars, body) = read_uwsgi(&mut s);
            let out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n{} {} {} {}",
                vars["REQUEST_METHOD"],
                vars["PATH_INFO"],
                vars["QUERY_STRING"],
                body.len()
            );
            s.write_all(out.as_bytes()).unwrap();
        }
    })
}

#[test]
fn harness_talks_uwsgi_directly_and_through_nginx() {
    let tmp = TempDir::new("self");
    let sock = tmp.join("stub.sock");
    let server = stub_server(UnixListener::bind(&sock).unwrap(), 3);

    let r = uwsgi::request(&sock, "POST", "/direct?x=1", b"abc");
    assert_eq!((r.status, r.text().as_str()), (200, "POST /direct x=1 3"));

    let nginx = Nginx::start(&sock);
    let r = http::request(&nginx.addr(), "PUT", "/via%20nginx?q", &[], &[7u8; 100_000]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "PUT /via nginx q 100000"),
        "{}\n{}",
        r.summary(),
        nginx.logs()
    );
    assert_eq!(r.headers_all("set-cookie"), ["a=1", "b=2"]);
    // Keep-alive to nginx, chunked response from nginx (the stub sends no Content-Length).
    let mut c = Conn::connect(&nginx.addr()).unwrap();
    let r = c.request("GET", "/k", &[], b"").unwrap();
    assert_eq!(r.text(), "GET /k  0");
    assert!(
        r.chunked,
        "nginx chunks an unsized upstream body for HTTP/1.1"
    );
    server.join().unwrap();
}

#[test]
fn response_parser_handles_framing() {
    let r = http::parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.body, b"abc");
    let r = http::parse_response(b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\nhiEXTRA")
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (404, &b"hi"[..]));
    let e = http::parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    let r = http::parse_response(b"HTTP/1.1 200 OK\r\n\r\nto eof").unwrap();
    assert_eq!(r.body, b"to eof");
}

#[test]
fn uwsgi_packet_layout() {
    let p = uwsgi::packet(&vec![(b"AB".to_vec(), b"xyz".to_vec())], b"BODY");
    assert_eq!(
        p,
        [0, 9, 0, 0, 2, 0, b'A', b'B', 3, 0, b'x', b'y', b'z', b'B', b'O', b'D', b'Y']
    );
}
