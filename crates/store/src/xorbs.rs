//! Xorb files on disk: atomic whole-file writes, positional writes into sparse xorbs, and
//! positional reads through a small pool of open handles.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Result, StoreError};
use tessera_xet::hash::XorbHash;

/// Open read handles kept; past this the pool is simply cleared (xorbs are large, few are hot).
const MAX_OPEN: usize = 512;

pub(crate) struct XorbFiles {
    dir: PathBuf,
    tmp: PathBuf,
    open: Mutex<HashMap<XorbHash, Arc<File>>>,
}

impl XorbFiles {
    pub(crate) fn open(home: &Path) -> Result<Self> {
        let dir = home.join("xorbs");
        let tmp = home.join("tmp");
        for d in [&dir, &tmp] {
            fs::create_dir_all(d).map_err(|e| StoreError::io("create", d, e))?;
        }
        Ok(Self { dir, tmp, open: Mutex::new(HashMap::new()) })
    }

    pub(crate) fn path(&self, hash: &XorbHash) -> PathBuf {
        let name = hash.to_string();
        self.dir.join(&name[..2]).join(name)
    }

    /// A unique path under `tmp/` for staging.
    pub(crate) fn staging_path(&self, stem: &str) -> PathBuf {
        self.tmp.join(format!("{stem}.{}.{}", std::process::id(), rand::random::<u32>()))
    }

    /// Writes a whole xorb durably: temp file, fsync, rename, fsync of the directory.
    pub(crate) fn write_complete(&self, hash: &XorbHash, bytes: &[u8]) -> Result<()> {
        let final_path = self.path(hash);
        let tmp_path = self.staging_path(&hash.to_string());
        let mut f = File::create(&tmp_path).map_err(|e| StoreError::io("create", &tmp_path, e))?;
        f.write_all(bytes).map_err(|e| StoreError::io("write", &tmp_path, e))?;
        f.sync_all().map_err(|e| StoreError::io("fsync", &tmp_path, e))?;
        drop(f);
        self.rename_into_place(&tmp_path, &final_path)?;
        self.open.lock().remove(hash);
        Ok(())
    }

    fn rename_into_place(&self, from: &Path, to: &Path) -> Result<()> {
        let parent = to.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(|e| StoreError::io("create", parent, e))?;
        fs::rename(from, to).map_err(|e| StoreError::io("rename", to, e))?;
        sync_dir(parent)
    }

    /// Writes `bytes` at `offset` of a (possibly sparse, possibly new) xorb file, durably.
    pub(crate) fn write_at(&self, hash: &XorbHash, offset: u64, bytes: &[u8]) -> Result<()> {
        self.write_unsynced(hash, offset, bytes)?;
        self.sync(hash)
    }

    /// Like `write_at` without the fsync: callers that stream many pieces sync once at the end,
    /// before anything in the index points at the bytes.
    pub(crate) fn write_unsynced(&self, hash: &XorbHash, offset: u64, bytes: &[u8]) -> Result<()> {
        let path = self.path(hash);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| StoreError::io("create", parent, e))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        f.write_all_at(bytes, offset).map_err(|e| StoreError::io("write", &path, e))
    }

    /// Flushes a xorb file written with [`XorbFiles::write_unsynced`].
    pub(crate) fn sync(&self, hash: &XorbHash) -> Result<()> {
        let path = self.path(hash);
        File::open(&path).and_then(|f| f.sync_all()).map_err(|e| StoreError::io("fsync", &path, e))
    }

    fn handle(&self, hash: &XorbHash) -> Result<Arc<File>> {
        if let Some(f) = self.open.lock().get(hash) {
            return Ok(f.clone());
        }
        let path = self.path(hash);
        let f = Arc::new(File::open(&path).map_err(|e| StoreError::io("open", &path, e))?);
        let mut open = self.open.lock();
        if open.len() >= MAX_OPEN {
            open.clear();
        }
        open.insert(*hash, f.clone());
        Ok(f)
    }

    /// Reads serialized bytes `[start, end)` of a xorb.
    pub(crate) fn read(&self, hash: &XorbHash, start: u64, end: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(hash, start, end, &mut buf)?;
        Ok(buf)
    }

    /// [`XorbFiles::read`] into a buffer the caller reuses: large buffers come fresh from the
    /// OS (`src/main.rs`), so a new one per read costs a page fault per page it receives.
    pub(crate) fn read_into(&self, hash: &XorbHash, start: u64, end: u64, buf: &mut Vec<u8>) -> Result<()> {
        let len = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        buf.resize(len, 0);
        let f = self.handle(hash)?;
        f.read_exact_at(buf, start).map_err(|e| StoreError::io("read", &self.path(hash), e))
    }

    /// Deletes a xorb file; returns the bytes it occupied on disk.
    pub(crate) fn remove(&self, hash: &XorbHash) -> Result<u64> {
        self.open.lock().remove(hash);
        let path = self.path(hash);
        let size = disk_usage(&path);
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::io("remove", &path, e)),
        }
    }

    /// Every xorb file present, by name (for gc of files no index entry points at).
    pub(crate) fn list(&self) -> Result<Vec<XorbHash>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| StoreError::io("list", &self.dir, e))?;
        for sub in rd.flatten() {
            let Ok(files) = fs::read_dir(sub.path()) else { continue };
            for f in files.flatten() {
                if let Some(h) = f.file_name().to_str().and_then(|n| XorbHash::from_hex(n).ok()) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }

    /// Bytes a xorb file occupies on disk (sparse files count only what is allocated).
    pub(crate) fn disk_usage(&self, hash: &XorbHash) -> u64 {
        disk_usage(&self.path(hash))
    }

    /// Removes staging leftovers of crashed writers.
    pub(crate) fn clean_tmp(&self) -> Result<u64> {
        let mut n = 0;
        let rd = fs::read_dir(&self.tmp).map_err(|e| StoreError::io("list", &self.tmp, e))?;
        for f in rd.flatten() {
            if staged_by_this_process(&f.file_name().to_string_lossy()) {
                continue;
            }
            if fs::remove_file(f.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A path under `tmp/` for one staged file, named by its purpose and unique
/// (`<purpose>.<pid>.<n>`). The file, if one was made there, is removed when this drops,
/// whichever way its user leaves: done, failed, panicked or cancelled at an `.await`. Only a
/// killed process leaves it, for the next open of the store (or a `gc`) to remove.
#[derive(Debug)]
pub struct StagingFile {
    path: PathBuf,
}

impl StagingFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where to write the staged bytes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        // Never created, or already gone: nothing to do.
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether a staging file (`<stem>.<pid>.<n>`, or a flat copy's `.<hash>.<pid>.tmp`) belongs to
/// this process: then it may be in the middle of being written, since `gc` runs in the process
/// holding the store, beside the mount or hub server still writing (`cli::control`). Only a
/// dead writer's staging is garbage.
pub(crate) fn staged_by_this_process(name: &str) -> bool {
    name.contains(&format!(".{}.", std::process::id()))
}

fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use crate::Store;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// A staging file is named by its purpose and this process (so `gc` spares it while it is
    /// written), and it is gone once its guard drops, made or not.
    #[test]
    fn a_staging_file_is_named_by_purpose_and_goes_with_its_guard() -> TestResult {
        let home = tempfile::tempdir()?;
        let store = Store::open(home.path())?;
        let (a, b) = (store.staging_file("download"), store.staging_file("download"));
        assert_ne!(a.path(), b.path());
        let name = a.path().file_name().ok_or("no name")?.to_string_lossy().into_owned();
        assert!(name.starts_with("download.") && super::staged_by_this_process(&name), "{name}");
        std::fs::write(a.path(), b"partial")?;
        let path = a.path().to_path_buf();
        drop((a, b));
        assert!(!path.exists(), "{} outlived its guard", path.display());
        assert_eq!(std::fs::read_dir(home.path().join("tmp"))?.count(), 0);
        Ok(())
    }
}
