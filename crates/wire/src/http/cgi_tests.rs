use super::super::{parse_head, Limits, Parsed};
use super::*;

const INFO: ServerInfo<'static> = ServerInfo {
    server_name: "srv",
    server_port: "8000",
    remote_addr: "10.0.0.1",
    remote_port: "5555",
    https: false,
};

fn vars(raw: &[u8], info: &ServerInfo) -> Vec<(String, Vec<u8>)> {
    let Ok(Parsed::Complete { head, .. }) = parse_head(raw, &Limits::default()) else {
        panic!("{:?}", String::from_utf8_lossy(raw));
    };
    let mut v = Vec::new();
    cgi_vars(&head, info, |k, val| v.push((k.to_owned(), val.to_vec())));
    v
}

fn get<'a>(v: &'a [(String, Vec<u8>)], k: &str) -> Option<&'a [u8]> {
    v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_slice())
}

#[test]
fn full_environ() {
    let raw = b"POST /a%20b/%C3%A9?x=%20&y HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n\
        Content-Length: 3\r\nX-A: 1\r\nCookie: a=1\r\nx-a: 2\r\nCookie: b=2\r\nContent_Length: 9\r\n\r\n";
    let v = vars(
        raw,
        &ServerInfo {
            https: true,
            ..INFO
        },
    );
    let want: &[(&str, &[u8])] = &[
        ("REQUEST_METHOD", b"POST"),
        ("REQUEST_URI", b"/a%20b/%C3%A9?x=%20&y"),
        ("PATH_INFO", b"/a b/\xc3\xa9"),
        ("QUERY_STRING", b"x=%20&y"),
        ("SERVER_PROTOCOL", b"HTTP/1.1"),
        ("SCRIPT_NAME", b""),
        ("SERVER_NAME", b"srv"),
        ("SERVER_PORT", b"8000"),
        ("REMOTE_ADDR", b"10.0.0.1"),
        ("REMOTE_PORT", b"5555"),
        ("HTTPS", b"on"),
        ("CONTENT_TYPE", b"text/plain"),
        ("CONTENT_LENGTH", b"3"),
        ("HTTP_HOST", b"h"),
        ("HTTP_X_A", b"1, 2"),
        ("HTTP_COOKIE", b"a=1; b=2"),
    ];
    let got: Vec<(&str, &[u8])> = v.iter().map(|(k, x)| (k.as_str(), x.as_slice())).collect();
    assert_eq!(got, want);
}

#[test]
fn target_table() {
    let cases: &[(&[u8], &[u8], &[u8])] = &[
        (b"/", b"/", b""),
        (b"/p?", b"/p", b""),
        (b"/p?a?b", b"/p", b"a?b"),
        (b"/p#frag?x", b"/p", b""),
        (b"/p?q#frag", b"/p", b"q"),
        (b"///x", b"///x", b""),
        (b"/%zz%4", b"/%zz%4", b""),
        (b"/%2F", b"//", b""),
        (b"http://example.com/foo?q=1", b"/foo", b"q=1"),
        (b"https://u:p@example.com:8080/foo", b"/foo", b""),
        (b"http://[::1]:8080/foo", b"/foo", b""),
        (b"http://example.com", b"", b""),
        (b"http://example.com?q", b"", b"q"),
        (b"*", b"*", b""),
        (b"example.com:443", b"", b""),
    ];
    for (target, path, query) in cases {
        let (p, q) = split_target(target);
        assert_eq!(
            (percent_decode(p).as_slice(), q),
            (*path, *query),
            "{:?}",
            String::from_utf8_lossy(target)
        );
    }
}

#[test]
fn chunked_request_has_no_length_or_te() {
    let v = vars(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        &INFO,
    );
    assert_eq!(get(&v, "CONTENT_LENGTH"), None);
    assert_eq!(get(&v, "HTTP_TRANSFER_ENCODING"), None);
    assert_eq!(get(&v, "HTTPS"), None);
    assert_eq!(get(&v, "SERVER_PROTOCOL"), Some(&b"HTTP/1.1"[..]));
}

#[test]
fn header_names_of_any_length() {
    // Names of 2, 123 (with "HTTP_", exactly the 128-byte stack buffer), 124 and 301 bytes.
    for len in [1usize, 122, 123, 300] {
        let name = format!("x-{}", "a".repeat(len - 1));
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{name}: v\r\n{name}: w\r\n\r\n");
        let v = vars(raw.as_bytes(), &INFO);
        let key = format!("HTTP_X_{}", "A".repeat(len - 1));
        assert_eq!(
            get(&v, &key),
            Some(&b"v, w"[..]),
            "name of {} bytes",
            name.len()
        );
    }
}
