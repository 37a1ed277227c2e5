//! Adopting bytes fetched from a remote: they are staged in `tmp/`, untrusted, then verified as a
//! whole file (every chunk hash, the Xet file hash, and the SHA-256 when known). Chunks are copied
//! into the (sparse) xorb files only at positions no index entry covers, and indexed only once
//! the whole file verifies; a corrupt or truncated download never touches readable data.

use std::collections::HashMap;

use super::codec::unpack_unverified;
use super::db::{self, KvBatch};
use super::records::{ChunkMeta, FileRecord, Term, XorbMeta};
use super::{Result, Store, StoreError};
use crate::hash::{ChunkHash, FileHash, Sha256, Sha256Hasher, XorbHash, chunk_hash, file_hash};

/// A fetched byte range of a xorb: its first chunk's index and its serialized bytes' extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRange {
    /// The xorb.
    pub xorb: XorbHash,
    /// Index of the chunk at `byte_start`.
    pub first_chunk: u32,
    /// First byte.
    pub byte_start: u64,
    /// One past the last byte.
    pub byte_end: u64,
    /// Staging file holding bytes `[byte_start, byte_end)` (from [`Store::staging_path`]).
    pub staged: std::path::PathBuf,
}

/// What a remote says a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFile {
    /// Xet file hash it must have.
    pub hash: FileHash,
    /// Size it must have.
    pub size: u64,
    /// SHA-256 it must have, when the remote told.
    pub sha256: Option<Sha256>,
}

impl Store {
    /// A fresh staging path for fetched bytes (under the store's `tmp/`).
    pub fn staging_path(&self, xorb: &XorbHash, byte_start: u64) -> std::path::PathBuf {
        self.inner.xorbs.staging_path(&format!("fetch-{xorb}-{byte_start}"))
    }

    /// Verifies a file rebuilt from `terms` out of present chunks and `fetched` ranges, then
    /// indexes the fetched chunks and the file in one batch. Nothing is indexed on failure.
    pub fn adopt_fetched(&self, expected: &ExpectedFile, terms: &[Term], fetched: &[FetchedRange]) -> Result<FileRecord> {
        let located = self.locate_fetched(fetched)?;
        let mut sha = Sha256Hasher::default();
        let mut leaves: Vec<(ChunkHash, u64)> = Vec::new();
        let mut new_chunks: HashMap<XorbHash, Vec<(u32, ChunkMeta)>> = HashMap::new();
        let mut metas: HashMap<XorbHash, Option<XorbMeta>> = HashMap::new();
        for t in terms {
            let meta = match metas.get(&t.xorb) {
                Some(m) => m.clone(),
                None => {
                    let m = self.xorb_meta(&t.xorb)?;
                    metas.insert(t.xorb, m.clone());
                    m
                }
            };
            for idx in t.chunk_start..t.chunk_end {
                let present = meta.as_ref().and_then(|m| m.chunks.get(idx as usize).copied().flatten());
                let (data, chunk) = match present {
                    Some(c) => (self.chunk_bytes(&t.xorb, &c)?.to_vec(), c),
                    None => {
                        let loc = located.get(&(t.xorb, idx)).ok_or(StoreError::Missing {
                            xorb: t.xorb,
                            chunk_start: idx,
                            chunk_end: idx + 1,
                        })?;
                        let raw = read_at(loc.staged, loc.staged_offset, loc.end - loc.start)?;
                        let (start, end) = (loc.start, loc.end);
                        let data = unpack_unverified(&raw).map_err(|why| StoreError::MalformedXorb {
                            xorb: t.xorb,
                            why: format!("fetched chunk {idx}: {why}"),
                        })?;
                        let c = ChunkMeta {
                            hash: chunk_hash(&data),
                            byte_start: start as u32,
                            byte_end: end as u32,
                            unpacked_len: data.len() as u32,
                        };
                        // Absent positions are unindexed, so writing unverified bytes there
                        // cannot corrupt anything readable; they count once the file verifies.
                        self.inner.xorbs.write_unsynced(&t.xorb, start, &raw)?;
                        new_chunks.entry(t.xorb).or_default().push((idx, c));
                        (data, c)
                    }
                };
                sha.update(&data);
                leaves.push((chunk.hash, data.len() as u64));
            }
        }
        let size: u64 = leaves.iter().map(|(_, n)| n).sum();
        let actual = file_hash(&leaves);
        let sha256 = sha.finish();
        if actual != expected.hash || size != expected.size || expected.sha256.is_some_and(|s| s != sha256) {
            return Err(StoreError::FetchedMismatch {
                file: expected.hash,
                why: format!("got file hash {actual}, {size} bytes, sha256 {sha256}"),
            });
        }
        let record = FileRecord { hash: expected.hash, size, sha256, terms: terms.to_vec() };
        self.index_chunks(new_chunks, Some(&record))?;
        Ok(record)
    }

    /// Indexes the chunks of fetched ranges whose file cannot be verified yet (a random read of a
    /// lazily fetched file). Each chunk must decode; its hash is computed from its bytes, and the
    /// file is verified as a whole once all of it is present (see [`Store::verify_file`]).
    pub fn adopt_unverified(&self, fetched: &[FetchedRange]) -> Result<usize> {
        let located = self.locate_fetched(fetched)?;
        let mut new_chunks: HashMap<XorbHash, Vec<(u32, ChunkMeta)>> = HashMap::new();
        for ((xorb, idx), loc) in &located {
            let present = self.xorb_meta(xorb)?.is_some_and(|m| m.chunks.get(*idx as usize).is_some_and(Option::is_some));
            if present {
                continue;
            }
            let raw = read_at(loc.staged, loc.staged_offset, loc.end - loc.start)?;
            let data = unpack_unverified(&raw)
                .map_err(|why| StoreError::MalformedXorb { xorb: *xorb, why: format!("fetched chunk {idx}: {why}") })?;
            self.inner.xorbs.write_unsynced(xorb, loc.start, &raw)?;
            let c = ChunkMeta { hash: chunk_hash(&data), byte_start: loc.start as u32, byte_end: loc.end as u32, unpacked_len: data.len() as u32 };
            new_chunks.entry(*xorb).or_default().push((*idx, c));
        }
        let n = new_chunks.values().map(Vec::len).sum();
        self.index_chunks(new_chunks, None)?;
        Ok(n)
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
            let Some(mut meta) = self.xorb_meta(&xorb)? else { continue };
            for i in indices {
                if let Some(c) = meta.chunks.get_mut(i as usize).and_then(Option::take) {
                    batch.delete(db::Table::Chunk, c.hash.as_bytes().to_vec());
                }
            }
            db::put_xorb(&mut batch, &meta);
        }
        self.inner.db.write(batch)?;
        self.inner.cache.clear();
        Ok(())
    }

    /// Where every chunk inside the fetched ranges is, by walking the staged chunk headers.
    fn locate_fetched<'f>(&self, fetched: &'f [FetchedRange]) -> Result<HashMap<(XorbHash, u32), Located<'f>>> {
        let mut out = HashMap::new();
        for f in fetched {
            let total = f.byte_end - f.byte_start;
            let (mut pos, mut idx) = (0u64, f.first_chunk);
            while pos < total {
                let header = read_at(&f.staged, pos, 8.min(total - pos))?;
                let len = chunk_len(&header).filter(|n| pos + n <= total).ok_or_else(|| StoreError::MalformedXorb {
                    xorb: f.xorb,
                    why: format!("fetched range: bad chunk header at byte {}", f.byte_start + pos),
                })?;
                let start = f.byte_start + pos;
                out.insert((f.xorb, idx), Located { staged: &f.staged, staged_offset: pos, start, end: start + len });
                pos += len;
                idx += 1;
            }
        }
        Ok(out)
    }

    /// Syncs the xorb files the chunks were written to, then indexes the chunks (and the file,
    /// if given) in one batch.
    fn index_chunks(&self, new_chunks: HashMap<XorbHash, Vec<(u32, ChunkMeta)>>, record: Option<&FileRecord>) -> Result<()> {
        for xorb in new_chunks.keys() {
            self.inner.xorbs.sync(xorb)?;
        }
        let _guard = self.inner.meta_lock.lock();
        let mut batch = KvBatch::default();
        for (xorb, chunks) in &new_chunks {
            let mut meta = self.xorb_meta(xorb)?.unwrap_or(XorbMeta { hash: *xorb, chunks: Vec::new() });
            for (idx, c) in chunks {
                let i = *idx as usize;
                if meta.chunks.len() <= i {
                    meta.chunks.resize(i + 1, None);
                }
                meta.chunks[i] = Some(*c);
            }
            db::put_xorb(&mut batch, &meta);
        }
        if let Some(record) = record {
            db::put_file(&mut batch, record);
        }
        self.inner.db.write(batch)
    }
}

/// A fetched chunk: its place in the staging file and in the xorb.
struct Located<'f> {
    staged: &'f std::path::Path,
    staged_offset: u64,
    start: u64,
    end: u64,
}

/// Serialized length (header + payload) from a chunk header.
fn chunk_len(header: &[u8]) -> Option<u64> {
    let h = header.get(..8)?;
    Some(8 + u64::from(u32::from_le_bytes([h[1], h[2], h[3], 0])))
}

fn read_at(path: &std::path::Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).map_err(|e| StoreError::io("read", path, e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::splitmix;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// A file assembled from ranges with one flipped byte fails `verify_file`, and forgetting
    /// its chunks makes them missing again (to be refetched) instead of served.
    #[test]
    fn a_lazily_assembled_file_with_a_bad_chunk_is_caught_and_forgotten() -> TestResult {
        let (src_home, dst_home) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let (src, dst) = (Store::open(src_home.path())?, Store::open(dst_home.path())?);
        let data = splitmix(600_000, 5);
        let record = src.file(&src.ingest_bytes(&data)?.file)?.ok_or("no record")?;
        let [term] = record.terms.as_slice() else { return Err("expected one term".into()) };
        let mut bytes = std::fs::read(src.xorb_path(&term.xorb))?;
        let meta = src.xorb_meta(&term.xorb)?.ok_or("no xorb meta")?;
        let last = meta.chunks.iter().flatten().map(|c| c.byte_end).max().ok_or("no chunks")?;
        bytes.truncate(last as usize);
        // Random data is stored raw, so a flipped payload byte still decodes: only the hash tells.
        bytes[20] ^= 0x40;
        let staged = dst.staging_path(&term.xorb, 0);
        std::fs::write(&staged, &bytes)?;
        dst.put_file(&record)?;
        let range = FetchedRange { xorb: term.xorb, first_chunk: 0, byte_start: 0, byte_end: u64::from(last), staged };
        dst.adopt_unverified(&[range])?;
        assert!(dst.is_complete(&record)?);
        assert!(!dst.verify_file(&record)?, "a flipped byte must fail the file hash");
        dst.forget_file_chunks(&record)?;
        assert!(!dst.is_complete(&record)?);
        assert!(matches!(dst.read_file_range(&record.hash, 0, 10), Err(StoreError::Missing { .. })));
        Ok(())
    }
}
