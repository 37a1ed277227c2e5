//! Adopting bytes fetched from a remote as they arrive: whole chunks are written into the
//! (sparse) xorb files only at positions no index entry covers, fsynced, then indexed under the
//! hashes of their bytes. Nothing vouches for a chunk before its file is whole, so a file is
//! verified as a whole once present ([`Store::verify_file`], [`Store::verify_whole`]), and one
//! that fails has its chunks dropped from the index ([`Store::forget_file_chunks`]).

use std::collections::HashMap;

use super::codec::{unpack_unverified, unpack_unverified_into};
use super::db::{self, KvBatch};
use super::records::{ChunkMeta, FileRecord};
use super::{Result, Store, StoreError};
use tessera_xet::hash::{Sha256, Sha256Hasher, XorbHash, chunk_hash, file_hash};

/// Most bytes [`Store::sha256_advance`] reads back at once.
const HASH_READ: u32 = 4 << 20;

/// How far a file's SHA-256 has got: terms before `next_term` are hashed.
#[derive(Default)]
pub struct Sha256Walk {
    next_term: usize,
    sha: Sha256Hasher,
    /// Serialized chunks read back, and one chunk decoded: reused from read to read.
    raw: Vec<u8>,
    decoded: Vec<u8>,
}

impl Sha256Walk {
    /// The SHA-256 of every byte fed so far (the file's, once [`Store::sha256_advance`] said
    /// all terms are hashed).
    pub fn finish(self) -> Sha256 {
        self.sha.finish()
    }
}

impl Store {
    /// Adopts streamed chunks of a xorb whose file cannot be verified yet (a lazily fetched
    /// file): `bytes` are whole serialized chunks starting with chunk `first_chunk` at byte
    /// `byte_start` of the xorb. Each chunk must decode; its hash is computed from its bytes, and
    /// the file is verified as a whole once all of it is present (see [`Store::verify_file`]).
    /// Chunks the store holds already are skipped. They are readable on return and indexed once
    /// their bytes are durable (`pending.rs`; [`Store::flush`] forces it). Returns the chunks
    /// adopted.
    pub fn adopt_chunks(&self, xorb: &XorbHash, first_chunk: u32, byte_start: u64, bytes: &[u8]) -> Result<usize> {
        let (adopted, written) = {
            let _writing = self.writing();
            self.adopt_unlocked(xorb, first_chunk, byte_start, bytes)?
        };
        self.note_written(written)?;
        Ok(adopted)
    }

    /// [`Store::adopt_chunks`] under the writers' side of the eviction lock; returns the chunks
    /// adopted and the bytes written.
    fn adopt_unlocked(&self, xorb: &XorbHash, first_chunk: u32, byte_start: u64, bytes: &[u8]) -> Result<(usize, u64)> {
        let present = self.xorb_meta(xorb)?;
        let is_present = |idx: u32| present.as_ref().is_some_and(|m| m.chunks.get(idx as usize).is_some_and(Option::is_some));
        let mut new_chunks: Vec<(u32, ChunkMeta)> = Vec::new();
        let (mut pos, mut idx) = (0usize, first_chunk);
        while pos < bytes.len() {
            let malformed = |why: String| StoreError::MalformedXorb { xorb: *xorb, why };
            let len = chunk_len(&bytes[pos..])
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| pos + n <= bytes.len())
                .ok_or_else(|| malformed(format!("streamed range: bad chunk header at byte {}", byte_start + pos as u64)))?;
            let raw = &bytes[pos..pos + len];
            let start = byte_start + pos as u64;
            if !is_present(idx) {
                let data = unpack_unverified(raw).map_err(|why| malformed(format!("fetched chunk {idx}: {why}")))?;
                let byte_start = u32::try_from(start).map_err(|_| malformed(format!("chunk {idx} starts past 4 GiB")))?;
                let c = ChunkMeta { hash: chunk_hash(&data), byte_start, byte_end: byte_start + len as u32, unpacked_len: data.len() as u32 };
                // Absent positions are unindexed, so writing there cannot corrupt anything readable.
                self.inner.xorbs.write_unsynced(xorb, start, raw)?;
                new_chunks.push((idx, c));
                // A reader is usually right behind: serve it these bytes without reading and
                // hashing them again (the cache is keyed by the hash just computed).
                self.inner.cache.insert(c.hash, std::sync::Arc::new(data));
            }
            pos += len;
            idx += 1;
        }
        let n = new_chunks.len();
        let written = new_chunks.iter().map(|(_, c)| u64::from(c.byte_end - c.byte_start)).sum();
        if n > 0 {
            self.defer_index(*xorb, new_chunks)?;
        }
        Ok((n, written))
    }

    /// Checks a fully present file as a whole: its chunk hashes must make its Xet hash, then its
    /// bytes give its SHA-256. `None` when the Xet hash does not match.
    pub fn verify_whole(&self, record: &FileRecord) -> Result<Option<Sha256>> {
        if !self.verify_file(record)? {
            return Ok(None);
        }
        let mut walk = Sha256Walk::default();
        if !self.sha256_advance(record, &mut walk)? {
            let t = &record.terms[walk.next_term];
            return Err(StoreError::Missing { xorb: t.xorb, chunk_start: t.chunk_start, chunk_end: t.chunk_end });
        }
        Ok(Some(walk.sha.finish()))
    }

    /// Feeds the file's bytes to `walk`'s SHA-256 from where it stopped, term by term, while
    /// the terms are present; true once every term is hashed. A pull calls it as its bytes
    /// land, so the hash runs beside the transfer instead of re-reading the file after it:
    /// chunks still in the chunk cache (adopted moments ago) cost no read and no decode.
    pub fn sha256_advance(&self, record: &FileRecord, walk: &mut Sha256Walk) -> Result<bool> {
        while let Some(t) = record.terms.get(walk.next_term) {
            let Some(meta) = self.xorb_meta(&t.xorb)? else { return Ok(false) };
            let chunks: Option<Vec<ChunkMeta>> = (t.chunk_start..t.chunk_end).map(|i| meta.chunks.get(i as usize).copied().flatten()).collect();
            let Some(chunks) = chunks else { return Ok(false) };
            self.hash_chunks(&t.xorb, &chunks, walk)?;
            walk.next_term += 1;
        }
        Ok(true)
    }

    /// Feeds chunks' decoded bytes to `sha`: cached ones as they are, the others read back in
    /// runs of at most [`HASH_READ`] bytes (one read each) and decoded. Their chunk hashes are
    /// not checked here: the caller checks the file's Xet hash over them.
    fn hash_chunks(&self, xorb: &XorbHash, chunks: &[ChunkMeta], walk: &mut Sha256Walk) -> Result<()> {
        // Chunks `from..k` are misses waiting to be read back in one go.
        let mut from = 0;
        for (k, c) in chunks.iter().enumerate() {
            let hit = self.inner.cache.get(&c.hash);
            if from < k && (hit.is_some() || c.byte_end - chunks[from].byte_start > HASH_READ) {
                self.hash_read_back(xorb, &chunks[from..k], walk)?;
                from = k;
            }
            if let Some(data) = hit {
                walk.sha.update(&data);
                from = k + 1;
            }
        }
        self.hash_read_back(xorb, &chunks[from..], walk)
    }

    /// Reads adjacent chunks back from their xorb in one read and feeds their decoded bytes.
    fn hash_read_back(&self, xorb: &XorbHash, run: &[ChunkMeta], walk: &mut Sha256Walk) -> Result<()> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else { return Ok(()) };
        let base = first.byte_start;
        self.inner.xorbs.read_into(xorb, u64::from(base), u64::from(last.byte_end), &mut walk.raw)?;
        for c in run {
            let piece = walk.raw.get((c.byte_start - base) as usize..(c.byte_end - base) as usize);
            walk.decoded.clear();
            piece
                .and_then(|p| unpack_unverified_into(p, &mut walk.decoded).ok())
                .ok_or(StoreError::CorruptChunk { chunk: c.hash, why: "does not decode" })?;
            walk.sha.update(&walk.decoded);
        }
        Ok(())
    }

    /// Checks that a fully present file's chunks hash to its file hash.
    pub fn verify_file(&self, record: &FileRecord) -> Result<bool> {
        let mut leaves = Vec::new();
        for t in &record.terms {
            let meta = self.xorb_meta(&t.xorb)?.ok_or(StoreError::Missing { xorb: t.xorb, chunk_start: t.chunk_start, chunk_end: t.chunk_end })?;
            for idx in t.chunk_start..t.chunk_end {
                let c = meta.chunks.get(idx as usize).copied().flatten().ok_or(StoreError::Missing { xorb: t.xorb, chunk_start: idx, chunk_end: idx + 1 })?;
                leaves.push((c.hash, u64::from(c.unpacked_len)));
            }
        }
        Ok(file_hash(&leaves) == record.hash)
    }

    /// Drops a file's chunks from the index (not its record), so reads find them missing and
    /// fetch them again: the reaction to a lazily assembled file that failed [`verify_file`],
    /// where the bad chunk cannot be told from the good ones. The bytes stay in the xorb file
    /// until overwritten by the refetch or collected by `gc`.
    ///
    /// [`verify_file`]: Store::verify_file
    pub fn forget_file_chunks(&self, record: &FileRecord) -> Result<()> {
        let _guard = self.inner.meta_lock.lock();
        let mut batch = KvBatch::default();
        let mut by_xorb: HashMap<XorbHash, Vec<u32>> = HashMap::new();
        for t in &record.terms {
            by_xorb.entry(t.xorb).or_default().extend(t.chunk_start..t.chunk_end);
        }
        for (xorb, indices) in by_xorb {
            self.inner.forget_pending(&xorb, &indices);
            let Some(mut meta) = self.inner.db.xorb_meta(&xorb)? else { continue };
            for i in indices {
                if let Some(c) = meta.chunks.get_mut(i as usize).and_then(Option::take) {
                    batch.delete(db::Table::Chunk, c.hash.as_bytes().to_vec());
                }
            }
            db::put_xorb_adding(&mut batch, &meta, []);
        }
        self.inner.db.write(batch)?;
        self.inner.cache.clear();
        Ok(())
    }
}

/// Serialized length (header + payload) from a chunk header.
pub(crate) fn chunk_len(header: &[u8]) -> Option<u64> {
    let h = header.get(..8)?;
    Some(8 + u64::from(u32::from_le_bytes([h[1], h[2], h[3], 0])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_xet::testdata::splitmix;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// `data` ingested into `src` as one term: its record, xorb and the xorb's serialized chunks
    /// (what a remote would stream).
    fn one_xorb_file(src: &Store, data: &[u8]) -> std::result::Result<(FileRecord, XorbHash, Vec<u8>), Box<dyn std::error::Error>> {
        let record = src.file(&src.ingest_bytes(data)?.file)?.ok_or("no record")?;
        let [term] = record.terms.as_slice() else { return Err("expected one term".into()) };
        let meta = src.xorb_meta(&term.xorb)?.ok_or("no xorb meta")?;
        let last = meta.chunks.iter().flatten().map(|c| c.byte_end).max().ok_or("no chunks")?;
        let (xorb, bytes) = (term.xorb, std::fs::read(src.xorb_path(&term.xorb))?[..last as usize].to_vec());
        Ok((record, xorb, bytes))
    }

    /// A file assembled from ranges with one flipped byte fails `verify_file`, and forgetting
    /// its chunks makes them missing again (to be refetched) instead of served.
    #[test]
    fn a_lazily_assembled_file_with_a_bad_chunk_is_caught_and_forgotten() -> TestResult {
        let (src_home, dst_home) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let (src, dst) = (Store::open(src_home.path())?, Store::open(dst_home.path())?);
        let (record, xorb, mut bytes) = one_xorb_file(&src, &splitmix(600_000, 5))?;
        // Random data is stored raw, so a flipped payload byte still decodes: only the hash tells.
        bytes[20] ^= 0x40;
        dst.put_file(&record)?;
        dst.adopt_chunks(&xorb, 0, 0, &bytes)?;
        assert!(dst.is_complete(&record)?);
        assert!(!dst.verify_file(&record)?, "a flipped byte must fail the file hash");
        dst.forget_file_chunks(&record)?;
        assert!(!dst.is_complete(&record)?);
        assert!(matches!(dst.read_file_range(&record.hash, 0, 10), Err(StoreError::Missing { .. })));
        Ok(())
    }

    /// A remote's claimed SHA-256 never makes lazily fetched bytes findable under it, even once
    /// they verify against their Xet hash: only a SHA-256 computed from the bytes does.
    #[test]
    fn a_claimed_sha256_is_no_alias_until_the_bytes_give_it() -> TestResult {
        let (src_home, dst_home) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let (src, dst) = (Store::open(src_home.path())?, Store::open(dst_home.path())?);
        let (record, xorb, bytes) = one_xorb_file(&src, &splitmix(300_000, 9))?;
        let claimed = Sha256::from_bytes([7; 32]);
        dst.put_file_unverified(&FileRecord { sha256: claimed, ..record.clone() })?;
        dst.adopt_chunks(&xorb, 0, 0, &bytes)?;
        assert!(dst.verify_file(&record)?);
        assert_eq!(dst.file_by_sha256(&claimed)?, None, "a claimed SHA-256 became an alias");
        let computed = dst.verify_whole(&record)?.ok_or("does not verify")?;
        dst.put_file(&FileRecord { sha256: computed, ..record.clone() })?;
        assert_eq!(dst.file_by_sha256(&computed)?, Some(record.hash));
        Ok(())
    }

    /// Adopted chunks are readable at once and durable-and-indexed by the time the store
    /// closes; forgotten ones stay forgotten, even if they were pending when forgotten.
    #[test]
    fn adopted_chunks_read_now_persist_at_close_and_forgotten_ones_stay_gone() -> TestResult {
        let (src_home, dst_home) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let src = Store::open(src_home.path())?;
        let (good, bad) = (splitmix(300_000, 7), splitmix(300_000, 8));
        let mut xorbs = Vec::new();
        for data in [&good, &bad] {
            xorbs.push(one_xorb_file(&src, data)?);
        }
        {
            let dst = Store::open(dst_home.path())?;
            for (record, xorb, bytes) in &xorbs {
                dst.put_file(record)?;
                dst.adopt_chunks(xorb, 0, 0, bytes)?;
            }
            assert!(dst.read_file_range(&xorbs[0].0.hash, 0, good.len() as u64)? == good, "readable before any flush");
            dst.forget_file_chunks(&xorbs[1].0)?;
            // The flusher may hold the store a moment longer than this handle: wait for it to
            // close, or the reopen below finds RocksDB's lock still taken.
            assert!(dst.close(std::time::Duration::from_secs(30)), "the store did not close");
        }
        let dst = Store::open(dst_home.path())?;
        assert!(dst.read_file_range(&xorbs[0].0.hash, 0, good.len() as u64)? == good, "indexed at close");
        assert!(!dst.is_complete(&xorbs[1].0)?, "a forgotten chunk came back");
        Ok(())
    }

    /// A xorb's table is rewritten at every flush while its chunks land; each flush adds the
    /// dedup entries of its own chunks only, and every chunk's entry is there at the end.
    #[test]
    fn chunks_adopted_over_several_flushes_all_reach_the_dedup_index() -> TestResult {
        let (src_home, dst_home) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let (src, dst) = (Store::open(src_home.path())?, Store::open(dst_home.path())?);
        let (record, xorb, bytes) = one_xorb_file(&src, &splitmix(1_500_000, 11))?;
        let meta = src.xorb_meta(&xorb)?.ok_or("no xorb meta")?;
        let chunks: Vec<ChunkMeta> = meta.chunks.iter().flatten().copied().collect();
        assert!(chunks.len() >= 4, "the test needs several chunks");
        dst.put_file(&record)?;
        for (i, c) in chunks.iter().enumerate() {
            dst.adopt_chunks(&xorb, i as u32, u64::from(c.byte_start), &bytes[c.byte_start as usize..c.byte_end as usize])?;
            dst.flush()?;
        }
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(dst.chunk_location(&c.hash)?, Some((xorb, i as u32)), "chunk {i} left the dedup index");
        }
        assert_eq!(dst.xorb_meta(&xorb)?.map(|m| m.chunks), Some(meta.chunks));
        Ok(())
    }
}
