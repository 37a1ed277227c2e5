//! Repo types, repo ids, revisions, ref names and in-repo paths: parsing and validation.
//!
//! The rules follow the Python client's validators (`hub-api.md` §1, §5.7), so anything a
//! server built on them accepts is something `huggingface_hub` can also address.

use std::fmt;

/// Why a repo id, revision, ref name or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not a repo type the server knows (`model`, `dataset`, `space`).
    #[error("unknown repo type {0:?}")]
    RepoType(String),
    /// A repo id or one of its parts breaks the naming rules.
    #[error("invalid repo id {id:?}: {reason}")]
    RepoId {
        /// The rejected id, truncated.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A revision, branch or tag name breaks the ref-name rules.
    #[error("invalid revision {rev:?}: {reason}")]
    Revision {
        /// The rejected name, truncated.
        rev: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not a full commit id (40 lowercase hex digits).
    #[error("invalid commit id {0:?}: expected 40 lowercase hex digits")]
    Commit(String),
    /// Not a git object id (40 or 64 lowercase hex digits).
    #[error("invalid git object id {0:?}: expected 40 or 64 lowercase hex digits")]
    GitOid(String),
    /// A path inside a repo that is empty, absolute, escapes the repo or names `.git`.
    #[error("invalid path {path:?}: {reason}")]
    Path {
        /// The rejected path, truncated.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The kind of a Hub repository; decides URL prefixes and cache folder names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepoType {
    /// A model repo (the default everywhere).
    Model,
    /// A dataset repo.
    Dataset,
    /// A Space.
    Space,
}

impl RepoType {
    /// All types, in a fixed order.
    pub const ALL: [RepoType; 3] = [RepoType::Model, RepoType::Dataset, RepoType::Space];

    /// Singular name as sent in JSON bodies: `model`, `dataset`, `space`.
    pub fn as_str(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
            RepoType::Space => "space",
        }
    }

    /// Segment of `/api/{segment}/...`: `models`, `datasets`, `spaces`.
    pub fn api_segment(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
            RepoType::Space => "spaces",
        }
    }

    /// Prefix of file and LFS URLs: empty for models, `datasets/`, `spaces/`.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
            RepoType::Space => "spaces/",
        }
    }

    /// Parses the singular name (`model`, ...). `None` or an empty string means a model.
    pub fn from_name(name: Option<&str>) -> Result<Self, IdError> {
        match name.unwrap_or("model") {
            "" | "model" => Ok(RepoType::Model),
            "dataset" => Ok(RepoType::Dataset),
            "space" => Ok(RepoType::Space),
            other => Err(IdError::RepoType(clip(other))),
        }
    }

    /// Parses the plural API segment (`models`, ...).
    pub fn from_api_segment(segment: &str) -> Result<Self, IdError> {
        Self::ALL
            .into_iter()
            .find(|t| t.api_segment() == segment)
            .ok_or_else(|| IdError::RepoType(clip(segment)))
    }
}

impl fmt::Display for RepoType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The singular name, as [`RepoType::from_name`] reads it (a command line's `--repo-type`).
impl std::str::FromStr for RepoType {
    type Err = IdError;
    fn from_str(name: &str) -> Result<Self, IdError> {
        Self::from_name(Some(name))
    }
}

/// As its singular name, the form the Hub's JSON bodies use.
impl serde::Serialize for RepoType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RepoType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_name(Some(&name)).map_err(serde::de::Error::custom)
    }
}

/// A validated `namespace/name` repo id.
///
/// ```
/// use tessera_protocol::RepoId;
/// let id = RepoId::parse("sentence-transformers/all-MiniLM-L6-v2").unwrap();
/// assert_eq!(id.namespace(), "sentence-transformers");
/// assert!(RepoId::parse("a/../b").is_err());
/// assert!(RepoId::parse("gpt2").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId {
    namespace: String,
    name: String,
}

impl RepoId {
    /// Builds an id from its two parts, validating each.
    pub fn new(namespace: &str, name: &str) -> Result<Self, IdError> {
        let full = format!("{namespace}/{name}");
        validate_id_part(namespace)
            .map_err(|reason| IdError::RepoId { id: clip(&full), reason })?;
        validate_id_part(name).map_err(|reason| IdError::RepoId { id: clip(&full), reason })?;
        if name.ends_with(".git") {
            return Err(IdError::RepoId { id: clip(&full), reason: "must not end in .git" });
        }
        Ok(Self { namespace: namespace.to_owned(), name: name.to_owned() })
    }

    /// Parses `namespace/name` (exactly one `/`).
    pub fn parse(id: &str) -> Result<Self, IdError> {
        match id.split_once('/') {
            Some((ns, name)) if !name.contains('/') => Self::new(ns, name),
            _ => Err(IdError::RepoId { id: clip(id), reason: "expected namespace/name" }),
        }
    }

    /// The user or organisation part.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The repo name part.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// As `namespace/name`, the form the Hub's JSON uses.
impl serde::Serialize for RepoId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Checked by [`RepoId::parse`].
impl<'de> serde::Deserialize<'de> for RepoId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&id).map_err(serde::de::Error::custom)
    }
}

/// Whether `part` can be the namespace or the name of a repo id (the rules of
/// [`RepoId::new`]); the mount refuses every other directory name before it reaches a remote,
/// so probes such as `.Trash` or `.git` never do.
pub fn is_repo_id_part(part: &str) -> bool {
    validate_id_part(part).is_ok()
}

/// One part of a repo id: `[A-Za-z0-9_.-]{1,96}`, no leading/trailing `-` or `.`, no `--`/`..`.
fn validate_id_part(part: &str) -> Result<(), &'static str> {
    if part.is_empty() || part.len() > 96 {
        return Err("each part must be 1 to 96 characters");
    }
    if !part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err("only A-Z, a-z, 0-9, '_', '.' and '-' are allowed");
    }
    let edge = |b: Option<u8>| matches!(b, Some(b'-' | b'.'));
    if edge(part.bytes().next()) || edge(part.bytes().last()) {
        return Err("must not start or end with '-' or '.'");
    }
    if part.contains("--") || part.contains("..") {
        return Err("'--' and '..' are forbidden");
    }
    Ok(())
}

/// A checked id type (a `String` newtype with the given docs) and the plumbing every one
/// shares, over `check`, which says why a text is refused: `parse` and serde's
/// `TryFrom<String>` run it, so no value of the type skips it; `as_str`, `Into<String>` (serde's
/// serialized form), `FromStr` (clap's) and `Display` give the text back. The `hex:` form is
/// for ids that are hex digests, checked by a predicate, with `from_sha1` for ones hashed here.
macro_rules! checked_id {
    ($(#[$doc:meta])* $ty:ident, hex: $pred:path => $err:path $(,)?) => {
        checked_id!($(#[$doc])* $ty, |text| {
            if $pred(text) { Ok(()) } else { Err($err(clip(text))) }
        });

        impl $ty {
            /// The id of a SHA-1 digest made here (a commit, a git blob or tree).
            pub fn from_sha1(digest: [u8; 20]) -> Self {
                Self(hex::encode(digest))
            }
        }
    };
    ($(#[$doc:meta])* $ty:ident, $check:expr $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Checks `text` and wraps it.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                Self::try_from(text.to_owned())
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), IdError> = $check;
                check(&text)?;
                Ok(Self(text))
            }
        }

        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

checked_id!(
    /// A full commit id, 40 lowercase hex digits, checked where it enters (a Hub answer, a stored
    /// ref, a mount path), so code below never re-checks a commit or mistakes a branch for one.
    ///
    /// ```
    /// use tessera_protocol::CommitId;
    /// let c = CommitId::parse("0123456789abcdef0123456789abcdef01234567").unwrap();
    /// assert_eq!(c.as_str().len(), 40);
    /// assert!(CommitId::parse("main").is_err());
    /// ```
    CommitId,
    hex: is_commit_id => IdError::Commit,
);

checked_id!(
    /// A revision as a user, a URL or a mount path names it: a branch, a tag, `refs/pr/N` or a
    /// commit id, checked by [`validate_revision`]. Whether it names anything is for the repo's
    /// refs to say. Serialized as its text; deserializing checks it, so a revision from JSON is
    /// as trusted as one from [`Revision::parse`].
    Revision,
    validate_revision,
);

impl Revision {
    /// The commit it names, when it is a full commit id (a branch or tag never is:
    /// [`validate_ref_name`] refuses names that look like one).
    pub fn as_commit(&self) -> Option<CommitId> {
        CommitId::parse(&self.0).ok()
    }
}

impl From<CommitId> for Revision {
    fn from(c: CommitId) -> Self {
        Self(c.0)
    }
}

checked_id!(
    /// The id a Hub gives a file's content: a git object id (the blob's SHA-1, of the LFS pointer
    /// for LFS files) or an LFS oid (the content's SHA-256), 40 or 64 lowercase hex digits by
    /// [`is_git_oid`]. Checked where it enters (a Hub answer, a commit or LFS request, a stored
    /// tree), because it names files and folders (the HF cache's `blobs/<oid>`) and keys indexes.
    ///
    /// ```
    /// use tessera_protocol::GitOid;
    /// let blob = GitOid::parse("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391").unwrap();
    /// assert_eq!(blob.as_str().len(), 40);
    /// assert!(GitOid::parse("../../x").is_err());
    /// ```
    GitOid,
    hex: is_git_oid => IdError::GitOid,
);

/// An LFS oid: the content's SHA-256.
impl From<tessera_xet::hash::Sha256> for GitOid {
    fn from(sha256: tessera_xet::hash::Sha256) -> Self {
        Self(sha256.to_string())
    }
}

/// True for a full commit id: exactly 40 lowercase hex digits.
pub fn is_commit_id(rev: &str) -> bool {
    rev.len() == 40 && is_lower_hex(rev)
}

/// True for a git object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits. Ids from a
/// server name files and folders (the HF cache's `blobs/<oid>`), so nothing else is accepted.
pub fn is_git_oid(oid: &str) -> bool {
    matches!(oid.len(), 40 | 64) && is_lower_hex(oid)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Validates a branch or tag name (a simplified `git check-ref-format`).
///
/// Slashes are allowed (`release/v1`); names that look like commit ids are refused so that a
/// revision is never ambiguous.
pub fn validate_ref_name(name: &str) -> Result<(), IdError> {
    let err = |reason| Err(IdError::Revision { rev: clip(name), reason });
    if name.is_empty() || name.len() > 200 {
        return err("must be 1 to 200 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/')) {
        return err("only A-Z, a-z, 0-9, '_', '.', '-' and '/' are allowed");
    }
    if name.starts_with('-') || name.ends_with('.') || name.ends_with(".lock") {
        return err("must not start with '-' or end with '.' or '.lock'");
    }
    if name.contains("..") || name.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
        return err("empty components, '..' and components starting with '.' are forbidden");
    }
    if is_commit_id(name) {
        return err("must not look like a commit id");
    }
    Ok(())
}

/// Validates and normalizes a path inside a repo as sent in a commit.
///
/// Refused: empty paths, absolute paths, backslashes, control characters, empty, `.` or `..`
/// segments, and any `.git` or `.cache` segment (`hub-api.md` §5.7). A trailing `/` (the
/// `deletedFolder` form) is removed.
///
/// ```
/// use tessera_protocol::normalize_repo_path;
/// assert_eq!(normalize_repo_path("a/b.bin").unwrap(), "a/b.bin");
/// assert_eq!(normalize_repo_path("dir/").unwrap(), "dir");
/// for bad in ["../x", "/x", ".git/config", "a/../b", "a//b", "", "a\\b"] {
///     assert!(normalize_repo_path(bad).is_err(), "{bad}");
/// }
/// ```
pub fn normalize_repo_path(path: &str) -> Result<String, IdError> {
    let err = |reason| Err(IdError::Path { path: clip(path), reason });
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return err("empty path");
    }
    if trimmed.len() > 4096 {
        return err("longer than 4096 bytes");
    }
    if trimmed.starts_with('/') {
        return err("absolute paths are not allowed");
    }
    if trimmed.chars().any(|c| c.is_control() || c == '\\') {
        return err("control characters and backslashes are not allowed");
    }
    for segment in trimmed.split('/') {
        match segment {
            "" => return err("empty path segment"),
            "." | ".." => return err("'.' and '..' segments are not allowed"),
            ".git" | ".cache" => return err("'.git' and '.cache' segments are not allowed"),
            _ => {}
        }
    }
    Ok(trimmed.to_owned())
}

/// Validates a revision as it arrives in a URL or a mount path (after decoding): 1 to 256
/// bytes, no control characters or backslashes, and no empty, `.` or `..` segment, so it can
/// never name a path outside where it is used. Whether it names anything is decided by the
/// repo's refs.
pub fn validate_revision(rev: &str) -> Result<(), IdError> {
    let err = |reason| Err(IdError::Revision { rev: clip(rev), reason });
    if rev.is_empty() || rev.len() > 256 {
        return err("must be 1 to 256 bytes");
    }
    if rev.chars().any(|c| c.is_control() || c == '\\') {
        return err("control characters and backslashes are not allowed");
    }
    if rev.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return err("empty, '.' and '..' segments are not allowed");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn repo_id_rules() {
        for ok in ["a/b", "Org_1/model.v2", "x/y-z"] {
            assert!(RepoId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "a/b/c", "-a/b", "a/b.", "a--b/c", "a/b.git", "a b/c", "ä/b", "/b", "a/"]
        {
            assert!(RepoId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ref_names() {
        for ok in ["main", "v1.0", "release/2024-01", "feature_x"] {
            assert!(validate_ref_name(ok).is_ok(), "{ok}");
        }
        let hex40 = "0123456789abcdef0123456789abcdef01234567";
        for bad in ["", "a..b", "/a", "a/", "a//b", ".hidden", "x.lock", "-x", "a b", hex40] {
            assert!(validate_ref_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn typed_commits_and_revisions() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let c = CommitId::parse(hex).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<CommitId>(&format!("\"{hex}\"")).unwrap(), c);
        assert!(serde_json::from_str::<CommitId>("\"main\"").is_err());
        assert_eq!(Revision::parse(hex).unwrap().as_commit(), Some(c.clone()));
        assert_eq!(Revision::from(c).as_str(), hex);
        assert_eq!(Revision::parse("refs/pr/3").unwrap().as_commit(), None);
        assert!(
            Revision::parse("a/../b").is_err() && CommitId::parse(&hex.to_uppercase()).is_err()
        );
        let pr = Revision::parse("refs/pr/3").unwrap();
        assert_eq!(serde_json::to_string(&pr).unwrap(), "\"refs/pr/3\"");
        assert_eq!(serde_json::from_str::<Revision>("\"refs/pr/3\"").unwrap(), pr);
        assert!(serde_json::from_str::<Revision>("\"a/../b\"").is_err());
    }

    /// Repo ids and types read from stored or wire JSON are checked as when parsed.
    #[test]
    fn repo_ids_and_types_round_trip_through_json() {
        let id = RepoId::parse("org/m").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"org/m\"");
        assert_eq!(serde_json::from_str::<RepoId>("\"org/m\"").unwrap(), id);
        assert!(serde_json::from_str::<RepoId>("\"a/../b\"").is_err());
        assert_eq!(serde_json::to_string(&RepoType::Dataset).unwrap(), "\"dataset\"");
        assert_eq!(serde_json::from_str::<RepoType>("\"space\"").unwrap(), RepoType::Space);
        assert!(serde_json::from_str::<RepoType>("\"spaces\"").is_err());
    }

    #[test]
    fn commit_ids() {
        assert!(is_commit_id("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_id("0123456789ABCDEF0123456789abcdef01234567"));
        assert!(!is_commit_id("main"));
        assert!(is_git_oid(&"a".repeat(40)) && is_git_oid(&"0".repeat(64)));
        for bad in ["../../x", "", &"a".repeat(41), &"g".repeat(40), &"A".repeat(64)] {
            assert!(!is_git_oid(bad), "{bad}");
            assert!(serde_json::from_value::<GitOid>(bad.into()).is_err(), "{bad}");
        }
        let sha = tessera_xet::hash::Sha256::of(b"");
        let oid = GitOid::from(sha);
        assert_eq!(serde_json::to_value(&oid).unwrap(), sha.to_string());
        assert_eq!(serde_json::from_value::<GitOid>(sha.to_string().into()).unwrap(), oid);
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_repo_path("1_Pooling/config.json").unwrap(), "1_Pooling/config.json");
        for bad in ["./x", "x/.", "x/..", "a/.cache/b", ".git", "x\0y", "x\ny"] {
            assert!(normalize_repo_path(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_repo_path(".gitattributes").is_ok());
    }

    #[test]
    fn repo_types() {
        assert_eq!(RepoType::from_name(None).unwrap(), RepoType::Model);
        assert_eq!(RepoType::from_api_segment("datasets").unwrap(), RepoType::Dataset);
        assert!(RepoType::from_api_segment("buckets").is_err());
        assert_eq!(RepoType::Space.url_prefix(), "spaces/");
    }
}
