//! Ingest: chunk, hash and deduplicate files, pack new chunks into shared xorbs, then index.
//!
//! A file is read in windows; each window is chunked (in parallel for large windows), its chunks
//! hashed in parallel while SHA-256 runs beside them, and only chunks that neither the index nor
//! this session already holds are compressed and packed. Xorbs are written durably as they fill;
//! the index learns about them and about the files in one batch at [`IngestSession::commit`].

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::codec::pack_chunk_into;
use super::db::{self, KvBatch};
use super::records::{ChunkMeta, FileRecord, Term, XorbMeta};
use super::xorbs::StagingFile;
use super::{Result, Store, StoreError};
use tessera_xet::format::max_encoded_len;
use tessera_xet::chunking::stream::{StreamSummary, Window, chunk_stream};
use tessera_xet::hash::{ChunkHash, FileHash, Sha256, XorbHash, xorb_hash};

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
    /// Writes sealed xorbs in the background, started by the first seal.
    writer: Option<XorbWriter>,
    /// Buffers that packed chunks of earlier windows, kept for the next: packing a gigabyte
    /// into fresh allocations costs more in page faults than in compression.
    pack_buffers: Vec<Vec<u8>>,
}

/// Consecutive chunks of a window, packed back to back by one worker.
struct PackedGroup {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl PackedGroup {
    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| &self.bytes[start..end])
    }
}

/// Packs the chunks `which` of `w`, in order, as a few groups done in parallel (a few per core,
/// so uneven compression costs even out), reusing `buffers`.
fn pack_in_groups(w: &Window<'_>, which: &[usize], buffers: &mut Vec<Vec<u8>>) -> Vec<PackedGroup> {
    let per_group = which.len().div_ceil(4 * rayon::current_num_threads()).max(1);
    let jobs: Vec<(&[usize], Vec<u8>)> =
        which.chunks(per_group).map(|ids| (ids, buffers.pop().unwrap_or_default())).collect();
    jobs.into_par_iter()
        .map(|(ids, mut bytes)| {
            bytes.clear();
            bytes.reserve(ids.iter().map(|&i| max_encoded_len(w.chunk(i).len())).sum());
            let ends = ids
                .iter()
                .map(|&i| {
                    pack_chunk_into(w.chunk(i), &mut bytes);
                    bytes.len()
                })
                .collect();
            PackedGroup { bytes, ends }
        })
        .collect()
}

/// A thread that writes sealed xorbs durably while the session chunks and packs the next one.
/// The channel is a rendezvous, so at most one xorb waits besides the one being written.
struct XorbWriter {
    queue: SyncSender<(XorbHash, Vec<u8>)>,
    /// Buffers of written xorbs, emptied, for the next open xorb: reusing them saves faulting
    /// in (and the kernel zeroing) 64 MiB of fresh memory per xorb.
    spare: Receiver<Vec<u8>>,
    done: JoinHandle<Result<()>>,
}

impl XorbWriter {
    fn start(store: Store) -> Self {
        let (queue, jobs) = sync_channel::<(XorbHash, Vec<u8>)>(0);
        let (give_spare, spare) = sync_channel::<Vec<u8>>(2);
        let done = std::thread::spawn(move || {
            for (hash, mut bytes) in jobs {
                store.inner.xorbs.write_complete(&hash, &bytes)?;
                bytes.clear();
                let _ = give_spare.try_send(bytes);
            }
            Ok(())
        });
        Self { queue, spare, done }
    }

    /// Waits until every queued xorb is on disk; the first write error, if any.
    fn finish(self) -> Result<()> {
        drop(self.queue);
        self.done.join().unwrap_or_else(|_| Err(writer_panicked()))
    }
}

fn writer_panicked() -> StoreError {
    StoreError::io("write", Path::new("xorbs"), std::io::Error::other("xorb writer thread panicked"))
}

impl Store {
    /// A staging file under `tmp/` for bytes to ingest from (a download verified before it is
    /// indexed), named by `purpose` (a short name without `/`) and unique; removed when the
    /// returned guard drops.
    pub fn staging_file(&self, purpose: &'static str) -> StagingFile {
        StagingFile::new(self.inner.xorbs.staging_path(purpose))
    }

    /// Starts an ingest session.
    pub fn ingest_session(&self) -> IngestSession<'_> {
        IngestSession {
            store: self,
            open: OpenXorb::default(),
            sealed: Vec::new(),
            seen: HashMap::new(),
            files: Vec::new(),
            writer: None,
            pack_buffers: Vec::new(),
        }
    }

    /// Adds one file's bytes and commits.
    pub fn ingest_bytes(&self, data: &[u8]) -> Result<IngestReport> {
        self.ingest_reader(data)
    }

    /// Adds one file from a reader and commits.
    pub fn ingest_reader(&self, reader: impl Read + Send) -> Result<IngestReport> {
        let mut session = self.ingest_session();
        let report = session.add_reader(reader)?;
        session.commit()?;
        Ok(report)
    }
}

impl IngestSession<'_> {
    /// Chunks, hashes and packs one file read to its end.
    pub fn add_reader(&mut self, reader: impl Read + Send) -> Result<IngestReport> {
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
        let unknown: Vec<usize> = (0..hashes.len()).filter(|&i| known[i].is_none()).collect();
        let groups = pack_in_groups(w, &unknown, &mut self.pack_buffers);
        let mut packed = groups.iter().flat_map(PackedGroup::chunks);
        let (mut new_bytes, mut new_chunks) = (0u64, 0usize);
        for (i, hash) in hashes.iter().enumerate() {
            let len = w.chunk(i).len() as u32;
            let loc = match known[i] {
                Some(loc) => loc,
                None => {
                    let bytes = packed.next().unwrap_or_default();
                    match self.seen.get(hash) {
                        // A repeat inside this window: the first copy was just appended.
                        Some(loc) => *loc,
                        None => {
                            new_bytes += u64::from(len);
                            new_chunks += 1;
                            self.append(*hash, len, bytes)?
                        }
                    }
                }
            };
            extend_terms(terms, loc, len);
        }
        drop(packed);
        self.pack_buffers.extend(groups.into_iter().map(|g| g.bytes));
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
    fn append(&mut self, hash: ChunkHash, len: u32, packed: &[u8]) -> Result<(XorbRef, u32)> {
        if self.open.unpacked + len as usize > MAX_XORB_BYTES || self.open.chunks.len() >= MAX_XORB_CHUNKS {
            self.seal()?;
        }
        if self.open.bytes.capacity() == 0 {
            self.open.bytes = self.xorb_buffer();
        }
        let byte_start = self.open.bytes.len() as u32;
        self.open.bytes.extend_from_slice(packed);
        let meta = ChunkMeta { hash, byte_start, byte_end: self.open.bytes.len() as u32, unpacked_len: len };
        let loc = (XorbRef::Session(self.sealed.len()), self.open.chunks.len() as u32);
        self.open.chunks.push(meta);
        self.open.unpacked += len as usize;
        self.seen.insert(hash, loc);
        Ok(loc)
    }

    /// An empty buffer that holds a whole xorb: a written one's if the writer has one spare.
    fn xorb_buffer(&self) -> Vec<u8> {
        let spare = self.writer.as_ref().and_then(|w| w.spare.try_recv().ok());
        spare.unwrap_or_else(|| Vec::with_capacity(MAX_XORB_BYTES + MAX_XORB_CHUNKS * max_encoded_len(0)))
    }

    /// Writes the open xorb durably under its hash.
    fn seal(&mut self) -> Result<()> {
        if self.open.chunks.is_empty() {
            return Ok(());
        }
        let open = std::mem::take(&mut self.open);
        let leaves: Vec<(ChunkHash, u64)> = open.chunks.iter().map(|c| (c.hash, u64::from(c.unpacked_len))).collect();
        let hash = xorb_hash(&leaves);
        let existing = self.store.inner.db.xorb_meta(&hash)?;
        if !existing.as_ref().is_some_and(XorbMeta::is_complete) {
            self.write_in_background(hash, open.bytes)?;
        }
        self.sealed.push(XorbMeta { hash, chunks: open.chunks.into_iter().map(Some).collect() });
        Ok(())
    }

    /// Hands a sealed xorb to the writer thread; a failed writer's error surfaces here.
    fn write_in_background(&mut self, hash: XorbHash, bytes: Vec<u8>) -> Result<()> {
        let writer = self.writer.get_or_insert_with(|| XorbWriter::start(self.store.clone()));
        if writer.queue.send((hash, bytes)).is_err() {
            // The writer stopped at an error: report it.
            return self.writer.take().map_or(Ok(()), XorbWriter::finish).and(Err(writer_panicked()));
        }
        Ok(())
    }

    /// Seals the open xorb and indexes every xorb and file of the session in one batch, once
    /// every xorb is durable.
    pub fn commit(mut self) -> Result<Vec<FileRecord>> {
        self.seal()?;
        if let Some(writer) = self.writer.take() {
            writer.finish()?;
        }
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

