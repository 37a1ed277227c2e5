//! JSON bodies of the Hub HTTP API (`hub-api.md` §2, §4, §5), shared by server and client.
//!
//! Field names follow the Hub exactly (mostly camelCase); optional fields are skipped when absent
//! so that clients that reject unexpected values (`xetHash`, dates) see only what is true.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{CommitId, GitOid};
use tessera_xet::hash::Sha256;

/// `GET /api/{type}s/{ns}/{name}[/revision/{rev}]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepoInfo {
    /// `ns/name`.
    pub id: String,
    /// The namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The commit the revision resolves to.
    pub sha: Option<CommitId>,
    /// Whether only its owners can see it.
    #[serde(default)]
    pub private: bool,
    /// Always `false` here (no gating).
    #[serde(default)]
    pub gated: serde_json::Value,
    /// Always `false` here.
    #[serde(default)]
    pub disabled: bool,
    /// Date of the resolved commit, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Creation date of the repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Every file of the revision, recursively.
    #[serde(default)]
    pub siblings: Vec<Sibling>,
    /// Free tags (empty here).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Download counter (0 here).
    #[serde(default)]
    pub downloads: u64,
    /// Like counter (0 here).
    #[serde(default)]
    pub likes: u64,
    /// True: the server runs a Xet CAS.
    #[serde(default)]
    pub xet_enabled: bool,
    /// Space SDK, for spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
}

/// One file in [`RepoInfo::siblings`]; the metadata fields only with `blobs=true`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sibling {
    /// Path in the repo.
    pub rfilename: String,
    /// Real content size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Git blob oid (of the pointer for LFS files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_id: Option<GitOid>,
    /// LFS metadata (`sha256` here, `oid` in the tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs: Option<SiblingLfs>,
}

/// LFS metadata of a sibling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SiblingLfs {
    /// Content size.
    pub size: u64,
    /// SHA-256 of the content (hex on the wire).
    pub sha256: Sha256,
    /// Size of the Git LFS pointer file.
    pub pointer_size: u64,
}

/// One entry of a tree listing or paths-info reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TreeEntry {
    /// A file.
    File(TreeFile),
    /// A folder.
    Directory(TreeDirectory),
}

/// A file entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TreeFile {
    /// Git blob oid (of the pointer for LFS files).
    pub oid: GitOid,
    /// Real content size.
    pub size: u64,
    /// Path in the repo.
    pub path: String,
    /// LFS metadata for LFS (and Xet) files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs: Option<LfsInfo>,
    /// Xet file hash, for files the CAS can reconstruct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xet_hash: Option<String>,
}

/// A folder entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TreeDirectory {
    /// A digest of the folder's contents (a SHA-1, as git's tree ids are).
    pub oid: GitOid,
    /// Always 0.
    pub size: u64,
    /// Path in the repo.
    pub path: String,
}

/// LFS metadata of a tree file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LfsInfo {
    /// SHA-256 of the content, hex.
    pub oid: GitOid,
    /// Content size.
    pub size: u64,
    /// Size of the Git LFS pointer file.
    pub pointer_size: u64,
}

/// JSON form of a paths-info request (hf-hub); Python sends the same as a form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PathsInfoRequest {
    /// Paths to describe; missing ones are silently left out of the reply.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Ignored (no expanded metadata).
    #[serde(default)]
    pub expand: Option<serde_json::Value>,
}

/// `GET .../refs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Refs {
    /// Branches.
    pub branches: Vec<GitRef>,
    /// Convert refs (always empty here, but required by clients).
    pub converts: Vec<GitRef>,
    /// Tags.
    pub tags: Vec<GitRef>,
    /// PR refs, with `include_prs=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_requests: Option<Vec<GitRef>>,
}

/// One ref in [`Refs`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitRef {
    /// Short name (`main`, `v1`).
    pub name: String,
    /// Full name (`refs/heads/main`).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Commit id it points at.
    pub target_commit: CommitId,
}

/// `POST /api/repos/create` (Python and hf-hub forms).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CreateRepoRequest {
    /// Repo name without namespace.
    pub name: String,
    /// Namespace; absent or null means the caller's user name.
    #[serde(default)]
    pub organization: Option<String>,
    /// `dataset`, `space`, `model` or absent (model).
    #[serde(default, rename = "type")]
    pub repo_type: Option<String>,
    /// Older clients and hf-hub.
    #[serde(default)]
    pub private: Option<bool>,
    /// Python ≥1.8: `public`, `private` or `protected`.
    #[serde(default)]
    pub visibility: Option<String>,
    /// Space SDK.
    #[serde(default)]
    pub sdk: Option<String>,
}

/// Reply to create-repo (also the body of the 409 for an existing repo, with `error`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateRepoResponse {
    /// `{endpoint}/{prefix}{ns}/{name}`.
    pub url: String,
    /// `ns/name`.
    pub name: String,
    /// `ns/name`.
    pub id: String,
}

/// `DELETE /api/repos/delete`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct DeleteRepoRequest {
    /// Repo name without namespace.
    pub name: String,
    /// Namespace; absent means the caller's user name.
    #[serde(default)]
    pub organization: Option<String>,
    /// Repo type, absent for models.
    #[serde(default, rename = "type")]
    pub repo_type: Option<String>,
}

/// `POST /api/validate-yaml` reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ValidateYamlResponse {
    /// Errors (`[{message}]`); non-empty means 400.
    pub errors: Vec<serde_json::Value>,
    /// Warnings.
    pub warnings: Vec<serde_json::Value>,
}

/// `POST .../preupload/{rev}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PreuploadRequest {
    /// Files about to be committed.
    pub files: Vec<PreuploadFile>,
    /// `.gitignore` content when one is part of the commit (ignored here).
    #[serde(default)]
    pub git_ignore: Option<String>,
}

/// One file of a preupload request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PreuploadFile {
    /// Path in the repo.
    pub path: String,
    /// Base64 of the first 512 bytes.
    #[serde(default)]
    pub sample: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

/// Files at least this large always go through LFS/Xet.
pub const LFS_THRESHOLD: u64 = 10 << 20;

/// Extensions the Hub's default `.gitattributes` routes to LFS.
const LFS_EXTENSIONS: &[&str] = &[
    "7z",
    "arrow",
    "bin",
    "bz2",
    "ckpt",
    "ftz",
    "gguf",
    "gz",
    "h5",
    "jit",
    "joblib",
    "mlmodel",
    "model",
    "msgpack",
    "npy",
    "npz",
    "onnx",
    "ot",
    "parquet",
    "pb",
    "pickle",
    "pkl",
    "pt",
    "pth",
    "rar",
    "safetensors",
    "tar",
    "tflite",
    "tgz",
    "wasm",
    "xz",
    "zip",
    "zst",
];

/// Upload mode of a file: regular for empty and small text files, LFS for large, binary or
/// typically-binary files.
pub fn upload_mode(path: &str, size: u64, sample: Option<&[u8]>) -> UploadMode {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    if size == 0 {
        UploadMode::Regular
    } else if size >= LFS_THRESHOLD
        || ext.is_some_and(|e| LFS_EXTENSIONS.contains(&e.as_str()))
        || path.contains("tfevents")
        || sample.is_some_and(|s| s.contains(&0))
    {
        UploadMode::Lfs
    } else {
        UploadMode::Regular
    }
}

/// How a file travels: inline in the commit, or via LFS/Xet first.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UploadMode {
    /// Base64 inside the commit NDJSON.
    Regular,
    /// Uploaded first (LFS batch or Xet), then committed as a pointer.
    Lfs,
}

/// Preupload reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PreuploadResponse {
    /// One per requested path.
    pub files: Vec<PreuploadResult>,
}

/// Decision for one preuploaded file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreuploadResult {
    /// Path as requested.
    pub path: String,
    /// Transfer mode.
    pub upload_mode: UploadMode,
    /// True: neither upload nor commit it.
    pub should_ignore: bool,
    /// Oid of the file already at that path (sha256 for LFS, git oid otherwise), if any.
    pub oid: Option<GitOid>,
}

/// One line of the commit NDJSON body (`hub-api.md` §5.7).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "key", content = "value", rename_all = "camelCase")]
pub enum CommitLine {
    /// First line: summary, description, optional parent commit.
    Header(CommitHeader),
    /// Inline file content.
    File(InlineFile),
    /// A file uploaded before (LFS or Xet), by sha256.
    LfsFile(LfsFileOp),
    /// Delete one file.
    DeletedFile(PathOp),
    /// Delete every file under a folder.
    DeletedFolder(PathOp),
}

/// The commit header line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CommitHeader {
    /// Commit title.
    pub summary: String,
    /// Commit body.
    #[serde(default)]
    pub description: String,
    /// If set, the branch head must be this commit.
    #[serde(default)]
    pub parent_commit: Option<String>,
}

/// Inline file operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InlineFile {
    /// Base64 (or UTF-8 text when `encoding` is absent or `utf-8`).
    pub content: String,
    /// Path in the repo.
    pub path: String,
    /// `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
}

/// Pointer to an uploaded object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LfsFileOp {
    /// Path in the repo.
    pub path: String,
    /// `sha256`.
    #[serde(default)]
    pub algo: Option<String>,
    /// SHA-256 hex of the content.
    pub oid: GitOid,
    /// Size; absent on copies.
    #[serde(default)]
    pub size: Option<u64>,
}

/// A path-only operation (deletions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathOp {
    /// Path in the repo (`dir/` for folders).
    pub path: String,
}

/// Commit reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitResponse {
    /// Always true on 200.
    pub success: bool,
    /// The new commit id.
    pub commit_oid: CommitId,
    /// `{endpoint}/{prefix}{ns}/{name}/commit/{oid}`.
    pub commit_url: String,
    /// `{repo url}/discussions/{N}` when the commit opened a pull request (`create_pr=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request_url: Option<String>,
}

/// `POST .../tag/{rev}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TagRequest {
    /// Tag name.
    pub tag: String,
    /// Annotation (kept, not shown).
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST .../branch/{branch}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BranchRequest {
    /// Revision to start from; the default branch head when absent.
    #[serde(default)]
    pub starting_point: Option<String>,
}

/// One entry of `GET .../commits/{rev}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommitInfo {
    /// Commit id.
    pub id: CommitId,
    /// Authors.
    pub authors: Vec<CommitAuthor>,
    /// Commit date.
    pub date: String,
    /// Title.
    pub title: String,
    /// Message body.
    pub message: String,
}

/// An author of a commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommitAuthor {
    /// User name.
    pub user: String,
}

/// `POST {repo}.git/info/lfs/objects/batch` request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LfsBatchRequest {
    /// `upload` or `download`.
    pub operation: String,
    /// Transfers the client supports.
    #[serde(default)]
    pub transfers: Vec<String>,
    /// Objects.
    pub objects: Vec<LfsObject>,
    /// `sha256`.
    #[serde(default)]
    pub hash_algo: Option<String>,
    /// Target ref (absent for PRs).
    #[serde(default, rename = "ref")]
    pub git_ref: Option<LfsRef>,
}

/// An LFS object id and size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LfsObject {
    /// SHA-256 hex.
    pub oid: GitOid,
    /// Size in bytes.
    pub size: u64,
}

/// The `ref` field of a batch request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LfsRef {
    /// Unquoted revision.
    pub name: String,
}

/// LFS batch reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LfsBatchResponse {
    /// Chosen transfer (`basic`).
    pub transfer: String,
    /// One per requested object.
    pub objects: Vec<LfsBatchObject>,
    /// `sha256`.
    pub hash_algo: String,
}

/// Per-object reply: no `actions` means already stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LfsBatchObject {
    /// SHA-256 hex.
    pub oid: GitOid,
    /// Size in bytes.
    pub size: u64,
    /// What to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<LfsActions>,
    /// Per-object error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<LfsObjectError>,
}

/// Actions of a batch object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LfsActions {
    /// Where to PUT the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<LfsAction>,
    /// Where to POST `{oid,size}` afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<LfsAction>,
    /// Where to GET the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<LfsAction>,
}

/// One action: a URL plus headers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LfsAction {
    /// Absolute URL.
    pub href: String,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<BTreeMap<String, String>>,
    /// Seconds until `href` expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// Per-object error of a batch reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LfsObjectError {
    /// HTTP-like code.
    pub code: u16,
    /// Message.
    pub message: String,
}

/// `GET .../xet-{read|write}-token/{rev}` reply (also sent as headers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct XetTokenResponse {
    /// Bearer token for the CAS.
    pub access_token: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// CAS base URL.
    pub cas_url: String,
}

/// `GET /api/whoami-v2` reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WhoAmI {
    /// `user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// User name.
    pub name: String,
    /// Organisations (none here).
    pub orgs: Vec<serde_json::Value>,
    /// Token description.
    pub auth: WhoAmIAuth,
}

/// Token part of [`WhoAmI`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmIAuth {
    /// The token used.
    pub access_token: WhoAmIToken,
}

/// Token description.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmIToken {
    /// A display name (never the token).
    pub display_name: String,
    /// `read` or `write`.
    pub role: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn commit_lines_parse() {
        let h: CommitLine = serde_json::from_str(
            r#"{"key":"header","value":{"summary":"s","description":"","parentCommit":"abc"}}"#,
        )
        .unwrap();
        assert!(matches!(h, CommitLine::Header(CommitHeader { parent_commit: Some(_), .. })));
        let l: CommitLine = serde_json::from_str(&format!(
            r#"{{"key":"lfsFile","value":{{"path":"a","algo":"sha256","oid":"{}","size":3}}}}"#,
            "0".repeat(64)
        ))
        .unwrap();
        assert!(matches!(l, CommitLine::LfsFile(LfsFileOp { size: Some(3), .. })));
        let bad = r#"{"key":"lfsFile","value":{"path":"a","algo":"sha256","oid":"00","size":3}}"#;
        let err = serde_json::from_str::<CommitLine>(bad).unwrap_err().to_string();
        assert!(err.contains("invalid git object id"), "{err}");
        let d: CommitLine =
            serde_json::from_str(r#"{"key":"deletedFolder","value":{"path":"d/"}}"#).unwrap();
        assert_eq!(d, CommitLine::DeletedFolder(PathOp { path: "d/".into() }));
        assert!(serde_json::from_str::<CommitLine>(r#"{"key":"nope","value":{}}"#).is_err());
    }

    #[test]
    fn tree_entry_shape() {
        let oid = crate::git_blob_oid(b"");
        let e = TreeEntry::File(TreeFile {
            oid: oid.clone(),
            size: 1,
            path: "p".into(),
            lfs: None,
            xet_hash: None,
        });
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            format!(r#"{{"type":"file","oid":"{oid}","size":1,"path":"p"}}"#)
        );
    }

    #[test]
    fn refs_always_has_converts() {
        let v = serde_json::to_value(Refs::default()).unwrap();
        assert!(v.get("converts").is_some() && v.get("pullRequests").is_none());
    }
}
