//! Fuzz target: see `wire::fuzzing::http_head` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wire::fuzzing::http_head(data));
