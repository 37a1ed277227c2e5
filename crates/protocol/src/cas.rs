//! JSON bodies of the Xet CAS API (`xet-protocol.md` §5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use tessera_xet::format::{MAX_XORB_BYTES, MAX_XORB_CHUNKS};
use tessera_xet::hash::XorbHash;

/// A half-open chunk-index range `[start, end)`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChunkRange {
    /// First chunk index.
    pub start: u32,
    /// One past the last chunk index.
    pub end: u32,
}

/// A byte range with an INCLUSIVE end, as in `url_range` and V2 `bytes`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct InclusiveByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

/// Longest stored xorb a fetch range may span: 64 MiB of chunk data, 8 header bytes per
/// chunk, and room for payloads larger than their data. A server's numbers past this (or past
/// the chunk limit) are refused before they size a buffer or a chunk table.
pub const MAX_STORED_XORB_LEN: u64 = 2 * MAX_XORB_BYTES as u64;

impl ChunkRange {
    /// Whether this is a non-empty range inside the Xet limit of 8192 chunks per xorb.
    pub fn is_within_xorb(&self) -> bool {
        self.start < self.end && self.end as usize <= MAX_XORB_CHUNKS
    }
}

impl InclusiveByteRange {
    /// Whether this is a range of a stored xorb of at most [`MAX_STORED_XORB_LEN`] bytes.
    pub fn is_within_xorb(&self) -> bool {
        self.start <= self.end && self.end < MAX_STORED_XORB_LEN
    }
}

impl ReconstructionTerm {
    /// Whether the term keeps to the Xet limits (chunk range, at most 64 MiB unpacked).
    pub fn is_within_xorb(&self) -> bool {
        self.range.is_within_xorb() && self.unpacked_length as usize <= MAX_XORB_BYTES
    }
}

/// Checks the numbers of a reconstruction from a server before they size anything: every term
/// within the Xet limits and the offset inside the first term.
pub fn check_reconstruction(offset: u64, terms: &[ReconstructionTerm]) -> Result<(), String> {
    if let Some(t) = terms.iter().find(|t| !t.is_within_xorb()) {
        return Err(format!(
            "term {} chunks {}..{} ({} bytes) is outside the Xet limits",
            t.hash, t.range.start, t.range.end, t.unpacked_length
        ));
    }
    let first = terms.first().map_or(0, |t| u64::from(t.unpacked_length));
    if offset > 0 && offset >= first {
        return Err(format!("offset {offset} is past the first term ({first} bytes)"));
    }
    Ok(())
}

/// One term of a reconstruction: a chunk range of one xorb.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReconstructionTerm {
    /// Xorb holding the chunks.
    pub hash: XorbHash,
    /// Decompressed length of the range.
    pub unpacked_length: u32,
    /// Chunk range within the xorb.
    pub range: ChunkRange,
}

/// V1 fetch info: one URL per merged chunk range.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FetchInfo {
    /// Chunk range this URL serves.
    pub range: ChunkRange,
    /// Presigned URL (no Authorization).
    pub url: String,
    /// Byte range of the stored xorb to request with `Range`.
    pub url_range: InclusiveByteRange,
}

/// `GET /v1/reconstructions/{file_id}` reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReconstructionV1 {
    /// Bytes to drop from the first term's decoded output.
    pub offset_into_first_range: u64,
    /// Ordered terms.
    pub terms: Vec<ReconstructionTerm>,
    /// Xorb hash (string form) -> fetch infos.
    pub fetch_info: BTreeMap<String, Vec<FetchInfo>>,
}

/// One range of a V2 xorb fetch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct XorbRangeV2 {
    /// Chunk range.
    pub chunks: ChunkRange,
    /// Its bytes in the stored xorb (inclusive end).
    pub bytes: InclusiveByteRange,
}

/// One V2 fetch: a URL and the ranges it authorises.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct XorbFetchV2 {
    /// Presigned URL.
    pub url: String,
    /// Ranges, sorted by chunk start.
    pub ranges: Vec<XorbRangeV2>,
}

/// `GET /v2/reconstructions/{file_id}` reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReconstructionV2 {
    /// Bytes to drop from the first term's decoded output.
    pub offset_into_first_range: u64,
    /// Ordered terms.
    pub terms: Vec<ReconstructionTerm>,
    /// Xorb hash (string form) -> fetches.
    pub xorbs: BTreeMap<String, Vec<XorbFetchV2>>,
}

/// Batch reconstruction reply (`GET /v1/reconstructions?file_id=...`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct BatchReconstruction {
    /// File id -> terms.
    pub files: BTreeMap<String, Vec<ReconstructionTerm>>,
    /// Xorb hash -> fetch infos (shared by all files).
    pub fetch_info: BTreeMap<String, Vec<FetchInfo>>,
}

/// Spec form of a batch-reconstruction POST body item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileKey {
    /// `default`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// File hash.
    pub hash: String,
}

/// `POST /v1/xorbs/{prefix}/{hash}` reply.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct XorbUploadResponse {
    /// False if the xorb was already stored.
    pub was_inserted: bool,
}

/// `POST /v1/shards` reply: 0 = already known, 1 = registered.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardUploadResponse {
    /// 0 or 1.
    pub result: u8,
}

/// One NDJSON event of `POST /v2/shards`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ShardEvent {
    /// Progress of verification.
    Validating {
        /// Items verified.
        verified: u64,
        /// Items in total.
        total: u64,
    },
    /// Terminal success.
    Result {
        /// 0 or 1 as in v1.
        result: u8,
    },
    /// Terminal failure.
    Error {
        /// What failed.
        message: String,
        /// Whether a retry can help.
        retryable: bool,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn v2_shape() {
        let r = ReconstructionV2 {
            offset_into_first_range: 0,
            terms: vec![ReconstructionTerm {
                hash: XorbHash::ZERO,
                unpacked_length: 5,
                range: ChunkRange { start: 0, end: 1 },
            }],
            xorbs: BTreeMap::new(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["terms"][0]["hash"], "0".repeat(64));
        assert_eq!(v["terms"][0]["range"]["end"], 1);
        let e = serde_json::to_string(&ShardEvent::Result { result: 1 }).unwrap();
        assert_eq!(e, r#"{"type":"result","result":1}"#);
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    fn term(start: u32, end: u32, unpacked_length: u32) -> ReconstructionTerm {
        ReconstructionTerm { hash: XorbHash::ZERO, unpacked_length, range: ChunkRange { start, end } }
    }

    #[test]
    fn numbers_past_the_xet_limits_are_refused() {
        assert!(check_reconstruction(5, &[term(0, 8192, 1 << 20)]).is_ok());
        assert!(check_reconstruction(0, &[term(u32::MAX - 1, u32::MAX, 10)]).is_err());
        assert!(check_reconstruction(0, &[term(3, 3, 10)]).is_err());
        assert!(check_reconstruction(0, &[term(0, 1, u32::MAX)]).is_err());
        assert!(check_reconstruction(10, &[term(0, 1, 10)]).is_err());
        let far = InclusiveByteRange { start: 0, end: u64::MAX };
        assert!(!far.is_within_xorb());
        assert!(InclusiveByteRange { start: 0, end: 1 << 20 }.is_within_xorb());
    }
}
