//! Any bytes: decoding a chunk never panics, and a success is consistent with its header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_xet::format::{ChunkHeader, MAX_CHUNK_LEN, decode_chunk_into};

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0xAA; 3];
    match decode_chunk_into(data, &mut out) {
        Ok(header) => {
            assert_eq!(out.len(), 3 + header.uncompressed_len as usize);
            assert!(header.serialized_len() <= data.len());
            assert!(out.len() <= 3 + MAX_CHUNK_LEN);
            assert_eq!(ChunkHeader::parse(&header.to_bytes()).ok(), Some(header));
        }
        Err(_) => assert_eq!(out, [0xAA; 3]),
    }
});
