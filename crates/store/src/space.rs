//! The hub server's namespace in the store: key/value pairs the server owns, spells and reads,
//! which the store keeps but never interprets. The server sees four ordered [`Section`]s of
//! opaque keys, never the store's tables, so it cannot touch the index, the refs of pulls or
//! the GC roots; and the store never builds a server key. The one thing the store needs to
//! know of the server's records, which files they keep alive, the server says when it writes
//! them ([`ServerBatch::put_rooted`]): those roots go into the same atomic batch as the record.
//!
//! On disk each section is one column family (`hub_repo`, `hub_ref`, `hub_commit`, `hub_tree`:
//! the names of the tables the server had before its namespace was opaque), and a key is
//! stored as the server gave it, so stores written before keep their records.

use super::db::{KvBatch, Table};
use super::roots::RootHolder;
use super::{Result, Store};
use tessera_xet::hash::FileHash;

/// One of the server's sections: an ordered key space of its own. What each holds is the
/// server's business (`tessera-server`'s `db.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Section(u8);

impl Section {
    /// Every section, in a fixed order (the server names them by position).
    pub const ALL: [Section; 4] = [Section(0), Section(1), Section(2), Section(3)];

    /// The position of the section in [`Section::ALL`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The column family holding the section. The order is the on-disk layout: changing it
    /// would mix up the records of existing stores.
    fn table(self) -> Table {
        match self.0 {
            0 => Table::HubRepo,
            1 => Table::HubRef,
            2 => Table::HubCommit,
            _ => Table::HubTree,
        }
    }
}

/// One queued write: the section, the key and the value (`None` deletes).
pub type ServerWrite = (Section, Vec<u8>, Option<Vec<u8>>);

/// Writes to the server's namespace applied together, atomically and synced, with the roots
/// of the records they put.
#[derive(Default)]
pub struct ServerBatch {
    writes: Vec<ServerWrite>,
    roots: Vec<(String, FileHash)>,
}

impl ServerBatch {
    /// Sets `key` of `section` to `value`.
    pub fn put(&mut self, section: Section, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.push((section, key.into(), Some(value.into())));
    }

    /// Removes `key` of `section`.
    pub fn delete(&mut self, section: Section, key: impl Into<Vec<u8>>) {
        self.writes.push((section, key.into(), None));
    }

    /// Sets `key` of `section` to `value`, a record that keeps `files` alive through `gc` and
    /// eviction: their roots are written in the same batch. `holder` names the record among
    /// the roots (a hub tree's id; it holds no NUL). Such a record is immutable and named by
    /// its content (a commit's tree, readable by id for as long as the store lives), so its
    /// roots are never dropped.
    pub fn put_rooted(
        &mut self,
        section: Section,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        holder: &str,
        files: impl IntoIterator<Item = FileHash>,
    ) {
        self.put(section, key, value);
        self.roots.extend(files.into_iter().map(|f| (holder.to_string(), f)));
    }

    /// Whether nothing was queued.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.roots.is_empty()
    }

    /// Takes the queued key writes out, in order, leaving the roots: for a writer that keeps
    /// the server's records elsewhere (a bucket) and only their roots in this store.
    pub fn take_writes(&mut self) -> Vec<ServerWrite> {
        std::mem::take(&mut self.writes)
    }

    fn into_kv(self) -> KvBatch {
        let mut batch = KvBatch::default();
        for (section, key, value) in self.writes {
            match value {
                Some(v) => batch.put(section.table(), key, v),
                None => batch.delete(section.table(), key),
            }
        }
        for (holder, file) in &self.roots {
            batch.add_root(RootHolder::HubTree(holder), file);
        }
        batch
    }
}

/// The server's namespace of a store ([`Store::server_space`]); cheap to clone.
#[derive(Clone)]
pub struct ServerSpace {
    store: Store,
}

impl ServerSpace {
    /// The value of `key` of `section`.
    pub fn get(&self, section: Section, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store.inner.db.get(section.table(), key)
    }

    /// Every pair of `section` whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, section: Section, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store.inner.db.scan_prefix(section.table(), prefix)
    }

    /// Applies a batch atomically and durably; never while `gc` decides what is live.
    pub fn write(&self, batch: ServerBatch) -> Result<()> {
        self.store.write_roots(batch.into_kv())
    }
}

impl Store {
    /// The hub server's namespace in this store.
    pub fn server_space(&self) -> ServerSpace {
        ServerSpace { store: self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// Sections are the column families existing stores hold the server's records in, and a
    /// rooted record's roots are the ones hub trees always had (`h{tree id}\0{file}`).
    #[test]
    fn sections_and_roots_keep_the_layout_of_existing_stores() -> TestResult {
        let home = tempfile::tempdir()?;
        let store = Store::open(home.path())?;
        let file = store.ingest_bytes(b"hub file")?.file;
        let tables = [Table::HubRepo, Table::HubRef, Table::HubCommit, Table::HubTree];
        let mut batch = ServerBatch::default();
        for section in Section::ALL {
            batch.put(section, format!("k{}", section.index()), b"v".to_vec());
        }
        batch.put_rooted(Section::ALL[3], b"t\0abc".to_vec(), b"[]".to_vec(), "abc", [file]);
        let space = store.server_space();
        space.write(batch)?;
        for (section, table) in Section::ALL.into_iter().zip(tables) {
            let key = format!("k{}", section.index());
            assert_eq!(store.inner.db.get(table, key.as_bytes())?.as_deref(), Some(&b"v"[..]));
            assert_eq!(space.get(section, key.as_bytes())?.as_deref(), Some(&b"v"[..]));
        }
        assert!(store.inner.db.get(Table::HubTree, b"t\0abc")?.is_some());
        let root = [&b"habc\0"[..], file.as_bytes()].concat();
        assert!(store.inner.db.get(Table::Root, &root)?.is_some());
        assert_eq!(store.gc()?.files_removed, 0, "the rooted record keeps its file");
        Ok(())
    }

    /// A bucket writer takes the records and still writes their roots here.
    #[test]
    fn taking_the_writes_leaves_the_roots() {
        let mut batch = ServerBatch::default();
        batch.put_rooted(Section::ALL[3], b"t\0x".to_vec(), b"[]".to_vec(), "x", [FileHash::ZERO]);
        assert_eq!(batch.take_writes().len(), 1);
        assert!(!batch.is_empty());
        assert!(batch.into_kv().ops().iter().all(|(t, _, _)| *t == Table::Root));
    }
}
