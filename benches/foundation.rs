//! Foundation throughput: chunking, chunk+hash, whole-file hashing single-core and parallel,
//! store ingest and read. Run with `make bench` (`cargo bench --profile dev --bench foundation`).
//! Figures and the machine they were measured on are recorded in `docs/benchmarks.md`.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera::chunking::{chunk_boundaries, stream::chunk_stream};
use tessera::hash::chunk_hash;

fn random(n: usize) -> Vec<u8> {
    tessera::testdata::splitmix(n, 0x1234_5678)
}

fn single_core<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    pool.install(f)
}

fn chunking(c: &mut Criterion) {
    let data = random(256 << 20);
    let mut g = c.benchmark_group("chunking");
    g.sample_size(10).throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("boundaries_1core", |b| b.iter(|| chunk_boundaries(&data).len()));
    g.bench_function("chunk_and_hash_1core", |b| {
        b.iter(|| {
            let ends = chunk_boundaries(&data);
            let mut start = 0;
            for e in ends {
                std::hint::black_box(chunk_hash(&data[start..e]));
                start = e;
            }
        })
    });
    g.finish();
}

fn file_hash_1gib(c: &mut Criterion) {
    let data = random(1 << 30);
    let mut g = c.benchmark_group("file_hash_1GiB");
    g.sample_size(10).throughput(Throughput::Bytes(data.len() as u64));
    let run = |d: &[u8]| chunk_stream::<_, std::io::Error>(d, |_| Ok(())).map(|s| s.file_hash);
    g.bench_function("with_sha256_1core", |b| b.iter(|| single_core(|| run(&data))));
    g.bench_function("with_sha256_all_cores", |b| b.iter(|| run(&data)));
    g.finish();
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

criterion_group!(benches, chunking, file_hash_1gib, store);
criterion_main!(benches);
