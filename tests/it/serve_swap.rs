//! Model swaps under load: Triton's repository API (`/v2/repository/index`,
//! `/v2/repository/models/{m}/load|unload`) on the real binary while eight clients send
//! requests without pause. A load brings the model at its path in beside the one serving, warms
//! it, then swaps it in: no request fails, every answer is the old or the new model's, and every
//! request sent after the load returned gets the new one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
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

/// What one client saw: failures, answers by value, and answers of the old model to requests
/// sent after the swap.
#[derive(Default, Debug)]
struct Seen {
    failures: Vec<String>,
    old: usize,
    new: usize,
    old_after_swap: usize,
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

    let stop = AtomicBool::new(false);
    let swapped_at = parking_lot::Mutex::new(None::<Instant>);
    let seen: Vec<Seen> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Seen::default();
                    while !stop.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        let (status, got) = infer(&addr, "m", &request());
                        match (status, answer(&got)) {
                            (200, Some(3.0)) => {
                                seen.old += 1;
                                if swapped_at.lock().is_some_and(|at| sent > at) {
                                    seen.old_after_swap += 1;
                                }
                            }
                            (200, Some(0.0)) => seen.new += 1,
                            _ => seen.failures.push(format!("HTTP {status}: {got}")),
                        }
                    }
                    seen
                })
            })
            .collect();
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done() {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // Traffic first, then the new model at the same path (renamed into place), then a load.
        wait_for("the first answers", &|| {
            server.metric("tessera_infer_requests_total{model=\"m\"}").unwrap_or(0.0) >= 50.0
        });
        let staged = dir.path().join("model.onnx.new");
        std::fs::copy(setup.onnx_data.join("test_sub/model.onnx"), &staged).unwrap();
        std::fs::rename(&staged, &path).unwrap();
        let (status, body) = call(&addr, "POST", "/v2/repository/models/m/load", b"{}");
        assert_eq!(status, 200, "load: {body}");
        *swapped_at.lock() = Some(Instant::now());
        let after = server.metric("tessera_infer_requests_total{model=\"m\"}").unwrap_or(0.0);
        wait_for("answers after the swap", &|| {
            server.metric("tessera_infer_requests_total{model=\"m\"}").unwrap_or(0.0)
                >= after + 50.0
        });
        stop.store(true, Ordering::SeqCst);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let failures: Vec<&String> = seen.iter().flat_map(|s| &s.failures).collect();
    let (old, new) =
        (seen.iter().map(|s| s.old).sum::<usize>(), seen.iter().map(|s| s.new).sum::<usize>());
    let late = seen.iter().map(|s| s.old_after_swap).sum::<usize>();
    eprintln!(
        "{CLIENTS} clients: {old} answers of the old model, {new} of the new, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests during the swap: {failures:?}");
    assert!(old > 0 && new > 0, "both models must have answered: old {old}, new {new}");
    assert_eq!(late, 0, "requests sent after the load returned got the old model");

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
