//! The lazy remote behind a mount: a [`RemoteSource`] over the Hub API.
//!
//! `resolve` records a revision's tree without downloading Xet-backed files (their identity is
//! in the listing); small non-Xet files are fetched then, since their hash is only known from
//! their bytes. `fetch` streams what a read needs through [`LazyFiles`]: it returns as soon as
//! the read's bytes are in the store, while the streams it started go on to the ends of their
//! terms. A file is verified whole (its Xet hash over every chunk) once its last chunk arrives.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Corruption, SyncError};
use super::fetch::{FileFetcher, FileTarget, blocking, entry, is_small_plain};
use super::lazy::LazyFiles;
use tessera_hub::HubClient;
use tessera_protocol::CommitId;
use tessera_store::{CommitKey, RemoteSource, RevisionKey, SourceError, Store, TreeEntry};

/// Longest resolving a revision (listing its tree, fetching its small files) may take.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(90);

/// The fetchers of one mount, per repo and commit: each holds that revision's token.
type Fetchers = parking_lot::Mutex<HashMap<CommitKey, Arc<FileFetcher>>>;

/// A [`RemoteSource`] over a Hub; blocking methods run on the given runtime.
pub struct HubSource {
    hub: HubClient,
    store: Store,
    runtime: tokio::runtime::Handle,
    fetched: Arc<AtomicU64>,
    fetchers: Fetchers,
    lazy: Arc<LazyFiles>,
}

impl HubSource {
    /// A source fetching from `hub` into `store`, running async work on `runtime`; a transfer
    /// fails after `stall` without receiving a byte (never because it takes long).
    pub fn new(hub: HubClient, store: Store, runtime: tokio::runtime::Handle, stall: Duration) -> Self {
        let fetched = Arc::new(AtomicU64::new(0));
        let lazy = LazyFiles::new(hub.clone(), store.clone(), stall, fetched.clone());
        Self { hub, store, runtime, fetched, fetchers: parking_lot::Mutex::new(HashMap::new()), lazy }
    }

    /// Content bytes received so far.
    pub fn bytes_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    fn fetcher(&self, at: &CommitKey) -> Arc<FileFetcher> {
        let mut fetchers = self.fetchers.lock();
        let made = fetchers.entry(at.clone()).or_insert_with(|| {
            let (hub, store, fetched, lazy) = (self.hub.clone(), self.store.clone(), self.fetched.clone(), self.lazy.clone());
            Arc::new(FileFetcher::new(hub, store, at.clone(), fetched, lazy))
        });
        made.clone()
    }

    async fn resolve_async(&self, key: &RevisionKey) -> Result<CommitId, SyncError> {
        let started = std::time::Instant::now();
        let (commit, date) = self.hub.revision_dated(key.repo_type, &key.repo_id, &key.revision).await?;
        let at = key.at(commit.clone());
        let (store, at2) = (self.store.clone(), at.clone());
        // A commit's tree never changes: one already stored (a restart) is not listed again.
        let origin = self.hub.endpoint().to_string();
        let origin2 = origin.clone();
        let stored = blocking(move || Ok(store.repo_tree(&at2, Some(&origin2))?.is_some())).await?;
        let mut files = None;
        if !stored {
            let listing = self.hub.list_tree(key.repo_type, &key.repo_id, &commit).await?;
            let fetcher = self.fetcher(&at);
            let entries = lazy_entries(&fetcher, &listing.files).await?;
            files = Some(entries.len());
            let (store, origin2) = (self.store.clone(), origin.clone());
            blocking(move || Ok(store.put_repo_tree(&at, &entries, &origin2)?)).await?;
        }
        let (store, key2, commit2) = (self.store.clone(), key.clone(), commit.clone());
        blocking(move || {
            if let Some(date) = date {
                store.put_commit_date(&commit2, date)?;
            }
            Ok(store.put_ref(&key2, &commit2, super::unix_now(), Some(&origin))?)
        })
        .await?;
        tracing::debug!(
            revision = %key,
            %commit,
            commit_date = ?date,
            listed_files = ?files,
            total_ms = started.elapsed().as_millis(),
            "resolved (a tree already stored is not listed again)"
        );
        Ok(commit)
    }

    async fn fetch_async(&self, at: &CommitKey, e: &TreeEntry, offset: u64, len: u64) -> Result<(), SyncError> {
        let fetcher = self.fetcher(at);
        if !e.lfs {
            // Regular files were fetched whole when the revision was resolved; one that is
            // missing again (dropped by a failed check) comes back whole too.
            let target = FileTarget { path: e.path.clone(), size: e.size, git_oid: e.git_oid.clone(), sha256: None, xet: None };
            fetcher.ensure(&target).await?;
            return Ok(());
        }
        match self.lazy.fetch(&fetcher, e, offset, len).await {
            // An LFS file the CAS cannot reconstruct (a hub without Xet) comes whole, by sha256.
            Err(SyncError::Hub(tessera_hub::HubError::NotFound(_))) => {
                let target = FileTarget { path: e.path.clone(), size: e.size, git_oid: e.git_oid.clone(), sha256: Some(e.sha256), xet: None };
                fetcher.ensure(&target).await.map(|_| ())
            }
            Err(other) => Err(other),
            Ok(()) => self.verify_if_complete(e).await,
        }
    }

    /// Streamed chunks can only be checked as a file: once the last one is in, the file must
    /// hash to its Xet hash, or its chunks are forgotten (to be fetched again) and the read
    /// fails as corrupt rather than serving wrong bytes from then on.
    async fn verify_if_complete(&self, e: &TreeEntry) -> Result<(), SyncError> {
        let (store, file, path) = (self.store.clone(), e.file, e.path.clone());
        blocking(move || {
            let Some(record) = store.file(&file)? else { return Ok(()) };
            if !store.is_complete(&record)? || store.verify_file(&record)? {
                return Ok(());
            }
            store.forget_file_chunks(&record)?;
            Err(Corruption::XetHash { path, file }.into())
        })
        .await
    }
}

impl RemoteSource for HubSource {
    fn resolve(&self, key: &RevisionKey) -> Result<CommitId, SourceError> {
        // The timer must be created inside the runtime, hence the async block.
        let resolved = self.runtime.block_on(async { tokio::time::timeout(RESOLVE_DEADLINE, self.resolve_async(key)).await });
        match resolved {
            Ok(r) => r.map_err(to_source_error),
            Err(_) => Err(SourceError::Unavailable(format!("resolving {key}: no answer within {}s", RESOLVE_DEADLINE.as_secs()))),
        }
    }

    fn fetch(&self, at: &CommitKey, entry: &TreeEntry, offset: u64, len: u64) -> Result<(), SourceError> {
        self.runtime.block_on(self.fetch_async(at, entry, offset, len)).map_err(to_source_error)
    }

    fn progress(&self) -> u64 {
        self.bytes_fetched()
    }

    fn origin(&self) -> Option<String> {
        Some(self.hub.endpoint().to_string())
    }
}

/// Tree entries of listed files without fetching Xet-backed content (their identity is in the
/// listing). Other files are fetched, since only their bytes give it: small ones all together,
/// larger ones (LFS without Xet) one by one, streamed.
async fn lazy_entries(fetcher: &FileFetcher, files: &[tessera_protocol::TreeFile]) -> Result<Vec<TreeEntry>, SyncError> {
    let targets: Vec<FileTarget> = files.iter().map(super::pull::target).collect::<Result<_, _>>()?;
    let listed = |t: &FileTarget| t.xet.zip(t.sha256);
    let small_targets: Vec<FileTarget> = targets.iter().filter(|t| is_small_plain(t)).cloned().collect();
    let mut small_records = fetcher.ensure_small(&small_targets).await?.into_iter();
    let mut entries = Vec::with_capacity(targets.len());
    for t in &targets {
        let e = match listed(t) {
            Some((file, sha256)) => {
                TreeEntry { path: t.path.clone(), size: t.size, file, sha256, git_oid: t.git_oid.clone(), lfs: true }
            }
            None if is_small_plain(t) => {
                let record = small_records.next().ok_or_else(|| SyncError::Internal("small file record missing".into()))?;
                entry(t, &record)
            }
            None => entry(t, &fetcher.ensure(t).await?),
        };
        entries.push(e);
    }
    Ok(entries)
}

fn to_source_error(e: SyncError) -> SourceError {
    use tessera_hub::HubError;
    match e {
        SyncError::Hub(HubError::RepoNotFound(repo)) => SourceError::NotFound(repo.to_string()),
        SyncError::Hub(HubError::NotFound(m)) => SourceError::NotFound(m),
        SyncError::Hub(HubError::RevisionNotFound { repo, rev }) => SourceError::NotFound(format!("{rev} in {repo}")),
        SyncError::Corrupt(c) => SourceError::Corrupt(c.to_string()),
        SyncError::Offline(absent) => SourceError::Offline(absent.to_string()),
        SyncError::Store(s) => SourceError::Store(s),
        other => SourceError::Unavailable(other.to_string()),
    }
}
