//! Replays the fuzzers' kept inputs (`fuzz/regressions/<target>/`: seeds and every input that
//! ever crashed a parser) through the Range and JSON parsers, without a fuzzer.
#![allow(clippy::expect_used, missing_docs)]

use std::path::PathBuf;

use tessera_protocol::http::{parse_closed_ranges, parse_range_header};
use tessera_protocol::{
    CommitLine, ReconstructionV1, ReconstructionV2, RepoId, check_reconstruction,
    normalize_repo_path,
};

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions").join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).expect("readable input")).collect()
}

#[test]
fn range_parsers_survive_every_kept_input() {
    let kept = inputs("range_header");
    assert!(!kept.is_empty());
    for text in kept.iter().filter_map(|d| std::str::from_utf8(d).ok()) {
        for spec in parse_range_header(text).unwrap_or_default() {
            let _ = spec.resolve(u64::MAX);
        }
        let _ = parse_closed_ranges(text);
    }
}

#[test]
fn json_parsers_survive_every_kept_input() {
    let kept = inputs("reconstruction_json");
    assert!(!kept.is_empty());
    for data in kept {
        if let Ok(v1) = serde_json::from_slice::<ReconstructionV1>(&data) {
            let _ = check_reconstruction(v1.offset_into_first_range, &v1.terms);
        }
        if let Ok(v2) = serde_json::from_slice::<ReconstructionV2>(&data) {
            let _ = check_reconstruction(v2.offset_into_first_range, &v2.terms);
        }
    }
    for data in inputs("commit_ndjson") {
        for line in data.split(|&b| b == b'\n') {
            let _ = serde_json::from_slice::<CommitLine>(line);
        }
        let text = String::from_utf8_lossy(&data);
        let _ = (normalize_repo_path(&text), RepoId::parse(&text));
    }
}
