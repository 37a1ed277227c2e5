//! Streaming lazy fetches for the mount: a read waits only for the chunks it covers.
//!
//! A file's reconstruction (its terms, and the xorb byte ranges, "units", that hold them) is
//! asked for once and cached until its URLs expire. Each unit is read by at most one *stream* at
//! a time (single flight, shared by every reader and read-ahead window of every file): a task
//! that requests the unit's bytes from the first chunk the store lacks, parses chunks as they
//! arrive and adopts them into the store in growing batches, so each batch is readable as it
//! lands (and durable and indexed within moments, `store/pending.rs`), a reader waiting for it
//! is answered at once, and nothing indexed is fetched twice after an interruption, a timeout
//! or a `kill -9`.
//!
//! A stream runs until the *targets* readers gave it are met, then stops. A target says how many
//! decoded bytes are needed from a term's first chunk on: where a chunk starts inside a xorb is
//! only known by walking the chunk headers before it, so a read in the middle of a term costs
//! the term from its start up to the read's end, and nothing after it.
//!
//! Timeouts measure stalls: a stream retries a broken transfer for as long as bytes arrived
//! within the stall timeout, and fails only after that long without any.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Corruption, SyncError};
use super::byteranges::{ByteRanges, Event};
use super::fetch::{FileFetcher, blocking, fetched_error};
use tessera_xet::format::{CHUNK_HEADER_LEN, ChunkHeader};
use tessera_xet::hash::{FileHash, XorbHash};
use tessera_hub::{FetchUnit, HubClient, HubError};
use tessera_store::{FileRecord, Store, TreeEntry};

/// Largest batch a stream gathers before adopting it. The first batch is a single chunk (a
/// header read is answered after one chunk); each next one doubles up to this.
const MAX_ADOPT_BATCH: usize = 1 << 20;
/// Capacity of a batch's buffer: the largest batch and the start of what follows it.
const ADOPT_BUFFER: usize = MAX_ADOPT_BATCH + (512 << 10);
/// A cached reconstruction is asked for again this long before its URLs expire.
const EXPIRY_MARGIN_SECS: u64 = 30;
/// Streams running at once, for all files together (the rest queue): enough to fill a fast
/// link, few enough that a pull of a 50 GB file does not open 800 connections, and that their
/// buffers (at most two batches each) stay under ~100 MB.
const MAX_STREAMS: usize = 8;
/// How long a stream whose targets are met keeps its response open for new ones: a sequential
/// reader's next window usually comes within moments, and a dropped response wastes what the
/// server already sent (socket buffers) and costs a new request.
const LINGER: Duration = Duration::from_millis(500);
/// Times a reader asks again for bytes that streams delivered but that are not present after
/// all (dropped by a failed verification in between).
const REASKS: u32 = 4;

/// A file's cached reconstruction.
struct Plan {
    record: Arc<FileRecord>,
    units: Vec<FetchUnit>,
    /// Units of a xorb with one URL may share a multi-range request (v2).
    shared_urls: bool,
    /// Unix seconds after which its URLs may no longer work.
    expires: u64,
}

/// A unit's identity: its xorb and first chunk.
type UnitKey = (XorbHash, u32);

/// The state of one unit's stream; at most one task runs it at a time.
struct Stream {
    state: Mutex<StreamState>,
    /// Woken when a reader adds or raises a target.
    raised: Notify,
}

/// What a reader needs from a unit: the chunks from `from` on until they decode to `bytes`
/// bytes, or until chunk `until` (exclusive), whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    from: u32,
    bytes: u64,
    until: u32,
}

impl Target {
    /// Whether chunks up to `next` (exclusive) meet it, `offsets[i]` being the decoded offset of
    /// chunk `start + i` in the unit.
    fn met(&self, start: u32, next: u32, offsets: &[u64]) -> bool {
        if next >= self.until {
            return true;
        }
        let at = |c: u32| offsets.get((c - start) as usize).copied();
        match (at(self.from), at(next)) {
            (Some(a), Some(b)) if next > self.from => b - a >= self.bytes,
            _ => false,
        }
    }
}

struct StreamState {
    /// The unit, with the freshest URL known.
    unit: FetchUnit,
    /// What readers still wait for.
    targets: Vec<Target>,
    running: bool,
    /// Bumped at every start, so a waiter knows whether a failure is of the run it waits on.
    run: u64,
    /// Why the last run failed.
    failure: Option<(String, Failure)>,
    last_progress: Instant,
}

/// Streaming lazy fetches for every file behind one mount.
pub(crate) struct LazyFiles {
    hub: HubClient,
    store: Store,
    stall: Duration,
    plans: tokio::sync::Mutex<HashMap<FileHash, Arc<Plan>>>,
    streams: Mutex<HashMap<UnitKey, Arc<Stream>>>,
    /// Woken whenever a stream adopts a batch or stops.
    changed: Notify,
    slots: Arc<tokio::sync::Semaphore>,
    received: Arc<AtomicU64>,
    buffers: Buffers,
}

impl LazyFiles {
    /// Streams from `hub` into `store`, failing a transfer after `stall` without progress and
    /// counting received bytes into `received`.
    pub(crate) fn new(hub: HubClient, store: Store, stall: Duration, received: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            store,
            stall,
            plans: tokio::sync::Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            received,
            buffers: Buffers::default(),
        })
    }

    /// Notified whenever fetched chunks became readable (and when a fetch ends).
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Returns once bytes `[offset, offset + len)` of a Xet file are present in the store. The
    /// streams it starts stop once the range is in (after lingering for a sequential reader).
    pub(crate) async fn fetch(self: &Arc<Self>, fetcher: &FileFetcher, entry: &TreeEntry, offset: u64, len: u64) -> Result<(), SyncError> {
        let end = offset.saturating_add(len).min(entry.size);
        let mut reasks = 0;
        let mut replanned = false;
        loop {
            let plan = self.plan(fetcher, entry).await?;
            let runs: Vec<_> = wanted(&plan, offset, end).into_iter().map(|(u, target)| self.want(u, target)).collect();
            match self.wait(&plan.record, offset, end, &runs).await? {
                Waited::Present => return Ok(()),
                Waited::Failed(why, kind) => {
                    // Whatever failed may come from the plan (an expired or mangled URL): the
                    // next attempt asks for a fresh one.
                    self.plans.lock().await.remove(&entry.file);
                    match kind {
                        Failure::Refused if !replanned => {
                            tracing::debug!(file = %entry.file, %why, "a URL was refused; asking for a fresh reconstruction");
                            replanned = true;
                        }
                        Failure::Corrupt => return Err(Corruption::Stream { path: entry.path.clone(), why }.into()),
                        _ => return Err(SyncError::Hub(HubError::Transport { url: format!("xorbs of {}", entry.path), message: why })),
                    }
                }
                Waited::StoppedShort if reasks < REASKS => reasks += 1,
                Waited::StoppedShort => {
                    return Err(SyncError::Internal(format!("{}: the streams ended but bytes {offset}..{end} are still missing", entry.path)));
                }
            }
        }
    }

    /// Makes a whole file present (pull): first the ranges that can share a request, each
    /// xorb's missing ranges behind one URL in one multi-range request, then [`LazyFiles::fetch`]
    /// for whatever is still missing (everything, where the server has no v2 or the multi-range
    /// answer failed), one stream per range. The mount does not come here: a reader there wants
    /// each range's first bytes at once, not after the ranges before it.
    pub(crate) async fn fetch_whole(self: &Arc<Self>, fetcher: &FileFetcher, entry: &TreeEntry) -> Result<(), SyncError> {
        if let Err(e) = self.fetch_grouped(fetcher, entry).await {
            tracing::debug!(file = %entry.file, error = %e, "multi-range fetch failed; one stream per range");
        }
        self.fetch(fetcher, entry, 0, entry.size).await
    }

    /// One multi-range request per xorb URL that holds two or more missing ranges.
    async fn fetch_grouped(&self, fetcher: &FileFetcher, entry: &TreeEntry) -> Result<(), SyncError> {
        let plan = self.plan(fetcher, entry).await?;
        if !plan.shared_urls {
            return Ok(());
        }
        let mut groups: Vec<(XorbHash, &str, Vec<&FetchUnit>)> = Vec::new();
        for u in &plan.units {
            match groups.iter_mut().find(|(x, url, _)| *x == u.xorb && *url == u.url) {
                Some((_, _, g)) => g.push(u),
                None => groups.push((u.xorb, &u.url, vec![u])),
            }
        }
        for (xorb, url, units) in groups.into_iter().filter(|g| g.2.len() > 1) {
            let mut missing = Vec::new();
            for u in units {
                let walk = self.resume_point(u, u.chunks.end).await?;
                if walk.next < u.chunks.end {
                    missing.push((u, walk));
                }
            }
            if missing.len() > 1 {
                let _slot = self.slots.clone().acquire_owned().await;
                self.read_ranges(xorb, url, &mut missing).await?;
            }
        }
        Ok(())
    }

    /// Reads the missing part of every unit (`walk.byte..=byte_end`) in one multi-range
    /// request, adopting each part's chunks in batches as they land.
    async fn read_ranges(&self, xorb: XorbHash, url: &str, units: &mut [(&FetchUnit, Walk)]) -> Result<(), SyncError> {
        let ranges: Vec<(u64, u64)> = units.iter().map(|(u, w)| (w.byte, u.byte_end)).collect();
        let resp = self.hub.open_ranges(url, &ranges).await?;
        let kind = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let mut parser = ByteRanges::for_content_type(kind).ok_or_else(|| SyncError::Protocol(format!("xorb {xorb}: a multi-range answer of type {kind:?}")))?;
        let mut body = resp.bytes_stream();
        let mut current: Option<(usize, Batch)> = None;
        while !parser.is_done() {
            let piece = match tokio::time::timeout(self.stall, body.next()).await {
                Err(_) => return Err(SyncError::Protocol(format!("xorb {xorb}: no bytes within the stall timeout"))),
                Ok(None) => return Err(SyncError::Protocol(format!("xorb {xorb}: the multi-range body ended early"))),
                Ok(Some(Err(e))) => return Err(SyncError::Protocol(format!("xorb {xorb}: {e}"))),
                Ok(Some(Ok(piece))) => piece,
            };
            self.received.fetch_add(piece.len() as u64, Ordering::Relaxed);
            parser.push(&piece);
            while let Some(event) = parser.next_event().map_err(|e| SyncError::Protocol(format!("xorb {xorb}: {e}")))? {
                match event {
                    Event::Part { start, end } => {
                        if let Some((i, mut batch)) = current.take().filter(|(_, b)| b.parsed > 0) {
                            self.adopt(xorb, &mut batch, &units[i].1).await?;
                        }
                        let i = ranges.iter().position(|r| *r == (start, end)).ok_or_else(|| SyncError::Protocol(format!("xorb {xorb}: unasked range {start}-{end}")))?;
                        let w = &units[i].1;
                        current = Some((i, Batch::new(&self.buffers, w, MAX_ADOPT_BATCH)));
                    }
                    Event::Data(bytes) => {
                        let Some((i, batch)) = current.as_mut() else { return Err(SyncError::Protocol(format!("xorb {xorb}: bytes outside a part"))) };
                        let (unit, walk) = &mut units[*i];
                        batch.buf.extend_from_slice(&bytes);
                        batch.parse(unit, walk)?;
                        if batch.parsed >= batch.limit {
                            self.adopt(xorb, batch, walk).await?;
                        }
                    }
                }
            }
        }
        if let Some((i, mut batch)) = current.take().filter(|(_, b)| b.parsed > 0) {
            self.adopt(xorb, &mut batch, &units[i].1).await?;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// The file's reconstruction, from the cache while its URLs are valid. Records the file's
    /// terms in the store the first time, so reads can plan against them.
    async fn plan(&self, fetcher: &FileFetcher, entry: &TreeEntry) -> Result<Arc<Plan>, SyncError> {
        let mut plans = self.plans.lock().await;
        let now = super::unix_now();
        if let Some(p) = plans.get(&entry.file).filter(|p| p.expires > now + EXPIRY_MARGIN_SECS) {
            return Ok(p.clone());
        }
        let (recon, expires) = fetcher.reconstruction_expiring(entry.file).await?;
        let record = FileRecord {
            hash: entry.file,
            size: entry.size,
            sha256: entry.sha256,
            terms: recon.terms.iter().map(super::fetch::term).collect(),
        };
        let sum = record.terms.iter().map(|t| u64::from(t.unpacked_len)).sum::<u64>();
        if sum != entry.size {
            return Err(Corruption::Terms { path: entry.path.clone(), expected: entry.size, got: sum }.into());
        }
        let (store, r) = (self.store.clone(), record.clone());
        blocking(move || {
            if store.file(&r.hash)?.is_none() {
                store.put_file_unverified(&r)?;
            }
            Ok(())
        })
        .await?;
        let plan = Arc::new(Plan { record: Arc::new(record), units: recon.units, shared_urls: recon.shared_urls, expires });
        plans.insert(entry.file, plan.clone());
        Ok(plan)
    }

    /// Makes sure a stream runs `unit` until `target` is met; returns it and the run to watch.
    fn want(self: &Arc<Self>, unit: FetchUnit, target: Target) -> (Arc<Stream>, u64) {
        let key = (unit.xorb, unit.chunks.start);
        let stream = self.streams.lock().entry(key).or_insert_with(|| Arc::new(Stream::new(unit.clone()))).clone();
        let mut st = stream.state.lock();
        st.unit.url = unit.url;
        match st.targets.iter_mut().find(|t| t.from == target.from) {
            Some(t) => {
                t.bytes = t.bytes.max(target.bytes);
                t.until = t.until.max(target.until);
            }
            None => st.targets.push(target),
        }
        if !st.running {
            st.running = true;
            st.run += 1;
            st.failure = None;
            st.last_progress = Instant::now();
            tokio::spawn(self.clone().run(stream.clone()));
        }
        let run = st.run;
        drop(st);
        stream.raised.notify_waiters();
        (stream, run)
    }

    /// Waits until the range is present, a stream it depends on failed, or all of them stopped.
    async fn wait(&self, record: &Arc<FileRecord>, start: u64, end: u64, runs: &[(Arc<Stream>, u64)]) -> Result<Waited, SyncError> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.present(record, start, end).await? {
                return Ok(Waited::Present);
            }
            let mut running = false;
            for (stream, run) in runs {
                let st = stream.state.lock();
                running |= st.running;
                if let (false, true, Some((why, kind))) = (st.running, st.run == *run, &st.failure) {
                    return Ok(Waited::Failed(why.clone(), *kind));
                }
            }
            if !running {
                return Ok(Waited::StoppedShort);
            }
            // Streams time themselves out; the slice only bounds a missed wake-up.
            let _ = tokio::time::timeout(self.stall, notified).await;
        }
    }

    /// Checked after every adopted batch by every waiter: the record is shared, not copied.
    async fn present(&self, record: &Arc<FileRecord>, start: u64, end: u64) -> Result<bool, SyncError> {
        let (store, record) = (self.store.clone(), record.clone());
        blocking(move || Ok(store.range_present(&record, start, end)?)).await
    }

    /// Runs a stream to its target and publishes how it ended.
    async fn run(self: Arc<Self>, stream: Arc<Stream>) {
        // The semaphore is never closed; a failure to acquire would only mean running unthrottled.
        let _slot = self.slots.clone().acquire_owned().await;
        stream.touch();
        match self.run_stream(&stream).await {
            Ok(()) => self.forget_if_idle(&stream),
            Err(e) => {
                let kind = match e {
                    SyncError::Hub(HubError::Unauthorized { .. }) => Failure::Refused,
                    _ if e.is_bad_data() => Failure::Corrupt,
                    _ => Failure::Unavailable,
                };
                // Corrupt data without its prefix: the reader's error says "corrupt data" once.
                let why = match &e {
                    SyncError::Corrupt(c) => c.to_string(),
                    other => other.to_string(),
                };
                let mut st = stream.state.lock();
                tracing::debug!(xorb = %st.unit.xorb, error = %e, "stream failed");
                st.failure = Some((why, kind));
                st.running = false;
            }
        }
        self.changed.notify_waiters();
    }

    /// Drops a finished stream from the map, so a mount that runs for weeks keeps no state per
    /// xorb range it ever read. Under the map's lock, as [`LazyFiles::want`] takes it first: a
    /// stream restarted meanwhile stays.
    fn forget_if_idle(&self, stream: &Arc<Stream>) {
        let mut streams = self.streams.lock();
        let st = stream.state.lock();
        let key = (st.unit.xorb, st.unit.chunks.start);
        if !st.running && streams.get(&key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(&key);
        }
    }

    /// One request after another until the targets are met; a transfer that breaks is resumed
    /// from the first chunk not kept, until the stall timeout passes without progress.
    async fn run_stream(&self, stream: &Stream) -> Result<(), SyncError> {
        let mut failures = 0u32;
        loop {
            let (unit, until) = {
                let st = stream.state.lock();
                (st.unit.clone(), st.targets.iter().map(|t| t.until).max().unwrap_or(0))
            };
            let mut walk = self.resume_point(&unit, until).await?;
            let reached = if stream.met(&walk) { Ok(()) } else { self.read_unit(stream, &unit, &mut walk).await };
            match reached {
                Ok(()) if stream.finish(&walk) => return Ok(()),
                Ok(_) => failures = 0,
                Err(e) if is_transient(&e) && stream.last_progress().elapsed() < self.stall => {
                    failures += 1;
                    tracing::debug!(xorb = %unit.xorb, error = %e, failures, "transfer broke; resuming");
                    tokio::time::sleep(self.hub.retry_policy().backoff(failures).min(self.stall / 4)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Where to resume the unit: the first chunk (below `until`) the store lacks, its byte
    /// offset in the xorb (the end of the chunk before it, which is present), and the decoded
    /// offsets of the chunks before it.
    async fn resume_point(&self, unit: &FetchUnit, until: u32) -> Result<Walk, SyncError> {
        let (store, xorb, start, byte_start) = (self.store.clone(), unit.xorb, unit.chunks.start, unit.byte_start);
        blocking(move || {
            let meta = store.xorb_meta(&xorb)?;
            let chunk = |i: u32| meta.as_ref().and_then(|m| m.chunks.get(i as usize).copied().flatten());
            let mut walk = Walk { start, next: start, byte: byte_start, offsets: vec![0] };
            while walk.next < until {
                let Some(c) = chunk(walk.next) else { break };
                walk.push(u64::from(c.unpacked_len));
                walk.byte = u64::from(c.byte_end);
            }
            Ok(walk)
        })
        .await
    }

    /// Reads the unit from `walk`'s next chunk, adopting batches as they complete, until the
    /// stream's targets are met or the unit ends.
    async fn read_unit(&self, stream: &Stream, unit: &FetchUnit, walk: &mut Walk) -> Result<(), SyncError> {
        let resp = self.hub.open_unit_range(unit, walk.byte).await?;
        let mut body = resp.bytes_stream();
        let mut batch = Batch::new(&self.buffers, walk, CHUNK_HEADER_LEN);
        loop {
            let piece = match tokio::time::timeout(self.stall, body.next()).await {
                Err(_) => return Err(transport(unit, "no bytes within the stall timeout")),
                Ok(None) => return Err(transport(unit, "the body ended before the range did")),
                Ok(Some(Err(e))) => return Err(transport(unit, &e.to_string())),
                Ok(Some(Ok(piece))) => piece,
            };
            self.received.fetch_add(piece.len() as u64, Ordering::Relaxed);
            stream.touch();
            batch.buf.extend_from_slice(&piece);
            batch.parse(unit, walk)?;
            let done = walk.next >= unit.chunks.end || stream.met(walk);
            if batch.parsed > 0 && (done || batch.parsed >= batch.limit) {
                self.adopt(unit.xorb, &mut batch, walk).await?;
                self.changed.notify_waiters();
            }
            if done && (walk.next >= unit.chunks.end || !stream.linger(walk).await) {
                return Ok(());
            }
        }
    }

    /// Adopts the parsed chunks of a batch into the store and starts the next batch.
    async fn adopt(&self, xorb: XorbHash, batch: &mut Batch<'_>, walk: &Walk) -> Result<(), SyncError> {
        let next_limit = (batch.limit * 2).clamp(64 << 10, MAX_ADOPT_BATCH);
        // Two buffers per request, from `Buffers` (each holds the largest batch), swapped and
        // reused: memory stays bounded and no large buffer is freed on another thread than
        // its owner's.
        let mut rest = std::mem::take(&mut batch.spare);
        rest.clear();
        rest.extend_from_slice(&batch.buf[batch.parsed..]);
        let mut bytes = std::mem::replace(&mut batch.buf, rest);
        bytes.truncate(batch.parsed);
        let (store, first, start) = (self.store.clone(), batch.first, batch.start);
        batch.spare = blocking(move || {
            store.adopt_chunks(&xorb, first, start, &bytes).map_err(fetched_error)?;
            Ok(bytes)
        })
        .await?;
        batch.start += batch.parsed as u64;
        batch.first = walk.next;
        batch.parsed = 0;
        batch.limit = next_limit;
        Ok(())
    }
}

/// How far a stream has walked its unit: chunk `next` starts at byte `byte` of the xorb, and
/// `offsets[i]` is the decoded offset of chunk `start + i` from the unit's first chunk.
struct Walk {
    start: u32,
    next: u32,
    byte: u64,
    offsets: Vec<u64>,
}

impl Walk {
    fn push(&mut self, decoded_len: u64) {
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + decoded_len);
        self.next += 1;
    }
}

/// Why a stream failed, as far as what to do next depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// 401/403 on a URL: a fresh reconstruction may help.
    Refused,
    /// The bytes or the answer were malformed: worth another attempt from scratch.
    Corrupt,
    /// The remote stalled or kept failing.
    Unavailable,
}

/// How a wait ended.
enum Waited {
    Present,
    /// A stream the range needs failed.
    Failed(String, Failure),
    /// Every stream stopped, yet the range is not present.
    StoppedShort,
}

/// Bytes of one unit read but not yet adopted, starting at chunk `first`, byte `start`.
struct Batch<'a> {
    first: u32,
    start: u64,
    buf: Vec<u8>,
    /// The buffer of the batch adopted last, for the next one.
    spare: Vec<u8>,
    /// Bytes of `buf` that are whole chunks.
    parsed: usize,
    /// Parsed bytes that make a batch worth adopting.
    limit: usize,
    /// Where its buffers go back when the batch ends.
    buffers: &'a Buffers,
}

impl<'a> Batch<'a> {
    /// A batch starting at `walk`'s next chunk, adopted once `limit` bytes are parsed.
    fn new(buffers: &'a Buffers, walk: &Walk, limit: usize) -> Self {
        let (buf, spare) = (buffers.take(), buffers.take());
        Batch { first: walk.next, start: walk.byte, buf, spare, parsed: 0, limit, buffers }
    }

    /// Walks the chunk headers of what arrived; stops at an incomplete chunk or the unit's end.
    /// Headers are validated (lengths bounded by the Xet limits) before they size anything.
    fn parse(&mut self, unit: &FetchUnit, walk: &mut Walk) -> Result<(), SyncError> {
        while walk.next < unit.chunks.end && self.buf.len() - self.parsed >= CHUNK_HEADER_LEN {
            let header = ChunkHeader::parse(&self.buf[self.parsed..])
                .map_err(|source| Corruption::Chunk { xorb: unit.xorb, index: walk.next, source })?;
            let len = header.serialized_len();
            if self.buf.len() - self.parsed < len {
                break;
            }
            self.parsed += len;
            walk.byte += len as u64;
            walk.push(u64::from(header.uncompressed_len));
        }
        if walk.next >= unit.chunks.end {
            // A server sending past the range gets the extra bytes ignored.
            self.buf.truncate(self.parsed);
        }
        Ok(())
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.buffers.give(std::mem::take(&mut self.buf));
        self.buffers.give(std::mem::take(&mut self.spare));
    }
}

/// Batch buffers of ended streams, for the next ones: buffers this large come fresh from the
/// OS (`src/main.rs`), and a new pair per stream cost a page fault per 4 KiB received. It keeps
/// no more than the streams running at once use.
#[derive(Default)]
struct Buffers(Mutex<Vec<Vec<u8>>>);

impl Buffers {
    fn take(&self) -> Vec<u8> {
        self.0.lock().pop().unwrap_or_else(|| Vec::with_capacity(ADOPT_BUFFER))
    }

    fn give(&self, mut buf: Vec<u8>) {
        let mut spare = self.0.lock();
        if buf.capacity() >= ADOPT_BUFFER && spare.len() < 2 * MAX_STREAMS {
            buf.clear();
            spare.push(buf);
        }
    }
}

impl Stream {
    fn new(unit: FetchUnit) -> Self {
        let state = StreamState { unit, targets: Vec::new(), running: false, run: 0, failure: None, last_progress: Instant::now() };
        Self { state: Mutex::new(state), raised: Notify::new() }
    }

    /// Waits up to [`LINGER`] for a target the walk does not meet yet; whether one came.
    async fn linger(&self, walk: &Walk) -> bool {
        let raised = self.raised.notified();
        tokio::pin!(raised);
        raised.as_mut().enable();
        if !self.met(walk) {
            return true;
        }
        let _ = tokio::time::timeout(LINGER, raised).await;
        !self.met(walk)
    }

    /// Whether every target is met by the chunks walked so far.
    fn met(&self, walk: &Walk) -> bool {
        self.state.lock().targets.iter().all(|t| t.met(walk.start, walk.next, &walk.offsets))
    }

    fn touch(&self) {
        self.state.lock().last_progress = Instant::now();
    }

    fn last_progress(&self) -> Instant {
        self.state.lock().last_progress
    }

    /// Drops the targets `walk` meets and stops the stream if none is left; decided under the
    /// lock that adds targets, so one added between the check and the stop is never lost.
    fn finish(&self, walk: &Walk) -> bool {
        let mut st = self.state.lock();
        st.targets.retain(|t| !t.met(walk.start, walk.next, &walk.offsets));
        if st.targets.is_empty() {
            st.running = false;
            return true;
        }
        false
    }
}

/// The units holding the terms that overlap `[start, end)`, each with what the range needs of
/// it: the term's decoded bytes up to the range's end, from the term's first chunk. A unit that
/// starts inside a term (no server answers so, but one could) is asked for its part whole.
fn wanted(plan: &Plan, start: u64, end: u64) -> Vec<(FetchUnit, Target)> {
    let mut out = Vec::new();
    for (at, t) in tessera_store::terms_overlapping(&plan.record.terms, start, end) {
        let needed = end.min(at + u64::from(t.unpacked_len)) - at;
        let holding = plan.units.iter().filter(|u| u.xorb == t.xorb && u.chunks.start < t.chunk_end && t.chunk_start < u.chunks.end);
        for u in holding {
            let until = t.chunk_end.min(u.chunks.end);
            let target = if u.chunks.start <= t.chunk_start {
                Target { from: t.chunk_start, bytes: needed, until }
            } else {
                Target { from: u.chunks.start, bytes: u64::MAX, until }
            };
            out.push((u.clone(), target));
        }
    }
    out
}

fn is_transient(e: &SyncError) -> bool {
    match e {
        SyncError::Hub(HubError::Transport { .. }) => true,
        SyncError::Hub(HubError::Status { status, .. }) => *status >= 500 || *status == 429,
        _ => false,
    }
}

fn transport(unit: &FetchUnit, why: &str) -> SyncError {
    SyncError::Hub(HubError::Transport { url: format!("xorb {}", unit.xorb), message: why.to_string() })
}
