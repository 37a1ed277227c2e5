//! The filesystem without FUSE: namespace, offline reads, and lazy reads against a remote that
//! is a second real store (the bytes travel as Xet chunk ranges, as from the Hub's CAS).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::*;
use tessera_store::{
    RemoteSource, RevisionKey, SourceError, Store, StoreError, StoreSource, TreeEntry,
};

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

use tessera_xet::testdata::splitmix as bytes;

use tessera_store::clock::unix_secs as now;

/// A commit id from a test constant.
fn commit_id(hex: &str) -> tessera_protocol::CommitId {
    tessera_protocol::CommitId::parse(hex).expect("commit id")
}

fn key(repo: &str, rev: &str) -> RevisionKey {
    let id = tessera_protocol::RepoId::parse(repo).expect("test repo id");
    RevisionKey::new(tessera_protocol::RepoType::Model, id, rev).expect("test revision")
}

/// Stores `files` as the tree of `commit` and points each of `revs` at it.
fn seed(store: &Store, repo: &str, revs: &[&str], commit: &str, files: &[(&str, &[u8])]) {
    let mut entries = Vec::new();
    for (path, data) in files {
        let r = store.ingest_bytes(data).expect("ingest");
        entries.push(TreeEntry {
            path: (*path).into(),
            size: r.size,
            file: r.file,
            sha256: r.sha256,
            git_oid: tessera_protocol::GitOid::parse(&"0".repeat(40)).expect("oid"),
            lfs: true,
        });
    }
    store.put_tree(&commit_id(commit), &entries).expect("tree");
    for rev in revs {
        store.put_ref(&key(repo, rev), &commit_id(commit), now(), None).expect("ref");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    Hang(Duration),
    Panic,
}

/// A remote that is another store ([`StoreSource`]), with failure modes and a log of what it
/// was asked.
struct StoreRemote {
    inner: StoreSource,
    mode: Mutex<Mode>,
    fetches: AtomicUsize,
    asked: Mutex<Vec<(u64, u64)>>,
}

impl StoreRemote {
    fn new(src: &Store, dst: &Store) -> Arc<Self> {
        Arc::new(Self {
            inner: StoreSource::new(src, dst),
            mode: Mutex::new(Mode::Up),
            fetches: AtomicUsize::new(0),
            asked: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock() = mode;
    }

    fn gate(&self) -> Result<(), SourceError> {
        let mode = *self.mode.lock();
        match mode {
            Mode::Up => Ok(()),
            Mode::Down => Err(SourceError::Unavailable("connection refused".into())),
            Mode::Panic => panic!("a bug in the remote"),
            Mode::Hang(d) => {
                std::thread::sleep(d);
                Err(SourceError::Unavailable("timed out".into()))
            }
        }
    }
}

impl RemoteSource for StoreRemote {
    fn resolve(&self, key: &RevisionKey) -> Result<tessera_protocol::CommitId, SourceError> {
        self.gate()?;
        self.inner.resolve(key)
    }

    fn fetch(
        &self,
        repo: &tessera_store::CommitKey,
        entry: &TreeEntry,
        offset: u64,
        len: u64,
    ) -> Result<(), SourceError> {
        self.gate()?;
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().push((offset, len));
        self.inner.fetch(repo, entry, offset, len)
    }
}

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    remote_store: Store,
    local: Store,
    remote: Arc<StoreRemote>,
}

fn fixture() -> Fixture {
    let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let remote_store = Store::open(a.path()).expect("open");
    let local = Store::open(b.path()).expect("open");
    let remote = StoreRemote::new(&remote_store, &local);
    Fixture { _dirs: (a, b), remote_store, local, remote }
}

fn walk(vfs: &Vfs, path: &str) -> Result<Entry, Errno> {
    let mut entry = Entry { attr: vfs.getattr(ROOT_INO)?, ttl: Duration::ZERO };
    for part in path.split('/') {
        entry = vfs.lookup(entry.attr.ino, part)?;
    }
    Ok(entry)
}

fn read_all(vfs: &Vfs, path: &str) -> Result<Vec<u8>, Errno> {
    let e = walk(vfs, path)?;
    let mut out = Vec::new();
    loop {
        let part = vfs.read(e.attr.ino, out.len() as u64, 1 << 20)?;
        if part.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&part);
    }
}

fn names_in(vfs: &Vfs, path: &str) -> Vec<String> {
    let ino = if path.is_empty() { ROOT_INO } else { walk(vfs, path).expect("dir").attr.ino };
    vfs.readdir(ino).expect("readdir").into_iter().map(|e| e.name).skip(2).collect()
}

#[test]
fn offline_namespace_reads_and_xattrs() {
    let f = fixture();
    let model = bytes(300_000, 1);
    let files: [(&str, &[u8]); 3] =
        [("config.json", b"{}"), ("onnx/model.onnx", &model), ("onnx/sub/empty.txt", b"")];
    seed(&f.local, "org/a", &["main", "v1", "refs/pr/1"], C1, &files);
    let vfs = Vfs::new(f.local.clone(), None, VfsOptions::default());

    assert_eq!(names_in(&vfs, ""), ["org"]);
    assert_eq!(names_in(&vfs, "org"), ["a@main", "a@refs%2Fpr%2F1", "a@v1"]);
    assert_eq!(names_in(&vfs, "org/a@main"), ["config.json", "onnx"]);
    assert_eq!(names_in(&vfs, "org/a@main/onnx"), ["model.onnx", "sub"]);
    for rev in ["main", "v1", "refs%2Fpr%2F1", C1] {
        assert!(
            read_all(&vfs, &format!("org/a@{rev}/onnx/model.onnx")).is_ok_and(|b| b == model),
            "{rev}"
        );
    }
    assert_eq!(read_all(&vfs, "org/a@main/onnx/sub/empty.txt"), Ok(Vec::new()));
    let file = walk(&vfs, "org/a@main/onnx/model.onnx").expect("file");
    assert_eq!(file.attr.size, model.len() as u64);
    assert_eq!(
        walk(&vfs, &format!("org/a@{C1}/onnx/model.onnx")).map(|e| e.attr.ino),
        Ok(file.attr.ino)
    );
    assert_ne!(
        walk(&vfs, "org/a@main").map(|e| e.attr.ino),
        walk(&vfs, "org/a@v1").map(|e| e.attr.ino)
    );
    assert!(vfs.read(file.attr.ino, 123_456, 1000).is_ok_and(|b| b == model[123_456..124_456]));
    assert!(vfs.read(file.attr.ino, 299_990, 1000).is_ok_and(|b| b == model[299_990..]));
    assert_eq!(vfs.read(file.attr.ino, 400_000, 1000), Ok(Vec::new()));

    assert_eq!(vfs.getxattr(file.attr.ino, "user.tessera.repo"), Ok(b"org/a".to_vec()));
    assert_eq!(vfs.getxattr(file.attr.ino, "user.tessera.commit"), Ok(C1.as_bytes().to_vec()));
    let sha = tessera_xet::hash::Sha256::of(&model).to_string();
    assert_eq!(vfs.getxattr(file.attr.ino, "user.tessera.sha256"), Ok(sha.into_bytes()));
    assert_eq!(vfs.getxattr(file.attr.ino, "user.tessera.other"), Err(Errno::NoAttr));
    assert_eq!(vfs.listxattr(file.attr.ino).map(|v| v.len()), Ok(4));

    for missing in [
        "nobody",
        ".Trash-0",
        "org/a@nope",
        "org/b@main",
        "org/a@main/nope",
        "org/a",
        "org/a@main/config.json/x",
    ] {
        assert!(walk(&vfs, missing).is_err(), "{missing}");
    }
    assert_eq!(walk(&vfs, "org/a@main/nope"), Err(Errno::NotFound));
    assert_eq!(walk(&vfs, "org/a@main/config.json/x"), Err(Errno::NotDir));
    assert_eq!(vfs.open(file.attr.ino, true), Err(Errno::ReadOnly));
    let dir = walk(&vfs, "org/a@main/onnx").expect("dir").attr.ino;
    assert_eq!(vfs.read(dir, 0, 10), Err(Errno::IsDir));
}

#[test]
fn offline_serves_only_what_is_stored() {
    let f = fixture();
    let data = bytes(200_000, 2);
    seed(&f.remote_store, "org/a", &["main"], C1, &[("w.bin", &data)]);
    // The local store knows the tree but holds no bytes.
    let c1 = commit_id(C1);
    f.local.put_tree(&c1, &f.remote_store.tree(&c1).expect("tree").expect("some")).expect("tree");
    f.local.put_ref(&key("org/a", "main"), &c1, now(), None).expect("ref");
    let vfs = Vfs::new(f.local.clone(), None, VfsOptions::default());
    let file = walk(&vfs, "org/a@main/w.bin").expect("listed");
    assert_eq!(vfs.open(file.attr.ino, false), Err(Errno::NotFound));
    assert_eq!(vfs.read(file.attr.ino, 0, 10), Err(Errno::Io));
}

fn lazy_setup(size: usize) -> (Fixture, Vec<u8>) {
    let f = fixture();
    let data = bytes(size, 7);
    seed(
        &f.remote_store,
        "org/m",
        &["main"],
        C1,
        &[("model.onnx", &data), ("config.json", b"{\"a\": 1}")],
    );
    (f, data)
}

#[test]
fn lazy_random_reads_fetch_only_what_they_touch_and_start_reads_prefetch() {
    let (f, data) = lazy_setup(8 << 20);
    let remote: Arc<dyn RemoteSource> = f.remote.clone();
    let opts = VfsOptions { prefetch_window: 1 << 20, ..VfsOptions::default() };
    let vfs = Vfs::new(f.local.clone(), Some(remote), opts);
    let file = walk(&vfs, "org/m@main/model.onnx").expect("resolves remotely");
    assert_eq!(file.attr.size, data.len() as u64);

    let at = 5_000_000;
    let got = vfs.read(file.attr.ino, at, 4096).expect("random read");
    assert!(got == data[at as usize..at as usize + 4096], "random read returned wrong bytes");
    assert_eq!(
        *f.remote.asked.lock(),
        [(at, 4096)],
        "a random read asks for exactly what it touches"
    );
    let tree = f.remote_store.tree(&commit_id(C1)).expect("tree").expect("some");
    let hash = tree.iter().find(|e| e.path == "model.onnx").expect("entry").file;
    let record = f.local.file(&hash).expect("store").expect("record fetched with the bytes");
    let tail = record.size - 4096;
    assert!(matches!(
        f.local.read_record_range(&record, tail, 4096),
        Err(StoreError::Missing { .. })
    ));

    // A sequential reader from the start gets read-ahead: pieces ahead of it, each asked once,
    // the window growing to its cap, so far fewer asks than reads.
    let (mut pos, step) = (0u64, 128u64 << 10);
    while pos < data.len() as u64 {
        let got = vfs.read(file.attr.ino, pos, step as u32).expect("sequential read");
        assert!(got == data[pos as usize..pos as usize + got.len()], "wrong bytes at {pos}");
        pos += got.len() as u64;
    }
    let asked = f.remote.asked.lock().clone();
    let reads = data.len() as u64 / step;
    assert!((asked.len() as u64) < reads / 2, "{} asks for {reads} reads: {asked:?}", asked.len());
    let mut pieces: Vec<_> = asked[1..].iter().filter(|(_, l)| *l > step).collect();
    assert!(!pieces.is_empty(), "no read-ahead: {asked:?}");
    pieces.sort_unstable();
    assert!(
        pieces.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0),
        "read-ahead asked twice: {asked:?}"
    );
}

#[test]
fn warm_store_needs_no_remote_and_down_remote_fails_unread_files_fast() {
    let (f, data) = lazy_setup(2 << 20);
    let remote: Arc<dyn RemoteSource> = f.remote.clone();
    {
        let vfs = Vfs::new(f.local.clone(), Some(remote.clone()), VfsOptions::default());
        assert!(read_all(&vfs, "org/m@main/model.onnx").is_ok_and(|b| b == data));
    }
    // A restarted mount with the remote gone: what was read is served, with no fetches.
    f.remote.set(Mode::Down);
    let opts = VfsOptions { fetch_timeout: Duration::from_millis(500), ..VfsOptions::default() };
    let vfs = Vfs::new(f.local.clone(), Some(remote), opts);
    assert!(read_all(&vfs, "org/m@main/model.onnx").is_ok_and(|b| b == data));
    assert_eq!(vfs.remote_fetches(), 0);
    let t = Instant::now();
    assert_eq!(read_all(&vfs, "org/m@main/config.json"), Err(Errno::Io));
    assert!(t.elapsed() < Duration::from_secs(2));

    // A remote that hangs: EIO after the fetch timeout, not a hung reader.
    f.remote.set(Mode::Hang(Duration::from_millis(1500)));
    let t = Instant::now();
    assert_eq!(read_all(&vfs, "org/m@main/config.json"), Err(Errno::Io));
    assert!(t.elapsed() < Duration::from_millis(1500), "took {:?}", t.elapsed());

    // Not cached as a failure: once the remote is back the same read works.
    f.remote.set(Mode::Up);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(read_all(&vfs, "org/m@main/config.json"), Ok(b"{\"a\": 1}".to_vec()));
}

#[test]
fn not_found_is_not_cached_and_branches_stay_pinned() {
    let f = fixture();
    let remote: Arc<dyn RemoteSource> = f.remote.clone();
    let opts = VfsOptions { ref_ttl: None, ..VfsOptions::default() };
    let vfs = Vfs::new(f.local.clone(), Some(remote.clone()), opts);
    assert_eq!(walk(&vfs, "org/m@main"), Err(Errno::NotFound));
    seed(&f.remote_store, "org/m", &["main"], C1, &[("a.txt", b"one")]);
    assert_eq!(read_all(&vfs, "org/m@main/a.txt"), Ok(b"one".to_vec()));

    // The branch moves upstream: this mount keeps its commit.
    seed(&f.remote_store, "org/m", &["main"], C2, &[("a.txt", b"two")]);
    assert_eq!(read_all(&vfs, "org/m@main/a.txt"), Ok(b"one".to_vec()));
    assert_eq!(read_all(&vfs, &format!("org/m@{C2}/a.txt")), Ok(b"two".to_vec()));

    // With a ref TTL it moves once the TTL has passed (the remote is asked again).
    let opts = VfsOptions { ref_ttl: Some(Duration::from_millis(1)), ..VfsOptions::default() };
    let vfs = Vfs::new(f.local.clone(), Some(remote), opts);
    f.local.put_ref(&key("org/m", "main"), &commit_id(C1), 0, None).expect("age the stored ref");
    assert_eq!(read_all(&vfs, "org/m@main/a.txt"), Ok(b"two".to_vec()));
}

#[test]
fn parallel_lazy_readers_get_the_right_bytes() {
    let (f, data) = lazy_setup(6 << 20);
    let remote: Arc<dyn RemoteSource> = f.remote.clone();
    let vfs = Vfs::new(f.local.clone(), Some(remote), VfsOptions::default());
    let ino = walk(&vfs, "org/m@main/model.onnx").expect("file").attr.ino;
    let part = data.len() / 8;
    std::thread::scope(|s| {
        for i in 0..8 {
            let (vfs, data) = (&vfs, &data);
            s.spawn(move || {
                let mut pos = i * part;
                while pos < (i + 1) * part {
                    let got = vfs.read(ino, pos as u64, 128 << 10).expect("read");
                    assert_eq!(got, data[pos..pos + got.len()]);
                    pos += got.len();
                }
            });
        }
    });
    assert!(f.remote.fetches.load(Ordering::SeqCst) > 0);
}

#[test]
fn a_panicking_remote_costs_one_read_not_the_mount() {
    let (f, _) = lazy_setup(1 << 20);
    let remote: Arc<dyn RemoteSource> = f.remote.clone();
    let vfs = Vfs::new(f.local.clone(), Some(remote), VfsOptions::default());
    let ino = walk(&vfs, "org/m@main/config.json").expect("resolves").attr.ino;
    f.remote.set(Mode::Panic);
    let t = Instant::now();
    assert_eq!(vfs.read(ino, 0, 100), Err(Errno::Io));
    assert!(t.elapsed() < Duration::from_secs(5));
    f.remote.set(Mode::Up);
    assert_eq!(vfs.read(ino, 0, 100), Ok(b"{\"a\": 1}".to_vec()));
}
