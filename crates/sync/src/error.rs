//! What can go wrong syncing, structured where a caller or a reader of the message needs the
//! parts: whose fetched bytes failed which check (expected against got), what an offline
//! command found missing, which branch moved to which commit, the Hub answer that showed a
//! remote has no Xet storage.

use std::fmt;
use std::path::PathBuf;

use tessera_hub::HubError;
use tessera_protocol::{CommitId, GitOid, RepoId, Revision};
use tessera_store::{RevisionKey, StoreError};
use tessera_xet::format::FormatError;
use tessera_xet::hash::{FileHash, Sha256, XorbHash};

/// What can go wrong syncing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The Hub answered with an error or could not be reached.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Fetched bytes do not verify (they were not stored).
    #[error("corrupt data from the remote: {0}")]
    Corrupt(Corruption),
    /// The Hub sent something outside the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The remote offers no Xet storage (its token route is missing): push falls back to LFS.
    #[error("the remote offers no Xet storage: {source}")]
    NoXet {
        /// The Hub's answer to the token request.
        source: HubError,
    },
    /// Offline and the store lacks it.
    #[error("offline, and the store does not hold {0}")]
    Offline(Absent),
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file changed while it was being pushed (its bytes no longer hash to what was planned);
    /// nothing inconsistent was sent.
    #[error("{} changed while it was being pushed; run the push again", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The branch moved during a push (another commit landed); nothing was overwritten.
    #[error(
        "branch {branch} of {repo} moved during the push (it is now at {now}, the push was based on {base}); \
         nothing was committed: run the push again to publish on top of the new head"
    )]
    BranchMoved {
        /// The repo.
        repo: RepoId,
        /// The branch pushed to.
        branch: Revision,
        /// The head the push was based on.
        base: CommitId,
        /// The head it found when its commit was refused.
        now: CommitId,
    },
    /// A bug (a task panicked).
    #[error("internal: {0}")]
    Internal(String),
}

impl SyncError {
    /// Whether the remote sent bytes or an answer that did not check out: another attempt from
    /// scratch may get good ones (a flaky proxy), unlike an error of the remote or the store.
    pub(crate) fn is_bad_data(&self) -> bool {
        matches!(self, SyncError::Corrupt(_) | SyncError::Hub(HubError::Malformed { .. }))
    }

    /// An I/O error on `path`, keeping the OS error as the source.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
        move |source| SyncError::Io { path: path.to_path_buf(), source }
    }
}

impl From<Corruption> for SyncError {
    fn from(c: Corruption) -> Self {
        SyncError::Corrupt(c)
    }
}

/// Which check fetched bytes failed, and whose bytes they were: `path` is the file's path in
/// the revision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// A file of another size than the listing says.
    #[error("{path}: {got} bytes, expected {expected}")]
    Size {
        /// The file.
        path: String,
        /// The listed size.
        expected: u64,
        /// The size fetched.
        got: u64,
    },
    /// A file whose SHA-256 is not the listed one.
    #[error("{path}: sha256 {got}, expected {expected}")]
    Sha256 {
        /// The file.
        path: String,
        /// The listed hash (the LFS oid).
        expected: Sha256,
        /// The hash of what was fetched.
        got: Sha256,
    },
    /// A regular file whose git blob id is not the listed one.
    #[error("{path}: git blob id {got}, expected {expected}")]
    GitOid {
        /// The file.
        path: String,
        /// The listed id.
        expected: GitOid,
        /// The id of what was fetched.
        got: GitOid,
    },
    /// A file's fetched chunks do not hash to its Xet hash (they were dropped, to be fetched
    /// again).
    #[error("{path}: the fetched chunks do not hash to its Xet hash {file}")]
    XetHash {
        /// The file.
        path: String,
        /// Its Xet hash.
        file: FileHash,
    },
    /// A reconstruction whose terms do not add up to the file's size.
    #[error("{path}: the reconstruction's terms add up to {got} bytes, expected {expected}")]
    Terms {
        /// The file.
        path: String,
        /// The file's size.
        expected: u64,
        /// The sum of the terms.
        got: u64,
    },
    /// A chunk whose header does not parse.
    #[error("xorb {xorb}: chunk {index}: {source}")]
    Chunk {
        /// The xorb.
        xorb: XorbHash,
        /// The chunk's index in it.
        index: u32,
        /// What the header got wrong.
        source: FormatError,
    },
    /// Fetched xorb bytes the store refused: they do not decode, or do not rebuild the file.
    #[error(transparent)]
    Store(StoreError),
    /// A stream a read of `path` waited on failed on corrupt data. Every reader waiting on the
    /// stream shares its failure, so it comes as text.
    #[error("{path}: {why}")]
    Stream {
        /// The file read.
        path: String,
        /// The stream's error.
        why: String,
    },
}

/// What an offline command looked for in the store and did not find.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Absent {
    /// A revision no pull or mount recorded.
    Revision(RevisionKey),
    /// The tree of a commit.
    Tree(CommitId),
    /// A file of a revision.
    File {
        /// The file's path.
        path: String,
        /// The revision.
        revision: RevisionKey,
    },
    /// The rest of a file the store holds only part of.
    Part {
        /// The file's path.
        path: String,
    },
}

impl fmt::Display for Absent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Absent::Revision(k) => {
                write!(f, "revision {} of {} {}", k.revision, k.repo_type, k.repo_id)
            }
            Absent::Tree(commit) => write!(f, "the tree of commit {commit}"),
            Absent::File { path, revision } => write!(f, "{path} of {revision}"),
            Absent::Part { path } => write!(f, "all of {path} (only part of it)"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tessera_protocol::RepoType;

    #[test]
    fn messages_name_what_is_missing_and_where_a_branch_moved() {
        let repo = RepoId::parse("org/m").unwrap();
        let key = RevisionKey::new(RepoType::Model, repo.clone(), "main").unwrap();
        let offline = |a| SyncError::Offline(a).to_string();
        assert_eq!(
            offline(Absent::Revision(key.clone())),
            "offline, and the store does not hold revision main of model org/m"
        );
        let file = Absent::File { path: "a.bin".into(), revision: key };
        assert_eq!(offline(file), "offline, and the store does not hold a.bin of model/org/m@main");
        assert_eq!(
            offline(Absent::Part { path: "a.bin".into() }),
            "offline, and the store does not hold all of a.bin (only part of it)"
        );
        let (base, now) =
            (CommitId::parse(&"a".repeat(40)).unwrap(), CommitId::parse(&"b".repeat(40)).unwrap());
        let moved =
            SyncError::BranchMoved { repo, branch: Revision::parse("main").unwrap(), base, now }
                .to_string();
        assert!(
            moved.starts_with("branch main of org/m moved during the push (it is now at bbbb"),
            "{moved}"
        );
    }
}
