//! Any bytes as a xorb: the properties of `tessera_xet::fuzz::xorb_decode`, which the replay of
//! `fuzz/regressions/xorb_decode/` checks too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_xet::fuzz::xorb_decode(data));
