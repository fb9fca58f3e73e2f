use super::*;

#[test]
fn parse_status_table() {
    let cases: &[(&str, Option<u16>)] = &[
        ("200 OK", Some(200)),
        ("404 Not Found", Some(404)),
        ("200 ", Some(200)),
        ("200", Some(200)),
        ("599 Custom reason with spaces", Some(599)),
        ("999 x", Some(999)),
        ("099 x", None),
        ("20 OK", None),
        ("2000 OK", None),
        ("200OK", None),
        ("abc OK", None),
        ("", None),
        ("200 OK\r\nX: y", None),
        ("200 O\nK", None),
        ("200 O\0K", None),
        ("200 caf\u{e9}", Some(200)),
        ("200 \u{263a}", None),
    ];
    for (s, want) in cases {
        assert_eq!(parse_status(s).ok(), *want, "{s:?}");
    }
}

#[test]
fn validate_header_table() {
    assert!(validate_header("Content-Type", "text/html; charset=utf-8").is_ok());
    assert!(validate_header("X-Empty", "").is_ok());
    assert!(validate_header("X-Latin1", "caf\u{e9}").is_ok());
    assert!(matches!(
        validate_header("", "x"),
        Err(HeaderError::BadName(_))
    ));
    assert!(matches!(
        validate_header("Bad Name", "x"),
        Err(HeaderError::BadName(_))
    ));
    assert!(matches!(
        validate_header("Bad:Name", "x"),
        Err(HeaderError::BadName(_))
    ));
    assert!(matches!(
        validate_header("X\r\nY", "x"),
        Err(HeaderError::BadName(_))
    ));
    for v in ["a\r\nSet-Cookie: x", "a\nb", "a\rb", "a\0b", "\u{263a}"] {
        assert!(
            matches!(validate_header("X", v), Err(HeaderError::BadValue(_))),
            "{v:?}"
        );
    }
}

#[test]
fn write_head_formats() {
    let mut out = Vec::new();
    write_head(
        &mut out,
        b"HTTP/1.1",
        "200 OK",
        &[
            ("Content-Type".into(), "text/plain".into()),
            ("X-L".into(), "caf\u{e9}".into()),
        ],
        &[("Connection", "close")],
    );
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-L: caf\xe9\r\nConnection: close\r\n\r\n"
    );
    let mut out = Vec::new();
    write_head(&mut out, b"HTTP/1.0", "404", &[], &[]);
    assert_eq!(out, b"HTTP/1.0 404 Not Found\r\n\r\n");
    let mut out = Vec::new();
    write_head(&mut out, b"HTTP/1.0", "799", &[], &[]);
    assert_eq!(out, b"HTTP/1.0 799 Unknown\r\n\r\n");
}

#[test]
fn simple_response_is_complete() {
    let r = simple_response(b"HTTP/1.1", 431, "too big\n", true);
    assert_eq!(
        r,
        &b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n"[..]
    );
    let r = simple_response(b"HTTP/1.1", 400, "", false);
    assert_eq!(
        r,
        &b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n\r\n"[..]
    );
}

#[test]
fn reason_phrases() {
    assert_eq!(reason_phrase(200), "OK");
    assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
    assert_eq!(reason_phrase(299), "Unknown");
}

#[test]
fn header_role_table() {
    use HeaderRole::*;
    let cases: &[(&str, &str, Result<HeaderRole, HeaderError>)] = &[
        ("Content-Type", "text/plain", Ok(Plain)),
        ("Content-Length", "12", Ok(ContentLength(12))),
        ("content-length", " 0 ", Ok(ContentLength(0))),
        (
            "Content-Length",
            "",
            Err(HeaderError::BadContentLength("".into())),
        ),
        (
            "Content-Length",
            "12abc",
            Err(HeaderError::BadContentLength("12abc".into())),
        ),
        (
            "Content-Length",
            "+12",
            Err(HeaderError::BadContentLength("+12".into())),
        ),
        (
            "Content-Length",
            "1 2",
            Err(HeaderError::BadContentLength("1 2".into())),
        ),
        (
            "Content-Length",
            "-1",
            Err(HeaderError::BadContentLength("-1".into())),
        ),
        (
            "Content-Length",
            "99999999999999999999",
            Err(HeaderError::BadContentLength("99999999999999999999".into())),
        ),
        (
            "Transfer-Encoding",
            "chunked",
            Err(HeaderError::HopByHop("Transfer-Encoding".into())),
        ),
        (
            "connection",
            "close",
            Err(HeaderError::HopByHop("connection".into())),
        ),
        (
            "Keep-Alive",
            "timeout=5",
            Err(HeaderError::HopByHop("Keep-Alive".into())),
        ),
        (
            "Upgrade",
            "websocket",
            Err(HeaderError::HopByHop("Upgrade".into())),
        ),
        ("TE", "trailers", Err(HeaderError::HopByHop("TE".into()))),
        ("Trailer", "X", Err(HeaderError::HopByHop("Trailer".into()))),
        (
            "Proxy-Authenticate",
            "Basic",
            Err(HeaderError::HopByHop("Proxy-Authenticate".into())),
        ),
        (
            "Proxy-Authorization",
            "x",
            Err(HeaderError::HopByHop("Proxy-Authorization".into())),
        ),
        ("Te", "x", Err(HeaderError::HopByHop("Te".into()))),
        // Same lengths as hop-by-hop names, not hop-by-hop.
        ("X-", "x", Ok(Plain)),
        ("Expires", "0", Ok(Plain)),
        ("Location", "/", Ok(Plain)),
        ("Set-Cookie", "a=b", Ok(Plain)),
        ("Content-Language", "en", Ok(Plain)),
    ];
    for (n, v, want) in cases {
        assert_eq!(&header_role(n, v), want, "{n}: {v}");
    }
}

#[test]
fn decide_framing_table() {
    use BodyFraming::*;
    let h11 = Transport::Http {
        http11: true,
        keep_alive: true,
        head: false,
    };
    let h11_close = Transport::Http {
        http11: true,
        keep_alive: false,
        head: false,
    };
    let h11_head = Transport::Http {
        http11: true,
        keep_alive: true,
        head: true,
    };
    let h10 = Transport::Http {
        http11: false,
        keep_alive: false,
        head: false,
    };
    let h10_ka = Transport::Http {
        http11: false,
        keep_alive: true,
        head: false,
    };
    // (transport, status, app length, known total) ->
    //   (body, add length, add chunked, add connection, keep-alive)
    type Want = (BodyFraming, Option<u64>, bool, Option<&'static str>, bool);
    type Case = (Transport, u16, Option<u64>, Option<u64>, Want);
    let cases: &[Case] = &[
        // uwsgi: always close-delimited, nothing added (nginx frames for the client)
        (
            Transport::Uwsgi,
            200,
            Some(5),
            Some(5),
            (Close, None, false, None, false),
        ),
        (
            Transport::Uwsgi,
            200,
            None,
            None,
            (Close, None, false, None, false),
        ),
        // the app's Content-Length wins, nothing added
        (
            h11,
            200,
            Some(5),
            Some(7),
            (Length(5), None, false, None, true),
        ),
        // a body known up front gets a computed length
        (
            h11,
            200,
            None,
            Some(7),
            (Length(7), Some(7), false, None, true),
        ),
        // a stream of unknown length: chunked on 1.1, close on 1.0
        (h11, 200, None, None, (Chunked, None, true, None, true)),
        (h10, 200, None, None, (Close, None, false, None, false)),
        (h10_ka, 200, None, None, (Close, None, false, None, false)),
        (
            h10_ka,
            200,
            None,
            Some(3),
            (Length(3), Some(3), false, Some("keep-alive"), true),
        ),
        // the client asked to close
        (
            h11_close,
            200,
            None,
            None,
            (Chunked, None, true, Some("close"), false),
        ),
        (
            h11_close,
            200,
            Some(2),
            None,
            (Length(2), None, false, Some("close"), false),
        ),
        // no body: HEAD, 1xx, 204, 304
        (
            h11_head,
            200,
            Some(9),
            None,
            (NoBody, None, false, None, true),
        ),
        (
            h11_head,
            200,
            None,
            Some(4),
            (NoBody, Some(4), false, None, true),
        ),
        (h11_head, 200, None, None, (NoBody, None, false, None, true)),
        (h11, 204, None, Some(0), (NoBody, None, false, None, true)),
        (h11, 304, Some(10), None, (NoBody, None, false, None, true)),
        (h11, 101, None, None, (NoBody, None, false, None, true)),
    ];
    for &(t, status, app, total, want) in cases {
        let f = decide_framing(t, status, app, total);
        assert_eq!(
            (
                f.body,
                f.add_length,
                f.add_chunked,
                f.add_connection,
                f.keep_alive
            ),
            want,
            "{t:?} {status} app={app:?} total={total:?}"
        );
        // Never two framings: an added length or chunked only when the app gave none.
        assert!(!(f.add_length.is_some() && f.add_chunked));
        if app.is_some() {
            assert!(f.add_length.is_none() && !f.add_chunked);
        }
    }
}
