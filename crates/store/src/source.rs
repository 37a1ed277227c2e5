//! The seam between local readers (the mount, `cat`, `export`) and a remote: a [`RemoteSource`]
//! brings revisions and bytes into the store on demand. `sync` implements it over the Hub API;
//! the mount only sees this trait, so it never depends on the network code.

use super::TreeEntry;
use tessera_protocol::{CommitId, IdError, RepoId, RepoType, Revision};

/// Identifies a repo revision as users write it: `model`/`dataset`/`space`, `org/name`, and a
/// branch, tag, commit id or `refs/pr/N`. Parsed once, where it enters (a CLI argument, a mount
/// path, a stored ref), and carried typed from there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RevisionKey {
    /// Model, dataset or Space.
    pub repo_type: RepoType,
    /// `org/name`.
    pub repo_id: RepoId,
    /// Branch, tag, 40-hex commit or `refs/pr/N`.
    pub revision: Revision,
}

impl RevisionKey {
    /// A key whose revision is checked by [`tessera_protocol::validate_revision`].
    pub fn new(repo_type: RepoType, repo_id: RepoId, revision: &str) -> Result<Self, IdError> {
        Ok(Self { repo_type, repo_id, revision: Revision::parse(revision)? })
    }

    /// The same repo at the commit the revision resolved to.
    pub fn at(&self, commit: CommitId) -> CommitKey {
        CommitKey { repo_type: self.repo_type, repo_id: self.repo_id.clone(), commit }
    }

    /// The commit the revision names when it is a commit id (no lookup).
    pub fn as_commit(&self) -> Option<CommitId> {
        self.revision.as_commit()
    }
}

/// `model/org/name@main`, as users write it (messages and logs; the store's keys are spelled
/// in `keys.rs`).
impl std::fmt::Display for RevisionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.repo_type, self.repo_id, self.revision)
    }
}

/// A repo at one commit: what a file of a mounted revision belongs to, so a fetch names the
/// commit it reads (never a branch that may have moved since the file was listed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitKey {
    /// Model, dataset or Space.
    pub repo_type: RepoType,
    /// `org/name`.
    pub repo_id: RepoId,
    /// The commit.
    pub commit: CommitId,
}

impl CommitKey {
    /// The commit as a revision of its repo (what [`RemoteSource::resolve`] takes).
    pub fn as_revision(&self) -> RevisionKey {
        RevisionKey { repo_type: self.repo_type, repo_id: self.repo_id.clone(), revision: self.commit.clone().into() }
    }
}

/// `model/org/name@{commit}`, as users write it.
impl std::fmt::Display for CommitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.repo_type, self.repo_id, self.commit)
    }
}

/// Why a remote could not deliver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The repo, revision or file does not exist remotely (ENOENT for the mount).
    #[error("not found: {0}")]
    NotFound(String),
    /// The remote could not be reached or kept failing after retries (EIO, never cached).
    #[error("remote unavailable: {0}")]
    Unavailable(String),
    /// The remote sent bytes that do not verify (EIO).
    #[error("remote sent corrupt data: {0}")]
    Corrupt(String),
    /// Offline mode and the store lacks it.
    #[error("offline and not in the store: {0}")]
    Offline(String),
    /// Storing what was fetched failed.
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// Fills the store from somewhere else, on demand. Blocking; called from FUSE worker threads.
pub trait RemoteSource: Send + Sync {
    /// Resolves a revision to a commit id and records its tree in the store
    /// (`Store::put_tree`, `Store::put_ref`), so later lookups are local.
    fn resolve(&self, key: &RevisionKey) -> Result<CommitId, SourceError>;

    /// Makes bytes `[offset, offset + len)` of a file present in the store (the file's record
    /// included). `repo` is the repo at the commit the file belongs to, and `entry` its tree entry,
    /// so a source needs no lookup to know what it fetches. Returns as soon as those bytes are
    /// durable and indexed; it may go on fetching more in the background (read-ahead). A source
    /// gives up only when its transfer makes no progress for its stall timeout, never because
    /// the whole transfer takes long.
    fn fetch(&self, repo: &CommitKey, entry: &TreeEntry, offset: u64, len: u64) -> Result<(), SourceError>;

    /// The endpoint trees and refs from this remote are recorded under (`Store::repo_tree`):
    /// a reader of this remote never uses what another one listed. `None`: any.
    fn origin(&self) -> Option<String> {
        None
    }

    /// Content bytes received from the remote so far. Waiters use it to tell a slow transfer
    /// (progress) from a stalled one.
    fn progress(&self) -> u64 {
        0
    }
}

/// A [`RemoteSource`] that is another store on this machine: `resolve` copies a ref's commit and
/// its tree, `fetch` copies the chunks of each term overlapping the range (from the term's first
/// chunk: the store places a chunk by the lengths of those before it in its term, as a real
/// remote's fetch must too). A read-only store shared between machines can back a mount this
/// way, and tests put failure modes around it.
pub struct StoreSource {
    src: super::Store,
    dst: super::Store,
}

impl StoreSource {
    /// Serves `dst`'s misses from `src`.
    pub fn new(src: &super::Store, dst: &super::Store) -> Self {
        Self { src: src.clone(), dst: dst.clone() }
    }

    fn copy_term(&self, t: &super::Term, to: u64, mut pos: u64) -> Result<(), SourceError> {
        let meta = self.src.xorb_meta(&t.xorb)?.ok_or_else(|| SourceError::NotFound(format!("xorb {}", t.xorb)))?;
        let (mut first, mut last, mut hashes) = (None, None, Vec::new());
        for idx in t.chunk_start..t.chunk_end {
            if pos >= to {
                break;
            }
            let c = meta.chunks.get(idx as usize).copied().flatten().ok_or_else(|| SourceError::NotFound(format!("chunk {idx} of xorb {}", t.xorb)))?;
            first.get_or_insert(c);
            last = Some(c);
            hashes.push(c.hash);
            pos += u64::from(c.unpacked_len);
        }
        let (Some(a), Some(b)) = (first, last) else { return Ok(()) };
        let raw = self.src.read_xorb_bytes(&t.xorb, u64::from(a.byte_start), u64::from(b.byte_end))?;
        self.dst.put_xorb_range(t.xorb, t.chunk_start, a.byte_start, &raw, &hashes)?;
        Ok(())
    }
}

impl RemoteSource for StoreSource {
    fn resolve(&self, key: &RevisionKey) -> Result<CommitId, SourceError> {
        let commit = match self.src.get_ref(key, None)? {
            Some((c, _)) => c,
            None => key.as_commit().ok_or_else(|| SourceError::NotFound(key.to_string()))?,
        };
        let tree = self.src.tree(&commit)?.ok_or_else(|| SourceError::NotFound(commit.to_string()))?;
        self.dst.put_tree(&commit, &tree)?;
        if key.as_commit().is_none() {
            self.dst.put_ref(key, &commit, crate::clock::unix_secs(), None)?;
        }
        Ok(commit)
    }

    fn fetch(&self, _repo: &CommitKey, entry: &TreeEntry, offset: u64, len: u64) -> Result<(), SourceError> {
        let file = &entry.file;
        let rec = self.src.file(file)?.ok_or_else(|| SourceError::NotFound(file.to_string()))?;
        let mut pos = 0u64;
        for t in &rec.terms {
            let end = pos + u64::from(t.unpacked_len);
            if end > offset && pos < offset + len {
                self.copy_term(t, offset + len, pos)?;
            }
            pos = end;
        }
        self.dst.put_file(&rec)?;
        Ok(())
    }
}
