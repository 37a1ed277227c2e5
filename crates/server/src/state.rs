//! Shared state of the hub server: the store, the repo database, tokens, the signing key and
//! the settings of one `tessera hub serve`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;

use super::auth::{Caller, Signer, TokenTable};
use super::bucket::{Bucket, BucketStorage};
use super::db::{HubDb, RepoKey, RepoRecord};
use super::error::{ApiError, ApiResult};
use super::limit::RateLimiter;
use super::storage::{HubStorage, LocalStorage};
use tessera_protocol::{RepoId, RepoType};
use tessera_store::Store;

/// Settings of a server, resolved by the CLI.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Base URL for the URLs the server hands out; `None` = from the request's `Host`.
    pub public_url: Option<String>,
    /// Hub tokens.
    pub tokens: TokenTable,
    /// Send-rate limit of response bodies, bytes per second.
    pub max_bytes_per_sec: Option<u64>,
    /// Receive-rate limit of request bodies (uploads), bytes per second.
    pub max_upload_bytes_per_sec: Option<u64>,
    /// Entries per tree-listing page.
    pub tree_page_size: usize,
    /// Lifetime of Xet tokens and presigned URLs, seconds.
    pub token_ttl_secs: u64,
    /// Behave like a Hub without Xet storage: no `X-Xet-Hash`, no `xetHash`, no CAS tokens.
    pub no_xet: bool,
    /// Uploads with large bodies (commits, xorbs, shards, LFS objects) handled at once; the
    /// others wait (up to [`UPLOAD_SLOT_WAIT`]) before their body is read.
    pub max_concurrent_uploads: usize,
    /// Longest wait for a request's headers, and idle time of a kept-alive connection.
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_idle_timeout: Duration,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// LFS objects larger than this upload in parts of this size (the multipart transfer).
    pub lfs_part_size: u64,
    /// Answer `/v2/reconstructions` 404, as a CAS without multi-range reconstructions does.
    pub no_v2_reconstructions: bool,
    /// Serve xorb bytes through this server even when the storage can hand out direct URLs
    /// (for object stores clients cannot reach).
    pub proxy_bytes: bool,
}

/// Default [`ServerOptions::lfs_part_size`]: objects above it upload in parts.
pub const LFS_PART_SIZE: u64 = 500 << 20;

/// Longest an upload waits for one of the `max_concurrent_uploads` slots before a 503.
pub const UPLOAD_SLOT_WAIT: Duration = Duration::from_secs(120);

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            public_url: None,
            tokens: TokenTable::default(),
            max_bytes_per_sec: None,
            max_upload_bytes_per_sec: None,
            tree_page_size: 1000,
            token_ttl_secs: 3600,
            no_xet: false,
            max_concurrent_uploads: 8,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            lfs_part_size: LFS_PART_SIZE,
            no_v2_reconstructions: false,
            proxy_bytes: false,
        }
    }
}

impl ServerOptions {
    /// Sets the LFS part size (objects above it upload in parts); at least 1 MiB.
    pub fn lfs_part_size(mut self, bytes: u64) -> Self {
        self.lfs_part_size = bytes.max(1 << 20);
        self
    }

    /// Answers only v1 reconstructions (to test clients' fallback).
    pub fn no_v2_reconstructions(mut self, off: bool) -> Self {
        self.no_v2_reconstructions = off;
        self
    }

    /// Serves xorb bytes through this server even when the storage could hand out URLs.
    pub fn proxy_bytes(mut self, on: bool) -> Self {
        self.proxy_bytes = on;
        self
    }

    /// Sets the public URL.
    pub fn public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url.map(|u| u.trim_end_matches('/').to_owned());
        self
    }

    /// Sets the token table.
    pub fn tokens(mut self, tokens: TokenTable) -> Self {
        self.tokens = tokens;
        self
    }

    /// Sets the send-rate limit.
    pub fn max_bytes_per_sec(mut self, rate: Option<u64>) -> Self {
        self.max_bytes_per_sec = rate;
        self
    }

    /// Sets the receive-rate limit of request bodies.
    pub fn max_upload_bytes_per_sec(mut self, rate: Option<u64>) -> Self {
        self.max_upload_bytes_per_sec = rate;
        self
    }

    /// Turns Xet off (a plain LFS Hub, for clients' fallback paths).
    pub fn no_xet(mut self, off: bool) -> Self {
        self.no_xet = off;
        self
    }

    /// Sets how many large uploads are handled at once (at least 1).
    pub fn max_concurrent_uploads(mut self, n: usize) -> Self {
        self.max_concurrent_uploads = n.max(1);
        self
    }

    /// Sets the header, body-idle and shutdown-grace timeouts.
    pub fn timeouts(mut self, header: Duration, body_idle: Duration, grace: Duration) -> Self {
        (self.header_timeout, self.body_idle_timeout, self.shutdown_grace) =
            (header, body_idle, grace);
        self
    }

    /// Sets the tree page size (at least 1).
    pub fn tree_page_size(mut self, n: usize) -> Self {
        self.tree_page_size = n.max(1);
        self
    }
}

/// Errors opening the server's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Store(#[from] tessera_store::StoreError),
    /// The storage (a bucket) could not be reached or refused a request.
    #[error("reading the shared signing secret from the storage failed (status {0}; cause logged)")]
    Storage(u16),
    /// The data directory could not be prepared.
    #[error("{path}: {source}")]
    Io {
        /// File or folder.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Everything handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared parts.
pub struct Inner {
    /// The chunk store (with a bucket: a cache of it).
    pub store: Store,
    /// Where metadata lives and content is published.
    pub storage: Arc<dyn HubStorage>,
    /// Repos, refs and commits.
    pub db: HubDb,
    /// Signs CAS tokens and presigned URLs.
    pub signer: Signer,
    /// Settings.
    pub options: ServerOptions,
    /// Response-body rate limiter.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Request-body rate limiter.
    pub upload_limiter: Option<Arc<RateLimiter>>,
    /// Serialises concurrent uploads of the same xorb.
    pub xorb_locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Xorbs whose upload is under way, so a shard naming one can wait for it.
    pub xorbs_arriving: XorbsArriving,
    /// Slots of `max_concurrent_uploads`: each large upload holds one while its body is read
    /// and processed, which bounds the memory and blocking threads uploads can take.
    pub upload_slots: Arc<tokio::sync::Semaphore>,
    /// Requests answered, for `--metrics-listen`.
    pub requests: Arc<crate::metrics::RequestMetrics>,
}

/// Xorb uploads in progress. A client may send a shard while a xorb it names is still on its
/// way (another upload batch of the same client); registering such a shard waits for that
/// upload instead of refusing it. A xorb nobody is uploading is refused at once, as before.
#[derive(Default)]
pub struct XorbsArriving {
    uploads: parking_lot::Mutex<HashMap<tessera_xet::hash::XorbHash, usize>>,
    changed: parking_lot::Condvar,
}

/// Marks one upload of a xorb as under way until dropped.
pub struct Arriving<'a> {
    set: &'a XorbsArriving,
    xorb: tessera_xet::hash::XorbHash,
}

impl XorbsArriving {
    /// Notes an upload of `xorb` as started.
    pub fn enter(&self, xorb: tessera_xet::hash::XorbHash) -> Arriving<'_> {
        *self.uploads.lock().entry(xorb).or_insert(0) += 1;
        Arriving { set: self, xorb }
    }

    /// If `xorb` is being uploaded, waits (at most `limit`) until no upload of it is under way;
    /// returns whether there was one to wait for.
    pub fn wait_for(&self, xorb: &tessera_xet::hash::XorbHash, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut uploads = self.uploads.lock();
        if !uploads.contains_key(xorb) {
            return false;
        }
        while uploads.contains_key(xorb) {
            if self.changed.wait_until(&mut uploads, deadline).timed_out() {
                break;
            }
        }
        true
    }
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        let mut uploads = self.set.uploads.lock();
        if let Some(n) = uploads.get_mut(&self.xorb) {
            *n -= 1;
            if *n == 0 {
                uploads.remove(&self.xorb);
            }
        }
        self.set.changed.notify_all();
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_owned(), source }
}

/// Reads the signing secret of a data dir, creating it on first use. The secret signs every
/// CAS token and presigned URL, so it is readable by its owner only (an existing file with a
/// wider mode is narrowed) and is durable before it signs anything: a crash must not leave a
/// server whose handed-out tokens change meaning, or an empty key.
fn load_secret(dir: &Path) -> Result<[u8; 32], StateError> {
    let path = dir.join("secret");
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
            restrict_mode(&path)?;
            return Ok(key);
        }
    }
    let key: [u8; 32] = rand::random();
    let tmp = dir.join("secret.tmp");
    write_private(&tmp, &key).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(key)
}

/// Writes `bytes` to a new file of mode 0600 (created so, never widened in between) and
/// fsyncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Narrows a secret file written by an older version (mode 0644) to 0600.
fn restrict_mode(path: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(path))?;
    }
    Ok(())
}

impl AppState {
    /// Opens the store under `data`; the signing secret lives in `data/server/secret`.
    pub fn open(data: &Path, options: ServerOptions) -> Result<Self, StateError> {
        Self::open_with(data, options, None)
    }

    /// Opens the store under `data`, with metadata and content in `bucket` when given (the
    /// store then only caches it); the signing secret is the bucket's shared one, else
    /// `data/server/secret`.
    pub fn open_with(
        data: &Path,
        options: ServerOptions,
        bucket: Option<Bucket>,
    ) -> Result<Self, StateError> {
        let store = Store::open(data)?;
        let storage: Arc<dyn HubStorage> = match bucket {
            Some(b) => Arc::new(BucketStorage::new(b, store.clone())),
            None => Arc::new(LocalStorage::new(store.clone())),
        };
        let secret =
            match storage.shared_secret().map_err(|e| StateError::Storage(e.status().as_u16()))? {
                Some(key) => key,
                None => {
                    let server_dir = data.join("server");
                    std::fs::create_dir_all(&server_dir).map_err(io_err(&server_dir))?;
                    load_secret(&server_dir)?
                }
            };
        let signer = Signer::new(secret);
        let limiter = options.max_bytes_per_sec.map(|r| Arc::new(RateLimiter::new(r)));
        let upload_limiter =
            options.max_upload_bytes_per_sec.map(|r| Arc::new(RateLimiter::new(r)));
        Ok(Self(Arc::new(Inner {
            db: HubDb::with_storage(store.clone(), storage.clone()),
            storage,
            store,
            signer,
            limiter,
            upload_limiter,
            xorb_locks: parking_lot::Mutex::new(HashMap::new()),
            xorbs_arriving: XorbsArriving::default(),
            upload_slots: Arc::new(tokio::sync::Semaphore::new(options.max_concurrent_uploads)),
            requests: Arc::default(),
            options,
        })))
    }

    /// Current unix time in seconds.
    pub fn now(&self) -> u64 {
        tessera_store::clock::unix_secs()
    }

    /// Base URL for handed-out links: `--public-url`, else `http://{Host}`.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(u) = &self.options.public_url {
            return u.clone();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b)))
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    /// The caller of a request.
    pub fn caller(&self, headers: &HeaderMap) -> ApiResult<Caller> {
        self.options.tokens.caller(headers)
    }

    /// Runs blocking store work off the async runtime.
    pub async fn blocking<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&AppState) -> ApiResult<T> + Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(&state)).await?
    }

    /// Loads a repo the caller may see (401/404 `RepoNotFound` otherwise).
    pub async fn visible_repo(
        &self,
        caller: &Caller,
        repo_type: RepoType,
        id: &RepoId,
    ) -> ApiResult<(RepoKey, RepoRecord)> {
        let key = RepoKey::new(repo_type, id);
        let k = key.clone();
        let record = self.blocking(move |s| s.db.repo(&k)).await?;
        match record {
            Some(r) if !r.private || self.is_member(caller, &r) => Ok((key, r)),
            _ => Err(ApiError::repo_not_found(caller.is_authenticated())),
        }
    }

    /// Loads a repo the caller may write to (401/403 otherwise).
    pub async fn writable_repo(
        &self,
        caller: &Caller,
        repo_type: RepoType,
        id: &RepoId,
    ) -> ApiResult<(RepoKey, RepoRecord)> {
        let (key, record) = self.visible_repo(caller, repo_type, id).await?;
        self.check_write(caller, &record)?;
        Ok((key, record))
    }

    /// 401 without a token, 403 without write access to this repo.
    pub fn check_write(&self, caller: &Caller, record: &RepoRecord) -> ApiResult<()> {
        if !caller.is_authenticated() {
            return Err(ApiError::unauthorized("You must use a write token to modify this repo"));
        }
        if !caller.can_write() || !self.is_member(caller, record) {
            return Err(ApiError::forbidden("Your token does not have write access to this repo"));
        }
        Ok(())
    }

    /// Whether the caller counts as a member of the repo's namespace.
    pub fn is_member(&self, caller: &Caller, record: &RepoRecord) -> bool {
        super::auth::is_member(caller, record.namespace(), &record.owner, &self.options.tokens)
    }

    /// One of the upload slots, waiting at most [`UPLOAD_SLOT_WAIT`]; 503 when none frees up.
    /// Taken after authentication and before the body is read.
    pub async fn upload_slot(&self) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        let acquire = self.upload_slots.clone().acquire_owned();
        match tokio::time::timeout(UPLOAD_SLOT_WAIT, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::unavailable("too many uploads at once; retry later")),
        }
    }

    /// The lock serialising uploads of one xorb.
    pub fn xorb_lock(&self, hash: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.xorb_locks.lock();
        if map.len() > 4096 {
            map.retain(|_, l| Arc::strong_count(l) > 1);
        }
        map.entry(hash.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod secret_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::load_secret;

    #[test]
    fn the_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_secret(dir.path()).unwrap();
        let path = dir.path().join("secret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "secret mode {mode:o}");
        assert_eq!(load_secret(dir.path()).unwrap(), key);
    }

    #[test]
    fn an_old_world_readable_secret_is_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, [9u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_secret(dir.path()).unwrap(), [9u8; 32]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[cfg(test)]
mod arriving_tests {
    use std::time::{Duration, Instant};

    use super::XorbsArriving;
    use tessera_xet::hash::XorbHash;

    #[test]
    fn a_shard_waits_for_a_xorb_in_flight_and_not_for_one_nobody_sends() {
        let arriving = XorbsArriving::default();
        let (x, y) = (XorbHash::ZERO, XorbHash::from_bytes([7; 32]));
        let started = Instant::now();
        assert!(!arriving.wait_for(&y, Duration::from_secs(5)), "nobody uploads y");
        assert!(started.elapsed() < Duration::from_secs(1));
        std::thread::scope(|scope| {
            let upload = arriving.enter(x);
            scope.spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                drop(upload);
            });
            let t = Instant::now();
            assert!(arriving.wait_for(&x, Duration::from_secs(10)), "x was in flight");
            assert!(t.elapsed() >= Duration::from_millis(50), "returned before the upload ended");
        });
        assert!(!arriving.wait_for(&x, Duration::from_secs(5)), "x is no longer in flight");
    }
}
