//! What the remote already holds, chunk by chunk: the local store's index and the push cache
//! (xorbs this machine pushed before) name candidate xorbs, kept only when the CAS confirms it
//! has them (`HEAD`); then the global-dedup API for key chunks still unknown. Only the remote
//! decides: a chunk the store holds in a xorb the CAS lacks is new.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use super::SyncError;
use super::fetch::blocking;
use super::plan::{LocalFile, key_chunks, match_dedup};
use super::shard_cache::ShardCache;
use tessera_xet::format::Shard;
use tessera_xet::hash::{ChunkHash, XorbHash};
use tessera_hub::{CasAuth, HubClient};
use tessera_protocol::{RepoId, RepoType, Revision};
use tessera_store::Store;

/// Requests in flight at once for HEADs and dedup queries.
const QUERY_CONCURRENCY: usize = 8;
/// A token is renewed when it has less than this left.
const TOKEN_MARGIN_SECS: u64 = 60;

/// Remote chunk locations: chunk hash -> (xorb, index).
pub(crate) type Known = HashMap<ChunkHash, (XorbHash, u32)>;

/// A CAS token for one repo revision, renewed before it expires.
pub(crate) struct CasSession {
    hub: HubClient,
    repo_type: RepoType,
    repo_id: RepoId,
    rev: Revision,
    write: bool,
    /// Write tokens are asked for a pull request (`create_pr=1`): the Hub grants those to
    /// contributors who may not write to the branch itself.
    create_pr: bool,
    auth: Mutex<Option<CasAuth>>,
}

impl CasSession {
    /// A session for writes to branch `rev`, or reads of commit `rev`.
    pub(crate) fn new(
        hub: HubClient,
        repo_type: RepoType,
        repo_id: &RepoId,
        rev: &Revision,
        write: bool,
    ) -> Self {
        Self {
            hub,
            repo_type,
            repo_id: repo_id.clone(),
            rev: rev.clone(),
            write,
            create_pr: false,
            auth: Mutex::new(None),
        }
    }

    /// Asks write tokens for a pull request against the branch (`push --create-pr`).
    pub(crate) fn for_pull_request(mut self, create_pr: bool) -> Self {
        self.create_pr = create_pr;
        self
    }

    /// A token valid for at least another minute.
    pub(crate) async fn auth(&self) -> Result<CasAuth, SyncError> {
        let mut slot = self.auth.lock().await;
        let now = super::unix_now();
        if let Some(a) = slot.as_ref().filter(|a| a.exp > now + TOKEN_MARGIN_SECS) {
            return Ok(a.clone());
        }
        let t = if self.write {
            self.hub.xet_write_token(self.repo_type, &self.repo_id, &self.rev, self.create_pr).await
        } else {
            self.hub.xet_read_token(self.repo_type, &self.repo_id, &self.rev).await
        };
        let fresh = CasAuth::from(t.map_err(no_xet)?);
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// The client.
    pub(crate) fn hub(&self) -> &HubClient {
        &self.hub
    }
}

/// A Hub without a CAS answers the token route with 404.
fn no_xet(e: tessera_hub::HubError) -> SyncError {
    match e {
        e @ tessera_hub::HubError::NotFound(_) => SyncError::NoXet { source: e },
        other => SyncError::Hub(other),
    }
}

/// Where the remote holds the chunks of `files` that it has, as far as can be learned.
/// Returns the locations and the number of global-dedup queries sent.
pub(crate) async fn remote_chunks(
    cas: &CasSession,
    store: &Store,
    cache: Option<&ShardCache>,
    files: &[&LocalFile],
) -> Result<(Known, usize), SyncError> {
    let wanted: Vec<ChunkHash> = {
        let mut seen = HashSet::new();
        files
            .iter()
            .flat_map(|f| f.chunks.iter().map(|c| c.0))
            .filter(|h| seen.insert(*h))
            .collect()
    };
    let mut known = confirmed(cas, local_candidates(store, cache, wanted.clone()).await?).await?;
    let queries: Vec<ChunkHash> = key_chunks(files.iter().map(|f| &f.chunks[..]))
        .into_iter()
        .filter(|h| !known.contains_key(h))
        .collect();
    let sent = queries.len();
    global_dedup(cas, queries, &wanted, &mut known).await?;
    Ok((known, sent))
}

/// Asks the CAS about `queries` and adds to `known` every wanted chunk the answers list.
async fn global_dedup(
    cas: &CasSession,
    queries: Vec<ChunkHash>,
    wanted: &[ChunkHash],
    known: &mut Known,
) -> Result<(), SyncError> {
    let answers: Vec<Option<bytes::Bytes>> = futures::stream::iter(queries)
        .map(|h| async move {
            let auth = cas.auth().await?;
            cas.hub().dedup_query(&auth, &h).await.map_err(SyncError::from)
        })
        .buffer_unordered(QUERY_CONCURRENCY)
        .try_collect()
        .await?;
    let mut seen_xorbs: HashSet<XorbHash> = known.values().map(|v| v.0).collect();
    for body in answers.into_iter().flatten() {
        let Ok(shard) = Shard::decode(&body) else {
            tracing::warn!("ignoring a global-dedup answer that does not decode");
            continue;
        };
        if shard.xorbs.iter().all(|x| seen_xorbs.contains(&x.hash)) {
            continue;
        }
        seen_xorbs.extend(shard.xorbs.iter().map(|x| x.hash));
        let unknown: Vec<ChunkHash> =
            wanted.iter().filter(|h| !known.contains_key(*h)).copied().collect();
        for (h, x, i) in match_dedup(&shard, &unknown) {
            known.insert(h, (x, i));
        }
    }
    Ok(())
}

/// Where the local store and the push cache place `wanted` chunks.
async fn local_candidates(
    store: &Store,
    cache: Option<&ShardCache>,
    wanted: Vec<ChunkHash>,
) -> Result<Vec<(ChunkHash, XorbHash, u32)>, SyncError> {
    let (store, cache) = (store.clone(), cache.cloned());
    blocking(move || {
        let mut out = Vec::new();
        let mut missing = HashSet::new();
        for h in wanted {
            match store.chunk_location(&h)? {
                Some((x, i)) => out.push((h, x, i)),
                None => {
                    missing.insert(h);
                }
            }
        }
        if let Some(cache) = cache {
            out.extend(cache.lookup(&missing).into_iter().map(|(h, (x, i))| (h, x, i)));
        }
        Ok(out)
    })
    .await
}

/// The candidates whose xorb the CAS confirms it holds.
async fn confirmed(
    cas: &CasSession,
    local: Vec<(ChunkHash, XorbHash, u32)>,
) -> Result<Known, SyncError> {
    let candidates: HashSet<XorbHash> = local.iter().map(|(_, x, _)| *x).collect();
    let present: HashSet<XorbHash> = futures::stream::iter(candidates)
        .map(|x| async move {
            let auth = cas.auth().await?;
            let has = cas.hub().xorb_exists(&auth, &x).await?;
            Ok::<_, SyncError>(has.then_some(x))
        })
        .buffer_unordered(QUERY_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    Ok(local
        .into_iter()
        .filter(|(_, x, _)| present.contains(x))
        .map(|(h, x, i)| (h, (x, i)))
        .collect())
}
