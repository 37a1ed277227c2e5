//! Flat copies of fully-present files, for FUSE passthrough (on by default as root).
//!
//! The store keeps files as compressed chunks in xorbs, which the kernel cannot read directly.
//! A file read to its end whose chunks are all present is written out once, as plain bytes,
//! to `<dir>/<xet hash>`; later opens hand that file to the kernel (passthrough), so reads run
//! at local-disk speed with no request reaching this process. A copy is checked against the
//! file's SHA-256 before it is renamed into place. It costs the file's size again on disk.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use tessera_xet::hash::{FileHash, Sha256Hasher};
use tessera_store::{FileRecord, Store, TreeEntry};

/// Bytes read from the store per write.
const PIECE: u64 = 16 << 20;

/// The directory of flat copies.
pub(crate) struct FlatCache {
    dir: PathBuf,
    /// Files being written now.
    busy: Mutex<HashSet<FileHash>>,
}

impl FlatCache {
    /// Opens the directory, removing partial copies a killed process left (one mount per
    /// store, so none is being written now).
    pub(crate) fn new(dir: PathBuf) -> Arc<Self> {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Arc::new(Self { dir, busy: Mutex::new(HashSet::new()) })
    }

    fn path(&self, file: &FileHash) -> PathBuf {
        self.dir.join(file.to_string())
    }

    /// The flat copy of a file, opened, when one exists with the right size.
    pub(crate) fn open(&self, entry: &TreeEntry) -> Option<File> {
        let f = File::open(self.path(&entry.file)).ok()?;
        (f.metadata().ok()?.len() == entry.size).then_some(f)
    }

    /// Writes the flat copy on a background thread unless it exists or is being written.
    pub(crate) fn materialize(
        self: &Arc<Self>,
        store: &Store,
        record: &Arc<FileRecord>,
        entry: &TreeEntry,
    ) {
        if self.path(&entry.file).exists() || !self.busy.lock().insert(entry.file) {
            return;
        }
        let file = entry.file;
        let (me, store, record, entry) =
            (self.clone(), store.clone(), record.clone(), entry.clone());
        let spawned = std::thread::Builder::new().name("tessera-flatten".into()).spawn(move || {
            if let Err(e) = me.write(&store, &record, &entry) {
                tracing::warn!(path = %entry.path, error = %e, "cannot write the flat copy for passthrough");
            }
            me.busy.lock().remove(&entry.file);
        });
        if spawned.is_err() {
            self.busy.lock().remove(&file);
        }
    }

    fn write(&self, store: &Store, record: &FileRecord, entry: &TreeEntry) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{}.{}.tmp", entry.file, std::process::id()));
        // The copy counts against the store's cap from the start, and eviction must not take the
        // chunks it is made of while it is being made.
        let room = store.reserve(record.size).map_err(std::io::Error::other)?;
        let hold = store.hold(&[entry.file]);
        let result = write_verified(store, record, entry, &tmp)
            .and_then(|()| std::fs::rename(&tmp, self.path(&entry.file)));
        drop((hold, room));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn write_verified(
    store: &Store,
    record: &FileRecord,
    entry: &TreeEntry,
    tmp: &Path,
) -> std::io::Result<()> {
    let mut out = File::create(tmp)?;
    let mut sha = Sha256Hasher::default();
    let mut pos = 0;
    while pos < record.size {
        let bytes = store.read_record_range(record, pos, PIECE).map_err(std::io::Error::other)?;
        if bytes.is_empty() {
            return Err(std::io::Error::other("store returned no bytes before the end"));
        }
        sha.update(&bytes);
        out.write_all(&bytes)?;
        pos += bytes.len() as u64;
    }
    if sha.finish() != entry.sha256 {
        return Err(std::io::Error::other("SHA-256 of the rebuilt file does not match the tree"));
    }
    out.sync_all()
}
