//! The embedded chunk store: one directory holding a RocksDB index and xorb files
//! (`docs/architecture.md` §2).
//!
//! Layout under the store's home:
//! - `db/`: RocksDB, one column family per table (`db.rs`);
//! - `xorbs/<2 hex>/<xorb hash>`: serialized chunks (Xet upload form, no footer), possibly
//!   sparse when fetched in part;
//! - `tmp/`: staging. Data is fsynced and renamed into place before the index batch that points
//!   at it commits, so a crash leaves at worst garbage in `tmp/` or an unreferenced xorb file,
//!   never an index entry without its data.
//!
//! The store is synchronous and `Clone + Send + Sync`; async callers use `spawn_blocking`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = tessera_store::Store::open(dir.path())?;
//! let added = store.ingest_bytes(b"hello world")?;
//! assert_eq!(store.read_file_range(&added.file, 6, 5)?, b"world");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod adopt;
pub use adopt::Sha256Walk;
mod cache;
pub mod clock;
mod codec;
mod db;
mod evict;
mod flat;
mod ingest;
mod keys;
mod maint;
mod meta_cache;
mod pending;
mod read;
mod records;
mod roots;
mod source;
mod space;
mod xorbs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use db::{KvBatch, Table};
pub use evict::{CacheUsage, EvictReport, FileHold, Reservation};
pub use ingest::{IngestReport, IngestSession};
pub use maint::{DuReport, FsckProblem, FsckReport, GcReport};
pub use records::{
    ChunkMeta, FileRecord, RecordError, Term, TreeEntry, XorbMeta, terms_overlapping,
};
use roots::RootHolder;
pub use source::{CommitKey, RemoteSource, RevisionKey, SourceError, StoreSource};
pub use space::{Section, ServerBatch, ServerSpace, ServerWrite};
pub use xorbs::StagingFile;

use tessera_protocol::{CommitId, GitOid, RepoType};
use tessera_xet::hash::{ChunkHash, FileHash, Sha256, XorbHash};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// RocksDB failed.
    #[error("index database: {0}")]
    Db(#[from] rocksdb::Error),
    /// An index record does not decode.
    #[error("index damaged: {0}")]
    Record(#[from] RecordError),
    /// Stored chunk bytes do not decode or do not match their hash.
    #[error("corrupt chunk {chunk}: {why}")]
    CorruptChunk {
        /// The chunk's expected hash.
        chunk: ChunkHash,
        /// What was wrong.
        why: &'static str,
    },
    /// Uploaded xorb bytes hash to something else than their name.
    #[error("xorb hash mismatch: named {expected}, content hashes to {actual}")]
    XorbHashMismatch {
        /// The hash the caller named.
        expected: XorbHash,
        /// The hash of the content.
        actual: XorbHash,
    },
    /// Xorb bytes that cannot be parsed.
    #[error("malformed xorb {xorb}: {why}")]
    MalformedXorb {
        /// The xorb.
        xorb: XorbHash,
        /// What was wrong.
        why: String,
    },
    /// Data the store does not hold (yet): a lazy reader fetches it and retries.
    #[error("not in store: xorb {xorb} chunks {chunk_start}..{chunk_end}")]
    Missing {
        /// The xorb.
        xorb: XorbHash,
        /// First missing chunk.
        chunk_start: u32,
        /// One past the last missing chunk.
        chunk_end: u32,
    },
    /// Fetched bytes do not rebuild the file the remote named.
    #[error("fetched data for file {file} does not verify: {why}")]
    FetchedMismatch {
        /// The file.
        file: FileHash,
        /// What came out instead.
        why: String,
    },
    /// No such file in the store.
    #[error("unknown file {0}")]
    UnknownFile(FileHash),
    /// A read beyond the end of a file.
    #[error("range {offset}+{len} is outside file of {size} bytes")]
    OutOfRange {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The file's size.
        size: u64,
    },
    /// The store was written by an incompatible version.
    #[error("store format {found} is not supported (expected {expected}); use a new --home")]
    Version {
        /// Version on disk.
        found: String,
        /// Version this build writes.
        expected: &'static str,
    },
}

/// A failed read of caller-supplied input (the path is not known at this level).
impl From<std::io::Error> for StoreError {
    fn from(source: std::io::Error) -> Self {
        Self::Io { op: "read", path: PathBuf::from("<input>"), source }
    }
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { op, path: path.to_path_buf(), source }
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Store tuning.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Bytes of decompressed chunks kept in memory for reads.
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { cache_bytes: 256 << 20 }
    }
}

impl StoreOptions {
    /// The defaults with a chunk cache of `bytes`.
    pub fn with_cache_bytes(bytes: usize) -> Self {
        Self { cache_bytes: bytes }
    }
}

/// Key of an origin record in [`Table::Origin`]: the kind (`t` tree, `r` ref), then the key.
fn origin_key(kind: u8, key: &str) -> Vec<u8> {
    [&[kind], key.as_bytes()].concat()
}

/// Queues recording where the tree or ref under `key` came from (`None`: made here, so any
/// origin recorded before is dropped).
fn set_origin(batch: &mut KvBatch, kind: u8, key: &str, origin: Option<&str>) {
    match origin {
        Some(o) => batch.put(Table::Origin, origin_key(kind, key), o.as_bytes()),
        None => batch.delete(Table::Origin, origin_key(kind, key)),
    }
}

/// Handle to an open store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    home: PathBuf,
    db: db::Db,
    xorbs: xorbs::XorbFiles,
    cache: cache::ChunkCache,
    /// Serialises read-modify-write of sparse xorb tables.
    meta_lock: parking_lot::Mutex<()>,
    /// Fetched chunks readable but not yet indexed.
    pending: Arc<pending::Pending>,
    /// Writers of roots share it; `gc` holds it alone while it decides what is live and drops
    /// the index entries of the rest, so a root is either seen by `gc` or written after it.
    roots_lock: parking_lot::RwLock<()>,
    /// The cap and what eviction needs to honour it (`evict.rs`).
    evict: evict::Evictor,
    /// Fires when the store is closed; declared last, since fields drop in order: by then the
    /// database is closed and the last chunks indexed.
    closed: ClosedOnDrop,
}

/// Whether the store a [`Store::close`] waits on is closed yet.
#[derive(Default)]
struct CloseSignal {
    done: parking_lot::Mutex<bool>,
    cv: parking_lot::Condvar,
}

#[derive(Default)]
struct ClosedOnDrop(Arc<CloseSignal>);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        *self.0.done.lock() = true;
        self.0.cv.notify_all();
    }
}

impl Store {
    /// Opens (creating if needed) the store under `home`.
    pub fn open(home: &Path) -> Result<Self> {
        Self::open_with(home, StoreOptions::default())
    }

    /// Opens with explicit options.
    pub fn open_with(home: &Path, options: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(home).map_err(|e| StoreError::io("create", home, e))?;
        let db = db::Db::open(&home.join("db"))?;
        let xorbs = xorbs::XorbFiles::open(home)?;
        // The database lock makes this process the store's only writer, so whatever `tmp/` holds
        // was left by one that died (a `kill -9` mid-fetch): nothing indexed points into it.
        let stale = xorbs.clean_tmp()?;
        if stale > 0 {
            tracing::debug!(files = stale, "removed staging files of a writer that died");
        }
        let cache = cache::ChunkCache::new(options.cache_bytes);
        let store = Self {
            inner: Arc::new(Inner {
                home: home.to_path_buf(),
                db,
                xorbs,
                cache,
                meta_lock: parking_lot::Mutex::new(()),
                pending: Arc::default(),
                roots_lock: parking_lot::RwLock::new(()),
                evict: evict::Evictor::default(),
                closed: ClosedOnDrop::default(),
            }),
        };
        store.load_cap()?;
        Ok(store)
    }

    /// Drops this handle and waits up to `limit` for every other one (threads finishing their
    /// fetches, the index flusher) to go and the database to close; whether it closed. A
    /// process that returns from `main` with the database still open on another thread races
    /// RocksDB's static destructors and can abort ("pthread lock: Invalid argument").
    pub fn close(self, limit: std::time::Duration) -> bool {
        let signal = self.inner.closed.0.clone();
        drop(self);
        let mut done = signal.done.lock();
        let deadline = std::time::Instant::now() + limit;
        while !*done {
            if signal.cv.wait_until(&mut done, deadline).timed_out() {
                return *done;
            }
        }
        true
    }

    /// The directory the store lives in.
    pub fn home(&self) -> &Path {
        &self.inner.home
    }

    /// Drops the decompressed-chunk cache, so the next reads come from disk (benchmarks).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// Where a xorb's bytes live (the file may be absent or sparse).
    pub fn xorb_path(&self, hash: &XorbHash) -> PathBuf {
        self.inner.xorbs.path(hash)
    }

    /// The chunk table of a xorb, if the store knows it.
    pub fn xorb_meta(&self, hash: &XorbHash) -> Result<Option<XorbMeta>> {
        Ok(self.inner.overlay(hash, self.inner.db.xorb_meta(hash)?))
    }

    /// Where a chunk is stored locally, if anywhere.
    pub fn chunk_location(&self, chunk: &ChunkHash) -> Result<Option<(XorbHash, u32)>> {
        self.inner.db.chunk_location(chunk)
    }

    /// A file's record, if the store knows it.
    pub fn file(&self, hash: &FileHash) -> Result<Option<FileRecord>> {
        self.inner.db.file(hash)
    }

    /// The file hash of content with this git blob id, if recorded by a pull.
    pub fn file_by_git_oid(&self, oid: &GitOid) -> Result<Option<FileHash>> {
        self.inner.db.get_json(Table::GitOid, oid.as_str().as_bytes())
    }

    /// Records which file a git blob id names (regular, non-LFS files of pulled repos).
    pub fn put_git_oid(&self, oid: &GitOid, file: &FileHash) -> Result<()> {
        self.put_git_oids(&[(oid.clone(), *file)])
    }

    /// [`Store::put_git_oid`] for many files in one durable write.
    pub fn put_git_oids(&self, pairs: &[(GitOid, FileHash)]) -> Result<()> {
        let mut batch = KvBatch::default();
        for (oid, file) in pairs {
            // The same JSON string form `get_json` reads back.
            batch.put(
                Table::GitOid,
                oid.as_str().as_bytes().to_vec(),
                format!("\"{file}\"").into_bytes(),
            );
        }
        self.inner.db.write(batch)
    }

    /// Whether every chunk of a file is present locally.
    pub fn is_complete(&self, record: &FileRecord) -> Result<bool> {
        for t in &record.terms {
            let Some(meta) = self.xorb_meta(&t.xorb)? else { return Ok(false) };
            let present = (t.chunk_start..t.chunk_end)
                .all(|i| meta.chunks.get(i as usize).is_some_and(Option::is_some));
            if !present {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Records when a commit was made (unix seconds), as its hub said.
    pub fn put_commit_date(&self, commit: &CommitId, unix_secs: u64) -> Result<()> {
        let mut batch = KvBatch::default();
        batch.put(
            Table::CommitDate,
            commit.as_str().as_bytes().to_vec(),
            unix_secs.to_le_bytes().to_vec(),
        );
        self.inner.db.write(batch)
    }

    /// When a commit was made, if recorded.
    pub fn commit_date(&self, commit: &CommitId) -> Result<Option<u64>> {
        let value = self.inner.db.get(Table::CommitDate, commit.as_str().as_bytes())?;
        Ok(value.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map(u64::from_le_bytes))
    }

    /// Whether a read of `[start, end)` of the file would find every chunk it needs: the
    /// overlapping chunks and, in each overlapping term, the chunks before them (a chunk is
    /// placed by the lengths of those before it in its term). Local lookups only.
    pub fn range_present(&self, record: &FileRecord, start: u64, end: u64) -> Result<bool> {
        for (mut at, term) in terms_overlapping(&record.terms, start, end) {
            let Some(meta) = self.xorb_meta(&term.xorb)? else { return Ok(false) };
            for idx in term.chunk_start..term.chunk_end {
                if at >= end {
                    break;
                }
                match meta.chunks.get(idx as usize).copied().flatten() {
                    Some(c) => at += u64::from(c.unpacked_len),
                    None => return Ok(false),
                }
            }
        }
        Ok(true)
    }

    /// The file hash of content with this SHA-256, if stored.
    pub fn file_by_sha256(&self, sha: &Sha256) -> Result<Option<FileHash>> {
        self.inner.db.file_by_sha256(sha)
    }

    /// Records a file whose chunks are (or will be) in the store, findable by its SHA-256.
    pub fn put_file(&self, record: &FileRecord) -> Result<()> {
        let mut batch = KvBatch::default();
        db::put_file(&mut batch, record);
        self.inner.db.write(batch)
    }

    /// Records a file's terms before its bytes are checked (a lazy fetch plans reads against
    /// them), without the alias that makes it findable by SHA-256: the SHA-256 is only what a
    /// remote claimed, and a hostile mirror claiming another file's SHA-256 would otherwise make
    /// a later fetch of that file, from any source, resolve to these bytes.
    /// [`Store::put_file`] adds the alias once the SHA-256 is computed from the bytes.
    pub fn put_file_unverified(&self, record: &FileRecord) -> Result<()> {
        let mut batch = KvBatch::default();
        db::put_file_record(&mut batch, record);
        self.inner.db.write(batch)
    }

    /// Records the tree of a commit, with its files' roots.
    pub fn put_tree(&self, commit: &CommitId, entries: &[TreeEntry]) -> Result<()> {
        self.write_tree(commit.as_str(), entries, None)
    }

    /// Writes a tree under `key`, where it came from and its roots in one batch.
    fn write_tree(&self, key: &str, entries: &[TreeEntry], origin: Option<&str>) -> Result<()> {
        let mut batch = KvBatch::default();
        let json = serde_json::to_vec(entries)
            .map_err(|_| StoreError::Record(RecordError { what: "tree", len: entries.len() }))?;
        batch.put(Table::Tree, key.as_bytes(), json);
        set_origin(&mut batch, b't', key, origin);
        batch.add_tree_roots(RootHolder::Tree(key), entries);
        self.write_roots(batch)
    }

    /// Writes a batch that adds or drops roots, never while `gc` decides what is live.
    fn write_roots(&self, batch: KvBatch) -> Result<()> {
        let _roots = self.inner.roots_lock.read();
        self.inner.db.write(batch)
    }

    /// The tree of a commit, if recorded.
    pub fn tree(&self, commit: &CommitId) -> Result<Option<Vec<TreeEntry>>> {
        self.inner.db.get_json(Table::Tree, commit.as_str().as_bytes())
    }

    /// Records the tree the hub at `origin` listed for a repo at a commit. Trees from the
    /// network are kept per repo and tagged with their origin: a hub's claim that its repo is
    /// at some commit id names only that repo's tree at that hub, so it can never stand in for
    /// another repo's commit, nor for the same repo at another hub.
    pub fn put_repo_tree(&self, at: &CommitKey, entries: &[TreeEntry], origin: &str) -> Result<()> {
        self.write_tree(&keys::tree_key(at), entries, Some(origin))
    }

    /// The tree of a repo at a commit: the one a hub listed for that repo, else one recorded
    /// locally for the bare commit ([`Store::put_tree`]: stores made before trees were kept
    /// per repo, and trees built here). With `origin`, a tree another hub listed is not
    /// returned (offline readers pass `None`: they trust what this store's pulls brought).
    pub fn repo_tree(
        &self,
        at: &CommitKey,
        origin: Option<&str>,
    ) -> Result<Option<Vec<TreeEntry>>> {
        let key = keys::tree_key(at);
        if !self.from_origin(b't', &key, origin)? {
            return Ok(None);
        }
        match self.inner.db.get_json(Table::Tree, key.as_bytes())? {
            Some(tree) => Ok(Some(tree)),
            None => self.tree(&at.commit),
        }
    }

    /// Points a revision at a commit, stamped with `now` (unix seconds); `origin` is the hub
    /// that said so (`None`: decided here).
    pub fn put_ref(
        &self,
        rev: &RevisionKey,
        commit: &CommitId,
        now: u64,
        origin: Option<&str>,
    ) -> Result<()> {
        let key = keys::ref_key(rev);
        let mut batch = KvBatch::default();
        let value = serde_json::to_vec(&(commit, now))
            .map_err(|_| StoreError::Record(RecordError { what: "ref", len: key.len() }))?;
        batch.put(Table::Ref, key.as_bytes(), value);
        set_origin(&mut batch, b'r', &key, origin);
        self.inner.db.write(batch)
    }

    /// A revision's commit and when it was recorded; with `origin`, only if that hub recorded
    /// it (or no hub did).
    pub fn get_ref(
        &self,
        rev: &RevisionKey,
        origin: Option<&str>,
    ) -> Result<Option<(CommitId, u64)>> {
        let key = keys::ref_key(rev);
        if !self.from_origin(b'r', &key, origin)? {
            return Ok(None);
        }
        self.inner.db.get_json(Table::Ref, key.as_bytes())
    }

    /// The revisions with a recorded ref, of every repo of `repo_type` or of one namespace's,
    /// in key order. A stored key that does not parse as a revision (refs written before keys
    /// were typed could be any string) names nothing a reader could open, so it is left out.
    pub fn refs(&self, repo_type: RepoType, namespace: Option<&str>) -> Result<Vec<RevisionKey>> {
        let prefix = keys::refs_prefix(repo_type, namespace);
        let rows = self.inner.db.scan_prefix(Table::Ref, prefix.as_bytes())?;
        let parsed =
            rows.iter().filter_map(|(k, _)| keys::parse_ref_key(std::str::from_utf8(k).ok()?));
        Ok(parsed.filter(|rev| namespace.is_none_or(|ns| rev.repo_id.namespace() == ns)).collect())
    }

    /// Whether the tree or ref under `key` may be used by a reader of `origin`: any reader when
    /// `origin` is `None`; otherwise only if it was recorded from that origin or from none
    /// (stores older than origins, trees and refs made here).
    fn from_origin(&self, kind: u8, key: &str, origin: Option<&str>) -> Result<bool> {
        let Some(want) = origin else { return Ok(true) };
        Ok(match self.inner.db.get(Table::Origin, &origin_key(kind, key))? {
            Some(recorded) => recorded == want.as_bytes(),
            None => true,
        })
    }

    /// Pins a file so `gc` keeps it even when no tree references it (what `tessera add` does).
    /// Fails with [`StoreError::UnknownFile`] if the file is not indexed (a `gc` that ran since it
    /// was added removed it): a pin never points at nothing.
    pub fn pin(&self, name: &str, file: &FileHash) -> Result<()> {
        let _roots = self.inner.roots_lock.read();
        if self.inner.db.file(file)?.is_none() {
            return Err(StoreError::UnknownFile(*file));
        }
        let mut batch = KvBatch::default();
        let json = serde_json::to_vec(file)
            .map_err(|_| StoreError::Record(RecordError { what: "pin", len: 32 }))?;
        self.inner.db.drop_roots(&mut batch, RootHolder::Pin(name))?;
        batch.put(Table::Pin, name.as_bytes(), json);
        batch.add_root(RootHolder::Pin(name), file);
        self.inner.db.write(batch)
    }

    /// Removes a pin and its root; returns whether it existed.
    pub fn unpin(&self, name: &str) -> Result<bool> {
        let _roots = self.inner.roots_lock.read();
        let existed = self.inner.db.get(Table::Pin, name.as_bytes())?.is_some();
        let mut batch = KvBatch::default();
        batch.delete(Table::Pin, name.as_bytes());
        self.inner.db.drop_roots(&mut batch, RootHolder::Pin(name))?;
        self.inner.db.write(batch)?;
        Ok(existed)
    }

    /// Pins a repo at a commit: every file of its tree stays through `gc` and eviction.
    /// Returns the tree pinned, or `None` if the store has no tree for it.
    pub fn pin_revision(&self, at: &CommitKey) -> Result<Option<Vec<TreeEntry>>> {
        let Some(tree) = self.repo_tree(at, None)? else { return Ok(None) };
        let holder = keys::tree_key(at);
        let mut batch = KvBatch::default();
        self.inner.db.drop_roots(&mut batch, RootHolder::Revision(&holder))?;
        batch.add_tree_roots(RootHolder::Revision(&holder), &tree);
        self.write_roots(batch)?;
        Ok(Some(tree))
    }

    /// Removes the pin of a repo at a commit; returns whether there was one. Its files stay
    /// (the tree still roots them) but become evictable.
    pub fn unpin_revision(&self, at: &CommitKey) -> Result<bool> {
        let holder = keys::tree_key(at);
        let mut batch = KvBatch::default();
        self.inner.db.drop_roots(&mut batch, RootHolder::Revision(&holder))?;
        let existed = !batch.is_empty();
        self.write_roots(batch)?;
        Ok(existed)
    }

    /// The pinned revisions, sorted by their keys. A holder that does not parse fails the
    /// listing rather than hide a pin its owner could then never find to remove.
    pub fn pinned_revisions(&self) -> Result<Vec<CommitKey>> {
        let holders = self.inner.db.pinned_revisions()?;
        let parse = |h: &String| {
            keys::parse_tree_key(h).ok_or_else(|| {
                tracing::error!(holder = %h, "a pinned revision's key does not parse");
                StoreError::Record(RecordError { what: "pinned revision", len: h.len() })
            })
        };
        holders.iter().map(parse).collect()
    }

    /// The pins of `tessera add`: (name, file), by name.
    pub fn pins(&self) -> Result<Vec<(String, FileHash)>> {
        self.inner.db.pins()
    }
}
