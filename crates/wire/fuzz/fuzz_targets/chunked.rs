//! Fuzz target: see `wire::fuzzing::chunked` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wire::fuzzing::chunked(data));
