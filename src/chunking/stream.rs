//! Chunking and hashing of a byte stream, window by window, on every core.
//!
//! Each window is chunked (in parallel for large windows) and its chunk hashes computed in
//! parallel while SHA-256 of the same bytes runs beside them. The caller sees each window's
//! chunks once, in order; bytes after the window's last certain boundary are carried into the
//! next window, so boundaries are exactly those of sequential chunking.

use std::io::Read;

use rayon::prelude::*;

use super::MAX_CHUNK;
use super::parallel::chunk_boundaries_parallel;
use crate::hash::{ChunkHash, FileHash, Sha256, Sha256Hasher, chunk_hash, file_hash};

/// Bytes read per window.
pub const WINDOW: usize = 64 << 20;

/// The chunks of one window: `data` holds them back to back; `ends[i]` is chunk i's end offset.
pub struct Window<'a> {
    /// The window's bytes, starting at a chunk boundary.
    pub data: &'a [u8],
    /// End offset of each chunk within `data`.
    pub ends: &'a [usize],
    /// Hash of each chunk.
    pub hashes: &'a [ChunkHash],
}

impl Window<'_> {
    /// Bytes of chunk `i`.
    pub fn chunk(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

/// Identity of a whole stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// Xet file hash.
    pub file_hash: FileHash,
    /// SHA-256.
    pub sha256: Sha256,
    /// Bytes read.
    pub size: u64,
    /// Number of chunks.
    pub chunks: usize,
}

/// Reads `reader` to its end, calling `visit` for each window of whole chunks.
pub fn chunk_stream<R: Read, E: From<std::io::Error>>(
    mut reader: R,
    mut visit: impl FnMut(&Window<'_>) -> Result<(), E>,
) -> Result<StreamSummary, E> {
    let mut sha = Sha256Hasher::default();
    let mut leaves: Vec<(ChunkHash, u64)> = Vec::new();
    let mut size = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(WINDOW + MAX_CHUNK);
    loop {
        let fresh_from = buf.len();
        let eof = fill(&mut reader, &mut buf, WINDOW)?;
        size += (buf.len() - fresh_from) as u64;
        let (fresh, whole) = (&buf[fresh_from..], &buf[..]);
        let ((), (ends, hashes)) = rayon::join(|| sha.update(fresh), || chunk_and_hash(whole, eof));
        visit(&Window { data: &buf, ends: &ends, hashes: &hashes })?;
        let mut start = 0;
        for (end, h) in ends.iter().zip(&hashes) {
            leaves.push((*h, (end - start) as u64));
            start = *end;
        }
        buf.drain(..start);
        if eof {
            break;
        }
    }
    Ok(StreamSummary { file_hash: file_hash(&leaves), sha256: sha.finish(), size, chunks: leaves.len() })
}

/// Chunk ends of `buf` (all of them at EOF; otherwise only those surely final) and their hashes.
fn chunk_and_hash(buf: &[u8], eof: bool) -> (Vec<usize>, Vec<ChunkHash>) {
    let mut ends = chunk_boundaries_parallel(buf, rayon::current_num_threads());
    if !eof {
        // The last piece ends only because the window does; it continues in the next one.
        ends.pop();
    }
    let hashes = (0..ends.len())
        .into_par_iter()
        .map(|i| chunk_hash(&buf[if i == 0 { 0 } else { ends[i - 1] }..ends[i]]))
        .collect();
    (ends, hashes)
}

/// Appends up to `want` bytes from `reader`; returns whether the reader is exhausted.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let mut got = 0;
    while got < want {
        match reader.read(&mut buf[start + got..]) {
            Ok(0) => {
                buf.truncate(start + got);
                return Ok(true);
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start + got);
                return Err(e);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::{chunk_boundaries, tests::splitmix};

    #[test]
    fn stream_equals_whole_buffer() {
        let data = splitmix(3 * WINDOW / 2 + 12_345, 9);
        let mut ends = Vec::new();
        let mut base = 0;
        let summary = chunk_stream::<_, std::io::Error>(&data[..], |w| {
            ends.extend(w.ends.iter().map(|e| base + e));
            base += w.ends.last().copied().unwrap_or(0);
            Ok(())
        });
        assert_eq!(ends, chunk_boundaries(&data));
        let s = summary.ok();
        assert_eq!(s.map(|s| (s.size, s.sha256)), Some((data.len() as u64, Sha256::of(&data))));
    }
}
