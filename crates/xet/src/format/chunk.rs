//! One serialized chunk: an 8-byte header, then the payload in one of three compression schemes
//! (`xet-protocol.md` §3.2–3.3).
//!
//! Encoding picks the scheme the way `hf_xet` does, so the bytes we upload look like theirs.
//! Decoding trusts nothing: every header length is checked against the limits and the input
//! before any allocation, and the decoded length must equal the header's.

use std::io::{Read as _, Write as _};

use lz4_flex::frame::{FrameDecoder, FrameEncoder};

use super::FormatError;
use super::bg4::{bg4_recommended, bg4_regroup_into, bg4_split_into};
use super::cursor::Cursor;

/// Bytes of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 8;
/// Largest uncompressed chunk a reader accepts (the chunker's maximum).
pub const MAX_CHUNK_LEN: usize = 131_072;
/// Largest payload a reader accepts: LZ4 can expand incompressible data a little.
pub const MAX_COMPRESSED_CHUNK_LEN: usize = 2 * MAX_CHUNK_LEN;
/// The only chunk header version; readers reject anything newer.
const CHUNK_VERSION: u8 = 0;

/// How a chunk's payload is stored. The values avoid ASCII capitals so a chunk header can never
/// look like the `XETBLOB` footer marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CompressionScheme {
    /// The payload is the chunk's bytes.
    None = 0,
    /// One LZ4 frame.
    Lz4 = 1,
    /// The BG4 layout of the bytes, as one LZ4 frame.
    ByteGrouping4Lz4 = 2,
}

impl CompressionScheme {
    /// The scheme with this header byte, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::None),
            1 => Some(Self::Lz4),
            2 => Some(Self::ByteGrouping4Lz4),
            _ => None,
        }
    }
}

/// Which scheme [`encode_chunk`] tries. Whatever it tries, a payload that does not shrink is
/// stored as [`CompressionScheme::None`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionPolicy {
    /// xet-core's default: BG4+LZ4 when [`bg4_recommended`](super::bg4_recommended), else LZ4.
    #[default]
    Auto,
    /// Always this scheme.
    Fixed(CompressionScheme),
}

impl CompressionPolicy {
    /// The scheme to try for `data`.
    pub fn choose(self, data: &[u8]) -> CompressionScheme {
        match self {
            Self::Fixed(scheme) => scheme,
            Self::Auto if bg4_recommended(data) => CompressionScheme::ByteGrouping4Lz4,
            Self::Auto => CompressionScheme::Lz4,
        }
    }
}

/// A parsed and validated chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// How the payload is stored.
    pub scheme: CompressionScheme,
    /// Payload bytes following the header (at most [`MAX_COMPRESSED_CHUNK_LEN`]).
    pub compressed_len: u32,
    /// Bytes after decoding (at most [`MAX_CHUNK_LEN`]).
    pub uncompressed_len: u32,
}

impl ChunkHeader {
    /// Header plus payload: how far the next chunk starts.
    pub fn serialized_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.compressed_len as usize
    }

    /// The 8 header bytes: version, u24 payload length, scheme, u24 decoded length.
    pub fn to_bytes(&self) -> [u8; CHUNK_HEADER_LEN] {
        let [c0, c1, c2, _] = self.compressed_len.to_le_bytes();
        let [u0, u1, u2, _] = self.uncompressed_len.to_le_bytes();
        [CHUNK_VERSION, c0, c1, c2, self.scheme as u8, u0, u1, u2]
    }

    /// Parses and validates the header at the start of `bytes`; the payload is not read.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let [version, c0, c1, c2, scheme, u0, u1, u2] = Cursor::new(bytes).array("chunk header")?;
        if version != CHUNK_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: "chunk header",
                version: version.into(),
            });
        }
        let scheme =
            CompressionScheme::from_u8(scheme).ok_or(FormatError::UnknownScheme { scheme })?;
        let header = Self {
            scheme,
            compressed_len: u32::from_le_bytes([c0, c1, c2, 0]),
            uncompressed_len: u32::from_le_bytes([u0, u1, u2, 0]),
        };
        header.validate()?;
        Ok(header)
    }

    fn validate(&self) -> Result<(), FormatError> {
        check_max("chunk length", self.uncompressed_len as usize, MAX_CHUNK_LEN)?;
        check_max("chunk payload length", self.compressed_len as usize, MAX_COMPRESSED_CHUNK_LEN)?;
        if self.scheme == CompressionScheme::None && self.compressed_len != self.uncompressed_len {
            return Err(FormatError::Mismatch {
                what: "uncompressed chunk payload length",
                expected: self.uncompressed_len.into(),
                actual: self.compressed_len.into(),
            });
        }
        Ok(())
    }
}

fn check_max(what: &'static str, value: usize, max: usize) -> Result<(), FormatError> {
    if value > max {
        return Err(FormatError::TooLarge { what, value: value as u64, max: max as u64 });
    }
    Ok(())
}

/// Serializes one chunk (header and payload) with the scheme `policy` picks.
///
/// ```
/// use tessera_xet::format::{decode_chunk, encode_chunk, CompressionPolicy};
/// let bytes = encode_chunk(b"hello world", CompressionPolicy::Auto)?;
/// assert_eq!(bytes[..8], [0x00, 0x0b, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x00]);
/// assert_eq!(decode_chunk(&bytes)?, (b"hello world".to_vec(), 19));
/// # Ok::<(), tessera_xet::format::FormatError>(())
/// ```
pub fn encode_chunk(data: &[u8], policy: CompressionPolicy) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(CHUNK_HEADER_LEN + data.len());
    encode_chunk_into(data, policy, &mut out)?;
    Ok(out)
}

/// The most bytes [`encode_chunk_into`] can append for `len` input bytes (header, LZ4 frame,
/// worst-case block), so callers can size buffers once instead of growing them per chunk.
pub fn max_encoded_len(len: usize) -> usize {
    CHUNK_HEADER_LEN + 16 + lz4_flex::block::get_maximum_output_size(len)
}

/// Appends one serialized chunk to `out` (a xorb under construction) and returns its header.
/// On error `out` is left as it was.
pub fn encode_chunk_into(
    data: &[u8],
    policy: CompressionPolicy,
    out: &mut Vec<u8>,
) -> Result<ChunkHeader, FormatError> {
    check_max("chunk length", data.len(), MAX_CHUNK_LEN)?;
    let start = out.len();
    out.extend_from_slice(&[0; CHUNK_HEADER_LEN]);
    let payload_start = out.len();
    let scheme = match compress_payload_into(data, policy.choose(data), out) {
        Ok(scheme) => scheme,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let header = ChunkHeader {
        scheme,
        compressed_len: (out.len() - payload_start) as u32,
        uncompressed_len: data.len() as u32,
    };
    if let Some(slot) = out.get_mut(start..payload_start) {
        slot.copy_from_slice(&header.to_bytes());
    }
    Ok(header)
}

/// The payload alone for a chunk, as the store keeps it beside its own metadata: Auto policy,
/// falling back to [`CompressionScheme::None`] when compression does not shrink the data.
pub fn compress_chunk_for_store(data: &[u8]) -> Result<(CompressionScheme, Vec<u8>), FormatError> {
    check_max("chunk length", data.len(), MAX_CHUNK_LEN)?;
    let mut out = Vec::with_capacity(data.len());
    let scheme = compress_payload_into(data, CompressionPolicy::Auto.choose(data), &mut out)?;
    Ok((scheme, out))
}

/// Appends `data` compressed with `scheme` to `out`, or raw if that does not make it smaller;
/// returns the scheme actually used.
fn compress_payload_into(
    data: &[u8],
    scheme: CompressionScheme,
    out: &mut Vec<u8>,
) -> Result<CompressionScheme, FormatError> {
    let start = out.len();
    match scheme {
        CompressionScheme::None => {}
        CompressionScheme::Lz4 => lz4_compress_into(data, out)?,
        CompressionScheme::ByteGrouping4Lz4 => {
            let mut grouped = Vec::with_capacity(data.len());
            bg4_split_into(data, &mut grouped);
            lz4_compress_into(&grouped, out)?;
        }
    }
    if scheme != CompressionScheme::None && out.len() - start < data.len() {
        return Ok(scheme);
    }
    out.truncate(start);
    out.extend_from_slice(data);
    Ok(CompressionScheme::None)
}

/// One LZ4 frame, byte for byte what xet-core's `FrameEncoder::new` with one `write_all` gives.
///
/// Inputs that fit one block (all chunks) are framed here around one block compression, which
/// skips the encoder's per-frame buffers and its copy of the input; larger ones use the encoder.
fn lz4_compress_into(data: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    // The encoder's automatic block size: the smallest of 64 KiB and 256 KiB that holds the data.
    let bd: u8 = match data.len() {
        n if n <= 64 << 10 => 0x40,
        n if n <= 256 << 10 => 0x50,
        _ => return lz4_frame_encoder_into(data, out),
    };
    out.extend_from_slice(&LZ4_MAGIC);
    out.extend_from_slice(&[PLAIN_FLG, bd, descriptor_checksum(PLAIN_FLG, bd)]);
    if !data.is_empty() {
        lz4_block_into(data, out)?;
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    Ok(())
}

/// Appends one frame block holding `data`: compressed if that is smaller, else stored raw.
fn lz4_block_into(data: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let word_at = out.len();
    let block_at = word_at + 4;
    out.resize(block_at + lz4_flex::block::get_maximum_output_size(data.len()), 0);
    // The encoder's table kind (4K entries of u32 with the 5-byte hash), whatever the input size:
    // the plain `compress_into` switches to a 16-bit table below 64 KiB and emits other bytes.
    let mut table = lz4_flex::block::CompressTable::large();
    let dst = out.get_mut(block_at..).unwrap_or_default();
    let compressed = lz4_flex::block::compress_into_with_table(data, dst, &mut table)
        .map_err(|e| FormatError::Compress { source: std::io::Error::other(e) })?;
    let word = if compressed < data.len() {
        out.truncate(block_at + compressed);
        compressed as u32
    } else {
        out.truncate(block_at);
        out.extend_from_slice(data);
        data.len() as u32 | LZ4_RAW_BLOCK
    };
    if let Some(slot) = out.get_mut(word_at..block_at) {
        slot.copy_from_slice(&word.to_le_bytes());
    }
    Ok(())
}

/// One LZ4 frame through `lz4_flex`'s encoder with its defaults.
fn lz4_frame_encoder_into(data: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let mut encoder = FrameEncoder::new(out);
    encoder.write_all(data).map_err(|source| FormatError::Compress { source })?;
    encoder.finish().map_err(|e| FormatError::Compress { source: e.into() })?;
    Ok(())
}

/// Decodes the chunk at the start of `bytes`; returns its data and the serialized bytes used.
pub fn decode_chunk(bytes: &[u8]) -> Result<(Vec<u8>, usize), FormatError> {
    let mut out = Vec::new();
    let header = ChunkDecoder::new().decode_into(bytes, &mut out)?;
    Ok((out, header.serialized_len()))
}

/// Appends the decoded chunk at the start of `bytes` to `out`; returns its header, whose
/// [`ChunkHeader::serialized_len`] is the bytes used. On error `out` is left as it was.
pub fn decode_chunk_into(bytes: &[u8], out: &mut Vec<u8>) -> Result<ChunkHeader, FormatError> {
    ChunkDecoder::new().decode_into(bytes, out)
}

/// A chunk decoder that keeps its BG4 scratch buffer between chunks, so decoding a stream of
/// chunks allocates nothing per chunk beyond the output.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    grouped: Vec<u8>,
}

impl ChunkDecoder {
    /// A decoder with no scratch space yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Same as [`decode_chunk_into`], reusing this decoder's scratch space.
    pub fn decode_into(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<ChunkHeader, FormatError> {
        let header = ChunkHeader::parse(bytes)?;
        let mut c = Cursor::new(bytes);
        c.take(CHUNK_HEADER_LEN, "chunk header")?;
        let payload = c.take(header.compressed_len as usize, "chunk payload")?;
        self.decompress_into(header.scheme, payload, header.uncompressed_len as usize, out)?;
        Ok(header)
    }

    /// Appends the `len` bytes that `payload` (stored with `scheme`) decodes to; fails unless it
    /// decodes to exactly `len` bytes. On error `out` is left as it was.
    pub fn decompress_into(
        &mut self,
        scheme: CompressionScheme,
        payload: &[u8],
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        check_max("chunk length", len, MAX_CHUNK_LEN)?;
        check_max("chunk payload length", payload.len(), MAX_COMPRESSED_CHUNK_LEN)?;
        let start = out.len();
        let result = match scheme {
            CompressionScheme::None => append_raw(payload, len, out),
            CompressionScheme::Lz4 => {
                out.resize(start + len, 0);
                lz4_decode_exact(payload, out.get_mut(start..).unwrap_or_default())
            }
            CompressionScheme::ByteGrouping4Lz4 => {
                self.grouped.clear();
                self.grouped.resize(len, 0);
                let result = lz4_decode_exact(payload, &mut self.grouped);
                result.map(|()| bg4_regroup_into(&self.grouped, out))
            }
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// Decodes a payload stored with `scheme`: the inverse of [`compress_chunk_for_store`].
pub fn decompress_chunk(
    scheme: CompressionScheme,
    payload: &[u8],
    len: usize,
) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(len.min(MAX_CHUNK_LEN));
    ChunkDecoder::new().decompress_into(scheme, payload, len, &mut out)?;
    Ok(out)
}

fn append_raw(payload: &[u8], len: usize, out: &mut Vec<u8>) -> Result<(), FormatError> {
    if payload.len() != len {
        return Err(length_mismatch(len, payload.len()));
    }
    out.extend_from_slice(payload);
    Ok(())
}

fn length_mismatch(expected: usize, actual: usize) -> FormatError {
    FormatError::Mismatch {
        what: "decoded chunk length",
        expected: expected as u64,
        actual: actual as u64,
    }
}

fn decompress_error(source: std::io::Error) -> FormatError {
    FormatError::Decompress { source }
}

/// Little-endian bytes of the LZ4 frame magic number.
const LZ4_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
/// Frame flags `lz4_flex` writes by default: version 01, independent blocks, no checksums, no
/// content size, no dictionary.
const PLAIN_FLG: u8 = 0b0110_0000;
/// Block-size bits of the frame descriptor's BD byte.
const BD_BLOCK_SIZE_MASK: u8 = 0b0111_0000;
/// High bit of a block size word: the block is stored uncompressed.
const LZ4_RAW_BLOCK: u32 = 0x8000_0000;

/// Decodes one LZ4 frame into exactly `dst`.
///
/// Frames in xet-core's plain form are decoded block by block straight into `dst`; anything else
/// (linked blocks, checksums, content size) goes through `lz4_flex`'s general decoder. Bytes
/// after the frame's end mark are an error, as they are for xet-core's reader.
fn lz4_decode_exact(payload: &[u8], dst: &mut [u8]) -> Result<(), FormatError> {
    if !decode_plain_frame(payload, dst)? {
        decode_any_frame(payload, dst)?;
    }
    Ok(())
}

/// Decodes a plain frame; `Ok(false)` when the frame is not plain and nothing was decided.
fn decode_plain_frame(payload: &[u8], dst: &mut [u8]) -> Result<bool, FormatError> {
    let Some(block_max) = plain_frame_block_max(payload) else { return Ok(false) };
    let mut c = Cursor::new(payload);
    c.take(7, "lz4 frame descriptor")?;
    let mut written = 0;
    loop {
        let word = c.u32("lz4 block size")?;
        if word == 0 {
            break;
        }
        written += decode_block(&mut c, word, block_max, dst, written)?;
    }
    if c.remaining() != 0 {
        return Err(trailing_after_frame(c.pos(), c.remaining()));
    }
    if written != dst.len() {
        return Err(length_mismatch(dst.len(), written));
    }
    Ok(true)
}

/// Maximum block size of a plain frame with a valid descriptor, `None` for any other frame.
fn plain_frame_block_max(payload: &[u8]) -> Option<usize> {
    let [m0, m1, m2, m3, flg, bd, hc, ..] = *payload else { return None };
    if [m0, m1, m2, m3] != LZ4_MAGIC || flg != PLAIN_FLG || bd & !BD_BLOCK_SIZE_MASK != 0 {
        return None;
    }
    let block_max = match bd >> 4 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return None,
    };
    (descriptor_checksum(flg, bd) == hc).then_some(block_max)
}

/// Decodes one block into `dst[written..]`; returns the bytes it produced.
fn decode_block(
    c: &mut Cursor<'_>,
    word: u32,
    block_max: usize,
    dst: &mut [u8],
    written: usize,
) -> Result<usize, FormatError> {
    let len = (word & !LZ4_RAW_BLOCK) as usize;
    check_max("lz4 block length", len, block_max)?;
    let block = c.take(len, "lz4 block")?;
    let total = dst.len();
    let room = total.saturating_sub(written).min(block_max);
    let out = dst.get_mut(written..written + room).unwrap_or_default();
    if word & LZ4_RAW_BLOCK != 0 {
        let slot = out.get_mut(..len).ok_or_else(|| length_mismatch(total, written + len))?;
        slot.copy_from_slice(block);
        return Ok(len);
    }
    lz4_flex::block::decompress_into(block, out)
        .map_err(|e| decompress_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Any standard LZ4 frame, through `lz4_flex`'s frame decoder.
fn decode_any_frame(payload: &[u8], dst: &mut [u8]) -> Result<(), FormatError> {
    if payload.get(..4) != Some(&LZ4_MAGIC[..]) {
        return Err(FormatError::BadMagic { what: "lz4 frame" });
    }
    let mut decoder = FrameDecoder::new(payload);
    let mut filled = 0;
    while let Some(rest) = dst.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match decoder.read(rest).map_err(decompress_error)? {
            0 => return Err(length_mismatch(dst.len(), filled)),
            n => filled += n,
        }
    }
    let mut probe = [0u8; 1];
    if decoder.read(&mut probe).map_err(decompress_error)? != 0 {
        return Err(length_mismatch(dst.len(), dst.len() + 1));
    }
    match decoder.get_ref().len() {
        0 => Ok(()),
        len => Err(trailing_after_frame(payload.len() - len, len)),
    }
}

fn trailing_after_frame(offset: usize, len: usize) -> FormatError {
    FormatError::TrailingBytes { what: "lz4 frame", offset, len }
}

/// The frame descriptor checksum: second byte of XXH32 (seed 0) over the FLG and BD bytes.
/// Two input bytes need only XXH32's short-input path, so it is written out here.
const fn descriptor_checksum(flg: u8, bd: u8) -> u8 {
    const P1: u32 = 0x9E37_79B1;
    const P2: u32 = 0x85EB_CA77;
    const P3: u32 = 0xC2B2_AE3D;
    const P5: u32 = 0x1656_67B1;
    let mut h = P5.wrapping_add(2);
    h = h.wrapping_add((flg as u32).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    h = h.wrapping_add((bd as u32).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^= h >> 16;
    (h >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use lz4_flex::frame::{BlockMode, BlockSize, FrameInfo};
    use proptest::prelude::*;

    fn floats(n: usize) -> Vec<u8> {
        (0..n as u32 / 4).flat_map(|i| (1.0f32 + i as f32 * 1e-4).to_le_bytes()).collect()
    }

    fn text(n: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog. ".iter().copied().cycle().take(n).collect()
    }

    use crate::testdata::splitmix as noise;

    fn frame(data: &[u8], info: FrameInfo) -> Vec<u8> {
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(data).unwrap_or_default();
        enc.finish().unwrap_or_default()
    }

    fn chunk_with(scheme: CompressionScheme, payload: &[u8], len: usize) -> Vec<u8> {
        let header = ChunkHeader {
            scheme,
            compressed_len: payload.len() as u32,
            uncompressed_len: len as u32,
        };
        [&header.to_bytes()[..], payload].concat()
    }

    #[test]
    fn hello_world_is_stored_raw() {
        let bytes = encode_chunk(b"hello world", CompressionPolicy::Auto).unwrap_or_default();
        assert_eq!(bytes[..8], [0x00, 0x0b, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x00]);
        assert_eq!(&bytes[8..], b"hello world");
        let (data, used) = decode_chunk(&bytes).unwrap_or_default();
        assert_eq!((data.as_slice(), used), (&b"hello world"[..], 19));
    }

    #[test]
    fn auto_policy_matches_xet_core_choices() {
        let cases = [
            (floats(65_536), CompressionScheme::ByteGrouping4Lz4),
            (text(65_536), CompressionScheme::Lz4),
            (noise(65_536, 1), CompressionScheme::None),
            (Vec::new(), CompressionScheme::None),
        ];
        for (data, scheme) in cases {
            let bytes = encode_chunk(&data, CompressionPolicy::Auto).unwrap_or_default();
            let header = ChunkHeader::parse(&bytes).ok();
            assert_eq!(header.map(|h| h.scheme), Some(scheme));
            assert_eq!(decode_chunk(&bytes).ok(), Some((data, bytes.len())));
        }
    }

    #[test]
    fn fixed_policies_round_trip() {
        let data = text(131_072);
        for scheme in
            [CompressionScheme::None, CompressionScheme::Lz4, CompressionScheme::ByteGrouping4Lz4]
        {
            let bytes = encode_chunk(&data, CompressionPolicy::Fixed(scheme)).unwrap_or_default();
            assert_eq!(ChunkHeader::parse(&bytes).ok().map(|h| h.scheme), Some(scheme));
            assert_eq!(decode_chunk(&bytes).ok().map(|d| d.0), Some(data.clone()));
        }
    }

    #[test]
    fn oversized_input_is_refused() {
        let data = vec![0u8; MAX_CHUNK_LEN + 1];
        assert!(matches!(
            encode_chunk(&data, CompressionPolicy::Auto),
            Err(FormatError::TooLarge { .. })
        ));
        assert!(compress_chunk_for_store(&data).is_err());
    }

    #[test]
    fn store_payload_round_trips() {
        for data in [floats(10_000), text(9_999), noise(5000, 2), Vec::new()] {
            let (scheme, payload) =
                compress_chunk_for_store(&data).unwrap_or((CompressionScheme::None, vec![1]));
            assert_eq!(decompress_chunk(scheme, &payload, data.len()).ok(), Some(data));
        }
    }

    #[test]
    fn header_checks() {
        let ok = ChunkHeader {
            scheme: CompressionScheme::Lz4,
            compressed_len: 10,
            uncompressed_len: 20,
        };
        assert_eq!(ChunkHeader::parse(&ok.to_bytes()).ok(), Some(ok));
        let bad = |b: [u8; 8]| ChunkHeader::parse(&b).err();
        assert!(matches!(
            bad([1, 0, 0, 0, 0, 0, 0, 0]),
            Some(FormatError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            bad([0, 0, 0, 0, 3, 0, 0, 0]),
            Some(FormatError::UnknownScheme { scheme: 3 })
        ));
        assert!(matches!(bad([0, 1, 0, 4, 1, 1, 0, 0]), Some(FormatError::TooLarge { .. })));
        assert!(matches!(bad([0, 1, 0, 0, 1, 1, 0, 2]), Some(FormatError::TooLarge { .. })));
        assert!(matches!(bad([0, 2, 0, 0, 0, 1, 0, 0]), Some(FormatError::Mismatch { .. })));
        assert!(bad(*b"XETBLOB\x01").is_some());
        assert!(ChunkHeader::parse(&[0; 7]).is_err());
        // The limits themselves are allowed.
        assert!(ChunkHeader::parse(&[0, 0, 0, 4, 1, 0, 0, 2]).is_ok());
    }

    #[test]
    fn every_truncation_fails() {
        for data in [text(3000), floats(3000), noise(300, 3)] {
            let bytes = encode_chunk(&data, CompressionPolicy::Auto).unwrap_or_default();
            for n in 0..bytes.len() {
                assert!(decode_chunk(&bytes[..n]).is_err(), "prefix {n}");
            }
        }
    }

    #[test]
    fn wrong_declared_length_fails_and_leaves_output_alone() {
        let data = text(5000);
        let bytes = encode_chunk(&data, CompressionPolicy::Auto).unwrap_or_default();
        let header = ChunkHeader::parse(&bytes).unwrap_or(ChunkHeader {
            scheme: CompressionScheme::None,
            compressed_len: 0,
            uncompressed_len: 0,
        });
        for len in [4999, 5001, 0, MAX_CHUNK_LEN] {
            let bad = chunk_with(header.scheme, &bytes[8..], len);
            let mut out = vec![7u8; 3];
            assert!(decode_chunk_into(&bad, &mut out).is_err(), "len {len}");
            assert_eq!(out, [7, 7, 7]);
        }
    }

    fn frame_encoder(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = lz4_frame_encoder_into(data, &mut out);
        out
    }

    fn framed(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = lz4_compress_into(data, &mut out);
        out
    }

    #[test]
    fn frames_equal_the_frame_encoders() {
        for n in [0, 1, 100, 65_535, 65_536, 65_537, 131_072, 262_144, 262_145] {
            for data in [text(n), floats(n), noise(n, 5)] {
                assert_eq!(framed(&data), frame_encoder(&data), "n = {n}");
            }
        }
    }

    #[test]
    fn descriptor_checksum_matches_lz4_flex() {
        for size in [BlockSize::Max64KB, BlockSize::Max256KB, BlockSize::Max1MB, BlockSize::Max4MB]
        {
            let f = frame(b"abc", FrameInfo::new().block_size(size));
            assert_eq!(f[4], PLAIN_FLG);
            assert_eq!(descriptor_checksum(f[4], f[5]), f[6]);
            assert!(plain_frame_block_max(&f).is_some());
        }
    }

    #[test]
    fn general_frames_decode_through_the_fallback() {
        let data = text(200_000);
        let infos = [
            FrameInfo::new().block_mode(BlockMode::Linked),
            FrameInfo::new().block_checksums(true).content_checksum(true),
            FrameInfo::new().content_size(Some(data.len() as u64)),
            FrameInfo::new().block_size(BlockSize::Max64KB),
        ];
        for info in infos {
            let f = frame(&data, info);
            let mut dst = vec![0u8; data.len()];
            assert!(lz4_decode_exact(&f, &mut dst).is_ok());
            assert_eq!(dst, data);
            let mut short = vec![0u8; data.len() - 1];
            assert!(lz4_decode_exact(&f, &mut short).is_err());
            let mut long = vec![0u8; data.len() + 1];
            assert!(lz4_decode_exact(&f, &mut long).is_err());
        }
        let two =
            [frame(&data[..1000], FrameInfo::new()), frame(&data[1000..2000], FrameInfo::new())]
                .concat();
        let mut dst = vec![0u8; 2000];
        assert!(matches!(lz4_decode_exact(&two, &mut dst), Err(FormatError::TrailingBytes { .. })));
        let linked = || FrameInfo::new().block_mode(BlockMode::Linked);
        let linked_twice =
            [frame(&data[..1000], linked()), frame(&data[1000..2000], linked())].concat();
        assert!(lz4_decode_exact(&linked_twice, &mut dst).is_err());
        assert!(matches!(
            lz4_decode_exact(&linked_twice, &mut dst[..1000]),
            Err(FormatError::TrailingBytes { .. })
        ));
        assert!(lz4_decode_exact(b"not a frame", &mut dst).is_err());
    }

    #[test]
    fn decoder_reuse_leaves_no_trace() {
        let mut decoder = ChunkDecoder::new();
        let long = encode_chunk(&floats(65_536), CompressionPolicy::Auto).unwrap_or_default();
        let short = encode_chunk(
            &floats(1_000),
            CompressionPolicy::Fixed(CompressionScheme::ByteGrouping4Lz4),
        )
        .unwrap_or_default();
        for (bytes, want) in
            [(&long, floats(65_536)), (&short, floats(1_000)), (&long, floats(65_536))]
        {
            let mut out = Vec::new();
            assert!(decoder.decode_into(bytes, &mut out).is_ok());
            assert_eq!(out, want);
        }
    }

    fn any_policy() -> impl Strategy<Value = CompressionPolicy> {
        prop_oneof![
            Just(CompressionPolicy::Auto),
            Just(CompressionPolicy::Fixed(CompressionScheme::None)),
            Just(CompressionPolicy::Fixed(CompressionScheme::Lz4)),
            Just(CompressionPolicy::Fixed(CompressionScheme::ByteGrouping4Lz4)),
        ]
    }

    /// Data that compresses in various ways: runs of a few symbols plus random tails.
    fn any_chunk_data() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2000),
            proptest::collection::vec(0u8..4, 0..20_000),
            (1usize..40_000).prop_map(floats),
        ]
    }

    proptest! {
        #[test]
        fn frames_equal_the_frame_encoders_on_any_data(data in any_chunk_data()) {
            prop_assert_eq!(framed(&data), frame_encoder(&data));
        }

        #[test]
        fn round_trip(data in any_chunk_data(), policy in any_policy()) {
            let bytes = encode_chunk(&data, policy).unwrap_or_default();
            let header = ChunkHeader::parse(&bytes);
            prop_assert!(header.is_ok());
            prop_assert!(bytes.len() <= CHUNK_HEADER_LEN + data.len());
            prop_assert_eq!(decode_chunk(&bytes).ok(), Some((data, bytes.len())));
        }

        #[test]
        fn corrupted_chunks_never_panic(
            data in any_chunk_data(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = encode_chunk(&data, CompressionPolicy::Auto).unwrap_or_default();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x.max(1);
            }
            if let Ok((out, used)) = decode_chunk(&bytes) {
                prop_assert!(used <= bytes.len());
                prop_assert!(out.len() <= MAX_CHUNK_LEN);
            }
        }

        #[test]
        fn any_frame_decodes_and_mutated_frames_never_panic(
            data in any_chunk_data(),
            mode in 0u8..16,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
            let linked = if mode & 1 != 0 { BlockMode::Linked } else { BlockMode::Independent };
            let info = FrameInfo::new()
                .block_mode(linked)
                .block_size(if mode & 8 != 0 { BlockSize::Max64KB } else { BlockSize::Auto })
                .block_checksums(mode & 2 != 0)
                .content_checksum(mode & 4 != 0);
            let mut f = frame(&data, info);
            let mut dst = vec![0u8; data.len()];
            if flips.is_empty() {
                prop_assert!(lz4_decode_exact(&f, &mut dst).is_ok());
                prop_assert_eq!(&dst, &data);
            }
            for (at, x) in flips {
                let i = at % f.len();
                f[i] ^= x.max(1);
            }
            let _ = lz4_decode_exact(&f, &mut dst);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_chunk(&bytes);
            let mut with_header = chunk_with(CompressionScheme::Lz4, &bytes, 1000);
            let _ = decode_chunk(&with_header);
            with_header[4] = CompressionScheme::ByteGrouping4Lz4 as u8;
            let _ = decode_chunk(&with_header);
        }
    }
}
