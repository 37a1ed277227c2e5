//! `pull`: bring one revision of a Hub repo into the store, fetching only what is missing.
//!
//! Resolve the revision, list the tree, then per file: skip it when the store already holds it
//! whole; Xet-backed files are rebuilt from their reconstruction, downloading only the xorb
//! ranges whose chunks are absent; other files are downloaded (resumably) and chunked locally.
//! Every file is verified (Xet hash, SHA-256 or git blob id) before it is indexed; the tree and
//! the ref are recorded last, so an interrupted pull leaves what it finished and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

use super::fetch::{FileFetcher, FileTarget, entry, is_small_plain};
use super::{Absent, SyncError};
use tessera_hub::HubClient;
use tessera_protocol::{CommitId, RepoId, Revision, TreeFile};
use tessera_store::{RevisionKey, Store, TreeEntry};

/// Files fetched at the same time.
const FILE_CONCURRENCY: usize = 4;

/// The `--json` summary of a pull.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullReport {
    /// `org/name`.
    pub repo: RepoId,
    /// The revision asked for.
    pub revision: Revision,
    /// The commit it resolved to.
    pub commit: CommitId,
    /// Files in the revision.
    pub files: usize,
    /// Sum of their sizes.
    pub bytes_total: u64,
    /// Content bytes received from the network (0 when everything was local).
    pub bytes_fetched: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Progress callbacks (the CLI draws a bar; tests ignore them).
pub trait PullProgress: Send + Sync {
    /// The revision is listed: this many files and bytes.
    fn start(&self, files: usize, bytes: u64);
    /// `n` more bytes are accounted for (fetched or found locally).
    fn advance(&self, n: u64);
}

impl PullProgress for () {
    fn start(&self, _: usize, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// Pulls `key` from `hub` into `store`; with `pin`, the revision is pinned (kept through `gc`
/// and eviction) as soon as it is recorded.
pub async fn pull(
    hub: &HubClient,
    store: &Store,
    key: &RevisionKey,
    pin: bool,
    progress: &dyn PullProgress,
) -> Result<PullReport, SyncError> {
    let started = Instant::now();
    let (commit, date) = hub.revision_dated(key.repo_type, &key.repo_id, &key.revision).await?;
    let listing = hub.list_tree(key.repo_type, &key.repo_id, &commit).await?;
    let bytes_total: u64 = listing.files.iter().map(|f| f.size).sum();
    progress.start(listing.files.len(), bytes_total);
    let fetched = Arc::new(AtomicU64::new(0));
    let lazy = super::lazy::LazyFiles::new(
        hub.clone(),
        store.clone(),
        hub.retry_policy().stall_timeout,
        fetched.clone(),
    );
    let fetcher =
        FileFetcher::new(hub.clone(), store.clone(), key.at(commit.clone()), fetched.clone(), lazy);
    let targets: Vec<FileTarget> = listing.files.iter().map(target).collect::<Result<_, _>>()?;
    // In a capped store, what this pull brings must not be evicted before it is pinned.
    let _hold = store.hold(&targets.iter().filter_map(|t| t.xet).collect::<Vec<_>>());
    // Small regular files in one batch (one ingest session, one index write), the rest streamed.
    let (small, large): (Vec<FileTarget>, Vec<FileTarget>) =
        targets.into_iter().partition(is_small_plain);
    let small_records = fetcher.ensure_small(&small).await?;
    progress.advance(small.iter().map(|t| t.size).sum());
    let mut entries: Vec<TreeEntry> =
        small.iter().zip(&small_records).map(|(t, r)| entry(t, r)).collect();
    let large_entries: Vec<TreeEntry> = futures::stream::iter(large.iter())
        .map(|t| {
            let fetcher = &fetcher;
            async move {
                let record = fetcher.ensure(t).await?;
                progress.advance(t.size);
                Ok::<_, SyncError>(entry(t, &record))
            }
        })
        .buffered(FILE_CONCURRENCY)
        .try_collect()
        .await?;
    entries.extend(large_entries);
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let recorded = Recorded { commit: &commit, date, origin: hub.endpoint(), pin };
    record(store, key, recorded, entries).await?;
    Ok(PullReport {
        repo: key.repo_id.clone(),
        revision: key.revision.clone(),
        commit,
        files: listing.files.len(),
        bytes_total,
        bytes_fetched: fetched.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Pull with no network: succeeds only if the store already holds the revision whole (and
/// then pins it, with `pin`).
pub fn pull_offline(store: &Store, key: &RevisionKey, pin: bool) -> Result<PullReport, SyncError> {
    let started = Instant::now();
    let (commit, tree) = super::local_revision(store, key)?;
    for e in &tree {
        let absent =
            || SyncError::Offline(Absent::File { path: e.path.clone(), revision: key.clone() });
        let record = store.file(&e.file)?.ok_or_else(absent)?;
        if !store.is_complete(&record)? {
            return Err(SyncError::Offline(Absent::Part { path: e.path.clone() }));
        }
    }
    if pin {
        store.pin_revision(&key.at(commit.clone()))?;
    }
    Ok(PullReport {
        repo: key.repo_id.clone(),
        revision: key.revision.clone(),
        commit,
        files: tree.len(),
        bytes_total: tree.iter().map(|e| e.size).sum(),
        bytes_fetched: 0,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What a pull learnt about the revision it records.
struct Recorded<'a> {
    commit: &'a CommitId,
    date: Option<u64>,
    /// The hub it came from.
    origin: &'a str,
    pin: bool,
}

/// Records the tree, then the ref (and the commit id as a ref of itself).
async fn record(
    store: &Store,
    key: &RevisionKey,
    what: Recorded<'_>,
    entries: Vec<TreeEntry>,
) -> Result<(), SyncError> {
    let store = store.clone();
    let key = key.clone();
    let (commit, date, origin, pin) =
        (what.commit.clone(), what.date, what.origin.to_string(), what.pin);
    tokio::task::spawn_blocking(move || {
        // What was streamed in is durable and indexed before the ref says the revision is here.
        store.flush()?;
        let at = key.at(commit.clone());
        store.put_repo_tree(&at, &entries, &origin)?;
        if pin {
            store.pin_revision(&at)?;
        }
        if let Some(date) = date {
            store.put_commit_date(&commit, date)?;
        }
        let now = super::unix_now();
        store.put_ref(&key, &commit, now, Some(&origin))?;
        store.put_ref(&at.as_revision(), &commit, now, Some(&origin))?;
        Ok::<_, SyncError>(())
    })
    .await
    .map_err(|e| SyncError::Internal(e.to_string()))?
}

/// What the tree listing says a file must be.
pub(crate) fn target(f: &TreeFile) -> Result<FileTarget, SyncError> {
    let xet = match &f.xet_hash {
        Some(h) => Some(
            tessera_xet::hash::FileHash::from_hex(h)
                .map_err(|e| SyncError::Protocol(format!("{}: {e}", f.path)))?,
        ),
        None => None,
    };
    let sha256 = match &f.lfs {
        Some(l) => Some(
            tessera_xet::hash::Sha256::from_hex(l.oid.as_str())
                .map_err(|e| SyncError::Protocol(format!("{}: {e}", f.path)))?,
        ),
        None => None,
    };
    tessera_protocol::normalize_repo_path(&f.path)
        .map_err(|e| SyncError::Protocol(format!("unsafe path {:?}: {e}", f.path)))?;
    Ok(FileTarget { path: f.path.clone(), size: f.size, git_oid: f.oid.clone(), sha256, xet })
}
