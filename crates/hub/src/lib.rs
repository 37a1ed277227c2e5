//! Async client of the Hub HTTP API and the Xet CAS API (`hub-api.md`, `xet-protocol.md` §5-7),
//! for the real Hub and for `tessera hub serve` alike: reads (`api`, `cas`) and uploads
//! (`upload`: repos, preupload, xorbs, shards, global dedup, commits; `lfs`: Git LFS uploads,
//! basic and multipart, for hubs without Xet).
//!
//! Every request goes through [`retry`]: connection errors, 429 (honouring `Retry-After`) and 5xx
//! are retried with exponential backoff and jitter; a transfer that stalls longer than the read
//! timeout fails and is retried. The token is sent only to the Hub, never to CAS or xorb URLs,
//! and never appears in logs or `Debug` output.

mod api;
mod cas;
mod lfs;
mod retry;
mod upload;

use std::time::Duration;

pub use api::TreeListing;
pub use cas::{FetchUnit, Reconstruction};
pub use retry::RetryPolicy;
pub use upload::CasAuth;

use tessera_protocol::{RepoId, RepoType, Revision, percent_encode};

/// What can go wrong talking to a Hub.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The repo does not exist (or is private and the token does not grant it).
    #[error("repository {0} not found (or private without a token that grants it)")]
    RepoNotFound(RepoId),
    /// The revision does not exist in the repo.
    #[error("revision {rev} not found in {repo}")]
    RevisionNotFound {
        /// The repo.
        repo: RepoId,
        /// The revision asked for.
        rev: Revision,
    },
    /// A file or other object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The token was refused.
    #[error("unauthorized ({status}): {message}")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The request conflicts with the server's state (409, 412): the branch moved, the repo or
    /// tag exists. Callers decide (re-plan a commit, report an existing tag).
    #[error("{method} {url}: conflict (HTTP {status}): {message}")]
    Conflict {
        /// Request method.
        method: String,
        /// Request URL (no credentials).
        url: String,
        /// 409 or 412.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// Any other non-success answer.
    #[error("{method} {url}: HTTP {status}: {message}")]
    Status {
        /// Request method.
        method: String,
        /// Request URL (no credentials).
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached or the transfer broke, after all retries.
    #[error("{url}: {message}")]
    Transport {
        /// Request URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server answered with something that is not what the protocol says.
    #[error("malformed answer from {url}: {message}")]
    Malformed {
        /// Request URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl HubError {
    /// Whether retrying later could help (the mount maps these to EIO without caching them).
    pub fn is_transient(&self) -> bool {
        matches!(self, HubError::Transport { .. }) || matches!(self, HubError::Status { status, .. } if *status == 429 || *status >= 500)
    }
}

/// Where and as whom to talk to a Hub.
#[derive(Clone)]
pub struct HubConfig {
    /// Base URL, e.g. `https://huggingface.co` (no trailing slash).
    pub endpoint: String,
    /// Bearer token for the Hub API, if any.
    pub token: Option<String>,
    /// Retry and timeout settings.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A Hub client; cheap to clone.
#[derive(Clone, Debug)]
pub struct HubClient {
    http: reqwest::Client,
    config: HubConfig,
}

impl HubClient {
    /// Builds a client; fails only if the TLS backend cannot initialise.
    pub fn new(mut config: HubConfig) -> Result<Self, HubError> {
        config.endpoint = config.endpoint.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(config.retry.stall_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| HubError::Transport { url: config.endpoint.clone(), message: e.to_string() })?;
        Ok(Self { http, config })
    }

    /// The Hub's base URL.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.config.retry
    }

    /// The endpoint, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    // Every URL that names a repo or a revision is built below, from the typed values: a repo
    // id's characters need no escaping, a revision goes percent-encoded as one segment (so
    // `release/v1` or `refs/pr/3` stays one), a commit id is 40 hex digits.

    /// `{endpoint}/api/{type}s/{namespace}/{name}`: the repo on the Hub API.
    fn api_url(&self, repo_type: RepoType, repo_id: &RepoId) -> String {
        format!("{}/api/{}/{}", self.config.endpoint, repo_type.api_segment(), repo_id)
    }

    /// `{api_url}/{route}/{rev}`: a route of the repo at a revision; `rev` is the text of a
    /// [`tessera_protocol::Revision`] or a [`tessera_protocol::CommitId`].
    fn api_rev_url(&self, repo_type: RepoType, repo_id: &RepoId, route: &str, rev: &str) -> String {
        format!("{}/{route}/{}", self.api_url(repo_type, repo_id), percent_encode(rev, false))
    }

    /// `{endpoint}/{prefix}{namespace}/{name}`: the repo in file and git URLs (no `api/`; the
    /// prefix is empty for models, `datasets/` or `spaces/` otherwise).
    fn repo_url(&self, repo_type: RepoType, repo_id: &RepoId) -> String {
        format!("{}/{}{}", self.config.endpoint, repo_type.url_prefix(), repo_id)
    }
}
