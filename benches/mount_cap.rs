//! Read throughput through a capped mount while eviction runs, side by side with an uncapped
//! one in the same run: 3 GiB of distinct files (12 x 256 MiB safetensors) published with
//! `huggingface_hub` on a loopback `tessera hub serve`, each read whole, cold, in turn through a
//! fresh `tessera mount` on an empty store, with and without `--max-cache-size 1G` (which must
//! evict about 2 GiB on the way). Goal: capped >= 0.8x the uncapped throughput.
//!
//! `cargo bench --profile dev --bench mount_cap` (needs root, /dev/fuse and the venv of `make
//! setup`; prints SKIPPED otherwise).
#![allow(clippy::expect_used, missing_docs)]

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

use tessera::testdata::SyntheticSafetensors;

#[path = "common/mod.rs"]
mod common;
#[path = "common/disk.rs"]
mod disk;
use disk::disk_use;

const MIB: u64 = 1 << 20;
const REPO: &str = "bench/many";
const FILES: u64 = 12;
const CAP: &str = "1G";

fn main() {
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    let venv = std::env::var_os("TESSERA_VENV").map(PathBuf::from);
    let (true, true, Some(venv)) = (root, Path::new("/dev/fuse").exists(), venv) else {
        println!("SKIPPED: the mount_cap bench needs root, /dev/fuse and TESSERA_VENV (run `make bench`)");
        return;
    };
    let py = venv.join("bin/python");
    let dir = tempfile::tempdir().expect("tmp");
    let upload = dir.path().join("upload");
    std::fs::create_dir_all(&upload).expect("mkdir");
    let mut total = 0;
    for i in 0..FILES {
        let model = SyntheticSafetensors::new(4, 64 * MIB, 0xb0b + i);
        model.write_into(&mut File::create(upload.join(name(i))).expect("create")).expect("write");
        total += model.size();
    }
    let bin = env!("CARGO_BIN_EXE_tessera");
    let hub = common::Hub::start(bin, &dir.path().join("hub"));
    publish(&py, &hub.url, &upload);
    std::fs::remove_dir_all(&upload).expect("rm upload");

    let (mut free, mut capped) = ((f64::INFINITY, 0), (f64::INFINITY, 0));
    for round in 0..2 {
        let f = read_everything(&dir.path().join(format!("free-{round}")), &hub.url, &[]);
        let c = read_everything(&dir.path().join(format!("cap-{round}")), &hub.url, &["--max-cache-size", CAP]);
        free = (free.0.min(f.0), free.1.max(f.1));
        capped = (capped.0.min(c.0), capped.1.max(c.1));
    }
    let gb = total as f64 / 1e9;
    println!("capped mount: {FILES} files, {:.2} GB in all, read whole in turn, cold, loopback hub, best of 2", gb);
    println!("  uncapped                         {:7.2} s  {:5.2} GB/s  store at the end {:6} MiB", free.0, gb / free.0, free.1 / MIB);
    println!("  --max-cache-size {CAP}             {:7.2} s  {:5.2} GB/s  store at the end {:6} MiB", capped.0, gb / capped.0, capped.1 / MIB);
    println!("  capped / uncapped throughput     {:7.2}   (goal >= 0.8)", free.0 / capped.0);
}

fn name(i: u64) -> String {
    format!("model-{i:02}.safetensors")
}

/// Seconds to read every file whole through a fresh mount, and the store's disk use after.
fn read_everything(dir: &Path, url: &str, extra: &[&str]) -> (f64, u64) {
    let (home, mnt) = (dir.join("home"), dir.join("mnt"));
    let child = common::spawn_mount_with(env!("CARGO_BIN_EXE_tessera"), &home, &mnt, url, extra);
    let _guard = Unmount(child);
    std::fs::metadata(mnt.join(format!("{REPO}@main/{}", name(0)))).expect("stat through the mount");
    let t = Instant::now();
    let mut buf = vec![0u8; 4 << 20];
    for i in 0..FILES {
        let mut f = File::open(mnt.join(format!("{REPO}@main/{}", name(i)))).expect("open");
        while f.read(&mut buf).expect("read") > 0 {}
    }
    let took = t.elapsed().as_secs_f64();
    let used = disk_use(&home.join("xorbs")) + disk_use(&home.join("flat"));
    drop(_guard);
    let _ = std::fs::remove_dir_all(dir);
    (took, used)
}

struct Unmount(Child);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn publish(py: &Path, url: &str, folder: &Path) {
    let script = "import sys\nfrom huggingface_hub import HfApi\napi=HfApi(token=sys.argv[3])\napi.create_repo(sys.argv[1], exist_ok=True)\napi.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])";
    let ok = Command::new(py).arg("-c").arg(script).args([REPO, &folder.to_string_lossy(), common::TOKEN]).env("HF_ENDPOINT", url).status().expect("upload");
    assert!(ok.success(), "upload");
}
