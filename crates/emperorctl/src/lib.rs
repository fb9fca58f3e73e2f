//! The part of `emperorctl` other crates use: its command-line definition ([`cli`]),
//! from which `crates/docgen` generates the man page and the shell completions. The
//! client itself is the binary (`src/main.rs`).

pub mod cli;
