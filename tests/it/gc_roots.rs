//! `gc` keeps exactly what a typed root holds: one test per kind of root (pin, client tree,
//! hub commit) and roots written while `gc` runs. The tests that write raw index rows (a pin
//! value that no longer decodes, a store from before roots) are unit tests of
//! `tessera-store`'s `roots.rs`: the index is not public.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use tessera::hash::FileHash;
use tessera::protocol::{RepoId, RepoType};
use tessera::server::db::{CommitMeta, Entry, HubDb, RepoKey, RepoRecord};
use tessera::store::{Store, StoreError, TreeEntry};

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
    let id = RepoId::parse("org/m").unwrap();
    let key = RepoKey::new(RepoType::Model, &id);
    let record = RepoRecord {
        repo_type: RepoType::Model,
        id,
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
