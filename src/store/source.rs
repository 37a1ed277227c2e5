//! The seam between local readers (the mount, `cat`, `export`) and a remote: a [`RemoteSource`]
//! brings revisions and bytes into the store on demand. `sync` implements it over the Hub API;
//! the mount only sees this trait, so it never depends on the network code.

use super::TreeEntry;

/// Identifies a repo revision as users write it: `model`/`dataset`/`space`, `org/name`, and a
/// branch, tag, commit id or `refs/pr/N`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RevisionKey {
    /// `model`, `dataset` or `space`.
    pub repo_type: String,
    /// `org/name` (or `name`).
    pub repo_id: String,
    /// Branch, tag, 40-hex commit or `refs/pr/N`.
    pub revision: String,
}

impl RevisionKey {
    /// The key under which the store records this ref (`Store::put_ref`): `model/org/name@main`.
    pub fn ref_key(&self) -> String {
        format!("{}/{}@{}", self.repo_type, self.repo_id, self.revision)
    }

    /// Parses a key made by [`RevisionKey::ref_key`].
    pub fn from_ref_key(key: &str) -> Option<Self> {
        let (repo_type, rest) = key.split_once('/')?;
        let (repo_id, revision) = rest.rsplit_once('@')?;
        Some(Self { repo_type: repo_type.into(), repo_id: repo_id.into(), revision: revision.into() })
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
    fn resolve(&self, key: &RevisionKey) -> Result<String, SourceError>;

    /// Makes bytes `[offset, offset + len)` of a file present in the store (the file's record
    /// included). `repo.revision` is the commit the file belongs to, and `entry` its tree entry,
    /// so a source needs no lookup to know what it fetches. Returns as soon as those bytes are
    /// durable and indexed; it may go on fetching more in the background (read-ahead). A source
    /// gives up only when its transfer makes no progress for its stall timeout, never because
    /// the whole transfer takes long.
    fn fetch(&self, repo: &RevisionKey, entry: &TreeEntry, offset: u64, len: u64) -> Result<(), SourceError>;

    /// Content bytes received from the remote so far. Waiters use it to tell a slow transfer
    /// (progress) from a stalled one.
    fn progress(&self) -> u64 {
        0
    }
}
