//! Xet content-defined chunking: Gear rolling hash with the exact Xet constants and boundary rule
//! (`xet-protocol.md` §1), so chunk boundaries, and therefore every hash built on them, equal
//! `hf_xet`'s.
//!
//! [`Chunker`] is a pure push machine over byte slices: feeding the same bytes in any split gives
//! the same boundaries. [`chunk_boundaries`] chunks a whole buffer; [`parallel`] splits a large
//! buffer across cores and re-synchronises at provably stable boundaries.
//!
//! ```
//! use tessera_xet::chunking::{chunk_boundaries, MAX_CHUNK};
//! let data = vec![59u8; 1_000_000];
//! let ends = chunk_boundaries(&data);
//! assert_eq!(ends[0], MAX_CHUNK);
//! assert_eq!(*ends.last().unwrap_or(&0), 1_000_000);
//! ```

pub mod parallel;
pub mod stream;

/// Target (average) chunk size.
pub const TARGET_CHUNK: usize = 64 * 1024;
/// No boundary is placed before a chunk reaches this size (except at end of input).
pub const MIN_CHUNK: usize = TARGET_CHUNK / 8;
/// A chunk is always cut at this size.
pub const MAX_CHUNK: usize = TARGET_CHUNK * 2;
/// A boundary is a byte after which the top 16 bits of the rolling hash are zero.
const MASK: u64 = 0xFFFF_0000_0000_0000;
/// Bytes of the Gear window: after 64 shifts a byte no longer affects the hash, so hashing can
/// start this many bytes (plus one) before the minimum size.
const WINDOW: usize = 64;

/// Where hashing of a chunk starts: earlier bytes cannot influence the hash at `MIN_CHUNK`.
const HASH_START: usize = MIN_CHUNK - WINDOW - 1;

/// Push-style chunker state: the rolling hash and how many bytes the open chunk has.
#[derive(Debug, Clone, Default)]
pub struct Chunker {
    hash: u64,
    len: usize,
}

impl Chunker {
    /// A chunker at the start of a file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes fed so far that belong to the chunk still open.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Scans `data`, continuing the open chunk. Returns `Some(n)` when the chunk ends after
    /// `data[n - 1]` (the chunker is then reset for the next chunk), or `None` when all of `data`
    /// was consumed without a boundary.
    pub fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0;
        if self.len < HASH_START {
            let skip = (HASH_START - self.len).min(data.len());
            i += skip;
            self.len += skip;
        }
        let mut gear = gearhash::Hasher::default();
        gear.set_hash(self.hash);
        // Hash without testing up to MIN_CHUNK - 1 bytes: no cut is allowed before MIN.
        let warm_end = data.len().min(i + (MIN_CHUNK - 1).saturating_sub(self.len));
        gear.update(&data[i..warm_end]);
        self.len += warm_end - i;
        i = warm_end;
        // The crate's SIMD scan (the one xet-core uses) finds the first byte whose hash matches.
        let scan_end = data.len().min(i + MAX_CHUNK.saturating_sub(self.len));
        if let Some(n) = gear.next_match(&data[i..scan_end], MASK) {
            return self.cut(i + n);
        }
        self.len += scan_end - i;
        if self.len >= MAX_CHUNK {
            return self.cut(scan_end);
        }
        self.hash = gear.get_hash();
        None
    }

    /// Ends the open chunk after `data[i - 1]` and resets for the next one.
    fn cut(&mut self, i: usize) -> Option<usize> {
        self.hash = 0;
        self.len = 0;
        Some(i)
    }

    /// Whether bytes are pending that form a final (possibly short) chunk at end of input.
    pub fn has_pending(&self) -> bool {
        self.len > 0
    }
}

/// End offsets of every chunk of `data`, treated as a whole file.
pub fn chunk_boundaries(data: &[u8]) -> Vec<usize> {
    let mut ends = Vec::with_capacity(data.len() / TARGET_CHUNK + 1);
    let mut chunker = Chunker::new();
    let mut pos = 0;
    while let Some(n) = chunker.next_boundary(&data[pos..]) {
        pos += n;
        ends.push(pos);
    }
    if pos < data.len() {
        ends.push(data.len());
    }
    ends
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use crate::testdata::splitmix;

    /// Reference rule, byte by byte, straight from the spec.
    fn reference(data: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let (mut h, mut start) = (0u64, 0usize);
        for (i, &b) in data.iter().enumerate() {
            h = (h << 1).wrapping_add(gearhash::DEFAULT_TABLE[b as usize]);
            let len = i + 1 - start;
            if len >= MIN_CHUNK && (len >= MAX_CHUNK || h & MASK == 0) {
                ends.push(i + 1);
                start = i + 1;
                h = 0;
            }
        }
        if start < data.len() {
            ends.push(data.len());
        }
        ends
    }

    #[test]
    fn vector_1_constant_data() {
        let data = vec![59u8; 1_000_000];
        let want = [131072, 262144, 393216, 524288, 655360, 786432, 917504, 1000000];
        assert_eq!(chunk_boundaries(&data), want);
    }

    #[test]
    fn vector_2_splitmix() {
        let data = splitmix(1_000_000, 0);
        assert_eq!((data[0], data[127], data[111_111]), (175, 132, 118));
        let want = [
            84493, 134421, 144853, 243318, 271793, 336457, 467529, 494581, 582000, 596735, 616815,
            653164, 678202, 724510, 815591, 827760, 958832, 991092, 1000000,
        ];
        assert_eq!(chunk_boundaries(&data), want);
    }

    #[test]
    fn empty_and_tiny_inputs() {
        assert!(chunk_boundaries(&[]).is_empty());
        assert_eq!(chunk_boundaries(&[1]), [1]);
        assert_eq!(chunk_boundaries(&[7; 8191]), [8191]);
    }

    #[test]
    fn matches_reference_rule_and_any_split() {
        for seed in 0..6 {
            let data = splitmix(700_000 + seed as usize * 977, seed);
            let want = reference(&data);
            assert_eq!(chunk_boundaries(&data), want, "seed {seed}");
            for step in [1usize, 7, 63, 64, 65, 4096, 8191, 70_001] {
                assert_eq!(chunk_split(&data, step), want, "seed {seed} step {step}");
            }
        }
    }

    fn chunk_split(data: &[u8], step: usize) -> Vec<usize> {
        let mut c = Chunker::new();
        let mut ends = Vec::new();
        let mut base = 0;
        for piece in data.chunks(step) {
            let mut off = 0;
            while let Some(n) = c.next_boundary(&piece[off..]) {
                off += n;
                ends.push(base + off);
            }
            base += piece.len();
        }
        if c.has_pending() {
            ends.push(data.len());
        }
        ends
    }
}
