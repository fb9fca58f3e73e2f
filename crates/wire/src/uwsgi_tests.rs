use super::*;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn collect(block: &[u8], max: usize) -> Result<Pairs, UwsgiError> {
    let mut v = Vec::new();
    parse_vars(block, max, |k, val| v.push((k.to_vec(), val.to_vec())))?;
    Ok(v)
}

/// A request as nginx builds it from the stock `uwsgi_params` plus two headers.
fn nginx_request() -> Vec<u8> {
    let vars: &[(&[u8], &[u8])] = &[
        (b"QUERY_STRING", b"a=1&b=%20"),
        (b"REQUEST_METHOD", b"POST"),
        (b"CONTENT_TYPE", b"application/x-www-form-urlencoded"),
        (b"CONTENT_LENGTH", b"5"),
        (b"REQUEST_URI", b"/app/x%20y?a=1&b=%20"),
        (b"PATH_INFO", b"/app/x y"),
        (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"51234"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_NAME", b"example.com"),
        (b"HTTP_HOST", b"example.com"),
        (b"HTTP_COOKIE", b"a=1; b=2"),
        (b"HTTP_X_EMPTY", b""),
    ];
    encode_packet(0, vars, 0)
}

#[test]
fn header_is_little_endian() {
    let h = parse_header([0, 0x34, 0x12, 0]);
    assert_eq!(
        h,
        PacketHeader {
            modifier1: 0,
            datasize: 0x1234,
            modifier2: 0
        }
    );
}

#[test]
fn http_on_uwsgi_socket_is_recognised() {
    let h = parse_header(*b"GET ");
    assert_eq!(h.modifier1, b'G');
    assert_eq!(
        h.datasize, 21573,
        "the number the uWSGI docs tell users to recognise"
    );
    let err = check_header(&h, 4096).unwrap_err();
    assert_eq!(err, UwsgiError::UnsupportedModifier(b'G'));
    assert!(
        err.to_string().contains("HTTP sent to a uwsgi socket?"),
        "{err}"
    );
    let err = check_header(&parse_header([17, 1, 0, 0]), 4096).unwrap_err();
    assert!(!err.to_string().contains("HTTP"), "{err}");
}

#[test]
fn check_header_table() {
    let cases: &[([u8; 4], usize, Result<(), UwsgiError>)] = &[
        ([0, 10, 0, 0], 4096, Ok(())),
        ([30, 10, 0, 0], 4096, Ok(())),
        ([0, 0, 16, 0], 4096, Ok(())),
        ([0, 0, 0, 0], 4096, Err(UwsgiError::EmptyBlock)),
        (
            [0, 1, 16, 0],
            4096,
            Err(UwsgiError::BlockTooBig {
                size: 4097,
                max: 4096,
            }),
        ),
        ([5, 1, 0, 0], 4096, Err(UwsgiError::UnsupportedModifier(5))),
        (
            [100, 0, 0, 0],
            4096,
            Err(UwsgiError::UnsupportedModifier(100)),
        ),
    ];
    for (bytes, max, want) in cases {
        assert_eq!(
            &check_header(&parse_header(*bytes), *max),
            want,
            "{bytes:?}"
        );
    }
}

#[test]
fn block_too_big_names_buffer_size() {
    let e = UwsgiError::BlockTooBig {
        size: 5000,
        max: 4096,
    };
    assert_eq!(
        e.to_string(),
        "uwsgi vars block of 5000 bytes exceeds buffer-size 4096 (raise buffer-size in the ini)"
    );
}

#[test]
fn parses_what_nginx_sends() {
    let pkt = nginx_request();
    let h = parse_header([pkt[0], pkt[1], pkt[2], pkt[3]]);
    check_header(&h, 4096).unwrap();
    let block = &pkt[HEADER_LEN..];
    assert_eq!(block.len(), usize::from(h.datasize));
    let vars = collect(block, DEFAULT_MAX_VARS).unwrap();
    assert_eq!(vars.len(), 16);
    assert_eq!(vars[0], (b"QUERY_STRING".to_vec(), b"a=1&b=%20".to_vec()));
    assert_eq!(vars[15], (b"HTTP_X_EMPTY".to_vec(), Vec::new()));
    let cl = vars.iter().find(|(k, _)| k == b"CONTENT_LENGTH").unwrap();
    assert_eq!(parse_content_length(&cl.1), Some(5));
}

#[test]
fn parse_vars_errors_table() {
    let cases: &[(&[u8], usize, Result<usize, UwsgiError>)] = &[
        (b"", 10, Ok(0)),
        (b"\x01\x00a\x00\x00", 10, Ok(1)),
        (b"\x01\x00a\x01\x00b\x01\x00c\x00\x00", 10, Ok(2)),
        (
            b"\x00\x00\x01\x00b",
            10,
            Err(UwsgiError::EmptyKey { offset: 0 }),
        ),
        (
            b"\x01\x00a\x01\x00b\x00\x00",
            10,
            Err(UwsgiError::EmptyKey { offset: 6 }),
        ),
        // A trailing partial length byte.
        (
            b"\x01\x00a\x00\x00\x01",
            10,
            Err(UwsgiError::Overrun { offset: 5 }),
        ),
        // Key runs past the end.
        (b"\x05\x00ab", 10, Err(UwsgiError::Overrun { offset: 0 })),
        // Value length missing.
        (b"\x01\x00a", 10, Err(UwsgiError::Overrun { offset: 0 })),
        (b"\x01\x00a\x01", 10, Err(UwsgiError::Overrun { offset: 0 })),
        // Value runs past the end.
        (
            b"\x01\x00a\x09\x00xyz",
            10,
            Err(UwsgiError::Overrun { offset: 0 }),
        ),
        (
            b"\x01\x00a\x00\x00\x01\x00b\x00\x00",
            1,
            Err(UwsgiError::TooManyVars { max: 1 }),
        ),
        (
            b"\x01\x00a\x00\x00",
            0,
            Err(UwsgiError::TooManyVars { max: 0 }),
        ),
    ];
    for (block, max, want) in cases {
        assert_eq!(&parse_vars(block, *max, |_, _| {}), want, "{block:?}");
    }
}

#[test]
fn duplicate_keys_are_kept_in_order() {
    let pkt = encode_packet(0, &[(b"A", b"1"), (b"A", b"2")], 0);
    let vars = collect(&pkt[4..], 10).unwrap();
    assert_eq!(
        vars,
        vec![
            (b"A".to_vec(), b"1".to_vec()),
            (b"A".to_vec(), b"2".to_vec())
        ]
    );
}

#[test]
fn max_vars_boundary() {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..DEFAULT_MAX_VARS)
        .map(|i| (format!("K{i}").into_bytes(), b"v".to_vec()))
        .collect();
    let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let pkt = encode_packet(0, &refs, 0);
    assert_eq!(
        parse_vars(&pkt[4..], DEFAULT_MAX_VARS, |_, _| {}),
        Ok(DEFAULT_MAX_VARS)
    );
    assert_eq!(
        parse_vars(&pkt[4..], DEFAULT_MAX_VARS - 1, |_, _| {}),
        Err(UwsgiError::TooManyVars {
            max: DEFAULT_MAX_VARS - 1
        })
    );
}

#[test]
fn encode_limits() {
    let big = vec![b'x'; 70_000];
    assert_eq!(
        try_encode_packet(0, &[(b"K", &big)], 0),
        Err(EncodeError::BlockTooLong { len: 70_005 })
    );
    let v = vec![b'x'; 65_530];
    let pkt = try_encode_packet(0, &[(b"K", &v)], 0).unwrap();
    assert_eq!(
        parse_header([pkt[0], pkt[1], pkt[2], pkt[3]]).datasize,
        65_535
    );
}

#[test]
fn content_length_is_strict() {
    let cases: &[(&[u8], Option<u64>)] = &[
        (b"0", Some(0)),
        (b"42", Some(42)),
        (b"007", Some(7)),
        (b"18446744073709551615", Some(u64::MAX)),
        (b"18446744073709551616", None),
        (b"", None),
        (b"+1", None),
        (b"-1", None),
        (b" 1", None),
        (b"1 ", None),
        (b"5, 5", None),
        (b"0x10", None),
        (b"1_0", None),
    ];
    for (v, want) in cases {
        assert_eq!(parse_content_length(v), *want, "{v:?}");
    }
}
