//! Any bytes as a commit body and as ids: the properties of `tessera_protocol::fuzz::commit_ndjson`, which the replay of
//! `fuzz/regressions/commit_ndjson/` checks too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tessera_protocol::fuzz::commit_ndjson(data));
