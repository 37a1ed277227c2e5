//! Hub API calls: revision info, tree listing, Xet tokens, and plain file downloads.

use futures::StreamExt;
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

use super::{HubClient, HubError, retry};
use tessera_protocol::{
    CommitId, RepoId, RepoInfo, RepoType, Revision, TreeEntry, TreeFile, XetTokenResponse,
    percent_encode,
};

/// Every file of a revision, as listed by the tree API.
#[derive(Debug, Clone)]
pub struct TreeListing {
    /// The commit the listing belongs to.
    pub commit: CommitId,
    /// The files (folders are dropped).
    pub files: Vec<TreeFile>,
}

impl HubClient {
    pub(super) fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// GETs a Hub API URL of `repo` and decodes JSON, mapping the Hub's error statuses.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        repo: &RepoId,
        rev: Option<&Revision>,
    ) -> Result<T, HubError> {
        let (_, body) = get_body(&self.config.retry, url, Subject::Repo(repo, rev), || {
            self.authed(self.http.get(url))
        })
        .await?;
        serde_json::from_slice(&body)
            .map_err(|e| HubError::Malformed { url: url.to_string(), message: e.to_string() })
    }

    /// Resolves a revision (branch, tag, commit, `refs/pr/N`) to its commit id.
    pub async fn revision_commit(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        rev: &Revision,
    ) -> Result<CommitId, HubError> {
        Ok(self.revision_dated(repo_type, repo_id, rev).await?.0)
    }

    /// The commit a revision points at, and its date (unix seconds) when the Hub tells.
    pub async fn revision_dated(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        rev: &Revision,
    ) -> Result<(CommitId, Option<u64>), HubError> {
        let url = self.api_rev_url(repo_type, repo_id, "revision", rev.as_str());
        let info: RepoInfo = self.get_json(&url, repo_id, Some(rev)).await?;
        let date = info.last_modified.as_deref().and_then(tessera_protocol::parse_hub_date);
        // The commit id names folders (snapshots/<commit>) and keys trees: 40 hex or nothing.
        Ok((commit_of(info, url)?, date))
    }

    /// Lists every file of a commit, following `Link: rel="next"` pagination.
    pub async fn list_tree(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        commit: &CommitId,
    ) -> Result<TreeListing, HubError> {
        let first = self.api_rev_url(repo_type, repo_id, "tree", commit.as_str());
        let mut next = Some(format!("{first}?recursive=true&expand=false"));
        let (rev, mut files) = (Revision::from(commit.clone()), Vec::new());
        while let Some(url) = next.take() {
            let subject = Subject::Repo(repo_id, Some(&rev));
            let (headers, body) =
                get_body(&self.config.retry, &url, subject, || self.authed(self.http.get(&url)))
                    .await?;
            next =
                next_link(&headers).map(|link| self.same_origin_link(&url, &link)).transpose()?;
            let page: Vec<TreeEntry> = serde_json::from_slice(&body)
                .map_err(|e| HubError::Malformed { url: url.clone(), message: e.to_string() })?;
            files.extend(page.into_iter().filter_map(|e| match e {
                TreeEntry::File(f) => Some(f),
                TreeEntry::Directory(_) => None,
            }));
        }
        Ok(TreeListing { commit: commit.clone(), files })
    }

    /// A pagination link resolved against the page that gave it, refused unless it stays on
    /// the configured endpoint's origin: every page request carries the Hub token, which must
    /// never reach another host.
    fn same_origin_link(&self, page: &str, link: &str) -> Result<String, HubError> {
        let refuse = |why: &str| HubError::Malformed {
            url: page.to_string(),
            message: format!("pagination link {link:?} {why}"),
        };
        let target = reqwest::Url::parse(page)
            .and_then(|p| p.join(link))
            .map_err(|_| refuse("does not parse"))?;
        let endpoint = reqwest::Url::parse(&self.config.endpoint)
            .map_err(|_| refuse("has no endpoint to compare with"))?;
        if target.origin() != endpoint.origin() {
            return Err(refuse("leaves the endpoint's origin"));
        }
        Ok(target.into())
    }

    /// A short-lived CAS read token for a revision.
    pub async fn xet_read_token(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        rev: &Revision,
    ) -> Result<XetTokenResponse, HubError> {
        let url = self.api_rev_url(repo_type, repo_id, "xet-read-token", rev.as_str());
        self.get_json(&url, repo_id, Some(rev)).await
    }

    /// URL of a file at a commit: `{endpoint}/{prefix}{repo}/resolve/{commit}/{path}`.
    pub fn resolve_url(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        commit: &CommitId,
        path: &str,
    ) -> String {
        format!(
            "{}/resolve/{commit}/{}",
            self.repo_url(repo_type, repo_id),
            percent_encode(path, true)
        )
    }

    /// Streams a file's bytes from `offset` into `sink`, resuming with a Range request after a
    /// broken transfer. Returns the bytes received.
    pub async fn download(
        &self,
        url: &str,
        repo: &RepoId,
        offset: u64,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, HubError> {
        let (mut received, mut failures) = (0u64, 0u32);
        loop {
            let from = offset + received;
            let make = || {
                let rb = self.authed(self.http.get(url));
                if from > 0 {
                    rb.header(reqwest::header::RANGE, format!("bytes={from}-"))
                } else {
                    rb
                }
            };
            let resp = check(
                retry::send(&self.config.retry, url, make).await?,
                &reqwest::Method::GET,
                Subject::Repo(repo, None),
            )
            .await?;
            if from > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
                return Err(HubError::Malformed {
                    url: url.into(),
                    message: "server ignored the Range header".into(),
                });
            }
            let mut stream = resp.bytes_stream();
            let mut broke = None;
            while let Some(piece) = stream.next().await {
                match piece {
                    Ok(bytes) => {
                        sink(&bytes).map_err(|e| HubError::Transport {
                            url: url.into(),
                            message: format!("local write: {e}"),
                        })?;
                        received += bytes.len() as u64;
                    }
                    Err(e) => {
                        broke = Some(retry::describe(e));
                        break;
                    }
                }
            }
            match broke {
                None => return Ok(received),
                Some(why) => {
                    failures += 1;
                    if failures >= self.config.retry.attempts {
                        return Err(HubError::Transport {
                            url: url.into(),
                            message: format!("transfer broke: {why}"),
                        });
                    }
                    tracing::debug!(url, received, %why, "transfer broke; resuming");
                    tokio::time::sleep(self.config.retry.backoff(failures)).await;
                }
            }
        }
    }
}

/// The commit a repo or revision info names (checked as a commit id when the answer was
/// decoded); an answer without one is malformed.
pub(crate) fn commit_of(info: RepoInfo, url: String) -> Result<CommitId, HubError> {
    info.sha
        .ok_or_else(|| HubError::Malformed { url, message: "no sha in the revision info".into() })
}

/// What a request is about, for the errors [`check`] names: the Hub's `RepoNotFound` and
/// `RevisionNotFound` codes name something only on a repo's routes, and only a route that
/// names a revision can miss one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// A route of a repo, at a revision when the route names one.
    Repo(&'a RepoId, Option<&'a Revision>),
    /// A CAS object, a shard, an LFS transfer.
    Other,
}

/// Maps the Hub's error answers (`X-Error-Code`) to typed errors; `method` names the request in
/// them.
pub(crate) async fn check(
    resp: Response,
    method: &reqwest::Method,
    subject: Subject<'_>,
) -> Result<Response, HubError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let code =
        resp.headers().get("x-error-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let url = resp.url().path().to_string();
    let message =
        resp.headers().get("x-error-message").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = resp.text().await.unwrap_or_default();
    let message = message.unwrap_or_else(|| body.chars().take(300).collect());
    Err(match (status.as_u16(), code.as_str(), subject) {
        (_, "RepoNotFound", Subject::Repo(repo, _)) => HubError::RepoNotFound(repo.clone()),
        (_, "RevisionNotFound", Subject::Repo(repo, Some(rev))) => {
            HubError::RevisionNotFound { repo: repo.clone(), rev: rev.clone() }
        }
        (_, "EntryNotFound", _) | (404, _, _) => HubError::NotFound(format!("{url}: {message}")),
        (401 | 403, _, _) => HubError::Unauthorized { status: status.as_u16(), message },
        (s @ (409 | 412), _, _) => {
            HubError::Conflict { method: method.to_string(), url, status: s, message }
        }
        (s, _, _) => HubError::Status { method: method.to_string(), url, status: s, message },
    })
}

/// GETs a whole body, retrying (with backoff) when the body breaks off mid-transfer as well as
/// on the failures [`retry::send`] handles. Returns the headers and the body.
pub(crate) async fn get_body(
    policy: &retry::RetryPolicy,
    url: &str,
    subject: Subject<'_>,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(reqwest::header::HeaderMap, bytes::Bytes), HubError> {
    let method = make().build().map(|r| r.method().clone()).unwrap_or(reqwest::Method::GET);
    let mut broken = 0;
    loop {
        let resp = check(retry::send(policy, url, &make).await?, &method, subject).await?;
        let headers = resp.headers().clone();
        match capped_body(resp, url).await? {
            Ok(body) => return Ok((headers, body)),
            Err(e) => {
                broken += 1;
                if broken >= policy.attempts {
                    return Err(transport(url, e));
                }
                tokio::time::sleep(policy.backoff(broken)).await;
            }
        }
    }
}

/// Largest API answer read into memory (a tree page, a reconstruction): far above what a Hub
/// sends, so that a hostile server cannot make a client buffer without end.
pub(crate) const MAX_API_BODY: usize = 64 << 20;

/// The whole body, refused (outer error) once past [`MAX_API_BODY`]; a broken transfer is the
/// inner error, for the caller to retry.
async fn capped_body(
    resp: Response,
    url: &str,
) -> Result<Result<bytes::Bytes, reqwest::Error>, HubError> {
    let too_large = || HubError::Malformed {
        url: url.to_string(),
        message: format!("answer larger than {MAX_API_BODY} bytes"),
    };
    if resp.content_length().is_some_and(|n| n > MAX_API_BODY as u64) {
        return Err(too_large());
    }
    let mut out = bytes::BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(b) if out.len() + b.len() > MAX_API_BODY => return Err(too_large()),
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(out.freeze()))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

fn transport(url: &str, e: reqwest::Error) -> HubError {
    HubError::Transport { url: url.to_string(), message: retry::describe(e) }
}
