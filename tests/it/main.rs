//! Integration tests: one binary (`autotests = false`), real components throughout: the real
//! `tessera` binary, RocksDB, and the reference Python clients from the set-up venv.
#![allow(unreachable_pub, missing_docs)]

mod architecture;
#[cfg(all(feature = "mount", feature = "infer"))]
mod bench_restart;
mod common;
mod deploy;
mod fault_proxy;
mod foundation;
mod gc_roots;
mod hub_bucket;
mod hostile_mirror;
mod hub_hostile;
mod hub_http;
mod hub_server;
#[cfg(feature = "mount")]
mod mount;
#[cfg(feature = "mount")]
mod mount_cap;
#[cfg(feature = "mount")]
mod mount_scale;
#[cfg(feature = "mount")]
mod node_service;
mod parity;
mod pull;
mod push;
#[cfg(feature = "infer")]
mod serve;
#[cfg(feature = "infer")]
mod serve_clients;
#[cfg(feature = "infer")]
mod serve_swap;
