//! Index records and their byte encodings (pure). Values in RocksDB are small fixed-layout
//! little-endian records rather than JSON, because the read path decodes them on every cache miss.

use serde::{Deserialize, Serialize};

use tessera_protocol::{GitOid, git_blob_oid, lfs_pointer};
use tessera_xet::hash::{ChunkHash, FileHash, Sha256, XorbHash};

/// A record that does not decode: the index is damaged (fsck reports it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} record ({len} bytes)")]
pub struct RecordError {
    /// Which kind of record.
    pub what: &'static str,
    /// Its length in bytes.
    pub len: usize,
}

/// One chunk of a xorb as stored locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Hash of the decompressed bytes.
    pub hash: ChunkHash,
    /// Serialized start (header included) within the xorb file.
    pub byte_start: u32,
    /// Serialized end (exclusive).
    pub byte_end: u32,
    /// Decompressed length.
    pub unpacked_len: u32,
}

/// A xorb's chunk table; `None` marks chunks not present locally (a sparse, partly fetched xorb).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorbMeta {
    /// The xorb's name.
    pub hash: XorbHash,
    /// Chunk `i` of the xorb, when present.
    pub chunks: Vec<Option<ChunkMeta>>,
}

impl XorbMeta {
    /// Whether every chunk is present.
    pub fn is_complete(&self) -> bool {
        self.chunks.iter().all(Option::is_some)
    }

    /// Serialized length of the present prefix/extent (end of the last present chunk).
    pub fn stored_len(&self) -> u64 {
        self.chunks.iter().flatten().map(|c| u64::from(c.byte_end)).max().unwrap_or(0)
    }

    /// Encodes as: count u32, then per chunk a presence byte and, if present, 44 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.chunks.len() * 45);
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for c in &self.chunks {
            match c {
                None => out.push(0),
                Some(c) => {
                    out.push(1);
                    out.extend_from_slice(c.hash.as_bytes());
                    for v in [c.byte_start, c.byte_end, c.unpacked_len] {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// Inverse of [`XorbMeta::encode`].
    pub fn decode(hash: XorbHash, bytes: &[u8]) -> Result<Self, RecordError> {
        let err = || RecordError { what: "xorb", len: bytes.len() };
        let mut r = Reader(bytes);
        let n = r.u32().ok_or_else(err)? as usize;
        if n > bytes.len() {
            return Err(err());
        }
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            chunks.push(match r.u8().ok_or_else(err)? {
                0 => None,
                1 => Some(ChunkMeta {
                    hash: ChunkHash::from_bytes(r.hash().ok_or_else(err)?),
                    byte_start: r.u32().ok_or_else(err)?,
                    byte_end: r.u32().ok_or_else(err)?,
                    unpacked_len: r.u32().ok_or_else(err)?,
                }),
                _ => return Err(err()),
            });
        }
        r.end().ok_or_else(err)?;
        Ok(Self { hash, chunks })
    }
}

/// A contiguous chunk range of one xorb, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The xorb holding the chunks.
    pub xorb: XorbHash,
    /// First chunk index.
    pub chunk_start: u32,
    /// One past the last chunk index.
    pub chunk_end: u32,
    /// Decompressed bytes in the range.
    pub unpacked_len: u32,
}

/// A file: its identity and how to rebuild it from xorbs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Xet file hash.
    pub hash: FileHash,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes (the Hub's LFS oid).
    pub sha256: Sha256,
    /// Terms in file order.
    pub terms: Vec<Term>,
}

impl FileRecord {
    /// Encodes as: size u64, sha256, count u32, then 44 bytes per term.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44 + self.terms.len() * 44);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(self.sha256.as_bytes());
        out.extend_from_slice(&(self.terms.len() as u32).to_le_bytes());
        for t in &self.terms {
            out.extend_from_slice(t.xorb.as_bytes());
            for v in [t.chunk_start, t.chunk_end, t.unpacked_len] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Inverse of [`FileRecord::encode`].
    pub fn decode(hash: FileHash, bytes: &[u8]) -> Result<Self, RecordError> {
        let err = || RecordError { what: "file", len: bytes.len() };
        let mut r = Reader(bytes);
        let size = r.u64().ok_or_else(err)?;
        let sha256 = Sha256::from_bytes(r.hash().ok_or_else(err)?);
        let n = r.u32().ok_or_else(err)? as usize;
        if n.checked_mul(44) != Some(r.0.len()) {
            return Err(err());
        }
        let mut terms = Vec::with_capacity(n);
        for _ in 0..n {
            terms.push(Term {
                xorb: XorbHash::from_bytes(r.hash().ok_or_else(err)?),
                chunk_start: r.u32().ok_or_else(err)?,
                chunk_end: r.u32().ok_or_else(err)?,
                unpacked_len: r.u32().ok_or_else(err)?,
            });
        }
        Ok(Self { hash, size, sha256, terms })
    }
}

/// One file of a repo revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Path inside the repo, `/`-separated, never escaping it.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Xet file hash of the content.
    pub file: FileHash,
    /// SHA-256 of the content.
    pub sha256: Sha256,
    /// Git blob id (40 hex) of what git stores: the content, or the LFS pointer. Stored as its
    /// hex string, so trees written before it was typed read back the same.
    pub git_oid: GitOid,
    /// Whether git holds an LFS pointer rather than the content.
    pub lfs: bool,
}

impl TreeEntry {
    /// An LFS entry, its git oid computed from the pointer.
    pub fn lfs(path: String, size: u64, file: FileHash, sha256: Sha256) -> Self {
        let git_oid = git_blob_oid(lfs_pointer(&sha256.to_string(), size).as_bytes());
        Self { path, size, file, sha256, git_oid, lfs: true }
    }

    /// Size of the LFS pointer file.
    pub fn pointer_size(&self) -> u64 {
        lfs_pointer(&self.sha256.to_string(), self.size).len() as u64
    }

    /// The etag clients key their cache on: sha256 for LFS files, git oid otherwise.
    pub fn etag(&self) -> String {
        if self.lfs { self.sha256.to_string() } else { self.git_oid.to_string() }
    }
}

/// Bounds-checked little-endian reader: every accessor returns `None` past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn hash(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// The terms of a file overlapping its bytes `[start, end)`, each with the file offset it starts
/// at: the one walk every reader, fetcher and planner of byte ranges shares.
pub fn terms_overlapping(
    terms: &[Term],
    start: u64,
    end: u64,
) -> impl Iterator<Item = (u64, &Term)> {
    terms
        .iter()
        .scan(0u64, |pos, t| {
            let at = *pos;
            *pos += u64::from(t.unpacked_len);
            Some((at, t))
        })
        .skip_while(move |(at, t)| at + u64::from(t.unpacked_len) <= start)
        .take_while(move |(at, _)| *at < end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_xet::hash::chunk_hash;

    #[test]
    fn records_round_trip_and_reject_truncation() {
        let c = ChunkMeta { hash: chunk_hash(b"x"), byte_start: 0, byte_end: 9, unpacked_len: 1 };
        let x = XorbMeta { hash: XorbHash::ZERO, chunks: vec![Some(c), None, Some(c)] };
        let enc = x.encode();
        assert_eq!(XorbMeta::decode(XorbHash::ZERO, &enc), Ok(x));
        for cut in 0..enc.len() {
            assert!(XorbMeta::decode(XorbHash::ZERO, &enc[..cut]).is_err());
        }
        let t = Term { xorb: XorbHash::ZERO, chunk_start: 1, chunk_end: 3, unpacked_len: 7 };
        let f =
            FileRecord { hash: FileHash::ZERO, size: 7, sha256: Sha256::of(b""), terms: vec![t] };
        let enc = f.encode();
        assert_eq!(FileRecord::decode(FileHash::ZERO, &enc), Ok(f));
        for cut in 0..enc.len() {
            assert!(FileRecord::decode(FileHash::ZERO, &enc[..cut]).is_err());
        }
    }
}
