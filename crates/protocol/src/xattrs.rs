//! The extended attributes a `tessera mount` puts on its files, and that readers of the mount
//! (`tessera serve`'s model metadata) read back: one list, so the two cannot drift apart.

/// The repo a file belongs to (`org/name`); on files and revision directories.
pub const REPO: &str = "user.tessera.repo";
/// The commit a file was read at (40 hex); on files and revision directories.
pub const COMMIT: &str = "user.tessera.commit";
/// The SHA-256 of the file's content; files only.
pub const SHA256: &str = "user.tessera.sha256";
/// The Xet file hash of the content; files only.
pub const XET_HASH: &str = "user.tessera.xet_hash";

/// Every attribute, in listing order.
pub const ALL: [&str; 4] = [REPO, COMMIT, SHA256, XET_HASH];

/// The short name of an attribute (`repo` for `user.tessera.repo`).
pub fn short_name(attr: &str) -> &str {
    attr.strip_prefix("user.tessera.").unwrap_or(attr)
}
