//! A bounded, deterministic stand-in for the cargo-fuzz target (`fuzz/`): the same entry
//! point over a few thousand pseudo-random and mutated inputs, so `cargo test` catches a
//! panic on odd input without nightly or libFuzzer.

use std::time::{Duration, Instant};

/// xorshift64*: tiny, deterministic, good enough to pick bytes and mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

/// Interesting fragments: syntax uWSGI treats specially.
const TOKENS: &[&str] = &[
    "[uwsgi]\n",
    "[other]\n",
    "[",
    "]",
    "\n",
    "\r\n",
    "=",
    " = ",
    ";",
    "#",
    "%",
    "%%",
    "%(",
    ")",
    "%n",
    "%d",
    "%p",
    "%x",
    "%o",
    "%k",
    "%0",
    "%\n",
    "$(",
    "$(HOME)",
    "@(",
    "@(other.ini)",
    "@(app.ini)",
    "%(a)",
    "%(a + 1)",
    "%(a ++)",
    "%(x y)",
    " / 0",
    "ini = other.ini\n",
    "ini = app.ini\n",
    "ini = :other\n",
    "include = other.ini\n",
    "set = a=%(a)\n",
    "set-ph = p=1\n",
    "strict\n",
    "socket = ",
    "processes = ",
    "chmod-socket = ",
    "env = ",
    "buffer-size = 99999999999999999999\n",
    "master\n",
    "--socket",
    "--ini",
    "-wapp",
    "-C",
    "--chmod-socket=",
    "\0",
    "\u{e9}",
    "\u{1F600}",
    "\u{ff}",
    "-",
    "--",
    "a.ini",
    "if-env = X\n",
];

const SEEDS: &[&str] = &[
    "[uwsgi]\nsocket = :8000\nmodule = wsgi:app\nprocesses = 4\nmaster = true\n",
    "[uwsgi]\nbase = %d\nchdir = %(base)\nenv = A=$(HOME)\nsecret = @(other.ini)\n",
    "[uwsgi]\nini = :other\n[other]\nhttp = :9000\nset = x=%(x)%(x)\n",
    "[uwsgi]\na = x%(a)\nb = %(b b b b)\n",
];

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(40) {
        match rng.below(3) {
            0 => out.extend_from_slice(TOKENS[rng.below(TOKENS.len())].as_bytes()),
            1 => out.push(u8::try_from(rng.below(256)).unwrap_or(0)),
            _ => out.extend_from_slice(b"abc"),
        }
    }
    out
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => {
                out.remove(at);
            }
            1 if at < out.len() => out[at] = u8::try_from(rng.below(256)).unwrap_or(0),
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            _ => {
                let end = (at + rng.below(16)).min(out.len());
                let copy = out[at.min(end)..end].to_vec();
                out.splice(at..at, copy);
            }
        }
    }
    out
}

#[test]
fn fuzz_smoke_never_panics() {
    let start = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut runs = 0;
    for i in 0..3000 {
        let input = if i % 2 == 0 {
            random_input(&mut rng)
        } else {
            let seed = SEEDS[rng.below(SEEDS.len())].as_bytes();
            mutate(&mut rng, seed)
        };
        config::fuzz_one(&input);
        runs += 1;
    }
    assert_eq!(runs, 3000);
    // Generous bound; typically well under a second in debug builds.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

/// Inputs that once looked dangerous: self-referencing placeholders and includes.
#[test]
fn pathological_inputs_terminate() {
    for input in [
        &b"[uwsgi]\na = x%(a)\n"[..],
        b"[uwsgi]\na = %(a)%(a)\nb = y%(a)\n",
        b"[uwsgi]\nini = app.ini\n",
        b"[uwsgi]\ninclude = app.ini\n",
        b"[uwsgi]\nset = ini=app.ini\n",
        b"[uwsgi]\nx = @(app.ini)@(app.ini)\n",
        b"%",
        b"[",
        b"[uwsgi]\n%(",
    ] {
        config::fuzz_one(input);
    }
}
