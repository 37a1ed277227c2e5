//! Tessera: model repositories that behave like local files.
//!
//! Layers, bottom up (see `docs/architecture.md`):
//! - pure leaves: [`hash`] (typed Xet hashes), [`chunking`] (Gear CDC), [`format`] (xorb and
//!   shard codecs);
//! - [`store`]: the embedded chunk store (RocksDB index + xorb files), synchronous;
//! - [`protocol`]: Hub and Xet CAS wire types (pure); [`server`]: the Hub-compatible server;
//!   [`hub`]: the async Hub/CAS client; [`sync`]: pull and the lazy remote for mounts;
//! - `mount` (feature `mount`): revisions as read-only files over FUSE, fetched lazily;
//! - `infer` (feature `infer`): ONNX models over the KServe v2 REST API;
//! - [`bench`]: end-to-end harnesses over the real binaries (`tessera bench`);
//! - `cli`: the only module that builds a runtime or reads the environment.
#![forbid(unsafe_code)]

pub mod bench;
pub mod chunking;
pub mod cli;
pub mod format;
pub mod hash;
pub mod httpd;
pub mod hub;
pub mod protocol;
pub mod server;
#[cfg(feature = "mount")]
pub mod mount;
#[cfg(feature = "infer")]
pub mod infer;
pub mod store;
pub mod sync;
pub mod testdata;
