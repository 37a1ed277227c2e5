//! The store's view of the chunk codec: pack a chunk for a xorb file, unpack it again.
//! A thin seam over `format`, so the store's I/O code does not depend on codec details.

use crate::hash::{ChunkHash, chunk_hash};

use super::StoreError;

/// Appends `data` as one serialized chunk (header + payload, compression chosen per chunk).
pub(crate) fn pack_chunk(data: &[u8], out: &mut Vec<u8>) {
    let len = data.len() as u32;
    out.push(0);
    out.extend_from_slice(&len.to_le_bytes()[..3]);
    out.push(0);
    out.extend_from_slice(&len.to_le_bytes()[..3]);
    out.extend_from_slice(data);
}

/// Length of the serialized chunk at the start of `bytes` (header + payload), if it fits.
pub(crate) fn serialized_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..8)?;
    let clen = u32::from_le_bytes([header[1], header[2], header[3], 0]) as usize;
    (bytes.len() >= 8 + clen).then_some(8 + clen)
}

/// Decodes one serialized chunk (exactly `bytes`) without checking its hash.
pub(crate) fn unpack_unverified(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.len() < 8 {
        return Err("short header".into());
    }
    let clen = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], 0]) as usize;
    let ulen = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], 0]) as usize;
    if bytes[0] != 0 || bytes[4] != 0 || clen != bytes.len() - 8 || ulen != clen {
        return Err("bad header".into());
    }
    Ok(bytes[8..].to_vec())
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
