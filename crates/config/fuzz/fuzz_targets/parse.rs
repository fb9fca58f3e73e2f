//! Feeds arbitrary bytes to the config reader as an ini file and as a command line
//! (`config::fuzz_one`). Any panic is a bug: config input must never crash the emperor.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    config::fuzz_one(data);
});
