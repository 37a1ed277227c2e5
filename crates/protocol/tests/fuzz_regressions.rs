//! Replays the fuzzers' kept inputs through the same property checks the parsers' fuzz targets
//! run ([`tessera_protocol::fuzz`]), without a fuzzer.
#![allow(clippy::expect_used, missing_docs)]

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[test]
fn parsers_keep_their_fuzzed_properties_on_every_kept_input() {
    replay::replay(&[
        ("range_header", tessera_protocol::fuzz::range_header),
        ("reconstruction_json", tessera_protocol::fuzz::reconstruction_json),
        ("commit_ndjson", tessera_protocol::fuzz::commit_ndjson),
    ]);
}
