//! Any bytes as a serialized chunk: the properties of `tessera_xet::fuzz::chunk_decode`, which the replay of
//! `fuzz/regressions/chunk_decode/` checks too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_xet::fuzz::chunk_decode(data));
