//! Tessera: model repositories that behave like local files.
//!
//! Layers, bottom up (see `docs/architecture.md`):
//! - pure leaves, crates of their own so Cargo enforces that they do no I/O: `tessera-xet`
//!   ([`hash`], [`chunking`], [`format`], [`testdata`]) and `tessera-protocol` ([`protocol`]:
//!   identities and wire types), re-exported here under their old paths;
//! - [`store`] (crate `tessera-store`, which can name only the two leaves): the embedded chunk
//!   store (RocksDB index + xorb files), synchronous, and the [`clock`];
//! - [`hub`] (crate `tessera-hub`, also over the leaves only): the async Hub/CAS client;
//! - [`server`]: the Hub-compatible server; [`sync`]: pull, push and the lazy remote for mounts;
//! - `mount` (feature `mount`): revisions as read-only files over FUSE, fetched lazily;
//! - `infer` (feature `infer`): ONNX models over the KServe v2 REST API;
//! - [`metrics`]: the Prometheus text exposition every server shares (a leaf);
//! - [`bench`]: end-to-end harnesses over the real binaries (`tessera bench`);
//! - `cli`: the only module that builds a runtime or reads the environment.
#![forbid(unsafe_code)]

pub use tessera_httpd as httpd;
pub use tessera_hub as hub;
#[cfg(feature = "infer")]
pub use tessera_infer as infer;
pub use tessera_metrics as metrics;
#[cfg(feature = "mount")]
pub use tessera_mount as mount;
pub use tessera_protocol as protocol;
pub use tessera_server as server;
pub use tessera_store as store;
pub use tessera_store::clock;
pub use tessera_sync as sync;
pub use tessera_xet::{chunking, format, hash, testdata};

pub mod bench;
pub mod cli;
