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
