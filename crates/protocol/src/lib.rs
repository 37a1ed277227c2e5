//! Wire types of the Hugging Face Hub API and the Xet CAS API, shared by the Hub client and
//! the server (`hub-api.md`, `xet-protocol.md` §5–§6). Pure: no I/O, clock or environment.
//!
//! - [`ids`]: repo types, repo ids, revisions, ref names and in-repo paths, with the validation
//!   rules of the reference client (including the path-escape checks of commits);
//! - [`hub`]: JSON bodies of the Hub API (repo info, tree, refs, preupload, commit NDJSON lines,
//!   LFS batch, Xet tokens);
//! - [`discussions`]: JSON bodies of discussions and pull requests, and the Space SDKs;
//! - [`cas`]: JSON bodies of the CAS (reconstruction v1/v2, upload replies);
//! - [`http`]: header names, byte ranges, url-encoded forms, Hub dates and git object ids;
//! - [`xattrs`]: the extended attributes of mounted files.
//!
//! ```
//! use tessera_protocol::{CommitLine, RepoType};
//! let line: CommitLine =
//!     serde_json::from_str(r#"{"key":"deletedFile","value":{"path":"a.txt"}}"#).unwrap();
//! assert!(matches!(line, CommitLine::DeletedFile(_)));
//! assert_eq!(RepoType::Dataset.url_prefix(), "datasets/");
//! ```

pub mod cas;
pub mod discussions;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod hub;
pub mod ids;
pub mod xattrs;

pub use cas::{
    BatchReconstruction, ChunkRange, FetchInfo, FileKey, InclusiveByteRange, MAX_STORED_XORB_LEN,
    ReconstructionTerm, ReconstructionV1, ReconstructionV2, ShardEvent, ShardUploadResponse,
    XorbFetchV2, XorbRangeV2, XorbUploadResponse, check_reconstruction,
};
pub use discussions::{
    DiscussionAuthor, DiscussionChange, DiscussionChanges, DiscussionDetails, DiscussionPage,
    DiscussionRepo, DiscussionSummary, NewDiscussion, NewDiscussionReply, SPACE_SDKS,
};
pub use http::{
    RangeSpec, error_codes, format_hub_date, git_blob_oid, headers, is_hex64, lfs_pointer,
    parse_bool, parse_hub_date, parse_range_header, parse_urlencoded, percent_decode,
    percent_encode, sha1_hex,
};
pub use hub::{
    BranchRequest, CommitAuthor, CommitHeader, CommitInfo, CommitLine, CommitResponse,
    CreateRepoRequest, CreateRepoResponse, DeleteRepoRequest, GitRef, InlineFile, LFS_THRESHOLD,
    LfsAction, LfsActions, LfsBatchObject, LfsBatchRequest, LfsBatchResponse, LfsFileOp, LfsInfo,
    LfsObject, LfsObjectError, LfsRef, PathOp, PathsInfoRequest, PreuploadFile, PreuploadRequest,
    PreuploadResponse, PreuploadResult, Refs, RepoInfo, Sibling, SiblingLfs, TagRequest,
    TreeDirectory, TreeEntry, TreeFile, UploadMode, ValidateYamlResponse, WhoAmI, WhoAmIAuth,
    WhoAmIToken, XetTokenResponse, upload_mode,
};
pub use ids::{
    CommitId, GitOid, IdError, RepoId, RepoType, Revision, is_commit_id, is_git_oid,
    is_repo_id_part, normalize_repo_path, validate_ref_name, validate_revision,
};
