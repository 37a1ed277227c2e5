//! Resolving where the Hub is and who we are, from flags and the Hugging Face environment
//! (`HF_ENDPOINT`, `HF_TOKEN`, `$HF_HOME/token`, `HF_HUB_OFFLINE`), once, here.

use std::path::PathBuf;

use anyhow::Context;

use super::env::Env;
use crate::hub::{HubClient, HubConfig, RetryPolicy};
use crate::protocol::{IdError, RepoId, RepoType, Revision};
use crate::store::RevisionKey;

/// Flags shared by commands that talk to a Hub.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RemoteArgs {
    /// Hub endpoint [env: HF_ENDPOINT; default: https://huggingface.co].
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// Use only the store; never touch the network [env: HF_HUB_OFFLINE=1].
    #[arg(long)]
    pub(crate) offline: bool,
    /// Repo type: model, dataset or space.
    #[arg(long, default_value = "model", value_name = "TYPE")]
    pub(crate) repo_type: RepoType,
}

impl RemoteArgs {
    pub(crate) fn offline(&self, env: &Env) -> bool {
        self.offline || env.flag("HF_HUB_OFFLINE")
    }

    /// A client for the configured Hub (token from `HF_TOKEN` or `$HF_HOME/token`).
    pub(crate) fn client(&self, env: &Env) -> anyhow::Result<HubClient> {
        self.client_with(env, RetryPolicy::default())
    }

    /// Same, with a retry policy of the caller's choice.
    pub(crate) fn client_with(&self, env: &Env, retry: RetryPolicy) -> anyhow::Result<HubClient> {
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| env.get("HF_ENDPOINT").filter(|s| !s.is_empty()).map(str::to_string))
            .unwrap_or_else(|| "https://huggingface.co".to_string());
        let config = HubConfig { endpoint, token: hf_token(env), retry };
        HubClient::new(config).context("cannot set up the HTTP client")
    }

    /// The key of `spec` with this repo type.
    pub(crate) fn key(&self, spec: &RepoSpec) -> RevisionKey {
        spec.key(self.repo_type)
    }
}

/// `org/name[@rev]` as the command line gives it, checked where it is parsed (clap parses
/// arguments of this type, so a bad id or revision is a usage error naming the argument). The
/// revision defaults to `main`; `%2F` spells a `/` in it.
#[derive(Debug, Clone)]
pub(crate) struct RepoSpec {
    repo_id: RepoId,
    revision: Revision,
}

impl std::str::FromStr for RepoSpec {
    type Err = IdError;
    fn from_str(spec: &str) -> Result<Self, IdError> {
        let (repo, rev) = spec.split_once('@').unwrap_or((spec, "main"));
        let revision = Revision::parse(&rev.replace("%2F", "/").replace("%2f", "/"))?;
        Ok(Self { repo_id: RepoId::parse(repo)?, revision })
    }
}

impl RepoSpec {
    /// The key of this revision in a repo of `repo_type`.
    pub(crate) fn key(&self, repo_type: RepoType) -> RevisionKey {
        let (repo_id, revision) = (self.repo_id.clone(), self.revision.clone());
        RevisionKey { repo_type, repo_id, revision }
    }
}

/// `org/name[@rev]` -> key, for specs that are not an argument of their own (`cat`'s
/// `org/name[@rev]:path`, `pin`'s list).
pub(crate) fn parse_spec(spec: &str, repo_type: RepoType) -> anyhow::Result<RevisionKey> {
    let spec: RepoSpec = spec.parse().with_context(|| format!("bad repo spec {spec:?}"))?;
    Ok(spec.key(repo_type))
}

fn hf_token(env: &Env) -> Option<String> {
    if let Some(t) = env.get("HF_TOKEN") {
        let t = t.trim().to_string();
        return (!t.is_empty()).then_some(t);
    }
    let home = env
        .get("HF_HOME")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))?;
    let t = std::fs::read_to_string(home.join("token")).ok()?;
    let t = t.trim().to_string();
    (!t.is_empty()).then_some(t)
}

/// A tokio runtime for one command.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Store work (adopting fetched chunks, index lookups) runs on the blocking pool. A few
        // threads keep every core busy; hundreds (tokio's default cap is 512) would each keep
        // an allocator heap of freed batch buffers, which is how a lazy read of a 2 GiB file
        // reached 500 MB resident.
        .max_blocking_threads(16)
        .build()
        .context("cannot start the async runtime")
}
