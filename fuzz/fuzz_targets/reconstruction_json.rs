//! Any bytes as a reconstruction answer: the properties of `tessera_protocol::fuzz::reconstruction_json`, which the replay of
//! `fuzz/regressions/reconstruction_json/` checks too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_protocol::fuzz::reconstruction_json(data));
