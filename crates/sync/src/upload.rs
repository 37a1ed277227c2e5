//! Building a push's new xorbs from the files' bytes and sending them, then the shards.
//!
//! One blocking thread reads the new chunks, compresses them on every core (checking each
//! against the hash taken when the file was scanned) into xorbs and hands each finished xorb to
//! the async side, which sends a few at a time. A xorb the CAS already holds is skipped; each
//! xorb the CAS holds afterwards is noted in the push cache ([`ShardCache`]), so a later push
//! (or a re-run after a kill) knows the remote has its chunks.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;

use super::SyncError;
use super::dedup::CasSession;
use super::fetch::blocking;
use super::plan::{NewChunk, shard_xorb};
use super::shard_cache::ShardCache;
use tessera_xet::format::{BuiltXorb, CHUNK_HEADER_LEN, CompressionPolicy, Shard, ShardXorb, XorbChunk, encode_chunk};
use tessera_xet::hash::{ChunkHash, XorbHash, chunk_hash, xorb_hash};

/// Xorbs sent at the same time (each up to 64 MiB in memory).
const XORB_CONCURRENCY: usize = 2;
/// Xorbs alive at once: those being sent and the one being built. Each slot is taken before a
/// xorb is built and given back once it is sent, so a push of any size holds at most this many
/// 64 MiB bodies (plus the one being built's source bytes), whatever the file size.
const XORB_SLOTS: usize = XORB_CONCURRENCY + 1;

/// The bytes of one file the new xorbs read from.
pub(crate) struct Source {
    /// Where the file is.
    pub(crate) abs: PathBuf,
    /// Its chunks as scanned.
    pub(crate) chunks: Vec<(ChunkHash, u32)>,
}

/// Where a push's xorbs go: the CAS (absent when the repo does not exist yet in a dry run),
/// whether to actually send, the cache noting what the CAS holds, and progress.
pub(crate) struct XorbTarget<'a> {
    pub(crate) cas: Option<&'a CasSession>,
    pub(crate) dry_run: bool,
    pub(crate) cache: Option<&'a ShardCache>,
    pub(crate) advance: &'a (dyn Fn(u64) + Sync),
}

/// What sending the new xorbs did.
#[derive(Debug, Default)]
pub(crate) struct SentXorbs {
    /// The hash of each planned xorb, in plan order.
    pub(crate) hashes: Vec<XorbHash>,
    /// Their shard entries.
    pub(crate) entries: Vec<ShardXorb>,
    /// Xorbs sent (or that a dry run would send).
    pub(crate) sent: usize,
    /// Their serialized bytes.
    pub(crate) bytes: u64,
    /// Their chunks.
    pub(crate) chunks: usize,
}

/// One finished xorb on its way out.
struct Outcome {
    n: usize,
    hash: XorbHash,
    entry: ShardXorb,
    sent: Option<(u64, usize)>,
}

/// Builds the planned xorbs and sends those the CAS lacks.
pub(crate) async fn send_xorbs(
    target: &XorbTarget<'_>,
    plan: Vec<Vec<NewChunk>>,
    sources: Vec<Source>,
    first_chunks: HashSet<ChunkHash>,
) -> Result<SentXorbs, SyncError> {
    let total = plan.len();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(XORB_SLOTS));
    let (tx, rx) = tokio::sync::mpsc::channel::<Built>(1);
    let producer_slots = slots.clone();
    let producer = tokio::task::spawn_blocking(move || build_all(plan, &sources, &tx, &producer_slots));
    let first_chunks = &first_chunks;
    let built =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let sent: Result<Vec<Outcome>, SyncError> = built
        .map(|(n, x, slot)| async move {
            let outcome = send_one(target, n, x, first_chunks).await;
            drop(slot);
            outcome
        })
        .buffer_unordered(XORB_CONCURRENCY)
        .try_collect()
        .await;
    producer.await.map_err(|e| SyncError::Internal(e.to_string()))??;
    let mut outcomes = sent?;
    if outcomes.len() != total {
        return Err(SyncError::Internal(format!("built {} of {total} xorbs", outcomes.len())));
    }
    outcomes.sort_by_key(|o| o.n);
    let mut out = SentXorbs::default();
    for o in outcomes {
        if let Some((bytes, chunks)) = o.sent {
            out.sent += 1;
            out.bytes += bytes;
            out.chunks += chunks;
        }
        out.hashes.push(o.hash);
        out.entries.push(o.entry);
    }
    Ok(out)
}

/// Sends one xorb unless the CAS has it; notes it in the cache once the CAS holds it.
async fn send_one(
    target: &XorbTarget<'_>,
    n: usize,
    x: BuiltXorb,
    first_chunks: &HashSet<ChunkHash>,
) -> Result<Outcome, SyncError> {
    let entry = shard_xorb(x.hash, x.body.len(), &x.chunks, first_chunks);
    let (hash, chunks, unpacked) = (x.hash, x.chunks.len(), entry.unpacked_len());
    let body = Bytes::from(x.body);
    let len = body.len() as u64;
    let sent = match target.cas {
        None => Some((len, chunks)),
        Some(cas) => {
            let auth = cas.auth().await?;
            let held = cas.hub().xorb_exists(&auth, &hash).await?;
            if !held && !target.dry_run {
                cas.hub().upload_xorb(&auth, &hash, body).await?;
            }
            if let (Some(cache), false) = (target.cache, target.dry_run) {
                note(cache, &entry).await;
            }
            (!held).then_some((len, chunks))
        }
    };
    (target.advance)(unpacked);
    Ok(Outcome { n, hash, entry, sent })
}

/// Notes a xorb the CAS holds in the push cache (best effort).
async fn note(cache: &ShardCache, entry: &ShardXorb) {
    let (cache, entry) = (cache.clone(), entry.clone());
    let noted =
        blocking(move || cache.record(&entry).map_err(SyncError::io(std::path::Path::new("push-cache")))).await;
    if let Err(e) = noted {
        tracing::warn!(error = %e, "could not note a pushed xorb in the push cache");
    }
}

/// A built xorb, its place in the plan, and the slot it holds until sent.
type Built = (usize, BuiltXorb, tokio::sync::OwnedSemaphorePermit);

/// Source bytes read and compressed at a time while a xorb is built: the xorb's body grows by
/// one piece at a time, so building a xorb costs its body plus one piece (not its source, its
/// encoded chunks and its body at once, three times its size).
const PIECE_BYTES: u64 = 2 << 20;

/// Builds every planned xorb in order, each once a slot is free, handing each to `tx`.
fn build_all(
    plan: Vec<Vec<NewChunk>>,
    sources: &[Source],
    tx: &tokio::sync::mpsc::Sender<Built>,
    slots: &std::sync::Arc<tokio::sync::Semaphore>,
) -> Result<(), SyncError> {
    let mut reader = ChunkReader::new(sources);
    let runtime = tokio::runtime::Handle::current();
    for (n, chunks) in plan.into_iter().enumerate() {
        let Ok(slot) = runtime.block_on(slots.clone().acquire_owned()) else { return Ok(()) };
        if tx.blocking_send((n, build_xorb(&mut reader, &chunks)?, slot)).is_err() {
            // The sending side stopped on an error of its own, which it reports.
            return Ok(());
        }
    }
    Ok(())
}

/// Builds one xorb from its planned chunks, reading and compressing them a piece at a time
/// through one reused read buffer.
fn build_xorb(reader: &mut ChunkReader<'_>, chunks: &[NewChunk]) -> Result<BuiltXorb, SyncError> {
    let pieces = reader.pieces(&runs(chunks), PIECE_BYTES)?;
    let source_bytes = pieces.iter().map(|(_, _, bytes)| bytes).sum::<u64>();
    let mut xorb = XorbBody::with_capacity(source_bytes, chunks.len());
    let mut buf = Vec::new();
    for (file, range, _) in pieces {
        let run = reader.read_run((file, range), buf)?;
        xorb.append(&run)?;
        buf = run.buf;
    }
    Ok(xorb.finish())
}

/// A xorb's serialized chunks as they are appended, with each chunk's offsets: what
/// [`tessera_xet::format::XorbBuilder`] lays out, built from chunks compressed in parallel.
struct XorbBody {
    body: Vec<u8>,
    chunks: Vec<XorbChunk>,
    unpacked: u32,
}

impl XorbBody {
    /// Room for `source_bytes` of chunks stored uncompressed (with their headers), so the body
    /// never reallocates (a reallocation would briefly hold it twice).
    fn with_capacity(source_bytes: u64, chunks: usize) -> Self {
        let room = usize::try_from(source_bytes).unwrap_or(usize::MAX).saturating_add(chunks * CHUNK_HEADER_LEN);
        Self { body: Vec::with_capacity(room), chunks: Vec::with_capacity(chunks), unpacked: 0 }
    }

    /// Compresses a run's chunks on every core, checking each against its scanned hash, and
    /// appends them.
    fn append(&mut self, run: &Run) -> Result<(), SyncError> {
        let encoded: Vec<Vec<u8>> = run
            .chunk_slices()
            .collect::<Vec<_>>()
            .par_iter()
            .map(|(data, h)| {
                if chunk_hash(data) != *h {
                    return Err(run.changed());
                }
                encode_chunk(data, CompressionPolicy::Auto)
                    .map_err(|e| SyncError::Internal(format!("chunk encoding: {e}")))
            })
            .collect::<Result<_, _>>()?;
        for ((len, hash), bytes) in run.chunks.iter().zip(encoded) {
            let byte_start = self.body.len() as u32;
            self.body.extend_from_slice(&bytes);
            let unpacked_len = *len as u32;
            self.chunks.push(XorbChunk {
                hash: *hash,
                byte_start,
                byte_end: self.body.len() as u32,
                unpacked_start: self.unpacked,
                unpacked_len,
            });
            self.unpacked += unpacked_len;
        }
        Ok(())
    }

    /// Names the xorb by its chunks.
    fn finish(self) -> BuiltXorb {
        let leaves: Vec<(ChunkHash, u64)> =
            self.chunks.iter().map(|c| (c.hash, u64::from(c.unpacked_len))).collect();
        BuiltXorb { hash: xorb_hash(&leaves), body: self.body, chunks: self.chunks }
    }
}

/// Splits a xorb's chunk list into runs of consecutive chunks of one file.
fn runs(chunks: &[NewChunk]) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut out: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for c in chunks {
        match out.last_mut() {
            Some((f, r)) if *f == c.file && r.end == c.index => r.end += 1,
            _ => out.push((c.file, c.index..c.index + 1)),
        }
    }
    out
}

/// The bytes of consecutive chunks of one file, read at once.
struct Run {
    /// The file (for errors).
    abs: PathBuf,
    /// The chunks' bytes back to back.
    buf: Vec<u8>,
    /// Each chunk's length and scanned hash.
    chunks: Vec<(usize, ChunkHash)>,
}

impl Run {
    /// Each chunk's bytes with its scanned hash.
    fn chunk_slices(&self) -> impl Iterator<Item = (&[u8], ChunkHash)> {
        self.chunks.iter().scan(0usize, |pos, (len, h)| {
            let start = *pos;
            *pos += len;
            Some((&self.buf[start..*pos], *h))
        })
    }

    fn changed(&self) -> SyncError {
        SyncError::Changed { path: self.abs.clone() }
    }
}

/// Positional reads of chunk runs.
struct ChunkReader<'a> {
    sources: &'a [Source],
    offsets: HashMap<usize, Vec<u64>>,
    open: HashMap<usize, std::fs::File>,
}

impl<'a> ChunkReader<'a> {
    fn new(sources: &'a [Source]) -> Self {
        Self { sources, offsets: HashMap::new(), open: HashMap::new() }
    }

    /// `runs` cut into pieces of at most `max` bytes (a piece holds at least one chunk), each
    /// with its size.
    fn pieces(
        &mut self,
        runs: &[(usize, std::ops::Range<usize>)],
        max: u64,
    ) -> Result<Vec<(usize, std::ops::Range<usize>, u64)>, SyncError> {
        let mut out = Vec::new();
        for (file, range) in runs {
            let mut start = range.start;
            for i in range.start + 1..range.end {
                let (from, to) = self.span(*file, start..i + 1)?;
                if to - from > max {
                    out.push((*file, start..i, self.span(*file, start..i)?.1 - from));
                    start = i;
                }
            }
            let (from, to) = self.span(*file, start..range.end)?;
            out.push((*file, start..range.end, to - from));
        }
        Ok(out)
    }

    /// Where chunks `range` of file `file` start and end in the file.
    fn span(&mut self, file: usize, range: std::ops::Range<usize>) -> Result<(u64, u64), SyncError> {
        let offsets = self.offsets(file)?;
        match (offsets.get(range.start), offsets.get(range.end)) {
            (Some(s), Some(e)) => Ok((*s, *e)),
            _ => Err(SyncError::Internal("chunk range outside its file".into())),
        }
    }

    /// Where each chunk of file `file` starts (and, last, where the file ends).
    fn offsets(&mut self, file: usize) -> Result<&Vec<u64>, SyncError> {
        let src = self
            .sources
            .get(file)
            .ok_or_else(|| SyncError::Internal("chunk of an unknown file".into()))?;
        Ok(self.offsets.entry(file).or_insert_with(|| {
            std::iter::once(0)
                .chain(src.chunks.iter().scan(0u64, |pos, c| {
                    *pos += u64::from(c.1);
                    Some(*pos)
                }))
                .collect()
        }))
    }

    /// The bytes of chunks `range` of file `file`, read into `buf` (its old contents dropped).
    fn read_run(
        &mut self,
        (file, range): (usize, std::ops::Range<usize>),
        mut buf: Vec<u8>,
    ) -> Result<Run, SyncError> {
        let (start, end) = self.span(file, range.clone())?;
        let src = &self.sources[file];
        let local = |e| SyncError::io(&src.abs)(e);
        let handle = match self.open.entry(file) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(std::fs::File::open(&src.abs).map_err(local)?)
            }
        };
        buf.clear();
        buf.resize((end - start) as usize, 0);
        handle.read_exact_at(&mut buf, start).map_err(local)?;
        let chunks = src.chunks[range].iter().map(|(h, len)| (*len as usize, *h)).collect();
        Ok(Run { abs: src.abs.clone(), buf, chunks })
    }
}

/// Encodes and (unless `dry_run`) sends shards; returns their bytes.
pub(crate) async fn send_shards(
    cas: Option<&CasSession>,
    shards: &[Shard],
    dry_run: bool,
) -> Result<u64, SyncError> {
    let mut total = 0u64;
    for s in shards {
        let body =
            s.encode_upload().map_err(|e| SyncError::Internal(format!("shard encoding: {e}")))?;
        total += body.len() as u64;
        if let (Some(cas), false) = (cas, dry_run) {
            let auth = cas.auth().await?;
            cas.hub().upload_shard(&auth, Bytes::from(body)).await?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    // Test fixtures are built in place; a panic is the failure report.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn runs_group_consecutive_chunks_of_one_file() {
        let c = |file, index| NewChunk { file, index };
        let got = runs(&[c(0, 3), c(0, 4), c(1, 0), c(0, 5), c(0, 7)]);
        assert_eq!(got, vec![(0, 3..5), (1, 0..1), (0, 5..6), (0, 7..8)]);
    }

    #[test]
    fn built_xorbs_equal_the_builder_and_catch_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let chunks =
            vec![(chunk_hash(&data[..70_000]), 70_000), (chunk_hash(&data[70_000..]), 130_000)];
        let src = vec![Source { abs: p.clone(), chunks }];
        let plan = [NewChunk { file: 0, index: 0 }, NewChunk { file: 0, index: 1 }];
        // Pieces of at most one byte: one chunk each, laid out as the builder lays out the two.
        let mut reader = ChunkReader::new(&src);
        assert_eq!(reader.pieces(&runs(&plan), 1).unwrap(), vec![(0, 0..1, 70_000), (0, 1..2, 130_000)]);
        let built = build_xorb(&mut reader, &plan).unwrap();
        let mut b = tessera_xet::format::XorbBuilder::new(CompressionPolicy::Auto);
        b.push(&data[..70_000]).unwrap();
        b.push(&data[70_000..]).unwrap();
        assert_eq!(built, b.finish());
        std::fs::write(&p, vec![1u8; 200_000]).unwrap();
        let changed = build_xorb(&mut ChunkReader::new(&src), &plan[1..]);
        assert!(matches!(changed, Err(SyncError::Changed { .. })));
    }
}
