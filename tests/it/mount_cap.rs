//! A bounded store under a real mount: `tessera mount --max-cache-size 1G` on an empty store,
//! 3 GiB of distinct files read through it from a real `tessera hub serve` (published with
//! `huggingface_hub`). The store's disk use, sampled all along, stays within the cap plus one
//! xorb; every byte read is exact; a revision `pull` pinned is never evicted; a file held open
//! while eviction runs reads whole without being fetched again.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tessera::testdata::SyntheticSafetensors;

use crate::common::{Home, Hub, Relay, WRITE_TOKEN, py_script, python};
use crate::mount::{MountProc, fuse_ready};
use crate::require;

#[path = "../../benches/common/disk.rs"]
mod disk;
use disk::disk_use;

const MIB: u64 = 1 << 20;
const XORB: u64 = 64 * MIB;
const CAP: u64 = 1 << 30;

/// Publishes `models` as `model-NN.safetensors` of `repo` with `huggingface_hub`.
fn publish(py: &Path, hub: &Hub, repo: &str, models: &[SyntheticSafetensors], dir: &Path) {
    let folder = dir.join("upload");
    std::fs::create_dir_all(&folder).expect("mkdir");
    for (i, m) in models.iter().enumerate() {
        let path = folder.join(format!("model-{i:02}.safetensors"));
        m.write_into(&mut std::fs::File::create(path).expect("create")).expect("write model");
    }
    let spec = format!("{}=", folder.display());
    py_script(py, &hub.url, "seed_repo.py", &[repo, WRITE_TOKEN, &spec]);
    std::fs::remove_dir_all(&folder).expect("rm upload");
}

/// Bytes `[from, to)` of a file through `f`, compared with the model in 4 MiB reads.
fn check_range(f: &std::fs::File, model: &SyntheticSafetensors, from: u64, to: u64) {
    let mut buf = vec![0u8; (4 * MIB) as usize];
    let mut pos = from;
    while pos < to {
        let want = (to - pos).min(4 * MIB) as usize;
        let n = f.read_at(&mut buf[..want], pos).expect("read through the mount");
        assert!(n > 0, "short read at {pos}");
        assert!(buf[..n] == model.bytes(pos, n as u64)[..], "wrong bytes at {pos}");
        pos += n as u64;
    }
}

/// Disk bytes under the store's xorbs/ and flat/ (partial copies included), sampled on a
/// thread until stopped; keeps the largest seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(home: &Path) -> Sampler {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p, dirs) = (stop.clone(), peak.clone(), [home.join("xorbs"), home.join("flat")]);
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let used: u64 = dirs.iter().map(|d| disk_use(d)).sum();
                p.fetch_max(used, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        Sampler { stop, peak, handle }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("sampler");
        self.peak.load(Ordering::SeqCst)
    }
}

fn du_cache(home: &Home) -> serde_json::Value {
    let out = home.ok(&["du", "--json"]);
    let du: serde_json::Value = serde_json::from_str(out.trim()).expect("du json");
    du["cache"].clone()
}

#[test]
fn a_1_gib_cap_holds_through_3_gib_of_reads_keeping_pins_and_open_files() {
    require!(fuse_ready(), "needs root, /dev/fuse and fusermount3");
    let py = require!(python(), "no venv");
    let dir = tempfile::tempdir().expect("tmp");
    let hub = Hub::start(&dir.path().join("hub"), &[]);
    let models: Vec<_> = (0..12).map(|i| SyntheticSafetensors::new(4, XORB, 0xca9 + i)).collect();
    publish(&py, &hub, "org/big", &models, dir.path());
    let pinned = SyntheticSafetensors::new(1, 32 * MIB, 0x9177);
    publish(&py, &hub, "org/pinned", std::slice::from_ref(&pinned), dir.path());
    let relay = Relay::start(&hub.url);
    let (home, mnt) = (Home::new(), dir.path().join("models"));
    let pulled = home.cmd(&["pull", "org/pinned"]).env("HF_ENDPOINT", &relay.url).output().expect("pull");
    crate::common::assert_success(&pulled, &["pull", "org/pinned"]);

    let cap = CAP.to_string();
    let _mount = MountProc::start(&home, &mnt, &["--endpoint", &relay.url, "--max-cache-size", &cap]);
    let sampler = Sampler::start(home.path());
    let path = |i: usize| -> PathBuf { mnt.join(format!("org/big@main/model-{i:02}.safetensors")) };
    let held = std::fs::File::open(path(0)).expect("open the held file");
    let half = models[0].size() / 2;
    check_range(&held, &models[0], 0, half);
    for (i, m) in models.iter().enumerate().skip(1) {
        check_range(&std::fs::File::open(path(i)).expect("open"), m, 0, m.size());
    }
    let before = relay.bytes();
    check_range(&held, &models[0], 0, models[0].size());
    let refetched = relay.bytes() - before;
    drop(held);
    let peak = sampler.finish();
    eprintln!("peak store disk use {} MiB under a {} MiB cap", peak / MIB, CAP / MIB);
    assert!(peak <= CAP + XORB, "the store grew to {peak} bytes under a {CAP}-byte cap");
    assert!(
        refetched <= models[0].size() - half + XORB,
        "the held file's first half was evicted and fetched again ({refetched} bytes)"
    );

    // Through the mount's control socket: the pinned revision is whole, and eviction ran.
    home.ok(&["pull", "--offline", "org/pinned"]);
    let cache = du_cache(&home);
    assert_eq!(cache["cap"].as_u64(), Some(CAP), "{cache}");
    assert!(cache["pinned"].as_u64().unwrap_or(0) >= pinned.size(), "{cache}");
    let status: serde_json::Value =
        serde_json::from_str(home.ok(&["status", "--json"]).trim()).expect("status json");
    assert!(status["evicted_bytes"].as_u64().unwrap_or(0) >= CAP, "{status}");
    drop(_mount);
    home.ok(&["fsck"]);
    // Unpinned, the revision becomes evictable; the store keeps to its recorded cap.
    home.ok(&["unpin", "org/pinned@main"]);
    let cache = du_cache(&home);
    assert_eq!(cache["pinned"].as_u64(), Some(0), "{cache}");
    assert!(cache["used"].as_u64().unwrap_or(u64::MAX) <= CAP, "{cache}");
}
