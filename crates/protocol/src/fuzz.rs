//! The properties the parsers' fuzz targets check, one function per target (`fuzz/`). The fuzz
//! targets and the replay of their kept inputs (`tests/fuzz_regressions.rs`) both call these, so
//! a kept input is checked against the same assertions it once broke. Each function panics when
//! its property fails: that is how a fuzzer learns of it.

use crate::http::{parse_closed_ranges, parse_range_header};
use crate::{
    CommitLine, MAX_STORED_XORB_LEN, ReconstructionTerm, ReconstructionV1, ReconstructionV2,
    RepoId, check_reconstruction, normalize_repo_path, validate_revision,
};
use tessera_xet::format::{MAX_XORB_BYTES, MAX_XORB_CHUNKS};

/// Range headers: every range resolved against a size lies inside it; a list of closed ranges
/// is non-empty, bounded in count, and free of overlaps.
pub fn range_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for spec in parse_range_header(text).unwrap_or_default() {
        for size in [0, 1, 1000, u64::MAX] {
            if let Some((a, b)) = spec.resolve(size) {
                assert!(a < b && b <= size);
            }
        }
    }
    if let Ok(mut ranges) = parse_closed_ranges(text) {
        assert!(!ranges.is_empty() && ranges.len() <= 1024);
        ranges.sort_unstable();
        assert!(ranges.iter().all(|(a, b)| a <= b));
        assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0));
    }
}

/// Reconstruction answers (v1 and v2): whatever [`check_reconstruction`] accepts stays inside
/// the xorb limits, so nothing it sizes can be oversized.
pub fn reconstruction_json(data: &[u8]) {
    if let Ok(v1) = serde_json::from_slice::<ReconstructionV1>(data) {
        checked_terms_are_bounded(v1.offset_into_first_range, &v1.terms);
        for info in v1.fetch_info.values().flatten() {
            if info.url_range.is_within_xorb() {
                assert!(info.url_range.end < MAX_STORED_XORB_LEN);
            }
        }
    }
    if let Ok(v2) = serde_json::from_slice::<ReconstructionV2>(data) {
        checked_terms_are_bounded(v2.offset_into_first_range, &v2.terms);
    }
}

fn checked_terms_are_bounded(offset: u64, terms: &[ReconstructionTerm]) {
    if check_reconstruction(offset, terms).is_err() {
        return;
    }
    for t in terms {
        assert!(t.range.start < t.range.end && t.range.end as usize <= MAX_XORB_CHUNKS);
        assert!(t.unpacked_length as usize <= MAX_XORB_BYTES);
    }
}

/// Commit bodies (NDJSON lines) and ids: parsing never panics, every path that
/// [`normalize_repo_path`] accepts stays inside the repository, and a repo id round-trips.
pub fn commit_ndjson(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let _ = serde_json::from_slice::<CommitLine>(line);
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(path) = normalize_repo_path(text) {
        assert!(!path.starts_with('/') && !path.contains('\\'));
        assert!(path.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
    }
    if let Ok(id) = RepoId::parse(text) {
        assert_eq!(RepoId::parse(&id.to_string()).ok(), Some(id));
    }
    let _ = validate_revision(text);
}
