//! The lazy mount at model scale, end to end: `tessera mount` on an empty store reading from a
//! real `tessera hub serve`, files published with `huggingface_hub`. A counting relay between
//! the mount and the hub measures the bytes fetched, and lets the hub die and come back under
//! the same address.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tessera::testdata::SyntheticSafetensors;

use crate::common::{Home, Hub, Relay, WRITE_TOKEN, py_script, python};
use crate::mount::{MountProc, errno_of, fuse_ready, is_mounted};
use crate::require;

const MIB: u64 = 1 << 20;
/// Largest xorb: one "xorb range" of the budget.
const XORB: u64 = 64 * MIB;

/// Writes the model into a folder and publishes it as `org/name` with `huggingface_hub`.
fn publish(py: &Path, hub: &Hub, repo: &str, model: &SyntheticSafetensors, dir: &Path) {
    let folder = dir.join("upload");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let mut file = std::fs::File::create(folder.join("model.safetensors")).expect("create model");
    model.write_into(&mut file).expect("write model");
    py_script(
        py,
        &hub.url,
        "seed_repo.py",
        &[repo, WRITE_TOKEN, &format!("{}=", folder.display())],
    );
    std::fs::remove_dir_all(&folder).expect("rm upload");
}

/// Compares a whole file read through `f` in `step`-byte reads against the model.
fn read_and_check(
    f: &std::fs::File,
    model: &SyntheticSafetensors,
    step: u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; step as usize];
    let mut pos = 0;
    while pos < model.size() {
        let n = f.read_at(&mut buf, pos)?;
        assert!(n > 0, "short read at {pos}");
        assert!(buf[..n] == model.bytes(pos, n as u64)[..], "wrong bytes at {pos}");
        pos += n as u64;
    }
    Ok(())
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// A 2 GiB safetensors file through a fresh mount on an empty store: the header comes back
/// having fetched < 5% of the file, a mid-file tensor costs at most its size plus two xorb
/// ranges, and two processes reading the whole file at once fetch it once (<= 1.05x), with the
/// bytes every process sees exact and the store verifying afterwards.
#[test]
fn a_2_gib_model_streams_through_a_fresh_mount() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(python(), "no venv");
    let dir = tempfile::tempdir().expect("tmp");
    let model = SyntheticSafetensors::new(32, XORB, 0x5eed);
    let hub = Hub::start(&dir.path().join("hub"), &[]);
    publish(&py, &hub, "org/big", &model, dir.path());
    let relay = Relay::start(&hub.url);
    let (home, mnt) = (Home::new(), dir.path().join("models"));
    let _mount = MountProc::start(&home, &mnt, &["--endpoint", &relay.url, "--no-passthrough"]);
    let path = mnt.join("org/big@main/model.safetensors");
    let meta = std::fs::metadata(&path).expect("stat");
    assert_eq!(meta.len(), model.size());
    let age = meta.modified().expect("mtime").elapsed().unwrap_or_default();
    assert!(
        age < Duration::from_secs(3600),
        "ls -l must show the commit's date, not 1970 ({age:?} old)"
    );
    let before = relay.bytes();

    let f = std::fs::File::open(&path).expect("open");
    let started = Instant::now();
    let mut len = [0u8; 8];
    f.read_exact_at(&mut len, 0).expect("header length");
    let first_byte = started.elapsed();
    let fetched = relay.bytes() - before;
    assert_eq!(len, model.header()[..8]);
    assert!(fetched * 20 < model.size(), "the header cost {fetched} bytes");
    eprintln!("header: {first_byte:?}, {fetched} bytes fetched");

    let (at, size) = model.tensor(17);
    let before = relay.bytes();
    let mut tensor = vec![0u8; size as usize];
    f.read_exact_at(&mut tensor, at).expect("mid tensor");
    assert!(tensor == model.bytes(at, size), "mid tensor bytes");
    let fetched = relay.bytes() - before;
    assert!(fetched <= size + 2 * XORB, "a {size}-byte tensor cost {fetched} bytes");
    drop(tensor);

    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                read_and_check(&std::fs::File::open(&path).expect("open"), &model, 4 * MIB)
                    .expect("whole read")
            });
        }
    });
    let total = relay.bytes();
    assert!(
        total * 100 <= model.size() * 105,
        "fetched {total} bytes for a {}-byte file",
        model.size()
    );
    drop(_mount);
    home.ok(&["fsck"]);
}

/// A hub limited to 8 MB/s serving a file that takes longer than the fetch timeout to read: the
/// read succeeds (stalls fail, slowness does not). The hub dies mid-read: EIO within the fetch
/// timeout of the last progress, the mount stays up; the hub comes back: the read goes on. The
/// mount is killed with SIGKILL mid-read and mounted again: the file reads whole and exact,
/// having fetched < 1.1x its size in all, and `tmp/` is empty.
#[test]
fn a_slow_hub_a_dead_hub_and_a_killed_mount_cost_no_refetch() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(python(), "no venv");
    let dir = tempfile::tempdir().expect("tmp");
    let model = SyntheticSafetensors::new(2, 48 * MIB, 0xd1e);
    let hub_dir = dir.path().join("hub");
    let rate = ["--max-bytes-per-sec", "8000000"];
    let mut hub = Hub::start(&hub_dir, &rate);
    publish(&py, &hub, "org/slow", &model, dir.path());
    let relay = Relay::start(&hub.url);
    let (home, mnt) = (Home::new(), dir.path().join("models"));
    let timeout = Duration::from_secs(3);
    let args = ["--endpoint", relay.url.as_str(), "--fetch-timeout", "3s", "--no-passthrough"];
    let mut mount = MountProc::start(&home, &mnt, &args);
    let path = mnt.join("org/slow@main/model.safetensors");

    // Read a third, then stop the hub while a read waits.
    let f = std::fs::File::open(&path).expect("open");
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0u64;
    while pos < model.size() / 3 {
        let n = f.read_at(&mut buf, pos).expect("slow read");
        assert!(buf[..n] == model.bytes(pos, n as u64)[..]);
        pos += n as u64;
    }
    hub.stop();
    // Reads go on from what read-ahead brought (short reads count as progress), then one fails:
    // it must fail within the fetch timeout (plus a retry's worth of slack), not hang.
    let mut failed = None;
    while failed.is_none() && pos < model.size() {
        let started = Instant::now();
        match f.read_at(&mut buf, pos) {
            Ok(n) => pos += n as u64,
            Err(e) => failed = Some((e, started.elapsed())),
        }
    }
    let (error, took) = failed.expect("a read must fail once the hub is gone");
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "read after the hub died: {error}");
    assert!(took < timeout * 2, "EIO took {took:?}");
    assert!(is_mounted(&mnt), "the mount must stay up");

    // The hub comes back (same data, new port behind the same address): the read goes on.
    let hub = Hub::start(&hub_dir, &rate);
    relay.point_at(&hub.url);
    while pos < model.size() * 2 / 3 {
        let n = f.read_at(&mut buf, pos).expect("read after the hub came back");
        assert!(buf[..n] == model.bytes(pos, n as u64)[..], "bytes at {pos}");
        pos += n as u64;
    }
    drop(f);
    mount.signal("-KILL");
    mount.wait(Duration::from_secs(10));
    drop(mount);

    let _mount = MountProc::start(&home, &mnt, &args);
    let f = std::fs::File::open(&path).expect("open after remount");
    assert!(errno_of(read_and_check(&f, &model, MIB)).is_none(), "whole read after the remount");
    let total = relay.bytes();
    assert!(
        total * 10 < model.size() * 11,
        "fetched {total} bytes for a {}-byte file",
        model.size()
    );
    let leftovers = files_in(&home.path().join("tmp"));
    assert!(leftovers.is_empty(), "tmp/ holds {leftovers:?}");
    drop(hub);
}

/// SIGTERM while a read is fetching from a slow hub: the mount unmounts, lets its fetches end
/// and closes the store before it exits, so it exits 0 without a panic (threads used to outlive
/// the runtime they fetched on, and a store closing on another thread raced the exit).
#[test]
fn sigterm_mid_fetch_exits_cleanly() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(python(), "no venv");
    let dir = tempfile::tempdir().expect("tmp");
    let model = SyntheticSafetensors::new(2, 16 * MIB, 0x7e4);
    let hub = Hub::start(&dir.path().join("hub"), &["--max-bytes-per-sec", "8000000"]);
    publish(&py, &hub, "org/term", &model, dir.path());
    let relay = Relay::start(&hub.url);
    let (home, mnt) = (Home::new(), dir.path().join("models"));
    let mut mount = MountProc::start(&home, &mnt, &["--endpoint", &relay.url, "--no-passthrough"]);
    let path = mnt.join("org/term@main/model.safetensors");
    std::thread::scope(|s| {
        s.spawn(|| std::fs::File::open(&path).map(|f| read_and_check(&f, &model, MIB)));
        let deadline = Instant::now() + Duration::from_secs(30);
        while relay.bytes() < 4 * MIB {
            assert!(Instant::now() < deadline, "the read never got going");
            std::thread::sleep(Duration::from_millis(10));
        }
        mount.signal("-TERM");
        let exited = mount.wait(Duration::from_secs(30));
        assert_eq!(exited, Some(true), "mount must exit 0 on SIGTERM mid-fetch:\n{}", mount.stderr());
    });
    let stderr = mount.stderr();
    assert!(!stderr.contains("panicked") && !stderr.contains("pthread"), "{stderr}");
    drop(mount);
    home.ok(&["fsck"]);
}

/// A mount whose stderr was closed (its supervisor stopped reading) keeps serving when it has
/// something to say: the hub dies, a cold read fails with EIO and logs a warning, and the mount
/// still answers. Tracing reported a failed log write with `eprintln!`, which panicked.
#[test]
fn a_mount_whose_stderr_is_closed_survives_its_warnings() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(python(), "no venv");
    let dir = tempfile::tempdir().expect("tmp");
    let model = SyntheticSafetensors::new(2, MIB, 0x57de);
    let mut hub = Hub::start(&dir.path().join("hub"), &[]);
    publish(&py, &hub, "org/quiet", &model, dir.path());
    let (home, mnt) = (Home::new(), dir.path().join("models"));
    let mut child = std::process::Command::new(crate::common::tessera_bin())
        .arg("--home")
        .arg(home.path())
        .arg("mount")
        .arg(&mnt)
        .args(["--endpoint", hub.url.as_str(), "--fetch-timeout", "2s", "--no-passthrough"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mount");
    {
        use std::io::BufRead;
        let stderr = std::io::BufReader::new(child.stderr.take().expect("piped"));
        let mounted = stderr.lines().map_while(Result::ok).any(|l| l.starts_with("tessera: mounted"));
        assert!(mounted, "mount did not start");
    }
    let path = mnt.join("org/quiet@main/model.safetensors");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), model.size());
    hub.stop();
    let read = std::fs::read(&path);
    assert_eq!(errno_of(read.map(drop)), Some(libc::EIO), "a cold read with the hub gone");
    assert!(child.try_wait().expect("wait").is_none(), "the mount exited after logging");
    assert!(is_mounted(&mnt), "the mount must stay up");
    std::fs::metadata(&path).expect("stat after the warning");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(&mnt).status();
}
