//! The pure format's throughput: chunking, chunk+hash, whole-file hashing single-core and
//! parallel, and xorb build/parse. Builds without RocksDB: `cargo bench --profile dev -p
//! tessera-xet` (`make bench`). Figures are recorded in `docs/benchmarks.md`.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_xet::chunking::{chunk_boundaries, stream::chunk_stream};
use tessera_xet::format::{CompressionPolicy, XorbBuilder, parse_xorb};
use tessera_xet::hash::chunk_hash;

fn random(n: usize) -> Vec<u8> {
    tessera_xet::testdata::splitmix(n, 0x1234_5678)
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

fn xorb(c: &mut Criterion) {
    let data = random(64 << 20);
    let mut builder = XorbBuilder::new(CompressionPolicy::Auto);
    let mut start = 0;
    for end in chunk_boundaries(&data) {
        if !builder.fits(end - start) {
            break;
        }
        builder.push(&data[start..end]).expect("chunk");
        start = end;
    }
    let built = builder.finish();
    let mut g = c.benchmark_group("xorb");
    g.sample_size(10).throughput(Throughput::Bytes(start as u64));
    g.bench_function("parse", |b| b.iter(|| parse_xorb(&built.body).expect("parse").chunks.len()));
    g.finish();
}

criterion_group!(benches, chunking, file_hash_1gib, xorb);
criterion_main!(benches);
