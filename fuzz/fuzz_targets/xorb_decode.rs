//! Any bytes: parsing a xorb never panics, and a success describes contiguous chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_xet::format::{XorbFooter, parse_xorb};

fuzz_target!(|data: &[u8]| {
    let _ = XorbFooter::split_stored(data);
    let Ok(xorb) = parse_xorb(data) else { return };
    let mut byte_end = 0;
    let mut unpacked_end = 0;
    for chunk in &xorb.chunks {
        assert_eq!(chunk.byte_start, byte_end);
        assert_eq!(chunk.unpacked_start, unpacked_end);
        byte_end = chunk.byte_end;
        unpacked_end += chunk.unpacked_len;
    }
    assert_eq!(byte_end as usize, xorb.body_len);
    if let Some(footer) = xorb.footer {
        assert_eq!(footer.hash, xorb.hash);
    }
});
