//! Sync between the store and a Hub: `pull` (mirror a revision), `push` (publish a folder as a
//! commit, sending only what the remote lacks, planned by the pure [`plan`]), and the lazy
//! remote source the mount uses. Async code here reaches the synchronous store through
//! `spawn_blocking`.

#![forbid(unsafe_code)]

mod byteranges;
mod dedup;
mod error;
mod fetch;
mod lazy;
pub mod plan;
pub mod pull;
pub mod push;
mod remote;
mod scan;
mod shard_cache;
mod upload;

pub use error::{Absent, Corruption, SyncError};
pub use pull::{PullProgress, PullReport, pull, pull_offline};
pub use push::{PushOptions, PushProgress, PushReport, PushTimings, push};
pub use remote::HubSource;

use tessera_protocol::CommitId;
use tessera_store::{RevisionKey, Store, TreeEntry};

pub(crate) use tessera_store::clock::unix_secs as unix_now;

/// The commit and tree the store recorded for a revision (no network).
pub fn local_revision(store: &Store, key: &RevisionKey) -> Result<(CommitId, Vec<TreeEntry>), SyncError> {
    let commit = match (store.get_ref(key, None)?, key.as_commit()) {
        (Some((commit, _)), _) | (None, Some(commit)) => commit,
        (None, None) => return Err(SyncError::Offline(Absent::Revision(key.clone()))),
    };
    let tree = store.repo_tree(&key.at(commit.clone()), None)?.ok_or_else(|| SyncError::Offline(Absent::Tree(commit.clone())))?;
    Ok((commit, tree))
}
