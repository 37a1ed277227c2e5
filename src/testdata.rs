//! Deterministic data for tests and benchmarks, in one place for unit tests, integration tests
//! and `benches/` alike.

/// `n` bytes of the SplitMix64 stream started at `seed`: incompressible, reproducible and cheap.
/// With seed 0 this is the spec's test vector 2 (xet-protocol.md), as in xet-core's tests.
pub fn splitmix(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(n);
    out
}
