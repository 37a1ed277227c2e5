//! Side-by-side figures in one run (`make bench`): `tessera hash` against `hf_xet.hash_files` on
//! the same 1 GiB file, `tessera add` end to end, and reading back from the store with `cat`.
//! Each figure is the best of three runs of the real binaries, so start-up cost is included.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const SIZE: usize = 1 << 30;

fn best_of_3(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn run(cmd: &mut Command) {
    let status = cmd.stdout(Stdio::null()).status().expect("spawn");
    assert!(status.success(), "{cmd:?} failed");
}

fn random_file(path: &Path) {
    let mut state = 7u64;
    let mut data = Vec::with_capacity(SIZE);
    while data.len() < SIZE {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        data.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    std::fs::write(path, data).expect("write 1 GiB");
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("1g.bin");
    random_file(&file);
    let gb = SIZE as f64 / 1e9;
    let ours = best_of_3(|| run(Command::new(bin).arg("hash").arg(&file)));
    println!("tessera hash (xet + sha256), 1 GiB:   {:.2} s  {:.2} GB/s", ours, gb / ours);
    match std::env::var_os("TESSERA_VENV").map(|v| Path::new(&v).join("bin/python")) {
        Some(py) if py.exists() => {
            let script = format!("import hf_xet; hf_xet.hash_files([{:?}])", file.to_string_lossy());
            let theirs = best_of_3(|| run(Command::new(&py).arg("-c").arg(&script)));
            println!("hf_xet.hash_files (xet only), 1 GiB:  {:.2} s  {:.2} GB/s", theirs, gb / theirs);
            println!("ratio tessera/hf_xet throughput:      {:.2}x", theirs / ours);
        }
        _ => println!("hf_xet: skipped (TESSERA_VENV not set; run `make bench`)"),
    }
    let add = best_of_3(|| {
        let home = tempfile::tempdir().expect("home");
        run(Command::new(bin).arg("--home").arg(home.path()).arg("add").arg(&file));
    });
    println!("tessera add into an empty store:      {:.2} s  {:.2} GB/s", add, gb / add);
    let home = tempfile::tempdir().expect("home");
    let out = Command::new(bin).arg("--home").arg(home.path()).args(["add", "--json"]).arg(&file).output().expect("add");
    let line: serde_json::Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or_default()).expect("json");
    let hash = line["xet_hash"].as_str().expect("hash").to_string();
    let read = best_of_3(|| run(Command::new(bin).arg("--home").arg(home.path()).args(["cat", &hash])));
    println!("tessera cat (read back from store):   {:.2} s  {:.2} GB/s", read, gb / read);
}
