//! Shared test helpers: running the binary, temp stores, the set-up venv and assets.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// Deterministic pseudo-random bytes (SplitMix64).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(n);
    out
}

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
