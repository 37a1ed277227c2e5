//! Fetching one file into the store: from its Xet reconstruction (only the absent ranges) or,
//! for files the CAS does not hold, by a plain resumable download chunked locally.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use super::lazy::LazyFiles;
use super::{Corruption, SyncError};
use tessera_hub::{HubClient, Reconstruction};
use tessera_protocol::{GitOid, Revision, XetTokenResponse};
use tessera_store::{CommitKey, FileRecord, Sha256Walk, Store, Term, TreeEntry};
use tessera_xet::hash::{FileHash, Sha256};

/// Attempts at a file whose fetched bytes do not verify (a flaky proxy), before giving up. A
/// corrupting middlebox that hits one request in nine (the fault proxy of the tests) can hit the
/// same file three times running once the other files are done; five attempts ride that out.
const VERIFY_ATTEMPTS: u32 = 5;

/// What a file of a revision must be.
#[derive(Debug, Clone)]
pub(crate) struct FileTarget {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) git_oid: GitOid,
    /// LFS oid, for LFS files.
    pub(crate) sha256: Option<Sha256>,
    /// Xet hash, for files the CAS can reconstruct.
    pub(crate) xet: Option<FileHash>,
}

/// Fetches files of one revision, sharing a CAS token and a fetched-bytes counter.
pub(crate) struct FileFetcher {
    hub: HubClient,
    store: Store,
    /// The repo at the commit its files belong to.
    at: CommitKey,
    token: Mutex<Option<XetTokenResponse>>,
    fetched: Arc<AtomicU64>,
    lazy: Arc<LazyFiles>,
}

impl FileFetcher {
    /// Fetches files of `repo_id` at `commit`, streaming Xet files through `lazy` (whose
    /// single flight it shares) and counting received bytes into `fetched`.
    pub(crate) fn new(
        hub: HubClient,
        store: Store,
        at: CommitKey,
        fetched: Arc<AtomicU64>,
        lazy: Arc<LazyFiles>,
    ) -> Self {
        Self { hub, store, at, token: Mutex::new(None), fetched, lazy }
    }

    /// Makes the whole file present and verified; returns its tree entry.
    pub(crate) async fn ensure(&self, t: &FileTarget) -> Result<FileRecord, SyncError> {
        if let Some(record) = self.local(t).await? {
            return Ok(record);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match t.xet {
                Some(xet) => self.fetch_xet(t, xet).await,
                None => self.fetch_plain(t).await,
            };
            match result {
                Err(e) if attempt < VERIFY_ATTEMPTS && worth_fetching_again(&e) => {
                    tracing::warn!(path = %t.path, error = %e, "fetching the file again");
                }
                Ok(record) => {
                    if t.sha256.is_none() {
                        let (store, oid, hash) =
                            (self.store.clone(), t.git_oid.clone(), record.hash);
                        blocking(move || store.put_git_oid(&oid, &hash).map_err(SyncError::from))
                            .await?;
                    }
                    return Ok(record);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The file's record if the store holds all of it already.
    async fn local(&self, t: &FileTarget) -> Result<Option<FileRecord>, SyncError> {
        let (store, t) = (self.store.clone(), t.clone());
        blocking(move || {
            let hash = match (t.xet, t.sha256) {
                (Some(x), _) => Some(x),
                (None, Some(sha)) => store.file_by_sha256(&sha)?,
                (None, None) => store.file_by_git_oid(&t.git_oid)?,
            };
            let Some(hash) = hash else { return Ok(None) };
            match store.file(&hash)? {
                Some(r) if r.size == t.size && store.is_complete(&r)? => Ok(Some(r)),
                _ => Ok(None),
            }
        })
        .await
    }

    /// A CAS read token, refreshed 30 s before it expires.
    async fn token(&self) -> Result<XetTokenResponse, SyncError> {
        let mut slot = self.token.lock().await;
        let now = super::unix_now();
        if let Some(t) = slot.as_ref().filter(|t| t.exp > now + 30) {
            return Ok(t.clone());
        }
        let at = &self.at;
        let fresh = self
            .hub
            .xet_read_token(at.repo_type, &at.repo_id, &Revision::from(at.commit.clone()))
            .await?;
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// The file's reconstruction, with the unix time its URLs stop working (the token's).
    pub(crate) async fn reconstruction_expiring(
        &self,
        xet: FileHash,
    ) -> Result<(Reconstruction, u64), SyncError> {
        let token = self.token().await?;
        Ok((self.hub.reconstruction(&token.cas_url, &token.access_token, &xet).await?, token.exp))
    }

    /// Streams a Xet file's missing chunks into the store (each batch readable as it lands and
    /// indexed once durable, so an interrupted pull resumes from what was indexed; `pull`
    /// flushes the rest before it records the revision), hashing its bytes (SHA-256) in file
    /// order as they land, then checks the whole file: its Xet hash over every chunk and the
    /// SHA-256. A file that fails is dropped from the index (its chunks fetched again by the
    /// next attempt).
    async fn fetch_xet(&self, t: &FileTarget, xet: FileHash) -> Result<FileRecord, SyncError> {
        let e = TreeEntry {
            path: t.path.clone(),
            size: t.size,
            file: xet,
            sha256: t.sha256.unwrap_or_default(),
            git_oid: t.git_oid.clone(),
            lfs: true,
        };
        let fetched = tokio::sync::watch::Sender::new(false);
        let fetch = async {
            let result = self.lazy.fetch_whole(self, &e).await;
            fetched.send_replace(true);
            self.lazy.changed().notify_waiters();
            result
        };
        let (result, walk) = tokio::join!(fetch, self.hash_as_it_lands(xet, fetched.subscribe()));
        result?;
        let (store, expected, path) = (self.store.clone(), t.sha256, t.path.clone());
        blocking(move || {
            let record = store
                .file(&xet)?
                .ok_or_else(|| SyncError::Internal(format!("{path}: no record after the fetch")))?;
            let mut walk = walk?;
            let whole = store.verify_file(&record)? && store.sha256_advance(&record, &mut walk)?;
            match checked_sha256(path, xet, whole.then(|| walk.finish()), expected) {
                Ok(sha) => {
                    let record = FileRecord { sha256: sha, ..record };
                    store.put_file(&record)?;
                    Ok(record)
                }
                Err(bad) => {
                    store.forget_file_chunks(&record)?;
                    Err(bad.into())
                }
            }
        })
        .await
    }

    /// Hashes a file's bytes in order while [`LazyFiles::fetch_whole`] brings them, on the
    /// other core, until `fetched` says the fetch ended; returns how far it got.
    async fn hash_as_it_lands(
        &self,
        xet: FileHash,
        mut fetched: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Sha256Walk, SyncError> {
        let mut walk = Sha256Walk::default();
        // The file's record, read once the fetch has recorded it (its terms do not change).
        let mut record: Option<FileRecord> = None;
        loop {
            let changed = self.lazy.changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let ended = *fetched.borrow_and_update();
            let store = self.store.clone();
            let (w, r, complete) = blocking(move || {
                let record = match record {
                    Some(r) => Some(r),
                    None => store.file(&xet)?,
                };
                let complete = match &record {
                    Some(r) => store.sha256_advance(r, &mut walk)?,
                    None => false,
                };
                Ok((walk, record, complete))
            })
            .await?;
            (walk, record) = (w, r);
            if complete || ended {
                return Ok(walk);
            }
            tokio::select! {
                () = &mut changed => {}
                _ = fetched.changed() => {}
            }
        }
    }

    /// Small regular (non-Xet) files, fetched into memory in parallel and stored in one ingest
    /// session: one xorb write and one index batch for all of them instead of a few fsyncs
    /// each (resolving a lazy revision waits on these; a dozen config and tokenizer files cost
    /// ~0.7 s one by one here). Falls back to [`FileFetcher::ensure`] per file when anything
    /// does not verify, so retries stay per file. Records come back in the order of `targets`.
    pub(crate) async fn ensure_small(
        &self,
        targets: &[FileTarget],
    ) -> Result<Vec<FileRecord>, SyncError> {
        let mut found: Vec<Option<FileRecord>> = Vec::with_capacity(targets.len());
        for t in targets {
            found.push(self.local(t).await?);
        }
        let missing: Vec<&FileTarget> =
            targets.iter().zip(&found).filter(|(_, r)| r.is_none()).map(|(t, _)| t).collect();
        if !missing.is_empty() {
            let bodies: Vec<(FileTarget, Vec<u8>)> =
                futures::stream::iter(missing)
                    .map(|t| async move {
                        Ok::<_, SyncError>((t.clone(), self.download_small(t).await?))
                    })
                    .buffered(8)
                    .try_collect()
                    .await?;
            let store = self.store.clone();
            let stored = blocking(move || ingest_small_verified(&store, &bodies)).await;
            let mut stored = match stored {
                Ok(records) => records.into_iter(),
                Err(SyncError::Corrupt(why)) => {
                    tracing::warn!(%why, "a small file did not verify; fetching them one by one");
                    Vec::new().into_iter()
                }
                Err(e) => return Err(e),
            };
            for (slot, t) in found.iter_mut().zip(targets) {
                if slot.is_none() {
                    *slot = match stored.next() {
                        Some(r) => Some(r),
                        None => Some(self.ensure(t).await?),
                    };
                }
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// Streams a file of the commit from `/resolve` into `sink` (resuming a broken transfer),
    /// counting the bytes received.
    async fn download(
        &self,
        t: &FileTarget,
        sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), SyncError> {
        let at = &self.at;
        let url = self.hub.resolve_url(at.repo_type, &at.repo_id, &at.commit, &t.path);
        let n = self.hub.download(&url, &at.repo_id, 0, sink).await?;
        self.fetched.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    async fn download_small(&self, t: &FileTarget) -> Result<Vec<u8>, SyncError> {
        let mut body = Vec::with_capacity(usize::try_from(t.size).unwrap_or(0).min(SMALL_FILE_MAX));
        self.download(t, |b| {
            body.extend_from_slice(b);
            Ok(())
        })
        .await?;
        Ok(body)
    }

    /// A file neither small nor reconstructible from Xet: downloaded into a staging file, then
    /// chunked into the store if it is what the listing says. The staging file goes whatever
    /// happens (its guard removes it), on the blocking thread once ingested.
    async fn fetch_plain(&self, t: &FileTarget) -> Result<FileRecord, SyncError> {
        let staged = self.store.staging_file("download");
        let path = staged.path();
        // create_new: two downloads never share one file, even were their names to collide.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(SyncError::io(path))?;
        self.download(t, |b| file.write_all(b)).await?;
        drop(file);
        let (store, t) = (self.store.clone(), t.clone());
        blocking(move || ingest_verified(&store, &t, staged.path())).await
    }
}

/// Whether another attempt at the same file may succeed: the remote sent bad data, or another
/// file sharing chunks with this one failed its check meanwhile and forgot them (the next
/// attempt fetches them again).
fn worth_fetching_again(e: &SyncError) -> bool {
    e.is_bad_data() || matches!(e, SyncError::Store(tessera_store::StoreError::Missing { .. }))
}

/// The SHA-256 of a fetched Xet file, `got` once its chunks hash to its Xet hash (`None` when
/// they do not), checked against the listed one when the listing gave one.
fn checked_sha256(
    path: String,
    file: FileHash,
    got: Option<Sha256>,
    expected: Option<Sha256>,
) -> Result<Sha256, Corruption> {
    match (got, expected) {
        (None, _) => Err(Corruption::XetHash { path, file }),
        (Some(got), Some(expected)) if got != expected => {
            Err(Corruption::Sha256 { path, expected, got })
        }
        (Some(got), _) => Ok(got),
    }
}

/// Fetched bytes that do not decode or verify are the remote's fault (retryable), not the store's.
pub(crate) fn fetched_error(e: tessera_store::StoreError) -> SyncError {
    use tessera_store::StoreError;
    match e {
        StoreError::FetchedMismatch { .. } | StoreError::MalformedXorb { .. } => {
            Corruption::Store(e).into()
        }
        other => SyncError::Store(other),
    }
}

/// Largest file [`FileFetcher::ensure_small`] takes in memory (the Hub's LFS threshold: regular
/// files are smaller).
pub(crate) const SMALL_FILE_MAX: usize = 10 << 20;

/// Whether a file is one [`FileFetcher::ensure_small`] takes: not reconstructible from Xet
/// (so only its bytes give its identity) and small enough to hold in memory.
pub(crate) fn is_small_plain(t: &FileTarget) -> bool {
    (t.xet.is_none() || t.sha256.is_none()) && t.size <= SMALL_FILE_MAX as u64
}

/// Stores fetched small files in one session after checking each against its tree entry.
fn ingest_small_verified(
    store: &Store,
    bodies: &[(FileTarget, Vec<u8>)],
) -> Result<Vec<FileRecord>, SyncError> {
    let mut session = store.ingest_session();
    let mut oids = Vec::new();
    for (t, body) in bodies {
        let mut oid = GitOidReader::new(body.as_slice(), t.size);
        let report = session.add_reader(&mut oid)?;
        check_fetched(t, report.size, report.sha256, || oid.finish())?;
        if t.sha256.is_none() {
            oids.push((t.git_oid.clone(), report.file));
        }
    }
    let records = session.commit()?;
    store.put_git_oids(&oids)?;
    Ok(records)
}

/// Whether fetched content is what the tree entry said: size, then SHA-256 or git blob id.
fn check_fetched(
    t: &FileTarget,
    size: u64,
    sha256: Sha256,
    git_oid: impl FnOnce() -> GitOid,
) -> Result<(), Corruption> {
    let path = t.path.clone();
    if size != t.size {
        return Err(Corruption::Size { path, expected: t.size, got: size });
    }
    match t.sha256 {
        Some(expected) if expected != sha256 => {
            Err(Corruption::Sha256 { path, expected, got: sha256 })
        }
        None => match git_oid() {
            got if got != t.git_oid => {
                Err(Corruption::GitOid { path, expected: t.git_oid.clone(), got })
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Chunks a downloaded file into the store, committing only if it is what the tree said.
fn ingest_verified(
    store: &Store,
    t: &FileTarget,
    path: &std::path::Path,
) -> Result<FileRecord, SyncError> {
    let file = std::fs::File::open(path).map_err(SyncError::io(path))?;
    let mut oid = GitOidReader::new(file, t.size);
    let mut session = store.ingest_session();
    let report = session.add_reader(&mut oid)?;
    check_fetched(t, report.size, report.sha256, || oid.finish())?;
    let records = session.commit()?;
    records
        .into_iter()
        .next()
        .ok_or_else(|| SyncError::Internal("ingest returned no record".into()))
}

/// Computes the git blob id (`sha1("blob <len>\0" + content)`) of what passes through.
struct GitOidReader<R> {
    inner: R,
    sha1: sha1::Sha1,
}

impl<R> GitOidReader<R> {
    fn new(inner: R, size: u64) -> Self {
        use sha1::Digest;
        let mut sha1 = sha1::Sha1::new();
        sha1.update(format!("blob {size}\0").as_bytes());
        Self { inner, sha1 }
    }

    fn finish(&mut self) -> GitOid {
        use sha1::Digest;
        GitOid::from_sha1(std::mem::take(&mut self.sha1).finalize().into())
    }
}

impl<R: std::io::Read> std::io::Read for GitOidReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha1::Digest;
        let n = self.inner.read(buf)?;
        self.sha1.update(&buf[..n]);
        Ok(n)
    }
}

/// Runs blocking store work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SyncError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| SyncError::Internal(e.to_string()))?
}

/// The tree entry of a fetched file.
pub(crate) fn entry(t: &FileTarget, record: &FileRecord) -> TreeEntry {
    TreeEntry {
        path: t.path.clone(),
        size: record.size,
        file: record.hash,
        sha256: record.sha256,
        git_oid: t.git_oid.clone(),
        lfs: t.sha256.is_some(),
    }
}

/// A reconstruction term as the store records it.
pub(crate) fn term(t: &tessera_protocol::ReconstructionTerm) -> Term {
    Term {
        xorb: t.hash,
        chunk_start: t.range.start,
        chunk_end: t.range.end,
        unpacked_len: t.unpacked_length,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn target(sha256: Option<Sha256>) -> FileTarget {
        FileTarget {
            path: "a.bin".into(),
            size: 3,
            git_oid: tessera_protocol::git_blob_oid(b"abc"),
            sha256,
            xet: None,
        }
    }

    #[test]
    fn a_fetched_file_that_is_not_the_listed_one_says_which_check_failed() {
        let (abc, xyz) = (Sha256::of(b"abc"), Sha256::of(b"xyz"));
        let size = check_fetched(&target(None), 4, abc, || unreachable!("size comes first"));
        assert!(matches!(size, Err(Corruption::Size { expected: 3, got: 4, .. })), "{size:?}");
        let none = || unreachable!("an LFS file is checked by its sha256");
        let sha = check_fetched(&target(Some(abc)), 3, xyz, none);
        assert!(
            matches!(&sha, Err(Corruption::Sha256 { expected, got, .. }) if *expected == abc && *got == xyz)
        );
        let zero = tessera_protocol::git_blob_oid(b"");
        let oid = check_fetched(&target(None), 3, xyz, || zero.clone());
        assert!(matches!(&oid, Err(Corruption::GitOid { got, .. }) if *got == zero), "{oid:?}");
        assert!(check_fetched(&target(Some(abc)), 3, abc, none).is_ok());
        assert!(
            check_fetched(&target(None), 3, abc, || tessera_protocol::git_blob_oid(b"abc")).is_ok()
        );
        let shown = SyncError::from(size.unwrap_err()).to_string();
        assert_eq!(shown, "corrupt data from the remote: a.bin: 4 bytes, expected 3");
    }

    #[test]
    fn a_xet_file_verifies_whole_then_by_its_listed_sha256() {
        let (abc, xyz) = (Sha256::of(b"abc"), Sha256::of(b"xyz"));
        let whole = |got, expected| checked_sha256("a.bin".into(), FileHash::ZERO, got, expected);
        assert!(matches!(whole(None, Some(abc)), Err(Corruption::XetHash { .. })));
        assert!(matches!(whole(Some(xyz), Some(abc)), Err(Corruption::Sha256 { .. })));
        assert_eq!(whole(Some(xyz), None).unwrap(), xyz);
        assert_eq!(whole(Some(abc), Some(abc)).unwrap(), abc);
    }
}
