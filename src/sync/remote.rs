//! The lazy remote behind a mount: a [`RemoteSource`] over the Hub API.
//!
//! `resolve` records a revision's tree without downloading Xet-backed files (their identity is
//! in the listing); small non-Xet files are fetched then, since their hash is only known from
//! their bytes. `fetch` brings in what a read needs: the whole file (verified against its Xet
//! hash and SHA-256) when the read starts at the beginning or covers most of it, otherwise only
//! the xorb ranges the read touches (decoded and indexed; the file is verified whole once the
//! rest arrives).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;


use super::SyncError;
use super::fetch::{FileFetcher, FileTarget, blocking, entry, is_small_plain};
use super::pull::parse_repo_type;
use crate::hash::FileHash;
use crate::hub::HubClient;
use crate::store::{FileRecord, RemoteSource, RevisionKey, SourceError, Store, Term, TreeEntry};

/// Longest a single resolve or fetch may take before the reader gets an error.
const DEADLINE: Duration = Duration::from_secs(90);

/// A [`RemoteSource`] over a Hub; blocking methods run on the given runtime.
pub struct HubSource {
    hub: HubClient,
    store: Store,
    runtime: tokio::runtime::Handle,
    fetched: Arc<AtomicU64>,
}

impl HubSource {
    /// A source fetching from `hub` into `store`, running async work on `runtime`.
    pub fn new(hub: HubClient, store: Store, runtime: tokio::runtime::Handle) -> Self {
        Self { hub, store, runtime, fetched: Arc::new(AtomicU64::new(0)) }
    }

    /// Content bytes received so far.
    pub fn bytes_fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn run<T>(&self, what: &str, fut: impl std::future::Future<Output = Result<T, SyncError>>) -> Result<T, SourceError> {
        // The timer must be created inside the runtime, hence the async block.
        match self.runtime.block_on(async { tokio::time::timeout(DEADLINE, fut).await }) {
            Ok(r) => r.map_err(to_source_error),
            Err(_) => Err(SourceError::Unavailable(format!("{what}: no answer within {}s", DEADLINE.as_secs()))),
        }
    }

    fn fetcher(&self, key: &RevisionKey, commit: &str) -> Result<FileFetcher, SyncError> {
        Ok(FileFetcher::new(
            self.hub.clone(),
            self.store.clone(),
            parse_repo_type(&key.repo_type)?,
            key.repo_id.clone(),
            commit.to_string(),
            self.fetched.clone(),
        ))
    }

    async fn resolve_async(&self, key: &RevisionKey) -> Result<String, SyncError> {
        let started = std::time::Instant::now();
        let repo_type = parse_repo_type(&key.repo_type)?;
        let commit = self.hub.revision_commit(repo_type, &key.repo_id, &key.revision).await?;
        let (store, commit2) = (self.store.clone(), commit.clone());
        // A commit's tree never changes: one already stored (a restart) is not listed again.
        let stored = blocking(move || Ok(store.tree(&commit2)?.is_some())).await?;
        let mut files = None;
        if !stored {
            let listing = self.hub.list_tree(repo_type, &key.repo_id, &commit).await?;
            let fetcher = self.fetcher(key, &commit)?;
            let entries = lazy_entries(&fetcher, &listing.files).await?;
            files = Some(entries.len());
            let (store, commit2) = (self.store.clone(), commit.clone());
            blocking(move || Ok(store.put_tree(&commit2, &entries)?)).await?;
        }
        let (store, key2, commit2) = (self.store.clone(), key.clone(), commit.clone());
        blocking(move || {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            store.put_ref(&key2.ref_key(), &commit2, now)?;
            Ok(())
        })
        .await?;
        tracing::debug!(
            revision = %key.ref_key(),
            %commit,
            listed_files = ?files,
            total_ms = started.elapsed().as_millis(),
            "resolved (a tree already stored is not listed again)"
        );
        Ok(commit)
    }

    async fn fetch_async(&self, key: &RevisionKey, file: &FileHash, offset: u64, len: u64) -> Result<(), SyncError> {
        let (commit, tree) = super::local_revision(&self.store, key)?;
        let e = tree
            .iter()
            .find(|e| e.file == *file)
            .cloned()
            .ok_or_else(|| SyncError::Offline(format!("file {file} in {}", key.ref_key())))?;
        let fetcher = self.fetcher(key, &commit)?;
        let target = FileTarget { path: e.path.clone(), size: e.size, git_oid: e.git_oid.clone(), sha256: e.lfs.then_some(e.sha256), xet: Some(e.file) };
        let whole = offset == 0 || len.saturating_mul(2) >= e.size;
        if whole {
            fetcher.ensure(&target).await?;
            return Ok(());
        }
        fetcher.fetch_range(&target, *file, offset, len).await?;
        self.verify_if_complete(*file).await
    }

    /// Range fetches index chunks that can only be checked as a file: once the last one is in,
    /// the file must hash to its Xet hash, or its chunks are forgotten (to be fetched again) and
    /// the read fails as corrupt rather than serving wrong bytes from then on.
    async fn verify_if_complete(&self, file: FileHash) -> Result<(), SyncError> {
        let store = self.store.clone();
        blocking(move || {
            let Some(record) = store.file(&file)? else { return Ok(()) };
            if !store.is_complete(&record)? || store.verify_file(&record)? {
                return Ok(());
            }
            store.forget_file_chunks(&record)?;
            Err(SyncError::Corrupt(format!("file {file}: the fetched ranges do not hash to the file; dropped them")))
        })
        .await
    }
}

impl RemoteSource for HubSource {
    fn resolve(&self, key: &RevisionKey) -> Result<String, SourceError> {
        self.run(&format!("resolving {}", key.ref_key()), self.resolve_async(key))
    }

    fn fetch(&self, key: &RevisionKey, file: &FileHash, offset: u64, len: u64) -> Result<(), SourceError> {
        self.run(&format!("fetching {file}"), self.fetch_async(key, file, offset, len))
    }
}

/// Tree entries of listed files without fetching Xet-backed content (their identity is in the
/// listing). Other files are fetched, since only their bytes give it: small ones all together,
/// larger ones (LFS without Xet) one by one, streamed.
async fn lazy_entries(fetcher: &FileFetcher, files: &[crate::protocol::TreeFile]) -> Result<Vec<TreeEntry>, SyncError> {
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

impl FileFetcher {
    /// Fetches only the xorb ranges that `[offset, offset + len)` of a Xet file needs.
    pub(crate) async fn fetch_range(&self, t: &FileTarget, xet: FileHash, offset: u64, len: u64) -> Result<(), SyncError> {
        let recon = self.reconstruction(xet).await?;
        self.ensure_record(t, xet, &recon.terms).await?;
        let wanted = units_for_range(&recon, offset, len);
        let staged = self.stage_units(wanted).await?;
        let store = self.store_handle();
        let paths: Vec<_> = staged.iter().map(|f| f.staged.clone()).collect();
        let result = blocking(move || store.adopt_unverified(&staged).map_err(super::fetch::fetched_error)).await;
        for p in paths {
            let _ = std::fs::remove_file(p);
        }
        result.map(|_| ())
    }

    /// Records the file's terms (before its chunks arrive) so reads can plan against them.
    async fn ensure_record(&self, t: &FileTarget, xet: FileHash, terms: &[crate::protocol::ReconstructionTerm]) -> Result<(), SyncError> {
        let store = self.store_handle();
        let record = FileRecord {
            hash: xet,
            size: t.size,
            sha256: t.sha256.unwrap_or_default(),
            terms: terms.iter().map(|r| Term { xorb: r.hash, chunk_start: r.range.start, chunk_end: r.range.end, unpacked_len: r.unpacked_length }).collect(),
        };
        blocking(move || {
            if store.file(&record.hash)?.is_none() {
                store.put_file(&record)?;
            }
            Ok(())
        })
        .await
    }
}

/// Fetch units overlapping the chunks that hold bytes `[offset, offset + len)`.
fn units_for_range(recon: &crate::hub::Reconstruction, offset: u64, len: u64) -> Vec<crate::hub::FetchUnit> {
    let end = offset.saturating_add(len);
    let mut pos = 0u64;
    let mut wanted: Vec<(crate::hash::XorbHash, u32, u32)> = Vec::new();
    for t in &recon.terms {
        let t_end = pos + u64::from(t.unpacked_length);
        if t_end > offset && pos < end {
            wanted.push((t.hash, t.range.start, t.range.end));
        }
        pos = t_end;
    }
    recon
        .units
        .iter()
        .filter(|u| wanted.iter().any(|(x, s, e)| *x == u.xorb && u.chunks.start < *e && *s < u.chunks.end))
        .cloned()
        .collect()
}

fn to_source_error(e: SyncError) -> SourceError {
    use crate::hub::HubError;
    match e {
        SyncError::Hub(HubError::RepoNotFound(m)) | SyncError::Hub(HubError::NotFound(m)) => SourceError::NotFound(m),
        SyncError::Hub(HubError::RevisionNotFound { repo, rev }) => SourceError::NotFound(format!("{rev} in {repo}")),
        SyncError::Corrupt(m) => SourceError::Corrupt(m),
        SyncError::Offline(m) => SourceError::Offline(m),
        SyncError::Store(s) => SourceError::Store(s),
        other => SourceError::Unavailable(other.to_string()),
    }
}
