use super::*;

/// Decodes `input` fed in pieces of the given sizes (cycled), with an output cap per call.
fn decode_split(
    input: &[u8],
    splits: &[usize],
    max_out: usize,
) -> Result<(Vec<u8>, usize), HttpError> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut buffered = 0; // bytes made available so far
    let mut i = 0;
    loop {
        buffered = (buffered + splits[i % splits.len()]).min(input.len());
        i += 1;
        loop {
            let (used, done) = d.decode(&input[pos..buffered], &mut out, max_out)?;
            pos += used;
            if done {
                return Ok((out, pos));
            }
            if used == 0 {
                break;
            }
        }
        if buffered == input.len() {
            return Err(HttpError::bad("incomplete"));
        }
    }
}

const BODY: &[u8] =
    b"5;a=\"b c\"\r\nhello\r\n6\r\n world\r\n00\r\nVary: *\r\nX-Foo:bar\r\n\r\nNEXT";

#[test]
fn whole_and_split_at_every_boundary() {
    let (out, used) = decode_split(BODY, &[BODY.len()], usize::MAX).unwrap();
    assert_eq!(out, b"hello world");
    assert_eq!(&BODY[used..], b"NEXT");
    for cut in 1..BODY.len() {
        let (out, used) = decode_split(BODY, &[cut, BODY.len()], usize::MAX).unwrap();
        assert_eq!(out, b"hello world", "cut {cut}");
        assert_eq!(&BODY[used..], b"NEXT", "cut {cut}");
    }
    let (out, _) = decode_split(BODY, &[1], usize::MAX).unwrap();
    assert_eq!(out, b"hello world");
}

#[test]
fn max_out_bounds_each_call() {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let (used, done) = d.decode(BODY, &mut out, 3).unwrap();
    assert!(!done);
    assert_eq!(out, b"hel");
    let (out2, _) = decode_split(BODY, &[BODY.len()], 1).unwrap();
    assert_eq!(out2, b"hello world");
    // Nothing to do with no room while in chunk data.
    let mut out3 = Vec::new();
    assert_eq!(d.decode(&BODY[used..], &mut out3, 0).unwrap(), (0, false));
}

#[test]
fn valid_variants() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"0\r\n\r\n", b""),
        (b"000\r\n\r\n", b""),
        (b"0005\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"a; x ; y=1\r\n0123456789\r\n0;last\r\n\r\n", b"0123456789"),
    ];
    for (input, want) in cases {
        let (out, used) = decode_split(input, &[input.len()], usize::MAX).unwrap();
        assert_eq!(&out, want);
        assert_eq!(used, input.len());
    }
}

#[test]
fn invalid_variants() {
    let cases: &[&[u8]] = &[
        b"\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"6_0\r\nhello\r\n0\r\n\r\n",
        b"5\n\r\nhello\r\n0\r\n\r\n",
        b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n",
        b"5;a\0\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"10000000000000000\r\n",
        b"0\r\nContent-Length: 9\r\n\r\n",
        b"0\r\nhost: a\r\n\r\n",
        b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"0\r\nBad Name: x\r\n\r\n",
        b"0\r\n folded\r\n\r\n",
        b"0\r\nX: a\n\r\n",
        b"0\r\n\n",
    ];
    for input in cases {
        for cut in 1..=input.len() {
            let r = decode_split(input, &[cut, input.len()], usize::MAX);
            assert!(
                matches!(r, Err(HttpError { status: 400, .. })),
                "{:?} cut {cut}: {r:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn incomplete_is_not_done() {
    for input in [
        &b"0\r\n"[..],
        b"5\r\nhel",
        b"5\r\nhello\r\n",
        b"0\r\nX: y\r\n",
    ] {
        let mut d = ChunkedDecoder::new();
        let (used, done) = d.decode(input, &mut Vec::new(), usize::MAX).unwrap();
        assert_eq!((used, done), (input.len(), false));
        assert!(!d.is_done());
    }
}

#[test]
fn oversized_size_line_is_refused() {
    let mut input = b"5;".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE));
    let r = ChunkedDecoder::new().decode(&input, &mut Vec::new(), usize::MAX);
    assert!(matches!(r, Err(HttpError { status: 400, .. })));
}
