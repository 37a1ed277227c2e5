//! Model swaps under load: Triton's repository API (`/v2/repository/index`,
//! `/v2/repository/models/{m}/load|unload`) on the real binary while eight clients send
//! requests without pause. A load brings the model at its path in beside the one serving, warms
//! it, then swaps it in: no request fails, every answer is the old or the new model's, and every
//! request sent after the load returned gets the new one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Server, call, infer, model_arg, setup_or_skip};

const CLIENTS: usize = 8;

/// x = y = 1.5 as [3, 4, 5] tensors: `add` answers 3.0 everywhere, `sub` 0.0.
fn request() -> Value {
    let t = |name: &str| json!({"name": name, "datatype": "FP32", "shape": [3, 4, 5], "data": vec![1.5f32; 60]});
    json!({"inputs": [t("x"), t("y")]})
}

/// The single value of an answer whose elements are all equal, if it is one.
fn answer(got: &Value) -> Option<f64> {
    let data = got["outputs"][0]["data"].as_array()?;
    let first = data.first()?.as_f64()?;
    data.iter().all(|v| v.as_f64() == Some(first)).then_some(first)
}

/// What the clients saw, together: failures, answers of the old and the new model, and answers
/// of the old model to requests sent after `swapped_at`.
#[derive(Default)]
struct Traffic {
    stop: AtomicBool,
    swapped_at: parking_lot::Mutex<Option<Instant>>,
    /// Set `swapped_at` when the first answer of the new model arrives.
    mark_on_first_new: bool,
    old: AtomicUsize,
    new: AtomicUsize,
    old_after_swap: AtomicUsize,
    failures: parking_lot::Mutex<Vec<String>>,
}

impl Traffic {
    /// One client: requests without pause until stopped.
    fn client(&self, addr: &str) {
        while !self.stop.load(Ordering::SeqCst) {
            let sent = Instant::now();
            let (status, got) = infer(addr, "m", &request());
            match (status, answer(&got)) {
                (200, Some(3.0)) => {
                    self.old.fetch_add(1, Ordering::SeqCst);
                    if self.swapped_at.lock().is_some_and(|at| sent > at) {
                        self.old_after_swap.fetch_add(1, Ordering::SeqCst);
                    }
                }
                (200, Some(0.0)) => {
                    self.new.fetch_add(1, Ordering::SeqCst);
                    if self.mark_on_first_new {
                        self.swapped_at.lock().get_or_insert_with(Instant::now);
                    }
                }
                _ => self.failures.lock().push(format!("HTTP {status}: {got}")),
            }
        }
    }

    /// Waits until `done`, failing after a minute.
    fn wait_for(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `CLIENTS` clients against `addr` while `drive` runs, then checks: no failure, both
    /// models answered, none of the old after the swap.
    fn around(&self, addr: &str, drive: impl FnOnce(&Self)) {
        std::thread::scope(|s| {
            for _ in 0..CLIENTS {
                s.spawn(|| self.client(addr));
            }
            drive(self);
            self.stop.store(true, Ordering::SeqCst);
        });
        let failures = self.failures.lock();
        let (old, new) = (self.old.load(Ordering::SeqCst), self.new.load(Ordering::SeqCst));
        eprintln!(
            "{CLIENTS} clients: {old} answers of the old model, {new} of the new, {} failed",
            failures.len()
        );
        assert!(failures.is_empty(), "failed requests during the swap: {failures:?}");
        assert!(old > 0 && new > 0, "both models must have answered: old {old}, new {new}");
        assert_eq!(
            self.old_after_swap.load(Ordering::SeqCst),
            0,
            "requests sent after the swap got the old model"
        );
    }
}

#[test]
fn repository_load_swaps_a_model_under_load_without_a_failed_request() {
    let Some(setup) =
        setup_or_skip("repository_load_swaps_a_model_under_load_without_a_failed_request")
    else {
        return;
    };
    let (home, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = dir.path().join("model.onnx");
    std::fs::copy(setup.onnx_data.join("test_add/model.onnx"), &path).unwrap();
    let mut args = model_arg("m", &path).to_vec();
    args.extend(["--workers".into(), "2".into()]);
    let server = Server::start(&setup, home.path(), &args);
    let addr = server.addr.clone();

    let traffic = Traffic::default();
    traffic.around(&addr, |t| {
        // Traffic first, then the new model at the same path (renamed into place), then a load.
        t.wait_for("the first answers", |t| t.old.load(Ordering::SeqCst) >= 50);
        let staged = dir.path().join("model.onnx.new");
        std::fs::copy(setup.onnx_data.join("test_sub/model.onnx"), &staged).unwrap();
        std::fs::rename(&staged, &path).unwrap();
        let (status, body) = call(&addr, "POST", "/v2/repository/models/m/load", b"{}");
        assert_eq!(status, 200, "load: {body}");
        *t.swapped_at.lock() = Some(Instant::now());
        t.wait_for("answers after the swap", |t| t.new.load(Ordering::SeqCst) >= 50);
    });

    let (status, index) = call(&addr, "POST", "/v2/repository/index", b"{}");
    assert_eq!(
        (status, index[0]["name"].as_str(), index[0]["state"].as_str()),
        (200, Some("m"), Some("READY")),
        "{index}"
    );
    let (status, _) = call(&addr, "POST", "/v2/repository/models/m/unload", b"{}");
    assert_eq!(status, 200);
    assert_eq!(
        call(&addr, "GET", "/v2/models/m/ready", b"").0,
        400,
        "an unloaded model is not ready"
    );
    assert_eq!(infer(&addr, "m", &request()).0, 503, "an unloaded model answers 503");
    let (_, index) = call(&addr, "POST", "/v2/repository/index", b"{}");
    assert_eq!(index[0]["state"], "UNAVAILABLE", "{index}");
    assert_eq!(call(&addr, "POST", "/v2/repository/models/m/load", b"{}").0, 200);
    let (status, got) = infer(&addr, "m", &request());
    assert_eq!((status, answer(&got)), (200, Some(0.0)), "{got}");
    let (status, got) = call(&addr, "POST", "/v2/repository/models/nope/load", b"{}");
    assert_eq!(status, 404, "{got}");
}

/// The done-when of issue 15: a model served from a tessera mount, its branch moved to a commit
/// with another model while eight clients send requests. The mount re-resolves the branch after
/// `--ref-ttl`, serve notices the commit behind the path changed (`--watch-revisions`), loads
/// the new one beside the old and swaps: no failed request, and once the new model answered,
/// no request sent after that gets the old one.
#[cfg(feature = "mount")]
#[test]
fn a_branch_moved_under_a_served_mount_swaps_the_model_without_a_failed_request() {
    let test = "a_branch_moved_under_a_served_mount_swaps_the_model_without_a_failed_request";
    let Some(setup) = setup_or_skip(test) else { return };
    crate::require!(crate::mount::fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let dir = tempfile::tempdir().unwrap();
    let hub = crate::common::Hub::start(&dir.path().join("hub"), &[]);
    let publisher = crate::common::Home::new();
    let publish = |model: &str, rev: &str, create: bool| {
        let folder = dir.path().join(rev);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(setup.onnx_data.join(model).join("model.onnx"), folder.join("model.onnx"))
            .unwrap();
        let mut args = vec!["push"];
        args.extend(create.then_some("--create"));
        args.extend([folder.to_str().unwrap(), "tester/m"]);
        let out = publisher
            .cmd(&args)
            .env("HF_ENDPOINT", &hub.url)
            .env("HF_TOKEN", crate::common::WRITE_TOKEN)
            .output()
            .unwrap();
        crate::common::assert_success(&out, &args);
    };
    publish("test_add", "rev1", true);
    let (mount_home, mnt) = (crate::common::Home::new(), dir.path().join("models"));
    let _mount = crate::mount::MountProc::start(
        &mount_home,
        &mnt,
        &["--endpoint", &hub.url, "--ref-ttl", "1s"],
    );
    let path = mnt.join("tester/m@main/model.onnx");
    let serve_home = tempfile::tempdir().unwrap();
    let mut args = model_arg("m", &path).to_vec();
    args.extend(["--workers", "2", "--watch-revisions", "1"].map(String::from));
    let server = Server::start(&setup, serve_home.path(), &args);
    let addr = server.addr.clone();
    let commit = || {
        call(&addr, "GET", "/v2/models/m", b"").1["parameters"]["commit"].as_str().map(String::from)
    };
    let before = commit();
    assert!(before.is_some(), "metadata names the commit serving");

    let traffic = Traffic { mark_on_first_new: true, ..Traffic::default() };
    traffic.around(&addr, |t| {
        t.wait_for("the first answers", |t| t.old.load(Ordering::SeqCst) >= 50);
        publish("test_sub", "rev2", false);
        t.wait_for("answers of the new revision", |t| t.new.load(Ordering::SeqCst) >= 50);
    });
    assert_ne!(commit(), before, "metadata names the new commit once it serves");
}
