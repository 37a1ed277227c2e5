//! The filesystem itself, with no FUSE in it: inodes, lookup, readdir, getattr, read and
//! extended attributes over the store, returning [`Errno`] on failure. `fuse.rs` binds it to the
//! kernel; tests call it directly.
//!
//! Inodes live as long as the mount (there are few: one per org, revision directory, directory
//! and file that was looked up). A revision directory is keyed by its name *and* the commit it
//! resolved to, so when `--ref-ttl` moves a branch the kernel sees a new inode while readers of
//! the old one keep reading the old commit. File inodes are shared by every revision directory
//! naming the same commit (hard links), so their page cache is too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::errno::Errno;
use super::fetch::{Fetcher, FileFetch};
use super::flat::FlatCache;
use super::names;
use tessera_protocol::{CommitId, RepoId, RepoType, xattrs};
use tessera_store::{CommitKey, FileRecord, RemoteSource, RevisionKey, Store, StoreError, TreeEntry};

/// Inode of the mount's root directory.
pub const ROOT_INO: u64 = 1;
/// How long the kernel may cache what can never change (commit-pinned entries and attributes).
pub const IMMUTABLE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Attempts of fetch-then-read before a read gives up (the remote keeps not delivering).
const READ_ATTEMPTS: usize = 3;
/// Bytes decoded ahead of a sequential reader.
const DECODE_AHEAD: u64 = 16 << 20;
/// Bytes per decode-ahead task.
const DECODE_PIECE: u64 = 4 << 20;
/// Repo type of everything mounted (models only, for now).
const REPO_TYPE: RepoType = RepoType::Model;

/// Extended attributes of files (directories of a revision have the first two).
pub const XATTRS: [&str; 4] = xattrs::ALL;

/// How the filesystem behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VfsOptions {
    /// How long a branch or tag stays on the commit it resolved to; `None`: the mount's life.
    pub ref_ttl: Option<Duration>,
    /// Longest a read waits for the remote before failing with `EIO`.
    pub fetch_timeout: Duration,
    /// Most bytes requested ahead of a sequential reader (the read-ahead window grows to this).
    pub prefetch_window: u64,
    /// Most read-ahead requests in flight per file.
    pub prefetch_depth: usize,
    /// Threads running prefetch requests, for all files together.
    pub prefetch_threads: usize,
    /// Owner reported for every inode.
    pub uid: u32,
    /// Group reported for every inode.
    pub gid: u32,
    /// Where flat copies of fully-present files are kept for FUSE passthrough (`None`: off).
    pub flat_dir: Option<PathBuf>,
}

impl Default for VfsOptions {
    fn default() -> Self {
        Self {
            ref_ttl: None,
            fetch_timeout: Duration::from_secs(60),
            prefetch_window: 128 << 20,
            prefetch_depth: 8,
            prefetch_threads: 8,
            uid: 0,
            gid: 0,
            flat_dir: None,
        }
    }
}

/// File or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (mode 0555).
    Dir,
    /// A regular file (mode 0444).
    File,
}

/// What `stat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// When the content was made: the commit's date inside a revision (unix seconds; 0 where
    /// unknown, and for the directories above revisions).
    pub mtime: u64,
}

/// A lookup answer: attributes and how long the kernel may keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The attributes.
    pub attr: Attr,
    /// Entry and attribute cache lifetime.
    pub ttl: Duration,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number (informational, for `d_ino`).
    pub ino: u64,
    /// File or directory.
    pub kind: Kind,
    /// Name.
    pub name: String,
}

/// The read-only filesystem over a store and an optional remote. Cheap to clone.
#[derive(Clone)]
pub struct Vfs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    remote: Option<Arc<dyn RemoteSource>>,
    fetcher: Option<Arc<Fetcher>>,
    flat: Option<Arc<FlatCache>>,
    opts: VfsOptions,
    /// Inode `i + 1` is `nodes[i]`.
    nodes: RwLock<Vec<Node>>,
    names: Mutex<HashMap<NameKey, u64>>,
    trees: Mutex<HashMap<CommitKey, Arc<Tree>>>,
    pins: Mutex<HashMap<String, Pin>>,
    /// One lock per ref or commit being resolved, so concurrent lookups ask the remote once.
    gates: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    metrics: Arc<super::MountMetrics>,
}

#[derive(Clone)]
enum Node {
    Root,
    Org(Arc<str>),
    /// Directory `dir` of a revision's tree; `dir == 0` is the revision directory itself.
    Dir {
        rev: Arc<RevRoot>,
        dir: usize,
    },
    File(Arc<FileNode>),
    /// A number handed out for `d_ino` of a listed revision not yet looked up.
    Listed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NameKey {
    Org(String),
    Rev { label: String, commit: CommitId },
    Listed(String),
}

struct RevRoot {
    repo: RepoId,
    commit: CommitId,
    tree: Arc<Tree>,
    /// Inode of each directory of the tree.
    dir_inos: Vec<u64>,
}

struct Tree {
    dirs: Vec<BTreeMap<String, Child>>,
    files: Vec<Arc<FileNode>>,
    /// The commit's date (unix seconds, 0 if unknown).
    date: u64,
}

#[derive(Clone, Copy)]
enum Child {
    Dir(usize),
    File(usize),
}

/// A file of one commit.
pub(crate) struct FileNode {
    pub(crate) ino: u64,
    /// The repo at this file's commit (what `RemoteSource::fetch` is asked for).
    pub(crate) key: CommitKey,
    pub(crate) entry: TreeEntry,
    pub(crate) record: OnceLock<Arc<FileRecord>>,
    pub(crate) fetch: FileFetch,
    /// How far ahead sequential reads have been decoded into the store's chunk cache.
    decoded_to: Mutex<u64>,
    /// The commit's date (unix seconds, 0 if unknown).
    mtime: u64,
}

impl FileNode {
    fn attr(&self) -> Attr {
        Attr { ino: self.ino, kind: Kind::File, size: self.entry.size, mtime: self.mtime }
    }
}

struct Pin {
    commit: CommitId,
    expires: Option<Instant>,
}

impl Vfs {
    /// A filesystem over `store`; `remote` fills it on demand (`None`: serve what it holds).
    pub fn new(store: Store, remote: Option<Arc<dyn RemoteSource>>, opts: VfsOptions) -> Self {
        let fetcher = remote.as_ref().map(|r| Fetcher::new(r.clone(), store.clone(), &opts));
        let flat = opts.flat_dir.clone().map(FlatCache::new);
        Self {
            inner: Arc::new(Inner {
                store,
                remote,
                fetcher,
                flat,
                opts,
                nodes: RwLock::new(vec![Node::Root]),
                names: Mutex::new(HashMap::new()),
                trees: Mutex::new(HashMap::new()),
                pins: Mutex::new(HashMap::new()),
                gates: Mutex::new(HashMap::new()),
                metrics: Arc::default(),
            }),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &VfsOptions {
        &self.inner.opts
    }

    /// What this filesystem did so far (shared: it keeps counting after the call).
    pub fn metrics(&self) -> Arc<super::MountMetrics> {
        self.inner.metrics.clone()
    }

    /// Content bytes the remote fetched so far (0 without a remote).
    pub fn bytes_fetched(&self) -> u64 {
        self.inner.remote.as_ref().map_or(0, |r| r.progress())
    }

    /// The revisions looked up so far, as `repo@commit`, sorted.
    pub fn open_revisions(&self) -> Vec<String> {
        let mut revs: Vec<String> = self
            .inner
            .trees
            .lock()
            .keys()
            .map(|at| format!("{}@{}", at.repo_id, at.commit))
            .collect();
        revs.sort();
        revs
    }

    /// Remote `fetch` calls made so far (always 0 without a remote).
    pub fn remote_fetches(&self) -> usize {
        self.inner.fetcher.as_ref().map_or(0, |f| f.calls())
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Entry, Errno> {
        match self.node(parent)? {
            Node::Root => self.lookup_org(name),
            Node::Org(org) => self.lookup_rev(&org, name),
            Node::Dir { rev, dir } => lookup_in_tree(&rev, dir, name),
            Node::File(_) => Err(Errno::NotDir),
            Node::Listed => Err(Errno::NotFound),
        }
    }

    /// Attributes of an inode.
    pub fn getattr(&self, ino: u64) -> Result<Attr, Errno> {
        Ok(match self.node(ino)? {
            Node::File(f) => f.attr(),
            Node::Dir { rev, .. } => dir_attr(ino, rev.tree.date),
            _ => dir_attr(ino, 0),
        })
    }

    /// The entries of a directory, `.` and `..` first.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, Errno> {
        let mut out = vec![dir_entry(ino, "."), dir_entry(ROOT_INO, "..")];
        match self.node(ino)? {
            Node::Root => out.extend(self.list_orgs()?),
            Node::Org(org) => out.extend(self.list_revs(&org)?),
            Node::Dir { rev, dir } => out.extend(list_tree(&rev, dir)),
            Node::File(_) => return Err(Errno::NotDir),
            Node::Listed => return Err(Errno::NotFound),
        }
        Ok(out)
    }

    /// Checks that a file may be opened; `write` asks for write access.
    pub fn open(&self, ino: u64, write: bool) -> Result<(), Errno> {
        let file = self.file(ino)?;
        if write {
            return Err(Errno::ReadOnly);
        }
        if self.inner.remote.is_none() && file.entry.size > 0 && self.record(&file)?.is_none() {
            // Offline, and the store does not hold this file at all.
            return Err(Errno::NotFound);
        }
        Ok(())
    }

    /// Reads up to `size` bytes at `offset` (fewer at the end of the file), counting it in
    /// [`Vfs::metrics`].
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        self.read_into(ino, offset, size, &mut out)?;
        Ok(out)
    }

    /// Like [`Vfs::read`] into a buffer the caller reuses across reads (cleared first).
    pub fn read_into(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let mut fetched = false;
        let result = self.read_counted(ino, offset, size, out, &mut fetched);
        let what = || format!("read of inode {ino} at {offset}");
        self.inner.metrics.read_done(result.as_ref().map(|()| out.len()), fetched, what);
        result
    }

    fn read_counted(
        &self,
        ino: u64,
        offset: u64,
        size: u32,
        out: &mut Vec<u8>,
        fetched: &mut bool,
    ) -> Result<(), Errno> {
        out.clear();
        let file = self.file(ino)?;
        if offset >= file.entry.size || size == 0 {
            return Ok(());
        }
        let len = u64::from(size).min(file.entry.size - offset);
        if let Some(f) = &self.inner.fetcher {
            f.on_read(&file, offset, offset + len);
        }
        for _ in 0..READ_ATTEMPTS {
            if let Some(record) = self.record(&file)? {
                match self.inner.store.read_record_range_into(&record, offset, len, out) {
                    Ok(()) => {
                        self.decode_ahead(&file, &record, offset, offset + len);
                        if offset + len == file.entry.size {
                            self.read_to_end(&file, &record);
                        }
                        return Ok(());
                    }
                    Err(StoreError::Missing { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let Some(fetcher) = &self.inner.fetcher else {
                tracing::warn!(path = %file.entry.path, offset, "bytes not in the store (offline)");
                return Err(Errno::Io);
            };
            *fetched = true;
            let (started, _in_flight) =
                (std::time::Instant::now(), self.inner.metrics.fetch_started());
            let ensured = fetcher.ensure(&file, offset, len);
            self.inner.metrics.fetch_done(started.elapsed());
            ensured?;
        }
        tracing::warn!(path = %file.entry.path, offset, len, "the remote reported success but the bytes are still missing");
        Err(Errno::Io)
    }

    /// After a sequential read ending at `end`, decodes (decompresses and verifies) the next
    /// [`DECODE_AHEAD`] bytes into the store's chunk cache on the rayon pool, so the kernel's
    /// next requests are served from memory and a cold read uses every core. Absent bytes are
    /// skipped (fetching is the prefetcher's job).
    fn decode_ahead(&self, file: &FileNode, record: &Arc<FileRecord>, start: u64, end: u64) {
        let (from, to) = {
            let mut decoded = file.decoded_to.lock();
            let sequential = start == 0 || start <= *decoded;
            let to = (end + DECODE_AHEAD).min(file.entry.size);
            if !sequential || *decoded >= to.saturating_sub(DECODE_PIECE) {
                return;
            }
            let from = (*decoded).max(end);
            *decoded = to;
            (from, to)
        };
        let mut pos = from;
        while pos < to {
            let (store, record, len) =
                (self.inner.store.clone(), record.clone(), DECODE_PIECE.min(to - pos));
            rayon::spawn(move || {
                let _ = store.warm_record_range(&record, pos, len);
            });
            pos += len;
        }
    }

    /// Keeps an open file's data from eviction while the hold lives.
    pub fn hold(&self, ino: u64) -> Option<tessera_store::FileHold> {
        let file = self.file(ino).ok()?;
        Some(self.inner.store.hold(&[file.entry.file]))
    }

    /// A flat copy of a file for FUSE passthrough, when enabled and written already.
    pub fn flat_file(&self, ino: u64) -> Option<std::fs::File> {
        let flat = self.inner.flat.as_ref()?;
        flat.open(&self.file(ino).ok()?.entry)
    }

    /// A read reached the end of a file: with passthrough on, write its flat copy once every
    /// chunk is present, so later opens bypass this process.
    fn read_to_end(&self, file: &FileNode, record: &Arc<FileRecord>) {
        if let Some(flat) = &self.inner.flat {
            if self.inner.store.range_present(record, 0, record.size).unwrap_or(false) {
                flat.materialize(&self.inner.store, record, &file.entry);
            }
        }
    }

    /// Names of the extended attributes of an inode.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<&'static str>, Errno> {
        Ok(match self.node(ino)? {
            Node::File(_) => XATTRS.to_vec(),
            Node::Dir { .. } => XATTRS[..2].to_vec(),
            _ => Vec::new(),
        })
    }

    /// The value of one extended attribute.
    pub fn getxattr(&self, ino: u64, name: &str) -> Result<Vec<u8>, Errno> {
        let value = match (self.node(ino)?, name) {
            (Node::File(f), xattrs::REPO) => f.key.repo_id.to_string(),
            (Node::File(f), xattrs::COMMIT) => f.key.commit.to_string(),
            (Node::File(f), xattrs::SHA256) => f.entry.sha256.to_string(),
            (Node::File(f), xattrs::XET_HASH) => f.entry.file.to_string(),
            (Node::Dir { rev, .. }, xattrs::REPO) => rev.repo.to_string(),
            (Node::Dir { rev, .. }, xattrs::COMMIT) => rev.commit.to_string(),
            _ => return Err(Errno::NoAttr),
        };
        Ok(value.into_bytes())
    }

    fn node(&self, ino: u64) -> Result<Node, Errno> {
        let idx = usize::try_from(ino.wrapping_sub(1)).map_err(|_| Errno::NotFound)?;
        self.inner.nodes.read().get(idx).cloned().ok_or(Errno::NotFound)
    }

    fn file(&self, ino: u64) -> Result<Arc<FileNode>, Errno> {
        match self.node(ino)? {
            Node::File(f) => Ok(f),
            _ => Err(Errno::IsDir),
        }
    }

    /// The file's record, from memory or the store; `None` when the store lacks it.
    fn record(&self, file: &FileNode) -> Result<Option<Arc<FileRecord>>, Errno> {
        if let Some(r) = file.record.get() {
            return Ok(Some(r.clone()));
        }
        let Some(record) = self.inner.store.file(&file.entry.file)? else { return Ok(None) };
        if record.size != file.entry.size {
            tracing::warn!(path = %file.entry.path, tree = file.entry.size, record = record.size, "file record and tree disagree on the size");
            return Err(Errno::Io);
        }
        Ok(Some(file.record.get_or_init(|| Arc::new(record)).clone()))
    }

    /// Appends a node made from its inode number; returns what `make` returns beside it.
    fn alloc<T>(&self, make: impl FnOnce(u64) -> (Node, T)) -> T {
        let mut nodes = self.inner.nodes.write();
        let (node, out) = make(nodes.len() as u64 + 1);
        nodes.push(node);
        out
    }

    fn named(&self, key: NameKey, make: impl FnOnce() -> Node) -> u64 {
        let mut names = self.inner.names.lock();
        if let Some(ino) = names.get(&key) {
            return *ino;
        }
        let ino = self.alloc(|ino| (make(), ino));
        names.insert(key, ino);
        ino
    }

    fn gate(&self, key: &str) -> Arc<Mutex<()>> {
        self.inner.gates.lock().entry(key.to_string()).or_default().clone()
    }

    fn lookup_org(&self, org: &str) -> Result<Entry, Errno> {
        if !names::is_repo_id_part(org) {
            return Err(Errno::NotFound);
        }
        // With a remote any well-formed org may hold repos; offline only the ones stored.
        if self.inner.remote.is_none() && self.inner.store.refs(REPO_TYPE, Some(org))?.is_empty()
        {
            return Err(Errno::NotFound);
        }
        let ino = self.named(NameKey::Org(org.to_string()), || Node::Org(org.into()));
        Ok(Entry { attr: dir_attr(ino, 0), ttl: IMMUTABLE_TTL })
    }

    fn lookup_rev(&self, org: &str, entry: &str) -> Result<Entry, Errno> {
        let (name, revision) = names::parse_rev_dir(entry).ok_or(Errno::NotFound)?;
        let repo = RepoId::new(org, name).map_err(|_| Errno::NotFound)?;
        let key = RevisionKey::new(REPO_TYPE, repo, &revision).map_err(|_| Errno::NotFound)?;
        let (commit, ttl) = self.resolve(&key)?;
        let tree = self.tree(&key.at(commit.clone()))?;
        let date = tree.date;
        let label = key.to_string();
        let ino = {
            let mut names = self.inner.names.lock();
            match names.get(&NameKey::Rev { label: label.clone(), commit: commit.clone() }) {
                Some(ino) => *ino,
                None => {
                    let ino = self.make_rev(&key.repo_id, &commit, tree);
                    names.insert(NameKey::Rev { label, commit }, ino);
                    ino
                }
            }
        };
        Ok(Entry { attr: dir_attr(ino, date), ttl })
    }

    /// Allocates the inodes of a revision directory and its subdirectories in one block.
    fn make_rev(&self, repo: &RepoId, commit: &CommitId, tree: Arc<Tree>) -> u64 {
        let mut nodes = self.inner.nodes.write();
        let first = nodes.len() as u64 + 1;
        let n = tree.dirs.len();
        let rev = Arc::new(RevRoot {
            repo: repo.clone(),
            commit: commit.clone(),
            dir_inos: (first..first + n as u64).collect(),
            tree,
        });
        nodes.extend((0..n).map(|dir| Node::Dir { rev: rev.clone(), dir }));
        first
    }

    /// Commit and entry TTL for a revision: commit ids as they are, branches and tags pinned.
    fn resolve(&self, key: &RevisionKey) -> Result<(CommitId, Duration), Errno> {
        if let Some(commit) = key.as_commit() {
            return Ok((commit, IMMUTABLE_TTL));
        }
        let label = key.to_string();
        if let Some(hit) = self.pinned(&label) {
            return Ok(hit);
        }
        let gate = self.gate(&label);
        let _serial = gate.lock();
        if let Some(hit) = self.pinned(&label) {
            return Ok(hit);
        }
        let stored = self.inner.store.get_ref(key, self.origin().as_deref())?;
        let (commit, age) = match &self.inner.remote {
            None => stored.map(|(c, at)| (c, age_of(at))).ok_or(Errno::NotFound)?,
            Some(remote) => self.resolve_remote(remote.as_ref(), key, stored)?,
        };
        let ttl = self.inner.opts.ref_ttl.map(|t| t.saturating_sub(age));
        let expires = ttl.map(|t| Instant::now() + t);
        self.inner.pins.lock().insert(label, Pin { commit: commit.clone(), expires });
        Ok((commit, ttl.unwrap_or(IMMUTABLE_TTL)))
    }

    /// Asks the remote unless the stored ref is younger than `--ref-ttl`; falls back to the
    /// stored ref when the remote cannot answer. Returns the commit and the age of the answer.
    fn resolve_remote(
        &self,
        remote: &dyn RemoteSource,
        key: &RevisionKey,
        stored: Option<(CommitId, u64)>,
    ) -> Result<(CommitId, Duration), Errno> {
        if let (Some((commit, at)), Some(ttl)) = (&stored, self.inner.opts.ref_ttl) {
            if age_of(*at) < ttl {
                return Ok((commit.clone(), age_of(*at)));
            }
        }
        match remote.resolve(key) {
            Ok(commit) => Ok((commit, Duration::ZERO)),
            Err(e) => match stored {
                Some((commit, _)) => {
                    tracing::warn!(rev = %key, error = %e, %commit, "cannot resolve remotely; using the stored ref");
                    Ok((commit, Duration::ZERO))
                }
                None => Err(e.into()),
            },
        }
    }

    /// The remote's origin: trees and refs other hubs listed are not this mount's.
    fn origin(&self) -> Option<String> {
        self.inner.remote.as_ref().and_then(|r| r.origin())
    }

    fn pinned(&self, label: &str) -> Option<(CommitId, Duration)> {
        let pins = self.inner.pins.lock();
        let pin = pins.get(label)?;
        match pin.expires {
            None => Some((pin.commit.clone(), IMMUTABLE_TTL)),
            Some(t) => {
                let left = t.checked_duration_since(Instant::now())?;
                Some((pin.commit.clone(), left))
            }
        }
    }

    /// The tree of a commit, built once per (repo, commit); fetched through the remote if absent.
    fn tree(&self, at: &CommitKey) -> Result<Arc<Tree>, Errno> {
        if let Some(t) = self.inner.trees.lock().get(at) {
            return Ok(t.clone());
        }
        let commit = &at.commit;
        let gate = self.gate(&format!("tree {at}"));
        let _serial = gate.lock();
        if let Some(t) = self.inner.trees.lock().get(at) {
            return Ok(t.clone());
        }
        let origin = self.origin();
        let entries = match (self.inner.store.repo_tree(at, origin.as_deref())?, &self.inner.remote) {
            (Some(entries), _) => entries,
            (None, None) => return Err(Errno::NotFound),
            (None, Some(remote)) => {
                remote.resolve(&at.as_revision())?;
                self.inner.store.repo_tree(at, origin.as_deref())?.ok_or_else(|| {
                    tracing::warn!(%commit, "the remote resolved the commit but recorded no tree");
                    Errno::Io
                })?
            }
        };
        let tree = Arc::new(self.build_tree(at.clone(), entries));
        self.inner.trees.lock().insert(at.clone(), tree.clone());
        Ok(tree)
    }

    fn build_tree(&self, key: CommitKey, entries: Vec<TreeEntry>) -> Tree {
        let date = self.inner.store.commit_date(&key.commit).ok().flatten().unwrap_or(0);
        let mut tree = Tree { dirs: vec![BTreeMap::new()], files: Vec::new(), date };
        for entry in entries {
            let Some((dir, leaf)) = place(&mut tree, &entry.path) else {
                tracing::warn!(repo = %key.repo_id, commit = %key.commit, path = %entry.path, "skipping a tree entry that cannot be a path here");
                continue;
            };
            let key = key.clone();
            let file = self.alloc(|ino| {
                let f = Arc::new(FileNode {
                    ino,
                    key,
                    entry,
                    record: OnceLock::new(),
                    fetch: FileFetch::default(),
                    decoded_to: Mutex::new(0),
                    mtime: date,
                });
                (Node::File(f.clone()), f)
            });
            tree.dirs[dir].insert(leaf, Child::File(tree.files.len()));
            tree.files.push(file);
        }
        tree
    }

    fn list_orgs(&self) -> Result<Vec<DirEntry>, Errno> {
        let mut orgs = BTreeSet::new();
        for key in self.inner.store.refs(REPO_TYPE, None)? {
            orgs.insert(key.repo_id.namespace().to_string());
        }
        Ok(orgs
            .into_iter()
            .map(|org| {
                let ino = self.named(NameKey::Org(org.clone()), || Node::Org(org.as_str().into()));
                DirEntry { ino, kind: Kind::Dir, name: org }
            })
            .collect())
    }

    fn list_revs(&self, org: &str) -> Result<Vec<DirEntry>, Errno> {
        let mut out = Vec::new();
        for key in self.inner.store.refs(REPO_TYPE, Some(org))? {
            let name = key.repo_id.name();
            let label = key.to_string();
            let ino = self.named(NameKey::Listed(label), || Node::Listed);
            out.push(DirEntry {
                ino,
                kind: Kind::Dir,
                name: names::rev_dir_name(name, key.revision.as_str()),
            });
        }
        Ok(out)
    }
}

/// Creates the directories of `path` in the tree; returns the parent directory and the leaf name,
/// or `None` for a path that is not clean or collides with an existing entry.
fn place(tree: &mut Tree, path: &str) -> Option<(usize, String)> {
    let parts = names::path_components(path)?;
    let (leaf, dirs) = parts.split_last()?;
    let mut dir = 0;
    for part in dirs {
        dir = match tree.dirs[dir].get(*part) {
            Some(Child::Dir(d)) => *d,
            Some(Child::File(_)) => return None,
            None => {
                let d = tree.dirs.len();
                tree.dirs.push(BTreeMap::new());
                tree.dirs[dir].insert((*part).to_string(), Child::Dir(d));
                d
            }
        };
    }
    (!tree.dirs[dir].contains_key(*leaf)).then(|| (dir, (*leaf).to_string()))
}

fn lookup_in_tree(rev: &RevRoot, dir: usize, name: &str) -> Result<Entry, Errno> {
    let child = rev.tree.dirs.get(dir).and_then(|d| d.get(name)).ok_or(Errno::NotFound)?;
    let attr = match *child {
        Child::Dir(d) => dir_attr(rev.dir_inos[d], rev.tree.date),
        Child::File(f) => rev.tree.files[f].attr(),
    };
    Ok(Entry { attr, ttl: IMMUTABLE_TTL })
}

fn list_tree(rev: &RevRoot, dir: usize) -> Vec<DirEntry> {
    let Some(children) = rev.tree.dirs.get(dir) else { return Vec::new() };
    children
        .iter()
        .map(|(name, child)| match *child {
            Child::Dir(d) => DirEntry { ino: rev.dir_inos[d], kind: Kind::Dir, name: name.clone() },
            Child::File(f) => {
                DirEntry { ino: rev.tree.files[f].ino, kind: Kind::File, name: name.clone() }
            }
        })
        .collect()
}

fn dir_attr(ino: u64, mtime: u64) -> Attr {
    Attr { ino, kind: Kind::Dir, size: 0, mtime }
}

fn dir_entry(ino: u64, name: &str) -> DirEntry {
    DirEntry { ino, kind: Kind::Dir, name: name.to_string() }
}

/// How long ago a unix time was (zero if in the future).
fn age_of(unix_secs: u64) -> Duration {
    Duration::from_secs(tessera_store::clock::unix_secs().saturating_sub(unix_secs))
}
