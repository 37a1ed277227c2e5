//! `tessera pull` / `export` / `ls` against `tessera hub serve` seeded by `huggingface_hub`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{Home, Hub, WRITE_TOKEN, asset, assert_same_tree, changed_bytes, files_under, py_script, python, random_bytes};
use crate::fault_proxy::FaultProxy;
use crate::require;

fn silero(v: &str) -> Option<PathBuf> {
    asset(&format!("silero-vad-{v}")).map(|d| d.join("silero_vad/data"))
}

/// `tessera --home H pull --json SPEC` with `HF_ENDPOINT`; returns the JSON summary.
fn pull(home: &Home, endpoint: &str, spec: &str, extra_env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = home.cmd(&["pull", "--json", spec]);
    cmd.env("HF_ENDPOINT", endpoint).env_remove("HF_HUB_OFFLINE").env_remove("HF_TOKEN");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("pull");
    crate::common::assert_success(&out, &["pull", spec]);
    serde_json::from_slice(&out.stdout).expect("pull json")
}

fn export(home: &Home, endpoint: &str, spec: &str, dir: &Path, offline: bool) {
    let mut cmd = home.cmd(&["export", spec, dir.to_str().expect("utf8")]);
    cmd.env("HF_ENDPOINT", endpoint);
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    crate::common::assert_success(&cmd.output().expect("export"), &["export", spec]);
}

fn seed(py: &Path, hub: &Hub, repo: &str, folders: &[(&Path, &str)], no_xet: bool) {
    let mut args = vec![repo.to_string(), WRITE_TOKEN.to_string()];
    if no_xet {
        args.push("--no-xet".into());
    }
    args.extend(folders.iter().map(|(f, t)| format!("{}={t}", f.display())));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    py_script(py, &hub.url, "seed_repo.py", &argv);
}

#[test]
fn pull_silero_incremental_offline_and_hf_cache() {
    let py = require!(python(), "no venv");
    let (v5, v6) = (require!(silero("5.1.2"), "silero"), require!(silero("6.2.3"), "silero"));
    let data = tempfile::tempdir().expect("tmp");
    let mut hub = Hub::start(data.path(), &[]);
    seed(&py, &hub, "org/silero", &[(&v5, "v5.1.2"), (&v6, "v6.2.3")], false);
    let home = Home::new();
    let first = pull(&home, &hub.url, "org/silero@v5.1.2", &[]);
    assert_eq!(first["files"].as_u64(), Some(files_under(&v5).len() as u64), "{first}");
    let out = tempfile::tempdir().expect("tmp");
    export(&home, &hub.url, "org/silero@v5.1.2", &out.path().join("v5"), false);
    assert_same_tree(&out.path().join("v5"), &v5);

    let second = pull(&home, &hub.url, "org/silero@main", &[]);
    let changed = changed_bytes(&v5, &v6);
    let fetched = second["bytes_fetched"].as_u64().expect("fetched");
    assert!(fetched <= changed, "second pull fetched {fetched} > {changed} changed bytes: {second}");
    export(&home, &hub.url, "org/silero@main", &out.path().join("v6"), false);
    assert_same_tree(&out.path().join("v6"), &v6);
    let third = pull(&home, &hub.url, "org/silero@main", &[]);
    assert_eq!(third["bytes_fetched"].as_u64(), Some(0), "{third}");
    eprintln!("pull: v5 fetched {}, v6 fetched {fetched} of {changed} changed bytes", first["bytes_fetched"]);

    // The hub goes away: what was pulled still resolves and exports, with no network.
    hub.stop();
    let offline = pull(&home, &hub.url, "org/silero@main", &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(offline["bytes_fetched"].as_u64(), Some(0));
    export(&home, &hub.url, "org/silero@main", &out.path().join("offline"), true);
    assert_same_tree(&out.path().join("offline"), &v6);
    let miss = home.cmd(&["pull", "nobody/nothing"]).env("HF_HUB_OFFLINE", "1").env("HF_ENDPOINT", &hub.url).output().expect("pull");
    let err = String::from_utf8_lossy(&miss.stderr);
    assert!(!miss.status.success() && err.lines().count() == 1 && err.starts_with("tessera: error:"), "{err}");
    assert!(!err.contains("panicked"));

    // The Hugging Face cache layout is accepted by huggingface_hub with local_files_only.
    let cache = out.path().join("hf-cache");
    let ok = home
        .cmd(&["export", "--hf-cache", cache.to_str().expect("utf8"), "org/silero@main"])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("export");
    crate::common::assert_success(&ok, &["export --hf-cache"]);
    let script = "import sys\nfrom huggingface_hub import snapshot_download\nprint(snapshot_download('org/silero', cache_dir=sys.argv[1], local_files_only=True))";
    let snap = crate::common::run_python(&py, script, &[cache.to_str().expect("utf8")]);
    assert_same_tree(Path::new(snap.trim()), &v6);
    home.ok(&["fsck"]);
}

#[test]
fn pull_from_a_server_without_xet() {
    let py = require!(python(), "no venv");
    let v6 = require!(silero("6.2.3"), "silero");
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &["--no-xet"]);
    seed(&py, &hub, "org/plain", &[(&v6, "")], true);
    let home = Home::new();
    let r = pull(&home, &hub.url, "org/plain", &[]);
    assert!(r["bytes_fetched"].as_u64() >= Some(files_under(&v6).iter().map(|f| std::fs::metadata(v6.join(f)).map(|m| m.len()).unwrap_or(0)).sum()));
    let out = tempfile::tempdir().expect("tmp");
    export(&home, &hub.url, "org/plain", out.path(), true);
    assert_same_tree(out.path(), &v6);
    assert_eq!(pull(&home, &hub.url, "org/plain", &[])["bytes_fetched"].as_u64(), Some(0));
}

#[test]
fn pull_through_faults_is_exact_or_fails_cleanly() {
    let py = require!(python(), "no venv");
    let v6 = require!(silero("6.2.3"), "silero");
    for no_xet in [false, true] {
        let data = tempfile::tempdir().expect("tmp");
        let hub = Hub::start(data.path(), if no_xet { &["--no-xet"] } else { &[] });
        seed(&py, &hub, "org/faulty", &[(&v6, "")], no_xet);
        let proxy = FaultProxy::start(&hub.url);
        let home = Home::new();
        let out = home.cmd(&["pull", "--json", "org/faulty"]).env("HF_ENDPOINT", &proxy.url).output().expect("pull");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.status.success(), "pull through faults failed (no_xet={no_xet}): {err}");
        // Downloads that failed their check left no staging file (the next open would hide one).
        let staged = files_under(&home.path().join("tmp"));
        assert!(staged.is_empty(), "tmp/ holds {staged:?} (no_xet={no_xet})");
        let dir = tempfile::tempdir().expect("tmp");
        export(&home, &proxy.url, "org/faulty", dir.path(), true);
        assert_same_tree(dir.path(), &v6);
        home.ok(&["fsck"]);
        assert!(proxy.injected() > 3, "the proxy injected only {} faults", proxy.injected());
        eprintln!("faults (no_xet={no_xet}): {} injected, pull byte-exact, fsck clean", proxy.injected());
    }
}

#[test]
fn sigkill_mid_pull_then_rerun_fetches_only_the_rest() {
    let py = require!(python(), "no venv");
    let src = tempfile::tempdir().expect("tmp");
    for i in 0..8u64 {
        std::fs::write(src.path().join(format!("shard-{i}.bin")), random_bytes(3 << 20, 500 + i)).expect("write");
    }
    let data = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(data.path(), &["--max-bytes-per-sec", "4000000"]);
    seed(&py, &hub, "org/big", &[(src.path(), "")], false);
    let home = Home::new();
    let mut child = home.cmd(&["pull", "org/big"]).env("HF_ENDPOINT", &hub.url).spawn().expect("spawn pull");
    // Kill it once some data is in the store (not after a fixed time: a slow machine would kill
    // it before any byte landed, a fast one after the last). Xorb files are sparse: count the
    // blocks written, not their length.
    let xorbs = home.path().join("xorbs");
    let stored = || xorbs.exists().then(|| crate::common::files_under(&xorbs)).unwrap_or_default().iter().filter_map(|f| xorbs.join(f).metadata().ok()).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored() < 4 << 20 && Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let early = child.try_wait().ok().flatten();
    assert!(early.is_none(), "the pull ended ({early:?}) before it could be killed, {} B stored", stored());
    let _ = child.kill();
    let _ = child.wait();
    home.ok(&["fsck"]);
    let rerun = pull(&home, &hub.url, "org/big", &[]);
    let total = rerun["bytes_total"].as_u64().expect("total");
    let fetched = rerun["bytes_fetched"].as_u64().expect("fetched");
    assert!(fetched < total, "re-run fetched everything again ({fetched} of {total})");
    let out = tempfile::tempdir().expect("tmp");
    export(&home, &hub.url, "org/big", out.path(), true);
    assert_same_tree(out.path(), src.path());
    eprintln!("sigkill: re-run fetched {fetched} of {total} bytes");
}
