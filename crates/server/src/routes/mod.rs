//! Route handlers, one file per area, and the helpers they share (path parameters, bounded
//! bodies, query strings).

pub mod cas;
pub mod commits;
pub mod discussions;
pub mod files;
pub mod lfs;
pub mod refs;
pub mod repos;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use tessera_protocol::{RepoId, RepoType, parse_urlencoded, percent_encode, validate_revision};

/// Limit of small JSON bodies (create, preupload, batch, tags...).
pub const JSON_LIMIT: u64 = 16 << 20;
/// Limit of a commit NDJSON body (inline files travel base64-encoded inside).
pub const COMMIT_LIMIT: u64 = 1 << 30;

/// Path parameters of repo-scoped routes.
#[derive(Debug, Deserialize)]
pub struct RepoParams {
    /// `models`, `datasets` or `spaces` (absent on model file URLs).
    #[serde(default)]
    pub kind: Option<String>,
    /// Namespace.
    pub ns: String,
    /// Name.
    pub name: String,
    /// Revision (one segment, already percent-decoded).
    #[serde(default)]
    pub rev: Option<String>,
    /// Path in the repo (rest of the URL).
    #[serde(default)]
    pub path: Option<String>,
}

impl RepoParams {
    /// The repo type and id; an unknown type or malformed id is a 404 like on the Hub.
    pub fn repo(&self, default: RepoType) -> ApiResult<(RepoType, RepoId)> {
        let repo_type = match &self.kind {
            Some(k) => {
                RepoType::from_api_segment(k).map_err(|e| ApiError::not_found(e.to_string()))?
            }
            None => default,
        };
        let name = self.name.strip_suffix(".git").unwrap_or(&self.name);
        let id = RepoId::new(&self.ns, name).map_err(|e| ApiError::not_found(e.to_string()))?;
        Ok((repo_type, id))
    }

    /// The revision, `main` when absent; the literal `None` Python sends means `main` too.
    pub fn revision(&self) -> ApiResult<String> {
        let rev = match self.rev.as_deref() {
            None | Some("None") => "main",
            Some(r) => r,
        };
        validate_revision(rev)?;
        Ok(rev.to_owned())
    }
}

/// Reads a whole body, refusing more than `limit` bytes (413) before reading when the length
/// is declared, and as soon as the limit is crossed otherwise.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> ApiResult<Bytes> {
    if let Some(len) = content_length(headers) {
        if len > limit {
            return Err(ApiError::too_large(limit));
        }
    }
    let mut out = BytesMut::new();
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading body: {e}")))?;
        if (out.len() + frame.len()) as u64 > limit {
            return Err(ApiError::too_large(limit));
        }
        out.extend_from_slice(&frame);
    }
    Ok(out.freeze())
}

/// Reads a JSON body under a limit.
pub async fn json_body<T: for<'de> Deserialize<'de>>(
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<T> {
    let bytes = read_body(headers, body, JSON_LIMIT).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The declared `Content-Length`, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Query pairs of a request (repeated keys kept).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query.map(parse_urlencoded).unwrap_or_default()
}

/// The first value of a query key.
pub fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Re-encodes query pairs with `key` set to `value` (for pagination links).
pub fn query_with(pairs: &[(String, String)], key: &str, value: &str) -> String {
    pairs
        .iter()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(std::iter::once((key, value)))
        .map(|(k, v)| format!("{}={}", percent_encode(k, false), percent_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `{base}/{prefix}{ns}/{name}`: the repo URL clients parse.
pub fn repo_url(base: &str, repo_type: RepoType, id: &RepoId) -> String {
    format!("{base}/{}{id}", repo_type.url_prefix())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn next_links_repeat_the_query() {
        let pairs = query_pairs(Some("recursive=True&expand=False&cursor=3"));
        assert_eq!(query_with(&pairs, "cursor", "6"), "recursive=True&expand=False&cursor=6");
    }
}
