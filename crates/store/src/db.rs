//! The RocksDB index: the only file in the crate that names `rocksdb`.

use std::path::Path;

use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use std::sync::Arc;

use super::meta_cache::MetaCache;
use super::records::{ChunkMeta, FileRecord, XorbMeta};
use super::{Result, StoreError};
use tessera_xet::hash::{ChunkHash, FileHash, Sha256, XorbHash};

/// Version written to `meta/format`; a store of another version is refused, not misread.
const FORMAT_VERSION: &str = "tessera-store-1";

/// The index's tables, one RocksDB column family each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    /// Store-wide settings (format version).
    Meta,
    /// xorb hash -> chunk table ([`XorbMeta`]).
    Xorb,
    /// chunk hash -> (xorb hash, chunk index): the local dedup index.
    Chunk,
    /// file hash -> [`FileRecord`].
    File,
    /// sha256 -> file hash.
    Sha,
    /// commit -> tree entries (JSON).
    Tree,
    /// ref key -> (commit, resolved-at) (JSON).
    Ref,
    /// pin name -> file hash: roots that `tessera add` keeps alive.
    Pin,
    /// git blob id -> file hash, for regular files of pulled repos (skips re-downloads).
    GitOid,
    /// The hub server's sections (`space.rs`), opaque to the store; named after what the
    /// server kept in them when the store still named them.
    HubRepo,
    /// The server's second section.
    HubRef,
    /// The server's third section.
    HubCommit,
    /// The server's fourth section.
    HubTree,
    /// commit -> its date (unix seconds, 8 bytes LE), for the mount's `mtime`.
    CommitDate,
    /// GC roots: `{kind}{holder}\0{file hash}` -> empty (`roots.rs`); all `gc` reads.
    Root,
    /// Where a tree (`t{tree key}`) or ref (`r{ref key}`) came from: the hub endpoint that
    /// listed it, so one endpoint's answer never stands in for another's.
    Origin,
}

impl Table {
    const ALL: [Table; 16] = [
        Table::Meta,
        Table::Xorb,
        Table::Chunk,
        Table::File,
        Table::Sha,
        Table::Tree,
        Table::Ref,
        Table::Pin,
        Table::GitOid,
        Table::HubRepo,
        Table::HubRef,
        Table::HubCommit,
        Table::HubTree,
        Table::CommitDate,
        Table::Root,
        Table::Origin,
    ];

    fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Xorb => "xorb",
            Table::Chunk => "chunk",
            Table::File => "file",
            Table::Sha => "sha",
            Table::Tree => "tree",
            Table::Ref => "ref",
            Table::Pin => "pin",
            Table::GitOid => "git_oid",
            Table::HubRepo => "hub_repo",
            Table::HubRef => "hub_ref",
            Table::HubCommit => "hub_commit",
            Table::HubTree => "hub_tree",
            Table::CommitDate => "commit_date",
            Table::Root => "root",
            Table::Origin => "origin",
        }
    }
}

/// Writes applied together, atomically and synced.
#[derive(Default)]
pub(crate) struct KvBatch {
    ops: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
}

impl KvBatch {
    /// Sets `key` to `value`.
    pub(crate) fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((table, key.into(), Some(value.into())));
    }

    /// Removes `key`.
    pub(crate) fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push((table, key.into(), None));
    }

    /// Whether nothing was queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The queued writes in order: (table, key, value; `None` deletes).
    #[cfg(test)]
    pub(crate) fn ops(&self) -> &[(Table, Vec<u8>, Option<Vec<u8>>)] {
        &self.ops
    }
}

/// Queues a file record and its sha256 alias.
pub(crate) fn put_file(batch: &mut KvBatch, record: &FileRecord) {
    put_file_record(batch, record);
    batch.put(Table::Sha, record.sha256.as_bytes().to_vec(), record.hash.as_bytes().to_vec());
}

/// Queues a file record without its sha256 alias.
pub(crate) fn put_file_record(batch: &mut KvBatch, record: &FileRecord) {
    batch.put(Table::File, record.hash.as_bytes().to_vec(), record.encode());
}

/// Queues a xorb's chunk table and the dedup entries of its present chunks.
pub(crate) fn put_xorb(batch: &mut KvBatch, meta: &XorbMeta) {
    let present = meta.chunks.iter().enumerate().filter_map(|(i, c)| Some((i as u32, (*c)?)));
    put_xorb_adding(batch, meta, present);
}

/// Queues a xorb's chunk table and the dedup entries of the `added` chunks only: a table
/// growing as a lazy read lands is rewritten a few times a second, and rewriting every older
/// chunk's entry each time cost a 2 GiB cold read half a second of CPU.
pub(crate) fn put_xorb_adding(batch: &mut KvBatch, meta: &XorbMeta, added: impl IntoIterator<Item = (u32, ChunkMeta)>) {
    batch.put(Table::Xorb, meta.hash.as_bytes().to_vec(), meta.encode());
    for (i, c) in added {
        let mut v = meta.hash.as_bytes().to_vec();
        v.extend_from_slice(&i.to_le_bytes());
        batch.put(Table::Chunk, c.hash.as_bytes().to_vec(), v);
    }
}

pub(crate) struct Db {
    db: DB,
    metas: MetaCache,
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Opening the store is on the restart path of every mount: skip reading every table's
        // stats at open, and the info log (RocksDB dumps every family's options into it on
        // each open: 170 KB, a third of the open time here); warnings and errors still go there.
        opts.set_skip_stats_update_on_db_open(true);
        // RocksDB opens table files with up to 16 threads per column family: ~200 thread
        // spawns per open for a dozen small families, which cost more than opening the files.
        opts.set_max_file_opening_threads(1);
        opts.set_log_level(rocksdb::LogLevel::Warn);
        opts.set_keep_log_file_num(4);
        let cfs =
            Table::ALL.iter().map(|t| ColumnFamilyDescriptor::new(t.name(), Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let this = Self { db, metas: MetaCache::default() };
        this.check_version()?;
        this.migrate_roots()?;
        Ok(this)
    }

    fn check_version(&self) -> Result<()> {
        match self.get(Table::Meta, b"format")? {
            None => {
                let mut b = KvBatch::default();
                b.put(Table::Meta, b"format".to_vec(), FORMAT_VERSION.as_bytes().to_vec());
                self.write(b)
            }
            Some(v) if v == FORMAT_VERSION.as_bytes() => Ok(()),
            Some(v) => Err(StoreError::Version {
                found: String::from_utf8_lossy(&v).into_owned(),
                expected: FORMAT_VERSION,
            }),
        }
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        // Every table's family is created at open (create_missing_column_families).
        #[allow(clippy::expect_used)]
        self.db.cf_handle(table.name()).expect("column family created at open")
    }

    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(table), key)?)
    }

    pub(crate) fn multi_get(&self, table: Table, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        let cf = self.cf(table);
        self.db
            .multi_get_cf(keys.iter().map(|k| (cf, *k)))
            .into_iter()
            .map(|r| r.map_err(StoreError::from))
            .collect()
    }

    pub(crate) fn write(&self, batch: KvBatch) -> Result<()> {
        let mut wb = WriteBatch::default();
        for (table, key, value) in &batch.ops {
            match value {
                Some(v) => wb.put_cf(self.cf(*table), key, v),
                None => wb.delete_cf(self.cf(*table), key),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let written = self.db.write_opt(wb, &wo);
        // Whether or not the write landed, no cached table may differ from the index now.
        self.metas.invalidate(batch.ops.iter().filter(|(t, ..)| *t == Table::Xorb).map(|(_, k, _)| k.as_slice()));
        Ok(written?)
    }

    pub(crate) fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in
            self.db.iterator_cf(self.cf(table), IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// Visits every entry of a table without collecting them all (for fsck, gc, du).
    pub(crate) fn for_each(
        &self,
        table: Table,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        for item in self.db.iterator_cf(self.cf(table), IteratorMode::Start) {
            let (k, v) = item?;
            f(&k, &v)?;
        }
        Ok(())
    }

    pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<T>> {
        match self.get(table, key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| record_err(table, e)),
        }
    }

    pub(crate) fn xorb_meta(&self, hash: &XorbHash) -> Result<Option<XorbMeta>> {
        let writes = match self.metas.get(hash) {
            Ok(cached) => return Ok(Some(XorbMeta::clone(&cached))),
            Err(writes) => writes,
        };
        let Some(v) = self.get(Table::Xorb, hash.as_bytes())? else { return Ok(None) };
        let meta = XorbMeta::decode(*hash, &v)?;
        self.metas.insert(Arc::new(meta.clone()), writes);
        Ok(Some(meta))
    }

    pub(crate) fn chunk_location(&self, chunk: &ChunkHash) -> Result<Option<(XorbHash, u32)>> {
        match self.get(Table::Chunk, chunk.as_bytes())? {
            None => Ok(None),
            Some(v) => decode_location(&v).map(Some),
        }
    }

    /// Locations of many chunks in one RocksDB round.
    pub(crate) fn chunk_locations(
        &self,
        chunks: &[ChunkHash],
    ) -> Result<Vec<Option<(XorbHash, u32)>>> {
        let keys: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes().as_slice()).collect();
        self.multi_get(Table::Chunk, &keys)?
            .into_iter()
            .map(|v| v.map(|v| decode_location(&v)).transpose())
            .collect()
    }

    pub(crate) fn file(&self, hash: &FileHash) -> Result<Option<FileRecord>> {
        match self.get(Table::File, hash.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(FileRecord::decode(*hash, &v)?)),
        }
    }

    pub(crate) fn file_by_sha256(&self, sha: &Sha256) -> Result<Option<FileHash>> {
        match self.get(Table::Sha, sha.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(FileHash::from_bytes(
                v.as_slice().try_into().map_err(|_| bad("sha", v.len()))?,
            ))),
        }
    }
}

fn decode_location(v: &[u8]) -> Result<(XorbHash, u32)> {
    if v.len() != 36 {
        return Err(bad("chunk", v.len()));
    }
    let mut h = [0u8; 32];
    h.copy_from_slice(&v[..32]);
    Ok((XorbHash::from_bytes(h), u32::from_le_bytes([v[32], v[33], v[34], v[35]])))
}

fn bad(what: &'static str, len: usize) -> StoreError {
    StoreError::Record(super::RecordError { what, len })
}

fn record_err(table: Table, _e: serde_json::Error) -> StoreError {
    bad(table.name(), 0)
}
