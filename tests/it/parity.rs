//! Hub parity where users meet it (issue 18): pull requests, Spaces, LFS-only hubs and
//! multi-range reconstructions, each checked with `huggingface_hub` (the set-up venv) and the
//! real `tessera` binary against `tessera hub serve` on 127.0.0.1.

// A test's set-up failing is its failure: `expect` says which step.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use crate::common::{Home, Hub, WRITE_TOKEN, assert_success, python, random_bytes};
use crate::require;

/// Runs `tests/py/parity.py MODE ARGS` against `hub`; returns its JSON answer.
fn py(py: &Path, hub: &str, env: &[(&str, &str)], args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/parity.py");
    let hf_home = tempfile::tempdir().expect("tmp");
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .env("HF_ENDPOINT", hub)
        .env("HF_TOKEN", WRITE_TOKEN)
        .env("HF_HOME", hf_home.path())
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "parity.py {args:?}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("parity.py json")
}

/// A `tessera ARGS` command on `home` against `hub` with the write token.
pub(crate) fn tessera(home: &Home, hub: &str, args: &[&str]) -> Command {
    let mut cmd = home.cmd(args);
    cmd.env("HF_ENDPOINT", hub).env("HF_TOKEN", WRITE_TOKEN).env_remove("HF_HUB_OFFLINE");
    cmd
}

/// Runs `tessera ARGS --json`, asserts success; returns the summary line.
pub(crate) fn json(home: &Home, hub: &str, args: &[&str]) -> serde_json::Value {
    let out = tessera(home, hub, &[args, &["--json"]].concat()).output().expect("run tessera");
    assert_success(&out, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("json summary")
}

fn s(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("{k} missing in {v}")).to_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn pull_requests_from_huggingface_hub_and_tessera_push() {
    let py_bin = require!(python(), "no venv");
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &[]);
    let (home, dir, work) =
        (Home::new(), tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    std::fs::write(dir.path().join("README.md"), "# base\n").expect("write");
    json(&home, &hub.url, &["push", "--create", path(dir.path()), "tester/pr"]);

    let opened = py(&py_bin, &hub.url, &[], &["open_pr", "tester/pr", path(work.path())]);
    let pulled = json(&Home::new(), &hub.url, &["pull", "tester/pr@refs/pr/1"]);
    assert_eq!(s(&pulled, "commit"), s(&opened, "pr_head"), "tessera pull of refs/pr/1: {pulled}");
    let merged = py(&py_bin, &hub.url, &[], &["merge", "tester/pr", "1"]);
    assert_eq!(s(&merged, "main"), s(&opened, "pr_head"), "merge fast-forwards main: {merged}");

    std::fs::write(dir.path().join("extra.bin"), random_bytes(1 << 20, 7)).expect("write");
    let pushed = json(&home, &hub.url, &["push", "--create-pr", path(dir.path()), "tester/pr"]);
    let url = format!("{}/tester/pr/discussions/2", hub.url);
    assert_eq!(
        (s(&pushed, "pr_url"), s(&pushed, "pr_revision")),
        (url, "refs/pr/2".into()),
        "{pushed}"
    );
    let main = json(&Home::new(), &hub.url, &["pull", "tester/pr"]);
    assert_eq!(s(&main, "commit"), s(&merged, "main"), "--create-pr must leave main alone");
    let merged2 = py(&py_bin, &hub.url, &[], &["merge", "tester/pr", "2"]);
    assert_eq!(s(&merged2, "main"), s(&pushed, "commit"), "{merged2}");

    std::fs::write(dir.path().join("more.txt"), "more\n").expect("write");
    let out = tessera(&home, &hub.url, &["push", "--create-pr", path(dir.path()), "tester/pr"])
        .output()
        .expect("push");
    assert_success(&out, &["push", "--create-pr"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("refs/pr/3 on tester/pr: {}/tester/pr/discussions/3", hub.url)),
        "{text}"
    );
    // main moves on meanwhile: merging #3 then applies its change on top (a three-way merge).
    let other = tempfile::tempdir().expect("tmp");
    std::fs::write(other.path().join("direct.txt"), "straight to main\n").expect("write");
    json(&home, &hub.url, &["push", path(other.path()), "tester/pr"]);
    py(&py_bin, &hub.url, &[], &["merge", "tester/pr", "3"]);
    let main = json(&Home::new(), &hub.url, &["pull", "tester/pr"]);
    // README.md, weights.bin, notes.txt, extra.bin, more.txt and direct.txt.
    assert_eq!(main["files"].as_u64(), Some(6), "both sides after the merge: {main}");
    let draft = py(&py_bin, &hub.url, &[], &["new_pr", "tester/pr"]);
    assert_eq!(draft["num"], 4, "{draft}");
    eprintln!(
        "pull requests: refs/pr/1 by huggingface_hub, refs/pr/2 and 3 by tessera push, all merged"
    );
}

#[test]
fn spaces_need_their_sdk() {
    let py_bin = require!(python(), "no venv");
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &[]);
    let (home, dir) = (Home::new(), tempfile::tempdir().expect("tmp"));
    std::fs::write(dir.path().join("app.py"), "import gradio\n").expect("write");
    let no_sdk = tessera(
        &home,
        &hub.url,
        &["push", "--create", "--repo-type", "space", path(dir.path()), "tester/app"],
    )
    .output()
    .expect("push");
    let err = String::from_utf8_lossy(&no_sdk.stderr);
    assert!(!no_sdk.status.success() && err.contains("--space-sdk"), "{err}");
    let args = [
        "push",
        "--create",
        "--repo-type",
        "space",
        "--space-sdk",
        "gradio",
        path(dir.path()),
        "tester/app",
    ];
    json(&home, &hub.url, &args);
    let info = py(&py_bin, &hub.url, &[], &["space", "tester/app"]);
    assert_eq!(info["sdk"], "gradio", "{info}");
    assert_eq!(info["no_sdk_status"], 400, "{info}");
    let msg = s(&info, "no_sdk_error");
    assert!(msg.contains("sdk") && msg.contains("gradio, streamlit, docker, static"), "{msg}");
}

/// Whether two files hold the same bytes, read a MiB at a time (the files are large).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut x, mut y) =
        (std::fs::File::open(a).expect("open"), std::fs::File::open(b).expect("open"));
    let (mut bx, mut by) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = x.read(&mut bx).expect("read");
        if y.read_exact(&mut by[..n]).is_err() || bx[..n] != by[..n] {
            return false;
        }
        if n == 0 {
            return y.read(&mut by).expect("read") == 0;
        }
    }
}

/// Lines of the hub's log holding `needle`, without their colour codes.
fn log_lines(hub: &Hub, needle: &str) -> Vec<String> {
    let log = std::fs::read_to_string(hub.data.with_extension("log")).unwrap_or_default();
    let plain = |l: &str| {
        let mut out = String::new();
        let mut chars = l.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                chars.by_ref().find(|c| c.is_ascii_alphabetic());
            } else {
                out.push(c);
            }
        }
        out
    };
    log.lines().map(plain).filter(|l| l.contains(needle)).collect()
}

#[test]
fn lfs_only_hub_gets_multipart_pushes_and_uploads() {
    let py_bin = require!(python(), "no venv");
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &["--no-xet"]);
    let (home, dir, cache) =
        (Home::new(), tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let big = 600u64 << 20;
    std::fs::write(dir.path().join("model.bin"), random_bytes(big as usize, 600)).expect("write");
    std::fs::write(dir.path().join("config.json"), "{\"hidden\": 600}\n").expect("write");
    let pushed = json(&home, &hub.url, &["push", "--create", path(dir.path()), "tester/big"]);
    assert_eq!(
        (pushed["transfer"].as_str(), pushed["lfs_parts"].as_u64()),
        (Some("lfs"), Some(2)),
        "{pushed}"
    );
    assert_eq!(
        pushed["bytes_uploaded"].as_u64(),
        Some(big + 16),
        "object and inline bytes sent: {pushed}"
    );
    assert_eq!(log_lines(&hub, "LFS multipart object stored").len(), 1, "one multipart object");
    let snap = py(&py_bin, &hub.url, &[], &["snapshot", "tester/big", "main", path(cache.path())]);
    let got = Path::new(snap["path"].as_str().expect("path"));
    assert!(
        same_file(&got.join("model.bin"), &dir.path().join("model.bin")),
        "600 MiB file differs"
    );
    let again = json(&home, &hub.url, &["push", path(dir.path()), "tester/big"]);
    assert_eq!(
        (again["pushed"].as_bool(), again["bytes_uploaded"].as_u64()),
        (Some(false), Some(0)),
        "{again}"
    );
    eprintln!(
        "LFS fallback: {} B on the wire in {} parts for a {big} B file",
        pushed["bytes_uploaded"], pushed["lfs_parts"]
    );

    // huggingface_hub without Xet uses the multipart transfer for a file over the part size.
    let data2 = tempfile::tempdir().expect("tmp");
    let hub2 = Hub::start(data2.path(), &["--lfs-part-size", "8388608"]);
    let file = dir.path().join("weights.bin");
    std::fs::write(&file, random_bytes(20 << 20, 20)).expect("write");
    let env = [("HF_HUB_DISABLE_XET", "1")];
    py(&py_bin, &hub2.url, &env, &["upload", "tester/up", path(&file), "weights.bin"]);
    let stored = log_lines(&hub2, "LFS multipart object stored");
    assert!(stored.len() == 1 && stored[0].contains("parts=3"), "{stored:?}");
    let snap = py(&py_bin, &hub2.url, &[], &["snapshot", "tester/up", "main", path(cache.path())]);
    let got = Path::new(snap["path"].as_str().expect("path"));
    assert!(same_file(&got.join("weights.bin"), &file), "uploaded file differs");
}

/// CAS requests (reconstructions and xorb fetches) in the hub's log so far.
fn cas_requests(hub: &Hub) -> usize {
    let paths = ["path=/v1/reconstructions", "path=/v2/reconstructions", "path=/_cas/fetch/"];
    log_lines(hub, " request ").iter().filter(|l| paths.iter().any(|p| l.contains(p))).count()
}

/// `tessera pull` of `repo` into a fresh store: the CAS requests it cost, and its summary.
fn counted_pull(hub: &Hub, repo: &str) -> (usize, serde_json::Value) {
    let before = cas_requests(hub);
    let pulled = json(&Home::new(), &hub.url, &["pull", repo]);
    (cas_requests(hub) - before, pulled)
}

#[test]
fn pull_fetches_the_ranges_of_a_xorb_in_one_request() {
    let py_bin = require!(python(), "no venv");
    let data = tempfile::tempdir().expect("tmp");
    let (home, base, multi) =
        (Home::new(), tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let a = random_bytes(16 << 20, 16);
    std::fs::write(base.path().join("a.bin"), &a).expect("write");
    // b.bin: 8 new pieces, each followed by a 1 MiB slice of a.bin with 1 MiB gaps between the
    // slices: 16 terms, 8 of them in disjoint ranges of a.bin's xorb.
    let mut b = Vec::new();
    for i in 0..8usize {
        b.extend_from_slice(&random_bytes(128 << 10, 100 + i as u64));
        b.extend_from_slice(&a[(2 * i) << 20..((2 * i) << 20) + (1 << 20)]);
    }
    std::fs::write(multi.path().join("b.bin"), &b).expect("write");
    let (v2, v1);
    {
        let hub = Hub::start(data.path(), &[]);
        json(&home, &hub.url, &["push", "--create", path(base.path()), "tester/base"]);
        json(&home, &hub.url, &["push", "--create", path(multi.path()), "tester/multi"]);
        let (n, pulled) = counted_pull(&hub, "tester/multi");
        assert_eq!(pulled["bytes_total"].as_u64(), Some(b.len() as u64), "{pulled}");
        v2 = n;
        let cache = tempfile::tempdir().expect("tmp");
        let before = log_lines(&hub, "path=/v2/reconstructions/").len();
        py(&py_bin, &hub.url, &[], &["snapshot", "tester/multi", "main", path(cache.path())]);
        assert!(
            log_lines(&hub, "path=/v2/reconstructions/").len() > before,
            "hf_xet must keep using v2"
        );
    }
    {
        let hub = Hub::start(data.path(), &["--no-v2-reconstructions"]);
        let (n, pulled) = counted_pull(&hub, "tester/multi");
        assert_eq!(pulled["bytes_total"].as_u64(), Some(b.len() as u64), "{pulled}");
        v1 = n;
    }
    eprintln!(
        "pull of a 16-term file over 8 disjoint ranges of one xorb: {v2} CAS requests with v2, {v1} with v2 answered 404"
    );
    assert!(v2 < v1 && v2 <= 3, "multi-range must save requests: v2 {v2}, v1 {v1}");
}
