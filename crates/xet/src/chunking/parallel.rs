//! Parallel chunking of one large buffer (`xet-protocol.md` §1.5).
//!
//! The buffer is cut into segments, one per worker. A worker that starts mid-file does not know
//! the true chunk state there, but after two consecutive chunks whose sizes lie strictly between
//! `MIN_CHUNK` and `MAX_CHUNK - MIN_CHUNK` its boundaries coincide with the sequential ones (a hash
//! match that is neither forced by the maximum nor hidden by the minimum). Each worker starts at
//! such a stable point and stops when it reaches the next worker's stable point. Correctness does
//! not rest on that argument: a worker that misses the next stable point keeps going, and the
//! merge only trusts a segment once its predecessor has landed exactly on its start.

use rayon::prelude::*;

use super::{Chunker, MAX_CHUNK, MIN_CHUNK, chunk_boundaries};

/// Below this size parallel chunking is not worth the threads.
const MIN_SEGMENT: usize = 8 << 20;

/// Chunk end offsets of `data`, identical to [`chunk_boundaries`], using up to `threads` workers.
pub fn chunk_boundaries_parallel(data: &[u8], threads: usize) -> Vec<usize> {
    let segments = threads.min(data.len() / MIN_SEGMENT).max(1);
    if segments == 1 {
        return chunk_boundaries(data);
    }
    let seg_len = data.len() / segments;
    let mut starts: Vec<usize> =
        (1..segments).into_par_iter().filter_map(|k| stable_start(data, k * seg_len)).collect();
    starts.insert(0, 0);
    starts.dedup();
    let pieces: Vec<Vec<usize>> = (0..starts.len())
        .into_par_iter()
        .map(|k| chunk_until(data, starts[k], starts.get(k + 1).copied()))
        .collect();
    merge(data, &starts, pieces)
}

/// First boundary at or after `from` that the sequential chunker is sure to produce, or `None`
/// when the segment never settles (e.g. low-entropy data cut only at `MAX_CHUNK`).
fn stable_start(data: &[u8], from: usize) -> Option<usize> {
    let mut chunker = Chunker::new();
    let mut pos = from;
    let mut clean_run = 0;
    while let Some(n) = chunker.next_boundary(&data[pos..]) {
        pos += n;
        let clean = n > MIN_CHUNK && n < MAX_CHUNK - MIN_CHUNK;
        clean_run = if clean { clean_run + 1 } else { 0 };
        if clean_run == 2 {
            return Some(pos);
        }
        if pos - from > 16 * MAX_CHUNK {
            return None;
        }
    }
    None
}

/// Boundaries from `start` until one lands on `stop` or later (or the end of data).
fn chunk_until(data: &[u8], start: usize, stop: Option<usize>) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut chunker = Chunker::new();
    let mut pos = start;
    while let Some(n) = chunker.next_boundary(&data[pos..]) {
        pos += n;
        ends.push(pos);
        if stop.is_some_and(|s| pos >= s) {
            return ends;
        }
    }
    if pos < data.len() {
        ends.push(data.len());
    }
    ends
}

/// Joins per-segment boundaries. Piece `k` is trusted only if piece `k - 1` ended exactly at
/// `starts[k]`; otherwise chunking resumes sequentially from where piece `k - 1` ended.
fn merge(data: &[u8], starts: &[usize], pieces: Vec<Vec<usize>>) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::with_capacity(data.len() / super::TARGET_CHUNK + 1);
    for (k, piece) in pieces.into_iter().enumerate() {
        let end = out.last().copied().unwrap_or(0);
        if end != starts[k] {
            out.extend(chunk_until(data, end, None));
            return out;
        }
        out.extend(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::splitmix;

    #[test]
    fn parallel_equals_sequential() {
        let mut data = splitmix(40 << 20, 3);
        assert_eq!(chunk_boundaries_parallel(&data, 4), chunk_boundaries(&data));
        // Low-entropy stretches never settle; the merge must still agree.
        data[9 << 20..22 << 20].fill(0);
        assert_eq!(chunk_boundaries_parallel(&data, 4), chunk_boundaries(&data));
        let zeros = vec![0u8; 33 << 20];
        assert_eq!(chunk_boundaries_parallel(&zeros, 3), chunk_boundaries(&zeros));
    }
}
