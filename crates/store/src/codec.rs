//! The store's view of the chunk codec: pack a chunk for a xorb file, unpack it again.
//! A thin seam over `format`, so the store's I/O code does not depend on codec details.

use tessera_xet::format::{ChunkHeader, CompressionPolicy, decode_chunk_into, encode_chunk_into};
use tessera_xet::hash::{ChunkHash, chunk_hash};

use super::StoreError;

/// Appends `data` as one serialized chunk (header + payload, compression chosen per chunk as
/// xet-core does). Chunks never exceed the codec's limits, which the chunker guarantees.
pub(crate) fn pack_chunk_into(data: &[u8], out: &mut Vec<u8>) {
    if encode_chunk_into(data, CompressionPolicy::Auto, out).is_err() {
        // Only an over-long chunk can fail; the chunker never makes one. Store it raw.
        let len = (data.len() as u32).to_le_bytes();
        out.extend_from_slice(&[0, len[0], len[1], len[2], 0, len[0], len[1], len[2]]);
        out.extend_from_slice(data);
    }
}

/// Length of the serialized chunk at the start of `bytes` (header + payload), if it fits.
pub(crate) fn serialized_len(bytes: &[u8]) -> Option<usize> {
    let n = ChunkHeader::parse(bytes).ok()?.serialized_len();
    (bytes.len() >= n).then_some(n)
}

/// Decodes one serialized chunk (exactly `bytes`) without checking its hash.
pub(crate) fn unpack_unverified(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    unpack_unverified_into(bytes, &mut out)?;
    Ok(out)
}

/// [`unpack_unverified`], appending to `out` (a buffer the caller reuses).
pub(crate) fn unpack_unverified_into(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let header = decode_chunk_into(bytes, out).map_err(|e| e.to_string())?;
    if header.serialized_len() != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - header.serialized_len().min(bytes.len())));
    }
    Ok(())
}

/// Decodes one serialized chunk (exactly `bytes`) and checks it against `expected`.
pub(crate) fn unpack_chunk(bytes: &[u8], expected: &ChunkHash) -> Result<Vec<u8>, StoreError> {
    let data = unpack_unverified(bytes)
        .map_err(|_| StoreError::CorruptChunk { chunk: *expected, why: "does not decode" })?;
    if chunk_hash(&data) != *expected {
        return Err(StoreError::CorruptChunk { chunk: *expected, why: "hash mismatch" });
    }
    Ok(data)
}
