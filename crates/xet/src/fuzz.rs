//! The properties the decoders' fuzz targets check, one function per target (`fuzz/`). The
//! fuzz targets and the replay of their kept inputs (`tests/fuzz_regressions.rs`) both call
//! these, so a kept input is checked against the same assertions it once broke. Each function
//! panics when its property fails: that is how a fuzzer learns of it.

use crate::format::{ChunkHeader, MAX_CHUNK_LEN, Shard, XorbFooter, decode_chunk_into, parse_xorb};

/// Decoding a chunk never panics; a success wrote exactly the declared length after what the
/// buffer held, and a failure left the buffer as it was.
pub fn chunk_decode(data: &[u8]) {
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
}

/// Parsing a xorb never panics, and a success describes contiguous chunks.
pub fn xorb_decode(data: &[u8]) {
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
}

/// Decoding a shard never panics, and an upload-form shard re-encodes to itself.
pub fn shard_decode(data: &[u8]) {
    let Ok(shard) = Shard::decode(data) else { return };
    if shard.footer.is_none() {
        let again = shard.encode_upload().ok().and_then(|bytes| Shard::decode(&bytes).ok());
        assert_eq!(again.as_ref(), Some(&shard));
    }
}
