use super::*;

fn parse(raw: &[u8]) -> Result<Parsed, HttpError> {
    parse_head(raw, &Limits::default())
}

fn complete(raw: &[u8]) -> (RequestHead, usize) {
    match parse(raw) {
        Ok(Parsed::Complete { head, consumed }) => (head, consumed),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
    }
}

fn status(raw: &[u8]) -> u16 {
    match parse(raw) {
        Err(e) => e.status,
        other => panic!(
            "expected an error for {:?}, got {other:?}",
            String::from_utf8_lossy(raw)
        ),
    }
}

#[test]
fn simple_get() {
    let raw = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept:  */* \t\r\n\r\nrest";
    let (h, used) = complete(raw);
    assert_eq!(used, raw.len() - 4);
    assert_eq!(h.method, "GET");
    assert_eq!(h.target, b"/a?b=c");
    assert_eq!(h.version, Version::Http11);
    assert_eq!(
        h.headers,
        vec![
            ("Host".to_owned(), b"x".to_vec()),
            ("Accept".to_owned(), b"*/*".to_vec())
        ]
    );
    assert_eq!(h.body, BodyFraming::Empty);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
}

#[test]
fn every_prefix_is_partial() {
    let raw = b"\r\nPOST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n";
    for cut in 0..raw.len() {
        assert!(
            matches!(parse(&raw[..cut]), Ok(Parsed::Partial)),
            "cut at {cut}"
        );
    }
    let (h, used) = complete(raw);
    assert_eq!(used, raw.len());
    assert_eq!(h.body, BodyFraming::Length(3));
}

#[test]
fn framing_and_connection_table() {
    type Case = (&'static [u8], BodyFraming, bool, bool);
    let cases: &[Case] = &[
        (b"GET / HTTP/1.0\r\n\r\n", BodyFraming::Empty, false, false),
        (
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            BodyFraming::Empty,
            true,
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            BodyFraming::Empty,
            false,
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n",
            BodyFraming::Empty,
            false,
            false,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            BodyFraming::Length(0),
            true,
            false,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
            BodyFraming::Chunked,
            true,
            false,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n",
            BodyFraming::Length(9),
            true,
            true,
        ),
        (
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n",
            BodyFraming::Length(9),
            false,
            false,
        ),
        (
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            BodyFraming::Empty,
            true,
            false,
        ),
    ];
    for (raw, body, keep_alive, expect) in cases {
        let (h, _) = complete(raw);
        assert_eq!(h.body, *body, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(
            h.keep_alive,
            *keep_alive,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(
            h.expect_continue,
            *expect,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn rejections_table() {
    let cases: &[(&[u8], u16)] = &[
        // Request line.
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTP/1.10\r\n\r\n", 400),
        (b"GET / http/1.1\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http:///b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        // Fields.
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400),
        // Framing.
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ];
    for (raw, want) in cases {
        assert_eq!(status(raw), *want, "{:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn accepted_target_forms() {
    for raw in [
        &b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET HTTP://a.example HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET https://u:p@a.example:8443/x?y#z HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://[::1]:8080/foo HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\xc3\xa0%20k HTTP/1.0\r\n\r\n",
        b"-BLARGH /x HTTP/1.0\r\n\r\n",
    ] {
        complete(raw);
    }
}

#[test]
fn limits() {
    let limits = Limits {
        max_request_line: 20,
        max_headers: 2,
        max_field_size: 12,
        max_head_size: 60,
    };
    let p = |raw: &[u8]| parse_head(raw, &limits).map_err(|e| e.status);
    // Request line: 20 bytes is fine, 21 is not, even before the line ends.
    assert!(matches!(p(b"GET /aaaaaaaaaaaa HTTP/1.0\r\n\r\n"), Err(414)));
    assert!(matches!(p(b"GET /aaaaaaaaaaaaaaaaaaaaaa"), Err(414)));
    assert!(matches!(
        p(b"GET /aaaaaa HTTP/1.0\r\n\r\n"),
        Ok(Parsed::Complete { .. })
    ));
    // Field line including CRLF: "X: 12345678" is 11 + 2 > 12.
    assert!(matches!(
        p(b"GET / HTTP/1.0\r\nX: 1234567\r\n\r\n"),
        Ok(Parsed::Complete { .. })
    ));
    assert!(matches!(
        p(b"GET / HTTP/1.0\r\nX: 12345678\r\n\r\n"),
        Err(431)
    ));
    assert!(matches!(p(b"GET / HTTP/1.0\r\nX: 123456789012"), Err(431)));
    // Count.
    assert!(matches!(
        p(b"GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
        Err(431)
    ));
    // Whole head, while still partial.
    assert!(matches!(
        p(b"GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\n"),
        Ok(Parsed::Partial)
    ));
    let many = Limits {
        max_headers: 100,
        ..limits.clone()
    };
    let mut raw = b"GET / HTTP/1.0\r\n".to_vec();
    for _ in 0..10 {
        raw.extend_from_slice(b"A: 1\r\n");
    }
    assert!(matches!(
        parse_head(&raw, &many),
        Err(HttpError { status: 431, .. })
    ));
}

#[test]
fn error_display() {
    assert_eq!(
        HttpError::new(431, "too many request header fields").to_string(),
        "431 too many request header fields"
    );
}
