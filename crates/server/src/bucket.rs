//! The hub server on S3-compatible object storage (`tessera hub serve --storage
//! s3://BUCKET/PREFIX`): the bucket is the source of truth, the local store a cache any replica
//! can rebuild from it, so several replicas on one bucket give the same answers.
//!
//! Layout under `PREFIX/`:
//!
//! | object | content | written |
//! |---|---|---|
//! | `xorbs/{hash}` | the xorb as uploaded (serialized Xet form) | create-only |
//! | `xorb-tables/{hash}` | its chunk table, so a replica plans reconstructions without it | create-only, after the xorb |
//! | `shards/{sha256}` | an accepted shard as uploaded | create-only |
//! | `files/{hash}` | the file's record (size, sha256, terms) | create-only, after its xorbs |
//! | `sha256/{sha256}` | the file hash with that SHA-256 (LFS oid) | create-only |
//! | `meta/{table}/{key}` | a repo, ref, commit, tree, grant or discussion | guarded keys by compare-and-swap |
//! | `server/secret` | the key signing CAS tokens and presigned URLs | create-only, once |
//!
//! A meta key is its `\0`-separated parts as path segments, each byte outside `[A-Za-z0-9_-]`
//! written `.XX`; prefix scans therefore are listings of one "directory".
//!
//! Every ref move is a conditional put (`If-Match` on the ETag read with the value the move was
//! based on; `If-None-Match: *` for a new ref), after the commit, tree and files it names are in
//! the bucket: two replicas never both move a branch from one parent, and nothing a ref reaches
//! is missing. Credentials, endpoint and region come the AWS way (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); requests are signed by
//! `object_store`, path-style, and a plain `http://` endpoint is allowed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::signer::Signer as _;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::error::{ApiError, ApiResult};
use super::storage::{Guard, HubStorage, WriteError, readable_key, section_name};
use tessera_xet::hash::{FileHash, Sha256, XorbHash};
use tessera_store::{FileRecord, Section, ServerBatch, Store, XorbMeta};

/// A parsed `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUrl {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
}

/// Why a storage URL or bucket connection was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BucketError {
    /// The URL is not `s3://BUCKET[/PREFIX]` with a valid bucket name and prefix.
    #[error(
        "storage URL {0:?}: expected s3://BUCKET[/PREFIX] (bucket 3-63 of a-z 0-9 . -; prefix of A-Z a-z 0-9 . _ - /)"
    )]
    BadUrl(String),
    /// The S3 client could not be configured from the environment.
    #[error(
        "configuring the S3 client (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    )]
    Config(#[source] object_store::Error),
    /// The bucket did not answer a listing.
    #[error("bucket {bucket} is not reachable or refuses these credentials")]
    Unreachable {
        /// Bucket name.
        bucket: String,
        /// Cause.
        source: object_store::Error,
    },
}

impl std::str::FromStr for StorageUrl {
    type Err = BucketError;

    fn from_str(s: &str) -> Result<Self, BucketError> {
        let bad = || BucketError::BadUrl(s.to_owned());
        let rest = s.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix.len() <= 512
            && prefix
                .split('/')
                .all(|p| prefix.is_empty() || (!p.is_empty() && p != "." && p != ".."))
            && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !bucket_ok || !prefix_ok {
            return Err(bad());
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

/// A connected bucket: the S3 client, the key prefix and the runtime its requests run on.
#[derive(Clone)]
pub struct Bucket {
    s3: Arc<AmazonS3>,
    prefix: String,
    bucket: String,
    rt: Handle,
}

/// What a listing reports of one object.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Key under the prefix (`xorbs/…`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, unix seconds.
    pub modified: i64,
}

/// Largest object read into memory: a xorb (64 MiB of chunks plus headers) or a shard (64 MiB)
/// with room to spare; anything larger was not written by a replica.
const MAX_OBJECT_BYTES: u64 = 128 << 20;

fn is_missing(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn is_taken(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

/// 500 with the cause logged (never the credentials: object_store's errors carry none).
fn storage_error(e: object_store::Error) -> ApiError {
    ApiError::internal(format!("object storage: {e}"))
}

impl Bucket {
    /// Connects with the AWS environment variables and checks the bucket answers a listing.
    /// Must be called outside the runtime `rt` drives (it blocks on it).
    pub fn connect(url: &StorageUrl, rt: Handle) -> Result<Self, BucketError> {
        let endpoint_is_http = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .is_ok_and(|e| e.starts_with("http://"));
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .with_allow_http(endpoint_is_http)
            .with_virtual_hosted_style_request(false)
            .build()
            .map_err(BucketError::Config)?;
        let bucket =
            Self { s3: Arc::new(s3), prefix: url.prefix.clone(), bucket: url.bucket.clone(), rt };
        let probe = bucket.path("server");
        bucket
            .rt
            .block_on(async { bucket.s3.list_with_delimiter(Some(&probe)).await })
            .map_err(|source| BucketError::Unreachable { bucket: url.bucket.clone(), source })?;
        Ok(bucket)
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.bucket
    }

    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// The object's bytes and version, `None` if absent.
    pub fn get(&self, key: &str) -> ApiResult<Option<(Bytes, UpdateVersion)>> {
        let path = self.path(key);
        self.rt.block_on(async {
            let got = match self.s3.get(&path).await {
                Ok(g) => g,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(storage_error(e)),
            };
            if got.meta.size > MAX_OBJECT_BYTES {
                return Err(ApiError::internal(format!(
                    "{key}: {} bytes, over the {MAX_OBJECT_BYTES} any object of ours has",
                    got.meta.size
                )));
            }
            let version =
                UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
            Ok(Some((got.bytes().await.map_err(storage_error)?, version)))
        })
    }

    /// Whether the object exists.
    pub fn exists(&self, key: &str) -> ApiResult<bool> {
        let path = self.path(key);
        match self.rt.block_on(self.s3.head(&path)) {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Writes the object; `Ok(false)` when the mode's condition failed (it exists for
    /// `Create`, it changed for `Update`).
    pub fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> ApiResult<bool> {
        let path = self.path(key);
        let opts = PutOptions { mode, ..Default::default() };
        match self.rt.block_on(self.s3.put_opts(&path, bytes.into(), opts)) {
            Ok(_) => Ok(true),
            Err(e) if is_taken(&e) => Ok(false),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Creates an immutable, content-named object; one that exists already is the same.
    pub fn put_immutable(&self, key: &str, bytes: Bytes) -> ApiResult<()> {
        self.put(key, bytes, PutMode::Create).map(|_| ())
    }

    /// Removes the object (absent is fine).
    pub fn delete(&self, key: &str) -> ApiResult<()> {
        let path = self.path(key);
        match self.rt.block_on(self.s3.delete(&path)) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Every object under `dir` (a key prefix ending at a `/`), with keys relative to the
    /// bucket prefix.
    pub fn list(&self, dir: &str) -> ApiResult<Vec<Listed>> {
        let path = self.path(dir.trim_end_matches('/'));
        let metas: Vec<ObjectMeta> =
            self.rt.block_on(self.s3.list(Some(&path)).try_collect()).map_err(storage_error)?;
        let skip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().get(skip..)?.to_owned();
                Some(Listed { key, size: m.size, modified: m.last_modified.timestamp() })
            })
            .collect())
    }

    /// A presigned GET URL of the object, valid for `ttl`.
    pub fn signed_get(&self, key: &str, ttl: Duration) -> ApiResult<String> {
        let path = self.path(key);
        let url = self
            .rt
            .block_on(self.s3.signed_url(object_store::signer::Method::GET, &path, ttl))
            .map_err(storage_error)?;
        Ok(url.to_string())
    }
}

/// Object key of a xorb.
pub fn xorb_key(xorb: &XorbHash) -> String {
    format!("xorbs/{xorb}")
}

/// Object key of a xorb's chunk table (what planning a reconstruction needs of it).
pub fn table_key(xorb: &XorbHash) -> String {
    format!("xorb-tables/{xorb}")
}

/// Object key of a file record.
pub fn file_key(file: &FileHash) -> String {
    format!("files/{file}")
}

/// Object key of a SHA-256 alias.
fn sha_key(sha: &Sha256) -> String {
    format!("sha256/{sha}")
}

/// The directory of a section of the server's metadata: `meta/{name}`.
fn section_dir(section: Section) -> Option<String> {
    section_name(section).map(|name| format!("meta/{name}"))
}

/// One key part as a path segment: `[A-Za-z0-9_-]` kept, every other byte `.XX` (hex; `.` is
/// a character object stores and URLs leave alone); an empty part is `._`.
fn escape_part(part: &[u8]) -> String {
    if part.is_empty() {
        return "._".into();
    }
    let mut out = String::with_capacity(part.len());
    for &b in part {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!(".{b:02X}"));
        }
    }
    out
}

/// The inverse of [`escape_part`]; `None` for a segment it never writes.
fn unescape_part(seg: &str) -> Option<Vec<u8>> {
    if seg == "._" {
        return Some(Vec::new());
    }
    let (bytes, mut out, mut i) = (seg.as_bytes(), Vec::with_capacity(seg.len()), 0);
    while i < bytes.len() {
        if bytes[i] == b'.' {
            let hex = seg.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The object key of a metadata key: its `\0`-separated parts as escaped segments.
pub fn meta_object(section: Section, key: &[u8]) -> Option<String> {
    let dir = section_dir(section)?;
    let parts: Vec<String> = key.split(|&b| b == 0).map(escape_part).collect();
    Some(format!("{dir}/{}", parts.join("/")))
}

/// The metadata key an object key (relative to its table's directory) stands for.
fn meta_key(rel: &str) -> Option<Vec<u8>> {
    let parts = rel.split('/').map(unescape_part).collect::<Option<Vec<_>>>()?;
    Some(parts.join(&0u8))
}

/// [`HubStorage`] on a bucket; the local store caches file records and xorbs.
pub struct BucketStorage {
    bucket: Bucket,
    store: Store,
    /// Chunk tables read from the bucket (immutable: named by the xorb hash).
    tables: Mutex<HashMap<XorbHash, XorbMeta>>,
}

/// Chunk tables kept in memory (at most ~800 KiB each, for 8192 chunks).
const TABLES_KEPT: usize = 256;

impl BucketStorage {
    /// Storage on `bucket`, caching content in `store`.
    pub fn new(bucket: Bucket, store: Store) -> Self {
        Self { bucket, store, tables: Mutex::new(HashMap::new()) }
    }

    /// Puts an immutable object unless the bucket has it. Asked every time, never remembered:
    /// `hub gc` may remove an object a replica saw long ago.
    fn ensure(&self, key: String, bytes: impl FnOnce() -> ApiResult<Bytes>) -> ApiResult<()> {
        if !self.bucket.exists(&key)? {
            self.bucket.put_immutable(&key, bytes()?)?;
        }
        Ok(())
    }

    /// The chunk table of a complete local xorb, encoded.
    fn local_table_bytes(store: &Store, xorb: &XorbHash) -> ApiResult<Bytes> {
        let meta = store
            .xorb_meta(xorb)?
            .filter(tessera_store::XorbMeta::is_complete)
            .ok_or_else(|| ApiError::internal(format!("xorb {xorb} is not complete locally")))?;
        Ok(Bytes::from(meta.encode()))
    }

    /// Puts a local xorb and then its chunk table, each unless the bucket has it.
    fn ensure_xorb(&self, store: &Store, xorb: &XorbHash) -> ApiResult<()> {
        self.ensure(xorb_key(xorb), || Self::local_xorb_bytes(store, xorb))?;
        self.ensure(table_key(xorb), || Self::local_table_bytes(store, xorb))
    }

    /// A whole locally stored xorb, as the bucket keeps it.
    fn local_xorb_bytes(store: &Store, xorb: &XorbHash) -> ApiResult<Bytes> {
        let meta = store
            .xorb_meta(xorb)?
            .filter(tessera_store::XorbMeta::is_complete)
            .ok_or_else(|| ApiError::internal(format!("xorb {xorb} is not complete locally")))?;
        Ok(Bytes::from(store.read_xorb_bytes(xorb, 0, meta.stored_len())?))
    }

    /// Writes a guarded key: checks its value, then puts it conditionally on the version read.
    fn write_guarded(&self, g: &Guard, op: GuardedOp) -> Result<(), WriteError> {
        let moved = || WriteError::Moved { key: readable_key(g.section, &g.key) };
        let key = meta_object(g.section, &g.key).ok_or_else(|| bad_section(g.section))?;
        let current = self.bucket.get(&key)?;
        if current.as_ref().map(|(v, _)| v.as_ref()) != g.expect.as_deref() {
            return Err(moved());
        }
        match op {
            Some(Some(value)) => {
                let mode = match current {
                    None => PutMode::Create,
                    Some((_, version)) => PutMode::Update(version),
                };
                if !self.bucket.put(&key, Bytes::from(value), mode)? {
                    return Err(moved());
                }
            }
            Some(None) => self.bucket.delete(&key)?,
            None => {}
        }
        Ok(())
    }
}

/// What a batch does to a guarded key: `None` nothing (the guard is only checked),
/// `Some(None)` delete, `Some(Some(value))` put.
type GuardedOp = Option<Option<Vec<u8>>>;

/// A section the server does not use has no directory to read from.
fn no_dir(section: Section) -> ApiError {
    ApiError::internal(format!("{section:?} has no bucket directory"))
}

fn bad_section(section: Section) -> WriteError {
    WriteError::Api(no_dir(section))
}

impl HubStorage for BucketStorage {
    fn get(&self, section: Section, key: &[u8]) -> ApiResult<Option<Vec<u8>>> {
        let k = meta_object(section, key).ok_or_else(|| no_dir(section))?;
        Ok(self.bucket.get(&k)?.map(|(v, _)| v.to_vec()))
    }

    fn scan_prefix(&self, section: Section, prefix: &[u8]) -> ApiResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let dir = section_dir(section).ok_or_else(|| no_dir(section))?;
        let whole = prefix.strip_suffix(&[0]).filter(|p| !p.is_empty());
        let whole = whole
            .ok_or_else(|| ApiError::internal("bucket scans need a prefix ending in a key part"))?;
        let parts: Vec<String> = whole.split(|&b| b == 0).map(escape_part).collect();
        let listed = self.bucket.list(&format!("{dir}/{}/", parts.join("/")))?;
        let mut out = BTreeMap::new();
        for l in listed {
            let Some(key) = l.key.strip_prefix(&format!("{dir}/")).and_then(meta_key) else {
                continue;
            };
            if !key.starts_with(prefix) {
                continue;
            }
            if let Some((v, _)) = self.bucket.get(&l.key)? {
                out.insert(key, v.to_vec());
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Unguarded puts (immutable, content-named records) first, then each guarded key by
    /// compare-and-swap, then unguarded deletes; the GC roots of what it put to the local
    /// store, last (the bucket's own `hub gc` walks commits instead).
    fn write(&self, mut batch: ServerBatch, guards: Vec<Guard>) -> Result<(), WriteError> {
        let mut guarded: HashMap<(Section, Vec<u8>), GuardedOp> =
            guards.iter().map(|g| ((g.section, g.key.clone()), None)).collect();
        let mut deletes = Vec::new();
        for (section, key, value) in batch.take_writes() {
            let object = meta_object(section, &key).ok_or_else(|| bad_section(section))?;
            if let Some(slot) = guarded.get_mut(&(section, key)) {
                *slot = Some(value);
                continue;
            }
            match value {
                Some(v) => {
                    self.bucket.put(&object, Bytes::from(v), PutMode::Overwrite)?;
                }
                None => deletes.push(object),
            }
        }
        for g in &guards {
            let op = guarded.remove(&(g.section, g.key.clone())).flatten();
            self.write_guarded(g, op)?;
        }
        for object in deletes {
            self.bucket.delete(&object)?;
        }
        if !batch.is_empty() {
            self.store.server_space().write(batch)?;
        }
        Ok(())
    }

    fn publish_xorb(&self, xorb: &XorbHash, bytes: &[u8]) -> ApiResult<()> {
        let bytes = Bytes::copy_from_slice(bytes);
        self.ensure(xorb_key(xorb), || Ok(bytes))?;
        self.ensure(table_key(xorb), || Self::local_table_bytes(&self.store, xorb))
    }

    fn publish_shard(&self, bytes: &[u8]) -> ApiResult<()> {
        let name = Sha256::of(bytes);
        let bytes = Bytes::copy_from_slice(bytes);
        self.ensure(format!("shards/{name}"), || Ok(bytes))
    }

    /// Xorbs first, then the record, then the SHA-256 alias: a record in the bucket always
    /// names xorbs that are there.
    fn publish_files(&self, store: &Store, files: &[FileHash]) -> ApiResult<()> {
        for file in files {
            let key = file_key(file);
            let record = store
                .file(file)?
                .ok_or_else(|| ApiError::internal(format!("file {file} missing locally")))?;
            let xorbs: HashSet<XorbHash> = record.terms.iter().map(|t| t.xorb).collect();
            for x in xorbs {
                self.ensure_xorb(store, &x)?;
            }
            let encoded = Bytes::from(record.encode());
            self.ensure(key, || Ok(encoded))?;
            let alias = Bytes::from(file.to_string());
            self.ensure(sha_key(&record.sha256), || Ok(alias))?;
        }
        Ok(())
    }

    fn fill_file(&self, store: &Store, file: &FileHash) -> ApiResult<bool> {
        let Some((bytes, _)) = self.bucket.get(&file_key(file))? else { return Ok(false) };
        let record = FileRecord::decode(*file, &bytes)
            .map_err(|e| ApiError::internal(format!("bucket record of {file}: {e}")))?;
        let xorbs: HashSet<XorbHash> = record.terms.iter().map(|t| t.xorb).collect();
        for x in xorbs {
            let have = store.xorb_meta(&x)?.is_some_and(|m| m.is_complete());
            if !have && !self.fill_xorb(store, &x)? {
                return Err(ApiError::internal(format!("bucket lacks xorb {x} of file {file}")));
            }
        }
        store.put_file(&record)?;
        Ok(true)
    }

    fn file_record(&self, file: &FileHash) -> ApiResult<Option<FileRecord>> {
        let Some((bytes, _)) = self.bucket.get(&file_key(file))? else { return Ok(None) };
        FileRecord::decode(*file, &bytes)
            .map(Some)
            .map_err(|e| ApiError::internal(format!("bucket record of {file}: {e}")))
    }

    /// The table object, kept in memory (it never changes); a xorb published without one
    /// is filled whole and its local table used.
    fn xorb_table(&self, store: &Store, xorb: &XorbHash) -> ApiResult<Option<XorbMeta>> {
        if let Some(m) = self.tables.lock().get(xorb) {
            return Ok(Some(m.clone()));
        }
        let meta = match self.bucket.get(&table_key(xorb))? {
            Some((bytes, _)) => XorbMeta::decode(*xorb, &bytes)
                .map_err(|e| ApiError::internal(format!("bucket table of {xorb}: {e}")))?,
            None if self.fill_xorb(store, xorb)? => match store.xorb_meta(xorb)? {
                Some(m) => m,
                None => return Ok(None),
            },
            None => return Ok(None),
        };
        let mut tables = self.tables.lock();
        if tables.len() >= TABLES_KEPT {
            tables.clear();
        }
        tables.insert(*xorb, meta.clone());
        Ok(Some(meta))
    }

    fn fill_xorb(&self, store: &Store, xorb: &XorbHash) -> ApiResult<bool> {
        let Some((bytes, _)) = self.bucket.get(&xorb_key(xorb))? else { return Ok(false) };
        store
            .put_xorb(*xorb, &bytes)
            .map_err(|e| ApiError::internal(format!("bucket xorb {xorb}: {e}")))?;
        Ok(true)
    }

    fn file_by_sha256(&self, sha: &Sha256) -> ApiResult<Option<FileHash>> {
        let Some((bytes, _)) = self.bucket.get(&sha_key(sha))? else { return Ok(None) };
        let text = std::str::from_utf8(&bytes).map_err(ApiError::internal)?;
        Ok(Some(text.trim().parse().map_err(|_| ApiError::internal("bad sha256 alias"))?))
    }

    fn shared_secret(&self) -> ApiResult<Option<[u8; 32]>> {
        const KEY: &str = "server/secret";
        if self.bucket.get(KEY)?.is_none() {
            let fresh: [u8; 32] = rand::random();
            // Two replicas starting at once: one creates it, both read the winner's.
            self.bucket.put(KEY, Bytes::copy_from_slice(&fresh), PutMode::Create)?;
        }
        let (bytes, _) =
            self.bucket.get(KEY)?.ok_or_else(|| ApiError::internal("server/secret vanished"))?;
        let key = <[u8; 32]>::try_from(bytes.as_ref())
            .map_err(|_| ApiError::internal("server/secret in the bucket is not 32 bytes"))?;
        Ok(Some(key))
    }

    fn xorb_url(&self, xorb: &XorbHash, ttl: Duration) -> ApiResult<Option<String>> {
        self.bucket.signed_get(&xorb_key(xorb), ttl).map(Some)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::storage::REFS;

    #[test]
    fn storage_urls() {
        let u: StorageUrl = "s3://my-bucket/hub/one/".parse().unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("my-bucket", "hub/one"));
        let u: StorageUrl = "s3://abc".parse().unwrap();
        assert_eq!(u.prefix, "");
        for bad in ["http://b/x", "s3://AB/x", "s3://b/x", "s3://bkt/a/../b", "s3://bkt/a b"] {
            assert!(bad.parse::<StorageUrl>().is_err(), "{bad}");
        }
    }

    /// Keys survive the trip through object names, and a key part prefix is a directory.
    #[test]
    fn meta_keys_round_trip() {
        let keys: [&[u8]; 4] = [
            b"model/ns/name\0refs/heads/main",
            b"t\0abc",
            b"model/a/b\0discussion\00000000001",
            b"x\0\0~y.",
        ];
        for key in keys {
            let object = meta_object(REFS, key).unwrap();
            assert!(
                object.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b)),
                "{object}"
            );
            let rel = object.strip_prefix("meta/refs/").unwrap();
            assert_eq!(meta_key(rel).unwrap(), key);
        }
        let dir = meta_object(REFS, b"model/ns/name").unwrap();
        let full = meta_object(REFS, b"model/ns/name\0refs/tags/v1").unwrap();
        assert!(full.starts_with(&format!("{dir}/")));
        let dirs = Section::ALL.map(|s| section_dir(s).unwrap());
        assert_eq!(dirs, ["meta/repos", "meta/refs", "meta/commits", "meta/trees"]);
        assert_eq!(meta_key("a.zz"), None);
    }
}
