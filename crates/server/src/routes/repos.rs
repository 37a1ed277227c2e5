//! Repo-level routes: create and delete repos, repo info, tree listing, paths-info,
//! `validate-yaml` and `whoami-v2`.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha1::Digest;

use super::{
    JSON_LIMIT, RepoParams, json_body, query_get, query_pairs, query_with, read_body, repo_url,
};
use crate::auth::{Caller, Scope};
use crate::db::{CommitRecord, Entry, RepoKey, RepoRecord};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use tessera_protocol::{
    CreateRepoRequest, CreateRepoResponse, DeleteRepoRequest, GitOid, LfsInfo, PathsInfoRequest,
    RepoId, RepoInfo, RepoType, SPACE_SDKS, Sibling, SiblingLfs, TreeDirectory, TreeEntry,
    TreeFile, ValidateYamlResponse, WhoAmI, WhoAmIAuth, WhoAmIToken, format_hub_date, parse_bool,
    parse_urlencoded,
};

/// `POST /api/repos/create`.
pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let caller = s.caller(&headers)?;
    let Some(user) = caller.user().map(str::to_owned) else {
        return Err(ApiError::unauthorized("You must be authenticated to create a repo"));
    };
    if !caller.can_write() {
        return Err(ApiError::forbidden("You need a write token to create a repo"));
    }
    let req: CreateRepoRequest = json_body(&headers, body).await?;
    let repo_type = RepoType::from_name(req.repo_type.as_deref())?;
    let sdk = space_sdk(repo_type, req.sdk.as_deref())?;
    let namespace = own_namespace(&s, &user, req.organization.as_deref())?;
    let id = RepoId::new(&namespace, &req.name)?;
    let private = req.private.unwrap_or(false) || req.visibility.as_deref() == Some("private");
    let record = RepoRecord {
        repo_type,
        id: id.clone(),
        private,
        owner: user,
        created: s.now(),
        sdk,
    };
    let key = RepoKey::new(repo_type, &id);
    let created = s.blocking(move |s| s.db.create_repo(&key, &record)).await?;
    let url = repo_url(&s.base_url(&headers), repo_type, &id);
    if !created {
        return Err(ApiError::conflict(format!("You already created this {repo_type} repo"))
            .with_field("url", url));
    }
    tracing::info!(repo = %id, %repo_type, private, "repo created");
    Ok(Json(CreateRepoResponse { url, name: id.to_string(), id: id.to_string() }).into_response())
}

/// The SDK a Space is created with: required and one of [`SPACE_SDKS`], as on the Hub (a 400
/// naming the field otherwise); other repo types keep none.
fn space_sdk(repo_type: RepoType, sdk: Option<&str>) -> ApiResult<Option<String>> {
    if repo_type != RepoType::Space {
        return Ok(None);
    }
    match sdk {
        Some(sdk) if SPACE_SDKS.contains(&sdk) => Ok(Some(sdk.to_owned())),
        Some(sdk) => Err(ApiError::bad_request(format!(
            "Invalid \"sdk\" {sdk:?}: a Space's sdk must be one of {}",
            SPACE_SDKS.join(", ")
        ))),
        None => Err(ApiError::bad_request(format!(
            "Missing \"sdk\": creating a Space requires its sdk, one of {}",
            SPACE_SDKS.join(", ")
        ))),
    }
}

/// The namespace a repo is created in. Namespaces are case-insensitive as on the Hub: another
/// user's in any spelling is refused (403), and the caller's own is spelled as the user's name,
/// so `Alice/x` can neither sit beside alice's repos nor be created by anyone but alice.
fn own_namespace(s: &AppState, user: &str, organization: Option<&str>) -> ApiResult<String> {
    let namespace = organization.unwrap_or(user);
    if namespace.eq_ignore_ascii_case(user) {
        return Ok(user.to_owned());
    }
    if s.options.tokens.is_user(namespace) {
        return Err(ApiError::forbidden(format!(
            "You cannot create repos in the namespace {namespace}"
        )));
    }
    Ok(namespace.to_owned())
}

/// `DELETE /api/repos/delete`.
pub async fn delete(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let caller = s.caller(&headers)?;
    if !caller.is_authenticated() {
        return Err(ApiError::unauthorized("You must use a write token to delete a repo"));
    }
    let req: DeleteRepoRequest = json_body(&headers, body).await?;
    let repo_type = RepoType::from_name(req.repo_type.as_deref())?;
    let namespace = req.organization.clone().or_else(|| caller.user().map(str::to_owned));
    let namespace = namespace.ok_or_else(|| ApiError::repo_not_found(false))?;
    let id = RepoId::new(&namespace, &req.name)?;
    let (key, _) = s.writable_repo(&caller, repo_type, &id).await?;
    s.blocking(move |s| s.db.delete_repo(&key)).await?;
    tracing::info!(repo = %id, "repo deleted");
    Ok(Json(serde_json::json!({})).into_response())
}

/// `POST /api/validate-yaml`: accepts any README metadata.
pub async fn validate_yaml(
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ValidateYamlResponse>> {
    let bytes = read_body(&headers, body, JSON_LIMIT).await?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(Json(ValidateYamlResponse::default()))
}

/// `GET /api/whoami-v2`.
pub async fn whoami(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Json<WhoAmI>> {
    match s.caller(&headers)? {
        Caller::Anonymous => {
            Err(ApiError::unauthorized("Invalid credentials in Authorization header"))
        }
        Caller::User { name, scope } => Ok(Json(WhoAmI {
            kind: "user".into(),
            name: name.clone(),
            orgs: Vec::new(),
            auth: WhoAmIAuth {
                access_token: WhoAmIToken {
                    display_name: format!("{name}-token"),
                    role: if scope == Scope::Write { "write" } else { "read" }.into(),
                },
            },
        })),
    }
}

/// A repo the caller may see, resolved at a revision, with its files.
pub struct Snapshot {
    /// Repo type.
    pub repo_type: RepoType,
    /// Repo id.
    pub id: RepoId,
    /// Repo key.
    pub key: RepoKey,
    /// Repo record.
    pub record: RepoRecord,
    /// The commit.
    pub commit: CommitRecord,
    /// Its files, sorted by path.
    pub entries: std::sync::Arc<Vec<Entry>>,
}

/// Resolves the repo and revision of a request (RepoNotFound / RevisionNotFound).
pub async fn snapshot(
    s: &AppState,
    caller: &Caller,
    p: &RepoParams,
    default: RepoType,
) -> ApiResult<Snapshot> {
    let (repo_type, id) = p.repo(default)?;
    let rev = p.revision()?;
    let (key, record) = s.visible_repo(caller, repo_type, &id).await?;
    let k = key.clone();
    let (commit, entries) = s
        .blocking(move |s| {
            let commit =
                s.db.resolve(&k, &rev)?.ok_or_else(|| ApiError::revision_not_found(&rev))?;
            s.db.commit_tree(&k, &commit)
        })
        .await?;
    Ok(Snapshot { repo_type, id, key, record, commit, entries })
}

/// `GET /api/{type}s/{ns}/{name}[/revision/{rev}]`.
pub async fn info(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Json<RepoInfo>> {
    let caller = s.caller(&headers)?;
    let snap = snapshot(&s, &caller, &p, RepoType::Model).await?;
    let pairs = query_pairs(uri.query());
    let blobs = query_get(&pairs, "blobs").and_then(parse_bool).unwrap_or(false);
    let siblings = snap
        .entries
        .iter()
        .map(|e| Sibling {
            rfilename: e.path.clone(),
            size: blobs.then_some(e.size),
            blob_id: blobs.then(|| e.git_oid.clone()),
            lfs: (blobs && e.lfs).then(|| SiblingLfs {
                size: e.size,
                sha256: e.sha256,
                pointer_size: e.pointer_size(),
            }),
        })
        .collect();
    Ok(Json(RepoInfo {
        id: snap.id.to_string(),
        author: Some(snap.id.namespace().to_owned()),
        sha: Some(snap.commit.id.clone()),
        private: snap.record.private,
        gated: serde_json::Value::Bool(false),
        disabled: false,
        last_modified: Some(format_hub_date(snap.commit.date)),
        created_at: Some(format_hub_date(snap.record.created)),
        siblings,
        tags: Vec::new(),
        downloads: 0,
        likes: 0,
        xet_enabled: !s.options.no_xet,
        sdk: snap.record.sdk.clone(),
    }))
}

/// Tree-listing entry of a file.
pub fn file_entry(e: &Entry, xet: bool) -> TreeEntry {
    TreeEntry::File(TreeFile {
        oid: e.git_oid.clone(),
        size: e.size,
        path: e.path.clone(),
        lfs: e.lfs.then(|| LfsInfo {
            oid: e.sha256.into(),
            size: e.size,
            pointer_size: e.pointer_size(),
        }),
        xet_hash: (e.lfs && xet).then(|| e.file.to_string()),
    })
}

/// Digest of a folder: SHA-1 over the paths and oids of every file below it.
fn dir_oids(entries: &[Entry]) -> HashMap<String, GitOid> {
    let mut hashers: HashMap<&str, sha1::Sha1> = HashMap::new();
    for e in entries {
        let mut end = 0;
        while let Some(i) = e.path[end..].find('/') {
            end += i;
            let h = hashers.entry(&e.path[..end]).or_default();
            h.update(e.path.as_bytes());
            h.update([0]);
            h.update(e.git_oid.as_str().as_bytes());
            h.update([b'\n']);
            end += 1;
        }
    }
    hashers
        .into_iter()
        .map(|(d, h)| (d.to_owned(), GitOid::from_sha1(h.finalize().into())))
        .collect()
}

/// Lists a folder (`""` = root). `None` if the folder does not exist.
pub fn list_dir(
    entries: &[Entry],
    dir: &str,
    recursive: bool,
    xet: bool,
) -> Option<Vec<TreeEntry>> {
    let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    let oids = dir_oids(entries);
    let mut seen_dirs = BTreeSet::new();
    let mut out = Vec::new();
    let mut found = dir.is_empty();
    let mut push_dir = |path: &str, out: &mut Vec<TreeEntry>| {
        // Every folder above a file has a digest: `dir_oids` walks the same paths.
        let Some(oid) = oids.get(path) else { return };
        if seen_dirs.insert(path.to_owned()) {
            let oid = oid.clone();
            out.push(TreeEntry::Directory(TreeDirectory { oid, size: 0, path: path.to_owned() }));
        }
    };
    for e in entries.iter().filter(|e| e.path.starts_with(&prefix)) {
        found = true;
        let rest = &e.path[prefix.len()..];
        if recursive {
            let mut end = 0;
            while let Some(i) = rest[end..].find('/') {
                end += i;
                push_dir(&format!("{prefix}{}", &rest[..end]), &mut out);
                end += 1;
            }
            out.push(file_entry(e, xet));
        } else if let Some((first, _)) = rest.split_once('/') {
            push_dir(&format!("{prefix}{first}"), &mut out);
        } else {
            out.push(file_entry(e, xet));
        }
    }
    found.then_some(out)
}

/// `GET /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]`, paginated with `Link` and `cursor`.
pub async fn tree(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = s.caller(&headers)?;
    let snap = snapshot(&s, &caller, &p, RepoType::Model).await?;
    let pairs = query_pairs(uri.query());
    let recursive = query_get(&pairs, "recursive").and_then(parse_bool).unwrap_or(false);
    let dir = p.path.as_deref().unwrap_or("").trim_matches('/');
    let listing = match list_dir(&snap.entries, dir, recursive, !s.options.no_xet) {
        Some(l) => l,
        None => match snap.entries.iter().find(|e| e.path == dir) {
            Some(e) => vec![file_entry(e, !s.options.no_xet)],
            None => return Err(ApiError::entry_not_found(dir, Some(snap.commit.id.as_str()))),
        },
    };
    let start: usize = query_get(&pairs, "cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page = s.options.tree_page_size;
    let end = start.saturating_add(page).min(listing.len());
    let items = listing.get(start..end).unwrap_or_default().to_vec();
    let mut response = Json(items).into_response();
    if end < listing.len() {
        let next = format!(
            "{}{}?{}",
            s.base_url(&headers),
            uri.path(),
            query_with(&pairs, "cursor", &end.to_string())
        );
        if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            response.headers_mut().insert(axum::http::header::LINK, v);
        }
    }
    Ok(response)
}

/// `POST /api/{type}s/{ns}/{name}/paths-info/{rev}` (form or JSON body).
pub async fn paths_info(
    State(s): State<AppState>,
    Path(p): Path<RepoParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Vec<TreeEntry>>> {
    let caller = s.caller(&headers)?;
    // Refuse a caller who may not see the repo before reading the body.
    let snap = snapshot(&s, &caller, &p, RepoType::Model).await?;
    let bytes = read_body(&headers, body, JSON_LIMIT).await?;
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let paths: Vec<String> = if is_json {
        serde_json::from_slice::<PathsInfoRequest>(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
            .paths
    } else {
        parse_urlencoded(&String::from_utf8_lossy(&bytes))
            .into_iter()
            .filter(|(k, _)| k == "paths" || k == "paths[]")
            .map(|(_, v)| v)
            .collect()
    };
    if paths.len() > 10_000 {
        return Err(ApiError::bad_request("too many paths in one request"));
    }
    let oids = dir_oids(&snap.entries);
    let mut out = Vec::new();
    for path in paths {
        let path = path.trim_matches('/');
        if let Ok(i) = snap.entries.binary_search_by(|e| e.path.as_str().cmp(path)) {
            out.push(file_entry(&snap.entries[i], !s.options.no_xet));
        } else if let Some(oid) = oids.get(path) {
            out.push(TreeEntry::Directory(TreeDirectory {
                oid: oid.clone(),
                size: 0,
                path: path.to_owned(),
            }));
        }
    }
    Ok(Json(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tessera_xet::hash::{FileHash, Sha256};

    fn e(path: &str) -> Entry {
        Entry {
            path: path.into(),
            size: 1,
            file: FileHash::ZERO,
            sha256: Sha256::default(),
            git_oid: tessera_protocol::git_blob_oid(b"x"),
            lfs: false,
        }
    }

    fn paths(l: &[TreeEntry]) -> Vec<String> {
        l.iter()
            .map(|t| match t {
                TreeEntry::File(f) => f.path.clone(),
                TreeEntry::Directory(d) => format!("{}/", d.path),
            })
            .collect()
    }

    #[test]
    fn listing() {
        let entries = vec![e("1_Pooling/config.json"), e("a/b/c.txt"), e("a/d.txt"), e("z.txt")];
        let root = list_dir(&entries, "", false, true).unwrap();
        assert_eq!(paths(&root), ["1_Pooling/", "a/", "z.txt"]);
        let all = list_dir(&entries, "", true, true).unwrap();
        assert_eq!(
            paths(&all),
            ["1_Pooling/", "1_Pooling/config.json", "a/", "a/b/", "a/b/c.txt", "a/d.txt", "z.txt"]
        );
        assert_eq!(paths(&list_dir(&entries, "a", false, true).unwrap()), ["a/b/", "a/d.txt"]);
        assert!(list_dir(&entries, "nope", true, true).is_none());
        assert!(list_dir(&entries, "a/b/c.txt", false, true).is_none());
    }
}
