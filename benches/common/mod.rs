//! What the side-by-side benches share: a loopback `tessera hub serve` to publish to and fetch
//! from. Included with `#[path]` by each bench (each is its own crate), which uses part of it.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The write token every bench hub accepts.
pub(crate) const TOKEN: &str = "bench_write";

/// A `tessera hub serve` on a free loopback port, storing under `<dir>/data`; killed on drop.
pub(crate) struct Hub {
    child: Child,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The server's store (its xorbs, for benches that count what was uploaded).
    pub(crate) data: PathBuf,
}

impl Hub {
    pub(crate) fn start(bin: &str, dir: &Path) -> Hub {
        Self::start_with(bin, dir, &[])
    }

    /// A hub with extra `hub serve` flags (e.g. `--max-bytes-per-sec`); a restart on the same
    /// `dir` serves the same data.
    pub(crate) fn start_with(bin: &str, dir: &Path, extra: &[&str]) -> Hub {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("tokens"), format!("{TOKEN} bench write\n")).expect("tokens");
        let mut child = Command::new(bin)
            .args(["hub", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.join("data"))
            .arg("--tokens")
            .arg(dir.join("tokens"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("hub");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("hub address");
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        std::thread::sleep(std::time::Duration::from_millis(300));
        Hub { child, url, data: dir.join("data") }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tessera mount MNT --endpoint URL --no-passthrough` on `home` and waits for its
/// "mounted" line; the caller stops it (SIGTERM unmounts).
pub(crate) fn spawn_mount(bin: &str, home: &Path, mnt: &Path, endpoint: &str) -> Child {
    spawn_mount_with(bin, home, mnt, endpoint, &[])
}

/// [`spawn_mount`] with more arguments.
#[allow(dead_code)]
pub(crate) fn spawn_mount_with(bin: &str, home: &Path, mnt: &Path, endpoint: &str, extra: &[&str]) -> Child {
    std::fs::create_dir_all(mnt).expect("mnt");
    let mut child = Command::new(bin)
        .arg("--home")
        .arg(home)
        .arg("mount")
        .arg(mnt)
        .args(["--endpoint", endpoint, "--no-passthrough"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mount");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.starts_with("tessera: mounted"))), "mount did not start");
    // Whatever the mount says later shows in the bench's output (and a closed pipe would make
    // its later writes fail).
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| eprintln!("mount: {l}")));
    child
}

/// Seconds and peak RSS (MB) of `cmd` run under GNU time (`/usr/bin/time`); it must succeed.
pub(crate) fn time_and_peak_rss(cmd: &mut Command) -> (f64, f64) {
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-f", "%M"]).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    let t = std::time::Instant::now();
    let out = timed.stdout(Stdio::null()).stderr(Stdio::piped()).output().expect("spawn");
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {err}");
    let kib = err.lines().last().and_then(|l| l.trim().parse::<f64>().ok()).unwrap_or(0.0);
    (secs, kib / 1024.0)
}
