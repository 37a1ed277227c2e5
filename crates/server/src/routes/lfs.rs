//! The legacy Git LFS batch API (basic and multipart transfers), for clients without Xet
//! (`HF_HUB_DISABLE_XET=1`, old clients, hf-hub).
//!
//! Upload URLs are presigned (`PUT` carries no Authorization): they name the object, its size,
//! the repo and an expiry, signed with the server's key. The PUT body is streamed straight into
//! an ingest session (chunked and deduplicated with everything else) while its SHA-256 is
//! computed; the session is committed only if digest and size match the signed ones.
//!
//! Objects over the part size (`--lfs-part-size`) use the Hub's multipart transfer instead:
//! each part is `PUT` to its own presigned URL and kept in `tmp/` (answered with an `ETag`),
//! and the completion `POST` ingests the parts in order as one object, under the same checks.

use std::io::Read;

use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;

use super::files::file_body;
use super::{RepoParams, json_body, query_get, query_pairs};
use crate::db::RepoKey;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use tessera_protocol::{
    LfsAction, LfsActions, LfsBatchObject, LfsBatchRequest, LfsBatchResponse, LfsObject,
    LfsObjectError, RepoType, is_hex64, percent_encode,
};
use tessera_xet::hash::{Sha256, Sha256Hasher};

const LFS_JSON: &str = "application/vnd.git-lfs+json";
/// Largest object accepted through LFS.
const MAX_OBJECT: u64 = 1 << 40;

fn lfs_json<T: serde::Serialize>(v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    ([(header::CONTENT_TYPE, HeaderValue::from_static(LFS_JSON))], body).into_response()
}

/// Batch route for model repos: `/{ns}/{name}.git/info/lfs/objects/batch`.
pub async fn batch_model(
    st: State<AppState>,
    p: Path<RepoParams>,
    h: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    batch(st, p, h, b, RepoType::Model).await
}

/// Batch route for datasets.
pub async fn batch_dataset(
    st: State<AppState>,
    p: Path<RepoParams>,
    h: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    batch(st, p, h, b, RepoType::Dataset).await
}

/// Batch route for spaces.
pub async fn batch_space(
    st: State<AppState>,
    p: Path<RepoParams>,
    h: HeaderMap,
    b: Body,
) -> ApiResult<Response> {
    batch(st, p, h, b, RepoType::Space).await
}

async fn batch(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
    body: Body,
    repo_type: RepoType,
) -> ApiResult<Response> {
    if !p.name.ends_with(".git") {
        return Err(ApiError::not_found("not an LFS endpoint"));
    }
    let caller = s.caller(&headers)?;
    let (_, id) = p.repo(repo_type)?;
    // Who may see the repo is known before the body is read: a caller who may not is refused
    // without the server waiting for (up to 16 MiB of) JSON.
    let (key, record) = s.visible_repo(&caller, repo_type, &id).await?;
    let req: LfsBatchRequest = json_body(&headers, body).await?;
    let upload = match req.operation.as_str() {
        "upload" => true,
        "download" => false,
        other => return Err(ApiError::bad_request(format!("unknown LFS operation {other}"))),
    };
    if upload {
        s.check_write(&caller, &record)?;
    }
    if req.objects.len() > 1000 {
        return Err(ApiError::bad_request("at most 1000 objects per batch"));
    }
    let base = s.base_url(&headers);
    let exp = s.now() + s.options.token_ttl_secs;
    let objects = req.objects;
    let k = key.clone();
    let present = s
        .blocking(move |s| {
            objects
                .into_iter()
                .map(|o| {
                    let stored = match Sha256::from_hex(o.oid.as_str()) {
                        Ok(sha) if is_hex64(o.oid.as_str()) => {
                            s.db.repo_object(&k, &sha, Some(o.size))?.is_some()
                        }
                        _ => false,
                    };
                    Ok((o, stored))
                })
                .collect::<ApiResult<Vec<(LfsObject, bool)>>>()
        })
        .await?;
    let objects = present
        .into_iter()
        .map(|(o, stored)| batch_object(&s, &base, &key, o, stored, upload, exp))
        .collect();
    Ok(lfs_json(&LfsBatchResponse {
        transfer: "basic".into(),
        objects,
        hash_algo: "sha256".into(),
    }))
}

fn batch_object(
    s: &AppState,
    base: &str,
    key: &RepoKey,
    o: LfsObject,
    stored: bool,
    upload: bool,
    exp: u64,
) -> LfsBatchObject {
    let error = |code, message: &str| LfsBatchObject {
        oid: o.oid.clone(),
        size: o.size,
        actions: None,
        error: Some(LfsObjectError { code, message: message.to_owned() }),
    };
    if !is_hex64(o.oid.as_str()) {
        return error(422, "invalid oid");
    }
    if o.size > MAX_OBJECT {
        return error(422, "object too large");
    }
    let msg = format!("{}\0{}\0{}\0{exp}", key.as_str(), o.oid, o.size);
    let query = format!("repo={}&exp={exp}&sig=", percent_encode(key.as_str(), false));
    let actions = match (upload, stored) {
        (true, true) => None,
        (true, false) => Some(LfsActions {
            upload: Some(upload_action(s, base, &o, &query, &msg)),
            verify: Some(LfsAction {
                href: format!(
                    "{base}/_lfs/verify?{query}{}",
                    s.signer.sign("lfs-verify", &format!("{}\0{exp}", key.as_str()))
                ),
                header: None,
                expires_in: Some(s.options.token_ttl_secs),
            }),
            download: None,
        }),
        (false, false) => return error(404, "object not found"),
        (false, true) => Some(LfsActions {
            download: Some(LfsAction {
                href: format!(
                    "{base}/_lfs/objects/{}/{}?{query}{}",
                    o.oid,
                    o.size,
                    s.signer.sign("lfs-down", &msg)
                ),
                header: None,
                expires_in: Some(s.options.token_ttl_secs),
            }),
            ..LfsActions::default()
        }),
    };
    LfsBatchObject { oid: o.oid, size: o.size, actions, error: None }
}

/// Where to send an object: one presigned `PUT`, or for objects over the part size, presigned
/// part URLs (`header` keys `"1"`..`"N"` with `chunk_size`) and a completion URL as `href`, the
/// Hub's multipart transfer.
fn upload_action(s: &AppState, base: &str, o: &LfsObject, query: &str, msg: &str) -> LfsAction {
    let part = s.options.lfs_part_size;
    let ttl = Some(s.options.token_ttl_secs);
    if o.size <= part {
        let sig = s.signer.sign("lfs-up", msg);
        let href = format!("{base}/_lfs/upload/{}/{}?{query}{sig}", o.oid, o.size);
        return LfsAction { href, header: None, expires_in: ttl };
    }
    let sig = s.signer.sign("lfs-part", msg);
    let mut header: std::collections::BTreeMap<String, String> = (1..=o.size.div_ceil(part))
        .map(|n| (n.to_string(), format!("{base}/_lfs/part/{}/{}/{n}?{query}{sig}", o.oid, o.size)))
        .collect();
    header.insert("chunk_size".into(), part.to_string());
    let sig = s.signer.sign("lfs-complete", msg);
    let href = format!("{base}/_lfs/complete/{}/{}?{query}{sig}", o.oid, o.size);
    LfsAction { href, header: Some(header), expires_in: ttl }
}

/// Path parameters of presigned object URLs.
#[derive(Debug, Deserialize)]
pub struct ObjectParams {
    oid: String,
    size: u64,
}

/// Checks a presigned object URL; returns the repo key.
fn check_signed(
    s: &AppState,
    domain: &str,
    p: &ObjectParams,
    query: Option<&str>,
) -> ApiResult<RepoKey> {
    let pairs = query_pairs(query);
    let repo = query_get(&pairs, "repo").unwrap_or_default();
    let exp: u64 = query_get(&pairs, "exp").and_then(|e| e.parse().ok()).unwrap_or(0);
    let sig = query_get(&pairs, "sig").unwrap_or_default();
    let msg = format!("{repo}\0{}\0{}\0{exp}", p.oid, p.size);
    if !s.signer.verify(domain, &msg, sig) {
        return Err(ApiError::forbidden("invalid signature"));
    }
    if exp <= s.now() {
        return Err(ApiError::forbidden("URL expired"));
    }
    Ok(RepoKey::from_trusted(repo.to_owned()))
}

/// Adapts a channel of body frames to `Read` for the blocking ingest.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// `PUT /_lfs/upload/{oid}/{size}?repo&exp&sig`: the object bytes.
///
/// The blocking side ingests from a channel fed by the body, then waits for the async side's
/// verdict on the received bytes; it commits the session only if both sides agree.
pub async fn upload(
    State(s): State<AppState>,
    Path(p): Path<ObjectParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let key = check_signed(&s, "lfs-up", &p, uri.query())?;
    if super::content_length(&headers).is_some_and(|n| n != p.size) {
        return Err(ApiError::bad_request("Content-Length differs from the announced size"));
    }
    let expected = Sha256::from_hex(&p.oid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The ingest holds a blocking thread for the whole body: a slot keeps uploads from taking
    // every blocking thread (reads need them too) and bounds their sessions' memory.
    let _slot = s.upload_slot().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (verdict_tx, verdict_rx) = tokio::sync::oneshot::channel::<bool>();
    let size = p.size;
    let ingest = tokio::task::spawn_blocking({
        let s = s.clone();
        move || -> ApiResult<u64> {
            let mut session = s.store.ingest_session();
            let report = session.add_reader(ChannelReader { rx, current: Bytes::new() })?;
            let body_ok = verdict_rx.blocking_recv().unwrap_or(false);
            if !body_ok || report.sha256 != expected || report.size != size {
                return Err(ApiError::bad_request("uploaded bytes do not match the oid and size"));
            }
            session.commit()?;
            s.db.register_files(&key, &[report.file])?;
            Ok(report.new_bytes)
        }
    });
    let mut hasher = Sha256Hasher::default();
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    let mut failure = None;
    while let Some(frame) = stream.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                failure = Some(ApiError::bad_request(format!("reading body: {e}")));
                break;
            }
        };
        received += frame.len() as u64;
        if received > p.size {
            failure = Some(ApiError::bad_request("body larger than the announced size"));
            break;
        }
        hasher.update(&frame);
        if tx.send(frame).await.is_err() {
            break; // the ingest failed; its error is reported below
        }
    }
    drop(tx);
    let body_ok = failure.is_none() && received == p.size && hasher.finish() == expected;
    let _ = verdict_tx.send(body_ok);
    let result = ingest.await?;
    if let Some(e) = failure {
        return Err(e);
    }
    let new_bytes = result?;
    tracing::info!(oid = %p.oid, size = p.size, new_bytes, "LFS object stored");
    Ok(StatusCode::OK)
}

/// `POST /_lfs/verify?repo&exp&sig` with `{oid, size}`.
pub async fn verify(
    State(s): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let pairs = query_pairs(uri.query());
    let repo = query_get(&pairs, "repo").unwrap_or_default().to_owned();
    let exp: u64 = query_get(&pairs, "exp").and_then(|e| e.parse().ok()).unwrap_or(0);
    let sig = query_get(&pairs, "sig").unwrap_or_default();
    if !s.signer.verify("lfs-verify", &format!("{repo}\0{exp}"), sig) || exp <= s.now() {
        return Err(ApiError::forbidden("invalid or expired signature"));
    }
    let o: LfsObject = json_body(&headers, body).await?;
    let sha = Sha256::from_hex(o.oid.as_str()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let key = RepoKey::from_trusted(repo);
    let ok = s.blocking(move |s| Ok(s.db.repo_object(&key, &sha, Some(o.size))?.is_some())).await?;
    if !ok {
        return Err(ApiError::not_found("object not found"));
    }
    Ok(lfs_json(&serde_json::json!({})))
}

/// `GET /_lfs/objects/{oid}/{size}?repo&exp&sig`: download of an object.
pub async fn download(
    State(s): State<AppState>,
    Path(p): Path<ObjectParams>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult<Response> {
    check_signed(&s, "lfs-down", &p, uri.query())?;
    let sha = Sha256::from_hex(&p.oid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let file = s
        .blocking(move |s| {
            let Some(file) = s.db.file_by_sha256(&sha)? else { return Ok(None) };
            Ok(s.db.local_file(&file)?.map(|r| r.hash))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("object not found"))?;
    let mut r = Response::new(file_body(s.clone(), file, 0, p.size));
    if let Ok(v) = HeaderValue::from_str(&p.size.to_string()) {
        r.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    Ok(r)
}

/// Path parameters of a part URL.
#[derive(Debug, Deserialize)]
pub struct PartParams {
    oid: String,
    size: u64,
    part: u64,
}

/// Where part `n` of an object waits for the completion: the store's `tmp/`, which opening
/// the store empties, so an abandoned upload leaves nothing behind a restart.
fn part_path(s: &AppState, oid: &str, size: u64, n: u64) -> std::path::PathBuf {
    s.store.home().join("tmp").join(format!("lfs-{oid}-{size}-{n}"))
}

/// `PUT /_lfs/part/{oid}/{size}/{n}?repo&exp&sig`: one part of a multipart upload, kept until
/// the completion; answers its SHA-256 as the `ETag` the client must send back.
pub async fn upload_part(
    State(s): State<AppState>,
    Path(p): Path<PartParams>,
    OriginalUri(uri): OriginalUri,
    body: Body,
) -> ApiResult<Response> {
    let object = ObjectParams { oid: p.oid.clone(), size: p.size };
    check_signed(&s, "lfs-part", &object, uri.query())?;
    let part = s.options.lfs_part_size;
    let parts = p.size.div_ceil(part);
    if p.part == 0 || p.part > parts {
        return Err(ApiError::bad_request(format!("part {} of {parts}", p.part)));
    }
    let expected = part.min(p.size - (p.part - 1) * part);
    let path = part_path(&s, &p.oid, p.size, p.part);
    let staging = path.with_extension("partial");
    let etag = write_part(body, &staging, expected).await?;
    tokio::fs::rename(&staging, &path).await.map_err(ApiError::internal)?;
    let mut r = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

/// Streams a part body to `path`, refusing one that is not `expected` bytes; returns its
/// SHA-256.
async fn write_part(body: Body, path: &std::path::Path, expected: u64) -> ApiResult<String> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path).await.map_err(ApiError::internal)?;
    let mut hasher = Sha256Hasher::default();
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading body: {e}")))?;
        received += frame.len() as u64;
        if received > expected {
            return Err(ApiError::bad_request(format!("part larger than {expected} bytes")));
        }
        hasher.update(&frame);
        file.write_all(&frame).await.map_err(ApiError::internal)?;
    }
    if received != expected {
        return Err(ApiError::bad_request(format!(
            "part of {received} bytes, expected {expected}"
        )));
    }
    file.sync_all().await.map_err(ApiError::internal)?;
    Ok(hasher.finish().to_string())
}

/// Body of a multipart completion.
#[derive(Debug, Deserialize)]
struct Completion {
    oid: String,
    parts: Vec<CompletedPart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompletedPart {
    part_number: u64,
    etag: String,
}

/// `POST /_lfs/complete/{oid}/{size}?repo&exp&sig` with `{oid, parts}`: ingests the parts in
/// order as one object, committed only if the whole has the signed SHA-256 and size.
pub async fn complete(
    State(s): State<AppState>,
    Path(p): Path<ObjectParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let key = check_signed(&s, "lfs-complete", &p, uri.query())?;
    let req: Completion = json_body(&headers, body).await?;
    let parts = p.size.div_ceil(s.options.lfs_part_size);
    let numbers: Vec<u64> = req.parts.iter().map(|c| c.part_number).collect();
    if req.oid != p.oid || numbers != (1..=parts).collect::<Vec<_>>() {
        return Err(ApiError::bad_request(format!("the completion must list parts 1 to {parts}")));
    }
    if req.parts.iter().any(|c| c.etag.trim_matches('"').is_empty()) {
        return Err(ApiError::bad_request("a part has no etag"));
    }
    let expected = Sha256::from_hex(&p.oid).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let paths: Vec<_> = (1..=parts).map(|n| part_path(&s, &p.oid, p.size, n)).collect();
    let _slot = s.upload_slot().await?;
    let (size, files) = (p.size, paths.clone());
    let result = s
        .blocking(move |s| {
            let mut reader: Box<dyn Read + Send> = Box::new(std::io::empty());
            for path in &files {
                let f = std::fs::File::open(path)
                    .map_err(|_| ApiError::bad_request("a part was not uploaded"))?;
                reader = Box::new(reader.chain(f));
            }
            let mut session = s.store.ingest_session();
            let report = session.add_reader(reader)?;
            if report.sha256 != expected || report.size != size {
                return Err(ApiError::bad_request("the parts do not make the oid and size"));
            }
            session.commit()?;
            s.db.register_files(&key, &[report.file])?;
            Ok(report.new_bytes)
        })
        .await;
    for path in paths {
        let _ = tokio::fs::remove_file(path).await;
    }
    let new_bytes = result?;
    tracing::info!(oid = %p.oid, size = p.size, parts, new_bytes, "LFS multipart object stored");
    Ok(lfs_json(&serde_json::json!({})))
}
