//! GC roots, typed: which holder keeps which file alive.
//!
//! Every writer of a reference (a client tree, a pin, the tree of a hub commit) queues its roots
//! in the same [`KvBatch`] as the reference itself, so a crash never leaves one without the other,
//! and `gc` reads only the `root` table: it never guesses liveness from values it would have to
//! decode. Key: `{kind}{holder}\0{file hash}` (holders are ids or names, which never hold NUL);
//! value empty.
//!
//! The push cache (`$TESSERA_HOME/push-cache`) is not a root: it lists xorbs a remote CAS holds,
//! never files of this store.

use super::db::{KvBatch, Table};
use super::records::TreeEntry;
use super::{Result, StoreError};
use tessera_xet::hash::FileHash;

/// Who holds a reference to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootHolder<'a> {
    /// A pin of `tessera add`, by name.
    Pin(&'a str),
    /// A client tree (a pulled, mounted or exported revision), by its tree key.
    Tree(&'a str),
    /// A record of the hub server that roots files (the tree of a commit), by the name the
    /// server gave it (`ServerBatch::put_rooted`).
    HubTree(&'a str),
    /// A pinned revision (`pull`, `tessera pin`), by its tree key `model/org/name@commit`.
    Revision(&'a str),
}

/// Root kinds that also protect their files' data from eviction (`evict.rs`): pins of `add`,
/// pinned revisions, hub commits. A client tree alone (a lazily mounted revision) does not.
const PINNING_KINDS: [u8; 3] = [b'p', b'h', b'r'];

impl RootHolder<'_> {
    fn prefix(&self) -> Vec<u8> {
        let (kind, name) = match self {
            RootHolder::Pin(n) => (b'p', n),
            RootHolder::Tree(n) => (b't', n),
            RootHolder::HubTree(n) => (b'h', n),
            RootHolder::Revision(n) => (b'r', n),
        };
        let mut key = Vec::with_capacity(name.len() + 34);
        key.push(kind);
        key.extend_from_slice(name.as_bytes());
        key.push(0);
        key
    }
}

/// Meta key set once every reference of the store has its roots (stores made before roots were
/// typed are migrated at open).
const MIGRATED: &[u8] = b"roots";

impl KvBatch {
    /// Queues a root: `holder` keeps `file` alive through `gc`.
    pub(crate) fn add_root(&mut self, holder: RootHolder<'_>, file: &FileHash) {
        let mut key = holder.prefix();
        key.extend_from_slice(file.as_bytes());
        self.put(Table::Root, key, Vec::new());
    }

    /// Queues the roots of every file of a tree.
    pub(crate) fn add_tree_roots(&mut self, holder: RootHolder<'_>, entries: &[TreeEntry]) {
        for e in entries {
            self.add_root(holder, &e.file);
        }
    }
}

/// The holder a root key names: the bytes between its kind and the NUL before the file.
fn root_holder(key: &[u8]) -> Option<String> {
    let end = key.len().checked_sub(33)?;
    (key.get(end) == Some(&0)).then_some(())?;
    Some(String::from_utf8_lossy(key.get(1..end)?).into_owned())
}

/// The file a root key names: its last 32 bytes.
fn rooted_file(key: &[u8]) -> Option<FileHash> {
    let at = key.len().checked_sub(32)?;
    let bytes: [u8; 32] = key[at..].try_into().ok()?;
    Some(FileHash::from_bytes(bytes))
}

impl super::db::Db {
    /// Every file some root keeps alive.
    pub(crate) fn rooted_files(&self) -> Result<std::collections::HashSet<FileHash>> {
        let mut live = std::collections::HashSet::new();
        self.for_each(Table::Root, |k, _| {
            live.insert(rooted_file(k).ok_or_else(|| bad_root(k))?);
            Ok(())
        })?;
        Ok(live)
    }

    /// Every file a pin, a pinned revision or a hub commit keeps from eviction.
    pub(crate) fn pinned_files(&self) -> Result<std::collections::HashSet<FileHash>> {
        let mut pinned = std::collections::HashSet::new();
        for kind in PINNING_KINDS {
            for (k, _) in self.scan_prefix(Table::Root, &[kind])? {
                pinned.insert(rooted_file(&k).ok_or_else(|| bad_root(&k))?);
            }
        }
        Ok(pinned)
    }

    /// The holders of pinned revisions: their tree keys, sorted.
    pub(crate) fn pinned_revisions(&self) -> Result<Vec<String>> {
        let mut keys = std::collections::BTreeSet::new();
        for (k, _) in self.scan_prefix(Table::Root, b"r")? {
            keys.insert(root_holder(&k).ok_or_else(|| bad_root(&k))?);
        }
        Ok(keys.into_iter().collect())
    }

    /// The pins of `tessera add` as their roots say: (name, file), by name. Read from the
    /// roots, which `gc` trusts, never from values that might not decode.
    pub(crate) fn pins(&self) -> Result<Vec<(String, FileHash)>> {
        let mut pins = Vec::new();
        for (k, _) in self.scan_prefix(Table::Root, b"p")? {
            let parsed = root_holder(&k).zip(rooted_file(&k));
            pins.push(parsed.ok_or_else(|| bad_root(&k))?);
        }
        Ok(pins)
    }

    /// Queues the deletion of every root of `holder`.
    pub(crate) fn drop_roots(&self, batch: &mut KvBatch, holder: RootHolder<'_>) -> Result<()> {
        for (k, _) in self.scan_prefix(Table::Root, &holder.prefix())? {
            batch.delete(Table::Root, k);
        }
        Ok(())
    }

    /// Gives the references of a store made before roots were typed their roots, once. Every
    /// value must decode as its type: one that does not stops the open with an error rather
    /// than leave its files to `gc`.
    pub(crate) fn migrate_roots(&self) -> Result<()> {
        if self.get(Table::Meta, MIGRATED)?.is_some() {
            return Ok(());
        }
        let mut batch = KvBatch::default();
        self.for_each(Table::Pin, |k, v| {
            let file: FileHash = serde_json::from_slice(v).map_err(|_| bad_value("pin", k))?;
            batch.add_root(RootHolder::Pin(&String::from_utf8_lossy(k)), &file);
            Ok(())
        })?;
        self.for_each(Table::Tree, |k, v| {
            let tree: Vec<TreeEntry> =
                serde_json::from_slice(v).map_err(|_| bad_value("tree", k))?;
            batch.add_tree_roots(RootHolder::Tree(&String::from_utf8_lossy(k)), &tree);
            Ok(())
        })?;
        self.for_each(Table::HubTree, |k, v| {
            let Some(id) = k.strip_prefix(LEGACY_HUB_TREE_PREFIX) else { return Ok(()) };
            let tree: Vec<TreeEntry> =
                serde_json::from_slice(v).map_err(|_| bad_value("hub tree", k))?;
            batch.add_tree_roots(RootHolder::HubTree(&String::from_utf8_lossy(id)), &tree);
            Ok(())
        })?;
        batch.put(Table::Meta, MIGRATED.to_vec(), b"1".to_vec());
        self.write(batch)
    }
}

/// Prefix of the hub server's tree keys in its fourth section (`t\0{tree id}`), as stores made
/// before roots hold them. Only this one-time migration reads a server key: since then the
/// server says which files its records root when it writes them.
const LEGACY_HUB_TREE_PREFIX: &[u8] = b"t\0";

fn bad_root(key: &[u8]) -> StoreError {
    StoreError::Record(super::RecordError { what: "root", len: key.len() })
}

fn bad_value(what: &'static str, key: &[u8]) -> StoreError {
    tracing::error!(key = %String::from_utf8_lossy(key), "{what} does not decode; refusing to guess its roots");
    StoreError::Record(super::RecordError { what, len: key.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn alive(store: &Store, f: &FileHash, data: &[u8]) -> bool {
        store.read_file_range(f, 0, data.len() as u64).is_ok_and(|d| d == data)
    }

    /// A pin value that no longer decodes (a renamed field, a damaged value) once let `gc`
    /// skip it; the root keeps its file, and `pins` lists it all the same.
    #[test]
    fn liveness_does_not_depend_on_what_values_look_like() -> TestResult {
        let home = tempfile::tempdir()?;
        let store = Store::open(home.path())?;
        let data = tessera_xet::testdata::splitmix(200_000, 5);
        let pinned = store.ingest_bytes(&data)?.file;
        store.pin("p", &pinned)?;
        let mut batch = KvBatch::default();
        batch.put(Table::Pin, b"p".to_vec(), b"{\"renamed\":1}".to_vec());
        store.inner.db.write(batch)?;
        store.gc()?;
        assert!(alive(&store, &pinned, &data));
        assert_eq!(store.pins()?, vec![("p".to_string(), pinned)]);
        assert!(store.unpin("p")?);
        assert_eq!(store.gc()?.files_removed, 1);
        assert!(!alive(&store, &pinned, &data));
        Ok(())
    }

    /// A store from before roots (a tree without roots, no migration mark) gets them at open;
    /// one whose tree does not decode is refused rather than left to `gc`.
    #[test]
    fn stores_from_before_roots_are_migrated_and_undecodable_ones_refused() -> TestResult {
        let home = tempfile::tempdir()?;
        let data = tessera_xet::testdata::splitmix(200_000, 6);
        let f = {
            let store = Store::open(home.path())?;
            let added = store.ingest_bytes(&data)?;
            let entry = TreeEntry::lfs("x".into(), added.size, added.file, added.sha256);
            let mut batch = KvBatch::default();
            batch.put(Table::Tree, b"old-commit".to_vec(), serde_json::to_vec(&[entry])?);
            batch.delete(Table::Meta, MIGRATED.to_vec());
            store.inner.db.write(batch)?;
            added.file
        };
        let store = Store::open(home.path())?;
        store.gc()?;
        assert!(alive(&store, &f, &data));
        let mut batch = KvBatch::default();
        batch.put(Table::Tree, b"bad".to_vec(), b"not json".to_vec());
        batch.delete(Table::Meta, MIGRATED.to_vec());
        store.inner.db.write(batch)?;
        drop(store);
        assert!(matches!(Store::open(home.path()), Err(StoreError::Record(_))));
        Ok(())
    }
}
