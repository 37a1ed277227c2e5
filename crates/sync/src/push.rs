//! `push`: publish a local folder as one commit on a Hub branch, sending only what the remote
//! lacks (`docs/architecture.md` §4).
//!
//! 1. Walk and hash the folder on every core; resolve the branch head and list its tree.
//! 2. Diff against the tree ([`plan::diff`]); ask preupload how each changed file travels.
//! 3. For Xet (LFS-mode) files: learn which chunks the remote holds (the local store's index
//!    confirmed by `HEAD`, then global dedup), pack the others into new xorbs ([`plan::pack`]),
//!    send the xorbs the CAS lacks, then the shard(s) with verification and sha256 entries.
//! 4. One commit whose `parentCommit` is the head seen in step 1: a branch that moved meanwhile
//!    fails the push, it is never overwritten. Nothing changed: no commit.
//!
//! The order means the remote never receives a commit naming data it lacks, and every step is
//! idempotent, so a re-run after a kill sends only what is still missing.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::SyncError;
use super::dedup::{CasSession, remote_chunks};
use super::fetch::blocking;
use super::plan::{self, CommitOp, Diff, LocalFile, PathFilter};
use super::scan::{self, FoundFile};
use super::shard_cache::ShardCache;
use super::upload::{self, Source, XorbTarget};
use tessera_hub::{HubClient, HubError};
use tessera_protocol::{
    CommitId, GitOid, LfsObject, PreuploadFile, PreuploadResult, RepoId, RepoType, Revision,
    TreeFile, UploadMode,
};
use tessera_store::Store;

/// What to push where.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The folder.
    pub dir: PathBuf,
    /// Repo type.
    pub repo_type: RepoType,
    /// `org/name`.
    pub repo_id: RepoId,
    /// Target branch (or `refs/pr/N`).
    pub branch: Revision,
    /// Create the repo (or branch) when absent.
    pub create: bool,
    /// Make a created repo private.
    pub private: bool,
    /// Commit title.
    pub message: Option<String>,
    /// Tag to put on the resulting commit.
    pub tag: Option<String>,
    /// Also delete remote files absent from the folder.
    pub delete: bool,
    /// Only paths matching one of these globs (all when empty).
    pub include: Vec<String>,
    /// Never paths matching one of these globs.
    pub exclude: Vec<String>,
    /// Compute everything, send nothing.
    pub dry_run: bool,
    /// Commit as a new pull request against the branch instead of on it.
    pub create_pr: bool,
    /// SDK of a Space created by `create` (the Hub requires one).
    pub space_sdk: Option<String>,
}

/// Seconds spent per phase.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PushTimings {
    /// Chunking and hashing the folder.
    pub hash: f64,
    /// Remote listing, preupload and dedup queries.
    pub plan: f64,
    /// Building and sending xorbs.
    pub xorbs: f64,
    /// Sending the shard(s).
    pub shard: f64,
    /// The commit (and tag).
    pub commit: f64,
}

/// The `--json` summary of a push.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushReport {
    /// `org/name`.
    pub repo: RepoId,
    /// The branch.
    pub revision: Revision,
    /// The branch head after the push (the new commit when one was made).
    pub commit: Option<CommitId>,
    /// URL of the new commit.
    pub commit_url: Option<String>,
    /// URL of the pull request the push opened (`--create-pr`).
    pub pr_url: Option<String>,
    /// Its revision, `refs/pr/{n}`.
    pub pr_revision: Option<Revision>,
    /// Whether a commit was made.
    pub pushed: bool,
    /// Files new to the branch.
    pub files_added: usize,
    /// Files whose content changed.
    pub files_updated: usize,
    /// Files deleted.
    pub files_deleted: usize,
    /// Bytes of the folder's files.
    pub bytes_total: u64,
    /// Xorb bytes and inline file bytes sent (or that a dry run would send).
    pub bytes_uploaded: u64,
    /// Chunks of the folder's files.
    pub chunks_total: u64,
    /// Chunks sent in new xorbs.
    pub chunks_new: u64,
    /// A dry run: nothing was sent.
    pub dry_run: bool,
    /// Xorbs sent.
    pub xorbs_uploaded: usize,
    /// Bytes of the shard(s), not counted in `bytes_uploaded`.
    pub shard_bytes: u64,
    /// Global-dedup queries asked.
    pub dedup_queries: usize,
    /// How large files travelled: `xet` (chunks in xorbs), or `lfs` (whole objects, for a hub
    /// without Xet storage); empty when no large file changed.
    pub transfer: &'static str,
    /// LFS requests that carried object bytes (single `PUT`s and multipart parts).
    pub lfs_parts: usize,
    /// Wall time.
    pub seconds: f64,
    /// Where the time went.
    pub timings: PushTimings,
}

impl PushReport {
    /// The report of a push to `opts`' branch before anything happened; the run fills it in.
    fn new(opts: &PushOptions) -> Self {
        Self {
            repo: opts.repo_id.clone(),
            revision: opts.branch.clone(),
            commit: None,
            commit_url: None,
            pr_url: None,
            pr_revision: None,
            pushed: false,
            files_added: 0,
            files_updated: 0,
            files_deleted: 0,
            bytes_total: 0,
            bytes_uploaded: 0,
            chunks_total: 0,
            chunks_new: 0,
            dry_run: opts.dry_run,
            xorbs_uploaded: 0,
            shard_bytes: 0,
            dedup_queries: 0,
            transfer: "",
            lfs_parts: 0,
            seconds: 0.0,
            timings: PushTimings::default(),
        }
    }
}

/// Progress callbacks (the CLI draws bars; tests ignore them).
pub trait PushProgress: Send + Sync {
    /// A phase starts (`hashing`, `uploading`) over this many bytes.
    fn phase(&self, what: &'static str, bytes: u64);
    /// `n` more bytes of the phase are done.
    fn advance(&self, n: u64);
}

impl PushProgress for () {
    fn phase(&self, _: &'static str, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// The branch as first seen.
enum Head {
    Branch(CommitId),
    NoRepo,
    NoBranch,
}

/// Pushes `opts.dir` to `opts.branch` of `opts.repo_id`.
pub async fn push(
    hub: &HubClient,
    store: &Store,
    opts: &PushOptions,
    progress: &dyn PushProgress,
) -> Result<PushReport, SyncError> {
    let started = Instant::now();
    let filter = PathFilter::new(&opts.include, &opts.exclude)
        .map_err(|e| SyncError::Usage(format!("bad --include/--exclude pattern: {e}")))?;
    let found = scan::walk(&opts.dir, &filter)?;
    let head = probe(hub, opts).await?;
    let clock = Instant::now();
    let local = hash_all(&found, progress).await?;
    let mut p = Push {
        hub,
        store,
        opts,
        progress,
        found,
        local,
        report: PushReport::new(opts),
        query_rev: None,
    };
    p.report.timings.hash = clock.elapsed().as_secs_f64();
    p.run(head, &filter).await?;
    p.report.seconds = started.elapsed().as_secs_f64();
    Ok(p.report)
}

/// Checks the repo and branch before any work, so a wrong name or token fails fast.
async fn probe(hub: &HubClient, opts: &PushOptions) -> Result<Head, SyncError> {
    let id = &opts.repo_id;
    match hub.revision_commit(opts.repo_type, id, &opts.branch).await {
        Ok(c) => Ok(Head::Branch(c)),
        Err(HubError::RepoNotFound(_)) if opts.create => Ok(Head::NoRepo),
        Err(HubError::RevisionNotFound { .. }) if opts.create => Ok(Head::NoBranch),
        Err(HubError::RepoNotFound(_)) => Err(SyncError::Usage(format!(
            "repository {id} not found (or not visible with this token); pass --create to create it"
        ))),
        Err(HubError::RevisionNotFound { .. }) => Err(SyncError::Usage(format!(
            "branch {} does not exist in {id}; pass --create to create it from the default branch",
            opts.branch
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Hashes the files off the runtime, reporting progress as they finish.
async fn hash_all(
    found: &[FoundFile],
    progress: &dyn PushProgress,
) -> Result<Vec<LocalFile>, SyncError> {
    progress.phase("hashing", found.iter().map(|f| f.size).sum());
    let done = Arc::new(AtomicU64::new(0));
    let (files, counter) = (found.to_vec(), done.clone());
    let mut task = tokio::task::spawn_blocking(move || {
        scan::hash_files(&files, &|n| {
            counter.fetch_add(n, Ordering::Relaxed);
        })
    });
    let mut shown = 0;
    loop {
        tokio::select! {
            r = &mut task => {
                progress.advance(done.load(Ordering::Relaxed).saturating_sub(shown));
                return r.map_err(|e| SyncError::Internal(e.to_string()))?;
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                let now = done.load(Ordering::Relaxed);
                progress.advance(now.saturating_sub(shown));
                shown = now;
            }
        }
    }
}

/// One push in progress.
struct Push<'a> {
    hub: &'a HubClient,
    store: &'a Store,
    opts: &'a PushOptions,
    progress: &'a dyn PushProgress,
    found: Vec<FoundFile>,
    local: Vec<LocalFile>,
    report: PushReport,
    /// The revision preupload and CAS reads use: the branch, or the default head when a dry
    /// run targets a branch that does not exist yet; `None` when the repo does not exist.
    query_rev: Option<Revision>,
}

impl Push<'_> {
    async fn run(&mut self, head: Head, filter: &PathFilter) -> Result<(), SyncError> {
        let clock = Instant::now();
        let head = self.establish(head).await?;
        let tree = match &head {
            Some(c) => self.hub.list_tree(self.opts.repo_type, &self.opts.repo_id, c).await?.files,
            None => Vec::new(),
        };
        let mut diff = plan::diff(&self.local, &tree, self.opts.delete, |p| filter.allows(p));
        let modes = self.upload_modes(&mut diff).await?;
        self.start_report(&diff, head.clone());
        if diff.is_empty() {
            self.report.timings.plan = clock.elapsed().as_secs_f64();
            return self.tag().await;
        }
        let lfs: Vec<usize> =
            diff.changed().into_iter().filter(|i| modes.get(i) == Some(&UploadMode::Lfs)).collect();
        self.send_data(&lfs, clock).await?;
        let clock = Instant::now();
        self.commit(head.as_ref(), &diff, &modes).await?;
        self.tag().await?;
        self.report.timings.commit = clock.elapsed().as_secs_f64();
        Ok(())
    }

    /// Creates the repo or branch when needed (not in a dry run); returns the head to build on.
    async fn establish(&mut self, head: Head) -> Result<Option<CommitId>, SyncError> {
        let opts = self.opts;
        let (t, id) = (opts.repo_type, &opts.repo_id);
        let commit = match head {
            Head::Branch(c) => Some(c),
            Head::NoRepo if opts.dry_run => None,
            Head::NoBranch if opts.dry_run => {
                let c = self.hub.repo_head(t, id).await?;
                self.query_rev = Some(c.clone().into());
                return Ok(Some(c));
            }
            Head::NoRepo if t == RepoType::Space && opts.space_sdk.is_none() => {
                return Err(SyncError::Usage(format!(
                    "creating the Space {id} needs its SDK: pass --space-sdk (one of {})",
                    tessera_protocol::SPACE_SDKS.join(", ")
                )));
            }
            Head::NoRepo => {
                self.hub.create_repo(t, id, opts.private, opts.space_sdk.as_deref()).await?;
                Some(self.branch_head_creating().await?)
            }
            Head::NoBranch => Some(self.branch_head_creating().await?),
        };
        if commit.is_some() {
            self.query_rev = Some(opts.branch.clone());
        }
        Ok(commit)
    }

    /// The branch head, creating the branch from the default branch when it is missing.
    async fn branch_head_creating(&self) -> Result<CommitId, SyncError> {
        let (t, id, branch) = (self.opts.repo_type, &self.opts.repo_id, &self.opts.branch);
        match self.hub.revision_commit(t, id, branch).await {
            Err(HubError::RevisionNotFound { .. }) => {
                self.hub.create_branch(t, id, branch, None).await?;
                Ok(self.hub.revision_commit(t, id, branch).await?)
            }
            other => Ok(other?),
        }
    }

    /// Upload mode of each changed file; drops files preupload says to ignore or already has.
    async fn upload_modes(&self, diff: &mut Diff) -> Result<HashMap<usize, UploadMode>, SyncError> {
        let changed = diff.changed();
        let Some(rev) = &self.query_rev else {
            return Ok(changed.iter().map(|i| (*i, guess(&self.local[*i]))).collect());
        };
        if changed.is_empty() {
            return Ok(HashMap::new());
        }
        let asked: Vec<PreuploadFile> =
            changed.iter().map(|i| preupload_file(&self.local[*i])).collect();
        let answers =
            self.hub.preupload(self.opts.repo_type, &self.opts.repo_id, rev, &asked).await?;
        let by_path: HashMap<&str, &PreuploadResult> =
            answers.iter().map(|a| (a.path.as_str(), a)).collect();
        let mut modes = HashMap::new();
        for i in changed {
            let f = &self.local[i];
            let a = by_path.get(f.path.as_str()).ok_or_else(|| {
                SyncError::Protocol(format!("preupload did not answer for {}", f.path))
            })?;
            let mode = if f.size == 0 { UploadMode::Regular } else { a.upload_mode };
            if !a.should_ignore && !already_there(f, mode, a.oid.as_ref()) {
                modes.insert(i, mode);
            }
        }
        diff.added.retain(|i| modes.contains_key(i));
        diff.updated.retain(|i| modes.contains_key(i));
        Ok(modes)
    }

    fn start_report(&mut self, diff: &Diff, head: Option<CommitId>) {
        let r = &mut self.report;
        r.commit = head;
        r.files_added = diff.added.len();
        r.files_updated = diff.updated.len();
        r.files_deleted = diff.deleted.len();
        r.bytes_total = self.local.iter().map(|f| f.size).sum();
        r.chunks_total = self.local.iter().map(|f| f.chunks.len() as u64).sum();
    }

    /// Sends the chunks of the Xet files the remote lacks, then the shard(s).
    async fn send_data(&mut self, lfs: &[usize], clock: Instant) -> Result<(), SyncError> {
        if lfs.is_empty() {
            self.report.timings.plan = clock.elapsed().as_secs_f64();
            return Ok(());
        }
        let cas = self.cas_session();
        let cache = match &cas {
            Some(c) => match c.auth().await {
                Ok(auth) => Some(ShardCache::new(self.store.home(), &auth.url)),
                Err(e @ SyncError::NoXet { .. }) => {
                    tracing::info!(error = %e, "uploading through LFS");
                    return self.send_lfs(lfs, clock).await;
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        self.report.transfer = "xet";
        let files: Vec<&LocalFile> = lfs.iter().map(|i| &self.local[*i]).collect();
        let (known, queries) = match &cas {
            Some(c) => remote_chunks(c, self.store, cache.as_ref(), &files).await?,
            None => (HashMap::new(), 0),
        };
        let lists: Vec<&[(tessera_xet::hash::ChunkHash, u32)]> =
            files.iter().map(|f| &f.chunks[..]).collect();
        let packing = plan::pack(&lists, &known);
        self.report.dedup_queries = queries;
        self.report.timings.plan = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let sent = self
            .send_xorbs(cas.as_ref(), cache.as_ref(), lfs, packing.xorbs.clone(), packing.new_bytes)
            .await?;
        self.report.xorbs_uploaded = sent.sent;
        self.report.bytes_uploaded += sent.bytes;
        self.report.chunks_new = sent.chunks as u64;
        self.report.timings.xorbs = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        self.report.shard_bytes =
            self.send_shards(cas.as_ref(), &files, &packing.terms, sent).await?;
        self.report.timings.shard = clock.elapsed().as_secs_f64();
        Ok(())
    }

    /// The large files as whole LFS objects, for a hub without Xet storage (as
    /// `huggingface_hub` falls back): one batch request per 256 objects, then each object the
    /// remote lacks as one `PUT` or in parts. `bytes_uploaded` counts the object bytes sent; a
    /// dry run counts every object, as it cannot ask.
    async fn send_lfs(&mut self, lfs: &[usize], clock: Instant) -> Result<(), SyncError> {
        self.report.transfer = "lfs";
        self.report.timings.plan = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let objects: Vec<LfsObject> = lfs
            .iter()
            .map(|i| LfsObject { oid: self.local[*i].sha256.into(), size: self.local[*i].size })
            .collect();
        if self.opts.dry_run {
            self.report.bytes_uploaded += objects.iter().map(|o| o.size).sum::<u64>();
            return Ok(());
        }
        let (t, id) = (self.opts.repo_type, &self.opts.repo_id);
        let rev = (!self.opts.create_pr).then_some(&self.opts.branch);
        let answers = self.hub.lfs_batch_upload(t, id, rev, &objects).await?;
        let by_oid: HashMap<&GitOid, &tessera_protocol::LfsBatchObject> =
            answers.iter().map(|a| (&a.oid, a)).collect();
        self.progress.phase("uploading", objects.iter().map(|o| o.size).sum());
        for (i, o) in lfs.iter().zip(&objects) {
            let answer = by_oid.get(&o.oid).ok_or_else(|| {
                SyncError::Protocol(format!(
                    "the LFS batch did not answer for {}",
                    self.local[*i].path
                ))
            })?;
            let parts = self.hub.lfs_upload(answer, &self.found[*i].abs).await?;
            if parts > 0 {
                self.report.bytes_uploaded += o.size;
                self.report.lfs_parts += parts;
            }
            self.progress.advance(o.size);
        }
        self.report.timings.xorbs = clock.elapsed().as_secs_f64();
        Ok(())
    }

    /// CAS access: a write token for the branch, or in a dry run a read token for the revision
    /// planned against; none when the repo does not exist yet.
    fn cas_session(&self) -> Option<CasSession> {
        let rev = self.query_rev.as_ref()?;
        let (rev, write) = if self.opts.dry_run { (rev, false) } else { (&self.opts.branch, true) };
        let session =
            CasSession::new(self.hub.clone(), self.opts.repo_type, &self.opts.repo_id, rev, write);
        Some(session.for_pull_request(write && self.opts.create_pr))
    }

    /// The files' shard entries and the new xorbs' chunk lists, as one or more shards.
    async fn send_shards(
        &self,
        cas: Option<&CasSession>,
        files: &[&LocalFile],
        terms: &[Vec<plan::PlannedTerm>],
        sent: upload::SentXorbs,
    ) -> Result<u64, SyncError> {
        let shard_files = files
            .iter()
            .zip(terms)
            .map(|(f, t)| {
                plan::shard_file(f, t, &sent.hashes)
                    .ok_or_else(|| SyncError::Internal(format!("unresolved xorb in {}", f.path)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shards = plan::split_shards(shard_files, sent.entries, plan::SHARD_TARGET_BYTES);
        upload::send_shards(cas, &shards, self.opts.dry_run).await
    }

    async fn send_xorbs(
        &self,
        cas: Option<&CasSession>,
        cache: Option<&ShardCache>,
        lfs: &[usize],
        plan: Vec<Vec<plan::NewChunk>>,
        new_bytes: u64,
    ) -> Result<upload::SentXorbs, SyncError> {
        self.progress.phase("uploading", new_bytes);
        let sources = lfs
            .iter()
            .map(|i| Source {
                abs: self.found[*i].abs.clone(),
                chunks: self.local[*i].chunks.clone(),
            })
            .collect();
        let first: HashSet<_> =
            lfs.iter().filter_map(|i| self.local[*i].chunks.first().map(|c| c.0)).collect();
        let progress = self.progress;
        let advance = |n: u64| progress.advance(n);
        let target = XorbTarget { cas, dry_run: self.opts.dry_run, cache, advance: &advance };
        upload::send_xorbs(&target, plan, sources, first).await
    }

    /// The commit, based on `head`; a dry run only counts the inline bytes.
    async fn commit(
        &mut self,
        head: Option<&CommitId>,
        diff: &Diff,
        modes: &HashMap<usize, UploadMode>,
    ) -> Result<(), SyncError> {
        let mut ops = Vec::new();
        for i in diff.changed() {
            let f = &self.local[i];
            if modes.get(&i) == Some(&UploadMode::Lfs) {
                ops.push(CommitOp::Lfs { path: f.path.clone(), sha256: f.sha256, size: f.size });
                continue;
            }
            self.report.bytes_uploaded += f.size;
            let content = if self.opts.dry_run { Vec::new() } else { self.read_inline(i).await? };
            ops.push(CommitOp::Inline { path: f.path.clone(), content });
        }
        ops.extend(diff.deleted.iter().map(|p| CommitOp::Delete { path: p.clone() }));
        if self.opts.dry_run {
            return Ok(());
        }
        let head = head.ok_or_else(|| SyncError::Internal("no head to commit on".into()))?;
        let summary = self.opts.message.clone().unwrap_or_else(|| default_message(diff));
        let lines = plan::commit_lines(&summary, "", Some(head.as_str()), ops);
        let (t, id) = (self.opts.repo_type, &self.opts.repo_id);
        match self.hub.commit(t, id, &self.opts.branch, &lines, self.opts.create_pr).await {
            Ok(r) => {
                self.committed(r.commit_oid, r.commit_url);
                self.opened(r.pull_request_url)?;
            }
            Err(HubError::Conflict { .. }) => self.after_conflict(head, diff).await?,
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    async fn read_inline(&self, i: usize) -> Result<Vec<u8>, SyncError> {
        let (found, local) = (self.found[i].clone(), self.local[i].clone());
        blocking(move || scan::read_unchanged(&found, &local)).await
    }

    fn committed(&mut self, commit: CommitId, url: String) {
        self.report.commit = Some(commit);
        self.report.commit_url = Some(url);
        self.report.pushed = true;
    }

    /// Records the pull request a `--create-pr` commit opened; its revision comes from the URL
    /// (`.../discussions/{n}` is `refs/pr/{n}`), as `huggingface_hub` derives it.
    fn opened(&mut self, url: Option<String>) -> Result<(), SyncError> {
        if !self.opts.create_pr {
            return Ok(());
        }
        let url = url.ok_or_else(|| {
            SyncError::Protocol("the commit opened no pull request (no pullRequestUrl)".into())
        })?;
        let num = url.rsplit_once("/discussions/").and_then(|(_, n)| n.parse::<u64>().ok());
        let num = num.ok_or_else(|| {
            SyncError::Protocol(format!("pull request URL {url:?} has no discussion number"))
        })?;
        let rev = Revision::parse(&format!("refs/pr/{num}"));
        self.report.pr_revision = Some(rev.map_err(|e| SyncError::Protocol(e.to_string()))?);
        self.report.pr_url = Some(url);
        Ok(())
    }

    /// The commit was refused because the branch moved. If the new head already holds exactly
    /// this push (a retried commit that had gone through), that is success; otherwise an error.
    async fn after_conflict(&mut self, base: &CommitId, diff: &Diff) -> Result<(), SyncError> {
        let (t, id, branch) = (self.opts.repo_type, &self.opts.repo_id, &self.opts.branch);
        let now = self.hub.revision_commit(t, id, branch).await?;
        let tree = self.hub.list_tree(t, id, &now).await?.files;
        if now != *base && reflects(&tree, &self.local, diff) {
            let url = format!("{}/{}{id}/commit/{now}", self.hub.endpoint(), t.url_prefix());
            self.committed(now, url);
            return Ok(());
        }
        Err(SyncError::BranchMoved {
            repo: id.clone(),
            branch: branch.clone(),
            base: base.clone(),
            now,
        })
    }

    /// Tags the resulting commit (not in a dry run).
    async fn tag(&mut self) -> Result<(), SyncError> {
        let (Some(tag), Some(commit), false) =
            (&self.opts.tag, &self.report.commit, self.opts.dry_run)
        else {
            return Ok(());
        };
        match self.hub.create_tag(self.opts.repo_type, &self.opts.repo_id, commit, tag).await {
            Err(HubError::Conflict { .. }) => {
                Err(SyncError::Usage(format!("tag {tag} already exists in {}", self.opts.repo_id)))
            }
            other => Ok(other?),
        }
    }
}

fn guess(f: &LocalFile) -> UploadMode {
    plan::guess_upload_mode(&f.path, f.size, &f.sample)
}

fn preupload_file(f: &LocalFile) -> PreuploadFile {
    use base64::Engine;
    PreuploadFile {
        path: f.path.clone(),
        sample: Some(base64::engine::general_purpose::STANDARD.encode(&f.sample)),
        size: f.size,
    }
}

/// Whether preupload's `oid` says the remote already has this content at this path.
fn already_there(f: &LocalFile, mode: UploadMode, oid: Option<&GitOid>) -> bool {
    let Some(oid) = oid else { return false };
    match mode {
        UploadMode::Lfs => *oid == GitOid::from(f.sha256),
        UploadMode::Regular => f.git_oid.as_ref() == Some(oid),
    }
}

/// Whether a tree shows every change of the push.
fn reflects(tree: &[TreeFile], local: &[LocalFile], diff: &Diff) -> bool {
    let by_path: HashMap<&str, &TreeFile> = tree.iter().map(|e| (e.path.as_str(), e)).collect();
    let changed_ok = diff.changed().iter().all(|i| {
        by_path.get(local[*i].path.as_str()).is_some_and(|e| plan::same_content(&local[*i], e))
    });
    changed_ok && diff.deleted.iter().all(|p| !by_path.contains_key(p.as_str()))
}

fn default_message(diff: &Diff) -> String {
    let n = diff.added.len() + diff.updated.len();
    match (n, diff.deleted.len()) {
        (n, 0) => format!("Upload {n} files with tessera"),
        (0, d) => format!("Delete {d} files with tessera"),
        (n, d) => format!("Upload {n} files and delete {d} with tessera"),
    }
}
