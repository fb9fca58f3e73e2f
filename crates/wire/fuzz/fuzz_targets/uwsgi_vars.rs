//! Fuzz target: see `wire::fuzzing::uwsgi_vars` for the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wire::fuzzing::uwsgi_vars(data));
