//! The mount as a node service: every command works on a store held by a running `tessera
//! mount` (or `tessera hub serve`), through the holder's control socket, and prints what it
//! prints on an unmounted store; a process reading through the mount meanwhile never sees an
//! error; a `pull` into the mounted store is then readable through the mount with no fetch; a
//! holder killed with SIGKILL leaves nothing that stops the next command; a holder that does not
//! answer is named.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Home, Hub, Relay, WRITE_TOKEN, random_bytes};
use crate::mount::{MountProc, fuse_ready};
use crate::require;

const MIB: usize = 1 << 20;

/// The files of revision `n`: a 24 MiB model whose second half changes between revisions, and
/// a small config.
fn revision_files(n: u64) -> Vec<(&'static str, Vec<u8>)> {
    let mut model = random_bytes(12 * MIB, 7);
    model.extend(random_bytes(12 * MIB, 100 + n));
    vec![("model.bin", model), ("config.json", format!("{{\"revision\": {n}}}").into_bytes())]
}

/// Pushes revision `n` of `org/model` from `dir` with the real binary, tagged `v<n>`.
fn publish(publisher: &Home, hub_url: &str, dir: &Path, n: u64) {
    let folder = dir.join(format!("rev{n}"));
    std::fs::create_dir_all(&folder).expect("mkdir");
    for (name, bytes) in revision_files(n) {
        std::fs::write(folder.join(name), bytes).expect("write");
    }
    let tag = format!("v{n}");
    let folder = folder.to_str().expect("utf8 path");
    let out = publisher
        .cmd(&["push", "--create", "--tag", &tag, folder, "org/model"])
        .env("HF_ENDPOINT", hub_url)
        .env("HF_TOKEN", WRITE_TOKEN)
        .output()
        .expect("push");
    crate::common::assert_success(&out, &["push", &tag]);
}

/// `tessera --home H ARGS` against `endpoint`; the whole output.
fn run(home: &Home, endpoint: &str, args: &[&str]) -> Output {
    home.cmd(args)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .expect("run tessera")
}

/// What a command printed and how it ended, for comparing a mounted run with an unmounted one.
fn outcome(home: &Home, endpoint: &str, args: &[&str]) -> (Option<i32>, Vec<u8>) {
    let out = run(home, endpoint, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("LOCK") && !err.contains("panicked"), "{args:?}: {err}");
    (out.status.code(), out.stdout)
}

/// The commands whose output must not depend on whether the store is mounted.
const COMPARED: &[&[&str]] = &[
    &["du"],
    &["du", "--json"],
    &["fsck"],
    &["fsck", "--json"],
    &["ls", "--offline", "org/model@v1"],
    &["ls", "--json", "--offline", "org/model@v1"],
    &["cat", "--offline", "org/model@v1:model.bin"],
    &["cat", "--offline", "--range", "1000-2000000", "org/model@v1:model.bin"],
];

/// A process-like reader: reads one file through the mount, whole and again, until stopped,
/// checking every byte; counts bytes read and errors seen.
struct Reader {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<Vec<String>>,
}

impl Reader {
    fn start(path: PathBuf, want: Vec<u8>) -> Reader {
        let (stop, bytes) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, b) = (stop.clone(), bytes.clone());
        let handle = std::thread::spawn(move || read_until(&path, &want, &s, &b));
        Reader { stop, bytes, handle }
    }

    /// Stops it; returns the errors it saw and the bytes it read.
    fn finish(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self.handle.join().unwrap_or_else(|_| vec!["reader panicked".into()]);
        (errors, self.bytes.load(Ordering::SeqCst))
    }
}

fn read_until(path: &Path, want: &[u8], stop: &AtomicBool, bytes: &AtomicU64) -> Vec<String> {
    let mut errors = Vec::new();
    let mut buf = vec![0u8; MIB];
    while !stop.load(Ordering::SeqCst) {
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("open: {e}"));
                continue;
            }
        };
        for pos in (0..want.len()).step_by(MIB) {
            let n = MIB.min(want.len() - pos);
            match f.read_exact_at(&mut buf[..n], pos as u64) {
                Ok(()) if buf[..n] == want[pos..pos + n] => {}
                Ok(()) => errors.push(format!("wrong bytes at {pos}")),
                Err(e) => errors.push(format!("read at {pos}: {e}")),
            }
            bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
    errors
}

fn commit_of(pull: &Output) -> String {
    let v: serde_json::Value = serde_json::from_slice(&pull.stdout).expect("pull --json");
    v["commit"].as_str().expect("commit").to_string()
}

/// The issue's main "done when": with a mount running and a process reading through it, `du`,
/// `fsck`, `ls` and `cat` print what they print unmounted; `pull`, `add`, `unpin`, `push`,
/// `export` and `gc` work; the pulled revision reads through the mount with zero bytes from the
/// hub; after `kill -9` of the mount the next command works and the next mount serves again.
#[test]
fn every_command_works_through_a_mounted_store_and_after_kill_9() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&dir.path().join("hub"), &[]);
    let publisher = Home::new();
    publish(&publisher, &hub.url, dir.path(), 1);
    publish(&publisher, &hub.url, dir.path(), 2);
    let relay = Relay::start(&hub.url);
    let home = Home::new();
    let first = run(&home, &relay.url, &["pull", "--json", "org/model@v1"]);
    crate::common::assert_success(&first, &["pull", "v1"]);
    let unmounted: Vec<_> = COMPARED.iter().map(|args| outcome(&home, &relay.url, args)).collect();

    let mnt = dir.path().join("models");
    let mut mount = MountProc::start(&home, &mnt, &["--endpoint", &relay.url, "--no-passthrough"]);
    let v1 = revision_files(1);
    let reader = Reader::start(
        mnt.join(format!("org/model@{}/model.bin", commit_of(&first))),
        v1[0].1.clone(),
    );
    for (args, want) in COMPARED.iter().zip(&unmounted) {
        assert!(
            outcome(&home, &relay.url, args) == *want,
            "`tessera {}` differs mounted",
            args.join(" ")
        );
    }
    pull_while_mounted_reads_with_no_fetch(&home, &relay, &mnt);
    other_commands_while_mounted(&home, &relay.url, dir.path());
    let (errors, read) = reader.finish();
    assert!(errors.is_empty(), "the reader saw errors: {errors:?}");
    assert!(read >= v1[0].1.len() as u64, "the reader read only {read} bytes");
    eprintln!("reader: {read} bytes through the mount, no errors");

    mount.signal("-KILL");
    assert!(mount.wait(Duration::from_secs(10)).is_some(), "mount did not die");
    drop(mount);
    let after = outcome(&home, &relay.url, &["fsck"]);
    assert_eq!(after.0, Some(0), "fsck after kill -9: {}", String::from_utf8_lossy(&after.1));
    let _again = MountProc::start(&home, &mnt, &["--endpoint", &relay.url, "--no-passthrough"]);
    let du = outcome(&home, &relay.url, &["du", "--json"]);
    assert_eq!(du.0, Some(0));
    assert_hub_serve_is_a_holder_too(&hub);
}

/// Ctrl-C on a `pull` forwarded to a mount stops the transfer in the holder, as it stops a
/// local one; the next pull keeps what landed and fetches only the rest.
#[test]
fn ctrl_c_on_a_forwarded_pull_stops_it_in_the_holder() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let dir = tempfile::tempdir().expect("tmp");
    // 24 MiB at 4 MB/s: the pull is still running when its client is interrupted.
    let hub = Hub::start(&dir.path().join("hub"), &["--max-bytes-per-sec", "4000000"]);
    publish(&Home::new(), &hub.url, dir.path(), 1);
    let relay = Relay::start(&hub.url);
    let home = Home::new();
    let extra = ["--endpoint", &relay.url, "--no-passthrough", "--log", "info"];
    let mount = MountProc::start(&home, &dir.path().join("models"), &extra);
    let mut client = home
        .cmd(&["pull", "org/model@v1"])
        .env("HF_ENDPOINT", &relay.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pull");
    await_condition("the forwarded pull to fetch 8 MiB", || relay.bytes() > 8 * MIB as u64);
    let interrupted =
        std::process::Command::new("kill").arg("-INT").arg(client.id().to_string()).status();
    assert!(interrupted.is_ok_and(|s| s.success()), "kill -INT");
    assert!(!client.wait().expect("wait").success(), "an interrupted pull reported success");
    await_condition("the holder to stop the pull", || {
        mount.stderr().contains("went away; stopped it")
    });
    let stopped = relay.bytes();
    // An absence cannot be awaited: a transfer still running would move 4 MB in this second.
    std::thread::sleep(Duration::from_secs(1));
    let after = relay.bytes() - stopped;
    assert!(after < MIB as u64, "{after} bytes moved after the holder stopped the pull");
    assert!(stopped < 20 * MIB as u64, "the pull had finished before it was interrupted");
    let again = run(&home, &relay.url, &["pull", "org/model@v1"]);
    crate::common::assert_success(&again, &["pull", "after Ctrl-C"]);
    // Batches in flight when it stopped (up to 1 MiB per stream) are fetched again; what was
    // adopted is not.
    let second = relay.bytes() - stopped - after;
    eprintln!(
        "interrupted after {stopped} bytes, {after} more after it stopped, {second} for the rest"
    );
    assert!(
        second < 20 * MIB as u64,
        "the second pull fetched {second} bytes of a 24 MiB revision"
    );
}

/// Polls `ready` until it holds, failing after 30 s.
fn await_condition(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pull` into the mounted store, then the new revision through the mount: no hub bytes.
fn pull_while_mounted_reads_with_no_fetch(home: &Home, relay: &Relay, mnt: &Path) {
    let pulled = run(home, &relay.url, &["pull", "--json", "org/model@v2"]);
    crate::common::assert_success(&pulled, &["pull", "v2", "(mounted)"]);
    let before = relay.bytes();
    let root = mnt.join(format!("org/model@{}", commit_of(&pulled)));
    for (name, want) in revision_files(2) {
        let got = std::fs::read(root.join(name)).expect("read v2 through the mount");
        assert!(got == want, "{name} of v2 differs through the mount");
    }
    let fetched = relay.bytes() - before;
    assert_eq!(fetched, 0, "reading a revision pulled while mounted fetched {fetched} bytes");
    // By its tag, the mount asks the hub which commit `v2` names (once), and still fetches no
    // file bytes: its own count, through the control socket, stays 0 for the whole test.
    let got = std::fs::read(mnt.join("org/model@v2/config.json")).expect("read v2 by tag");
    assert_eq!(got, revision_files(2)[1].1);
    let status = run(home, &relay.url, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(status["holder"]["bytes_fetched"], 0, "{status}");
}

/// `add`, `unpin`, `pin`, `cache-size`, `export`, `push` (relative paths: the caller's
/// directory) and `gc` while mounted, each as a person would type it.
fn other_commands_while_mounted(home: &Home, endpoint: &str, work: &Path) {
    std::fs::write(work.join("note.txt"), b"added while mounted\n").expect("write");
    let in_work = |args: &[&str]| {
        let out = home
            .cmd(args)
            .current_dir(work)
            .env("HF_ENDPOINT", endpoint)
            .env("HF_TOKEN", WRITE_TOKEN)
            .output()
            .expect("run tessera");
        crate::common::assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(in_work(&["add", "note.txt"]).contains("added 1 files"));
    in_work(&["unpin", "note.txt"]);
    assert!(in_work(&["pin", "org/model@v2"]).starts_with("pinned org/model@v2"));
    assert!(in_work(&["pin"]).contains("model/org/model@"));
    in_work(&["unpin", "org/model@v2"]);
    assert!(in_work(&["cache-size"]).starts_with("cache cap"));
    in_work(&["export", "--offline", "org/model@v2", "exported"]);
    assert_eq!(
        std::fs::read(work.join("exported/config.json")).ok(),
        Some(revision_files(2)[1].1.clone())
    );
    assert!(
        in_work(&["push", "exported", "org/model@copy", "--create"]).contains("org/model@copy")
    );
    assert!(in_work(&["gc"]).starts_with("removed "));
}

/// `tessera --home <the hub's store> ARGS`, asserted to succeed.
fn on_hub_store(hub: &Hub, args: &[&str]) -> Output {
    let out = std::process::Command::new(crate::common::tessera_bin())
        .arg("--home")
        .arg(&hub.data)
        .args(args)
        .output()
        .expect("run tessera");
    crate::common::assert_success(&out, args);
    out
}

/// A store held by `tessera hub serve` takes commands the same way, except `gc`, which could
/// delete a push in flight: refused, saying why.
fn assert_hub_serve_is_a_holder_too(hub: &Hub) {
    on_hub_store(hub, &["du", "--json"]);
    let gc = std::process::Command::new(crate::common::tessera_bin())
        .arg("--home")
        .arg(&hub.data)
        .arg("gc")
        .output()
        .expect("gc");
    let err = String::from_utf8_lossy(&gc.stderr);
    assert!(
        gc.status.code() == Some(2) && err.contains("gc cannot run inside a hub server"),
        "{err}"
    );
}

/// A holder that does not answer (stopped with SIGSTOP), or whose socket is gone, is named in
/// the error, with its pid and command, within the accept timeout; and the socket is the
/// owner's alone.
#[test]
fn a_holder_that_does_not_answer_is_named() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let dir = tempfile::tempdir().expect("tmp");
    let home = Home::new();
    home.ok(&["du"]);
    let mount = MountProc::start(&home, &dir.path().join("models"), &["--offline"]);
    let socket = home.path().join("run/control.sock");
    let mode = std::fs::metadata(&socket).expect("control socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    mount.signal("-STOP");
    let started = Instant::now();
    let out = home.cmd(&["du"]).output().expect("du");
    mount.signal("-CONT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("pid {}", mount.pid())) && err.contains(" mount "), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    home.ok(&["du"]);
    // A second mount on the same store is refused, naming the first.
    let second =
        home.cmd(&["mount", "--offline"]).arg(dir.path().join("again")).output().expect("mount");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("held by pid {}", mount.pid()))
            && err.contains("one mount or hub server per store"),
        "{err}"
    );
    // Without its socket (deleted by hand), the lock is what the command meets: named too.
    std::fs::remove_file(&socket).expect("remove socket");
    let out = home.cmd(&["du"]).output().expect("du");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("held by pid {}", mount.pid())) && err.contains("does not answer"),
        "{err}"
    );
}

/// Parses a Prometheus text exposition (a URL or a file) with `prometheus_client`'s parser;
/// returns every sample as `name{label="value",...}` -> value.
fn scrape(py: &Path, source: &str) -> serde_json::Map<String, serde_json::Value> {
    const PARSE: &str = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
src = sys.argv[1]
text = urllib.request.urlopen(src).read().decode() if src.startswith("http") else open(src).read()
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
"#;
    let out = crate::common::run_python(py, PARSE, &[source]);
    match serde_json::from_str(&out) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("parser output {other:?}"),
    }
}

fn value(samples: &serde_json::Map<String, serde_json::Value>, key: &str) -> f64 {
    samples
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("no sample {key}"))
}

/// A fresh lazy mount with `--metrics-listen` and `NOTIFY_SOCKET`: it says READY=1 on a real
/// datagram socket once mounted; `status --json` (through the control socket) names the
/// metrics address; after the test reads a file whole, a scrape parsed by `prometheus_client`
/// counts exactly the bytes read as served, at least the file and at most what the hub sent as
/// fetched, and `status --prometheus` prints the same counters.
#[test]
fn metrics_count_what_was_read_and_fetched_and_readiness_is_signalled() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(crate::common::python(), "no venv");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&dir.path().join("hub"), &[]);
    publish(&Home::new(), &hub.url, dir.path(), 1);
    let relay = Relay::start(&hub.url);
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let (home, mnt) = (Home::new(), dir.path().join("models"));
    let args =
        ["--endpoint", relay.url.as_str(), "--no-passthrough", "--metrics-listen", "127.0.0.1:0"];
    let _mount = MountProc::start_env(&home, &mnt, &args, &[("NOTIFY_SOCKET", &notify_path)]);
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("READY=1 from the mount");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("READY=1\n"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    let status = run(&home, &relay.url, &["status", "--json"]);
    crate::common::assert_success(&status, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(status["holder"]["kind"], "mount", "{status}");
    let addr = status["holder"]["metrics_listen"].as_str().expect("metrics address").to_string();

    let want = &revision_files(1)[0].1;
    let got = std::fs::read(mnt.join("org/model@v1/model.bin")).expect("read through the mount");
    assert!(got == *want, "model.bin differs through the mount");
    let samples = scrape(&py, &format!("http://{addr}/metrics"));
    let (served, fetched) = (
        value(&samples, "tessera_mount_bytes_served_total"),
        value(&samples, "tessera_mount_bytes_fetched_total"),
    );
    let hub_sent = relay.bytes() as f64;
    assert_eq!(served, want.len() as f64, "bytes served");
    assert!(
        fetched >= want.len() as f64 && fetched <= hub_sent,
        "fetched {fetched}, file {}, hub sent {hub_sent}",
        want.len()
    );
    assert!(value(&samples, "tessera_mount_cache_misses_total") >= 1.0);
    assert!(value(&samples, "tessera_mount_fetch_duration_seconds_count") >= 1.0);
    assert_eq!(value(&samples, "tessera_mount_errors_total{kind=\"io\"}"), 0.0);
    assert_eq!(value(&samples, "tessera_mount_fetches_in_flight"), 0.0);
    // Fetched chunks are indexed (and so counted in the store's size) by the flusher, every
    // 250 ms: await it rather than sleep.
    let deadline = Instant::now() + Duration::from_secs(20);
    while value(
        &scrape(&py, &format!("http://{addr}/metrics")),
        "tessera_store_bytes{class=\"unique\"}",
    ) < want.len() as f64
    {
        assert!(Instant::now() < deadline, "the store's size never counted the fetched file");
    }
    assert_eq!(
        value(
            &samples,
            &format!("tessera_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    eprintln!("metrics: served {served}, fetched {fetched}, hub sent {hub_sent} bytes");

    let text = run(&home, &relay.url, &["status", "--prometheus"]);
    crate::common::assert_success(&text, &["status", "--prometheus"]);
    let file = dir.path().join("status.prom");
    std::fs::write(&file, &text.stdout).expect("write");
    let again = scrape(&py, file.to_str().expect("utf8"));
    assert_eq!(value(&again, "tessera_mount_bytes_served_total"), served);
    let human = String::from_utf8_lossy(&run(&home, &relay.url, &["status"]).stdout).into_owned();
    assert!(
        human.contains("1 revisions open") && human.contains(&format!("http://{addr}/metrics")),
        "{human}"
    );
}

/// `hub serve --metrics-listen`: `status --json` through its control socket names the address,
/// and the scrape parses, with the store's size by class and the build info.
#[test]
fn hub_serve_metrics_parse() {
    let py = require!(crate::common::python(), "no venv");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&dir.path().join("hub"), &["--metrics-listen", "127.0.0.1:0"]);
    publish(&Home::new(), &hub.url, dir.path(), 1);
    let status = on_hub_store(&hub, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(status["holder"]["kind"], "hub serve", "{status}");
    let addr = status["holder"]["metrics_listen"].as_str().expect("metrics address");
    let samples = scrape(&py, &format!("http://{addr}/metrics"));
    let model = revision_files(1)[0].1.len() as f64;
    assert!(value(&samples, "tessera_store_bytes{class=\"logical\"}") >= model, "{samples:?}");
    assert!(samples.keys().any(|k| k.starts_with("tessera_build_info{")), "{samples:?}");
    // The publish above made the hub answer requests (repo, xorb, shard, commit): all counted.
    let ok = value(&samples, "tessera_hub_requests_total{code=\"2xx\"}");
    assert!(ok >= 4.0, "2xx requests counted: {ok}");
    assert!(value(&samples, "tessera_hub_request_seconds_count") >= ok, "{samples:?}");
}
