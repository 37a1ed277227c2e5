//! Replays the fuzzers' kept inputs (`fuzz/regressions/<target>/`: seeds and every input that
//! ever crashed a decoder) through the decoders, so a fixed crash stays fixed without a fuzzer.
#![allow(clippy::expect_used, missing_docs)]

use std::path::PathBuf;

use tessera_xet::format::{Shard, XorbFooter, decode_chunk_into, parse_xorb};

/// The kept inputs of one fuzz target.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("readable input"))).collect()
}

#[test]
fn decoders_survive_every_kept_input() {
    let mut replayed = 0;
    for (_, data) in inputs("chunk_decode") {
        let _ = decode_chunk_into(&data, &mut Vec::new());
        replayed += 1;
    }
    for (_, data) in inputs("xorb_decode") {
        let _ = XorbFooter::split_stored(&data);
        let _ = parse_xorb(&data);
        replayed += 1;
    }
    for (_, data) in inputs("shard_decode") {
        if let Ok(shard) = Shard::decode(&data) {
            let _ = shard.encode_upload();
        }
        replayed += 1;
    }
    assert!(replayed > 0, "no kept inputs under fuzz/regressions");
}
