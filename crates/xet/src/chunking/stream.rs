//! Chunking and hashing of a byte stream, window by window, on every core.
//!
//! Each window is chunked (in parallel for large windows) and its chunk hashes computed in
//! parallel while SHA-256 of the same bytes runs beside them. The caller sees each window's
//! chunks once, in order; bytes after the window's last certain boundary are carried into the
//! next window, so boundaries are exactly those of sequential chunking.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

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

/// Free bytes kept before each window's fresh data, where the previous window's unfinished
/// last chunk (at most [`MAX_CHUNK`]) is copied so the two form one contiguous slice.
const CARRY_ROOM: usize = MAX_CHUNK;

/// A window's buffer as the reader thread filled it: fresh bytes at `CARRY_ROOM..CARRY_ROOM + len`.
struct Filled {
    buf: Vec<u8>,
    len: usize,
    eof: bool,
}

/// Reads `reader` to its end, calling `visit` for each window of whole chunks.
///
/// A reader thread fills the next window while this one is chunked and hashed (double
/// buffering), so file I/O overlaps the compute instead of adding to it.
pub fn chunk_stream<R: Read + Send, E: From<std::io::Error>>(
    reader: R,
    mut visit: impl FnMut(&Window<'_>) -> Result<(), E>,
) -> Result<StreamSummary, E> {
    std::thread::scope(|scope| {
        let (give_empty, empty) = sync_channel::<Vec<u8>>(2);
        let (give_filled, filled) = sync_channel::<std::io::Result<Filled>>(1);
        scope.spawn(move || read_windows(reader, empty, give_filled));
        for _ in 0..2 {
            let _ = give_empty.send(vec![0; CARRY_ROOM + WINDOW]);
        }
        let mut sha = Sha256Hasher::default();
        let mut leaves: Vec<(ChunkHash, u64)> = Vec::new();
        let mut size = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let Filled { mut buf, len, eof } = filled.recv().map_err(|_| reader_gone())??;
            size += len as u64;
            let whole = join_carry(&mut buf, &carry, len);
            let fresh = &whole[carry.len()..];
            let ((), (ends, hashes)) =
                rayon::join(|| sha.update(fresh), || chunk_and_hash(whole, eof));
            visit(&Window { data: whole, ends: &ends, hashes: &hashes })?;
            let mut start = 0;
            for (end, h) in ends.iter().zip(&hashes) {
                leaves.push((*h, (end - start) as u64));
                start = *end;
            }
            carry = whole[start..].to_vec();
            if eof {
                break;
            }
            let _ = give_empty.send(buf);
        }
        Ok(StreamSummary {
            file_hash: file_hash(&leaves),
            sha256: sha.finish(),
            size,
            chunks: leaves.len(),
        })
    })
}

/// Puts `carry` right before the fresh bytes and returns both as one slice. The carry is at most
/// one chunk, so it fits the room kept for it; a longer one (never made) is joined by copying.
fn join_carry<'b>(buf: &'b mut Vec<u8>, carry: &[u8], len: usize) -> &'b [u8] {
    if carry.len() > CARRY_ROOM {
        let mut joined = carry.to_vec();
        joined.extend_from_slice(&buf[CARRY_ROOM..CARRY_ROOM + len]);
        *buf = joined;
        return &buf[..];
    }
    let start = CARRY_ROOM - carry.len();
    buf[start..CARRY_ROOM].copy_from_slice(carry);
    &buf[start..CARRY_ROOM + len]
}

fn reader_gone() -> std::io::Error {
    std::io::Error::other("the reader thread stopped unexpectedly")
}

/// The reader thread: fills each empty buffer it is given until the input ends or fails.
fn read_windows(
    mut reader: impl Read,
    empty: Receiver<Vec<u8>>,
    filled: SyncSender<std::io::Result<Filled>>,
) {
    for mut buf in empty {
        let result =
            fill(&mut reader, &mut buf[CARRY_ROOM..]).map(|(len, eof)| Filled { buf, len, eof });
        let last = !matches!(result, Ok(Filled { eof: false, .. }));
        if filled.send(result).is_err() || last {
            return;
        }
    }
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

/// Fills `buf` from `reader` as far as it goes; returns the bytes read and whether the reader
/// is exhausted.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => return Ok((got, true)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((got, false))
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
