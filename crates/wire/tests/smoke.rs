//! A deterministic stand-in for the fuzz targets in `fuzz/`: a few thousand inputs mutated from
//! gunicorn's corpus and from uwsgi packets, fed to the same entry points. Nothing may panic.

mod support;

use wire::fuzzing;

/// xorshift64*: tiny, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that matter to the grammars: line ends, separators, signs, hex, NUL, obs-text.
const INTERESTING: &[u8] = b"\r\n\r\n :;,\t\0\x7f\xff0aF-+_\"#?%/";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if at < v.len() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 if at < v.len() => v[at] = INTERESTING[rng.below(INTERESTING.len())],
            4 => {
                // Duplicate a slice (repeats headers, chunks, CRLFs).
                let len = rng.below(32).min(v.len() - at.min(v.len()));
                let piece = v[at..at + len].to_vec();
                v.splice(at..at, piece);
            }
            5 => v.truncate(at),
            _ => {
                if v.len() >= 3 {
                    let a = rng.below(v.len() - 1);
                    let b = rng.below(v.len() - 1);
                    v.swap(a, b);
                }
            }
        }
    }
    v
}

fn seeds() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = support::load_corpus().into_iter().map(|c| c.raw).collect();
    s.push(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nA: b\r\n\r\n".to_vec());
    let pkt = wire::uwsgi::encode_packet(
        0,
        &[
            (b"REQUEST_METHOD", b"GET"),
            (b"PATH_INFO", b"/x"),
            (b"CONTENT_LENGTH", b"12"),
            (b"HTTP_HOST", b""),
        ],
        0,
    );
    s.push(pkt[4..].to_vec());
    s.push(pkt);
    s
}

#[test]
fn mutated_inputs_never_panic() {
    let seeds = seeds();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = std::time::Instant::now();
    let mut runs = 0;
    for round in 0..100 {
        for seed in &seeds {
            // Big seeds (8 KiB heads) are slow in debug builds; mutate them less often.
            if seed.len() > 4096 && round % 10 != 0 {
                continue;
            }
            let input = mutate(&mut rng, seed);
            fuzzing::http_head(&input);
            fuzzing::chunked(&input);
            fuzzing::uwsgi_vars(&input);
            // Also the body part alone, where chunked data starts.
            if let Some(at) = input.windows(4).position(|w| w == b"\r\n\r\n") {
                fuzzing::chunked(&input[at + 4..]);
            }
            runs += 1;
        }
    }
    println!("{runs} mutated inputs in {:?}", start.elapsed());
    assert!(runs > 2000);
}
