//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the deterministic smoke test.
//! Each one feeds arbitrary bytes to a parser and asserts the parser's own invariants, so a
//! panic here is a bug whichever way the input arrived. Not part of the stable API.

use crate::http::{self, BodyFraming, ChunkedDecoder, Limits, Parsed};
use crate::{response, uwsgi};

/// The uwsgi header and vars block parsers, and the encoder round trip.
pub fn uwsgi_vars(data: &[u8]) {
    if let Some(&[a, b, c, d]) = data.get(..4) {
        let h = uwsgi::parse_header([a, b, c, d]);
        let _ = uwsgi::check_header(&h, 4096);
    }
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
    let mut seen = 0;
    let r = uwsgi::parse_vars(data, 16, |k, v| {
        assert!(!k.is_empty());
        seen += 1;
        pairs.push((k, v));
    });
    if let Ok(n) = r {
        assert_eq!(n, seen);
        assert!(n <= 16);
        // A block that parses re-encodes to itself.
        if let Ok(pkt) = uwsgi::try_encode_packet(0, &pairs, 0) {
            assert_eq!(&pkt[uwsgi::HEADER_LEN..], data);
        }
    }
    let _ = uwsgi::parse_content_length(data);
}

/// The head parser with default and tiny limits, on the whole input and on every prefix
/// boundary a connection could deliver; then the CGI mapping and the response helpers.
pub fn http_head(data: &[u8]) {
    let tiny = Limits {
        max_request_line: 32,
        max_headers: 4,
        max_field_size: 24,
        max_head_size: 128,
    };
    for limits in [Limits::default(), tiny] {
        let whole = http::parse_head(data, &limits);
        if let Ok(Parsed::Complete { head, consumed }) = &whole {
            assert!(*consumed <= data.len());
            assert!(*consumed <= limits.max_head_size);
            // The head is complete at `consumed`: a prefix that contains it parses the same.
            match http::parse_head(&data[..*consumed], &limits) {
                Ok(Parsed::Complete { consumed: c, .. }) => assert_eq!(c, *consumed),
                other => panic!("prefix of a complete head gave {other:?}"),
            }
            let info = http::ServerInfo {
                server_name: "s",
                server_port: "80",
                remote_addr: "a",
                remote_port: "1",
                https: true,
            };
            http::cgi_vars(head, &info, |k, _| assert!(!k.is_empty()));
            if head.body == BodyFraming::Chunked {
                chunked(&data[*consumed..]);
            }
        }
        // A strict prefix of the input is never an error the whole input does not have: it
        // either needs more bytes or fails the same limit or syntax check early.
        for cut in [data.len() / 2, data.len().saturating_sub(1)] {
            if let (Ok(Parsed::Complete { .. }), Err(e)) =
                (&whole, http::parse_head(&data[..cut], &limits))
            {
                panic!("prefix {cut} refused ({e}) but the whole input parses");
            }
        }
    }
    let s = String::from_utf8_lossy(data);
    let _ = response::parse_status(&s);
    let (name, value) = s.split_once(':').unwrap_or((&s, ""));
    if response::validate_header(name, value).is_ok() {
        let mut out = Vec::new();
        response::write_head(
            &mut out,
            b"HTTP/1.1",
            "200 OK",
            &[(name.into(), value.into())],
            &[],
        );
        // A validated header cannot add lines to the head.
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 3);
    }
}

/// The chunked decoder, whole and in pieces with a small output bound; both must agree.
pub fn chunked(data: &[u8]) {
    let mut whole_dec = ChunkedDecoder::new();
    let mut whole_out = Vec::new();
    let whole = whole_dec.decode(data, &mut whole_out, usize::MAX);
    if let Ok((used, _)) = whole {
        assert!(used <= data.len());
    }

    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut avail = 0;
    let step = 1 + data.first().map_or(0, |&b| usize::from(b % 7));
    let result = 'feed: loop {
        avail = (avail + step).min(data.len());
        // Decode what has arrived until the decoder makes no progress, then let more arrive.
        loop {
            let before = out.len();
            match dec.decode(&data[pos..avail], &mut out, 5) {
                Ok((used, done)) => {
                    assert!(out.len() - before <= 5);
                    pos += used;
                    if done {
                        break 'feed Ok((pos, true));
                    }
                    if used == 0 {
                        break;
                    }
                }
                Err(e) => break 'feed Err(e),
            }
        }
        if avail == data.len() {
            break Ok((pos, false));
        }
    };
    match (whole, result) {
        (Ok(w), Ok(p)) => {
            assert_eq!(w, p);
            assert_eq!(whole_out, out);
        }
        (Err(a), Err(b)) => assert_eq!(a.status, b.status),
        (w, p) => panic!("whole {w:?} vs pieces {p:?}"),
    }
}
