//! The store's side of flat copies: plain-byte copies of whole files under `<home>/flat/<xet
//! hash>`, which the mount writes for files read through it and hands to the kernel by FUSE
//! passthrough. They are a cache of indexed files: `du` counts them, `fsck` checks them against
//! the file's SHA-256, and `gc` deletes those whose file is no longer indexed.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Result, Store, StoreError};
use tessera_xet::hash::{FileHash, Sha256, Sha256Hasher};

/// Directory of flat copies under the store's home.
const FLAT_DIR: &str = "flat";

/// One flat copy on disk.
pub(crate) struct FlatCopy {
    pub(crate) file: FileHash,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

impl Store {
    /// Where flat copies live: `<home>/flat`.
    pub fn flat_dir(&self) -> PathBuf {
        self.inner.home.join(FLAT_DIR)
    }

    /// Every finished flat copy (partial `.tmp` files of a killed writer are not listed).
    pub(crate) fn flat_copies(&self) -> Result<Vec<FlatCopy>> {
        let dir = self.flat_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list", &dir, e)),
        };
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_str().and_then(|n| FileHash::from_hex(n).ok())?;
                Some(FlatCopy { file, path: e.path(), len: e.metadata().ok()?.len() })
            })
            .collect())
    }

    /// Deletes leftovers of interrupted writes (`.<hash>.<pid>.tmp`) of other processes (this
    /// one's may be in progress); returns bytes freed.
    pub(crate) fn remove_flat_leftovers(&self) -> Result<u64> {
        let dir = self.flat_dir();
        let mut freed = 0;
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") && !super::xorbs::staged_by_this_process(&name) {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(e.path())
                    .map_err(|err| StoreError::io("remove", &e.path(), err))?;
            }
        }
        Ok(freed)
    }
}

/// SHA-256 of a file on disk, read in large pieces.
pub(crate) fn sha256_of_path(path: &Path) -> std::io::Result<Sha256> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256Hasher::default();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(hasher.finish()),
            n => hasher.update(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    struct Fixture {
        _home: tempfile::TempDir,
        store: Store,
        copy: PathBuf,
        data: Vec<u8>,
    }

    fn store_with_flat_copy() -> std::result::Result<Fixture, Box<dyn std::error::Error>> {
        let home = tempfile::tempdir()?;
        let store = Store::open(home.path())?;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let report = store.ingest_bytes(&data)?;
        std::fs::create_dir_all(store.flat_dir())?;
        let copy = store.flat_dir().join(report.file.to_string());
        std::fs::write(&copy, &data)?;
        std::fs::write(store.flat_dir().join(format!(".{}.1.tmp", report.file)), b"partial")?;
        Ok(Fixture { _home: home, store, copy, data })
    }

    #[test]
    fn du_counts_and_fsck_verifies_flat_copies() -> TestResult {
        let f = store_with_flat_copy()?;
        let du = f.store.du()?;
        assert_eq!((du.flat_files, du.flat_bytes), (1, f.data.len() as u64));
        let fsck = f.store.fsck()?;
        assert_eq!((fsck.flat_verified, fsck.problems.len()), (1, 0));
        let mut damaged = f.data.clone();
        damaged[1234] ^= 1;
        std::fs::write(&f.copy, &damaged)?;
        let fsck = f.store.fsck()?;
        assert_eq!(fsck.problems.len(), 1, "{:?}", fsck.problems);
        assert!(fsck.problems[0].object.contains("flat copy"), "{:?}", fsck.problems);
        Ok(())
    }

    #[test]
    fn gc_drops_flat_copies_of_unindexed_files_and_partial_ones() -> TestResult {
        let f = store_with_flat_copy()?;
        // Nothing pins the file, so gc drops it and then its flat copy.
        let gc = f.store.gc()?;
        assert_eq!((gc.files_removed, gc.flat_removed), (1, 1));
        assert!(gc.bytes_freed >= f.data.len() as u64);
        assert!(!f.copy.exists());
        assert_eq!(std::fs::read_dir(f.store.flat_dir())?.count(), 0, "tmp left");
        Ok(())
    }

    /// `gc` runs in the process holding the store, beside its mount: what this process is
    /// staging right now survives it; a dead writer's leftovers do not.
    #[test]
    fn gc_spares_what_this_process_is_staging() -> TestResult {
        let f = store_with_flat_copy()?;
        let pid = std::process::id();
        let tmp = f.store.home().join("tmp");
        let ours =
            [tmp.join(format!("xorb.{pid}.7")), f.store.flat_dir().join(format!(".abc.{pid}.tmp"))];
        let dead = tmp.join("xorb.1.7");
        for p in ours.iter().chain([&dead]) {
            std::fs::write(p, b"staged")?;
        }
        f.store.gc()?;
        assert!(ours.iter().all(|p| p.exists()), "gc removed a file this process is writing");
        assert!(!dead.exists(), "gc kept a dead writer's staging");
        Ok(())
    }
}
