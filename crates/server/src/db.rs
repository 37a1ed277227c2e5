//! Repos, refs, commits and trees of the hub server, kept in the server's sections of the
//! store's namespace for it (`storage.rs`; keys the server owns, opaque to the store).
//! Synchronous: handlers call it through `spawn_blocking`.
//!
//! Layout (keys are UTF-8; `\0` separates parts, which no id or ref name can contain):
//!
//! | section | key | value |
//! |---|---|---|
//! | `REPOS` | `{type}/{ns}/{name}` | [`RepoRecord`] JSON |
//! | `REFS` | `{repo}\0refs/heads/{b}` or `\0refs/tags/{t}` | commit id |
//! | `COMMITS` | `{repo}\0{commit}` | [`CommitRecord`] JSON |
//! | `TREES` | `t\0{tree id}` ([`tree_key`]) | `Vec<`[`Entry`]`>` JSON, sorted by path (rooting its files) |
//! | `TREES` | `f\0{repo}\0{file hash}` | empty: the file may be read with this repo's CAS token |
//! | `REFS` | `{repo}\0refs/pr/{n}` | head commit of pull request `n` |
//! | `COMMITS` | `{repo}\0discussion\0{n:010}` | [`DiscussionRecord`] JSON (never a 40-hex commit key) |
//!
//! A commit writes its tree, its record, its file index entries and the branch update in ONE
//! [`ServerBatch`], after the file data itself is durable in the store; a crash therefore leaves each
//! branch at its last complete commit. Writers that read-modify-write refs hold one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha1::Digest;

use super::error::{ApiError, ApiResult};
use super::storage::{COMMITS, Guard, HubStorage, REFS, REPOS, TREES, WriteError};
use tessera_protocol::{CommitId, RepoId, RepoType, sha1_hex};
use tessera_store::{ServerBatch, Store};
use tessera_xet::hash::{FileHash, Sha256, XorbHash};

/// Key of a repo in every table: `{type}/{ns}/{name}`. Serialized as that text (in CAS
/// tokens, whose MAC vouches for it, as [`RepoKey::from_trusted`] says).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepoKey(String);

impl RepoKey {
    /// The key of a repo.
    pub fn new(repo_type: RepoType, id: &RepoId) -> Self {
        Self(format!("{}/{}", repo_type.as_str(), id))
    }

    /// The key text, as carried in CAS tokens.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a key from its text (from a verified token).
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    fn sub(&self, rest: &str) -> Vec<u8> {
        format!("{}\0{rest}", self.0).into_bytes()
    }
}

/// A repo.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepoRecord {
    /// `model`, `dataset` or `space` in the stored JSON.
    pub repo_type: RepoType,
    /// `ns/name` in the stored JSON.
    pub id: RepoId,
    /// Visible only to members.
    pub private: bool,
    /// User who created it.
    pub owner: String,
    /// Creation time, unix seconds.
    pub created: u64,
    /// Space SDK.
    #[serde(default)]
    pub sdk: Option<String>,
}

impl RepoRecord {
    /// The namespace part of the id.
    pub fn namespace(&self) -> &str {
        self.id.namespace()
    }
}

/// One file of a tree: the store's tree entry, so hub trees and client trees are one type and
/// the store knows which files a hub commit keeps alive.
pub use tessera_store::TreeEntry as Entry;

/// A commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommitRecord {
    /// Its id (40 hex in the stored JSON).
    pub id: CommitId,
    /// Tree id.
    pub tree: String,
    /// Parent commit ids (none for the first).
    pub parents: Vec<CommitId>,
    /// Author user name.
    pub author: String,
    /// Unix seconds.
    pub date: u64,
    /// Summary.
    pub title: String,
    /// Description.
    pub message: String,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The branch head after the call.
    pub commit: CommitId,
    /// False when the tree did not change (the head is returned as is).
    pub created: bool,
}

/// Metadata of a new commit.
#[derive(Debug, Clone)]
pub struct CommitMeta {
    /// Author user name.
    pub author: String,
    /// Unix seconds.
    pub date: u64,
    /// Summary.
    pub title: String,
    /// Description.
    pub message: String,
}

/// A discussion or pull request. A pull request's commits live on `refs/pr/{num}`; merging
/// moves its base branch (fast-forward when the base did not move, else a merge of the trees).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiscussionRecord {
    /// Number, from 1, shared by discussions and pull requests as on the Hub.
    pub num: u64,
    /// Title.
    pub title: String,
    /// First comment.
    pub description: String,
    /// Who opened it.
    pub author: String,
    /// Unix seconds.
    pub created: u64,
    /// A pull request.
    pub is_pr: bool,
    /// `draft`, `open`, `closed` or `merged`.
    pub status: String,
    /// Full ref of the target branch.
    pub base: String,
    /// Head of the target branch when the pull request was opened: the merge's common base.
    pub base_commit: Option<CommitId>,
    /// The commit the merge made or fast-forwarded to.
    pub merge_commit: Option<CommitId>,
}

impl DiscussionRecord {
    /// Whether it may still receive commits and be merged.
    pub fn is_open(&self) -> bool {
        self.status == "open" || self.status == "draft"
    }
}

/// The hub's repository database over a [`HubStorage`] (the local store or a bucket).
pub struct HubDb {
    store: Store,
    storage: Arc<dyn HubStorage>,
    write_lock: Mutex<()>,
    /// Parsed trees by id (immutable: ids are content hashes).
    trees: Mutex<HashMap<String, Arc<Vec<Entry>>>>,
}

/// Parsed trees kept in memory.
const TREE_CACHE: usize = 64;

/// Full ref name of a branch.
pub fn branch_ref(name: &str) -> String {
    format!("refs/heads/{name}")
}

/// Full ref name of a tag.
pub fn tag_ref(name: &str) -> String {
    format!("refs/tags/{name}")
}

/// Full ref name of a pull request.
pub fn pr_ref(num: u64) -> String {
    format!("refs/pr/{num}")
}

fn discussion_key(key: &RepoKey, num: u64) -> Vec<u8> {
    key.sub(&format!("discussion\0{num:010}"))
}

fn to_json<T: Serialize>(v: &T) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(ApiError::internal)
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(ApiError::internal)
}

impl HubDb {
    /// A database over a store, records in its `Hub*` tables (one server).
    pub fn new(store: Store) -> Self {
        let storage = Arc::new(super::storage::LocalStorage::new(store.clone()));
        Self::with_storage(store, storage)
    }

    /// A database whose records live in `storage`; `store` holds (or caches) the file data.
    pub fn with_storage(store: Store, storage: Arc<dyn HubStorage>) -> Self {
        Self { store, storage, write_lock: Mutex::new(()), trees: Mutex::new(HashMap::new()) }
    }

    /// Where the records live.
    pub fn storage(&self) -> &dyn HubStorage {
        self.storage.as_ref()
    }

    /// The repo record, if the repo exists.
    pub fn repo(&self, key: &RepoKey) -> ApiResult<Option<RepoRecord>> {
        match self.storage.get(REPOS, key.0.as_bytes())? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        }
    }

    /// The commit a full ref name points at.
    pub fn get_ref(&self, key: &RepoKey, full_ref: &str) -> ApiResult<Option<CommitId>> {
        self.storage.get(REFS, &key.sub(full_ref))?.map(|v| stored_commit(&v)).transpose()
    }

    /// Resolves a branch, tag, `refs/...` name or full commit id to a commit id.
    pub fn resolve(&self, key: &RepoKey, rev: &str) -> ApiResult<Option<CommitId>> {
        if rev.starts_with("refs/") {
            return self.get_ref(key, rev);
        }
        if let Some(c) = self.get_ref(key, &branch_ref(rev))? {
            return Ok(Some(c));
        }
        if let Some(c) = self.get_ref(key, &tag_ref(rev))? {
            return Ok(Some(c));
        }
        match CommitId::parse(rev) {
            Ok(c) if self.storage.get(COMMITS, &key.sub(rev))?.is_some() => Ok(Some(c)),
            _ => Ok(None),
        }
    }

    /// A commit of the repo.
    pub fn commit(&self, key: &RepoKey, id: &str) -> ApiResult<Option<CommitRecord>> {
        match self.storage.get(COMMITS, &key.sub(id))? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        }
    }

    /// The files of a tree, sorted by path.
    pub fn tree(&self, tree_id: &str) -> ApiResult<Arc<Vec<Entry>>> {
        if let Some(t) = self.trees.lock().get(tree_id) {
            return Ok(t.clone());
        }
        let tree: Arc<Vec<Entry>> = match self.storage.get(TREES, &tree_key(tree_id))? {
            Some(v) => Arc::new(from_json(&v)?),
            None => return Err(ApiError::internal(format!("tree {tree_id} missing"))),
        };
        let mut cache = self.trees.lock();
        if cache.len() >= TREE_CACHE {
            cache.clear();
        }
        cache.insert(tree_id.to_owned(), tree.clone());
        Ok(tree)
    }

    /// The files of a commit, sorted by path.
    pub fn commit_tree(
        &self,
        key: &RepoKey,
        commit: &CommitId,
    ) -> ApiResult<(CommitRecord, Arc<Vec<Entry>>)> {
        let record = self
            .commit(key, commit.as_str())?
            .ok_or_else(|| ApiError::internal(format!("commit {commit} missing")))?;
        let tree = self.tree(&record.tree)?;
        Ok((record, tree))
    }

    /// All refs of the repo: (full name, commit).
    pub fn refs(&self, key: &RepoKey) -> ApiResult<Vec<(String, CommitId)>> {
        let prefix = key.sub("");
        self.storage
            .scan_prefix(REFS, &prefix)?
            .into_iter()
            .map(|(k, v)| {
                let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                Ok((name, stored_commit(&v)?))
            })
            .collect()
    }

    /// Up to `limit` commits reachable from `from` (first parents), newest first, skipping `skip`.
    pub fn history(
        &self,
        key: &RepoKey,
        from: &CommitId,
        skip: usize,
        limit: usize,
    ) -> ApiResult<Vec<CommitRecord>> {
        let mut out = Vec::new();
        let mut next = Some(from.clone());
        let mut seen = 0usize;
        while let Some(id) = next {
            let Some(c) = self.commit(key, id.as_str())? else { break };
            next = c.parents.first().cloned();
            if seen >= skip {
                out.push(c);
                if out.len() >= limit {
                    break;
                }
            }
            seen += 1;
        }
        Ok(out)
    }

    /// True if the file was committed to (or uploaded for) this repo.
    pub fn file_in_repo(&self, key: &RepoKey, file: &FileHash) -> ApiResult<bool> {
        Ok(self.storage.get(TREES, &grant_key(key, Some(file)))?.is_some())
    }

    /// The stored file with this SHA-256 (and size, when given), if it belongs to the repo:
    /// committed to it, or uploaded for it through LFS or Xet. Objects of other repos do not
    /// count, so knowing a digest never grants its content.
    pub fn repo_object(
        &self,
        key: &RepoKey,
        sha256: &Sha256,
        size: Option<u64>,
    ) -> ApiResult<Option<tessera_store::FileRecord>> {
        let Some(file) = self.file_by_sha256(sha256)? else { return Ok(None) };
        if !self.file_in_repo(key, &file)? {
            return Ok(None);
        }
        Ok(self.local_file(&file)?.filter(|r| size.is_none_or(|n| n == r.size)))
    }

    /// A file's record from the local store, filled from the storage on a miss (a replica's
    /// store is a cache of the bucket).
    pub fn local_file(&self, file: &FileHash) -> ApiResult<Option<tessera_store::FileRecord>> {
        if let Some(r) = self.store.file(file)? {
            return Ok(Some(r));
        }
        if !self.storage.fill_file(&self.store, file)? {
            return Ok(None);
        }
        Ok(self.store.file(file)?)
    }

    /// A file's record, local or the storage's; its bytes are not fetched (a reconstruction
    /// only needs the record and the xorbs' chunk tables).
    pub fn file_record(&self, file: &FileHash) -> ApiResult<Option<tessera_store::FileRecord>> {
        match self.store.file(file)? {
            Some(r) => Ok(Some(r)),
            None => self.storage.file_record(file),
        }
    }

    /// A xorb's complete chunk table, local or the storage's.
    pub fn xorb_table(&self, xorb: &XorbHash) -> ApiResult<Option<tessera_store::XorbMeta>> {
        match self.store.xorb_meta(xorb)? {
            Some(m) if m.is_complete() => Ok(Some(m)),
            local => Ok(self.storage.xorb_table(&self.store, xorb)?.or(local)),
        }
    }

    /// Makes a whole xorb local (from the storage when missing), before its bytes are served.
    pub fn local_xorb(&self, xorb: &XorbHash) -> ApiResult<()> {
        if !self.store.xorb_meta(xorb)?.is_some_and(|m| m.is_complete()) {
            self.storage.fill_xorb(&self.store, xorb)?;
        }
        Ok(())
    }

    /// The stored file with this SHA-256, locally or in the storage.
    pub fn file_by_sha256(&self, sha256: &Sha256) -> ApiResult<Option<FileHash>> {
        match self.store.file_by_sha256(sha256)? {
            Some(f) => Ok(Some(f)),
            None => self.storage.file_by_sha256(sha256),
        }
    }

    /// Records that files may be read with this repo's CAS tokens.
    pub fn register_files(&self, key: &RepoKey, files: &[FileHash]) -> ApiResult<()> {
        let mut batch = ServerBatch::default();
        for f in files {
            batch.put(TREES, grant_key(key, Some(f)), Vec::new());
        }
        self.storage.write(batch, Vec::new()).map_err(api_error)
    }

    /// Creates a repo with an empty first commit on `main`. `Ok(false)` if it already exists.
    pub fn create_repo(&self, key: &RepoKey, record: &RepoRecord) -> ApiResult<bool> {
        let _guard = self.write_lock.lock();
        if self.repo(key)?.is_some() {
            return Ok(false);
        }
        let mut batch = ServerBatch::default();
        let meta = CommitMeta {
            author: record.owner.clone(),
            date: record.created,
            title: "initial commit".into(),
            message: String::new(),
        };
        let commit = write_commit(&mut batch, key, &[], None, &meta)?;
        batch.put(REFS, key.sub(&branch_ref("main")), commit.as_str().as_bytes());
        batch.put(REPOS, key.0.as_bytes(), to_json(record)?);
        // Another replica creating the same repo at once: exactly one wins.
        let guards = vec![Guard::absent(REPOS, key.0.as_bytes())];
        match self.storage.write(batch, guards) {
            Ok(()) => Ok(true),
            Err(WriteError::Moved { .. }) => Ok(false),
            Err(WriteError::Api(e)) => Err(e),
        }
    }

    /// Deletes a repo and its refs and commits (trees and file data stay for GC).
    pub fn delete_repo(&self, key: &RepoKey) -> ApiResult<()> {
        let _guard = self.write_lock.lock();
        let mut batch = ServerBatch::default();
        batch.delete(REPOS, key.0.as_bytes());
        for table in [REFS, COMMITS] {
            for (k, _) in self.storage.scan_prefix(table, &key.sub(""))? {
                batch.delete(table, k);
            }
        }
        for (k, _) in self.storage.scan_prefix(TREES, &grant_key(key, None))? {
            batch.delete(TREES, k);
        }
        self.storage.write(batch, Vec::new()).map_err(api_error)
    }

    /// Creates a ref; `Ok(false)` if it exists.
    pub fn create_ref(&self, key: &RepoKey, full_ref: &str, commit: &CommitId) -> ApiResult<bool> {
        let _guard = self.write_lock.lock();
        if self.get_ref(key, full_ref)?.is_some() {
            return Ok(false);
        }
        let mut batch = ServerBatch::default();
        batch.put(REFS, key.sub(full_ref), commit.as_str().as_bytes());
        match self.storage.write(batch, vec![Guard::absent(REFS, key.sub(full_ref))]) {
            Ok(()) => Ok(true),
            Err(WriteError::Moved { .. }) => Ok(false),
            Err(WriteError::Api(e)) => Err(e),
        }
    }

    /// Deletes a ref; `Ok(false)` if it did not exist.
    pub fn delete_ref(&self, key: &RepoKey, full_ref: &str) -> ApiResult<bool> {
        let _guard = self.write_lock.lock();
        if self.get_ref(key, full_ref)?.is_none() {
            return Ok(false);
        }
        let mut batch = ServerBatch::default();
        batch.delete(REFS, key.sub(full_ref));
        self.storage.write(batch, Vec::new()).map_err(api_error)?;
        Ok(true)
    }

    /// Commits on top of a branch: `apply` turns the head's files into the new files.
    ///
    /// Refuses with 412 if `expected_parent` is given and is not the head. Returns the head
    /// unchanged (`created: false`) when the files do not change, so a retried commit is
    /// idempotent.
    pub fn commit_to_branch(
        &self,
        key: &RepoKey,
        branch: &str,
        expected_parent: Option<&str>,
        meta: &CommitMeta,
        apply: impl Fn(Vec<Entry>, &str) -> ApiResult<Vec<Entry>>,
    ) -> ApiResult<CommitOutcome> {
        self.commit_to_ref(key, &branch_ref(branch), expected_parent, meta, apply)
    }

    /// [`HubDb::commit_to_branch`] for any full ref (a branch or `refs/pr/{n}`).
    ///
    /// When another writer (another replica on the same bucket) moves the ref between reading
    /// its head and writing the new one, a commit without `expected_parent` is made again on
    /// the new head (as one server would have ordered the two), a few times at most; one with
    /// `expected_parent` is refused with 412.
    pub fn commit_to_ref(
        &self,
        key: &RepoKey,
        full_ref: &str,
        expected_parent: Option<&str>,
        meta: &CommitMeta,
        apply: impl Fn(Vec<Entry>, &str) -> ApiResult<Vec<Entry>>,
    ) -> ApiResult<CommitOutcome> {
        let _guard = self.write_lock.lock();
        let name = full_ref.strip_prefix("refs/heads/").unwrap_or(full_ref);
        let mut attempt = 0;
        loop {
            let head =
                self.get_ref(key, full_ref)?.ok_or_else(|| ApiError::revision_not_found(name))?;
            check_parent(expected_parent, name, &head)?;
            match self.commit_on(key, full_ref, &head, meta, &apply) {
                Err(WriteError::Moved { .. })
                    if expected_parent.is_none() && attempt < MOVED_RETRIES =>
                {
                    attempt += 1;
                }
                result => return result.map_err(|e| moved_head(e, name, &head)),
            }
        }
    }

    /// One attempt of [`HubDb::commit_to_ref`] on top of `head`.
    fn commit_on(
        &self,
        key: &RepoKey,
        full_ref: &str,
        head: &CommitId,
        meta: &CommitMeta,
        apply: impl FnOnce(Vec<Entry>, &str) -> ApiResult<Vec<Entry>>,
    ) -> Result<CommitOutcome, WriteError> {
        let mut batch = ServerBatch::default();
        let outcome = self.stage_commit(&mut batch, key, head, meta, apply)?;
        if outcome.created {
            batch.put(REFS, key.sub(full_ref), outcome.commit.as_str().as_bytes());
            let guard = Guard::holds(REFS, key.sub(full_ref), head.as_str().as_bytes());
            self.storage.write(batch, vec![guard])?;
        }
        Ok(outcome)
    }

    /// Opens pull request `pr` (its number is assigned here) against `branch` with one commit
    /// on top of `start` (a commit id or prefix of the branch head; the head when `None`): the
    /// record, its ref and the commit are written in one batch, so a failed commit leaves no
    /// empty pull request behind. Returns the outcome and the number.
    pub fn commit_as_pull_request(
        &self,
        key: &RepoKey,
        branch: &str,
        start: Option<&str>,
        meta: &CommitMeta,
        mut pr: DiscussionRecord,
        apply: impl FnOnce(Vec<Entry>, &str) -> ApiResult<Vec<Entry>>,
    ) -> ApiResult<(CommitOutcome, u64)> {
        let _guard = self.write_lock.lock();
        let base = branch_ref(branch);
        let head = self.get_ref(key, &base)?.ok_or_else(|| ApiError::revision_not_found(branch))?;
        let from = match start.map(|p| (p, CommitId::parse(p))) {
            None => head.clone(),
            Some((p, _)) if head.as_str().starts_with(p) => head.clone(),
            Some((p, Ok(c))) if self.commit(key, p)?.is_some() => c,
            Some((p, _)) => {
                return Err(ApiError::bad_request(format!(
                    "parentCommit {p} is neither the head of {branch} nor a commit of the repo"
                )));
            }
        };
        let mut batch = ServerBatch::default();
        let outcome = self.stage_commit(&mut batch, key, &from, meta, apply)?;
        pr.num = self.next_discussion_number(key)?;
        pr.base = base;
        pr.base_commit = Some(from);
        batch.put(REFS, key.sub(&pr_ref(pr.num)), outcome.commit.as_str().as_bytes());
        batch.put(COMMITS, discussion_key(key, pr.num), to_json(&pr)?);
        let guards = vec![Guard::absent(COMMITS, discussion_key(key, pr.num))];
        self.storage.write(batch, guards).map_err(|e| raced(e, "opening the pull request"))?;
        Ok((outcome, pr.num))
    }

    /// Adds the commit `apply` makes on top of `head` to `batch` (tree, record, file index);
    /// `created: false` and nothing added when the files do not change.
    fn stage_commit(
        &self,
        batch: &mut ServerBatch,
        key: &RepoKey,
        head: &CommitId,
        meta: &CommitMeta,
        apply: impl FnOnce(Vec<Entry>, &str) -> ApiResult<Vec<Entry>>,
    ) -> ApiResult<CommitOutcome> {
        let (_, old) = self.commit_tree(key, head)?;
        let new = apply(old.as_ref().clone(), head.as_str())?;
        if new == *old {
            return Ok(CommitOutcome { commit: head.clone(), created: false });
        }
        let known: HashSet<FileHash> = old.iter().map(|e| e.file).collect();
        let added: Vec<FileHash> =
            new.iter().map(|e| e.file).filter(|f| !known.contains(f)).collect();
        self.storage.publish_files(&self.store, &added)?;
        let commit = write_commit(batch, key, &new, Some(head), meta)?;
        Ok(CommitOutcome { commit, created: true })
    }

    /// Every discussion of the repo, by number.
    pub fn discussions(&self, key: &RepoKey) -> ApiResult<Vec<DiscussionRecord>> {
        let prefix = key.sub("discussion\0");
        self.storage
            .scan_prefix(COMMITS, &prefix)?
            .into_iter()
            .map(|(_, v)| from_json(&v))
            .collect()
    }

    /// One discussion.
    pub fn discussion(&self, key: &RepoKey, num: u64) -> ApiResult<Option<DiscussionRecord>> {
        match self.storage.get(COMMITS, &discussion_key(key, num))? {
            Some(v) => Ok(Some(from_json(&v)?)),
            None => Ok(None),
        }
    }

    fn next_discussion_number(&self, key: &RepoKey) -> ApiResult<u64> {
        Ok(self.discussions(key)?.iter().map(|d| d.num).max().unwrap_or(0) + 1)
    }

    /// Opens a discussion, or a pull request (its ref at the head of `branch`); returns it
    /// with its number.
    pub fn open_discussion(
        &self,
        key: &RepoKey,
        branch: &str,
        mut d: DiscussionRecord,
    ) -> ApiResult<DiscussionRecord> {
        let _guard = self.write_lock.lock();
        d.num = self.next_discussion_number(key)?;
        d.base = branch_ref(branch);
        let mut batch = ServerBatch::default();
        if d.is_pr {
            let head =
                self.get_ref(key, &d.base)?.ok_or_else(|| ApiError::revision_not_found(branch))?;
            batch.put(REFS, key.sub(&pr_ref(d.num)), head.as_str().as_bytes());
            d.base_commit = Some(head);
        }
        batch.put(COMMITS, discussion_key(key, d.num), to_json(&d)?);
        let guards = vec![Guard::absent(COMMITS, discussion_key(key, d.num))];
        self.storage.write(batch, guards).map_err(|e| raced(e, "opening the discussion"))?;
        Ok(d)
    }

    /// Sets a discussion's status (`open` or `closed`).
    pub fn set_discussion_status(
        &self,
        key: &RepoKey,
        num: u64,
        status: &str,
    ) -> ApiResult<DiscussionRecord> {
        let _guard = self.write_lock.lock();
        let mut d = self.discussion(key, num)?.ok_or_else(|| discussion_not_found(num))?;
        if d.status == "merged" {
            return Err(ApiError::bad_request("A merged pull request cannot change status"));
        }
        let before = to_json(&d)?;
        d.status = status.to_owned();
        let mut batch = ServerBatch::default();
        batch.put(COMMITS, discussion_key(key, num), to_json(&d)?);
        let guards = vec![Guard::holds(COMMITS, discussion_key(key, num), before)];
        self.storage.write(batch, guards).map_err(|e| raced(e, "changing the status"))?;
        Ok(d)
    }

    /// Merges pull request `num` into its base branch: a fast-forward when the base has not
    /// moved since the pull request was opened, otherwise the pull request's changes applied to
    /// the base head as a new commit; 409 naming the paths both sides changed.
    pub fn merge_pull_request(
        &self,
        key: &RepoKey,
        num: u64,
        meta: &CommitMeta,
    ) -> ApiResult<DiscussionRecord> {
        let _guard = self.write_lock.lock();
        let mut pr = self.discussion(key, num)?.ok_or_else(|| discussion_not_found(num))?;
        if !pr.is_pr || !pr.is_open() {
            return Err(ApiError::bad_request(format!(
                "#{num} is not an open pull request (status {})",
                pr.status
            )));
        }
        let head = self.get_ref(key, &pr_ref(num))?.ok_or_else(|| discussion_not_found(num))?;
        let base =
            self.get_ref(key, &pr.base)?.ok_or_else(|| ApiError::revision_not_found(&pr.base))?;
        let ancestor = pr.base_commit.clone().unwrap_or_else(|| base.clone());
        let before = to_json(&pr)?;
        let mut batch = ServerBatch::default();
        let merged = if base == ancestor {
            head
        } else {
            let (_, from) = self.commit_tree(key, &ancestor)?;
            let (_, ours) = self.commit_tree(key, &base)?;
            let (_, theirs) = self.commit_tree(key, &head)?;
            let tree = merge_trees(&from, &ours, &theirs).map_err(|conflicts| {
                ApiError::conflict(format!("Pull request #{num} conflicts with {}", pr.base))
                    .with_field("filesWithConflicts", conflicts)
            })?;
            write_commit(&mut batch, key, &tree, Some(&base), meta)?
        };
        batch.put(REFS, key.sub(&pr.base), merged.as_str().as_bytes());
        pr.status = "merged".into();
        pr.merge_commit = Some(merged);
        batch.put(COMMITS, discussion_key(key, num), to_json(&pr)?);
        let guards = vec![
            Guard::holds(REFS, key.sub(&pr.base), base.as_str().as_bytes()),
            Guard::holds(COMMITS, discussion_key(key, num), before),
        ];
        self.storage.write(batch, guards).map_err(|e| moved_head(e, &pr.base, &base))?;
        Ok(pr)
    }
}

/// The error of a guarded write that only fails when another writer got there first.
fn raced(e: WriteError, doing: &str) -> ApiError {
    match e {
        WriteError::Moved { key } => {
            ApiError::conflict(format!("{key} changed while {doing}; retry"))
        }
        WriteError::Api(e) => e,
    }
}

/// Times a commit without a parent is made again on a head another replica moved.
const MOVED_RETRIES: u32 = 5;

/// 412 unless `head` is (starts with) the parent the client based its commit on.
fn check_parent(expected: Option<&str>, name: &str, head: &CommitId) -> ApiResult<()> {
    match expected {
        Some(parent) if !head.as_str().starts_with(parent) => Err(ApiError::new(
            axum::http::StatusCode::PRECONDITION_FAILED,
            format!("Parent commit {parent} is not the head of {name} ({head})"),
        )),
        _ => Ok(()),
    }
}

/// A ref moved between reading its head and writing the new one: 412, as a stale
/// `parentCommit` is, naming the ref and the head this write was based on.
fn moved_head(e: WriteError, name: &str, head: &CommitId) -> ApiError {
    match e {
        WriteError::Moved { .. } => ApiError::new(
            axum::http::StatusCode::PRECONDITION_FAILED,
            format!(
                "{name} moved from {head} while this commit was made (a concurrent commit, \
                 perhaps through another replica); nothing was written, retry on the new head"
            ),
        ),
        WriteError::Api(e) => e,
    }
}

/// A write with no guards fails only for reasons that are not races.
fn api_error(e: WriteError) -> ApiError {
    match e {
        WriteError::Moved { key } => ApiError::conflict(format!("{key} changed")),
        WriteError::Api(e) => e,
    }
}

fn discussion_not_found(num: u64) -> ApiError {
    ApiError::not_found(format!("Discussion #{num} not found"))
}

/// A three-way merge of trees by path: the changes `theirs` made to `base`, applied to `ours`.
/// `Err` lists the paths both sides changed differently.
fn merge_trees(
    base: &[Entry],
    ours: &[Entry],
    theirs: &[Entry],
) -> Result<Vec<Entry>, Vec<String>> {
    let index = |t: &[Entry]| -> BTreeMap<String, Entry> {
        t.iter().map(|e| (e.path.clone(), e.clone())).collect()
    };
    let (base, theirs) = (index(base), index(theirs));
    let mut out = index(ours);
    let mut conflicts = Vec::new();
    let paths: BTreeSet<&String> = base.keys().chain(theirs.keys()).collect();
    for path in paths {
        let (b, t) = (base.get(path), theirs.get(path));
        if b == t {
            continue;
        }
        let o = out.get(path);
        if o != b && o != t {
            conflicts.push(path.clone());
            continue;
        }
        match t {
            Some(e) => out.insert(path.clone(), e.clone()),
            None => out.remove(path),
        };
    }
    if conflicts.is_empty() { Ok(out.into_values().collect()) } else { Err(conflicts) }
}

/// A commit id read back from a ref: written by this server, so anything else is damage.
fn stored_commit(value: &[u8]) -> ApiResult<CommitId> {
    CommitId::parse(&String::from_utf8_lossy(value)).map_err(ApiError::internal)
}

/// Key of a grant in [`TREES`], `f\0{repo}\0{file hash}` (empty value): the file may be read
/// with the repo's CAS tokens. Without a file, the prefix of all the repo's grants.
fn grant_key(key: &RepoKey, file: Option<&FileHash>) -> Vec<u8> {
    let file = file.map(FileHash::to_string).unwrap_or_default();
    format!("f\0{}\0{file}", key.0).into_bytes()
}

/// Key of a tree in [`TREES`]: `t\0{tree id}`.
pub fn tree_key(tree_id: &str) -> Vec<u8> {
    format!("t\0{tree_id}").into_bytes()
}

/// Adds a tree, a commit record and the index of its files to a batch; returns the commit id.
fn write_commit(
    batch: &mut ServerBatch,
    key: &RepoKey,
    entries: &[Entry],
    parent: Option<&CommitId>,
    meta: &CommitMeta,
) -> ApiResult<CommitId> {
    let tree_json = to_json(&entries)?;
    let tree = sha1_hex(&tree_json);
    let parents: Vec<CommitId> = parent.cloned().into_iter().collect();
    let mut text = format!("tree {tree}\n");
    for p in &parents {
        text.push_str(&format!("parent {p}\n"));
    }
    text.push_str(&format!(
        "author {} {}\n\n{}\n\n{}",
        meta.author, meta.date, meta.title, meta.message
    ));
    let id = CommitId::from_sha1(sha1::Sha1::digest(text.as_bytes()).into());
    // Every file of a commit may be read with the repo's CAS tokens.
    for e in entries {
        batch.put(TREES, grant_key(key, Some(&e.file)), Vec::new());
    }
    let record = CommitRecord {
        id: id.clone(),
        tree: tree.clone(),
        parents,
        author: meta.author.clone(),
        date: meta.date,
        title: meta.title.clone(),
        message: meta.message.clone(),
    };
    // The tree roots its files in the same batch: `gc` keeps them for as long as the store.
    let files = entries.iter().map(|e| e.file);
    batch.put_rooted(TREES, tree_key(&tree), tree_json, &tree, files);
    batch.put(COMMITS, key.sub(id.as_str()), to_json(&record)?);
    Ok(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn e(path: &str, seed: u8) -> Entry {
        Entry {
            path: path.into(),
            size: u64::from(seed),
            file: FileHash::ZERO,
            sha256: Sha256::default(),
            git_oid: tessera_protocol::git_blob_oid(&[seed]),
            lfs: false,
        }
    }

    /// A pull request's changes land on a base that moved elsewhere; the same path changed
    /// differently on both sides is a conflict, named.
    #[test]
    fn three_way_merge_of_trees() {
        let base = vec![e("a", 1), e("b", 1), e("c", 1)];
        let ours = vec![e("a", 2), e("b", 1), e("c", 1), e("n", 1)];
        let theirs = vec![e("b", 3), e("c", 1), e("t", 1)];
        let merged = merge_trees(&base, &ours, &theirs);
        assert_eq!(merged, Err(vec!["a".to_owned()]), "a: changed by us, deleted by them");
        let theirs = vec![e("a", 1), e("b", 3), e("t", 1)];
        let merged = merge_trees(&base, &ours, &theirs).unwrap();
        assert_eq!(merged, vec![e("a", 2), e("b", 3), e("n", 1), e("t", 1)]);
        let same = vec![e("a", 2), e("b", 1), e("c", 1)];
        assert!(merge_trees(&base, &ours, &same).is_ok(), "the same change on both sides");
    }
}
