//! Replays the fuzz targets' kept inputs (`fuzz/regressions/<target>/`: seeds and every input
//! that ever crashed a target) through their property checks; shared by the pure crates'
//! `tests/fuzz_regressions.rs`.

use std::path::PathBuf;

/// Runs `check` on every kept input of each target; fails if a target has none, so the replay
/// cannot pass without checking anything.
pub(crate) fn replay(checks: &[(&str, fn(&[u8]))]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    for (target, check) in checks {
        let dir = root.join(target);
        let mut paths: Vec<_> =
            std::fs::read_dir(&dir).expect("kept inputs").flatten().map(|e| e.path()).collect();
        paths.sort();
        assert!(!paths.is_empty(), "no kept inputs under {}", dir.display());
        for path in paths {
            check(&std::fs::read(&path).expect("readable input"));
        }
    }
}
