use super::*;
use crate::{AppStatus, ExitReason, Request, Response, WorkerStatus, PROTOCOL_VERSION};

fn requests() -> Vec<Request> {
    vec![
        Request::Hello {
            version: PROTOCOL_VERSION,
            client: "emperorctl 0.1.0".into(),
        },
        Request::Status { apps: vec![] },
        Request::Status {
            apps: vec!["a".into(), "b".into()],
        },
        Request::Reload { app: None },
        Request::Reload {
            app: Some("example-app".into()),
        },
        Request::Restart { app: "x".into() },
        Request::Stop { app: "x".into() },
        Request::Start {
            app: "ünïcode \"quoted\"".into(),
        },
    ]
}

fn responses() -> Vec<Response> {
    vec![
        Response::Hello {
            version: PROTOCOL_VERSION,
            server: "emperor 0.1.0".into(),
        },
        Response::Status { apps: vec![] },
        Response::Status {
            apps: vec![
                AppStatus {
                    name: "example-app".into(),
                    state: "ready".into(),
                    pid: Some(42),
                    workers: vec![WorkerStatus {
                        id: 1,
                        pid: 43,
                        state: "busy".into(),
                        requests: 10,
                        exceptions: 1,
                        rss_kb: 20480,
                        busy_ms: Some(15),
                    }],
                    uptime_secs: Some(192),
                    restarts: 2,
                    last_exit: Some("killed by signal SIGSEGV (core dumped)".into()),
                    exit: Some(ExitReason::Signal {
                        number: 11,
                        name: "SIGSEGV".into(),
                        core_dumped: true,
                    }),
                    last_output: Some("WARN the app runs as root".into()),
                    error: None,
                    socket: "/run/example-app/socket".into(),
                    config: "/etc/emperor/apps-enabled/example-app.ini".into(),
                    next_attempt_secs: None,
                },
                AppStatus::default(),
            ],
        },
        Response::Done {
            message: "reloaded".into(),
        },
        Response::Failed {
            message: "ImportError: No module named 'wsgi'\nline two".into(),
        },
        Response::UnknownApp { app: "nope".into() },
        Response::Error {
            message: "version mismatch".into(),
        },
    ]
}

/// Concatenated frames of every request and response, and the messages as JSON values.
fn stream() -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    for r in requests() {
        bytes.extend(encode(&r));
    }
    for r in responses() {
        bytes.extend(encode(&r));
    }
    (bytes, requests().len() + responses().len())
}

fn decode_all(decoder: &mut FrameDecoder, out: &mut Vec<serde_json::Value>) {
    while let Some(v) = decoder.next().expect("valid stream") {
        out.push(v);
    }
}

#[test]
fn round_trip_blocking() {
    let mut wire = Vec::new();
    for r in requests() {
        write_frame(&mut wire, &r).unwrap();
    }
    for r in responses() {
        write_frame(&mut wire, &r).unwrap();
    }
    let mut reader = &wire[..];
    for want in requests() {
        assert_eq!(read_frame::<Request>(&mut reader).unwrap(), want);
    }
    for want in responses() {
        assert_eq!(read_frame::<Response>(&mut reader).unwrap(), want);
    }
    assert!(matches!(
        read_frame::<Request>(&mut reader),
        Err(FrameError::Closed)
    ));
}

#[test]
fn round_trip_incremental() {
    let (bytes, _) = stream();
    let mut decoder = FrameDecoder::new();
    decoder.push(&bytes);
    for want in requests() {
        assert_eq!(decoder.next::<Request>().unwrap(), Some(want));
    }
    for want in responses() {
        assert_eq!(decoder.next::<Response>().unwrap(), Some(want));
    }
    assert!(decoder.next::<Response>().unwrap().is_none());
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn wire_format_is_pinned() {
    // Other clients (socat, scripts) depend on these exact shapes.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            encode(&Request::Hello {
                version: 1,
                client: "c".into(),
            }),
            r#"{"type":"hello","version":1,"client":"c"}"#,
        ),
        (
            encode(&Request::Reload { app: None }),
            r#"{"type":"reload","app":null}"#,
        ),
        (
            encode(&Response::UnknownApp { app: "x".into() }),
            r#"{"type":"unknown_app","app":"x"}"#,
        ),
    ];
    for (frame, json) in cases {
        assert_eq!(&frame[..4], &(json.len() as u32).to_be_bytes());
        assert_eq!(std::str::from_utf8(&frame[4..]).unwrap(), json);
    }
}

#[test]
fn split_at_every_byte() {
    let (bytes, count) = stream();
    for split in 0..=bytes.len() {
        let mut decoder = FrameDecoder::new();
        let mut got = Vec::new();
        decoder.push(&bytes[..split]);
        decode_all(&mut decoder, &mut got);
        decoder.push(&bytes[split..]);
        decode_all(&mut decoder, &mut got);
        assert_eq!(got.len(), count, "split at byte {split}");
        assert_eq!(decoder.buffered(), 0);
    }
}

#[test]
fn one_byte_at_a_time() {
    let (bytes, count) = stream();
    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &bytes {
        decoder.push(std::slice::from_ref(b));
        decode_all(&mut decoder, &mut got);
    }
    assert_eq!(got.len(), count);
}

#[test]
fn blocking_reader_tolerates_short_reads() {
    /// Hands out one byte per read call.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }
    let (bytes, _) = stream();
    let mut reader = Trickle(&bytes);
    for want in requests() {
        assert_eq!(read_frame::<Request>(&mut reader).unwrap(), want);
    }
}

/// A reader that yields `header` then an endless stream of spaces, counting what it gave.
struct Endless {
    header: [u8; 4],
    given: usize,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for b in buf.iter_mut() {
            *b = self.header.get(self.given).copied().unwrap_or(b' ');
            self.given += 1;
        }
        Ok(buf.len())
    }
}

#[test]
fn oversized_header_refused_without_reading_or_allocating() {
    for len in [MAX_FRAME as u32 + 1, u32::MAX] {
        let mut reader = Endless {
            header: len.to_be_bytes(),
            given: 0,
        };
        match read_frame::<Request>(&mut reader) {
            Err(FrameError::TooBig(n)) => assert_eq!(n, len as usize),
            other => panic!("expected TooBig, got {other:?}"),
        }
        assert_eq!(reader.given, 4, "no payload byte may be read");

        let mut decoder = FrameDecoder::new();
        decoder.push(&len.to_be_bytes());
        assert_eq!(decoder.buf.capacity(), 0, "buffer released on refusal");
        decoder.push(&[b' '; 4096]);
        assert_eq!(decoder.buffered(), 0, "input after a refusal is dropped");
        for _ in 0..2 {
            assert!(matches!(
                decoder.next::<Request>(),
                Err(FrameError::TooBig(n)) if n == len as usize
            ));
        }
    }
}

#[test]
fn max_frame_is_inclusive() {
    // A Done message whose JSON payload is exactly MAX_FRAME bytes.
    let overhead = encode(&Response::Done {
        message: String::new(),
    })
    .len()
        - 4;
    let exact = Response::Done {
        message: "a".repeat(MAX_FRAME - overhead),
    };
    let frame = try_encode(&exact).expect("exactly MAX_FRAME is allowed");
    assert_eq!(frame.len(), 4 + MAX_FRAME);
    assert_eq!(read_frame::<Response>(&mut &frame[..]).unwrap(), exact);
    let mut decoder = FrameDecoder::new();
    decoder.push(&frame);
    assert_eq!(decoder.next::<Response>().unwrap(), Some(exact));

    let over = Response::Done {
        message: "a".repeat(MAX_FRAME - overhead + 1),
    };
    assert!(matches!(try_encode(&over), Err(FrameError::TooBig(n)) if n == MAX_FRAME + 1));
    let mut sink = Vec::new();
    assert!(matches!(
        write_frame(&mut sink, &over),
        Err(FrameError::TooBig(_))
    ));
    assert!(sink.is_empty(), "nothing written for a refused frame");
    // encode() does not check; the reader refuses it.
    assert!(matches!(
        read_frame::<Response>(&mut &encode(&over)[..]),
        Err(FrameError::TooBig(_))
    ));
}

fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn garbage_json_is_an_error_and_the_stream_stays_in_sync() {
    let garbage: [&[u8]; 7] = [
        b"",
        b"not json",
        b"{\"type\":\"launch_missiles\"}",
        b"{\"type\":\"stop\"}",
        b"{\"type\":\"stop\",\"app\":7}",
        b"[1,2,3]",
        b"\xff\xfe\x00",
    ];
    for payload in garbage {
        let mut bytes = raw_frame(payload);
        bytes.extend(encode(&Request::Stop { app: "ok".into() }));

        let mut reader = &bytes[..];
        assert!(
            matches!(read_frame::<Request>(&mut reader), Err(FrameError::Json(_))),
            "{payload:?}"
        );
        assert_eq!(
            read_frame::<Request>(&mut reader).unwrap(),
            Request::Stop { app: "ok".into() }
        );

        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes);
        assert!(matches!(
            decoder.next::<Request>(),
            Err(FrameError::Json(_))
        ));
        assert_eq!(
            decoder.next::<Request>().unwrap(),
            Some(Request::Stop { app: "ok".into() })
        );
    }
}

#[test]
fn eof_inside_a_frame_is_unexpected_eof() {
    let frame = encode(&Request::Status { apps: vec![] });
    for cut in 1..frame.len() {
        match read_frame::<Request>(&mut &frame[..cut]) {
            Err(FrameError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert!(matches!(
        read_frame::<Request>(&mut &[][..]),
        Err(FrameError::Closed)
    ));
}

#[test]
fn unknown_fields_ignored_missing_status_fields_defaulted() {
    let json =
        br#"{"type":"status","apps":[{"name":"a","state":"ready","future":1}],"extra":true}"#;
    let got: Response = read_frame(&mut &raw_frame(json)[..]).unwrap();
    assert_eq!(
        got,
        Response::Status {
            apps: vec![AppStatus {
                name: "a".into(),
                state: "ready".into(),
                ..AppStatus::default()
            }]
        }
    );
}

/// xorshift64*: deterministic, dependency-free randomness for the smoke test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_bytes_never_panic() {
    let (valid, _) = stream();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..2000 {
        // Half the rounds: pure noise (with small lengths so headers are often plausible);
        // half: the valid stream with a few bytes mutated.
        let mut input: Vec<u8> = if round % 2 == 0 {
            (0..rng.below(512))
                .map(|i| if i % 7 < 2 { 0 } else { rng.next() as u8 })
                .collect()
        } else {
            valid.clone()
        };
        if round % 2 == 1 {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(input.len());
                input[at] = rng.next() as u8;
            }
        }
        let mut decoder = FrameDecoder::new();
        let mut rest = &input[..];
        'feed: while !rest.is_empty() {
            let take = 1 + rng.below(rest.len().min(64));
            decoder.push(&rest[..take]);
            rest = &rest[take..];
            loop {
                match decoder.next::<Request>() {
                    Ok(Some(_)) | Err(FrameError::Json(_)) => {}
                    Ok(None) => break,
                    Err(FrameError::TooBig(_)) => break 'feed,
                    Err(e) => panic!("decoder produced {e:?}"),
                }
            }
            assert!(decoder.buffered() <= 4 + MAX_FRAME + 64);
        }
        // The blocking reader over the same bytes must not panic either.
        let mut reader = &input[..];
        while let Ok(_) | Err(FrameError::Json(_)) = read_frame::<Response>(&mut reader) {}
    }
}
