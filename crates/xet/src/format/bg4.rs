//! Byte grouping by 4 (BG4) and the predictor that decides when it pays off.
//!
//! Model weights are arrays of 2- and 4-byte numbers whose high bytes repeat far more than their
//! low bytes; putting byte 0 of every word together, then byte 1, and so on, gives LZ4 long runs
//! it cannot see in the interleaved layout (`xet-protocol.md` §3.3).

/// Length of BG4 stream `k` for `n` input bytes: byte `i` goes to stream `i % 4`.
fn stream_lens(n: usize) -> [usize; 4] {
    let (q, r) = (n / 4, n % 4);
    [q + usize::from(r > 0), q + usize::from(r > 1), q + usize::from(r > 2), q]
}

/// Splits `buf` into the four stream slices of a BG4 layout of `buf.len()` bytes.
fn streams_mut(buf: &mut [u8]) -> [&mut [u8]; 4] {
    let [l0, l1, l2, _] = stream_lens(buf.len());
    // The lengths sum to buf.len(), so every split point is in range.
    let (s0, rest) = buf.split_at_mut(l0);
    let (s1, rest) = rest.split_at_mut(l1);
    let (s2, s3) = rest.split_at_mut(l2);
    [s0, s1, s2, s3]
}

/// Same as [`streams_mut`], read-only.
fn streams(buf: &[u8]) -> [&[u8]; 4] {
    let [l0, l1, l2, _] = stream_lens(buf.len());
    let (s0, rest) = buf.split_at(l0);
    let (s1, rest) = rest.split_at(l1);
    let (s2, s3) = rest.split_at(l2);
    [s0, s1, s2, s3]
}

fn tail(s: &[u8], from: usize) -> &[u8] {
    s.get(from..).unwrap_or_default()
}

fn tail_mut(s: &mut [u8], from: usize) -> &mut [u8] {
    s.get_mut(from..).unwrap_or_default()
}

/// Transposes a 4×4 byte matrix held in a u128 (row r = bytes 4r..4r+4): four words become
/// four 4-byte stream pieces, and back. Two delta swaps, so BG4 moves 16 bytes per step.
fn transpose4x4(x: u128) -> u128 {
    const BLOCKS: u128 = 0xFFFF_0000_FFFF_0000;
    const PAIRS: u128 = 0xFF00_FF00_0000_0000_FF00_FF00;
    let t = ((x >> 48) ^ x) & BLOCKS;
    let x = x ^ t ^ (t << 48);
    let t = ((x >> 24) ^ x) & PAIRS;
    x ^ t ^ (t << 24)
}

/// Four 4-byte pieces as the rows of a 4×4 matrix.
fn rows_to_u128(pieces: [&[u8]; 4]) -> u128 {
    let mut x = 0u128;
    for (r, piece) in pieces.into_iter().enumerate() {
        let word = <[u8; 4]>::try_from(piece).map_or(0, u32::from_le_bytes);
        x |= u128::from(word) << (32 * r);
    }
    x
}

/// Writes the rows of a 4×4 matrix to four 4-byte pieces.
fn u128_to_rows(x: u128, pieces: [&mut [u8]; 4]) {
    for (r, piece) in pieces.into_iter().enumerate() {
        if let Ok(piece) = <&mut [u8; 4]>::try_from(piece) {
            *piece = ((x >> (32 * r)) as u32).to_le_bytes();
        }
    }
}

/// Appends the BG4 layout of `data` to `out`: stream 0 (bytes 0, 4, 8, …), then streams 1–3.
///
/// ```
/// let mut out = Vec::new();
/// tessera_xet::format::bg4_split_into(&[1, 2, 3, 4, 5, 6], &mut out);
/// assert_eq!(out, [1, 5, 2, 6, 3, 4]);
/// ```
pub fn bg4_split_into(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + data.len(), 0);
    let Some(dst) = out.get_mut(start..) else { return };
    let [s0, s1, s2, s3] = streams_mut(dst);
    let done = split_blocks(data, [&mut *s0, &mut *s1, &mut *s2, &mut *s3]);
    let rest = |s| tail_mut(s, done);
    split_words(tail(data, done * 4), [rest(s0), rest(s1), rest(s2), rest(s3)]);
}

/// Splits whole groups of 4 words; returns how many words it did.
fn split_blocks(data: &[u8], [s0, s1, s2, s3]: [&mut [u8]; 4]) -> usize {
    let outs = s0
        .chunks_exact_mut(4)
        .zip(s1.chunks_exact_mut(4))
        .zip(s2.chunks_exact_mut(4).zip(s3.chunks_exact_mut(4)));
    let mut done = 0;
    for (group, ((a, b), (c, d))) in data.chunks_exact(16).zip(outs) {
        let Ok(group) = <[u8; 16]>::try_from(group) else { break };
        u128_to_rows(transpose4x4(u128::from_le_bytes(group)), [a, b, c, d]);
        done += 4;
    }
    done
}

/// Splits word by word, then places the last `n % 4` bytes.
fn split_words(data: &[u8], [s0, s1, s2, s3]: [&mut [u8]; 4]) {
    let words = data.chunks_exact(4);
    let tail = words.remainder();
    let lanes = s0.iter_mut().zip(s1.iter_mut()).zip(s2.iter_mut()).zip(s3.iter_mut());
    for (word, (((a, b), c), d)) in words.zip(lanes) {
        if let [w0, w1, w2, w3] = *word {
            (*a, *b, *c, *d) = (w0, w1, w2, w3);
        }
    }
    // The last n % 4 bytes go one each to streams 0.., as the last element of each.
    for (stream, &byte) in [s0, s1, s2].into_iter().zip(tail) {
        if let Some(slot) = stream.last_mut() {
            *slot = byte;
        }
    }
}

/// Appends the inverse of [`bg4_split_into`] of `grouped` to `out`.
pub fn bg4_regroup_into(grouped: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + grouped.len(), 0);
    let Some(dst) = out.get_mut(start..) else { return };
    let [s0, s1, s2, s3] = streams(grouped);
    let done = regroup_blocks([s0, s1, s2, s3], dst);
    let rest = |s| tail(s, done);
    regroup_words([rest(s0), rest(s1), rest(s2), rest(s3)], tail_mut(dst, done * 4));
}

/// Interleaves whole groups of 4 words; returns how many words it did.
fn regroup_blocks([s0, s1, s2, s3]: [&[u8]; 4], dst: &mut [u8]) -> usize {
    let ins =
        s0.chunks_exact(4).zip(s1.chunks_exact(4)).zip(s2.chunks_exact(4).zip(s3.chunks_exact(4)));
    let mut done = 0;
    for (group, ((a, b), (c, d))) in dst.chunks_exact_mut(16).zip(ins) {
        let Ok(group) = <&mut [u8; 16]>::try_from(group) else { break };
        *group = transpose4x4(rows_to_u128([a, b, c, d])).to_le_bytes();
        done += 4;
    }
    done
}

/// Interleaves word by word, then places the last `n % 4` bytes.
fn regroup_words([s0, s1, s2, s3]: [&[u8]; 4], dst: &mut [u8]) {
    let mut words = dst.chunks_exact_mut(4);
    let lanes = s0.iter().zip(s1).zip(s2).zip(s3);
    for (word, (((&a, &b), &c), &d)) in (&mut words).zip(lanes) {
        if let [w0, w1, w2, w3] = word {
            (*w0, *w1, *w2, *w3) = (a, b, c, d);
        }
    }
    for (slot, stream) in words.into_remainder().iter_mut().zip([s0, s1, s2]) {
        if let Some(&byte) = stream.last() {
            *slot = byte;
        }
    }
}

/// Bytes counted into the u32 tables before folding them into the u64 totals.
const HIST_PIECE: usize = 1 << 30;

/// Per-position histograms of byte popcounts: `[position % 4][popcount]`.
fn popcount_histograms(data: &[u8]) -> [[u64; 9]; 4] {
    let mut hist = [[0u64; 9]; 4];
    // Pieces start at multiples of 16, so byte positions keep their lane.
    for piece in data.chunks(HIST_PIECE) {
        let groups = piece.chunks_exact(16);
        for (i, &byte) in groups.remainder().iter().enumerate() {
            count(&mut hist, i % 4, byte.count_ones() as usize, 1);
        }
        for (k, table) in pair_histograms(groups).iter().enumerate() {
            for (pair, &n) in (0..81).zip(table) {
                count(&mut hist, k % 4, pair / 9, n.into());
                count(&mut hist, k % 4, pair % 9, n.into());
            }
        }
    }
    hist
}

fn count(hist: &mut [[u64; 9]; 4], lane: usize, popcount: usize, n: u64) {
    if let Some(bin) = hist.get_mut(lane).and_then(|h| h.get_mut(popcount)) {
        *bin += n;
    }
}

/// Counts, per lane, pairs of popcounts `9 · p(i) + p(i + 4)` over 16-byte groups, one table
/// per (lane, half group). Pairing halves the counter updates, the scattered increments that
/// bound this loop; two tables per lane keep repeats of one value off a single counter.
fn pair_histograms(groups: std::slice::ChunksExact<'_, u8>) -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    for group in groups {
        let Ok(group) = <[u8; 16]>::try_from(group) else { break };
        let p = byte_popcounts(u128::from_le_bytes(group)).to_le_bytes();
        for k in 0..4 {
            let (lo, hi) = (p[k].wrapping_mul(9), p[k + 8].wrapping_mul(9));
            let a = &mut t[k][usize::from(lo.wrapping_add(p[k + 4]))];
            *a = a.wrapping_add(1);
            let b = &mut t[k + 4][usize::from(hi.wrapping_add(p[k + 12]))];
            *b = b.wrapping_add(1);
        }
    }
    t
}

/// The popcount of every byte of `v`, in place (SWAR).
fn byte_popcounts(v: u128) -> u128 {
    const M1: u128 = 0x5555_5555_5555_5555_5555_5555_5555_5555;
    const M2: u128 = 0x3333_3333_3333_3333_3333_3333_3333_3333;
    const M4: u128 = 0x0F0F_0F0F_0F0F_0F0F_0F0F_0F0F_0F0F_0F0F;
    // Wrapping ops: no byte can carry into the next, and the dev profile checks overflow.
    let v = v.wrapping_sub((v >> 1) & M1);
    let v = (v & M2).wrapping_add((v >> 2) & M2);
    v.wrapping_add(v >> 4) & M4
}

/// Threshold on the largest per-position KL divergence above which BG4 is chosen; xet-core fit
/// it by logistic regression on model files.
const BG4_KL_THRESHOLD: f64 = 0.02;

/// Whether xet-core's predictor recommends BG4 for `data`: the largest KL divergence of any byte
/// position's popcount histogram from the pooled one is above 0.02.
///
/// The arithmetic copies xet-core's `BG4Predictor::bg4_recommended` exactly, quirks included: a
/// position with an empty popcount bin computes `0 · ln 0 = NaN` and `f64::max` then ignores it,
/// so it never votes for BG4. Matching this keeps our scheme choices equal to `hf_xet`'s.
pub fn bg4_recommended(data: &[u8]) -> bool {
    let hist = popcount_histograms(data);
    // A base count of 1 keeps every pooled probability above zero.
    let mut base = [1u64; 9];
    let mut totals = [0u64; 4];
    for (lane, total) in hist.iter().zip(&mut totals) {
        for (b, &c) in base.iter_mut().zip(lane) {
            *b += c;
            *total += c;
        }
    }
    let base_total: u64 = totals.iter().sum();
    let mut max_kl = 0f64;
    for (lane, &total) in hist.iter().zip(&totals) {
        let mut kl = 0f64;
        for (&c, &b) in lane.iter().zip(&base) {
            let p = c as f64 / total as f64;
            let q = b as f64 / base_total as f64;
            kl += p * (p / q).ln();
        }
        max_kl = max_kl.max(kl);
    }
    max_kl > BG4_KL_THRESHOLD
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        bg4_split_into(data, &mut out);
        out
    }

    fn regroup(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        bg4_regroup_into(data, &mut out);
        out
    }

    /// The definition, byte by byte, to check the fast layout against.
    fn split_reference(data: &[u8]) -> Vec<u8> {
        (0..4).flat_map(|k| data.iter().skip(k).step_by(4).copied()).collect()
    }

    #[test]
    fn spec_example() {
        assert_eq!(split(&[1, 2, 3, 4, 5, 6]), [1, 5, 2, 6, 3, 4]);
        assert_eq!(regroup(&[1, 5, 2, 6, 3, 4]), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn appends_after_existing_bytes() {
        let mut out = vec![9, 9];
        bg4_split_into(&[1, 2, 3, 4, 5], &mut out);
        assert_eq!(out, [9, 9, 1, 5, 2, 3, 4]);
    }

    #[test]
    fn small_lengths_match_reference() {
        let data: Vec<u8> = (0..40).collect();
        for n in 0..data.len() {
            assert_eq!(split(&data[..n]), split_reference(&data[..n]), "n = {n}");
            assert_eq!(regroup(&split(&data[..n])), &data[..n], "n = {n}");
        }
    }

    #[test]
    fn predictor_prefers_bg4_for_floats_not_for_text() {
        let floats: Vec<u8> =
            (0..16_384u32).flat_map(|i| (1.0f32 + i as f32 * 1e-4).to_le_bytes()).collect();
        assert!(bg4_recommended(&floats));
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(1000);
        assert!(!bg4_recommended(&text));
        assert!(!bg4_recommended(&[]));
    }

    #[test]
    fn histograms_count_every_byte_in_its_lane() {
        let hist = popcount_histograms(&[0x00, 0x01, 0x03, 0x07, 0xff]);
        assert_eq!(hist[0][0], 1);
        assert_eq!(hist[0][8], 1);
        assert_eq!(hist[1][1], 1);
        assert_eq!(hist[2][2], 1);
        assert_eq!(hist[3][3], 1);
        assert_eq!(hist.iter().flatten().sum::<u64>(), 5);
    }

    fn histograms_reference(data: &[u8]) -> [[u64; 9]; 4] {
        let mut hist = [[0u64; 9]; 4];
        for (i, b) in data.iter().enumerate() {
            hist[i % 4][b.count_ones() as usize] += 1;
        }
        hist
    }

    proptest! {
        #[test]
        fn histograms_match_reference(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(popcount_histograms(&data), histograms_reference(&data));
        }

        #[test]
        fn split_matches_reference_and_inverts(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let grouped = split(&data);
            prop_assert_eq!(&grouped, &split_reference(&data));
            prop_assert_eq!(regroup(&grouped), data);
        }
    }
}
