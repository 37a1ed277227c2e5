//! A bounded store: a size cap enforced by evicting the least recently read data no pin
//! protects (`docs/deploy.md`, "A bounded cache").
//!
//! What counts against the cap is what the store holds on disk: xorb files and flat copies.
//! Flat copies go first (each is a second copy of data the xorbs hold), then xorbs, least
//! recently read first. Never evicted: xorbs a pinned file uses (a revision pinned by `pull` or
//! `tessera pin`, a file pinned by `add`, a hub commit's tree) and xorbs of a file held open
//! ([`Store::hold`]: the mount's open files, a pull's files in flight). File records stay: an
//! evicted range of a lazily mounted file reads as [`super::StoreError::Missing`] and is
//! fetched again.
//!
//! Order of a round, for crash consistency: pending chunks are flushed, the index entries of
//! the victims are deleted in one durable batch, then their files. A crash in between leaves
//! only orphan files, which `gc` removes. Writers of chunks hold [`Evictor::writing`] shared
//! while they write and index, so a round never deletes a file under a write in progress.
//!
//! Last reads are tracked in memory (one clock per xorb, set on every chunk read); a xorb not
//! read since the process started falls back to its file's modification time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::db::{KvBatch, Table};
use super::records::XorbMeta;
use super::{Result, Store};
use tessera_xet::hash::{FileHash, XorbHash};

/// Meta key of the store's cap (bytes, 8 bytes LE); absent: unbounded.
const CAP_KEY: &[u8] = b"cache-cap";

/// A round frees this share of the cap below it (at most [`MAX_HEADROOM`]), so rounds run now
/// and then rather than after every fetched range.
const HEADROOM_DIVISOR: u64 = 10;
/// Most a round frees below the cap.
const MAX_HEADROOM: u64 = 256 << 20;

/// Eviction state of an open store.
#[derive(Default)]
pub(super) struct Evictor {
    /// The cap in bytes; 0: unbounded.
    cap: AtomicU64,
    /// Bytes on disk as last counted, plus what was written since (an estimate between rounds).
    usage: AtomicU64,
    /// Whether `usage` was counted since the store opened.
    counted: std::sync::atomic::AtomicBool,
    /// Bytes evicted since the store opened (a metric).
    evicted: AtomicU64,
    /// Last read of each xorb, in nanoseconds since the epoch.
    last_read: Mutex<HashMap<XorbHash, u64>>,
    /// Bytes being written outside the store's view (a flat copy in progress), counted as used.
    reserved: AtomicU64,
    /// Files held open, with how many holds each.
    holds: Mutex<HashMap<FileHash, usize>>,
    /// Writers of chunks share it; a round takes it alone.
    writing: RwLock<()>,
    /// One round at a time.
    round: Mutex<()>,
}

/// How the store's disk use divides (what `du` prints and `/metrics` exports).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheUsage {
    /// The cap, if the store has one.
    pub cap: Option<u64>,
    /// Bytes on disk: xorb files and flat copies.
    pub used: u64,
    /// Bytes of xorbs a pin protects.
    pub pinned: u64,
    /// Bytes no pin protects: flat copies and unpinned xorbs (a round skips those of files
    /// held open at the time).
    pub evictable: u64,
}

/// What one round evicted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EvictReport {
    /// Xorb files deleted.
    pub xorbs: u64,
    /// Flat copies deleted.
    pub flat_copies: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// Keeps a file's data in the store while it lives ([`Store::hold`]).
pub struct FileHold {
    store: Store,
    files: Vec<FileHash>,
}

impl Drop for FileHold {
    fn drop(&mut self) {
        let mut holds = self.store.inner.evict.holds.lock();
        for f in &self.files {
            if let Some(n) = holds.get_mut(f) {
                *n -= 1;
                if *n == 0 {
                    holds.remove(f);
                }
            }
        }
    }
}

/// Room taken for a write the store does not see yet ([`Store::reserve`]).
pub struct Reservation {
    store: Store,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.store.inner.evict.reserved.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// What a round must not evict: xorbs pinned files use, and files held open with their xorbs.
struct Protected {
    pinned_xorbs: HashSet<XorbHash>,
    held_files: HashSet<FileHash>,
    held_xorbs: HashSet<XorbHash>,
}

/// One evictable object on disk.
struct Candidate {
    last_read: u64,
    bytes: u64,
    what: Victim,
}

enum Victim {
    Flat(std::path::PathBuf),
    Xorb(XorbHash),
}

fn mtime_nanos(path: &std::path::Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Store {
    /// Loads the cap recorded in the store (at open).
    pub(super) fn load_cap(&self) -> Result<()> {
        let cap = self.inner.db.get(Table::Meta, CAP_KEY)?;
        let cap =
            cap.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map_or(0, u64::from_le_bytes);
        self.inner.evict.cap.store(cap, Ordering::Relaxed);
        Ok(())
    }

    /// Sets (or with `None` removes) the store's cap, durably, and evicts down to it now.
    pub fn set_cache_cap(&self, cap: Option<u64>) -> Result<EvictReport> {
        let mut batch = KvBatch::default();
        match cap {
            Some(n) => batch.put(Table::Meta, CAP_KEY, n.to_le_bytes().to_vec()),
            None => batch.delete(Table::Meta, CAP_KEY),
        }
        self.inner.db.write(batch)?;
        self.inner.evict.cap.store(cap.unwrap_or(0), Ordering::Relaxed);
        match cap {
            Some(_) => self.evict_round(),
            None => Ok(EvictReport::default()),
        }
    }

    /// The store's cap, if it has one.
    pub fn cache_cap(&self) -> Option<u64> {
        Some(self.inner.evict.cap.load(Ordering::Relaxed)).filter(|&c| c > 0)
    }

    /// Bytes evicted since this process opened the store.
    pub fn evicted_bytes(&self) -> u64 {
        self.inner.evict.evicted.load(Ordering::Relaxed)
    }

    /// Keeps the data of `files` from eviction until the hold drops (an open file, a file
    /// being fetched).
    pub fn hold(&self, files: &[FileHash]) -> FileHold {
        let mut holds = self.inner.evict.holds.lock();
        for f in files {
            *holds.entry(*f).or_default() += 1;
        }
        FileHold { store: self.clone(), files: files.to_vec() }
    }

    /// Notes a read of a xorb (the eviction order), when the store has a cap.
    pub(super) fn note_read(&self, xorb: &XorbHash) {
        if self.inner.evict.cap.load(Ordering::Relaxed) > 0 {
            self.inner.evict.last_read.lock().insert(*xorb, crate::clock::unix_nanos());
        }
    }

    /// Makes room for `bytes` about to be written where a round does not look (a flat copy
    /// being made): they count as used until the reservation drops, by which time the finished
    /// write is on disk where a round counts it.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation> {
        self.inner.evict.reserved.fetch_add(bytes, Ordering::Relaxed);
        let room = Reservation { store: self.clone(), bytes };
        self.note_written(bytes)?;
        Ok(room)
    }

    /// Taken shared by writers of chunks for the time they write and index them.
    pub(super) fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.inner.evict.writing.read()
    }

    /// Counts `bytes` newly written to disk (a xorb range, a flat copy) and, when the store is
    /// over its cap, runs a round. Called with no [`Store::writing`] guard held.
    pub fn note_written(&self, bytes: u64) -> Result<()> {
        let ev = &self.inner.evict;
        let cap = ev.cap.load(Ordering::Relaxed);
        if cap == 0 {
            return Ok(());
        }
        let usage = ev.usage.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if usage > cap || !ev.counted.load(Ordering::Relaxed) {
            self.evict_round()?;
        }
        Ok(())
    }

    /// Evicts down to the cap less some headroom, if over it. Waits for a round running now
    /// (its writers must not outrun the cap) rather than starting a second one.
    pub fn evict_round(&self) -> Result<EvictReport> {
        let ev = &self.inner.evict;
        let _round = ev.round.lock();
        let cap = ev.cap.load(Ordering::Relaxed);
        if cap == 0
            || (ev.counted.load(Ordering::Relaxed) && ev.usage.load(Ordering::Relaxed) <= cap)
        {
            return Ok(EvictReport::default());
        }
        let _writers = ev.writing.write();
        self.inner.flush_pending()?;
        let mut candidates = Vec::new();
        let (used, _) = self.survey(&mut candidates)?;
        ev.counted.store(true, Ordering::Relaxed);
        let target = cap - (cap / HEADROOM_DIVISOR).min(MAX_HEADROOM);
        let report = if used > cap {
            self.evict(candidates, used - target)?
        } else {
            EvictReport::default()
        };
        ev.usage.store(used - report.bytes, Ordering::Relaxed);
        ev.evicted.fetch_add(report.bytes, Ordering::Relaxed);
        if report.bytes > 0 {
            tracing::info!(
                freed = report.bytes,
                xorbs = report.xorbs,
                flat = report.flat_copies,
                cap,
                "evicted least recently read data"
            );
        }
        Ok(report)
    }

    /// The cap, disk use, pinned and evictable bytes.
    pub fn cache_usage(&self) -> Result<CacheUsage> {
        let (used, pinned) = self.survey(&mut Vec::new())?;
        Ok(CacheUsage { cap: self.cache_cap(), used, pinned, evictable: used - pinned })
    }

    /// Counts what is on disk; pushes what may be evicted now to `out` (flat copies first,
    /// then xorbs, each least recently read first). Returns the bytes on disk and the bytes of
    /// pinned xorbs.
    fn survey(&self, out: &mut Vec<Candidate>) -> Result<(u64, u64)> {
        let protected = self.protected()?;
        let (mut used, mut pinned) = (self.inner.evict.reserved.load(Ordering::Relaxed), 0);
        let mut flat = Vec::new();
        for copy in self.flat_copies()? {
            used += copy.len;
            if !protected.held_files.contains(&copy.file) {
                let last_read = mtime_nanos(&copy.path);
                flat.push(Candidate { last_read, bytes: copy.len, what: Victim::Flat(copy.path) });
            }
        }
        let last_read = self.inner.evict.last_read.lock().clone();
        let mut xorbs = Vec::new();
        self.inner.db.for_each(Table::Xorb, |k, _| {
            let hash = super::maint::xorb_key(k)?;
            let bytes = self.inner.xorbs.disk_usage(&hash);
            used += bytes;
            if protected.pinned_xorbs.contains(&hash) {
                pinned += bytes;
            } else if !protected.held_xorbs.contains(&hash) {
                let read = last_read
                    .get(&hash)
                    .copied()
                    .unwrap_or_else(|| mtime_nanos(&self.xorb_path(&hash)));
                xorbs.push(Candidate { last_read: read, bytes, what: Victim::Xorb(hash) });
            }
            Ok(())
        })?;
        flat.sort_by_key(|c| c.last_read);
        xorbs.sort_by_key(|c| c.last_read);
        out.extend(flat);
        out.extend(xorbs);
        Ok((used, pinned))
    }

    /// What a round must not evict now.
    fn protected(&self) -> Result<Protected> {
        let pinned_xorbs = self.xorbs_of(&self.inner.db.pinned_files()?)?;
        let held_files: HashSet<FileHash> = self.inner.evict.holds.lock().keys().copied().collect();
        let held_xorbs = self.xorbs_of(&held_files)?;
        Ok(Protected { pinned_xorbs, held_files, held_xorbs })
    }

    fn xorbs_of(&self, files: &HashSet<FileHash>) -> Result<HashSet<XorbHash>> {
        let mut xorbs = HashSet::new();
        for f in files {
            if let Some(rec) = self.inner.db.file(f)? {
                xorbs.extend(rec.terms.iter().map(|t| t.xorb));
            }
        }
        Ok(xorbs)
    }

    /// Deletes candidates in order until `need` bytes are freed: index entries first, in one
    /// batch, then the files.
    fn evict(&self, candidates: Vec<Candidate>, need: u64) -> Result<EvictReport> {
        let mut chosen = Vec::new();
        let mut planned = 0;
        for c in candidates {
            if planned >= need {
                break;
            }
            planned += c.bytes;
            chosen.push(c);
        }
        let mut batch = KvBatch::default();
        for c in &chosen {
            if let Victim::Xorb(hash) = &c.what {
                self.unindex_xorb(hash, &mut batch)?;
            }
        }
        self.inner.db.write(batch)?;
        let mut report = EvictReport::default();
        for c in chosen {
            match c.what {
                Victim::Xorb(hash) => {
                    report.bytes += self.inner.xorbs.remove(&hash)?;
                    report.xorbs += 1;
                    self.inner.evict.last_read.lock().remove(&hash);
                }
                Victim::Flat(path) => match std::fs::remove_file(&path) {
                    Ok(()) => {
                        report.bytes += c.bytes;
                        report.flat_copies += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(super::StoreError::io("remove", &path, e)),
                },
            }
        }
        Ok(report)
    }

    /// Queues the removal of a xorb's index entries: its chunk table and the dedup entries
    /// that point into it (a chunk also stored in another xorb keeps that one's entry).
    fn unindex_xorb(&self, hash: &XorbHash, batch: &mut KvBatch) -> Result<()> {
        batch.delete(Table::Xorb, hash.as_bytes().to_vec());
        let Some(meta): Option<XorbMeta> = self.inner.db.xorb_meta(hash)? else { return Ok(()) };
        for c in meta.chunks.iter().flatten() {
            if self.inner.db.chunk_location(&c.hash)?.is_some_and(|(x, _)| x == *hash) {
                batch.delete(Table::Chunk, c.hash.as_bytes().to_vec());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// Incompressible bytes, so a file's size on disk is about its length.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        tessera_xet::testdata::splitmix(len, seed)
    }

    fn used(store: &Store) -> Result<u64> {
        Ok(store.cache_usage()?.used)
    }

    /// Four 1 MiB files under a 3.5 MiB cap: the pinned one and the held one stay, the least
    /// recently read of the others goes, reads of it say `Missing` (a mount fetches it again),
    /// and the index never points at a deleted file (`fsck` is clean).
    #[test]
    fn a_round_evicts_the_least_recently_read_and_spares_pins_and_holds() -> TestResult {
        let home = tempfile::tempdir()?;
        let store = Store::open(home.path())?;
        let files: Vec<_> =
            (0..4).map(|i| store.ingest_bytes(&noise(1 << 20, i))).collect::<Result<_>>()?;
        store.pin("kept", &files[0].file)?;
        let _hold = store.hold(&[files[1].file]);
        store.set_cache_cap(Some(100 << 20))?;
        // File 3 is read last, so file 2 is the least recently read unprotected one.
        for f in [&files[2], &files[3]] {
            store.read_file_range(&f.file, 0, 10)?;
        }
        let report = store.set_cache_cap(Some(7 << 19))?;
        assert_eq!(report.xorbs, 1, "{report:?}");
        assert!(used(&store)? <= 7 << 19);
        for f in [&files[0], &files[1], &files[3]] {
            assert_eq!(store.read_file_range(&f.file, 0, 1 << 20)?.len(), 1 << 20);
        }
        let gone = store.read_file_range(&files[2].file, 0, 10);
        assert!(matches!(gone, Err(StoreError::Missing { .. })), "{gone:?}");
        assert!(store.fsck()?.problems.is_empty());
        assert_eq!(store.evicted_bytes(), report.bytes);
        Ok(())
    }

    /// The cap is the store's: it survives a reopen, and writes past it evict at once.
    #[test]
    fn the_cap_is_recorded_and_writes_past_it_evict() -> TestResult {
        let home = tempfile::tempdir()?;
        {
            let store = Store::open(home.path())?;
            store.set_cache_cap(Some(2 << 20))?;
        }
        let store = Store::open(home.path())?;
        assert_eq!(store.cache_cap(), Some(2 << 20));
        for i in 0..5 {
            store.ingest_bytes(&noise(1 << 20, 10 + i))?;
            // `ingest` writes whole xorbs outside the fetch path; count them as a fetch would.
            store.note_written(1 << 20)?;
        }
        assert!(used(&store)? <= 2 << 20, "{:?}", store.cache_usage()?);
        store.set_cache_cap(None)?;
        assert_eq!(store.cache_cap(), None);
        Ok(())
    }

    /// A pinned revision's files are pinned; unpinning makes them evictable.
    #[test]
    fn pinned_revisions_protect_their_files_until_unpinned() -> TestResult {
        let home = tempfile::tempdir()?;
        let store = Store::open(home.path())?;
        let file = store.ingest_bytes(&noise(1 << 20, 99))?;
        let entry = crate::TreeEntry {
            path: "m.bin".into(),
            size: file.size,
            file: file.file,
            sha256: file.sha256,
            git_oid: tessera_protocol::GitOid::parse(&"0".repeat(40))?,
            lfs: true,
        };
        let commit = tessera_protocol::CommitId::parse(&"a".repeat(40))?;
        let repo = tessera_protocol::RepoId::parse("org/m")?;
        let at = crate::CommitKey {
            repo_type: tessera_protocol::RepoType::Model,
            repo_id: repo,
            commit,
        };
        store.put_repo_tree(&at, &[entry], "http://hub")?;
        assert!(store.pin_revision(&at)?.is_some());
        assert_eq!(store.pinned_revisions()?, vec![at.clone()]);
        let usage = store.cache_usage()?;
        assert!(usage.pinned > 0 && usage.pinned == usage.used, "{usage:?}");
        store.set_cache_cap(Some(1))?;
        assert!(store.read_file_range(&file.file, 0, 1 << 20).is_ok());
        assert!(store.unpin_revision(&at)?);
        assert!(!store.unpin_revision(&at)?);
        store.evict_round()?;
        assert!(matches!(store.read_file_range(&file.file, 0, 1), Err(StoreError::Missing { .. })));
        Ok(())
    }
}
