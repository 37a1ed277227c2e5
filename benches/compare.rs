//! Side-by-side figures in one run (`make bench`): `tessera hash` against `hf_xet.hash_files` on
//! the same 1 GiB file, `tessera add` end to end, and reading back from the store with `cat`.
//! Each figure is the best of three runs of the real binaries, so start-up cost is included.
//!
//! `add` writes every new byte durably (fsync before the index), so on incompressible data it
//! cannot beat the disk: the disk's own rate for the same writes (16 fsynced 64 MiB files) is
//! printed beside it, and `add` into a store on tmpfs shows the CPU pipeline without the disk.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

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
    std::fs::write(path, tessera::testdata::splitmix(SIZE, 7)).expect("write 1 GiB");
}

/// What `add` must at least do with 1 GiB of new data: write it as 64 MiB files, each fsynced.
fn write_fsynced_xorb_sized_files(dir: &Path, src: &Path) {
    use std::io::Write;
    let data = std::fs::read(src).expect("read source");
    for (i, piece) in data.chunks(64 << 20).enumerate() {
        let path = dir.join(format!("disk-ceiling-{i}"));
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(piece).expect("write");
        f.sync_all().expect("fsync");
        std::fs::remove_file(&path).expect("remove");
    }
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
    let disk = best_of_3(|| write_fsynced_xorb_sized_files(dir.path(), &file));
    println!("disk ceiling (same bytes, 16 fsynced): {:.2} s  {:.2} GB/s  (add reaches {:.2}x)", disk, gb / disk, disk / add);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let add_mem = best_of_3(|| {
            let home = tempfile::tempdir_in(shm).expect("tmpfs home");
            run(Command::new(bin).arg("--home").arg(home.path()).arg("add").arg(&file));
        });
        println!("tessera add, store on tmpfs:          {:.2} s  {:.2} GB/s", add_mem, gb / add_mem);
    }
    let home = tempfile::tempdir().expect("home");
    let out = Command::new(bin).arg("--home").arg(home.path()).args(["add", "--json"]).arg(&file).output().expect("add");
    let line: serde_json::Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap_or_default()).expect("json");
    let hash = line["xet_hash"].as_str().expect("hash").to_string();
    let read = best_of_3(|| run(Command::new(bin).arg("--home").arg(home.path()).args(["cat", &hash])));
    println!("tessera cat (read back from store):   {:.2} s  {:.2} GB/s", read, gb / read);
}
