//! Git LFS uploads (`hub-api.md` §5.5), for hubs and mirrors without Xet storage: the batch
//! request, then per object one presigned `PUT` (basic) or presigned parts and a completion
//! (multipart, when the batch answer names a `chunk_size`), then the optional verify.
//!
//! Bodies stream from the file, one slice per request, so an object of any size costs a
//! buffer's memory; a retried request re-opens its slice. Presigned URLs get no Authorization
//! header (the Hub's and `huggingface_hub`'s rule); only the batch and verify calls carry it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::api::Subject;
use super::{HubClient, HubError, api, retry};
use tessera_protocol::{
    LfsAction, LfsBatchObject, LfsBatchRequest, LfsBatchResponse, LfsObject, LfsRef, RepoId,
    RepoType, Revision,
};

const LFS_JSON: &str = "application/vnd.git-lfs+json";
/// Objects per batch request (`huggingface_hub` sends the same).
const BATCH: usize = 256;

impl HubClient {
    /// Asks where to upload `objects` for `rev` (`None` for a pull request, as the Hub wants);
    /// an object answered without actions is already stored.
    pub async fn lfs_batch_upload(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        rev: Option<&Revision>,
        objects: &[LfsObject],
    ) -> Result<Vec<LfsBatchObject>, HubError> {
        let url = format!("{}.git/info/lfs/objects/batch", self.repo_url(repo_type, repo_id));

        let mut out = Vec::with_capacity(objects.len());
        for batch in objects.chunks(BATCH) {
            let req = LfsBatchRequest {
                operation: "upload".into(),
                transfers: vec!["basic".into(), "multipart".into()],
                objects: batch.to_vec(),
                hash_algo: Some("sha256".into()),
                git_ref: rev.map(|name| LfsRef { name: name.to_string() }),
            };
            let body = Bytes::from(serde_json::to_vec(&req).map_err(|e| malformed(&url, e))?);
            let make = || {
                self.authed(self.http.post(&url))
                    .header(reqwest::header::ACCEPT, LFS_JSON)
                    .header(reqwest::header::CONTENT_TYPE, LFS_JSON)
                    .body(body.clone())
            };
            let subject = Subject::Repo(repo_id, rev);
            let (_, reply) = api::get_body(&self.config.retry, &url, subject, make).await?;
            let parsed: LfsBatchResponse =
                serde_json::from_slice(&reply).map_err(|e| malformed(&url, e))?;
            out.extend(parsed.objects);
        }
        Ok(out)
    }

    /// Uploads `path` as the batch answered for it: nothing when stored, one `PUT`, or its
    /// parts and the completion. Returns the parts sent (1 for a single `PUT`, 0 for none).
    pub async fn lfs_upload(
        &self,
        object: &LfsBatchObject,
        path: &Path,
    ) -> Result<usize, HubError> {
        if let Some(e) = &object.error {
            let message = format!("LFS object {}: {} ({})", object.oid, e.message, e.code);
            return Err(HubError::Status {
                method: "POST".into(),
                url: "LFS batch".into(),
                status: e.code,
                message,
            });
        }
        let Some(actions) = &object.actions else { return Ok(0) };
        let Some(upload) = &actions.upload else { return Ok(0) };
        let sent = match part_urls(upload, object.size)? {
            Some((chunk, urls)) => {
                self.lfs_multipart(object, path, &upload.href, chunk, &urls).await?
            }
            None => {
                self.lfs_put(&upload.href, path, 0, object.size).await?;
                1
            }
        };
        if let Some(verify) = &actions.verify {
            let body = Bytes::from(
                serde_json::to_vec(&LfsObject { oid: object.oid.clone(), size: object.size })
                    .map_err(|e| malformed(&verify.href, e))?,
            );
            let make = || {
                self.authed(self.http.post(&verify.href))
                    .header(reqwest::header::ACCEPT, LFS_JSON)
                    .header(reqwest::header::CONTENT_TYPE, LFS_JSON)
                    .body(body.clone())
            };
            api::get_body(&self.config.retry, "LFS verify", Subject::Other, make).await?;
        }
        Ok(sent)
    }

    /// The parts in order, each answered with the `ETag` the completion lists.
    async fn lfs_multipart(
        &self,
        object: &LfsBatchObject,
        path: &Path,
        complete: &str,
        chunk: u64,
        urls: &[String],
    ) -> Result<usize, HubError> {
        let mut parts = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let offset = i as u64 * chunk;
            let etag = self.lfs_put(url, path, offset, chunk.min(object.size - offset)).await?;
            let etag =
                etag.ok_or_else(|| malformed("LFS part", format!("part {} has no ETag", i + 1)))?;
            parts.push(serde_json::json!({"partNumber": i + 1, "etag": etag}));
        }
        let body = serde_json::json!({"oid": object.oid, "parts": parts});
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| malformed(complete, e))?);
        let make = || {
            self.http
                .post(complete)
                .header(reqwest::header::ACCEPT, LFS_JSON)
                .header(reqwest::header::CONTENT_TYPE, LFS_JSON)
                .body(body.clone())
        };
        api::get_body(&self.config.retry, "LFS completion", Subject::Other, make).await?;
        Ok(urls.len())
    }

    /// `PUT`s bytes `[offset, offset + len)` of a file to a presigned URL; returns the `ETag`.
    async fn lfs_put(
        &self,
        url: &str,
        path: &Path,
        offset: u64,
        len: u64,
    ) -> Result<Option<String>, HubError> {
        let make = || {
            self.http.put(url).header(reqwest::header::CONTENT_LENGTH, len).body(file_slice(
                path.to_owned(),
                offset,
                len,
            ))
        };
        let resp = api::check(
            retry::send(&self.config.retry, "LFS upload", make).await?,
            &reqwest::Method::PUT,
            Subject::Other,
        )
        .await?;
        Ok(resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned))
    }
}

/// The multipart layout of an upload action: its part size and part URLs `"1"`..`"N"` in
/// order, N checked against the object's size; `None` for a single `PUT`.
fn part_urls(upload: &LfsAction, size: u64) -> Result<Option<(u64, Vec<String>)>, HubError> {
    let Some(header) = &upload.header else { return Ok(None) };
    let Some(chunk) = header.get("chunk_size") else { return Ok(None) };
    let bad = |why: String| malformed("LFS batch", why);
    let chunk: u64 = chunk
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| bad(format!("chunk_size {chunk:?}")))?;
    let n = size.div_ceil(chunk);
    let urls = (1..=n)
        .map(|i| {
            header
                .get(&i.to_string())
                .cloned()
                .ok_or_else(|| bad(format!("no URL for part {i} of {n}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((chunk, urls)))
}

/// A request body streaming `[offset, offset + len)` of a file, opened when sent.
fn file_slice(path: PathBuf, offset: u64, len: u64) -> reqwest::Body {
    let stream = futures::stream::once(async move {
        let mut file = tokio::fs::File::open(&path).await?;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
            file.take(len),
            256 << 10,
        ))
    })
    .try_flatten();
    reqwest::Body::wrap_stream(stream.boxed())
}

fn malformed(url: &str, e: impl std::fmt::Display) -> HubError {
    HubError::Malformed { url: url.to_string(), message: e.to_string() }
}
