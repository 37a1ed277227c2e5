//! `gc` keeps exactly what a typed root holds: one test per kind of root (pin, client tree,
//! hub commit), one proving liveness no longer depends on what a value's JSON looks like, the
//! migration of stores made before roots, and roots written while `gc` runs.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use tessera::hash::FileHash;
use tessera::protocol::{RepoId, RepoType};
use tessera::server::db::{CommitMeta, Entry, HubDb, RepoKey, RepoRecord};
use tessera::store::{KvBatch, Store, StoreError, Table, TreeEntry};

fn file(store: &Store, seed: u64) -> (FileHash, Vec<u8>) {
    let data = tessera::testdata::splitmix(200_000, seed);
    (store.ingest_bytes(&data).expect("ingest").file, data)
}

fn entry(store: &Store, path: &str, f: FileHash) -> TreeEntry {
    let rec = store.file(&f).expect("index").expect("file");
    TreeEntry::lfs(path.into(), rec.size, f, rec.sha256)
}

fn alive(store: &Store, f: &FileHash, data: &[u8]) -> bool {
    store.read_file_range(f, 0, data.len() as u64).is_ok_and(|d| d == data)
}

fn hub_commit(store: &Store, path: &str, f: FileHash) {
    let hub = HubDb::new(store.clone());
    let key = RepoKey::new(RepoType::Model, &RepoId::parse("org/m").unwrap());
    let record = RepoRecord {
        repo_type: "model".into(),
        id: "org/m".into(),
        private: false,
        owner: "org".into(),
        created: 0,
        sdk: None,
    };
    hub.create_repo(&key, &record).expect("repo");
    let meta =
        CommitMeta { author: "org".into(), date: 1, title: "add".into(), message: String::new() };
    let e: Entry = entry(store, path, f);
    hub.commit_to_branch(&key, "main", None, &meta, |mut old, _| {
        old.push(e.clone());
        Ok(old)
    })
    .expect("commit");
}

#[test]
fn gc_keeps_each_kind_of_root_and_collects_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (pinned, d1) = file(&store, 1);
    let (in_tree, d2) = file(&store, 2);
    let (in_hub, d3) = file(&store, 3);
    let (orphan, d4) = file(&store, 4);
    store.pin("weights.bin", &pinned).unwrap();
    let at = tessera::store::CommitKey {
        repo_type: RepoType::Model,
        repo_id: RepoId::parse("org/a").unwrap(),
        commit: tessera::protocol::CommitId::parse(&"c".repeat(40)).unwrap(),
    };
    store.put_repo_tree(&at, &[entry(&store, "a.bin", in_tree)], "http://hub").unwrap();
    hub_commit(&store, "b.bin", in_hub);

    let report = store.gc().unwrap();
    assert_eq!(report.files_removed, 1);
    assert!(
        alive(&store, &pinned, &d1) && alive(&store, &in_tree, &d2) && alive(&store, &in_hub, &d3)
    );
    assert!(!alive(&store, &orphan, &d4));
    assert!(store.fsck().unwrap().problems.is_empty());
}

#[test]
fn liveness_does_not_depend_on_what_values_look_like() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (pinned, data) = file(&store, 5);
    store.pin("p", &pinned).unwrap();
    // A pin value that no longer decodes (a renamed field, a damaged value) once let gc skip it.
    let mut batch = KvBatch::default();
    batch.put(Table::Pin, b"p".to_vec(), b"{\"renamed\":1}".to_vec());
    store.kv_write(batch).unwrap();
    store.gc().unwrap();
    assert!(alive(&store, &pinned, &data));
    assert!(store.unpin("p").unwrap());
    assert_eq!(store.gc().unwrap().files_removed, 1);
    assert!(!alive(&store, &pinned, &data));
}

#[test]
fn stores_from_before_roots_are_migrated_and_undecodable_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (f, data) = {
        let store = Store::open(dir.path()).unwrap();
        let (f, data) = file(&store, 6);
        // The shape an old store has: a tree without roots, and no migration mark.
        let mut batch = KvBatch::default();
        let tree = serde_json::to_vec(&[entry(&store, "x", f)]).unwrap();
        batch.put(Table::Tree, b"old-commit".to_vec(), tree);
        batch.delete(Table::Meta, b"roots".to_vec());
        store.kv_write(batch).unwrap();
        (f, data)
    };
    let store = Store::open(dir.path()).unwrap();
    store.gc().unwrap();
    assert!(alive(&store, &f, &data));
    let mut batch = KvBatch::default();
    batch.put(Table::Tree, b"bad".to_vec(), b"not json".to_vec());
    batch.delete(Table::Meta, b"roots".to_vec());
    store.kv_write(batch).unwrap();
    drop(store);
    assert!(matches!(Store::open(dir.path()), Err(StoreError::Record(_))));
}

#[test]
fn a_root_written_while_gc_runs_is_either_seen_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let files: Vec<_> = (0..24).map(|i| file(&store, 100 + i)).collect();
    let pinner = {
        let store = store.clone();
        let files = files.clone();
        std::thread::spawn(move || {
            files
                .iter()
                .enumerate()
                .map(|(i, (f, _))| match store.pin(&format!("p{i}"), f) {
                    Ok(()) => true,
                    Err(StoreError::UnknownFile(_)) => false,
                    Err(e) => panic!("pin failed: {e}"),
                })
                .collect::<Vec<bool>>()
        })
    };
    while !pinner.is_finished() {
        store.gc().unwrap();
    }
    let pinned = pinner.join().unwrap();
    store.gc().unwrap();
    for ((f, data), kept) in files.iter().zip(&pinned) {
        assert_eq!(
            alive(&store, f, data),
            *kept,
            "a pin that succeeded keeps its file; a refused one does not exist"
        );
    }
    assert!(store.fsck().unwrap().problems.is_empty());
}
