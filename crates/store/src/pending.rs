//! Fetched chunks that are written but not yet durable: readable at once, indexed later.
//!
//! A lazily fetched chunk must be indexed only after its bytes are on disk (the store's rule:
//! data durable before the index points at it). Doing that per batch made a cold read wait on
//! the disk's fsync speed (13.4 s for 2 GiB here, 6.8 s with the store on tmpfs). So adopted
//! chunks go into this in-memory overlay, which [`Store::xorb_meta`] merges into what the index
//! says; a flusher thread fsyncs their xorb files and indexes them a few times a second. A
//! crash loses only the overlay: the chunks are unindexed garbage in the xorb files and are
//! fetched again; closing the store flushes it. A writer finding more than
//! [`MAX_PENDING_BYTES`] awaiting their fsync flushes them itself, so a disk slower than the
//! link pushes back on the network instead of piling up dirty pages.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::db::{self, KvBatch};
use super::records::{ChunkMeta, XorbMeta};
use super::{Inner, Result, Store};
use tessera_xet::hash::XorbHash;

/// How long adopted chunks wait at most before their fsync and indexing.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Serialized bytes awaiting their fsync beyond which a writer flushes them itself.
const MAX_PENDING_BYTES: u64 = 512 << 20;

/// The overlay, shared with its flusher thread (which holds the store itself only while it
/// flushes, so dropping the last handle closes the store at once).
#[derive(Default)]
pub(super) struct Pending {
    state: Mutex<State>,
    /// Wakes the flusher when work arrives.
    arrived: Condvar,
}

#[derive(Default)]
struct State {
    chunks: HashMap<XorbHash, BTreeMap<u32, ChunkMeta>>,
    bytes: u64,
    flusher: bool,
}

impl Store {
    /// Makes chunks written (unsynced) to a xorb file readable now and durable-and-indexed soon.
    pub(super) fn defer_index(&self, xorb: XorbHash, chunks: Vec<(u32, ChunkMeta)>) -> Result<()> {
        let pending = &self.inner.pending;
        let over = {
            let mut st = pending.state.lock();
            st.bytes += chunks.iter().map(|(_, c)| u64::from(c.byte_end - c.byte_start)).sum::<u64>();
            st.chunks.entry(xorb).or_default().extend(chunks);
            if !st.flusher {
                st.flusher = start_flusher(pending.clone(), Arc::downgrade(&self.inner));
            }
            st.bytes > MAX_PENDING_BYTES
        };
        pending.arrived.notify_all();
        if over { self.inner.flush_pending() } else { Ok(()) }
    }

    /// Makes every adopted chunk durable and indexed now (a command about to report that what
    /// it fetched is stored).
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_pending()
    }
}

impl Inner {
    /// The index's chunk table of a xorb with the pending chunks laid over it.
    pub(super) fn overlay(&self, hash: &XorbHash, stored: Option<XorbMeta>) -> Option<XorbMeta> {
        let st = self.pending.state.lock();
        let Some(extra) = st.chunks.get(hash) else { return stored };
        let mut meta = stored.unwrap_or(XorbMeta { hash: *hash, chunks: Vec::new() });
        set_chunks(&mut meta, extra.iter().map(|(i, c)| (*i, *c)));
        Some(meta)
    }

    /// Drops pending chunks (a file that failed verification).
    pub(super) fn forget_pending(&self, xorb: &XorbHash, indices: &[u32]) {
        let mut st = self.pending.state.lock();
        if let Some(chunks) = st.chunks.get_mut(xorb) {
            let mut freed = 0;
            for i in indices {
                freed += chunks.remove(i).map_or(0, |c| u64::from(c.byte_end - c.byte_start));
            }
            if chunks.is_empty() {
                st.chunks.remove(xorb);
            }
            st.bytes -= freed;
        }
    }

    /// Fsyncs the xorb files of what is pending now, indexes it in one batch, then takes it off
    /// the overlay (unless a newer write replaced an entry meanwhile). Runs under the lock of
    /// every index writer, so a chunk dropped meanwhile (a failed file) is never re-indexed.
    pub(super) fn flush_pending(&self) -> Result<()> {
        let _guard = self.meta_lock.lock();
        let snapshot = self.pending.state.lock().chunks.clone();
        if snapshot.is_empty() {
            return Ok(());
        }
        for xorb in snapshot.keys() {
            self.xorbs.sync(xorb)?;
        }
        self.index_synced(&snapshot)?;
        let mut st = self.pending.state.lock();
        for (xorb, flushed) in &snapshot {
            let Some(chunks) = st.chunks.get_mut(xorb) else { continue };
            let mut freed = 0;
            for (i, c) in flushed {
                if chunks.get(i) == Some(c) {
                    chunks.remove(i);
                    freed += u64::from(c.byte_end - c.byte_start);
                }
            }
            if chunks.is_empty() {
                st.chunks.remove(xorb);
            }
            st.bytes -= freed;
        }
        Ok(())
    }

    /// Indexes chunks whose bytes are synced, merged into what the index holds (never into the
    /// overlay: entries of other xorbs' pending chunks must not reach the index unsynced).
    fn index_synced(&self, chunks: &HashMap<XorbHash, BTreeMap<u32, ChunkMeta>>) -> Result<()> {
        let mut batch = KvBatch::default();
        for (xorb, new) in chunks {
            let mut meta = self.db.xorb_meta(xorb)?.unwrap_or(XorbMeta { hash: *xorb, chunks: Vec::new() });
            set_chunks(&mut meta, new.iter().map(|(i, c)| (*i, *c)));
            db::put_xorb_adding(&mut batch, &meta, new.iter().map(|(i, c)| (*i, *c)));
        }
        self.db.write(batch)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A clean exit keeps what was fetched; a failure here only means fetching it again.
        if let Err(e) = self.flush_pending() {
            tracing::warn!(error = %e, "could not index fetched chunks at close; they will be fetched again");
        }
    }
}

fn set_chunks(meta: &mut XorbMeta, chunks: impl Iterator<Item = (u32, ChunkMeta)>) {
    for (idx, c) in chunks {
        let i = idx as usize;
        if meta.chunks.len() <= i {
            meta.chunks.resize(i + 1, None);
        }
        meta.chunks[i] = Some(c);
    }
}

/// Starts the thread that flushes the overlay; it ends with the store. Returns whether it runs
/// (without it, chunks are indexed when too many are pending, on [`Store::flush`] or at close).
fn start_flusher(pending: Arc<Pending>, store: Weak<Inner>) -> bool {
    let spawned = std::thread::Builder::new().name("tessera-flush".into()).spawn(move || flush_loop(&pending, &store));
    if let Err(e) = &spawned {
        tracing::warn!(error = %e, "cannot start the index flusher");
    }
    spawned.is_ok()
}

fn flush_loop(pending: &Pending, store: &Weak<Inner>) {
    loop {
        {
            let mut st = pending.state.lock();
            if st.chunks.is_empty() {
                // Wake up now and then to notice the store closing.
                pending.arrived.wait_for(&mut st, Duration::from_secs(1));
            } else {
                // Gather a few batches into one fsync round.
                pending.arrived.wait_for(&mut st, FLUSH_EVERY);
            }
        }
        let Some(inner) = store.upgrade() else { return };
        if let Err(e) = inner.flush_pending() {
            tracing::warn!(error = %e, "indexing fetched chunks failed; retrying");
        }
    }
}
