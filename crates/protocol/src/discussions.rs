//! JSON bodies of the Hub's discussions and pull requests (`hub-api.md` §5.8), as
//! `huggingface_hub`'s `create_discussion`, `get_repo_discussions`, `get_discussion_details` and
//! `merge_pull_request` read them: the fields those functions index must be present.

use serde::{Deserialize, Serialize};

use crate::ids::{CommitId, RepoId, RepoType};

/// The Space SDKs the Hub accepts at creation (`huggingface_hub`'s `SPACES_SDK_TYPES`).
pub const SPACE_SDKS: [&str; 4] = ["gradio", "streamlit", "docker", "static"];

/// `POST /api/{type}s/{id}/discussions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NewDiscussion {
    /// Title (the Hub wants 3 to 200 characters).
    pub title: String,
    /// First comment.
    #[serde(default)]
    pub description: Option<String>,
    /// A pull request rather than a discussion.
    #[serde(default)]
    pub pull_request: bool,
}

/// Reply to [`NewDiscussion`]: the client then asks for the details by number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NewDiscussionReply {
    /// The discussion's number (`refs/pr/{num}` for a pull request).
    pub num: u64,
    /// `{repo url}/discussions/{num}`.
    pub url: String,
}

/// `{"name"}` objects (authors) and `{"name","type"}` (the repo) of discussion bodies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiscussionRepo {
    /// `ns/name` on the wire.
    pub name: RepoId,
    /// `model`, `dataset` or `space` on the wire.
    #[serde(rename = "type")]
    pub repo_type: RepoType,
}

/// An author.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiscussionAuthor {
    /// User name.
    pub name: String,
}

/// One discussion in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionSummary {
    /// Number.
    pub num: u64,
    /// Title.
    pub title: String,
    /// `draft`, `open`, `closed` or `merged`.
    pub status: String,
    /// Hub date.
    pub created_at: String,
    /// Who opened it.
    pub author: DiscussionAuthor,
    /// The repo.
    pub repo: DiscussionRepo,
    /// A pull request.
    pub is_pull_request: bool,
}

/// `GET /api/{type}s/{id}/discussions?p=N`: one page, `start` its first index in `count`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionPage {
    /// The page.
    pub discussions: Vec<DiscussionSummary>,
    /// Discussions matching the filters.
    pub count: usize,
    /// Index of the page's first discussion.
    pub start: usize,
}

/// What a pull request changes: its target branch and, once merged, the merge commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionChanges {
    /// Full ref of the target branch (`refs/heads/main`).
    pub base: String,
    /// The commit the merge made (or fast-forwarded to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit_id: Option<CommitId>,
}

/// `GET /api/{type}s/{id}/discussions/{num}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionDetails {
    /// The fields of a listing.
    #[serde(flatten)]
    pub summary: DiscussionSummary,
    /// Events, oldest first (`comment`, `commit`, `status-change`).
    pub events: Vec<serde_json::Value>,
    /// Target branch and merge commit.
    pub changes: DiscussionChanges,
    /// Paths both sides changed (what blocks a merge).
    pub files_with_conflicts: Vec<String>,
}

/// `POST .../discussions/{num}/merge` and `.../status` bodies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct DiscussionChange {
    /// New status (`open` or `closed`), for `/status`.
    #[serde(default)]
    pub status: Option<String>,
    /// Optional comment.
    #[serde(default)]
    pub comment: Option<String>,
}
