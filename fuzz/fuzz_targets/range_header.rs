//! Any text as a `Range` header: parsing never panics, every range it accepts resolves inside
//! the body, and the closed-range form a presigned URL accepts is disjoint, so an answer is never
//! larger than the bytes it names once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_protocol::http::{parse_closed_ranges, parse_range_header};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for spec in parse_range_header(text).unwrap_or_default() {
        for size in [0, 1, 1000, u64::MAX] {
            if let Some((a, b)) = spec.resolve(size) {
                assert!(a < b && b <= size);
            }
        }
    }
    if let Ok(mut ranges) = parse_closed_ranges(text) {
        assert!(!ranges.is_empty() && ranges.len() <= 1024);
        ranges.sort_unstable();
        assert!(ranges.iter().all(|(a, b)| a <= b));
        assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0));
    }
});
