//! Store throughput: ingest and read back. Run with `make bench` (`cargo bench --profile dev
//! --bench foundation`); the pure format's benches are `crates/xet/benches/xet.rs`. Figures and
//! the machine they were measured on are recorded in `docs/benchmarks.md`.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn random(n: usize) -> Vec<u8> {
    tessera::testdata::splitmix(n, 0x1234_5678)
}

fn store(c: &mut Criterion) {
    let data = random(256 << 20);
    let mut g = c.benchmark_group("store");
    g.sample_size(10).throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("ingest_new_256MiB", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().expect("tmp"),
            |dir| {
                let store = tessera::store::Store::open(dir.path()).expect("open");
                store.ingest_bytes(&data).expect("ingest").file
            },
        )
    });
    let dir = tempfile::tempdir().expect("tmp");
    let store = tessera::store::Store::open(dir.path()).expect("open");
    let file = store.ingest_bytes(&data).expect("ingest").file;
    g.bench_function("read_back_256MiB_cold_cache", |b| {
        b.iter_with_setup(
            || store.clear_cache(),
            |_| store.read_file_range(&file, 0, data.len() as u64).expect("read").len(),
        )
    });
    g.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
