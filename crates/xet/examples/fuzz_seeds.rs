//! Writes valid inputs for the decoder fuzz targets (`fuzz/`), so the fuzzer starts from real
//! chunks, xorbs and shards instead of discovering their magic numbers by chance:
//! `cargo run -p tessera-xet --example fuzz_seeds -- fuzz/corpus` (`scripts/fuzz.sh` does it).
#![allow(clippy::expect_used, missing_docs)]

use std::path::Path;

use tessera_xet::format::{
    CHUNK_FLAG_GLOBAL_DEDUP, CompressionPolicy, CompressionScheme, Shard, ShardChunk, ShardFile,
    ShardTerm, ShardXorb, XorbBuilder, encode_chunk,
};
use tessera_xet::hash::{Sha256, range_hash};
use tessera_xet::testdata::splitmix;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)
}

/// Small inputs of each kind: noise, runs (LZ4 wins) and fp16-like words (byte grouping wins).
fn samples() -> Vec<Vec<u8>> {
    let words: Vec<u8> =
        (0..4096u32).flat_map(|i| ((i % 97) as u16 | 0x3c00).to_le_bytes()).collect();
    vec![splitmix(300, 1), vec![7; 500], words, b"hello world".to_vec()]
}

/// A xorb of the samples, one chunk each (small, so the fuzzer's inputs stay small).
fn xorb() -> tessera_xet::format::BuiltXorb {
    let mut builder = XorbBuilder::new(CompressionPolicy::Auto);
    for data in samples() {
        builder.push(&data).expect("a small xorb fits");
    }
    builder.finish()
}

fn shard(built: &tessera_xet::format::BuiltXorb) -> Shard {
    let chunks: Vec<ShardChunk> = built
        .chunks
        .iter()
        .map(|c| ShardChunk {
            hash: c.hash,
            unpacked_start: c.unpacked_start,
            len: c.unpacked_len,
            flags: CHUNK_FLAG_GLOBAL_DEDUP,
        })
        .collect();
    let n = chunks.len() as u32;
    let unpacked_len = chunks.iter().map(|c| c.len).sum();
    let term = ShardTerm { xorb: built.hash, unpacked_len, chunk_start: 0, chunk_end: n };
    let hashes: Vec<_> = chunks.iter().map(|c| c.hash).collect();
    let file = ShardFile {
        hash: tessera_xet::hash::file_hash(
            &built.chunks.iter().map(|c| (c.hash, u64::from(c.unpacked_len))).collect::<Vec<_>>(),
        ),
        verification: Some(vec![range_hash(&hashes)]),
        terms: vec![term],
        sha256: Some(Sha256::of(b"seed")),
    };
    let xorb = ShardXorb { hash: built.hash, bytes_on_disk: built.body.len() as u32, chunks };
    Shard { files: vec![file], xorbs: vec![xorb], footer: None }
}

fn main() -> std::io::Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".to_owned());
    let out = Path::new(&out);
    for (i, data) in samples().iter().enumerate() {
        for scheme in
            [CompressionScheme::None, CompressionScheme::Lz4, CompressionScheme::ByteGrouping4Lz4]
        {
            let chunk = encode_chunk(data, CompressionPolicy::Fixed(scheme)).expect("small chunk");
            write(out, "chunk_decode", &format!("seed-{i}-{scheme:?}"), &chunk)?;
        }
    }
    let built = xorb();
    write(out, "xorb_decode", "seed-upload", &built.body)?;
    let mut stored = built.body.clone();
    stored.extend(built.footer().encode());
    write(out, "xorb_decode", "seed-stored", &stored)?;
    let upload = shard(&built).encode_upload().expect("valid shard");
    write(out, "shard_decode", "seed-upload", &upload)?;
    Ok(())
}
