//! The import direction of docs/architecture.md. Between crates Cargo enforces it, given the
//! edges [`CRATE_EDGES`] allows (a crate cannot name one it does not depend on); inside the
//! `tessera` crate this scan does: a forbidden `crate::X` edge fails the tests.

use std::path::Path;

/// (module of the `tessera` crate, modules it must never import). Every layer below the CLI is a
/// crate of its own now; `bench` drives the real binaries and imports none of them.
const FORBIDDEN: &[(&str, &[&str])] =
    &[("bench", &["cli", "store", "server", "hub", "sync", "mount", "infer"])];

/// The pure crates do no I/O of their own (Cargo cannot forbid `std::fs`, so this scan does).
const PURE_CRATES: &[&str] = &["crates/xet/src", "crates/protocol/src", "crates/metrics/src"];
const IO_MARKERS: &[&str] = &[
    "std::fs",
    "std::net",
    "tokio",
    "reqwest",
    "rocksdb",
    "fuser",
    "ort::",
    "SystemTime::now",
    "std::env",
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn module_files(module: &str) -> Vec<std::path::PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.exists() {
        files.push(file);
    }
    sources(&src.join(module), &mut files);
    files
}

/// Source without `#[cfg(test)]` modules (tests may use anything).
fn non_test_source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[test]
fn modules_import_only_downwards() {
    let mut violations = Vec::new();
    for (module, banned) in FORBIDDEN {
        let files = module_files(module);
        assert!(!files.is_empty(), "no sources for module {module}");
        for file in files {
            let text = non_test_source(&file);
            for b in *banned {
                if text.contains(&format!("crate::{b}::"))
                    || text.contains(&format!("crate::{b}}}"))
                    || text.contains(&format!("crate::{b};"))
                {
                    violations.push(format!("{} imports crate::{b}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "import direction violated:\n{}", violations.join("\n"));
}

#[test]
fn pure_modules_do_no_io() {
    let mut violations = Vec::new();
    for dir in PURE_CRATES {
        let mut files = Vec::new();
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
        assert!(!files.is_empty(), "no sources under {dir}");
        for file in files {
            let text = non_test_source(&file);
            for m in IO_MARKERS {
                if text.contains(m) {
                    violations.push(format!("{} uses {m}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "pure modules doing I/O:\n{}", violations.join("\n"));
}

/// The Tessera crates each crate below `tessera` may name: the store and the Hub client only the
/// two pure leaves (they never know of each other; sync, above both, joins them), the metrics
/// text and the accept loop nothing, the mount the store and the metrics text (never the Hub:
/// the CLI plugs the remote in through the store's `RemoteSource`), serving only the HTTP
/// plumbing and the identities (models are paths, on a mount or not), sync the Hub client and
/// the store it joins (never the server, the mount or serving), the server the store, the
/// accept loop and the metrics text (never the Hub client: a server is never a client of
/// another).
const CRATE_EDGES: &[(&str, &[&str])] = &[
    ("store", &["tessera-protocol", "tessera-xet"]),
    ("hub", &["tessera-protocol", "tessera-xet"]),
    ("metrics", &[]),
    ("httpd", &[]),
    ("mount", &["tessera-metrics", "tessera-protocol", "tessera-store", "tessera-xet"]),
    ("infer", &["tessera-httpd", "tessera-metrics", "tessera-protocol"]),
    ("sync", &["tessera-hub", "tessera-protocol", "tessera-store", "tessera-xet"]),
    (
        "server",
        &["tessera-httpd", "tessera-metrics", "tessera-protocol", "tessera-store", "tessera-xet"],
    ),
];

#[test]
fn the_crates_below_tessera_name_only_the_crates_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (krate, leaves) in CRATE_EDGES {
        let path = root.join(format!("crates/{krate}/Cargo.toml"));
        let manifest = std::fs::read_to_string(path).expect("manifest");
        let ours: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| name.starts_with("tessera"))
            .collect();
        assert!(ours.iter().all(|d| leaves.contains(d)), "tessera-{krate} names {ours:?}");
    }
}

/// Issue 13: the binary users install (`cargo install`, the release profile) fails on outside
/// input the way the tested dev profile does: overflow checks on in both, and no
/// `debug_assert!` (which the release profile would drop) anywhere outside tests.
#[test]
fn the_release_profile_fails_like_the_tested_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let release = manifest.split("[profile.release]").nth(1).expect("a [profile.release] section");
    let release = release.split("\n[").next().unwrap_or_default();
    assert!(
        release.lines().any(|l| l.trim().replace(' ', "") == "overflow-checks=true"),
        "the release profile must keep overflow checks: {release}"
    );
    let mut files = Vec::new();
    for dir in ["src", "crates/xet/src", "crates/protocol/src"] {
        sources(&root.join(dir), &mut files);
    }
    let guarded: Vec<_> =
        files.iter().filter(|f| non_test_source(f).contains("debug_assert")).collect();
    assert!(guarded.is_empty(), "debug_assert! differs between profiles: {guarded:?}");
}
