//! The lazy mount at model scale, side by side in one run: a 2 GiB safetensors file (32 fp16
//! tensors) published with `huggingface_hub` on a loopback `tessera hub serve`, read through a
//! fresh `tessera mount` on an empty store, against `tessera pull` and `snapshot_download` of
//! the same file from the same hub, and against the page cache once local:
//! - cold first header byte (open + 8-byte read at 0) and header + one mid-file tensor;
//! - whole cold read (open to last byte) with the mount's peak RSS, `tessera pull` and
//!   `snapshot_download` with theirs;
//! - warm re-read through the mount against the same bytes as a local file in the page cache;
//! - the hub limited to 100 MB/s: whole cold read against size / bandwidth.
//!
//! `cargo bench --profile dev --bench mount_scale` (needs root, /dev/fuse, GNU time and the
//! venv of `make setup`; prints SKIPPED otherwise). `TESSERA_BENCH_GIB` changes the size.
#![allow(clippy::expect_used, missing_docs)]

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

use tessera::testdata::SyntheticSafetensors;

#[path = "common/mod.rs"]
mod common;

const MIB: u64 = 1 << 20;
const REPO: &str = "bench/model";
const FILE: &str = "model.safetensors";
/// Link speed of the limited hub, bytes per second.
const LIMIT: u64 = 100_000_000;
/// Rounds of mount, pull and `snapshot_download`; each figure is the best of its rounds.
const ROUNDS: usize = 3;

fn main() {
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    let venv = std::env::var_os("TESSERA_VENV").map(PathBuf::from);
    let (true, true, Some(venv), true) = (root, Path::new("/dev/fuse").exists(), venv, Path::new("/usr/bin/time").exists()) else {
        println!("SKIPPED: the mount_scale bench needs root, /dev/fuse, GNU time and TESSERA_VENV (run `make bench`)");
        return;
    };
    let py = venv.join("bin/python");
    let gib: u64 = std::env::var("TESSERA_BENCH_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let model = SyntheticSafetensors::new(32, gib * 1024 * MIB / 32, 0xbe4c);
    let dir = tempfile::tempdir().expect("tmp");
    let local = dir.path().join("local").join(FILE);
    std::fs::create_dir_all(local.parent().expect("parent")).expect("mkdir");
    model.write_into(&mut File::create(&local).expect("create model")).expect("write model");
    let hub_dir = dir.path().join("hub");
    let bin = env!("CARGO_BIN_EXE_tessera");
    let hub = common::Hub::start(bin, &hub_dir);
    publish(&py, &hub.url, local.parent().expect("parent"));
    let size = model.size();
    let gb = size as f64 / 1e9;

    // The three contenders alternate, each after a `sync`, so none pays for the writeback of
    // the bytes the one before it (or the upload) left dirty.
    let (mut cold, mut pull, mut snap) = (Cold::default(), Timed::default(), Timed::default());
    // Every round's time too: `snapshot_download` varies by 2x from run to run here.
    let (mut wholes, mut pulls, mut snaps) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        sync();
        let round_cold = cold_reads(&dir.path().join(format!("cold-{round}")), &hub.url, &model);
        wholes.push(round_cold.whole);
        cold = cold.best(round_cold);
        sync();
        let home = dir.path().join(format!("pull-{round}"));
        let pulled = common::time_and_peak_rss(Command::new(bin).arg("--home").arg(&home).args(["pull", REPO, "--endpoint", &hub.url]));
        pulls.push(pulled.0);
        pull = pull.best(pulled);
        let _ = std::fs::remove_dir_all(&home);
        sync();
        let cache = dir.path().join(format!("hf-{round}"));
        let script = "import sys\nfrom huggingface_hub import snapshot_download\nsnapshot_download(sys.argv[1], cache_dir=sys.argv[2])";
        let snapped = common::time_and_peak_rss(Command::new(&py).arg("-c").arg(script).arg(REPO).arg(&cache).env("HF_ENDPOINT", &hub.url));
        snaps.push(snapped.0);
        snap = snap.best(snapped);
        let _ = std::fs::remove_dir_all(&cache);
    }
    let ((pull_s, pull_rss), (snap_s, snap_rss)) = ((pull.secs, pull.rss_mb), (snap.secs, snap.rss_mb));
    drop(hub);
    let limited = common::Hub::start_with(bin, &hub_dir, &["--max-bytes-per-sec", &LIMIT.to_string()]);
    let slow = whole_cold_read(&dir.path().join("slow"), &limited.url, size);
    drop(limited);

    println!("lazy mount at model scale: {gib} GiB safetensors, 32 tensors, loopback hub, empty store, best of {ROUNDS} alternating rounds");
    println!("  cold first header byte (open + 8 B at 0)      {:8.1} ms   (goal < 50 ms)", cold.header * 1e3);
    println!("  header + one mid tensor ({} MiB)              {:8.3} s    (goal < 0.3 s)", model.tensor(0).1 / MIB, cold.tensor);
    println!("  whole cold read, fresh mount                  {:8.2} s  {:6.2} GB/s  peak RSS {:5.0} MB", cold.whole, gb / cold.whole, cold.rss_mb);
    println!("  tessera pull                                  {:8.2} s  {:6.2} GB/s  peak RSS {:5.0} MB", pull_s, gb / pull_s, pull_rss);
    println!("  snapshot_download (hf_xet)                    {:8.2} s  {:6.2} GB/s  peak RSS {:5.0} MB", snap_s, gb / snap_s, snap_rss);
    println!("  mount / snapshot_download (time)              {:8.2}", cold.whole / snap_s);
    println!("  pull / snapshot_download (time)               {:8.2}", pull_s / snap_s);
    let (whole_m, pull_m, snap_m) = (median(&mut wholes), median(&mut pulls), median(&mut snaps));
    println!("  medians: mount {whole_m:.2} s, pull {pull_m:.2} s, snapshot_download {snap_m:.2} s; mount / snap {:.2}, pull / snap {:.2}", whole_m / snap_m, pull_m / snap_m);
    println!("  warm re-read through the mount                {:8.2} GB/s", cold.warm);
    println!("  local file, page cache                        {:8.2} GB/s", read_gbps(&local, size));
    println!("  hub at {} MB/s: whole cold read               {:8.2} s  = {:.2} of the link", LIMIT / 1_000_000, slow, size as f64 / LIMIT as f64 / slow);
}

/// What one fresh mount on an empty store measured.
#[derive(Default, Clone, Copy)]
struct Cold {
    header: f64,
    tensor: f64,
    whole: f64,
    rss_mb: f64,
    warm: f64,
}

impl Cold {
    fn best(self, o: Cold) -> Cold {
        if self.whole == 0.0 {
            return o;
        }
        Cold {
            header: self.header.min(o.header),
            tensor: self.tensor.min(o.tensor),
            whole: self.whole.min(o.whole),
            rss_mb: self.rss_mb.max(o.rss_mb),
            warm: self.warm.max(o.warm),
        }
    }
}

/// Header byte, header + mid tensor (one fresh mount), then the whole file (another fresh
/// mount) with the mount's peak RSS, then a warm re-read.
fn cold_reads(dir: &Path, url: &str, model: &SyntheticSafetensors) -> Cold {
    let mut out = Cold::default();
    {
        let m = Mount::start(&dir.join("a"), url);
        let t = Instant::now();
        let f = File::open(m.file()).expect("open");
        let mut len = [0u8; 8];
        f.read_exact_at(&mut len, 0).expect("header length");
        out.header = t.elapsed().as_secs_f64();
        let mut header = vec![0u8; model.header().len() - 8];
        f.read_exact_at(&mut header, 8).expect("header");
        let (at, n) = model.tensor(17);
        let mut tensor = vec![0u8; n as usize];
        f.read_exact_at(&mut tensor, at).expect("tensor");
        out.tensor = t.elapsed().as_secs_f64();
        assert!(tensor == model.bytes(at, n), "mid tensor bytes differ");
    }
    let m = Mount::start(&dir.join("b"), url);
    let t = Instant::now();
    read_all(&m.file(), model.size());
    out.whole = t.elapsed().as_secs_f64();
    out.rss_mb = m.peak_rss_mb();
    out.warm = (0..3).map(|_| read_gbps(&m.file(), model.size())).fold(0.0, f64::max);
    out
}

fn whole_cold_read(dir: &Path, url: &str, size: u64) -> f64 {
    let m = Mount::start(dir, url);
    let t = Instant::now();
    read_all(&m.file(), size);
    t.elapsed().as_secs_f64()
}

/// A `tessera mount` on an empty store, unmounted (SIGTERM) and removed on drop.
struct Mount {
    child: Child,
    home: PathBuf,
    mnt: PathBuf,
}

impl Mount {
    fn start(dir: &Path, url: &str) -> Mount {
        let (home, mnt) = (dir.join("home"), dir.join("mnt"));
        let child = common::spawn_mount(env!("CARGO_BIN_EXE_tessera"), &home, &mnt, url);
        // Resolve the revision before timing: the table measures reads, not the listing.
        std::fs::metadata(mnt.join(format!("{REPO}@main/{FILE}"))).expect("stat through the mount");
        Mount { child, home, mnt }
    }

    fn file(&self) -> PathBuf {
        self.mnt.join(format!("{REPO}@main/{FILE}"))
    }

    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
        kib.unwrap_or(0.0) / 1024.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn publish(py: &Path, url: &str, folder: &Path) {
    let script = "import sys\nfrom huggingface_hub import HfApi\napi=HfApi(token=sys.argv[3])\napi.create_repo(sys.argv[1], exist_ok=True)\napi.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])";
    let ok = Command::new(py).arg("-c").arg(script).args([REPO, &folder.to_string_lossy(), common::TOKEN]).env("HF_ENDPOINT", url).status().expect("upload");
    assert!(ok.success(), "upload");
}

fn read_all(path: &Path, size: u64) {
    let mut f = File::open(path).expect("open");
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert_eq!(total, size, "short read of {}", path.display());
}

fn read_gbps(path: &Path, size: u64) -> f64 {
    let t = Instant::now();
    read_all(path, size);
    size as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// A command's best time and its highest peak RSS over the rounds.
#[derive(Clone, Copy)]
struct Timed {
    secs: f64,
    rss_mb: f64,
}

impl Default for Timed {
    fn default() -> Self {
        Timed { secs: f64::INFINITY, rss_mb: 0.0 }
    }
}

impl Timed {
    fn best(self, (secs, rss_mb): (f64, f64)) -> Timed {
        Timed { secs: self.secs.min(secs), rss_mb: self.rss_mb.max(rss_mb) }
    }
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}

fn sync() {
    let _ = Command::new("sync").status();
}
