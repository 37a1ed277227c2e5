//! `deploy/`: the systemd unit passes `systemd-analyze verify` and the Kubernetes manifest
//! passes `kubernetes-validate --strict` (PyPI, from the set-up venv); the `tessera` command line
//! each one runs is accepted by the binary. Under CI=true a missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::tessera_bin;
use crate::require;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

/// Runs `tessera ARGS --help`: exits 0 only when every flag before `--help` exists.
fn assert_flags_exist(args: &[&str]) {
    let out = Command::new(tessera_bin()).args(args).arg("--help").output().expect("run tessera");
    assert!(
        out.status.success(),
        "tessera {args:?} is refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn systemd_analyze() -> Option<PathBuf> {
    let ok =
        Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("systemd-analyze"))
}

#[test]
fn the_systemd_unit_verifies() {
    let analyze = require!(systemd_analyze(), "systemd-analyze (apt: systemd) is missing");
    let unit = std::fs::read_to_string(deploy("tessera-mount.service")).expect("read unit");
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart line");
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_flags_exist(&args);
    // verify checks that ExecStart's binary exists: point it at the one under test.
    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("tessera-mount.service");
    let bin = tessera_bin();
    std::fs::write(&copy, unit.replace("/usr/local/bin/tessera", &bin.to_string_lossy()))
        .expect("write unit");
    let out = Command::new(analyze).arg("verify").arg(&copy).output().expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on settings it ignores; any word about our file is a failure.
    assert!(
        out.status.success() && !err.contains("tessera-mount.service"),
        "systemd-analyze verify:\n{err}"
    );
}

fn kubernetes_validate() -> Option<PathBuf> {
    let bin = PathBuf::from(std::env::var_os("TESSERA_VENV")?).join("bin/kubernetes-validate");
    bin.exists().then_some(bin)
}

#[test]
fn the_kubernetes_manifest_validates() {
    let validate =
        require!(kubernetes_validate(), "kubernetes-validate (PyPI, scripts/setup.sh) is missing");
    let manifest = deploy("kubernetes/tessera-daemonset.yaml");
    let out = Command::new(validate)
        .arg("--strict")
        .arg(&manifest)
        .output()
        .expect("kubernetes-validate");
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate --strict:\n{said}");
    assert_eq!(said.matches(" passed for resource ").count(), 3, "{said}");
    let text = std::fs::read_to_string(&manifest).expect("read manifest");
    let args = text.lines().find_map(|l| l.trim().strip_prefix("args: ")).expect("container args");
    let args: Vec<String> = serde_json::from_str(args).expect("args as a flow sequence");
    assert_flags_exist(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(text.contains("mountPropagation: Bidirectional"));
}
