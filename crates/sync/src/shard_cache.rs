//! What this machine pushed, per CAS: one small shard per xorb the CAS accepted (its chunk list),
//! written as soon as it is accepted, under `$TESSERA_HOME/push-cache/<CAS>/`. Like hf_xet's
//! shard cache it tells the next push (or a re-run after a kill) where the remote holds chunks,
//! without keeping their bytes; the CAS still confirms each xorb before it is relied on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::dedup::Known;
use tessera_xet::format::{Shard, ShardXorb};
use tessera_xet::hash::{ChunkHash, Sha256};

/// Oldest entries go once the cache passes this (about 160 GB of pushed data).
const CACHE_LIMIT: u64 = 128 << 20;
const SUFFIX: &str = ".shard";

/// The cache of one CAS.
#[derive(Debug, Clone)]
pub(crate) struct ShardCache {
    dir: PathBuf,
}

impl ShardCache {
    /// The cache for the CAS at `cas_url`, under the store's home.
    pub(crate) fn new(home: &Path, cas_url: &str) -> Self {
        let key = Sha256::of(cas_url.trim_end_matches('/').as_bytes()).to_string();
        Self { dir: home.join("push-cache").join(&key[..16]) }
    }

    /// Records a xorb the CAS holds.
    pub(crate) fn record(&self, xorb: &ShardXorb) -> std::io::Result<()> {
        let shard = Shard { files: Vec::new(), xorbs: vec![xorb.clone()], footer: None };
        let bytes = shard
            .encode_with_footer(&shard.footer_totals(), false)
            .map_err(std::io::Error::other)?;
        std::fs::create_dir_all(&self.dir)?;
        let name = format!("{}{SUFFIX}", xorb.hash);
        let tmp = self.dir.join(format!("{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, self.dir.join(name))
    }

    /// Where cached xorbs hold any of `wanted`. Unreadable entries are skipped; the oldest are
    /// dropped when the cache is over its limit.
    pub(crate) fn lookup(&self, wanted: &HashSet<ChunkHash>) -> Known {
        let mut known = Known::new();
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if !path.to_string_lossy().ends_with(SUFFIX) {
                continue;
            }
            entries.push((
                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                meta.len(),
                path.clone(),
            ));
            let Some(shard) = std::fs::read(&path).ok().and_then(|b| Shard::decode(&b).ok()) else {
                continue;
            };
            for x in &shard.xorbs {
                for (i, c) in (0u32..).zip(&x.chunks) {
                    if wanted.contains(&c.hash) {
                        known.entry(c.hash).or_insert((x.hash, i));
                    }
                }
            }
        }
        prune(entries);
        known
    }
}

/// Removes the oldest entries while the total is over the limit.
fn prune(mut entries: Vec<(std::time::SystemTime, u64, PathBuf)>) {
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    entries.sort();
    for (_, len, path) in entries {
        if total <= CACHE_LIMIT {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    // Test fixtures are built in place; a panic is the failure report.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tessera_xet::format::ShardChunk;
    use tessera_xet::hash::{XorbHash, chunk_hash};

    #[test]
    fn recorded_xorbs_are_found_per_cas() {
        let home = tempfile::tempdir().unwrap();
        let (a, b) = (chunk_hash(b"a"), chunk_hash(b"b"));
        let x = XorbHash::from_bytes([9; 32]);
        let chunks = [a, b]
            .iter()
            .enumerate()
            .map(|(i, h)| ShardChunk { hash: *h, unpacked_start: i as u32, len: 1, flags: 0 })
            .collect();
        let cache = ShardCache::new(home.path(), "http://cas/");
        cache.record(&ShardXorb { hash: x, bytes_on_disk: 18, chunks }).unwrap();
        std::fs::write(cache.dir.join(format!("junk{SUFFIX}")), b"not a shard").unwrap();
        let wanted: HashSet<ChunkHash> = [b, chunk_hash(b"c")].into_iter().collect();
        let known = ShardCache::new(home.path(), "http://cas").lookup(&wanted);
        assert_eq!(known.into_iter().collect::<Vec<_>>(), vec![(b, (x, 1))]);
        assert!(ShardCache::new(home.path(), "http://other").lookup(&wanted).is_empty());
    }
}
