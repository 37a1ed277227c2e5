//! Any bytes as a Range header: the properties of `tessera_protocol::fuzz::range_header`, which the replay of
//! `fuzz/regressions/range_header/` checks too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_protocol::fuzz::range_header(data));
