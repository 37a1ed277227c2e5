//! Any bytes as a reconstruction answer (v1 and v2): parsing never panics, and an answer that
//! passes `check_reconstruction` has numbers that cannot size more than the Xet limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_protocol::{
    MAX_STORED_XORB_LEN, ReconstructionV1, ReconstructionV2, check_reconstruction,
};
use tessera_xet::format::{MAX_XORB_BYTES, MAX_XORB_CHUNKS};

fn check_terms(offset: u64, terms: &[tessera_protocol::ReconstructionTerm]) {
    if check_reconstruction(offset, terms).is_err() {
        return;
    }
    for t in terms {
        assert!(t.range.start < t.range.end && t.range.end as usize <= MAX_XORB_CHUNKS);
        assert!(t.unpacked_length as usize <= MAX_XORB_BYTES);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v1) = serde_json::from_slice::<ReconstructionV1>(data) {
        check_terms(v1.offset_into_first_range, &v1.terms);
        for info in v1.fetch_info.values().flatten() {
            if info.url_range.is_within_xorb() {
                assert!(info.url_range.end < MAX_STORED_XORB_LEN);
            }
        }
    }
    if let Ok(v2) = serde_json::from_slice::<ReconstructionV2>(data) {
        check_terms(v2.offset_into_first_range, &v2.terms);
    }
});
