//! Hub parity where users meet it (issue 18): pull requests, Spaces, LFS-only hubs and
//! multi-range reconstructions, each checked with `huggingface_hub` (the set-up venv) and the
//! real `tessera` binary against `tessera hub serve` on 127.0.0.1.

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
fn tessera(home: &Home, hub: &str, args: &[&str]) -> Command {
    let mut cmd = home.cmd(args);
    cmd.env("HF_ENDPOINT", hub).env("HF_TOKEN", WRITE_TOKEN).env_remove("HF_HUB_OFFLINE");
    cmd
}

/// Runs `tessera ARGS --json`, asserts success; returns the summary line.
fn json(home: &Home, hub: &str, args: &[&str]) -> serde_json::Value {
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
    let draft = py(&py_bin, &hub.url, &[], &["new_pr", "tester/pr"]);
    assert_eq!(draft["num"], 4, "{draft}");
    eprintln!(
        "pull requests: refs/pr/1 by huggingface_hub, refs/pr/2 and 3 by tessera push, merged 1 and 2"
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
