//! Disk use measured from the file system, independently of the store's own accounting: shared
//! by `benches/mount_cap.rs` and `tests/it/mount_cap.rs`, which hold the cap against it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes of disk the files under `dir` occupy (allocated blocks; 0 if it does not exist).
pub(crate) fn disk_use(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_use(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
