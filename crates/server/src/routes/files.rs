//! `HEAD`/`GET /{prefix}{ns}/{name}/resolve/{rev}/{path}`: file bytes straight from the store,
//! with the metadata headers clients require and single byte ranges (206).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use super::RepoParams;
use super::repos::snapshot;
use tessera_xet::hash::FileHash;
use tessera_protocol::{RepoType, headers as h, parse_range_header};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Bytes read from the store per step of a streamed body.
const PIECE: u64 = 4 << 20;

/// Resolve for model repos.
pub async fn resolve_model(
    state: State<AppState>,
    p: Path<RepoParams>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    resolve(state, p, method, headers, RepoType::Model).await
}

/// Resolve for dataset repos.
pub async fn resolve_dataset(
    state: State<AppState>,
    p: Path<RepoParams>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    resolve(state, p, method, headers, RepoType::Dataset).await
}

/// Resolve for spaces.
pub async fn resolve_space(
    state: State<AppState>,
    p: Path<RepoParams>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    resolve(state, p, method, headers, RepoType::Space).await
}

fn put(map: &mut HeaderMap, name: impl Into<HeaderName>, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        map.insert(name.into(), v);
    }
}

async fn resolve(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    method: Method,
    headers: HeaderMap,
    default: RepoType,
) -> ApiResult<Response> {
    let caller = s.caller(&headers)?;
    let snap = snapshot(&s, &caller, &p, default).await?;
    let path = p.path.as_deref().unwrap_or("");
    let Ok(i) = snap.entries.binary_search_by(|e| e.path.as_str().cmp(path)) else {
        return Err(ApiError::entry_not_found(path, Some(snap.commit.id.as_str())));
    };
    let entry = &snap.entries[i];
    let size = entry.size;

    let mut out = HeaderMap::new();
    put(&mut out, HeaderName::from_static(h::X_REPO_COMMIT), snap.commit.id.as_str());
    put(&mut out, header::ETAG, &format!("\"{}\"", entry.etag()));
    put(&mut out, header::ACCEPT_RANGES, "bytes");
    put(&mut out, header::CONTENT_TYPE, "application/octet-stream");
    if entry.lfs {
        put(&mut out, HeaderName::from_static(h::X_LINKED_ETAG), &format!("\"{}\"", entry.sha256));
        put(&mut out, HeaderName::from_static(h::X_LINKED_SIZE), &size.to_string());
    }
    if entry.lfs && !s.options.no_xet {
        put(&mut out, HeaderName::from_static(h::X_XET_HASH), &entry.file.to_string());
        let refresh = format!(
            "{}/api/{}/{}/xet-read-token/{}",
            s.base_url(&headers),
            snap.repo_type.api_segment(),
            snap.id,
            snap.commit.id
        );
        put(&mut out, header::LINK, &format!("<{refresh}>; rel=\"xet-auth\""));
    }

    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range_header)
        .filter(|r| r.len() == 1)
        .map(|r| r[0]);
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size),
        Some(spec) => match spec.resolve(size) {
            Some((a, b)) => {
                put(&mut out, header::CONTENT_RANGE, &format!("bytes {a}-{}/{size}", b - 1));
                (StatusCode::PARTIAL_CONTENT, a, b)
            }
            // hf-hub 0.5 asks `bytes=0-0` of empty files: answer 200 with `*/0`.
            None if size == 0 => {
                put(&mut out, header::CONTENT_RANGE, "bytes */0");
                (StatusCode::OK, 0, 0)
            }
            None => {
                put(&mut out, header::CONTENT_RANGE, &format!("bytes */{size}"));
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                *r.headers_mut() = out;
                return Ok(r);
            }
        },
    };
    put(&mut out, header::CONTENT_LENGTH, &(end - start).to_string());
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        // A replica's store is a cache: bring the file in from the storage on a miss.
        let file = entry.file;
        s.blocking(move |s| s.db.local_file(&file)).await?;
        file_body(s.clone(), entry.file, start, end)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = out;
    Ok(r)
}

/// Streams `[start, end)` of a stored file, reading it piece by piece off the runtime. A read
/// error ends the stream early, so the client sees a short body and can resume.
pub fn file_body(s: AppState, file: FileHash, start: u64, end: u64) -> Body {
    let stream = futures::stream::unfold(start, move |pos| {
        let s = s.clone();
        async move {
            if pos >= end {
                return None;
            }
            let len = (end - pos).min(PIECE);
            let read = s
                .blocking(move |s| {
                    let bytes = s.store.read_file_range(&file, pos, len)?;
                    if bytes.len() as u64 != len {
                        return Err(ApiError::internal(format!("short read of {file}")));
                    }
                    Ok(bytes)
                })
                .await;
            Some(match read {
                Ok(bytes) => (Ok(Bytes::from(bytes)), pos + len),
                Err(_) => (Err(std::io::Error::other("file read failed")), end),
            })
        }
    });
    Body::from_stream(stream)
}
