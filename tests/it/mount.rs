//! `tessera mount` on a real kernel mount in a temp dir: revisions side by side, stat, `ls -R`,
//! random and parallel reads, xattrs, ONNX Runtime loading from the mount, SIGTERM and SIGKILL;
//! and the lazy path in-process against a remote that is a second store.
//!
//! The store is built in the test process and dropped before `tessera mount` opens it (RocksDB
//! admits one process per store). Every mount is torn down by a guard (`fusermount3 -u -z`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tessera::mount::{MountConfig, Vfs, VfsOptions};
use tessera::store::{RemoteSource, RevisionKey, SourceError, Store, StoreSource, TreeEntry};

use crate::common::{Home, asset, files_under, python, random_bytes, run_python, tessera_bin};
use crate::require;

const C5: &str = "5555555555555555555555555555555555555555";
const C6: &str = "6666666666666666666666666666666666666666";
const CB: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const REPO: &str = "snakers4/silero-vad";
const ONNX: &str = "silero_vad/data/silero_vad.onnx";

/// Root, `/dev/fuse` and `fusermount3`, or a printed reason to skip.
pub(crate) fn fuse_ready() -> Option<()> {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let fusermount =
        Command::new("fusermount3").arg("--version").output().is_ok_and(|o| o.status.success());
    (root && Path::new("/dev/fuse").exists() && fusermount).then_some(())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A commit id from a test constant.
fn commit_id(hex: &str) -> tessera::protocol::CommitId {
    tessera::protocol::CommitId::parse(hex).expect("commit id")
}

fn key(repo: &str, rev: &str) -> RevisionKey {
    let id = tessera::protocol::RepoId::parse(repo).expect("test repo id");
    RevisionKey::new(tessera::protocol::RepoType::Model, id, rev).expect("test revision")
}

/// Ingests files as the tree of `commit`; `files` are (repo path, bytes source).
fn put_revision(store: &Store, commit: &str, files: &[(String, PathBuf)]) {
    let mut session = store.ingest_session();
    let mut entries = Vec::new();
    for (path, src) in files {
        let r = session.add_reader(File::open(src).expect("asset")).expect("ingest");
        let lfs = !path.ends_with(".py");
        entries.push(TreeEntry {
            path: path.clone(),
            size: r.size,
            file: r.file,
            sha256: r.sha256,
            git_oid: tessera::protocol::GitOid::parse(&"0".repeat(40)).expect("oid"),
            lfs,
        });
    }
    session.commit().expect("commit");
    store.put_tree(&commit_id(commit), &entries).expect("tree");
}

/// Files of one release: (path in the repo, file on disk).
type Release = Vec<(String, PathBuf)>;

/// The silero-vad package files of one release.
fn silero_files(version: &str) -> Option<Release> {
    let dir = asset(&format!("silero-vad-{version}"))?;
    let files = files_under(&dir)
        .into_iter()
        .filter(|p| p.starts_with("silero_vad"))
        .map(|p| (p.to_string_lossy().into_owned(), dir.join(&p)))
        .collect();
    Some(files)
}

/// A store with silero-vad 5.1.2 (tag, `refs/pr/1`) and 6.2.3 (tag, `main`).
fn seed_silero(home: &Path) -> Option<(Release, Release)> {
    let (v5, v6) = (silero_files("5.1.2")?, silero_files("6.2.3")?);
    let store = Store::open(home).expect("store");
    put_revision(&store, C5, &v5);
    put_revision(&store, C6, &v6);
    for (rev, commit) in [("v5.1.2", C5), ("refs/pr/1", C5), ("v6.2.3", C6), ("main", C6)] {
        store.put_ref(&key(REPO, rev), &commit_id(commit), now(), None).expect("ref");
    }
    Some((v5, v6))
}

/// A `tessera mount` child; dropping it kills the process and lazily unmounts.
pub(crate) struct MountProc {
    child: Child,
    mnt: PathBuf,
    stderr: Arc<parking_lot::Mutex<String>>,
}

impl MountProc {
    /// Starts `tessera mount` and waits for its "mounted" line (stderr is echoed).
    pub(crate) fn start(home: &Home, mnt: &Path, extra: &[&str]) -> Self {
        Self::start_env(home, mnt, extra, &[])
    }

    /// The same, with extra environment variables.
    pub(crate) fn start_env(
        home: &Home,
        mnt: &Path,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Self {
        let mut cmd = Command::new(tessera_bin());
        cmd.arg("--home").arg(home.path()).arg("mount").arg(mnt).args(extra);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mount");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        let kept = Arc::new(parking_lot::Mutex::new(String::new()));
        let keep = kept.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                keep.lock().push_str(&format!("{line}\n"));
                if line.starts_with("tessera: mounted") {
                    let _ = tx.send(());
                }
            }
        });
        let mut me = Self { child, mnt: mnt.to_path_buf(), stderr: kept };
        let deadline = Instant::now() + Duration::from_secs(30);
        while rx.recv_timeout(Duration::from_millis(50)).is_err() {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("tessera mount exited early: {status}");
            }
            assert!(Instant::now() < deadline, "mount did not appear");
        }
        assert!(is_mounted(mnt), "mounted line printed but no mount listed");
        me
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig}");
    }

    /// What the process wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().clone()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit; returns whether it succeeded.
    pub(crate) fn wait(&mut self, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_guard(&self.mnt);
    }
}

pub(crate) fn unmount_guard(mnt: &Path) {
    if is_mounted(mnt) {
        let _ = Command::new("fusermount3").args(["-u", "-z", "-q"]).arg(mnt).status();
    }
}

/// Whether `/proc/self/mountinfo` lists a tessera mount at `mnt`.
pub(crate) fn is_mounted(mnt: &Path) -> bool {
    !mount_ids(mnt).is_empty()
}

/// Mount ids of the tessera mounts at `mnt`.
fn mount_ids(mnt: &Path) -> Vec<String> {
    // A dead mount cannot be canonicalized (ENOTCONN): fall back to the path as given.
    let mnt = mnt.canonicalize().unwrap_or_else(|_| mnt.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            // `fuse.tessera` through fusermount3, plain `fuse` from a direct mount(2).
            f.get(4).is_some_and(|p| Path::new(p) == mnt)
                && (l.contains(" - fuse.tessera ") || l.contains(" - fuse tessera "))
        })
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect()
}

fn wait_unmounted(mnt: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while is_mounted(mnt) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

pub(crate) fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn getfattr(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr");
    assert!(
        out.status.success(),
        "getfattr {name} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn revisions_side_by_side_stat_ls_random_reads_xattrs_and_sigterm() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let home = Home::new();
    let (v5, v6) = require!(seed_silero(home.path()), "silero-vad assets");
    let mnt_dir = tempfile::tempdir().expect("tmp");
    let mnt = mnt_dir.path().join("models");
    let mut m = MountProc::start(&home, &mnt, &["--offline"]);
    let repo = mnt.join("snakers4");

    let revs5 = [
        "silero-vad@v5.1.2".to_string(),
        "silero-vad@refs%2Fpr%2F1".into(),
        format!("silero-vad@{C5}"),
    ];
    let revs6 =
        ["silero-vad@v6.2.3".to_string(), "silero-vad@main".into(), format!("silero-vad@{C6}")];
    for (revs, files) in [(&revs5, &v5), (&revs6, &v6)] {
        for rev in revs.iter() {
            for (path, src) in files.iter() {
                let p = repo.join(rev).join(path);
                let want = std::fs::read(src).expect("asset");
                assert_eq!(
                    std::fs::metadata(&p).map(|m| m.len()).ok(),
                    Some(want.len() as u64),
                    "{}",
                    p.display()
                );
                assert!(std::fs::read(&p).is_ok_and(|got| got == want), "{} differs", p.display());
            }
        }
    }

    let listing: Vec<String> = std::fs::read_dir(&repo)
        .expect("org")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for rev in
        ["silero-vad@v5.1.2", "silero-vad@v6.2.3", "silero-vad@main", "silero-vad@refs%2Fpr%2F1"]
    {
        assert!(listing.iter().any(|l| l == rev), "{rev} not in {listing:?}");
    }
    let ls = Command::new("ls").arg("-R").arg(&mnt).output().expect("ls");
    assert!(ls.status.success(), "ls -R: {}", String::from_utf8_lossy(&ls.stderr));
    let ls = String::from_utf8_lossy(&ls.stdout);
    for name in ["snakers4:", "silero_vad.onnx", "silero_vad_16k_op15.onnx", "utils_vad.py"] {
        assert!(ls.contains(name), "ls -R lacks {name}");
    }

    let original =
        std::fs::read(&v6.iter().find(|(p, _)| p == ONNX).expect("onnx").1).expect("read");
    let f = File::open(repo.join("silero-vad@main").join(ONNX)).expect("open");
    let mut state = 12345u64;
    for _ in 0..200 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let off = (state >> 11) % original.len() as u64;
        let len = ((state >> 3) % 300_000) as usize + 1;
        let mut buf = vec![0u8; len];
        let n = f.read_at(&mut buf, off).expect("pread");
        let end = (off as usize + len).min(original.len());
        assert!(buf[..n] == original[off as usize..end], "pread at {off} len {len}");
    }

    let p = repo.join("silero-vad@v5.1.2").join(ONNX);
    assert_eq!(getfattr(&p, "user.tessera.repo"), REPO);
    assert_eq!(getfattr(&p, "user.tessera.commit"), C5);
    assert_eq!(getfattr(&p, "user.tessera.sha256").len(), 64);
    assert_eq!(getfattr(&p, "user.tessera.xet_hash").len(), 64);

    assert_eq!(
        errno_of(std::fs::metadata(repo.join("silero-vad@main/nope.onnx"))),
        Some(libc::ENOENT)
    );
    assert_eq!(errno_of(std::fs::metadata(repo.join("silero-vad@v9"))), Some(libc::ENOENT));
    assert_eq!(errno_of(std::fs::metadata(mnt.join("nobody"))), Some(libc::ENOENT));
    assert_eq!(errno_of(std::fs::OpenOptions::new().write(true).open(&p)), Some(libc::EROFS));

    drop(f);
    m.signal("-TERM");
    // Well under the 5 s grace the unmount gives a session still busy with open files.
    assert_eq!(m.wait(Duration::from_secs(3)), Some(true), "SIGTERM: clean exit");
    assert!(wait_unmounted(&mnt, Duration::from_secs(5)), "SIGTERM left the mount in place");
}

#[test]
fn onnxruntime_loads_a_model_straight_from_the_mount() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(python(), "the set-up venv with onnxruntime");
    let home = Home::new();
    let (_, v6) = require!(seed_silero(home.path()), "silero-vad assets");
    let mnt_dir = tempfile::tempdir().expect("tmp");
    let mnt = mnt_dir.path().join("m");
    let _m = MountProc::start(&home, &mnt, &["--offline"]);
    let script = r#"
import sys, numpy as np, onnxruntime as ort
def run(path):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    state, outs = np.zeros((2, 1, 128), np.float32), []
    for _ in range(4):
        out, state = s.run(None, {"input": x, "state": state, "sr": np.array(16000, dtype=np.int64)})
        outs.append(out.ravel())
    return np.concatenate(outs + [state.ravel()])
a, b = run(sys.argv[1]), run(sys.argv[2])
assert np.array_equal(a, b), (a[:4], b[:4])
print("same", a[:4])
"#;
    for path in [ONNX, "silero_vad/data/silero_vad_16k_op15.onnx"] {
        let original = v6.iter().find(|(p, _)| p == path).expect("in release").1.clone();
        let mounted = mnt.join("snakers4/silero-vad@v6.2.3").join(path);
        let out =
            run_python(&py, script, &[&mounted.to_string_lossy(), &original.to_string_lossy()]);
        assert!(out.starts_with("same"), "{out}");
    }
}

#[test]
fn eight_parallel_readers_of_a_256_mib_file() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    const SIZE: usize = 256 << 20;
    let home = Home::new();
    let data = random_bytes(SIZE, 42);
    {
        let store = Store::open(home.path()).expect("store");
        let r = store.ingest_bytes(&data).expect("ingest");
        let entry = TreeEntry {
            path: "weights.bin".into(),
            size: r.size,
            file: r.file,
            sha256: r.sha256,
            git_oid: tessera::protocol::GitOid::parse(&"0".repeat(40)).expect("oid"),
            lfs: true,
        };
        store.put_tree(&commit_id(CB), &[entry]).expect("tree");
        store.put_ref(&key("tessera-test/big", "main"), &commit_id(CB), now(), None).expect("ref");
    }
    let mnt_dir = tempfile::tempdir().expect("tmp");
    let mnt = mnt_dir.path().join("m");
    let _m = MountProc::start(&home, &mnt, &["--offline"]);
    let path = mnt.join("tessera-test/big@main/weights.bin");
    assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(SIZE as u64));
    let part = SIZE / 8;
    std::thread::scope(|s| {
        for i in 0..8 {
            let (path, data) = (&path, &data);
            s.spawn(move || {
                let f = File::open(path).expect("open");
                let mut buf = vec![0u8; 1 << 20];
                let mut pos = i * part;
                while pos < (i + 1) * part {
                    let n = f.read_at(&mut buf, pos as u64).expect("pread");
                    assert!(n > 0 && buf[..n] == data[pos..pos + n], "reader {i} at {pos}");
                    pos += n;
                }
            });
        }
    });
}

#[test]
fn sigkill_leaves_the_store_clean_and_the_next_mount_works() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let home = Home::new();
    let (_, v6) = require!(seed_silero(home.path()), "silero-vad assets");
    let want = std::fs::read(&v6.iter().find(|(p, _)| p == ONNX).expect("onnx").1).expect("read");
    let mnt_dir = tempfile::tempdir().expect("tmp");
    let mnt = mnt_dir.path().join("m");
    let file = mnt.join("snakers4/silero-vad@main").join(ONNX);
    // First with auto_unmount (the mount vanishes with the process), then without (a stale
    // mount point stays, which the next mount must clean up).
    for extra in [&["--offline"][..], &["--offline", "--no-auto-unmount"][..]] {
        let mut m = MountProc::start(&home, &mnt, extra);
        assert!(std::fs::read(&file).is_ok_and(|b| b == want));
        m.signal("-KILL");
        assert!(m.wait(Duration::from_secs(10)).is_some(), "SIGKILL");
        if extra.len() == 1 {
            // fusermount3's watcher unmounts asynchronously; on a loaded machine it can lag. If it
            // has not yet, the next mount below must detect and clean the stale mount point.
            if !wait_unmounted(&mnt, Duration::from_secs(30)) {
                eprintln!(
                    "auto_unmount had not removed the mount after 30 s; the next mount must clean it"
                );
            }
        } else {
            // stat may still answer from cached attributes; a directory read reaches the daemon.
            assert_eq!(
                errno_of(std::fs::read_dir(&mnt)),
                Some(libc::ENOTCONN),
                "expected a stale mount"
            );
        }
        let fsck = home.ok(&["fsck"]);
        assert!(fsck.contains(": ok"), "fsck after SIGKILL: {fsck}");
        let _again = MountProc::start(&home, &mnt, &["--offline"]);
        assert!(std::fs::read(&file).is_ok_and(|b| b == want), "remount after SIGKILL");
    }
}

#[test]
fn passthrough_serves_flat_copies_of_files_read_whole() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let home = Home::new();
    let (_, v6) = require!(seed_silero(home.path()), "silero-vad assets");
    let want = std::fs::read(&v6.iter().find(|(p, _)| p == ONNX).expect("onnx").1).expect("read");
    let mnt_dir = tempfile::tempdir().expect("tmp");
    let mnt = mnt_dir.path().join("m");
    let file = mnt.join("snakers4/silero-vad@main").join(ONNX);
    {
        let _m = MountProc::start(&home, &mnt, &["--offline", "--passthrough"]);
        assert!(std::fs::read(&file).is_ok_and(|b| b == want), "first read, through the daemon");
        let flat = home.path().join("flat").join(getfattr(&file, "user.tessera.xet_hash"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&flat).map(|m| m.len()).ok() != Some(want.len() as u64) {
            assert!(Instant::now() < deadline, "no flat copy at {}", flat.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(std::fs::read(&file).is_ok_and(|b| b == want), "read by passthrough");
    }
    // A new mount opens it by passthrough from the start; random reads agree too.
    let _m = MountProc::start(&home, &mnt, &["--offline", "--passthrough"]);
    let f = File::open(&file).expect("open");
    let mut buf = vec![0u8; 10_000];
    for off in [0u64, 1, 4095, 1_000_000, want.len() as u64 - 10_000] {
        let n = f.read_at(&mut buf, off).expect("pread");
        assert!(buf[..n] == want[off as usize..off as usize + n], "pread at {off}");
    }
}

// ---- lazy reads through a real mount, in-process -------------------------------------------

/// A remote that is another store ([`StoreSource`]): `down` makes it refuse; `hang` stall.
struct StoreRemote {
    inner: StoreSource,
    down: AtomicUsize,
    hang: AtomicUsize,
    fetches: AtomicUsize,
}

impl StoreRemote {
    fn check(&self) -> Result<(), SourceError> {
        if self.hang.load(Ordering::SeqCst) == 1 {
            std::thread::sleep(Duration::from_secs(3));
        }
        if self.down.load(Ordering::SeqCst) == 1 {
            return Err(SourceError::Unavailable("remote stopped".into()));
        }
        Ok(())
    }
}

impl RemoteSource for StoreRemote {
    fn resolve(&self, key: &RevisionKey) -> Result<tessera::protocol::CommitId, SourceError> {
        self.check()?;
        self.inner.resolve(key)
    }

    fn fetch(
        &self,
        repo: &tessera::store::CommitKey,
        entry: &TreeEntry,
        offset: u64,
        len: u64,
    ) -> Result<(), SourceError> {
        self.check()?;
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(repo, entry, offset, len)
    }
}

/// Unmounts (lazily if need be) when dropped, even if the test panics.
struct InProcess(Option<tessera::mount::Mounted>, PathBuf);

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            let _ = m.unmount();
        }
        unmount_guard(&self.1);
    }
}

fn mount_in_process(store: &Store, remote: &Arc<StoreRemote>, mnt: &Path) -> InProcess {
    let mut opts = VfsOptions::default();
    opts.fetch_timeout = Duration::from_secs(2);
    let remote: Arc<dyn RemoteSource> = remote.clone();
    let vfs = Vfs::new(store.clone(), Some(remote), opts);
    let m = tessera::mount::mount(vfs, mnt, &MountConfig::default()).expect("mount");
    InProcess(Some(m), mnt.to_path_buf())
}

#[test]
fn lazy_mount_fetches_on_first_read_and_survives_a_dead_remote() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let (upstream_dir, local_dir) = (Home::new(), Home::new());
    let v6 = require!(seed_silero(upstream_dir.path()), "silero-vad assets").1;
    let upstream = Store::open(upstream_dir.path()).expect("upstream");
    let local = Store::open(local_dir.path()).expect("local");
    let remote = Arc::new(StoreRemote {
        inner: StoreSource::new(&upstream, &local),
        down: 0.into(),
        hang: 0.into(),
        fetches: 0.into(),
    });
    let mnt_dir = tempfile::tempdir().expect("tmp");
    let mnt = mnt_dir.path().join("lazy");
    let rev = mnt.join("snakers4/silero-vad@main");
    let source =
        |p: &str| std::fs::read(&v6.iter().find(|(q, _)| q == p).expect("file").1).expect("asset");

    let m = mount_in_process(&local, &remote, &mnt);
    assert!(std::fs::read(rev.join(ONNX)).is_ok_and(|b| b == source(ONNX)), "lazy read");
    assert!(remote.fetches.load(Ordering::SeqCst) > 0);
    drop(m);

    // The remote stops; a fresh mount (cold kernel cache) still serves what was read, without
    // asking the remote, while an unread file fails within the fetch timeout, and the mount stays.
    remote.down.store(1, Ordering::SeqCst);
    let before = remote.fetches.load(Ordering::SeqCst);
    let _m = mount_in_process(&local, &remote, &mnt);
    assert!(
        std::fs::read(rev.join(ONNX)).is_ok_and(|b| b == source(ONNX)),
        "warm read with the remote down"
    );
    assert_eq!(remote.fetches.load(Ordering::SeqCst), before, "a warm read asked the remote");
    let unread = rev.join("silero_vad/data/silero_vad_half.onnx");
    let t = Instant::now();
    assert_eq!(errno_of(std::fs::read(&unread)), Some(libc::EIO));
    assert!(t.elapsed() < Duration::from_secs(5), "failing took {:?}", t.elapsed());
    remote.hang.store(1, Ordering::SeqCst);
    let t = Instant::now();
    assert_eq!(
        errno_of(std::fs::read(rev.join("silero_vad/data/silero_vad_16k_op15.onnx"))),
        Some(libc::EIO)
    );
    assert!(t.elapsed() < Duration::from_secs(5), "a hanging remote took {:?}", t.elapsed());
    assert!(std::fs::read_dir(&rev).is_ok(), "the mount stays up");

    // Back up: the same file reads (no failure was cached).
    remote.hang.store(0, Ordering::SeqCst);
    remote.down.store(0, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    let half = "silero_vad/data/silero_vad_half.onnx";
    assert!(
        std::fs::read(&unread).is_ok_and(|b| b == source(half)),
        "read after the remote came back"
    );
}

/// The real lazy path: an empty store, `tessera mount --endpoint` on `tessera hub serve`.
#[test]
fn lazy_mount_from_the_hub_without_a_prior_pull() {
    require!(fuse_ready(), "no /dev/fuse");
    let py = require!(crate::common::python(), "no venv");
    let (v5, v6) = (
        require!(crate::common::asset("silero-vad-5.1.2"), "silero").join("silero_vad/data"),
        require!(crate::common::asset("silero-vad-6.2.3"), "silero").join("silero_vad/data"),
    );
    let data = tempfile::tempdir().expect("tmp");
    let mut hub = crate::common::Hub::start(data.path(), &[]);
    let seeded = crate::common::py_script(
        &py,
        &hub.url,
        "seed_repo.py",
        &[
            "org/silero",
            crate::common::WRITE_TOKEN,
            &format!("{}=v5.1.2", v5.display()),
            &format!("{}=", v6.display()),
        ],
    );
    let first: serde_json::Value =
        serde_json::from_str(seeded.lines().next().expect("line")).expect("json");
    let commit5 = first["commit"].as_str().expect("commit").to_string();
    let home = Home::new();
    let mnt_dir = tempfile::tempdir().expect("tmp");
    let mnt = mnt_dir.path().join("models");
    let proc_ = MountProc::start(&home, &mnt, &["--endpoint", &hub.url]);
    let unread = "silero_vad_16k_op15.onnx";
    for (rev, src) in [("v5.1.2", &v5), ("main", &v6), (commit5.as_str(), &v5)] {
        let root = mnt.join(format!("org/silero@{rev}"));
        for f in crate::common::files_under(src) {
            if rev == "main" && f.ends_with(unread) {
                let meta = std::fs::metadata(root.join(&f)).expect("stat unread");
                assert_eq!(meta.len(), std::fs::metadata(src.join(&f)).expect("stat").len());
                continue;
            }
            let got = std::fs::read(root.join(&f)).expect("read through mount");
            assert!(got == std::fs::read(src.join(&f)).expect("read"), "{rev}/{}", f.display());
        }
    }
    let ls = Command::new("ls").arg("-R").arg(mnt.join("org")).output().expect("ls");
    assert!(ls.status.success(), "ls -R failed");
    // The remote dies: what was read is still served, an unread file fails fast, the mount stays.
    hub.stop();
    let again =
        std::fs::read(mnt.join("org/silero@main/silero_vad.onnx")).expect("read after hub stop");
    assert!(again == std::fs::read(v6.join("silero_vad.onnx")).expect("read"));
    let started = Instant::now();
    let dead = std::fs::read(mnt.join("org/silero@main").join(unread));
    assert!(dead.is_err(), "an unread file cannot come from a dead remote");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(is_mounted(&mnt), "the mount must stay up");
    drop(proc_);
    home.ok(&["fsck"]);
}
