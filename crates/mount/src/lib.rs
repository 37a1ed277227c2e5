//! Any revision of any model as read-only files: `MOUNTPOINT/<org>/<name>@<rev>/<path>`.
//!
//! - [`vfs`]: the filesystem without FUSE (inodes, lookup, readdir, read, xattrs), returning
//!   [`Errno`]; revisions resolve on first lookup and stay pinned (see [`VfsOptions::ref_ttl`]).
//! - `fetch`: missing bytes through a [`RemoteSource`](tessera_store::RemoteSource), with a
//!   deadline and sequential prefetch.
//! - `flat`: flat copies of fully-present files for FUSE passthrough.
//! - [`errno`]: the one mapping from store and remote failures to errno values.
//! - [`fuse`]: the thin fuser adapter, mounting and unmounting.
//! - [`metrics`]: what the mount did (bytes served, hits and misses, fetches, errors).
//!
//! The mount sees only `store` (and its `RemoteSource` trait); the CLI plugs in the remote.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tessera_mount::{ROOT_INO, Vfs, VfsOptions};
//! use tessera_store::{RevisionKey, Store, TreeEntry};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let content = b"{\"model_type\": \"bert\"}";
//! let added = store.ingest_bytes(content)?;
//! let commit = tessera_protocol::CommitId::parse("0123456789abcdef0123456789abcdef01234567")?;
//! let entry = TreeEntry { path: "config.json".into(), size: added.size, file: added.file,
//!     sha256: added.sha256, git_oid: tessera_protocol::git_blob_oid(content), lfs: false };
//! store.put_tree(&commit, &[entry])?;
//! let repo = tessera_protocol::RepoId::parse("org/bert")?;
//! let key = RevisionKey::new(tessera_protocol::RepoType::Model, repo, "main")?;
//! store.put_ref(&key, &commit, 0, None)?;
//!
//! let vfs = Vfs::new(store, None, VfsOptions::default());
//! let org = vfs.lookup(ROOT_INO, "org")?.attr.ino;
//! let rev = vfs.lookup(org, "bert@main")?.attr.ino;
//! let file = vfs.lookup(rev, "config.json")?.attr.ino;
//! assert_eq!(vfs.read(file, 2, 10)?, b"model_type");
//! assert_eq!(vfs.getxattr(file, "user.tessera.commit")?, commit.as_str().as_bytes());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod errno;
mod fetch;
mod flat;
pub mod fuse;
pub mod metrics;
mod names;
pub mod vfs;

#[cfg(test)]
mod tests;

pub use errno::Errno;
pub use fuse::{MountConfig, MountError, Mounted, mount};
pub use metrics::{MountMetrics, MountSnapshot};
pub use vfs::{Attr, DirEntry, Entry, Kind, ROOT_INO, Vfs, VfsOptions};
