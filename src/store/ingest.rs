//! Ingest: chunk, hash and deduplicate files, pack new chunks into shared xorbs, then index.
//!
//! A file is read in windows; each window is chunked (in parallel for large windows), its chunks
//! hashed in parallel while SHA-256 runs beside them, and only chunks that neither the index nor
//! this session already holds are compressed and packed. Xorbs are written durably as they fill;
//! the index learns about them and about the files in one batch at [`IngestSession::commit`].

use std::collections::HashMap;
use std::io::Read;

use rayon::prelude::*;

use super::codec::pack_chunk;
use super::db::{self, KvBatch};
use super::records::{ChunkMeta, FileRecord, Term, XorbMeta};
use super::{Result, Store, StoreError};
use crate::chunking::stream::{StreamSummary, Window, chunk_stream};
use crate::hash::{ChunkHash, FileHash, Sha256, XorbHash, xorb_hash};

/// Uncompressed bytes after which a xorb is sealed (Xet's limit).
const MAX_XORB_BYTES: usize = 64 << 20;
/// Chunks after which a xorb is sealed (Xet's limit).
const MAX_XORB_CHUNKS: usize = 8192;

/// What adding one file did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    /// Xet file hash.
    pub file: FileHash,
    /// SHA-256 of the content.
    pub sha256: Sha256,
    /// Logical size.
    pub size: u64,
    /// Bytes of chunks that were not yet stored (uncompressed).
    pub new_bytes: u64,
    /// Chunks that were not yet stored.
    pub new_chunks: usize,
    /// All chunks of the file.
    pub total_chunks: usize,
}

/// A xorb of this session: sealed ones have a hash; the open one does not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum XorbRef {
    Stored(XorbHash),
    Session(usize),
}

#[derive(Debug, Clone, Copy)]
struct PendingTerm {
    xorb: XorbRef,
    chunk_start: u32,
    chunk_end: u32,
    unpacked_len: u32,
}

struct PendingFile {
    hash: FileHash,
    size: u64,
    sha256: Sha256,
    terms: Vec<PendingTerm>,
}

#[derive(Default)]
struct OpenXorb {
    bytes: Vec<u8>,
    chunks: Vec<ChunkMeta>,
    unpacked: usize,
}

/// Adds many files, sharing xorbs between them; nothing is indexed until [`commit`].
///
/// [`commit`]: IngestSession::commit
pub struct IngestSession<'s> {
    store: &'s Store,
    open: OpenXorb,
    /// Hash of each session xorb once sealed, by session index.
    sealed: Vec<XorbMeta>,
    seen: HashMap<ChunkHash, (XorbRef, u32)>,
    files: Vec<PendingFile>,
}

impl Store {
    /// Starts an ingest session.
    pub fn ingest_session(&self) -> IngestSession<'_> {
        IngestSession { store: self, open: OpenXorb::default(), sealed: Vec::new(), seen: HashMap::new(), files: Vec::new() }
    }

    /// Adds one file's bytes and commits.
    pub fn ingest_bytes(&self, data: &[u8]) -> Result<IngestReport> {
        self.ingest_reader(data)
    }

    /// Adds one file from a reader and commits.
    pub fn ingest_reader(&self, reader: impl Read) -> Result<IngestReport> {
        let mut session = self.ingest_session();
        let report = session.add_reader(reader)?;
        session.commit()?;
        Ok(report)
    }
}

impl IngestSession<'_> {
    /// Chunks, hashes and packs one file read to its end.
    pub fn add_reader(&mut self, reader: impl Read) -> Result<IngestReport> {
        let mut terms: Vec<PendingTerm> = Vec::new();
        let (mut new_bytes, mut new_chunks) = (0u64, 0usize);
        let summary = chunk_stream(reader, |w: &Window<'_>| -> Result<()> {
            let (nb, nc) = self.place(w, &mut terms)?;
            new_bytes += nb;
            new_chunks += nc;
            Ok(())
        })?;
        let StreamSummary { file_hash: hash, sha256, size, chunks } = summary;
        self.files.push(PendingFile { hash, size, sha256, terms });
        Ok(IngestReport { file: hash, sha256, size, new_bytes, new_chunks, total_chunks: chunks })
    }

    /// Dedups and packs the chunks of one window, extending the file's terms.
    fn place(&mut self, w: &Window<'_>, terms: &mut Vec<PendingTerm>) -> Result<(u64, usize)> {
        let hashes = w.hashes;
        let known = self.lookup(hashes)?;
        let packed: Vec<Option<Vec<u8>>> = (0..hashes.len())
            .into_par_iter()
            .map(|i| {
                known[i].is_none().then(|| {
                    let mut out = Vec::with_capacity(w.chunk(i).len() + 8);
                    pack_chunk(w.chunk(i), &mut out);
                    out
                })
            })
            .collect();
        let (mut new_bytes, mut new_chunks) = (0u64, 0usize);
        for (i, packed) in packed.into_iter().enumerate() {
            let len = w.chunk(i).len() as u32;
            let loc = match (known[i], self.seen.get(&hashes[i])) {
                (Some(loc), _) => loc,
                // A repeat inside this window: the first copy was just packed.
                (None, Some(loc)) => *loc,
                (None, None) => {
                    new_bytes += u64::from(len);
                    new_chunks += 1;
                    let bytes = packed.unwrap_or_default();
                    self.append(hashes[i], len, bytes)?
                }
            };
            extend_terms(terms, loc, len);
        }
        Ok((new_bytes, new_chunks))
    }

    /// Where each chunk already lives: in this session, or in the store's index.
    fn lookup(&self, hashes: &[ChunkHash]) -> Result<Vec<Option<(XorbRef, u32)>>> {
        let mut out: Vec<Option<(XorbRef, u32)>> = hashes.iter().map(|h| self.seen.get(h).copied()).collect();
        let missing: Vec<ChunkHash> = hashes.iter().zip(&out).filter(|(_, o)| o.is_none()).map(|(h, _)| *h).collect();
        let found = self.store.inner.db.chunk_locations(&missing)?;
        let mut found = found.into_iter();
        for slot in out.iter_mut().filter(|o| o.is_none()) {
            *slot = found.next().flatten().map(|(x, i)| (XorbRef::Stored(x), i));
        }
        Ok(out)
    }

    /// Appends a packed chunk to the open xorb, sealing it first if it is full.
    fn append(&mut self, hash: ChunkHash, len: u32, packed: Vec<u8>) -> Result<(XorbRef, u32)> {
        if self.open.unpacked + len as usize > MAX_XORB_BYTES || self.open.chunks.len() >= MAX_XORB_CHUNKS {
            self.seal()?;
        }
        let byte_start = self.open.bytes.len() as u32;
        self.open.bytes.extend_from_slice(&packed);
        let meta = ChunkMeta { hash, byte_start, byte_end: self.open.bytes.len() as u32, unpacked_len: len };
        let loc = (XorbRef::Session(self.sealed.len()), self.open.chunks.len() as u32);
        self.open.chunks.push(meta);
        self.open.unpacked += len as usize;
        self.seen.insert(hash, loc);
        Ok(loc)
    }

    /// Writes the open xorb durably under its hash.
    fn seal(&mut self) -> Result<()> {
        if self.open.chunks.is_empty() {
            return Ok(());
        }
        let open = std::mem::take(&mut self.open);
        let leaves: Vec<(ChunkHash, u64)> = open.chunks.iter().map(|c| (c.hash, u64::from(c.unpacked_len))).collect();
        let hash = xorb_hash(&leaves);
        let existing = self.store.xorb_meta(&hash)?;
        if !existing.as_ref().is_some_and(XorbMeta::is_complete) {
            self.store.inner.xorbs.write_complete(&hash, &open.bytes)?;
        }
        self.sealed.push(XorbMeta { hash, chunks: open.chunks.into_iter().map(Some).collect() });
        Ok(())
    }

    /// Seals the open xorb and indexes every xorb and file of the session in one batch.
    pub fn commit(mut self) -> Result<Vec<FileRecord>> {
        self.seal()?;
        let mut batch = KvBatch::default();
        for meta in &self.sealed {
            db::put_xorb(&mut batch, meta);
        }
        let records: Vec<FileRecord> = self.files.iter().map(|f| self.resolve(f)).collect::<Result<_>>()?;
        for r in &records {
            db::put_file(&mut batch, r);
        }
        self.store.inner.db.write(batch)?;
        Ok(records)
    }

    fn resolve(&self, f: &PendingFile) -> Result<FileRecord> {
        let terms = f
            .terms
            .iter()
            .map(|t| {
                let xorb = match t.xorb {
                    XorbRef::Stored(h) => h,
                    XorbRef::Session(i) => self.sealed.get(i).map(|m| m.hash).ok_or_else(|| {
                        StoreError::MalformedXorb { xorb: XorbHash::ZERO, why: "session xorb not sealed".into() }
                    })?,
                };
                Ok(Term { xorb, chunk_start: t.chunk_start, chunk_end: t.chunk_end, unpacked_len: t.unpacked_len })
            })
            .collect::<Result<_>>()?;
        Ok(FileRecord { hash: f.hash, size: f.size, sha256: f.sha256, terms })
    }
}

/// Extends the last term when the chunk continues it, else starts a new term.
fn extend_terms(terms: &mut Vec<PendingTerm>, (xorb, idx): (XorbRef, u32), len: u32) {
    if let Some(last) = terms.last_mut()
        && last.xorb == xorb
        && last.chunk_end == idx
        && last.unpacked_len.checked_add(len).is_some()
    {
        last.chunk_end += 1;
        last.unpacked_len += len;
        return;
    }
    terms.push(PendingTerm { xorb, chunk_start: idx, chunk_end: idx + 1, unpacked_len: len });
}

