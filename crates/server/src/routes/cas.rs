//! The Xet CAS API (`xet-protocol.md` §5) and the Hub's token routes for it (§6.1).
//!
//! - Tokens: `GET /api/{type}s/{ns}/{name}/xet-{read|write}-token/{rev}` issue signed CAS
//!   tokens bound to the repo and a scope.
//! - Reconstruction v1/v2 (and batch) of files registered to the token's repo, with presigned
//!   fetch URLs (`/_cas/fetch/{xorb}`) that authorise exactly the listed byte ranges.
//! - Uploads: xorbs are re-hashed by the store and refused on mismatch; shards are decoded and
//!   every term checked against stored xorbs (existence, lengths, verification hashes, file
//!   hash) before anything is recorded.
//! - Global dedup: `GET /v1/chunks/{prefix}/{hash}` answers a one-xorb shard whose chunk hashes
//!   are keyed with a fresh key.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use super::{RepoParams, query_pairs, read_body};
use crate::auth::CasClaims;
use crate::db::RepoKey;
use crate::error::{ApiError, ApiResult};
use crate::plan::Plan;
use crate::state::AppState;
use tessera_protocol::http::{ClosedRangesError, parse_closed_ranges};
use tessera_protocol::{
    BatchReconstruction, FetchInfo, FileKey, InclusiveByteRange, ReconstructionV1,
    ReconstructionV2, RepoType, ShardEvent, ShardUploadResponse, XetTokenResponse, XorbFetchV2,
    XorbRangeV2, XorbUploadResponse, headers as h, parse_range_header,
};
use tessera_store::{FileRecord, StoreError, Term, XorbMeta};
use tessera_xet::format::{Shard, ShardChunk, ShardXorb};
use tessera_xet::hash::{ChunkHash, FileHash, Sha256Hasher, XorbHash, file_hash, range_hash};

/// Largest xorb body: 64 MiB of chunk data plus headers and an optional footer.
const XORB_BODY_LIMIT: u64 = (64 << 20) + (1 << 20);
/// Largest shard body.
const SHARD_BODY_LIMIT: u64 = 64 << 20;
/// Bytes read from the store per step of a streamed fetch.
const PIECE: u64 = 4 << 20;
/// Most ranges one V2 fetch URL carries.
const RANGES_PER_URL: usize = 200;

// ---------------------------------------------------------------------------------------------
// Tokens

/// `GET /api/{type}s/{ns}/{name}/xet-read-token/{rev}`.
pub async fn read_token(
    st: State<AppState>,
    p: Path<RepoParams>,
    h: HeaderMap,
) -> ApiResult<Response> {
    token(st, p, h, false).await
}

/// `GET /api/{type}s/{ns}/{name}/xet-write-token/{rev}`.
pub async fn write_token(
    st: State<AppState>,
    p: Path<RepoParams>,
    h: HeaderMap,
) -> ApiResult<Response> {
    token(st, p, h, true).await
}

async fn token(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
    write: bool,
) -> ApiResult<Response> {
    let caller = s.caller(&headers)?;
    if s.options.no_xet {
        return Err(ApiError::not_found("Xet storage is disabled on this server"));
    }
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (key, _) = if write {
        s.writable_repo(&caller, repo_type, &id).await?
    } else {
        s.visible_repo(&caller, repo_type, &id).await?
    };
    if !write {
        let rev = p.revision()?;
        let k = key.clone();
        let found = s.blocking(move |s| s.db.resolve(&k, &rev)).await?;
        if found.is_none() {
            return Err(ApiError::revision_not_found(&p.revision()?));
        }
    }
    let exp = s.now() + s.options.token_ttl_secs;
    let access_token = s.signer.cas_token(&CasClaims { repo: key, write, exp });
    let cas_url = s.base_url(&headers);
    let mut r = Json(XetTokenResponse {
        access_token: access_token.clone(),
        exp,
        cas_url: cas_url.clone(),
    })
    .into_response();
    for (name, value) in [
        (h::X_XET_ACCESS_TOKEN, access_token),
        (h::X_XET_TOKEN_EXPIRATION, exp.to_string()),
        (h::X_XET_CAS_URL, cas_url),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
    Ok(r)
}

/// Checks the CAS bearer token: 401 if missing, invalid or expired, 403 if `write` is needed.
fn claims(s: &AppState, headers: &HeaderMap, write: bool) -> ApiResult<CasClaims> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("missing CAS token"))?;
    let claims = s
        .signer
        .check_cas_token(token.trim(), s.now())
        .ok_or_else(|| ApiError::unauthorized("invalid or expired CAS token"))?;
    if write && !claims.write {
        return Err(ApiError::forbidden("this CAS token is read-only"));
    }
    Ok(claims)
}

fn parse_hash<T: std::str::FromStr>(s: &str) -> ApiResult<T> {
    s.parse().map_err(|_| {
        ApiError::bad_request(format!("invalid hash {:?}", s.chars().take(80).collect::<String>()))
    })
}

fn store_input_error(e: StoreError) -> ApiError {
    match e {
        StoreError::XorbHashMismatch { .. }
        | StoreError::MalformedXorb { .. }
        | StoreError::CorruptChunk { .. } => ApiError::bad_request(e.to_string()),
        other => ApiError::internal(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Reconstruction

/// Plans `[start, end)` of a file over the store's xorb tables (`server::plan`).
fn plan(s: &AppState, record: &FileRecord, start: u64, end: u64) -> ApiResult<Plan> {
    use crate::plan::{PlanError, plan};
    plan(record, start, end, |x| s.db.xorb_table(x)).map_err(|e| match e {
        PlanError::Lookup(e) => e,
        damage => ApiError::internal(damage),
    })
}

/// Where clients fetch xorb bytes: presigned object-storage URLs of whole xorbs (the client
/// sends the `Range` of each fetch, as with the Hub's CAS), or this server's own signed
/// `/_cas/fetch` URLs when the storage hands out none or `--proxy-bytes` is set.
struct Urls<'a> {
    base: String,
    direct: HashMap<XorbHash, String>,
    s: &'a AppState,
}

impl<'a> Urls<'a> {
    /// Signs the direct URLs of `xorbs` (off the runtime: signing may block on the storage).
    async fn new(s: &'a AppState, headers: &HeaderMap, xorbs: Vec<XorbHash>) -> ApiResult<Self> {
        let direct = if s.options.proxy_bytes {
            HashMap::new()
        } else {
            let ttl = std::time::Duration::from_secs(s.options.token_ttl_secs);
            s.blocking(move |s| {
                let mut out = HashMap::new();
                for x in xorbs {
                    if let Some(url) = s.storage.xorb_url(&x, ttl)? {
                        out.insert(x, url);
                    }
                }
                Ok(out)
            })
            .await?
        };
        Ok(Self { base: s.base_url(headers), direct, s })
    }

    /// Ranges one URL may serve: one for object storage (S3 serves single ranges only).
    fn ranges_per_url(&self) -> usize {
        if self.direct.is_empty() { RANGES_PER_URL } else { 1 }
    }

    fn url(&self, xorb: &XorbHash, ranges: &[InclusiveByteRange]) -> String {
        match self.direct.get(xorb) {
            Some(url) => url.clone(),
            None => fetch_url(self.s, &self.base, xorb, ranges),
        }
    }
}

/// A presigned URL serving the given byte ranges of a xorb.
fn fetch_url(s: &AppState, base: &str, xorb: &XorbHash, ranges: &[InclusiveByteRange]) -> String {
    let r = ranges.iter().map(|b| format!("{}-{}", b.start, b.end)).collect::<Vec<_>>().join(",");
    let exp = s.now() + s.options.token_ttl_secs;
    let sig = s.signer.sign("fetch", &format!("{xorb}\0{r}\0{exp}"));
    format!("{base}/_cas/fetch/{xorb}?r={r}&exp={exp}&sig={sig}")
}

/// Loads a file the token's repo may read, and the byte range asked for.
async fn file_for(s: &AppState, claims: &CasClaims, file_id: &str) -> ApiResult<FileRecord> {
    let file: FileHash = parse_hash(file_id)?;
    let key = claims.repo.clone();
    s.blocking(move |s| {
        if !s.db.file_in_repo(&key, &file)? {
            return Err(ApiError::not_found("file not found"));
        }
        s.db.file_record(&file)?.ok_or_else(|| ApiError::not_found("file not found"))
    })
    .await
}

/// The requested `[start, end)` of a file of `size` bytes; `None` = 416.
fn requested_range(headers: &HeaderMap, size: u64) -> ApiResult<(u64, u64)> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok((0, size));
    };
    let specs = parse_range_header(value)
        .filter(|r| r.len() == 1)
        .ok_or_else(|| ApiError::bad_request("bad Range"))?;
    match specs[0].resolve(size) {
        Some(r) => Ok(r),
        None if size == 0 => Ok((0, 0)),
        None => Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range starts past the end of the file",
        )),
    }
}

/// `GET /v1/reconstructions/{file_id}`.
pub async fn reconstruction_v1(
    State(s): State<AppState>,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<ReconstructionV1>> {
    let claims = claims(&s, &headers, false)?;
    let record = file_for(&s, &claims, &file_id).await?;
    let (start, end) = requested_range(&headers, record.size)?;
    let plan = s.blocking(move |s| plan(s, &record, start, end)).await?;
    let urls = Urls::new(&s, &headers, plan.fetch.keys().copied().collect()).await?;
    let fetch_info = plan
        .fetch
        .iter()
        .map(|(xorb, ranges)| {
            let infos = ranges
                .iter()
                .map(|(chunks, bytes)| FetchInfo {
                    range: *chunks,
                    url: urls.url(xorb, &[*bytes]),
                    url_range: *bytes,
                })
                .collect();
            (xorb.to_string(), infos)
        })
        .collect();
    Ok(Json(ReconstructionV1 {
        offset_into_first_range: plan.offset,
        terms: plan.terms,
        fetch_info,
    }))
}

/// `GET /v2/reconstructions/{file_id}`.
pub async fn reconstruction_v2(
    State(s): State<AppState>,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<ReconstructionV2>> {
    if s.options.no_v2_reconstructions {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Not found"));
    }
    let claims = claims(&s, &headers, false)?;
    let record = file_for(&s, &claims, &file_id).await?;
    let (start, end) = requested_range(&headers, record.size)?;
    let plan = s.blocking(move |s| plan(s, &record, start, end)).await?;
    let urls = Urls::new(&s, &headers, plan.fetch.keys().copied().collect()).await?;
    let xorbs = plan
        .fetch
        .iter()
        .map(|(xorb, ranges)| {
            let fetches = ranges
                .chunks(urls.ranges_per_url())
                .map(|group| {
                    let bytes: Vec<InclusiveByteRange> = group.iter().map(|(_, b)| *b).collect();
                    XorbFetchV2 {
                        url: urls.url(xorb, &bytes),
                        ranges: group
                            .iter()
                            .map(|(c, b)| XorbRangeV2 { chunks: *c, bytes: *b })
                            .collect(),
                    }
                })
                .collect();
            (xorb.to_string(), fetches)
        })
        .collect();
    Ok(Json(ReconstructionV2 { offset_into_first_range: plan.offset, terms: plan.terms, xorbs }))
}

/// Batch reconstruction: `GET /v1/reconstructions?file_id=...` or `POST` with `[{hash}]`.
pub async fn reconstruction_batch(
    State(s): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<BatchReconstruction>> {
    let claims = claims(&s, &headers, false)?;
    let mut ids: Vec<String> = query_pairs(uri.query())
        .into_iter()
        .filter(|(k, _)| k == "file_id")
        .map(|(_, v)| v)
        .collect();
    let bytes = read_body(&headers, body, super::JSON_LIMIT).await?;
    if !bytes.is_empty() {
        let keys: Vec<FileKey> =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
        ids.extend(keys.into_iter().map(|k| k.hash));
    }
    if ids.len() > 1000 {
        return Err(ApiError::bad_request("at most 1000 files per batch"));
    }
    let mut out = BatchReconstruction::default();
    for id in ids {
        let record = file_for(&s, &claims, &id).await?;
        let size = record.size;
        let plan = s.blocking(move |s| plan(s, &record, 0, size)).await?;
        let urls = Urls::new(&s, &headers, plan.fetch.keys().copied().collect()).await?;
        for (xorb, ranges) in &plan.fetch {
            let infos = out.fetch_info.entry(xorb.to_string()).or_default();
            for (chunks, bytes) in ranges {
                if !infos.iter().any(|f| f.range == *chunks) {
                    infos.push(FetchInfo {
                        range: *chunks,
                        url: urls.url(xorb, &[*bytes]),
                        url_range: *bytes,
                    });
                }
            }
        }
        out.files.insert(id, plan.terms);
    }
    Ok(Json(out))
}

/// `HEAD /v1/files/{file_id}`: the file size.
pub async fn head_file(
    State(s): State<AppState>,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let claims = claims(&s, &headers, false)?;
    let record = file_for(&s, &claims, &file_id).await?;
    let mut r = Response::new(Body::empty());
    if let Ok(v) = HeaderValue::from_str(&record.size.to_string()) {
        r.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Presigned xorb range reads

/// Parses `a-b,c-d` (inclusive ends).
fn parse_ranges(r: &str) -> Option<Vec<(u64, u64)>> {
    r.split(',')
        .map(|p| {
            let (a, b) = p.split_once('-')?;
            let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// `GET /_cas/fetch/{xorb}?r&exp&sig` with `Range`: raw stored bytes, only inside signed ranges.
pub async fn fetch(
    State(s): State<AppState>,
    Path(xorb): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let pairs = query_pairs(uri.query());
    let get = |k: &str| {
        pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap_or_default()
    };
    let (r, exp, sig) = (get("r"), get("exp"), get("sig"));
    if !s.signer.verify("fetch", &format!("{xorb}\0{r}\0{exp}"), sig) {
        return Err(ApiError::forbidden("invalid signature"));
    }
    if exp.parse::<u64>().unwrap_or(0) <= s.now() {
        return Err(ApiError::forbidden("URL expired"));
    }
    let hash: XorbHash = parse_hash(&xorb)?;
    let allowed = parse_ranges(r).ok_or_else(|| ApiError::forbidden("invalid signed ranges"))?;
    let requested = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => allowed.clone(),
        Some(v) => requested_ranges(v)?,
    };
    if !requested.iter().all(|(a, b)| allowed.iter().any(|(lo, hi)| a >= lo && b <= hi)) {
        return Err(ApiError::forbidden("range not covered by the signature"));
    }
    // A replica plans from chunk tables alone: the bytes it proxies may not be local yet.
    s.blocking(move |s| s.db.local_xorb(&hash)).await?;
    if let [(a, b)] = requested[..] {
        return Ok(partial(xorb_body(s.clone(), hash, a, b + 1), b - a + 1, Some((a, b)), None));
    }
    Ok(multipart(s, hash, requested))
}

/// The closed ranges of a `Range` header on a presigned URL; overlapping or repeated ones are
/// 416, so each signed byte is served at most once.
fn requested_ranges(value: &str) -> ApiResult<Vec<(u64, u64)>> {
    parse_closed_ranges(value).map_err(|e| match e {
        ClosedRangesError::Malformed => {
            ApiError::bad_request("bad Range: only closed ranges are served")
        }
        ClosedRangesError::Overlapping => ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "overlapping or repeated ranges are not served",
        ),
    })
}

/// A 206 answer of `len` bytes, with `Content-Range` for a single range or the multipart type.
fn partial(body: Body, len: u64, range: Option<(u64, u64)>, boundary: Option<&str>) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let hm = resp.headers_mut();
    let content_type = match boundary {
        Some(b) => format!("multipart/byteranges; boundary={b}"),
        None => "application/octet-stream".to_owned(),
    };
    let range = range.map(|(a, b)| (header::CONTENT_RANGE, format!("bytes {a}-{b}/*")));
    let fields = [(header::CONTENT_TYPE, content_type), (header::CONTENT_LENGTH, len.to_string())];
    for (name, value) in fields.into_iter().chain(range) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            hm.insert(name, v);
        }
    }
    resp
}

/// Several ranges as `multipart/byteranges`, streamed part by part (never built in memory).
fn multipart(s: AppState, hash: XorbHash, ranges: Vec<(u64, u64)>) -> Response {
    let boundary = format!("tessera-{}", hex::encode(rand::random::<[u8; 8]>()));
    let head = {
        let boundary = boundary.clone();
        move |a: u64, b: u64| {
            format!(
                "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/*\r\n\r\n"
            )
        }
    };
    let tail = format!("--{boundary}--\r\n");
    let len = ranges.iter().map(|&(a, b)| head(a, b).len() as u64 + b - a + 1 + 2).sum::<u64>()
        + tail.len() as u64;
    let parts = ranges.into_iter().map(move |(a, b)| {
        let prefix = futures::stream::once(futures::future::ready(Ok(Bytes::from(head(a, b)))));
        let crlf = futures::stream::once(futures::future::ready(Ok(Bytes::from_static(b"\r\n"))));
        prefix.chain(xorb_stream(s.clone(), hash, a, b + 1)).chain(crlf).boxed()
    });
    let end = futures::stream::once(futures::future::ready(Ok(Bytes::from(tail)))).boxed();
    let stream = futures::stream::iter(parts.chain(std::iter::once(end))).flatten();
    partial(Body::from_stream(stream), len, None, Some(&boundary))
}

/// Streams `[start, end)` of a stored xorb.
fn xorb_body(s: AppState, xorb: XorbHash, start: u64, end: u64) -> Body {
    Body::from_stream(xorb_stream(s, xorb, start, end))
}

/// `[start, end)` of a stored xorb, read in steps of at most [`PIECE`] bytes, each step as
/// buffers of at most [`SEND_BUFFER`] bytes.
fn xorb_stream(
    s: AppState,
    xorb: XorbHash,
    start: u64,
    end: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let steps = futures::stream::unfold(start, move |pos| {
        let s = s.clone();
        async move {
            if pos >= end {
                return None;
            }
            let stop = end.min(pos + PIECE);
            let read = s.blocking(move |s| read_buffers(&s.store, &xorb, pos, stop)).await;
            Some(match read {
                Ok(buffers) => (buffers.into_iter().map(Ok).collect(), stop),
                Err(_) => (vec![Err(std::io::Error::other("xorb read failed"))], end),
            })
        }
    });
    steps.flat_map(futures::stream::iter)
}

/// Bytes of a buffer handed to the HTTP body: small enough for the allocator to reuse freed
/// ones (larger buffers come fresh from the OS, a page fault per page; `src/main.rs`).
const SEND_BUFFER: u64 = 64 << 10;

/// `[start, end)` of a stored xorb in buffers of at most [`SEND_BUFFER`] bytes.
fn read_buffers(
    store: &tessera_store::Store,
    xorb: &XorbHash,
    start: u64,
    end: u64,
) -> ApiResult<Vec<Bytes>> {
    let mut out = Vec::with_capacity(end.saturating_sub(start).div_ceil(SEND_BUFFER) as usize);
    let mut pos = start;
    while pos < end {
        let stop = end.min(pos + SEND_BUFFER);
        let bytes = store.read_xorb_bytes(xorb, pos, stop)?;
        if bytes.len() as u64 != stop - pos {
            return Err(ApiError::internal("short xorb read"));
        }
        out.push(Bytes::from(bytes));
        pos = stop;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// `POST /v1/xorbs/{prefix}/{hash}`.
pub async fn upload_xorb(
    State(s): State<AppState>,
    Path((prefix, hash)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<XorbUploadResponse>> {
    claims(&s, &headers, true)?;
    if prefix != "default" {
        return Err(ApiError::bad_request("the only xorb prefix is default"));
    }
    let xorb: XorbHash = parse_hash(&hash)?;
    let state = s.clone();
    let _arriving = state.xorbs_arriving.enter(xorb);
    let _slot = s.upload_slot().await?;
    let bytes = read_body(&headers, body, XORB_BODY_LIMIT).await?;
    let lock = s.xorb_lock(&hash);
    let _guard = lock.lock().await;
    let inserted = s
        .blocking(move |s| {
            let inserted = s.store.put_xorb(xorb, &bytes).map_err(store_input_error)?;
            // Answered only once every replica can find it.
            s.storage.publish_xorb(&xorb, &bytes)?;
            Ok(inserted)
        })
        .await?;
    if inserted {
        tracing::debug!(%xorb, "xorb stored");
    }
    Ok(Json(XorbUploadResponse { was_inserted: inserted }))
}

/// `HEAD /v1/xorbs/{prefix}/{hash}`.
pub async fn head_xorb(
    State(s): State<AppState>,
    Path((_prefix, hash)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    claims(&s, &headers, false)?;
    let xorb: XorbHash = parse_hash(&hash)?;
    let m = s.blocking(move |s| Ok(s.store.xorb_meta(&xorb)?)).await?;
    match m {
        Some(m) if m.is_complete() => {
            let mut r = Response::new(Body::empty());
            if let Ok(v) = HeaderValue::from_str(&m.stored_len().to_string()) {
                r.headers_mut().insert(header::CONTENT_LENGTH, v);
            }
            Ok(r)
        }
        _ => Err(ApiError::not_found("xorb not found")),
    }
}

/// Longest a shard waits for a xorb it names whose upload is under way.
const XORB_ARRIVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A stored xorb's table; if absent or incomplete but being uploaded, once that upload ends.
fn arrived_xorb(s: &AppState, xorb: &XorbHash) -> ApiResult<Option<XorbMeta>> {
    match s.store.xorb_meta(xorb)? {
        Some(m) if m.is_complete() => Ok(Some(m)),
        found if s.xorbs_arriving.wait_for(xorb, XORB_ARRIVAL_WAIT) => {
            Ok(s.store.xorb_meta(xorb)?.or(found))
        }
        // Uploaded through another replica: in the bucket, not yet in this cache.
        found if s.storage.fill_xorb(&s.store, xorb)? => Ok(s.store.xorb_meta(xorb)?.or(found)),
        found => Ok(found),
    }
}

/// Most chunk references (summed over every term of every file) one shard may make. Verifying
/// a file costs memory and hashing per chunk it references, and a term of 80 shard bytes may
/// name 8192 chunks, so this bounds the work a small shard can ask for: 2^20 references are
/// 64 GiB of files at the average chunk size, ~40 MiB of leaves to hash.
pub const MAX_SHARD_CHUNK_REFS: u64 = 1 << 20;

/// Refuses a shard whose files reference more chunks than [`MAX_SHARD_CHUNK_REFS`], before any
/// store lookup or allocation per chunk.
fn check_chunk_refs(shard: &Shard) -> ApiResult<()> {
    let refs = shard
        .files
        .iter()
        .flat_map(|f| &f.terms)
        .map(|t| u64::from(t.chunk_end.saturating_sub(t.chunk_start)))
        .fold(0u64, u64::saturating_add);
    if refs > MAX_SHARD_CHUNK_REFS {
        return Err(ApiError::bad_request(format!(
            "shard references {refs} chunks, over the limit of {MAX_SHARD_CHUNK_REFS}"
        )));
    }
    Ok(())
}

/// Verifies a shard against the store and records its files. Returns 1 if a file was new.
fn register_shard(s: &AppState, bytes: &[u8], key: &RepoKey) -> ApiResult<u8> {
    let shard =
        Shard::decode(bytes).map_err(|e| ApiError::bad_request(format!("invalid shard: {e}")))?;
    check_chunk_refs(&shard)?;
    let mut metas: HashMap<XorbHash, XorbMeta> = HashMap::new();
    for x in &shard.xorbs {
        let m = arrived_xorb(s, &x.hash)?.filter(XorbMeta::is_complete).ok_or_else(|| {
            ApiError::bad_request(format!("shard lists xorb {} that was not uploaded", x.hash))
        })?;
        let same = m.chunks.len() == x.chunks.len()
            && m.chunks
                .iter()
                .flatten()
                .zip(&x.chunks)
                .all(|(a, b)| a.hash == b.hash && a.unpacked_len == b.len);
        if !same {
            return Err(ApiError::bad_request(format!(
                "shard's chunk list of xorb {} does not match it",
                x.hash
            )));
        }
        metas.insert(x.hash, m);
    }
    let mut records = Vec::with_capacity(shard.files.len());
    for f in &shard.files {
        records.push(verify_file(s, &mut metas, f)?);
    }
    // Every check passes before anything is recorded.
    let mut fresh = Vec::new();
    for mut record in records {
        if s.store.file(&record.hash)?.is_none() {
            record.sha256 = checked_sha256(s, &record)?;
            fresh.push(record);
        }
    }
    for record in &fresh {
        s.store.put_file(record)?;
    }
    let files: Vec<FileHash> = shard.files.iter().map(|f| f.hash).collect();
    s.storage.publish_files(&s.store, &files)?;
    s.storage.publish_shard(bytes)?;
    s.db.register_files(key, &files)?;
    Ok(u8::from(!fresh.is_empty() || shard.files.is_empty()))
}

/// Checks one file of a shard: every term's xorb is stored, ranges and lengths agree, the
/// verification hash and the file hash match. Returns its record (sha256 zero when absent).
fn verify_file(
    s: &AppState,
    metas: &mut HashMap<XorbHash, XorbMeta>,
    f: &tessera_xet::format::ShardFile,
) -> ApiResult<FileRecord> {
    let bad = |why: String| ApiError::bad_request(format!("file {}: {why}", f.hash));
    let verification =
        f.verification.as_ref().ok_or_else(|| bad("no verification records".into()))?;
    if verification.len() != f.terms.len() {
        return Err(bad("one verification record per term is required".into()));
    }
    let mut leaves = Vec::new();
    let mut terms = Vec::with_capacity(f.terms.len());
    for (t, expected) in f.terms.iter().zip(verification) {
        let m = match metas.entry(t.xorb) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                arrived_xorb(s, &t.xorb)?
                    .ok_or_else(|| bad(format!("xorb {} was not uploaded", t.xorb)))?,
            ),
        };
        if t.chunk_start >= t.chunk_end || t.chunk_end as usize > m.chunks.len() {
            return Err(bad(format!(
                "chunk range {}..{} outside xorb {}",
                t.chunk_start, t.chunk_end, t.xorb
            )));
        }
        let chunks = m.chunks[t.chunk_start as usize..t.chunk_end as usize]
            .iter()
            .map(|c| c.as_ref().map(|c| (c.hash, c.unpacked_len)))
            .collect::<Option<Vec<(ChunkHash, u32)>>>()
            .ok_or_else(|| bad(format!("xorb {} is not fully stored", t.xorb)))?;
        let len: u64 = chunks.iter().map(|c| u64::from(c.1)).sum();
        if len != u64::from(t.unpacked_len) {
            return Err(bad("term length disagrees with its chunks".into()));
        }
        let hashes: Vec<ChunkHash> = chunks.iter().map(|c| c.0).collect();
        if range_hash(&hashes) != *expected {
            return Err(bad("verification hash mismatch".into()));
        }
        leaves.extend(chunks.iter().map(|(h, l)| (*h, u64::from(*l))));
        terms.push(Term {
            xorb: t.xorb,
            chunk_start: t.chunk_start,
            chunk_end: t.chunk_end,
            unpacked_len: t.unpacked_len,
        });
    }
    if file_hash(&leaves) != f.hash {
        return Err(bad("file hash does not match its chunks".into()));
    }
    Ok(FileRecord { hash: f.hash, size: f.size(), sha256: f.sha256.unwrap_or_default(), terms })
}

/// The SHA-256 of a new file, computed from its stored bytes. Recording a file also points the
/// store-wide sha256 -> file alias (LFS downloads, commits by pointer) at it, so a shard's
/// metadata extension is a claim to check, never trusted: otherwise one repo's shard could bind
/// another repo's sha256 to different bytes. A claim that disagrees is refused.
fn checked_sha256(s: &AppState, record: &FileRecord) -> ApiResult<tessera_xet::hash::Sha256> {
    let computed = sha256_of(s, record)?;
    let claimed = record.sha256;
    if claimed != tessera_xet::hash::Sha256::default() && claimed != computed {
        return Err(ApiError::bad_request(format!(
            "file {}: the shard's sha256 {claimed} is not the file's ({computed})",
            record.hash
        )));
    }
    Ok(computed)
}

/// SHA-256 of a file rebuilt from the store.
fn sha256_of(s: &AppState, record: &FileRecord) -> ApiResult<tessera_xet::hash::Sha256> {
    let mut h = Sha256Hasher::default();
    let mut pos = 0;
    while pos < record.size {
        let len = (record.size - pos).min(PIECE);
        h.update(&s.store.read_record_range(record, pos, len)?);
        pos += len;
    }
    Ok(h.finish())
}

async fn shard_upload(s: &AppState, headers: &HeaderMap, body: Body) -> ApiResult<u8> {
    let c = claims(s, headers, true)?;
    // The slot covers reading the body only: registering may wait for a xorb upload, which
    // needs a slot of its own.
    let bytes = {
        let _slot = s.upload_slot().await?;
        read_body(headers, body, SHARD_BODY_LIMIT).await?
    };
    let key = c.repo;
    let result = s.blocking(move |s| register_shard(s, &bytes, &key)).await?;
    tracing::debug!(result, "shard registered");
    Ok(result)
}

/// `POST /v1/shards`.
pub async fn upload_shard_v1(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ShardUploadResponse>> {
    let result = shard_upload(&s, &headers, body).await?;
    Ok(Json(ShardUploadResponse { result }))
}

/// `POST /v2/shards`: the same, answered as an NDJSON event stream (validation happens before
/// the stream starts, so failures are plain 4xx answers).
pub async fn upload_shard_v2(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let result = shard_upload(&s, &headers, body).await?;
    let mut out = String::new();
    for e in [ShardEvent::Validating { verified: 1, total: 1 }, ShardEvent::Result { result }] {
        out.push_str(&serde_json::to_string(&e).map_err(ApiError::internal)?);
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

// ---------------------------------------------------------------------------------------------
// Global dedup

/// `GET /v1/chunks/{prefix}/{hash}`: a dedup shard for a known chunk, 404 otherwise.
pub async fn dedup(
    State(s): State<AppState>,
    Path((prefix, hash)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    claims(&s, &headers, false)?;
    if prefix != "default" && prefix != "default-merkledb" {
        return Err(ApiError::bad_request("unknown prefix"));
    }
    let chunk: ChunkHash = parse_hash(&hash)?;
    let key: [u8; 32] = rand::random();
    let expiry = s.now() + s.options.token_ttl_secs;
    let body = s
        .blocking(move |s| {
            let Some((xorb, _)) = s.store.chunk_location(&chunk)? else { return Ok(None) };
            let Some(m) = s.store.xorb_meta(&xorb)?.filter(XorbMeta::is_complete) else {
                return Ok(None);
            };
            let mut start = 0u32;
            let chunks = m
                .chunks
                .iter()
                .flatten()
                .map(|c| {
                    let sc = ShardChunk {
                        hash: c.hash,
                        unpacked_start: start,
                        len: c.unpacked_len,
                        flags: 0,
                    };
                    start = start.saturating_add(c.unpacked_len);
                    sc
                })
                .collect();
            let bytes_on_disk = u32::try_from(m.stored_len()).unwrap_or(u32::MAX);
            let shard = Shard {
                files: Vec::new(),
                xorbs: vec![ShardXorb { hash: xorb, bytes_on_disk, chunks }],
                footer: None,
            };
            shard
                .encode_dedup_response(Some(key), Some(expiry))
                .map(Some)
                .map_err(ApiError::internal)
        })
        .await?;
    match body {
        Some(b) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response()),
        None => Err(ApiError::not_found("chunk not found")),
    }
}

/// `POST /v1/telemetry`: accepted and dropped.
pub async fn telemetry(headers: HeaderMap, body: Body) -> ApiResult<StatusCode> {
    read_body(&headers, body, super::JSON_LIMIT).await?;
    Ok(StatusCode::OK)
}
