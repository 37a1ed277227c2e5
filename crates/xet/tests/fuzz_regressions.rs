//! Replays the fuzzers' kept inputs through the same property checks the decoders' fuzz targets
//! run ([`tessera_xet::fuzz`]), so a fixed crash stays fixed without a fuzzer.
#![allow(clippy::expect_used, missing_docs)]

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[test]
fn decoders_keep_their_fuzzed_properties_on_every_kept_input() {
    replay::replay(&[
        ("chunk_decode", tessera_xet::fuzz::chunk_decode),
        ("xorb_decode", tessera_xet::fuzz::xorb_decode),
        ("shard_decode", tessera_xet::fuzz::shard_decode),
    ]);
}
