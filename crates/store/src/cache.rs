//! A bounded cache of decompressed, verified chunks, shared by all readers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use tessera_xet::hash::ChunkHash;

/// FIFO-evicting map bounded by total bytes. Model weights are read sequentially and whole, so
/// recency tracking buys little over insertion order and costs a lock-held list update per hit.
pub(crate) struct ChunkCache {
    limit: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<ChunkHash, Arc<Vec<u8>>>,
    order: VecDeque<ChunkHash>,
    bytes: usize,
}

impl ChunkCache {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, inner: Mutex::new(CacheInner::default()) }
    }

    pub(crate) fn get(&self, hash: &ChunkHash) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().map.get(hash).cloned()
    }

    pub(crate) fn insert(&self, hash: ChunkHash, data: Arc<Vec<u8>>) {
        if data.len() > self.limit {
            return;
        }
        let mut c = self.inner.lock();
        if c.map.contains_key(&hash) {
            return;
        }
        c.bytes += data.len();
        c.map.insert(hash, data);
        c.order.push_back(hash);
        while c.bytes > self.limit {
            let Some(old) = c.order.pop_front() else { break };
            if let Some(v) = c.map.remove(&old) {
                c.bytes -= v.len();
            }
        }
    }

    /// Drops everything (after gc or repair, so no stale chunk outlives its data).
    pub(crate) fn clear(&self) {
        let mut c = self.inner.lock();
        c.map.clear();
        c.order.clear();
        c.bytes = 0;
    }
}
