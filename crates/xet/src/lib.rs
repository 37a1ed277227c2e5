//! The Xet format, pure: typed hashes, content-defined chunking, and the xorb and shard codecs.
//!
//! No I/O, no clock, no RocksDB: everything here is a function of its input bytes, so it builds
//! in seconds, runs under `cargo fuzz` (`fuzz/`) and is hash-exact with `hf_xet`
//! (`xet-protocol.md`).
//!
//! - [`hash`]: chunk, xorb, file and verification hashes (BLAKE3 keyed, Merkle);
//! - [`chunking`]: Gear content-defined chunking, serial and parallel;
//! - [`format`]: chunk compression (LZ4, byte grouping), xorbs and shards, validated before
//!   anything is allocated;
//! - [`testdata`]: reproducible data for tests and benchmarks.
#![forbid(unsafe_code)]

pub mod chunking;
pub mod format;
#[doc(hidden)]
pub mod fuzz;
pub mod hash;
pub mod testdata;
