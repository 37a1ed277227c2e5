//! Shared test helpers: running the binary, temp stores, the set-up venv and assets.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// The `tessera` binary under test.
pub fn tessera_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tessera"))
}

/// A fresh store directory, removed at drop.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `tessera --home <this> ARGS` command.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tessera_bin());
        c.arg("--home").arg(self.path()).args(args);
        c
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run tessera");
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

pub fn assert_success(out: &Output, what: &[&str]) {
    assert!(
        out.status.success(),
        "tessera {what:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The set-up venv's python, or `None` (the test then skips, saying why).
pub fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("TESSERA_VENV")?;
    let py = PathBuf::from(venv).join("bin/python");
    py.exists().then_some(py)
}

/// An unpacked registry package from set-up, e.g. `asset("silero-vad-6.2.3")`.
pub fn asset(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("TESSERA_ASSETS")?).join(name);
    dir.join(".ready").exists().then_some(dir)
}

/// Skips the calling test (returns) with a reason when set-up has not run.
#[macro_export]
macro_rules! require {
    ($e:expr, $why:literal) => {
        match $e {
            Some(v) => v,
            None => {
                // Under CI a missing set-up is a failure: a skipped test proves nothing.
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "set-up missing under CI=true: {}",
                    $why
                );
                eprintln!("SKIPPED: {} (run `make test`, which runs scripts/setup.sh)", $why);
                return;
            }
        }
    };
}

/// Runs a python snippet with the venv; returns stdout.
pub fn run_python(py: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(py).arg("-c").arg(script).args(args).output().expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub use tessera::testdata::splitmix as random_bytes;

/// Every regular file under `dir`, relative paths sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.is_file() && !p.ends_with(".ready") {
                out.push(p.strip_prefix(base).expect("prefix").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A running `tessera hub serve` on 127.0.0.1 (free port), killed on drop.
pub struct Hub {
    pub child: std::process::Child,
    pub url: String,
    pub data: PathBuf,
}

/// Write token accepted by [`Hub`] servers.
pub const WRITE_TOKEN: &str = "hf_test_writer";

impl Hub {
    /// Starts a server on `data` with extra flags (e.g. `--no-xet`, `--max-bytes-per-sec`).
    pub fn start(data: &Path, extra: &[&str]) -> Hub {
        use std::io::BufRead;
        let tokens = data.with_extension("tokens");
        std::fs::write(&tokens, format!("{WRITE_TOKEN} tester write\n")).expect("tokens");
        let mut child = Command::new(tessera_bin())
            .args(["hub", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--tokens")
            .arg(&tokens)
            .args(extra)
            .args(["--log", "info"])
            .stdout(std::process::Stdio::piped())
            .stderr(
                std::fs::File::create(data.with_extension("log"))
                    .map_or_else(|_| std::process::Stdio::null(), Into::into),
            )
            .spawn()
            .expect("spawn hub");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "unexpected first line {line:?}");
        let hub = Hub { child, url, data: data.to_path_buf() };
        hub.wait_healthy();
        hub
    }

    fn wait_healthy(&self) {
        let addr = self.url.trim_start_matches("http://").to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            use std::io::{Read, Write};
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                let _ =
                    write!(s, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "hub not healthy");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
        // A failing test shows what the server said (its refusals are logged at info).
        let log_path = self.data.with_extension("log");
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&log_path);
        } else {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- tessera hub serve log (last {} lines) ---", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Runs a script from `tests/py/` with the venv's python and `HF_ENDPOINT` set; returns stdout.
pub fn py_script(py: &Path, endpoint: &str, script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(script);
    // hf_xet's shard cache is keyed by endpoint URL: a server of an earlier test (or run) on the
    // same port would make it skip uploading xorbs this server has never seen. A fresh one each.
    let xet_cache = tempfile::tempdir().expect("xet cache dir");
    let out = Command::new(py)
        .arg(path)
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_XET_CACHE", xet_cache.path())
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes of the files of `new` that are absent from `old` or differ from it.
pub fn changed_bytes(old: &Path, new: &Path) -> u64 {
    files_under(new)
        .iter()
        .filter(|f| std::fs::read(old.join(f)).ok() != std::fs::read(new.join(f)).ok())
        .map(|f| std::fs::metadata(new.join(f)).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Asserts two directory trees hold the same files with the same bytes.
pub fn assert_same_tree(got: &Path, want: &Path) {
    let (a, b) = (files_under(got), files_under(want));
    assert_eq!(a, b, "file lists differ: {} vs {}", got.display(), want.display());
    for f in a {
        let (x, y) = (
            std::fs::read(got.join(&f)).expect("read"),
            std::fs::read(want.join(&f)).expect("read"),
        );
        assert!(x == y, "{} differs", f.display());
    }
}

/// A loopback TCP relay to a hub that counts the bytes it sends back (bodies and heads).
pub struct Relay {
    pub url: String,
    upstream: Arc<Mutex<String>>,
    down: Arc<AtomicU64>,
}

impl Relay {
    pub fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = Arc::new(Mutex::new(upstream.trim_start_matches("http://").to_string()));
        let down = Arc::new(AtomicU64::new(0));
        let (up, count) = (upstream.clone(), down.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (addr, count) = (up.lock().clone(), count.clone());
                std::thread::spawn(move || relay(conn, &addr, &count));
            }
        });
        Relay { url, upstream, down }
    }

    pub fn point_at(&self, upstream: &str) {
        *self.upstream.lock() = upstream.trim_start_matches("http://").to_string();
    }

    pub fn bytes(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }
}

fn relay(client: TcpStream, upstream: &str, count: &AtomicU64) {
    let Ok(server) = TcpStream::connect(upstream) else { return };
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut server, mut client) = (server, client);
    let mut buf = vec![0u8; 256 << 10];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 || client.write_all(&buf[..n]).is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}
