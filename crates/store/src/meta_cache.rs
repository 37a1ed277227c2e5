//! Decoded chunk tables of recently used xorbs, in front of the index.
//!
//! Every read plans through its xorbs' chunk tables, and a lazily fetched range checks which
//! of its chunks are present: decoding a table of a thousand chunks from RocksDB each time was
//! about 5% of a cold 2 GiB read through the mount. The index is written only through
//! [`super::db::Db::write`], which drops the tables it rewrote here, so a cached table is never
//! older than the index.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::records::XorbMeta;
use tessera_xet::hash::XorbHash;

/// Tables kept; a full table is ~45 bytes per chunk (about 45 KB for a 64 MiB xorb).
const CAPACITY: usize = 64;

/// The cache, and a count of index writes that touched xorb tables, so a table read from the
/// index before such a write is not cached after it.
#[derive(Default)]
pub(crate) struct MetaCache {
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    tables: HashMap<XorbHash, Arc<XorbMeta>>,
    writes: u64,
}

impl MetaCache {
    /// The cached table of `xorb`, or the write count to hand to [`MetaCache::insert`] after
    /// reading it from the index.
    pub(crate) fn get(&self, xorb: &XorbHash) -> Result<Arc<XorbMeta>, u64> {
        let c = self.inner.lock();
        c.tables.get(xorb).cloned().ok_or(c.writes)
    }

    /// Caches a table read from the index when no write touched xorb tables since `writes`
    /// was returned by [`MetaCache::get`] (the table may be older than the index otherwise).
    pub(crate) fn insert(&self, meta: Arc<XorbMeta>, writes: u64) {
        let mut c = self.inner.lock();
        if c.writes != writes {
            return;
        }
        if c.tables.len() >= CAPACITY {
            // Model reads walk xorbs in order and rarely come back: any victim will do.
            if let Some(victim) = c.tables.keys().next().copied() {
                c.tables.remove(&victim);
            }
        }
        c.tables.insert(meta.hash, meta);
    }

    /// Drops the tables of `xorbs`, just rewritten or deleted in the index; a write that
    /// touched none leaves the cache as it is.
    pub(crate) fn invalidate<'a>(&self, xorbs: impl Iterator<Item = &'a [u8]>) {
        let mut xorbs = xorbs.peekable();
        if xorbs.peek().is_none() {
            return;
        }
        let mut c = self.inner.lock();
        for key in xorbs {
            if let Ok(bytes) = <[u8; 32]>::try_from(key) {
                c.tables.remove(&XorbHash::from_bytes(bytes));
            }
        }
        c.writes += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(byte: u8) -> Arc<XorbMeta> {
        Arc::new(XorbMeta { hash: XorbHash::from_bytes([byte; 32]), chunks: Vec::new() })
    }

    #[test]
    fn a_table_read_before_a_write_is_not_cached_after_it() {
        let cache = MetaCache::default();
        let Err(writes) = cache.get(&table(1).hash) else { panic!("empty cache hit") };
        cache.invalidate([[2u8; 32].as_slice()].into_iter());
        cache.insert(table(1), writes);
        assert!(cache.get(&table(1).hash).is_err(), "a stale table was cached");
        let Err(writes) = cache.get(&table(1).hash) else { panic!("hit") };
        cache.insert(table(1), writes);
        assert!(cache.get(&table(1).hash).is_ok());
        cache.invalidate([[1u8; 32].as_slice()].into_iter());
        assert!(cache.get(&table(1).hash).is_err(), "a rewritten table stayed cached");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = MetaCache::default();
        for b in 0..=255u8 {
            cache.insert(table(b), 0);
        }
        assert_eq!(cache.inner.lock().tables.len(), CAPACITY);
    }
}
