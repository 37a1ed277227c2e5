//! Sync between the store and a Hub: `pull` (mirror a revision), `push` (publish a folder as a
//! commit, sending only what the remote lacks, planned by the pure [`plan`]), and the lazy
//! remote source the mount uses. Async code here reaches the synchronous store through
//! `spawn_blocking`.

#![forbid(unsafe_code)]

mod byteranges;
mod dedup;
mod fetch;
mod lazy;
pub mod plan;
pub mod pull;
pub mod push;
mod remote;
mod scan;
mod shard_cache;
mod upload;

pub use pull::{PullProgress, PullReport, pull, pull_offline};
pub use push::{PushOptions, PushProgress, PushReport, PushTimings, push};
pub use remote::HubSource;

use tessera_hub::HubError;
use tessera_protocol::CommitId;
use tessera_store::{RevisionKey, Store, StoreError, TreeEntry};

/// What can go wrong syncing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The Hub answered with an error or could not be reached.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Fetched bytes do not verify (they were not stored).
    #[error("corrupt data from the remote: {0}")]
    Corrupt(String),
    /// The Hub sent something outside the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The remote offers no Xet storage (its token route is missing): push falls back to LFS.
    #[error("the remote offers no Xet storage: {0}")]
    NoXet(String),
    /// Offline and the store lacks it.
    #[error("offline, and the store does not hold {0}")]
    Offline(String),
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file changed while it was being pushed (its bytes no longer hash to what was planned);
    /// nothing inconsistent was sent.
    #[error("{} changed while it was being pushed; run the push again", path.display())]
    Changed {
        /// The file.
        path: std::path::PathBuf,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The remote changed under us (a branch moved during a push); nothing was overwritten.
    #[error("{0}")]
    Conflict(String),
    /// A bug (a task panicked).
    #[error("internal: {0}")]
    Internal(String),
}

pub(crate) use tessera_store::clock::unix_secs as unix_now;

impl SyncError {
    /// An I/O error on `path`, keeping the OS error as the source.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
        move |source| SyncError::Io { path: path.to_path_buf(), source }
    }
}

/// The commit and tree the store recorded for a revision (no network).
pub fn local_revision(store: &Store, key: &RevisionKey) -> Result<(CommitId, Vec<TreeEntry>), SyncError> {
    let commit = match (store.get_ref(&key.ref_key(), None)?, key.as_commit()) {
        (Some((commit, _)), _) | (None, Some(commit)) => commit,
        (None, None) => return Err(SyncError::Offline(format!("revision {} of {} {}", key.revision, key.repo_type, key.repo_id))),
    };
    let repo = key.repo_key();
    let tree = store.repo_tree(&repo, &commit, None)?.ok_or_else(|| SyncError::Offline(format!("the tree of commit {commit}")))?;
    Ok((commit, tree))
}
