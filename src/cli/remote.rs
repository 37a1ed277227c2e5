//! Resolving where the Hub is and who we are, from flags and the Hugging Face environment
//! (`HF_ENDPOINT`, `HF_TOKEN`, `$HF_HOME/token`, `HF_HUB_OFFLINE`), once, here.

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::env::Env;
use crate::hub::{HubClient, HubConfig, RetryPolicy};
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
    pub(crate) repo_type: String,
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

    /// Parses `org/name[@rev]` with this repo type.
    pub(crate) fn key(&self, spec: &str) -> anyhow::Result<RevisionKey> {
        parse_spec(spec, &self.repo_type)
    }
}

/// `org/name[@rev]` -> key; the revision defaults to `main`.
pub(crate) fn parse_spec(spec: &str, repo_type: &str) -> anyhow::Result<RevisionKey> {
    let (repo, rev) = match spec.split_once('@') {
        Some((r, v)) if !v.is_empty() => (r, v),
        Some(_) => bail!("empty revision in {spec:?}"),
        None => (spec, "main"),
    };
    let repo_id =
        crate::protocol::RepoId::parse(repo).with_context(|| format!("bad repo id {repo:?}"))?;
    let repo_type = crate::protocol::RepoType::from_name(Some(repo_type))
        .with_context(|| format!("bad repo type {repo_type:?}"))?;
    let revision = rev.replace("%2F", "/").replace("%2f", "/");
    RevisionKey::new(repo_type, repo_id, &revision).with_context(|| format!("bad revision {rev:?}"))
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
