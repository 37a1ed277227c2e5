//! Refs listing, tags and branches.

use axum::Json;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;

use super::{RepoParams, json_body, query_get, query_pairs};
use crate::db::{branch_ref, tag_ref};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use tessera_protocol::{
    BranchRequest, GitRef, Refs, RepoType, TagRequest, parse_bool, validate_ref_name,
};

/// `GET /api/{type}s/{ns}/{name}/refs`.
pub async fn list(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Json<Refs>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (key, _) = s.visible_repo(&caller, repo_type, &id).await?;
    let refs = s.blocking(move |s| s.db.refs(&key)).await?;
    let include_prs =
        query_get(&query_pairs(uri.query()), "include_prs").and_then(parse_bool).unwrap_or(false);
    let mut out = Refs { pull_requests: include_prs.then(Vec::new), ..Refs::default() };
    for (full, commit) in refs {
        let git_ref = |name: &str| GitRef {
            name: name.to_owned(),
            git_ref: full.clone(),
            target_commit: commit.clone(),
        };
        if let Some(b) = full.strip_prefix("refs/heads/") {
            out.branches.push(git_ref(b));
        } else if let Some(t) = full.strip_prefix("refs/tags/") {
            out.tags.push(git_ref(t));
        } else if let (Some(prs), true) = (out.pull_requests.as_mut(), full.starts_with("refs/pr/"))
        {
            prs.push(git_ref(&full));
        }
    }
    Ok(Json(out))
}

/// `POST /api/{type}s/{ns}/{name}/tag/{rev}` with `{"tag": ...}`.
pub async fn create_tag(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (key, _) = s.writable_repo(&caller, repo_type, &id).await?;
    let req: TagRequest = json_body(&headers, body).await?;
    validate_ref_name(&req.tag)?;
    let rev = p.revision()?;
    let tag = req.tag.clone();
    let created = s
        .blocking(move |s| {
            let commit =
                s.db.resolve(&key, &rev)?.ok_or_else(|| ApiError::revision_not_found(&rev))?;
            s.db.create_ref(&key, &tag_ref(&tag), &commit)
        })
        .await?;
    if !created {
        return Err(ApiError::conflict(format!("Tag {} already exists", req.tag)));
    }
    tracing::info!(repo = %id, tag = %req.tag, "tag created");
    Ok(Json(serde_json::json!({})))
}

/// `DELETE /api/{type}s/{ns}/{name}/tag/{tag}`.
pub async fn delete_tag(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    delete_ref(s, p, headers, true).await
}

/// `POST /api/{type}s/{ns}/{name}/branch/{branch}` with optional `startingPoint`.
pub async fn create_branch(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (key, _) = s.writable_repo(&caller, repo_type, &id).await?;
    let req: BranchRequest = json_body(&headers, body).await.or_else(|e| {
        // `{}` and an empty body both mean "from the default branch".
        if e.status() == axum::http::StatusCode::BAD_REQUEST {
            Ok(BranchRequest::default())
        } else {
            Err(e)
        }
    })?;
    let branch = p.revision()?;
    validate_ref_name(&branch)?;
    let start = req.starting_point.unwrap_or_else(|| "main".to_owned());
    let name = branch.clone();
    let created = s
        .blocking(move |s| {
            let commit =
                s.db.resolve(&key, &start)?.ok_or_else(|| ApiError::revision_not_found(&start))?;
            s.db.create_ref(&key, &branch_ref(&name), &commit)
        })
        .await?;
    if !created {
        return Err(ApiError::conflict(format!("Branch {branch} already exists")));
    }
    tracing::info!(repo = %id, %branch, "branch created");
    Ok(Json(serde_json::json!({})))
}

/// `DELETE /api/{type}s/{ns}/{name}/branch/{branch}`.
pub async fn delete_branch(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    delete_ref(s, p, headers, false).await
}

async fn delete_ref(
    s: AppState,
    p: RepoParams,
    headers: HeaderMap,
    tag: bool,
) -> ApiResult<Json<serde_json::Value>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (key, _) = s.writable_repo(&caller, repo_type, &id).await?;
    let name = p.revision()?;
    if !tag && name == "main" {
        return Err(ApiError::forbidden("The default branch cannot be deleted"));
    }
    let full = if tag { tag_ref(&name) } else { branch_ref(&name) };
    let deleted = s.blocking(move |s| s.db.delete_ref(&key, &full)).await?;
    if !deleted {
        return Err(ApiError::revision_not_found(&name));
    }
    tracing::info!(repo = %id, %name, tag, "ref deleted");
    Ok(Json(serde_json::json!({})))
}
