//! Preupload, the NDJSON commit endpoint and commit history.
//!
//! A commit first makes its data durable (inline files are ingested into the store in one
//! session; LFS/Xet pointers must name files already in it), then writes tree, commit and
//! branch update in one batch (`db::HubDb::commit_to_branch`).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::discussions::new_record;
use super::repos::snapshot;
use super::{RepoParams, json_body, query_get, query_pairs, query_with, read_body, repo_url};
use crate::db::{CommitMeta, Entry, RepoKey, pr_ref};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use tessera_protocol::{
    CommitAuthor, CommitHeader, CommitInfo, CommitLine, CommitResponse, PreuploadRequest,
    PreuploadResponse, PreuploadResult, RepoType, UploadMode, format_hub_date, git_blob_oid,
    is_commit_id, is_hex64, normalize_repo_path, parse_bool, upload_mode,
};
use tessera_xet::hash::Sha256;

/// Limit of a commit body (inline files travel base64-encoded inside).
pub const COMMIT_BODY_LIMIT: u64 = 512 << 20;

/// `POST /api/{type}s/{ns}/{name}/preupload/{rev}`.
pub async fn preupload(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<PreuploadResponse>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (_, record) = s.visible_repo(&caller, repo_type, &id).await?;
    s.check_write(&caller, &record)?;
    let req: PreuploadRequest = json_body(&headers, body).await?;
    let snap = snapshot(&s, &caller, &p, RepoType::Model).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let files = req
        .files
        .into_iter()
        .map(|f| {
            let sample = f.sample.as_deref().and_then(|x| b64.decode(x).ok());
            let mode = upload_mode(&f.path, f.size, sample.as_deref());
            let existing = snap.entries.binary_search_by(|e| e.path.as_str().cmp(&f.path)).ok();
            let oid = existing.map(|i| &snap.entries[i]).and_then(|e| match (mode, e.lfs) {
                (UploadMode::Lfs, true) => Some(e.sha256.into()),
                (UploadMode::Regular, false) => Some(e.git_oid.clone()),
                _ => None,
            });
            PreuploadResult { path: f.path, upload_mode: mode, should_ignore: false, oid }
        })
        .collect();
    Ok(Json(PreuploadResponse { files }))
}

/// One parsed operation of a commit.
enum Op {
    /// Inline content to ingest.
    Inline { path: String, content: Vec<u8> },
    /// Pointer to an uploaded object.
    Lfs { path: String, sha256: Sha256, size: Option<u64> },
    /// Delete a file.
    DeleteFile(String),
    /// Delete a folder.
    DeleteFolder(String),
}

/// Parses the NDJSON body: a header line, then operations. Paths are validated here.
fn parse_commit(body: &[u8]) -> ApiResult<(CommitHeader, Vec<Op>)> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("commit body is not UTF-8"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut header = None;
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed: CommitLine = serde_json::from_str(line)
            .map_err(|e| ApiError::bad_request(format!("malformed NDJSON line {}: {e}", n + 1)))?;
        let op = match parsed {
            CommitLine::Header(h) if header.is_none() && ops.is_empty() => {
                header = Some(h);
                continue;
            }
            CommitLine::Header(_) => {
                return Err(ApiError::bad_request("the header must be the first line, once"));
            }
            _ if header.is_none() => {
                return Err(ApiError::bad_request("the first line must be the header"));
            }
            CommitLine::File(f) => {
                let content = match f.encoding.as_deref() {
                    Some("base64") => b64.decode(f.content.as_bytes()).map_err(|_| {
                        ApiError::bad_request(format!("invalid base64 for {}", f.path))
                    })?,
                    None | Some("utf-8") | Some("utf8") => f.content.into_bytes(),
                    Some(other) => {
                        return Err(ApiError::bad_request(format!("unknown encoding {other}")));
                    }
                };
                Op::Inline { path: normalize_repo_path(&f.path)?, content }
            }
            CommitLine::LfsFile(f) => {
                if f.algo.as_deref().is_some_and(|a| a != "sha256") || !is_hex64(f.oid.as_str()) {
                    return Err(ApiError::bad_request(format!("invalid LFS oid for {}", f.path)));
                }
                let sha256 = Sha256::from_hex(f.oid.as_str())
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Op::Lfs { path: normalize_repo_path(&f.path)?, sha256, size: f.size }
            }
            CommitLine::DeletedFile(d) => Op::DeleteFile(normalize_repo_path(&d.path)?),
            CommitLine::DeletedFolder(d) => Op::DeleteFolder(normalize_repo_path(&d.path)?),
        };
        ops.push(op);
    }
    let header = header.ok_or_else(|| ApiError::bad_request("empty commit body"))?;
    if header.summary.trim().is_empty() {
        return Err(ApiError::bad_request("the commit summary must not be empty"));
    }
    if ops.is_empty() {
        return Err(ApiError::bad_request("No files have been modified since last commit"));
    }
    if let Some(parent) = &header.parent_commit {
        let ok = (5..=40).contains(&parent.len()) && parent.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(ApiError::bad_request("parentCommit must be 5 to 40 hex digits"));
        }
    }
    Ok((header, ops))
}

/// The change an operation makes to the tree, once its data is in the store.
enum Change {
    Put(Entry),
    DeleteFile(String),
    DeleteFolder(String),
}

/// Makes the data of every operation durable and turns operations into tree changes. LFS
/// pointers must name objects uploaded for (or committed to) this repo, with the right size.
fn stage(s: &AppState, key: &RepoKey, ops: Vec<Op>) -> ApiResult<Vec<Change>> {
    let mut session = s.store.ingest_session();
    let mut changes = Vec::with_capacity(ops.len());
    for op in ops {
        changes.push(match op {
            Op::Inline { path, content } => {
                let r = session.add_reader(content.as_slice())?;
                Change::Put(Entry {
                    path,
                    size: r.size,
                    file: r.file,
                    sha256: r.sha256,
                    git_oid: git_blob_oid(&content),
                    lfs: false,
                })
            }
            Op::Lfs { path, sha256, size } => {
                let missing = || {
                    ApiError::bad_request(format!("LFS object {sha256} of {path} was not uploaded"))
                };
                let record = s.db.repo_object(key, &sha256, size)?.ok_or_else(missing)?;
                Change::Put(Entry::lfs(path, record.size, record.hash, sha256))
            }
            Op::DeleteFile(p) => Change::DeleteFile(p),
            Op::DeleteFolder(p) => Change::DeleteFolder(p),
        });
    }
    session.commit()?;
    Ok(changes)
}

/// Applies changes to a tree; 404 `EntryNotFound` for deletions of missing paths, 400 when a
/// file and a folder would share a path.
fn apply(old: Vec<Entry>, changes: &[Change], head: &str) -> ApiResult<Vec<Entry>> {
    let mut files: BTreeMap<String, Entry> = old.into_iter().map(|e| (e.path.clone(), e)).collect();
    for c in changes {
        match c {
            Change::Put(e) => {
                files.insert(e.path.clone(), e.clone());
            }
            Change::DeleteFile(p) => {
                if files.remove(p).is_none() {
                    return Err(ApiError::entry_not_found(p, Some(head))
                        .with_field("hint", "A file with this name doesn't exist"));
                }
            }
            Change::DeleteFolder(p) => {
                let prefix = format!("{p}/");
                let before = files.len();
                files.retain(|k, _| !k.starts_with(&prefix));
                if files.len() == before {
                    return Err(ApiError::entry_not_found(p, Some(head)));
                }
            }
        }
    }
    for path in files.keys() {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            if files.contains_key(&path[..end]) {
                return Err(ApiError::bad_request(format!(
                    "{} is a file and a folder",
                    &path[..end]
                )));
            }
            end += 1;
        }
    }
    Ok(files.into_values().collect())
}

/// Where a commit goes: a branch, or an open pull request's `refs/pr/{n}`.
enum Target {
    Branch(String),
    PullRequest(u64),
}

/// The target of a commit to `rev`; `create_pr` opens a pull request against a branch.
fn commit_target(rev: &str, create_pr: bool) -> ApiResult<Target> {
    if let Some(n) = rev.strip_prefix("refs/pr/") {
        let num = n.parse().map_err(|_| ApiError::revision_not_found(rev))?;
        if create_pr {
            return Err(ApiError::bad_request(
                "A pull request cannot be opened from a pull request",
            ));
        }
        return Ok(Target::PullRequest(num));
    }
    let branch = rev.strip_prefix("refs/heads/").unwrap_or(rev);
    if is_commit_id(branch) || branch.starts_with("refs/") {
        return Err(ApiError::bad_request("Commits can only be made on top of a branch"));
    }
    Ok(Target::Branch(branch.to_owned()))
}

/// `POST /api/{type}s/{ns}/{name}/commit/{rev}[?create_pr=1]`.
pub async fn commit(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<CommitResponse>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (key, _) = s.writable_repo(&caller, repo_type, &id).await?;
    let pairs = query_pairs(uri.query());
    let create_pr = query_get(&pairs, "create_pr").and_then(parse_bool).unwrap_or(false);
    let target = commit_target(&p.revision()?, create_pr)?;
    // Inline files cost several times the body in memory: a slot bounds how many at once.
    let _slot = s.upload_slot().await?;
    let bytes = read_body(&headers, body, COMMIT_BODY_LIMIT).await?;
    let author = caller.user().unwrap_or_default().to_owned();
    let now = s.now();
    let (outcome, opened) = s
        .blocking(move |s| {
            let (header, ops) = parse_commit(&bytes)?;
            drop(bytes);
            let changes = stage(s, &key, ops)?;
            let meta = CommitMeta {
                author,
                date: now,
                title: header.summary,
                message: header.description,
            };
            let parent = header.parent_commit.map(|p| p.to_ascii_lowercase());
            let apply = |old, head: &str| apply(old, &changes, head);
            match target {
                Target::Branch(branch) if create_pr => {
                    let mut pr =
                        new_record(&meta.author, &meta.title, &meta.message, true, meta.date);
                    pr.status = "open".into();
                    let (outcome, num) = s.db.commit_as_pull_request(
                        &key,
                        &branch,
                        parent.as_deref(),
                        &meta,
                        pr,
                        apply,
                    )?;
                    Ok((outcome, Some(num)))
                }
                Target::Branch(branch) => {
                    let o =
                        s.db.commit_to_branch(&key, &branch, parent.as_deref(), &meta, apply)?;
                    Ok((o, None))
                }
                Target::PullRequest(num) => {
                    let open = s.db.discussion(&key, num)?.is_some_and(|d| d.is_pr && d.is_open());
                    if !open {
                        return Err(ApiError::bad_request(format!(
                            "refs/pr/{num} is not an open pull request"
                        )));
                    }
                    let o =
                        s.db.commit_to_ref(&key, &pr_ref(num), parent.as_deref(), &meta, apply)?;
                    Ok((o, None))
                }
            }
        })
        .await?;
    if outcome.created {
        tracing::info!(repo = %id, commit = %outcome.commit, pr = ?opened, "commit");
    }
    let url = repo_url(&s.base_url(&headers), repo_type, &id);
    Ok(Json(CommitResponse {
        success: true,
        commit_url: format!("{url}/commit/{}", outcome.commit),
        commit_oid: outcome.commit,
        pull_request_url: opened.map(|n| format!("{url}/discussions/{n}")),
    }))
}

/// `GET /api/{type}s/{ns}/{name}/commits/{rev}`, newest first, paginated like the tree.
pub async fn history(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = s.caller(&headers)?;
    let snap = snapshot(&s, &caller, &p, RepoType::Model).await?;
    let pairs = query_pairs(uri.query());
    let skip: usize = query_get(&pairs, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit = s.options.tree_page_size;
    let (key, head) = (snap.key.clone(), snap.commit.id.clone());
    let commits = s.blocking(move |s| s.db.history(&key, &head, skip, limit + 1)).await?;
    let more = commits.len() > limit;
    let items: Vec<CommitInfo> = commits
        .into_iter()
        .take(limit)
        .map(|c| CommitInfo {
            id: c.id,
            authors: vec![CommitAuthor { user: c.author }],
            date: format_hub_date(c.date),
            title: c.title,
            message: c.message,
        })
        .collect();
    let mut response = Json(items).into_response();
    if more {
        let next = format!(
            "{}{}?{}",
            s.base_url(&headers),
            uri.path(),
            query_with(&pairs, "cursor", &(skip + limit).to_string())
        );
        if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            response.headers_mut().insert(axum::http::header::LINK, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(upload_mode("README.md", 100, Some(b"# hi")), UploadMode::Regular);
        assert_eq!(upload_mode("empty.bin", 0, None), UploadMode::Regular);
        assert_eq!(upload_mode("model.onnx", 100, None), UploadMode::Lfs);
        assert_eq!(upload_mode("x.dat", 100, Some(b"a\0b")), UploadMode::Lfs);
        assert_eq!(upload_mode("big.txt", 11 << 20, Some(b"text")), UploadMode::Lfs);
    }

    #[test]
    fn ndjson_rules() {
        let h = r#"{"key":"header","value":{"summary":"s","description":""}}"#;
        let f = r#"{"key":"file","value":{"content":"aGk=","path":"a.txt","encoding":"base64"}}"#;
        let (_, ops) = parse_commit(format!("{h}\n{f}\n").as_bytes()).unwrap();
        assert!(matches!(&ops[0], Op::Inline { content, .. } if content == b"hi"));
        assert!(parse_commit(format!("{h}\n").as_bytes()).is_err(), "empty commit");
        assert!(parse_commit(format!("{f}\n{h}\n").as_bytes()).is_err(), "header first");
        assert!(parse_commit(format!("{h}\n{{not json\n").as_bytes()).is_err());
        for bad in ["../x", "/x", ".git/config", "a/../../b"] {
            let line = format!(r#"{{"key":"deletedFile","value":{{"path":"{bad}"}}}}"#);
            assert!(parse_commit(format!("{h}\n{line}\n").as_bytes()).is_err(), "{bad}");
        }
        let p = r#"{"key":"header","value":{"summary":"s","parentCommit":"xyz"}}"#;
        assert!(parse_commit(format!("{p}\n{f}\n").as_bytes()).is_err());
    }

    #[test]
    fn apply_rules() {
        let e = |p: &str| Entry {
            path: p.into(),
            size: 0,
            file: tessera_xet::hash::FileHash::ZERO,
            sha256: Sha256::default(),
            git_oid: git_blob_oid(b""),
            lfs: false,
        };
        let old = vec![e("a/b"), e("a/c"), e("d")];
        let out = apply(old.clone(), &[Change::DeleteFolder("a".into())], "h").unwrap();
        assert_eq!(out, vec![e("d")]);
        assert!(apply(old.clone(), &[Change::DeleteFile("zz".into())], "h").is_err());
        assert!(apply(old.clone(), &[Change::Put(e("d/x"))], "h").is_err());
        assert!(apply(old, &[Change::Put(e("a"))], "h").is_err());
    }
}
