//! Hub and CAS calls of an upload (`hub-api.md` §5, `xet-protocol.md` §5-7): repo, branch and
//! tag creation, preupload, Xet write tokens, xorb and shard uploads, global-dedup queries, and
//! the NDJSON commit.
//!
//! Every call goes through [`retry::send`]; bodies are [`Bytes`] so a retry re-sends them without
//! copying. The Hub token goes only to Hub routes, the Xet token only to the CAS.

use bytes::Bytes;
use reqwest::StatusCode;

use super::api::Subject;
use super::{HubClient, HubError, api, retry};
use tessera_protocol::{
    CommitId, CommitLine, CommitResponse, PreuploadFile, PreuploadRequest, PreuploadResponse,
    PreuploadResult, RepoId, RepoInfo, RepoType, Revision, XetTokenResponse, XorbUploadResponse,
};
use tessera_xet::hash::{ChunkHash, XorbHash};

/// Paths per preupload call (huggingface_hub sends the same batches).
const PREUPLOAD_BATCH: usize = 256;

/// A CAS endpoint and the Xet access token for it.
#[derive(Clone)]
pub struct CasAuth {
    /// CAS base URL (no trailing slash).
    pub url: String,
    /// Bearer token for the CAS.
    pub token: String,
    /// Expiry of the token, unix seconds.
    pub exp: u64,
}

impl std::fmt::Debug for CasAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CasAuth")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("exp", &self.exp)
            .finish()
    }
}

impl From<XetTokenResponse> for CasAuth {
    fn from(t: XetTokenResponse) -> Self {
        Self { url: t.cas_url.trim_end_matches('/').to_string(), token: t.access_token, exp: t.exp }
    }
}

impl HubClient {
    /// The commit the default branch points at.
    pub async fn repo_head(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
    ) -> Result<CommitId, HubError> {
        let url = self.api_url(repo_type, repo_id);
        let info: RepoInfo = self.get_json(&url, repo_id, None).await?;
        super::api::commit_of(info, url)
    }

    /// Creates a repo (a Space with its SDK, which the Hub requires); `Ok(false)` when it
    /// already exists.
    pub async fn create_repo(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        private: bool,
        space_sdk: Option<&str>,
    ) -> Result<bool, HubError> {
        let mut body = serde_json::json!({"name": repo_id.name(), "organization": repo_id.namespace(), "private": private});
        if repo_type != RepoType::Model {
            body["type"] = repo_type.as_str().into();
        }
        if let Some(sdk) = space_sdk {
            body["sdk"] = sdk.into();
        }
        let url = format!("{}/api/repos/create", self.config.endpoint);
        match self.send_json(&url, repo_id, None, reqwest::Method::POST, &body).await {
            Ok(_) => Ok(true),
            Err(HubError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates `branch` at `starting_point` (the default branch head when `None`).
    pub async fn create_branch(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        branch: &Revision,
        starting_point: Option<&Revision>,
    ) -> Result<(), HubError> {
        let url = self.api_rev_url(repo_type, repo_id, "branch", branch.as_str());
        let body = match starting_point {
            Some(s) => serde_json::json!({"startingPoint": s.as_str()}),
            None => serde_json::json!({}),
        };
        self.send_json(&url, repo_id, Some(branch), reqwest::Method::POST, &body).await.map(|_| ())
    }

    /// Tags `commit` as `tag`.
    pub async fn create_tag(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        commit: &CommitId,
        tag: &str,
    ) -> Result<(), HubError> {
        let url = self.api_rev_url(repo_type, repo_id, "tag", commit.as_str());
        let body = serde_json::json!({"tag": tag});
        let rev = Revision::from(commit.clone());
        self.send_json(&url, repo_id, Some(&rev), reqwest::Method::POST, &body).await.map(|_| ())
    }

    /// Asks how each file must travel (`lfs` or `regular`) and whether to skip it.
    pub async fn preupload(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        rev: &Revision,
        files: &[PreuploadFile],
    ) -> Result<Vec<PreuploadResult>, HubError> {
        let url = self.api_rev_url(repo_type, repo_id, "preupload", rev.as_str());
        let mut out = Vec::with_capacity(files.len());
        for batch in files.chunks(PREUPLOAD_BATCH) {
            let body =
                serde_json::to_value(PreuploadRequest { files: batch.to_vec(), git_ignore: None })
                    .map_err(|e| HubError::Malformed {
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
            let reply =
                self.send_json(&url, repo_id, Some(rev), reqwest::Method::POST, &body).await?;
            let parsed: PreuploadResponse = serde_json::from_slice(&reply)
                .map_err(|e| HubError::Malformed { url: url.clone(), message: e.to_string() })?;
            out.extend(parsed.files);
        }
        Ok(out)
    }

    /// A CAS write token for a branch, or for a pull request against it (`create_pr=1`, as
    /// `huggingface_hub` asks: the Hub then grants it to contributors too).
    pub async fn xet_write_token(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        rev: &Revision,
        create_pr: bool,
    ) -> Result<XetTokenResponse, HubError> {
        let url = self.api_rev_url(repo_type, repo_id, "xet-write-token", rev.as_str());
        let url = if create_pr { format!("{url}?create_pr=1") } else { url };
        self.get_json(&url, repo_id, Some(rev)).await
    }

    /// Posts a commit (`hub-api.md` §5.7) to `branch`, or with `create_pr` as a new pull
    /// request against it (§5.8; the reply then carries `pullRequestUrl`).
    pub async fn commit(
        &self,
        repo_type: RepoType,
        repo_id: &RepoId,
        branch: &Revision,
        lines: &[CommitLine],
        create_pr: bool,
    ) -> Result<CommitResponse, HubError> {
        let url = self.api_rev_url(repo_type, repo_id, "commit", branch.as_str());
        let url = if create_pr { format!("{url}?create_pr=1") } else { url };
        let mut ndjson = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut ndjson, line)
                .map_err(|e| HubError::Malformed { url: url.clone(), message: e.to_string() })?;
            ndjson.push(b'\n');
        }
        let body = Bytes::from(ndjson);
        let make = || {
            self.authed(self.http.post(&url))
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(body.clone())
        };
        let subject = Subject::Repo(repo_id, Some(branch));
        let (_, reply) = api::get_body(&self.config.retry, &url, subject, make).await?;
        serde_json::from_slice(&reply)
            .map_err(|e| HubError::Malformed { url, message: e.to_string() })
    }

    /// Whether the CAS says it holds a xorb (`HEAD /v1/xorbs/default/{hash}`). Any answer but
    /// success counts as "no": the caller then sends the xorb, which is always correct (an
    /// upload of a known xorb is accepted as a no-op).
    pub async fn xorb_exists(&self, cas: &CasAuth, xorb: &XorbHash) -> Result<bool, HubError> {
        let url = format!("{}/v1/xorbs/default/{xorb}", cas.url);
        let resp =
            retry::send(&self.config.retry, &url, || self.http.head(&url).bearer_auth(&cas.token))
                .await?;
        let status = resp.status();
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            tracing::debug!(%xorb, status = status.as_u16(), "xorb HEAD not answered; assuming absent");
        }
        Ok(status.is_success())
    }

    /// Uploads a xorb body (chunks, no footer); `Ok(false)` when the CAS already had it.
    pub async fn upload_xorb(
        &self,
        cas: &CasAuth,
        xorb: &XorbHash,
        body: Bytes,
    ) -> Result<bool, HubError> {
        let url = format!("{}/v1/xorbs/default/{xorb}", cas.url);
        let make = || self.http.post(&url).bearer_auth(&cas.token).body(body.clone());
        let (_, reply) = api::get_body(&self.config.retry, &url, Subject::Other, make).await?;
        let parsed: XorbUploadResponse = serde_json::from_slice(&reply)
            .map_err(|e| HubError::Malformed { url, message: e.to_string() })?;
        Ok(parsed.was_inserted)
    }

    /// Uploads a shard (`POST /v1/shards`); any 200 is success.
    pub async fn upload_shard(&self, cas: &CasAuth, body: Bytes) -> Result<(), HubError> {
        let url = format!("{}/v1/shards", cas.url);
        let make = || self.http.post(&url).bearer_auth(&cas.token).body(body.clone());
        api::get_body(&self.config.retry, &url, Subject::Other, make).await.map(|_| ())
    }

    /// Global dedup: the shard the CAS answers for a chunk, or `None` when it does not know it.
    pub async fn dedup_query(
        &self,
        cas: &CasAuth,
        chunk: &ChunkHash,
    ) -> Result<Option<Bytes>, HubError> {
        let url = format!("{}/v1/chunks/default/{chunk}", cas.url);
        match api::get_body(&self.config.retry, &url, Subject::Other, || {
            self.http.get(&url).bearer_auth(&cas.token)
        })
        .await
        {
            Ok((_, body)) => Ok(Some(body)),
            Err(HubError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a JSON body to a Hub route of `repo`; returns the answer's body.
    async fn send_json(
        &self,
        url: &str,
        repo: &RepoId,
        rev: Option<&Revision>,
        method: reqwest::Method,
        body: &serde_json::Value,
    ) -> Result<Bytes, HubError> {
        let bytes = Bytes::from(
            serde_json::to_vec(body)
                .map_err(|e| HubError::Malformed { url: url.into(), message: e.to_string() })?,
        );
        let make = || {
            self.authed(self.http.request(method.clone(), url))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
        };
        let subject = Subject::Repo(repo, rev);
        api::get_body(&self.config.retry, url, subject, make).await.map(|(_, b)| b)
    }
}
