//! Mount read throughput for one 256 MiB file, side by side in one run:
//! - cold: first read through a fresh mount, from the local store (chunk cache empty; once with
//!   the store's xorb files in the OS page cache, once after dropping the OS caches);
//! - warm: re-reads through the mount (kernel page cache kept by `FOPEN_KEEP_CACHE`);
//! - local: the same bytes as a plain file on local disk, read from the page cache;
//! - remote: the same file published on a loopback `tessera hub serve`, read lazily through a
//!   fresh mount on an empty store, against `tessera pull` of it into an empty store.
//!
//! `cargo bench --profile dev --bench mount` (needs root and /dev/fuse; prints SKIPPED
//! otherwise). Dropping the OS caches (`/proc/sys/vm/drop_caches`) is skipped unless
//! `TESSERA_BENCH_DROP_CACHES=1`, since it affects the whole machine.
#![allow(clippy::expect_used, missing_docs)]

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tessera::mount::{MountConfig, Vfs, VfsOptions};
use tessera::store::{RevisionKey, Store, TreeEntry};

const SIZE: usize = 256 << 20;
const COMMIT: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// Bytes per read call (as `dd bs=1M`).
const BUF: usize = 1 << 20;

fn random(n: usize) -> Vec<u8> {
    tessera::testdata::splitmix(n, 0x1234_5678)
}

/// Reads a whole file sequentially; returns GB/s (10^9 bytes per second).
fn read_gbps(path: &Path) -> f64 {
    let mut f = File::open(path).expect("open");
    let mut buf = vec![0u8; BUF];
    let t = Instant::now();
    let mut total = 0usize;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, SIZE, "short read of {}", path.display());
    total as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// The mount's bdi `read_ahead_kb` (what sizes the kernel's FUSE read requests).
fn bdi_read_ahead_kb(mnt: &Path) -> String {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mnt = mnt.canonicalize().unwrap_or_else(|_| mnt.to_path_buf());
    let dev = text.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4).is_some_and(|p| Path::new(p) == mnt)).then(|| f[2].to_string())
    });
    dev.and_then(|d| std::fs::read_to_string(format!("/sys/class/bdi/{d}/read_ahead_kb")).ok())
        .map_or_else(|| "?".into(), |v| v.trim().to_string())
}

/// CPU seconds this process has used, all threads (the in-process mount's and the reader's).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second).
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn drop_os_caches() -> bool {
    std::env::var("TESSERA_BENCH_DROP_CACHES").is_ok_and(|v| v == "1")
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn mount_fresh(store: &Store, mnt: &Path, flat_dir: Option<&Path>) -> tessera::mount::Mounted {
    store.clear_cache();
    let mut opts = VfsOptions::default();
    opts.flat_dir = flat_dir.map(Path::to_path_buf);
    let vfs = Vfs::new(store.clone(), None, opts);
    tessera::mount::mount(vfs, mnt, &MountConfig::default()).expect("mount")
}

fn main() {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root || !Path::new("/dev/fuse").exists() {
        println!("SKIPPED: the mount benchmark needs root and /dev/fuse");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (home, mnt, local) =
        (dir.path().join("home"), dir.path().join("mnt"), dir.path().join("local.bin"));
    let data = random(SIZE);
    std::fs::write(&local, &data).expect("local copy");
    let store = Store::open(&home).expect("store");
    let t = Instant::now();
    let r = store.ingest_bytes(&data).expect("ingest");
    let ingest = SIZE as f64 / t.elapsed().as_secs_f64() / 1e9;
    drop(data);
    let entry = TreeEntry {
        path: "weights.bin".into(),
        size: r.size,
        file: r.file,
        sha256: r.sha256,
        git_oid: tessera::protocol::GitOid::parse(&"0".repeat(40)).expect("oid"),
        lfs: true,
    };
    let commit = tessera::protocol::CommitId::parse(COMMIT).expect("commit id");
    store.put_tree(&commit, &[entry]).expect("tree");
    let repo = tessera::protocol::RepoId::parse("bench/big").expect("id");
    let key = RevisionKey::new(tessera::protocol::RepoType::Model, repo, "main").expect("key");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    store.put_ref(&key, &commit, now, None).expect("ref");
    let file = mnt.join("bench/big@main/weights.bin");

    let m = mount_fresh(&store, &mnt, None);
    let read_ahead = bdi_read_ahead_kb(&mnt);
    let cpu0 = cpu_seconds();
    let cold = read_gbps(&file);
    let cold_cpu = (cpu_seconds() - cpu0) / (SIZE as f64 / 1e9);
    read_gbps(&local);
    // Interleaved, best of each: the machine may be shared, so both see the same noise.
    let (mut warm, mut local_gbps) = (0.0f64, 0.0f64);
    for _ in 0..7 {
        warm = warm.max(read_gbps(&file));
        local_gbps = local_gbps.max(read_gbps(&local));
    }
    m.unmount().expect("unmount");

    // Passthrough: the first whole read writes the flat copy; later opens bypass the daemon.
    let flat = dir.path().join("flat");
    let m = mount_fresh(&store, &mnt, Some(&flat));
    read_gbps(&file);
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(flat.join(r.file.to_string())).map(|m| m.len()).ok()
        != Some(SIZE as u64)
    {
        assert!(Instant::now() < deadline, "flat copy not written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut passthrough, mut local2) = (0.0f64, 0.0f64);
    for _ in 0..7 {
        passthrough = passthrough.max(read_gbps(&file));
        local2 = local2.max(read_gbps(&local));
    }
    m.unmount().expect("unmount");

    let cold_disk = if drop_os_caches() {
        let m = mount_fresh(&store, &mnt, None);
        let g = read_gbps(&file);
        m.unmount().expect("unmount");
        Some(g)
    } else {
        None
    };
    std::thread::sleep(Duration::from_millis(100));

    println!(
        "mount read, {} MiB file, {} KiB reads, bdi read_ahead_kb {read_ahead}",
        SIZE >> 20,
        BUF >> 10
    );
    println!("  store ingest (chunk+hash+pack)               {ingest:6.2} GB/s");
    println!(
        "  cold: fresh mount, xorbs in OS page cache     {cold:6.2} GB/s  ({cold_cpu:.2} CPU-s per GB)"
    );
    match cold_disk {
        Some(g) => println!("  cold: fresh mount, OS caches dropped          {g:6.2} GB/s"),
        None => println!(
            "  cold: fresh mount, OS caches dropped          (set TESSERA_BENCH_DROP_CACHES=1)"
        ),
    }
    println!("  warm: through the mount (kernel page cache)   {warm:6.2} GB/s");
    println!("  local disk file, page cache                   {local_gbps:6.2} GB/s");
    println!("  warm mount / local page cache                 {:6.2}", warm / local_gbps);
    println!("  warm, --passthrough (flat copy written)       {passthrough:6.2} GB/s");
    println!("  local disk file, page cache (same rounds)     {local2:6.2} GB/s");
    println!("  passthrough / local page cache                {:6.2}", passthrough / local2);
    lazy_read_against_pull(dir.path(), &local);
}

#[path = "common/mod.rs"]
mod common;

fn tessera(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.arg("--home").arg(home);
    cmd
}

/// Seconds of one run of `cmd`, which must succeed.
fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

/// The 256 MiB file published on a loopback hub: read lazily through a fresh mount on an empty
/// store (time to the first MiB, and to the end) against `tessera pull` into an empty store.
fn lazy_read_against_pull(dir: &Path, local: &Path) {
    let hub = common::Hub::start(env!("CARGO_BIN_EXE_tessera"), &dir.join("hub"));
    let folder = dir.join("publish");
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::copy(local, folder.join("weights.bin")).expect("copy");
    timed(
        tessera(&dir.join("push-home"))
            .arg("push")
            .arg(&folder)
            .args(["bench/remote", "--create", "--endpoint", &hub.url])
            .env("HF_TOKEN", common::TOKEN),
    );
    let gb = SIZE as f64 / 1e9;
    let (mut pull, mut lazy, mut first_mib) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for round in 0..3 {
        let home = dir.join(format!("pull-home-{round}"));
        pull =
            pull.min(timed(tessera(&home).args(["pull", "bench/remote", "--endpoint", &hub.url])));
        let _ = std::fs::remove_dir_all(&home);
        let (first, all) = lazy_read_once(
            &dir.join(format!("lazy-home-{round}")),
            &dir.join("mnt-remote"),
            &hub.url,
        );
        first_mib = first_mib.min(first);
        lazy = lazy.min(all);
    }
    println!("remote file on a loopback hub (unlimited), empty store, best of 3:");
    println!(
        "  tessera pull                                  {pull:6.2} s  {:5.2} GB/s",
        gb / pull
    );
    println!(
        "  lazy first read through a fresh mount         {lazy:6.2} s  {:5.2} GB/s",
        gb / lazy
    );
    println!("    of which until the first MiB arrived        {first_mib:6.3} s");
    println!("  lazy read / pull (time)                       {:6.2}", lazy / pull);
}

/// Mounts an empty store lazily and reads the file once: (seconds to the first MiB, to the end),
/// both from the open.
fn lazy_read_once(home: &Path, mnt: &Path, endpoint: &str) -> (f64, f64) {
    let mut child = common::spawn_mount(env!("CARGO_BIN_EXE_tessera"), home, mnt, endpoint);
    let t = Instant::now();
    let mut f = File::open(mnt.join("bench/remote@main/weights.bin")).expect("open");
    let mut buf = vec![0u8; BUF];
    f.read_exact(&mut buf).expect("first MiB");
    let first = t.elapsed().as_secs_f64();
    let mut total = BUF;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n;
    }
    let all = t.elapsed().as_secs_f64();
    assert_eq!(total, SIZE, "short lazy read");
    drop(f);
    // SIGTERM: the mount unmounts on it.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(home);
    (first, all)
}
