//! Discussions and pull requests (`hub-api.md` §5.8): open, list, details, merge, close.
//!
//! A pull request is a discussion with a ref, `refs/pr/{num}`, that commits target like a
//! branch; `create_commit(create_pr=True)` opens one with its first commit
//! ([`super::commits::commit`]). Merging moves the base branch (`db::HubDb::merge_pull_request`).
//! Opening and merging need write access to the repo, like every other change here.

use axum::Json;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::{RepoParams, json_body, query_get, query_pairs, repo_url};
use tessera_protocol::{
    DiscussionAuthor, DiscussionChange, DiscussionChanges, DiscussionDetails, DiscussionPage,
    DiscussionRepo, DiscussionSummary, NewDiscussion, NewDiscussionReply, RepoType,
    format_hub_date,
};
use crate::db::{CommitMeta, DiscussionRecord, RepoKey};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Discussions per listing page (the Hub's page size).
const PAGE: usize = 50;

/// Path parameters of `/api/{kind}/{ns}/{name}/discussions/{num}[/...]`.
#[derive(Debug, Deserialize)]
pub struct DiscussionParams {
    kind: String,
    ns: String,
    name: String,
    num: u64,
}

impl DiscussionParams {
    fn repo(&self) -> RepoParams {
        RepoParams {
            kind: Some(self.kind.clone()),
            ns: self.ns.clone(),
            name: self.name.clone(),
            rev: None,
            path: None,
        }
    }
}

/// A new discussion record for `author`, its number and base set by the database.
pub fn new_record(
    author: &str,
    title: &str,
    description: &str,
    is_pr: bool,
    now: u64,
) -> DiscussionRecord {
    DiscussionRecord {
        num: 0,
        title: title.to_owned(),
        description: description.to_owned(),
        author: author.to_owned(),
        created: now,
        is_pr,
        status: if is_pr { "draft" } else { "open" }.to_owned(),
        base: String::new(),
        base_commit: None,
        merge_commit: None,
    }
}

/// `POST /api/{type}s/{ns}/{name}/discussions` with `{title, description, pullRequest}`.
pub async fn create(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<NewDiscussionReply>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (key, _) = s.writable_repo(&caller, repo_type, &id).await?;
    let req: NewDiscussion = json_body(&headers, body).await?;
    let title = req.title.trim();
    if !(3..=200).contains(&title.chars().count()) {
        return Err(ApiError::bad_request("The title must be 3 to 200 characters long"));
    }
    let author = caller.user().unwrap_or_default();
    let description = req.description.unwrap_or_default();
    let record = new_record(author, title, &description, req.pull_request, s.now());
    let d = s.blocking(move |s| s.db.open_discussion(&key, "main", record)).await?;
    tracing::info!(repo = %id, num = d.num, pr = d.is_pr, "discussion opened");
    let url = format!("{}/discussions/{}", repo_url(&s.base_url(&headers), repo_type, &id), d.num);
    Ok(Json(NewDiscussionReply { num: d.num, url }))
}

/// `GET /api/{type}s/{ns}/{name}/discussions?p&type&status&author`, pages of [`PAGE`].
pub async fn list(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Json<DiscussionPage>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo(RepoType::Model)?;
    let (key, _) = s.visible_repo(&caller, repo_type, &id).await?;
    let pairs = query_pairs(uri.query());
    let page: usize = query_get(&pairs, "p").and_then(|v| v.parse().ok()).unwrap_or(0);
    let kind = query_get(&pairs, "type").unwrap_or("all").to_owned();
    let status = query_get(&pairs, "status").unwrap_or("all").to_owned();
    let author = query_get(&pairs, "author").map(str::to_owned);
    let all = s.blocking(move |s| s.db.discussions(&key)).await?;
    let mut matching: Vec<DiscussionRecord> = all
        .into_iter()
        .filter(|d| match kind.as_str() {
            "pull_request" => d.is_pr,
            "discussion" => !d.is_pr,
            _ => true,
        })
        .filter(|d| match status.as_str() {
            "open" => d.is_open(),
            "closed" => !d.is_open(),
            _ => true,
        })
        .filter(|d| author.as_deref().is_none_or(|a| a == d.author))
        .collect();
    // Newest first, as the Hub lists them.
    matching.sort_by_key(|d| std::cmp::Reverse(d.num));
    let start = page.saturating_mul(PAGE).min(matching.len());
    let end = (start + PAGE).min(matching.len());
    let discussions = matching[start..end].iter().map(|d| summary(d, repo_type, &id)).collect();
    Ok(Json(DiscussionPage { discussions, count: matching.len(), start }))
}

/// `GET /api/{type}s/{ns}/{name}/discussions/{num}`.
pub async fn details(
    State(s): State<AppState>,
    Path(p): Path<DiscussionParams>,
    headers: HeaderMap,
) -> ApiResult<Json<DiscussionDetails>> {
    let caller = s.caller(&headers)?;
    let (repo_type, id) = p.repo().repo(RepoType::Model)?;
    let (key, _) = s.visible_repo(&caller, repo_type, &id).await?;
    let num = p.num;
    let d = s
        .blocking(move |s| s.db.discussion(&key, num))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Discussion #{num} not found")))?;
    Ok(Json(details_of(&d, repo_type, &id)))
}

/// `POST .../discussions/{num}/merge` with an optional `{comment}`.
pub async fn merge(
    State(s): State<AppState>,
    Path(p): Path<DiscussionParams>,
    headers: HeaderMap,
) -> ApiResult<Json<DiscussionDetails>> {
    let (repo_type, id, key, author) = writable(&s, &p, &headers).await?;
    let num = p.num;
    let meta = CommitMeta {
        author,
        date: s.now(),
        title: format!("Merge pull request #{num}"),
        message: String::new(),
    };
    let d = s.blocking(move |s| s.db.merge_pull_request(&key, num, &meta)).await?;
    tracing::info!(repo = %id, num, commit = ?d.merge_commit, "pull request merged");
    Ok(Json(details_of(&d, repo_type, &id)))
}

/// `POST .../discussions/{num}/status` with `{status: "open"|"closed"}`.
pub async fn status(
    State(s): State<AppState>,
    Path(p): Path<DiscussionParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<DiscussionDetails>> {
    let (repo_type, id, key, _) = writable(&s, &p, &headers).await?;
    let req: DiscussionChange = json_body(&headers, body).await?;
    let status = match req.status.as_deref() {
        Some(st @ ("open" | "closed")) => st.to_owned(),
        _ => return Err(ApiError::bad_request("status must be \"open\" or \"closed\"")),
    };
    let num = p.num;
    let d = s.blocking(move |s| s.db.set_discussion_status(&key, num, &status)).await?;
    Ok(Json(details_of(&d, repo_type, &id)))
}

/// The repo of a discussion route, checked writable; with the caller's name.
async fn writable(
    s: &AppState,
    p: &DiscussionParams,
    headers: &HeaderMap,
) -> ApiResult<(RepoType, tessera_protocol::RepoId, RepoKey, String)> {
    let caller = s.caller(headers)?;
    let (repo_type, id) = p.repo().repo(RepoType::Model)?;
    let (key, _) = s.writable_repo(&caller, repo_type, &id).await?;
    Ok((repo_type, id, key, caller.user().unwrap_or_default().to_owned()))
}

fn summary(
    d: &DiscussionRecord,
    repo_type: RepoType,
    id: &tessera_protocol::RepoId,
) -> DiscussionSummary {
    DiscussionSummary {
        num: d.num,
        title: d.title.clone(),
        status: d.status.clone(),
        created_at: format_hub_date(d.created),
        author: DiscussionAuthor { name: d.author.clone() },
        repo: DiscussionRepo { name: id.clone(), repo_type },
        is_pull_request: d.is_pr,
    }
}

/// The details body: the opening comment, then the merge as a status change.
fn details_of(
    d: &DiscussionRecord,
    repo_type: RepoType,
    id: &tessera_protocol::RepoId,
) -> DiscussionDetails {
    let date = format_hub_date(d.created);
    let author = serde_json::json!({"name": d.author});
    let mut events = vec![serde_json::json!({
        "id": format!("{}-0", d.num), "type": "comment", "createdAt": date, "author": author,
        "data": {"edited": false, "hidden": false, "latest": {"raw": d.description}},
    })];
    if d.status != "draft" && d.status != "open" {
        events.push(serde_json::json!({
            "id": format!("{}-1", d.num), "type": "status-change", "createdAt": date,
            "author": author, "data": {"status": d.status},
        }));
    }
    DiscussionDetails {
        summary: summary(d, repo_type, id),
        events,
        changes: DiscussionChanges {
            base: d.base.clone(),
            merge_commit_id: d.merge_commit.clone(),
        },
        files_with_conflicts: Vec::new(),
    }
}
