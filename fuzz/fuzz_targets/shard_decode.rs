//! Any bytes as a shard: the properties of `tessera_xet::fuzz::shard_decode`, which the replay of
//! `fuzz/regressions/shard_decode/` checks too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_xet::fuzz::shard_decode(data));
