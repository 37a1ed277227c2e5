//! Reads: file ranges through terms and chunks, and xorb-level access for servers and sync.

use std::sync::Arc;

use rayon::prelude::*;

use super::codec::unpack_chunk;
use super::db::{self, KvBatch};
use super::records::{ChunkMeta, FileRecord, XorbMeta};
use super::{Result, Store, StoreError};
use tessera_xet::hash::{ChunkHash, FileHash, XorbHash};

/// One chunk needed by a read, with the part of it the caller wants.
struct Piece {
    xorb: XorbHash,
    meta: ChunkMeta,
    skip: usize,
    take: usize,
}

impl Store {
    /// Bytes `[offset, offset + len)` of a file (clamped to its end).
    pub fn read_file_range(&self, file: &FileHash, offset: u64, len: u64) -> Result<Vec<u8>> {
        let record = self.file(file)?.ok_or(StoreError::UnknownFile(*file))?;
        self.read_record_range(&record, offset, len)
    }

    /// Like [`Store::read_file_range`] for a record already in hand.
    pub fn read_record_range(&self, record: &FileRecord, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_record_range_into(record, offset, len, &mut out)?;
        Ok(out)
    }

    /// Like [`Store::read_record_range`] into a buffer the caller keeps (cleared first): a
    /// server answering many reads reuses one buffer instead of faulting in fresh pages for
    /// every answer.
    pub fn read_record_range_into(&self, record: &FileRecord, offset: u64, len: u64, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        let pieces = self.pieces(record, offset, len)?;
        let parts = self.chunks_of(&pieces)?;
        out.reserve(pieces.iter().map(|p| p.take).sum());
        for (p, data) in pieces.iter().zip(parts) {
            let part = data.get(p.skip..p.skip + p.take).ok_or(StoreError::CorruptChunk {
                chunk: p.meta.hash,
                why: "shorter than its index entry",
            })?;
            out.extend_from_slice(part);
        }
        Ok(())
    }

    /// Decodes and verifies the chunks of `[offset, offset + len)` into the chunk cache without
    /// assembling them: read-ahead for a reader that will ask for them next.
    pub fn warm_record_range(&self, record: &FileRecord, offset: u64, len: u64) -> Result<()> {
        let pieces = self.pieces(record, offset, len)?;
        self.chunks_of(&pieces).map(drop)
    }

    /// The pieces of a read, its length clamped to the file's end.
    fn pieces(&self, record: &FileRecord, offset: u64, len: u64) -> Result<Vec<Piece>> {
        if offset > record.size {
            return Err(StoreError::OutOfRange { offset, len, size: record.size });
        }
        self.plan_read(record, offset, len.min(record.size - offset))
    }

    /// The decoded chunks of `pieces`, several decoded at once on the rayon pool.
    fn chunks_of(&self, pieces: &[Piece]) -> Result<Vec<Arc<Vec<u8>>>> {
        if pieces.len() > 4 {
            pieces.par_iter().map(|p| self.chunk_bytes(&p.xorb, &p.meta)).collect()
        } else {
            pieces.iter().map(|p| self.chunk_bytes(&p.xorb, &p.meta)).collect()
        }
    }

    /// The chunks covering `[offset, offset + len)`, failing with `Missing` for absent ones.
    fn plan_read(&self, record: &FileRecord, offset: u64, len: u64) -> Result<Vec<Piece>> {
        let end = offset + len;
        let mut pieces = Vec::new();
        let mut pos = 0u64;
        for term in &record.terms {
            let term_end = pos + u64::from(term.unpacked_len);
            if term_end <= offset || len == 0 {
                pos = term_end;
                continue;
            }
            if pos >= end {
                break;
            }
            let meta = self.xorb_meta(&term.xorb)?.ok_or(StoreError::Missing {
                xorb: term.xorb,
                chunk_start: term.chunk_start,
                chunk_end: term.chunk_end,
            })?;
            for idx in term.chunk_start..term.chunk_end {
                if pos >= end {
                    // Chunks past the range may be absent (a sparse, partly fetched xorb).
                    break;
                }
                let c = chunk_of(&meta, idx, term.chunk_end)?;
                let c_end = pos + u64::from(c.unpacked_len);
                if c_end > offset && pos < end {
                    let skip = offset.saturating_sub(pos);
                    let take = c_end.min(end) - pos - skip;
                    pieces.push(Piece { xorb: term.xorb, meta: c, skip: skip as usize, take: take as usize });
                }
                pos = c_end;
            }
        }
        Ok(pieces)
    }

    /// One chunk's decompressed bytes, from the cache or from disk (verified on the way in).
    pub(super) fn chunk_bytes(&self, xorb: &XorbHash, meta: &ChunkMeta) -> Result<Arc<Vec<u8>>> {
        self.note_read(xorb);
        if let Some(hit) = self.inner.cache.get(&meta.hash) {
            return Ok(hit);
        }
        let raw = match self.inner.xorbs.read(xorb, u64::from(meta.byte_start), u64::from(meta.byte_end)) {
            // Evicted after this read looked it up: a lazy reader fetches it again.
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { xorb: *xorb, chunk_start: 0, chunk_end: 0 });
            }
            other => other?,
        };
        let data = Arc::new(unpack_chunk(&raw, &meta.hash)?);
        if data.len() != meta.unpacked_len as usize {
            return Err(StoreError::CorruptChunk { chunk: meta.hash, why: "length differs from index" });
        }
        self.inner.cache.insert(meta.hash, data.clone());
        Ok(data)
    }

    /// Decompressed bytes of chunk `idx` of a xorb (for fsck and servers).
    pub fn read_chunk(&self, xorb: &XorbHash, idx: u32) -> Result<Vec<u8>> {
        let meta = self.xorb_meta(xorb)?.ok_or(StoreError::Missing { xorb: *xorb, chunk_start: idx, chunk_end: idx + 1 })?;
        let c = chunk_of(&meta, idx, idx + 1)?;
        let raw = self.inner.xorbs.read(xorb, u64::from(c.byte_start), u64::from(c.byte_end))?;
        unpack_chunk(&raw, &c.hash)
    }

    /// Raw serialized bytes `[start, end)` of a stored xorb, e.g. for a reconstruction URL.
    pub fn read_xorb_bytes(&self, xorb: &XorbHash, start: u64, end: u64) -> Result<Vec<u8>> {
        self.inner.xorbs.read(xorb, start, end)
    }

    /// Stores an uploaded xorb after recomputing every chunk hash and the xorb hash.
    /// Returns `false` when the xorb was already complete (idempotent re-upload).
    pub fn put_xorb(&self, hash: XorbHash, body: &[u8]) -> Result<bool> {
        if self.xorb_meta(&hash)?.is_some_and(|m| m.is_complete()) {
            return Ok(false);
        }
        let parsed = tessera_xet::format::parse_xorb(body).map_err(|e| StoreError::MalformedXorb { xorb: hash, why: e.to_string() })?;
        if parsed.chunks.is_empty() {
            return Err(StoreError::MalformedXorb { xorb: hash, why: "no chunks".into() });
        }
        if parsed.hash != hash {
            return Err(StoreError::XorbHashMismatch { expected: hash, actual: parsed.hash });
        }
        let stored_len = parsed.body_len;
        let chunks: Vec<ChunkMeta> = parsed
            .chunks
            .iter()
            .map(|c| ChunkMeta { hash: c.hash, byte_start: c.byte_start, byte_end: c.byte_end, unpacked_len: c.unpacked_len })
            .collect();
        {
            let _writing = self.writing();
            self.inner.xorbs.write_complete(&hash, &body[..stored_len])?;
            let mut batch = KvBatch::default();
            db::put_xorb(&mut batch, &XorbMeta { hash, chunks: chunks.into_iter().map(Some).collect() });
            self.inner.db.write(batch)?;
        }
        self.note_written(stored_len as u64)?;
        Ok(true)
    }

    /// Stores chunks `first..` of a xorb fetched as serialized bytes at byte offset `byte_start`,
    /// verifying each chunk against `expected` hashes (from a verified file reconstruction).
    /// `total_chunks` sizes the chunk table of a xorb seen for the first time.
    pub fn put_xorb_range(
        &self,
        xorb: XorbHash,
        first: u32,
        byte_start: u32,
        bytes: &[u8],
        expected: &[ChunkHash],
    ) -> Result<()> {
        // `first` comes from a server: a chunk table is never sized past the Xet limit.
        if first as usize + expected.len() > tessera_xet::format::MAX_XORB_CHUNKS {
            let why = format!("chunks {first}.. past the limit of {} per xorb", tessera_xet::format::MAX_XORB_CHUNKS);
            return Err(StoreError::MalformedXorb { xorb, why });
        }
        let metas = parse_range(&xorb, first, byte_start, bytes, expected)?;
        {
            let _writing = self.writing();
            self.index_range(xorb, first, byte_start, bytes, metas)?;
        }
        self.note_written(bytes.len() as u64)
    }

    /// Writes a verified range durably and indexes its chunks.
    fn index_range(&self, xorb: XorbHash, first: u32, byte_start: u32, bytes: &[u8], metas: Vec<ChunkMeta>) -> Result<()> {
        self.inner.xorbs.write_at(&xorb, u64::from(byte_start), bytes)?;
        let _guard = self.inner.meta_lock.lock();
        let mut meta = self.inner.db.xorb_meta(&xorb)?.unwrap_or(XorbMeta { hash: xorb, chunks: Vec::new() });
        let needed = first as usize + metas.len();
        if meta.chunks.len() < needed {
            meta.chunks.resize(needed, None);
        }
        let added: Vec<(u32, ChunkMeta)> = (first..).zip(metas).collect();
        for (i, m) in &added {
            meta.chunks[*i as usize] = Some(*m);
        }
        let mut batch = KvBatch::default();
        db::put_xorb_adding(&mut batch, &meta, added);
        self.inner.db.write(batch)
    }
}

/// Chunk `idx` of a xorb's table, or `Missing` (from `idx` to `until`) when absent.
fn chunk_of(meta: &XorbMeta, idx: u32, until: u32) -> Result<ChunkMeta> {
    meta.chunks.get(idx as usize).copied().flatten().ok_or(StoreError::Missing {
        xorb: meta.hash,
        chunk_start: idx,
        chunk_end: until.max(idx + 1),
    })
}

/// Decodes fetched chunks and checks each against its expected hash.
fn parse_range(xorb: &XorbHash, first: u32, byte_start: u32, bytes: &[u8], expected: &[ChunkHash]) -> Result<Vec<ChunkMeta>> {
    let mut metas = Vec::with_capacity(expected.len());
    let mut pos = 0usize;
    for (i, want) in expected.iter().enumerate() {
        let bad = |why: String| StoreError::MalformedXorb { xorb: *xorb, why: format!("chunk {}: {why}", first as usize + i) };
        let len = super::codec::serialized_len(&bytes[pos..]).ok_or_else(|| bad("truncated".into()))?;
        let data = unpack_chunk(&bytes[pos..pos + len], want)?;
        let start = byte_start as usize + pos;
        metas.push(ChunkMeta {
            hash: *want,
            byte_start: start as u32,
            byte_end: (start + len) as u32,
            unpacked_len: data.len() as u32,
        });
        pos += len;
    }
    if pos != bytes.len() {
        return Err(StoreError::MalformedXorb { xorb: *xorb, why: format!("{} trailing bytes", bytes.len() - pos) });
    }
    Ok(metas)
}
