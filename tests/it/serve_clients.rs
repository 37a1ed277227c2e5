//! `tessera serve` against the clients people already run: Triton's `tritonclient.http` in its
//! default binary mode and `tritonclient.grpc`, with Python onnxruntime as the reference
//! (issue 15).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::serve::{
    Conn, Server, Setup, compare_outputs, minilm_path, minilm_request, model_arg, python_reference,
    script, setup_or_skip, silero_path, skip,
};

/// The set-up of `make setup`, or `None` with a note; under CI=true a missing set-up fails.
fn setup_or_fail(test: &str) -> Option<Setup> {
    setup_or_skip(test).filter(|s| {
        let ok = silero_path(s).is_file() && minilm_path(s).is_file() && has_tritonclient(s);
        if !ok {
            skip(test, "model assets or tritonclient missing (run `make setup`)");
        }
        ok
    })
}

fn has_tritonclient(setup: &Setup) -> bool {
    Command::new(&setup.python)
        .args(["-c", "import tritonclient.http, tritonclient.grpc"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `tests/triton_client.py ARGS` with `stdin` as its input; returns its stdout as JSON.
fn triton(setup: &Setup, args: &[&str], stdin: &Value) -> Value {
    let mut child = Command::new(&setup.python)
        .arg(script("tests/triton_client.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/triton_client.py");
    child.stdin.take().unwrap().write_all(stdin.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "triton_client.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One silero-vad frame: a 576-sample chirp, zero state, 16 kHz.
pub(crate) fn silero_request(seed: f32) -> Value {
    let frame: Vec<f32> =
        (0..576).map(|i| (0.3 * (i as f32 * 0.05 * (1.0 + seed)).sin()) * (1.0 + seed)).collect();
    json!({"inputs": [
        {"name": "input", "datatype": "FP32", "shape": [1, 576], "data": frame},
        {"name": "state", "datatype": "FP32", "shape": [2, 1, 128], "data": vec![0.0; 256]},
        {"name": "sr", "datatype": "INT64", "shape": [], "data": [16000]},
    ]})
}

/// Starts a server for silero (`vad`) and MiniLM int8 (`minilm`) with gRPC on a free port.
pub(crate) fn start_both(setup: &Setup, home: &Path, extra: &[&str]) -> Server {
    let mut args = model_arg("vad", &silero_path(setup)).to_vec();
    args.extend(model_arg("minilm", &minilm_path(setup)));
    args.extend(["--grpc-listen".into(), "127.0.0.1:0".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start(setup, home, &args)
}

#[test]
fn serve_triton_clients_match_onnxruntime() {
    let Some(setup) = setup_or_fail("serve_triton_clients_match_onnxruntime") else { return };
    let home = tempfile::tempdir().unwrap();
    let server = start_both(&setup, home.path(), &[]);
    let grpc = server.grpc_addr();
    let cases = [
        ("vad", silero_path(&setup), silero_request(0.0)),
        ("minilm", minilm_path(&setup), minilm_request()),
    ];
    for (model, path, req) in &cases {
        let want = python_reference(&setup, path, req);
        let want = want["outputs"].as_array().unwrap();
        for (kind, addr) in [("http", server.addr.as_str()), ("grpc", grpc.as_str())] {
            let got = triton(&setup, &["infer", kind, addr, model], req);
            compare_outputs(want, &got, 1e-4, 1e-5)
                .unwrap_or_else(|e| panic!("{kind} {model}: {e}"));
            let meta = &got["metadata"];
            assert_eq!(meta["name"], *model, "{kind} metadata: {meta}");
            assert_eq!(meta["platform"], "onnxruntime_onnx", "{kind} metadata: {meta}");
            assert_eq!(got["server"]["name"], "tessera");
        }
        eprintln!("{model}: tritonclient.http (binary) and tritonclient.grpc equal onnxruntime");
    }
    assert!(server.stop().success());
}

/// A body of the binary extension: the JSON header, then the raw bytes.
fn binary_body(json_header: &Value, raw: &[u8]) -> (Vec<u8>, usize) {
    let mut body = json_header.to_string().into_bytes();
    let n = body.len();
    body.extend_from_slice(raw);
    (body, n)
}

fn add_header(size: usize) -> Value {
    let t = |name: &str| json!({"name": name, "datatype": "FP32", "shape": [3, 4, 5], "parameters": {"binary_data_size": size}});
    json!({"inputs": [t("x"), t("y")], "parameters": {"binary_data_output": true}})
}

#[test]
fn serve_rejects_malformed_binary_bodies_and_keeps_serving() {
    let Some(setup) = setup_or_skip("serve_rejects_malformed_binary_bodies_and_keeps_serving")
    else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let add = setup.onnx_data.join("test_add/model.onnx");
    let server = Server::start(&setup, home.path(), &model_arg("add", &add));
    let mut conn = Conn::open(&server.addr);
    let mut send =
        |extra: &str, body: &[u8]| conn.request_with("POST", "/v2/models/add/infer", extra, body);
    let raw: Vec<u8> = (0..120).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let good = |send: &mut dyn FnMut(&str, &[u8]) -> (u16, Vec<u8>)| {
        let (body, n) = binary_body(&add_header(240), &raw);
        let (status, got) = send(&format!("Inference-Header-Content-Length: {n}\r\n"), &body);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
        // x[i] + y[i] with x = 0..60 and y = 60..120, as binary FP32 after the JSON.
        let json_len = got.len() - 240;
        let meta: Value = serde_json::from_slice(&got[..json_len]).unwrap();
        assert_eq!(meta["outputs"][0]["parameters"]["binary_data_size"], 240, "{meta}");
        let sums: Vec<f32> = got[json_len..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(sums.iter().enumerate().all(|(i, s)| *s == (2 * i + 60) as f32), "{sums:?}");
    };
    good(&mut send);
    let (body, n) = binary_body(&add_header(240), &raw);
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "header length past the body",
            format!("Inference-Header-Content-Length: {}\r\n", body.len() + 1),
            body.clone(),
            "past the end of the",
        ),
        (
            "header length not a number",
            "Inference-Header-Content-Length: -3\r\n".into(),
            body.clone(),
            "is not a byte count",
        ),
        (
            "header length cuts the JSON",
            format!("Inference-Header-Content-Length: {}\r\n", n - 5),
            body.clone(),
            "malformed request JSON",
        ),
        (
            "binary sizes past the body",
            format!("Inference-Header-Content-Length: {n}\r\n"),
            body[..body.len() - 4].to_vec(),
            "runs past the end of the body",
        ),
        (
            "binary size not a multiple of the element",
            format!(
                "Inference-Header-Content-Length: {}\r\n",
                binary_body(&add_header(239), &[]).1
            ),
            binary_body(&add_header(239), &raw[..478]).0,
            "bytes of binary data, but 60 FP32 elements need 240",
        ),
        (
            "bytes left over",
            format!("Inference-Header-Content-Length: {n}\r\n"),
            [body.clone(), vec![0; 8]].concat(),
            "add up to 480",
        ),
        (
            "huge binary_data_size",
            format!(
                "Inference-Header-Content-Length: {}\r\n",
                binary_body(&add_header(usize::MAX), &[]).1
            ),
            binary_body(&add_header(usize::MAX), &raw).0,
            "runs past the end of the body",
        ),
        ("binary size without the header", String::new(), body.clone(), "malformed request JSON"),
    ];
    for (what, extra, body, want) in &cases {
        let (status, got) = send(extra, body);
        let got: Value = serde_json::from_slice(&got).unwrap_or(Value::Null);
        assert_eq!(status, 400, "{what}: {got}");
        let msg = got["error"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{what}: {msg:?} lacks {want:?}");
        good(&mut send);
    }
    assert!(server.stop().success());
}

/// Latencies of `n` requests sent at the same moment from `n` open connections, sorted.
fn burst(addr: &str, path: &str, body: &[u8], n: usize) -> Vec<Duration> {
    let go = std::sync::Barrier::new(n);
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let go = &go;
                s.spawn(move || {
                    let mut conn = Conn::open(addr);
                    go.wait();
                    let t = Instant::now();
                    let (status, got) = conn.request("POST", path, body);
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
                    t.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    lat.sort();
    lat
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
fn serve_ready_means_warm() {
    let Some(setup) = setup_or_fail("serve_ready_means_warm") else { return };
    let home = tempfile::tempdir().unwrap();
    let body = minilm_request().to_string();
    let warm = home.path().join("minilm-warmup.json");
    std::fs::write(&warm, &body).unwrap();
    let workers = 2;
    let mut args = model_arg("minilm", &minilm_path(&setup)).to_vec();
    args.extend(["--workers".into(), workers.to_string(), "--threads".into(), "1".into()]);
    args.extend(["--warmup".into(), format!("minilm={}", warm.display())]);
    let server = Server::start(&setup, home.path(), &args);
    // Every session exists at ready, before any request.
    let series = "tessera_model_sessions{model=\"minilm\"}";
    assert_eq!(server.metric(series), Some(workers as f64));
    assert!(server.log_has("sessions created and warmed"), "{}", server.log_tail(10));
    let path = "/v2/models/minilm/infer";
    let mut conn = Conn::open(&server.addr);
    let t = Instant::now();
    assert_eq!(conn.request("POST", path, body.as_bytes()).0, 200);
    let first = t.elapsed();
    let first_burst = burst(&server.addr, path, body.as_bytes(), 8);
    let one = super::serve::load(&server.addr, path, body.as_bytes(), 1, 60);
    let eight = super::serve::load(&server.addr, path, body.as_bytes(), 8, 240);
    let (median, p99) = (super::serve::pct(&one.1, 0.5), super::serve::pct(&eight.1, 0.99));
    // One sample against a distribution, on a machine other tests share: the bound is the steady
    // single-client p99 (a cold session costs ~10x that; 111 ms against 14 ms in the issue), and
    // the median figure the issue names is printed.
    let p99_one = super::serve::pct(&one.1, 0.99);
    let slowest = ms(*first_burst.last().unwrap());
    eprintln!(
        "MiniLM int8, {workers} sessions: first request after ready {:.2} ms (steady median {median:.2} ms); \
         slowest of a first burst of 8 {slowest:.2} ms (steady p99 at 8 clients {p99:.2} ms)",
        ms(first)
    );
    assert_eq!(server.metric(series), Some(workers as f64));
    assert!(ms(first) <= 2.0 * p99_one, "first request {:.2} ms vs steady p99 {p99_one:.2} (median {median:.2})", ms(first));
    assert!(slowest <= 2.0 * p99, "first burst {slowest:.2} ms vs steady p99 {p99:.2}");
    assert!(server.stop().success());
}

/// A MiniLM request with its own token ids (7 tokens, one row).
fn minilm_row(k: i64) -> Value {
    let ids = [101, 2023 + k, 2003, 2019 + 3 * k, 2742, 6251 - k, 102];
    let t = |name: &str, data: Vec<i64>| json!({"name": name, "datatype": "INT64", "shape": [1, 7], "data": data});
    json!({"inputs": [
        t("input_ids", ids.to_vec()), t("attention_mask", vec![1; 7]), t("token_type_ids", vec![0; 7])
    ]})
}

#[test]
fn serve_dynamic_batching_returns_each_client_its_outputs() {
    let Some(setup) = setup_or_fail("serve_dynamic_batching_returns_each_client_its_outputs")
    else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let minilm = minilm_path(&setup);
    let clients = 8;
    let requests: Vec<Value> = (0..clients as i64).map(minilm_row).collect();
    let want: Vec<Value> = requests.iter().map(|r| python_reference(&setup, &minilm, r)).collect();
    let mut args = model_arg("minilm", &minilm).to_vec();
    args.extend(
        ["--workers", "1", "--max-batch", "8", "--max-queue-delay", "20000"].map(String::from),
    );
    let server = Server::start(&setup, home.path(), &args);
    let go = std::sync::Barrier::new(clients);
    std::thread::scope(|s| {
        for (req, want) in requests.iter().zip(&want) {
            let (go, addr) = (&go, &server.addr);
            s.spawn(move || {
                let mut conn = Conn::open(addr);
                let body = req.to_string();
                go.wait();
                for _ in 0..10 {
                    let (status, got) =
                        conn.json("POST", "/v2/models/minilm/infer", body.as_bytes());
                    assert_eq!(status, 200, "{got}");
                    compare_outputs(want["outputs"].as_array().unwrap(), &got, 1e-4, 1e-5).unwrap();
                }
            });
        }
    });
    let merged = server.metric("tessera_batched_requests_total{model=\"minilm\"}").unwrap_or(0.0);
    eprintln!(
        "dynamic batching: {merged} of 80 requests ran merged with others, every answer its own"
    );
    assert!(merged > 0.0, "no request was batched");
    assert!(server.stop().success());
}
