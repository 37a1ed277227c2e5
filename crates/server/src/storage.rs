//! The storage seam of the hub server: where repository metadata lives and where content is
//! published, so one server on a local store and several replicas on one object-storage bucket
//! run the same handlers.
//!
//! - [`HubStorage`] is the seam. Metadata (repos, refs, commits, trees, grants, discussions) is
//!   read and written as key/value pairs of the server's [`Section`]s of the store's namespace
//!   for it (`Store::server_space`: keys the server owns, opaque to the store); a write carries
//!   [`Guard`]s, the values keys must still hold, which a bucket turns into conditional puts
//!   (`If-Match` on the ETag it read, `If-None-Match: *` for a key that must not exist). Content
//!   hooks publish what a commit will reference before its ref moves, and fill the local store
//!   (a cache) from the source of truth on a miss.
//! - [`LocalStorage`]: everything in the local store, as before the seam; guards are checked
//!   under the database's write lock, so nothing changes for one server.
//! - `server::bucket::BucketStorage`: the bucket is the source of truth (`hub-server.md`).

use tessera_xet::hash::{FileHash, Sha256, XorbHash};
use crate::error::{ApiError, ApiResult};
use tessera_store::{FileRecord, Section, ServerBatch, Store, XorbMeta};

/// Repo records.
pub const REPOS: Section = Section::ALL[0];
/// Branch, tag and pull request refs.
pub const REFS: Section = Section::ALL[1];
/// Commits and discussions.
pub const COMMITS: Section = Section::ALL[2];
/// Trees, and which files each repo may read.
pub const TREES: Section = Section::ALL[3];

/// A section's name in messages and the bucket's layout; `None` for one the server does not use.
pub fn section_name(section: Section) -> Option<&'static str> {
    match section {
        REPOS => Some("repos"),
        REFS => Some("refs"),
        COMMITS => Some("commits"),
        TREES => Some("trees"),
        _ => None,
    }
}

/// A condition a write depends on: `key` of `section` holds `expect` (`None`: does not exist)
/// at the moment the write lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// Section of the key.
    pub section: Section,
    /// The key.
    pub key: Vec<u8>,
    /// The value the key must hold, `None` for absent.
    pub expect: Option<Vec<u8>>,
}

impl Guard {
    /// `key` must not exist.
    pub fn absent(section: Section, key: impl Into<Vec<u8>>) -> Self {
        Self { section, key: key.into(), expect: None }
    }

    /// `key` must hold `value`.
    pub fn holds(section: Section, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self { section, key: key.into(), expect: Some(value.into()) }
    }
}

/// Why a guarded write did not happen (each caller turns it into its own answer).
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteError {
    /// A guarded key no longer holds its expected value: another writer (perhaps another
    /// replica) changed it first. Nothing guarded was written.
    Moved {
        /// The key, readable (section and key text).
        key: String,
    },
    /// The write failed for another reason.
    Api(ApiError),
}

impl From<ApiError> for WriteError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<tessera_store::StoreError> for WriteError {
    fn from(e: tessera_store::StoreError) -> Self {
        Self::Api(e.into())
    }
}

/// Where the hub server keeps its metadata and publishes its content. Synchronous: handlers
/// call it through `spawn_blocking`.
pub trait HubStorage: Send + Sync {
    /// The value of a metadata key.
    fn get(&self, section: Section, key: &[u8]) -> ApiResult<Option<Vec<u8>>>;

    /// Every metadata pair whose key starts with `prefix`, which ends with `\0` (a whole key
    /// part), in key order.
    fn scan_prefix(&self, section: Section, prefix: &[u8]) -> ApiResult<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Applies a batch of metadata writes if every guard holds. Keys a guard names are written
    /// atomically against other writers; the rest is written first (immutable, content-named
    /// records), so a guarded ref never points at something missing.
    fn write(&self, batch: ServerBatch, guards: Vec<Guard>) -> Result<(), WriteError>;

    /// Makes a stored xorb durable where every replica finds it (a no-op locally).
    fn publish_xorb(&self, _xorb: &XorbHash, _bytes: &[u8]) -> ApiResult<()> {
        Ok(())
    }

    /// Keeps an accepted shard as uploaded (a no-op locally, where its files are recorded).
    fn publish_shard(&self, _bytes: &[u8]) -> ApiResult<()> {
        Ok(())
    }

    /// Makes files of the local store (their records and every xorb they name) durable where
    /// every replica finds them; called before a commit that references them moves its ref.
    fn publish_files(&self, _store: &Store, _files: &[FileHash]) -> ApiResult<()> {
        Ok(())
    }

    /// Brings a file (record and xorbs) into the local store from the source of truth;
    /// `false` if the source does not have it either.
    fn fill_file(&self, _store: &Store, _file: &FileHash) -> ApiResult<bool> {
        Ok(false)
    }

    /// A file's record at the source of truth, without fetching its bytes (enough to plan a
    /// reconstruction whose bytes clients fetch elsewhere).
    fn file_record(&self, _file: &FileHash) -> ApiResult<Option<FileRecord>> {
        Ok(None)
    }

    /// A xorb's chunk table at the source of truth, without fetching the xorb when the source
    /// keeps tables apart.
    fn xorb_table(&self, _store: &Store, _xorb: &XorbHash) -> ApiResult<Option<XorbMeta>> {
        Ok(None)
    }

    /// Brings a whole xorb into the local store; `false` if the source lacks it.
    fn fill_xorb(&self, _store: &Store, _xorb: &XorbHash) -> ApiResult<bool> {
        Ok(false)
    }

    /// The file with this SHA-256 at the source of truth, if any.
    fn file_by_sha256(&self, _sha: &Sha256) -> ApiResult<Option<FileHash>> {
        Ok(None)
    }

    /// The key signing CAS tokens and presigned URLs, shared by every replica so that a token
    /// one hands out works at all of them; `None`: a key of this server's own (local file).
    fn shared_secret(&self) -> ApiResult<Option<[u8; 32]>> {
        Ok(None)
    }

    /// A URL a client can fetch the xorb's bytes from directly (with its own `Range`), valid
    /// for `ttl`; `None` when bytes are served through this server.
    fn xorb_url(&self, _xorb: &XorbHash, _ttl: std::time::Duration) -> ApiResult<Option<String>> {
        Ok(None)
    }
}

/// Metadata in the local store: one server, its RocksDB the source of truth.
pub struct LocalStorage {
    space: tessera_store::ServerSpace,
}

impl LocalStorage {
    /// Storage over a store's namespace for the server.
    pub fn new(store: Store) -> Self {
        Self { space: store.server_space() }
    }
}

impl HubStorage for LocalStorage {
    fn get(&self, section: Section, key: &[u8]) -> ApiResult<Option<Vec<u8>>> {
        Ok(self.space.get(section, key)?)
    }

    fn scan_prefix(&self, section: Section, prefix: &[u8]) -> ApiResult<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.space.scan_prefix(section, prefix)?)
    }

    /// The caller holds the database's write lock, so checking and writing cannot interleave
    /// with another writer of this store.
    fn write(&self, batch: ServerBatch, guards: Vec<Guard>) -> Result<(), WriteError> {
        for g in &guards {
            if self.space.get(g.section, &g.key)? != g.expect {
                return Err(WriteError::Moved { key: readable_key(g.section, &g.key) });
            }
        }
        self.space.write(batch)?;
        Ok(())
    }
}

/// A key for messages: its section and text, `\0` shown as `:`.
pub fn readable_key(section: Section, key: &[u8]) -> String {
    let name = section_name(section).unwrap_or("?");
    format!("{name} {}", String::from_utf8_lossy(key).replace('\0', ":"))
}
