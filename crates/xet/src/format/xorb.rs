//! Xorbs: up to 64 MiB of chunks named by the Merkle hash of their chunk hashes
//! (`xet-protocol.md` §3).
//!
//! The upload form, and Tessera's stored form, is the serialized chunks back to back with no
//! footer; servers may append the V1 `XETBLOB` footer ([`XorbFooter`]), so the parser accepts
//! both and checks a footer against the chunks it describes.

use super::FormatError;
use super::chunk::{
    ChunkDecoder, ChunkHeader, CompressionPolicy, MAX_CHUNK_LEN, encode_chunk_into,
};
use super::cursor::Cursor;
use crate::hash::{ChunkHash, XorbHash, chunk_hash, xorb_hash};

/// Most uncompressed bytes a xorb holds: a client closes a xorb before passing it.
pub const MAX_XORB_BYTES: usize = 64 << 20;
/// Most chunks a xorb holds.
pub const MAX_XORB_CHUNKS: usize = 8192;
/// First bytes of a stored footer; no chunk header can start with them.
pub const XORB_FOOTER_MAGIC: [u8; 7] = *b"XETBLOB";
const HASHES_MAGIC: [u8; 7] = *b"XBLBHSH";
const BOUNDARIES_MAGIC: [u8; 7] = *b"XBLBBND";
const FOOTER_VERSION: u8 = 1;
const HASHES_VERSION: u8 = 0;
const BOUNDARIES_VERSION: u8 = 1;
/// Footer bytes that do not depend on the chunk count (the trailing length field excluded).
const FOOTER_FIXED_LEN: u64 = 92;
/// Footer bytes per chunk: a hash and two u32 offsets.
const FOOTER_PER_CHUNK: u64 = 40;
/// From the boundaries section's start to the footer's end, less 8 bytes per chunk.
const BOUNDARIES_FIXED_LEN: u64 = 40;
/// The footer's trailing buffer; its first 4 bytes may hold a per-upload nonce.
const FOOTER_BUFFER_LEN: usize = 16;

/// Where one chunk sits in a xorb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XorbChunk {
    /// Hash of the decoded bytes.
    pub hash: ChunkHash,
    /// Offset of the chunk header in the serialized xorb.
    pub byte_start: u32,
    /// End of its payload (exclusive): the next chunk's `byte_start`.
    pub byte_end: u32,
    /// Offset of its decoded bytes within the concatenation of all decoded chunks.
    pub unpacked_start: u32,
    /// Its decoded length.
    pub unpacked_len: u32,
}

/// A xorb in upload form, with the layout of its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltXorb {
    /// The xorb's name.
    pub hash: XorbHash,
    /// Serialized chunks back to back, no footer.
    pub body: Vec<u8>,
    /// The chunks, in order.
    pub chunks: Vec<XorbChunk>,
}

impl BuiltXorb {
    /// The footer a server would append to this body.
    pub fn footer(&self) -> XorbFooter {
        XorbFooter::from_chunks(self.hash, &self.chunks)
    }
}

/// Packs chunks into a xorb's upload form, compressing each as it arrives.
#[derive(Debug, Clone)]
pub struct XorbBuilder {
    policy: CompressionPolicy,
    body: Vec<u8>,
    chunks: Vec<XorbChunk>,
    unpacked: usize,
}

impl XorbBuilder {
    /// An empty xorb whose chunks will be compressed as `policy` says.
    pub fn new(policy: CompressionPolicy) -> Self {
        Self { policy, body: Vec::new(), chunks: Vec::new(), unpacked: 0 }
    }

    /// Whether a chunk of `len` bytes can still be added without passing the xorb limits.
    pub fn fits(&self, len: usize) -> bool {
        self.chunks.len() < MAX_XORB_CHUNKS && self.unpacked + len <= MAX_XORB_BYTES
    }

    /// Chunks added so far.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether no chunk was added yet.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Uncompressed bytes added so far.
    pub fn unpacked_len(&self) -> usize {
        self.unpacked
    }

    /// Serialized bytes so far.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Appends a chunk, hashing it. Fails if it does not [`fit`](Self::fits) or is larger
    /// than [`MAX_CHUNK_LEN`].
    pub fn push(&mut self, data: &[u8]) -> Result<XorbChunk, FormatError> {
        self.push_hashed(data, chunk_hash(data))
    }

    /// Appends a chunk whose hash the caller already computed (the chunker hashes as it cuts).
    /// An empty chunk is refused, as [`iter_chunks`] refuses it.
    pub fn push_hashed(&mut self, data: &[u8], hash: ChunkHash) -> Result<XorbChunk, FormatError> {
        if data.is_empty() {
            return Err(FormatError::EmptyChunk);
        }
        if !self.fits(data.len()) {
            return Err(FormatError::XorbFull {
                chunks: self.chunks.len(),
                bytes: self.unpacked as u64,
                len: data.len(),
            });
        }
        let byte_start = self.body.len();
        encode_chunk_into(data, self.policy, &mut self.body)?;
        // The limits keep every offset below 2^32: at most 64 MiB plus 8 header bytes per chunk.
        let chunk = XorbChunk {
            hash,
            byte_start: byte_start as u32,
            byte_end: self.body.len() as u32,
            unpacked_start: self.unpacked as u32,
            unpacked_len: data.len() as u32,
        };
        self.unpacked += data.len();
        self.chunks.push(chunk);
        Ok(chunk)
    }

    /// The finished xorb and its hash.
    pub fn finish(self) -> BuiltXorb {
        let hash = hash_of(&self.chunks);
        BuiltXorb { hash, body: self.body, chunks: self.chunks }
    }
}

fn hash_of(chunks: &[XorbChunk]) -> XorbHash {
    let leaves: Vec<(ChunkHash, u64)> =
        chunks.iter().map(|c| (c.hash, u64::from(c.unpacked_len))).collect();
    xorb_hash(&leaves)
}

/// One serialized chunk found in a xorb body, not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawChunk<'a> {
    /// Offset of its header in the body.
    pub offset: usize,
    /// Its validated header.
    pub header: ChunkHeader,
    /// Header and payload.
    pub bytes: &'a [u8],
}

/// Iterator over the serialized chunks of a xorb body; see [`iter_chunks`].
#[derive(Debug, Clone)]
pub struct RawChunks<'a> {
    cursor: Cursor<'a>,
    index: usize,
    unpacked: u64,
    done: bool,
    footer_at: Option<usize>,
}

/// Walks the chunks of a xorb body without decoding them, stopping at the end or at a footer.
/// Each header is validated and each payload must be present; the first error ends the walk.
/// The Xet limits hold before anything is decoded or allocated: at most [`MAX_XORB_CHUNKS`]
/// chunks, at most [`MAX_XORB_BYTES`] decoded, and no empty chunk (8 header bytes that would
/// otherwise each cost a table entry, a hash and an index row).
pub fn iter_chunks(body: &[u8]) -> RawChunks<'_> {
    RawChunks { cursor: Cursor::new(body), index: 0, unpacked: 0, done: false, footer_at: None }
}

impl RawChunks<'_> {
    /// Where the `XETBLOB` footer starts, once the walk has reached it.
    pub fn footer_offset(&self) -> Option<usize> {
        self.footer_at
    }
}

impl<'a> Iterator for RawChunks<'a> {
    type Item = Result<RawChunk<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.cursor.rest();
        if self.done || rest.is_empty() {
            return None;
        }
        if rest.starts_with(&XORB_FOOTER_MAGIC) {
            self.done = true;
            self.footer_at = Some(self.cursor.pos());
            return None;
        }
        let (index, offset) = (self.index, self.cursor.pos());
        self.index += 1;
        let item = ChunkHeader::parse(rest).and_then(|header| {
            self.unpacked += u64::from(header.uncompressed_len);
            check_xorb_limits(index, &header, self.unpacked)?;
            let bytes = self.cursor.take(header.serialized_len(), "chunk payload")?;
            Ok(RawChunk { offset, header, bytes })
        });
        self.done = item.is_err();
        Some(item.map_err(|e| in_chunk(index, offset, e)))
    }
}

/// The Xet limits on chunk `index` of a xorb whose chunks so far decode to `unpacked` bytes.
fn check_xorb_limits(index: usize, header: &ChunkHeader, unpacked: u64) -> Result<(), FormatError> {
    if index >= MAX_XORB_CHUNKS {
        let (value, max) = (index as u64 + 1, MAX_XORB_CHUNKS as u64);
        return Err(FormatError::TooLarge { what: "xorb chunk count", value, max });
    }
    if header.uncompressed_len == 0 {
        return Err(FormatError::EmptyChunk);
    }
    if unpacked > MAX_XORB_BYTES as u64 {
        let max = MAX_XORB_BYTES as u64;
        return Err(FormatError::TooLarge { what: "xorb unpacked length", value: unpacked, max });
    }
    Ok(())
}

fn in_chunk(index: usize, offset: usize, source: FormatError) -> FormatError {
    FormatError::XorbChunk { index, offset, source: Box::new(source) }
}

/// A xorb body read and checked: every chunk decoded and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedXorb {
    /// Hash of the decoded chunks.
    pub hash: XorbHash,
    /// The chunks, in order.
    pub chunks: Vec<XorbChunk>,
    /// Length of the chunk data, i.e. where a footer starts (the input length without one).
    pub body_len: usize,
    /// The footer, if the input had one; it agrees with `hash` and `chunks`.
    pub footer: Option<XorbFooter>,
}

/// Decodes every chunk of a xorb (with or without footer), computing chunk and xorb hashes.
pub fn parse_xorb(bytes: &[u8]) -> Result<ParsedXorb, FormatError> {
    parse_xorb_with(bytes, |_, _| {})
}

/// Same as [`parse_xorb`], also handing each chunk's decoded bytes to `visit` (valid only
/// during the call), so a caller can keep or check data without decoding twice.
pub fn parse_xorb_with(
    bytes: &[u8],
    mut visit: impl FnMut(&XorbChunk, &[u8]),
) -> Result<ParsedXorb, FormatError> {
    check_u32("xorb length", bytes.len())?;
    let mut walk = iter_chunks(bytes);
    let mut decoder = ChunkDecoder::new();
    let mut data = Vec::with_capacity(MAX_CHUNK_LEN);
    let mut chunks = Vec::new();
    let mut unpacked = 0usize;
    for (index, raw) in walk.by_ref().enumerate() {
        let raw = raw?;
        data.clear();
        decoder.decode_into(raw.bytes, &mut data).map_err(|e| in_chunk(index, raw.offset, e))?;
        let chunk = XorbChunk {
            hash: chunk_hash(&data),
            byte_start: raw.offset as u32,
            byte_end: (raw.offset + raw.bytes.len()) as u32,
            unpacked_start: check_u32("xorb unpacked length", unpacked)?,
            unpacked_len: raw.header.uncompressed_len,
        };
        unpacked += data.len();
        visit(&chunk, &data);
        chunks.push(chunk);
    }
    check_u32("xorb unpacked length", unpacked)?;
    let hash = hash_of(&chunks);
    let body_len = walk.footer_offset().unwrap_or(bytes.len());
    let footer = match bytes.get(body_len..).filter(|rest| !rest.is_empty()) {
        Some(rest) => Some(XorbFooter::decode(rest)?.checked_against(hash, &chunks)?),
        None => None,
    };
    Ok(ParsedXorb { hash, chunks, body_len, footer })
}

fn check_u32(what: &'static str, value: usize) -> Result<u32, FormatError> {
    u32::try_from(value).map_err(|_| FormatError::TooLarge {
        what,
        value: value as u64,
        max: u32::MAX.into(),
    })
}

/// One chunk's entry in a xorb footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XorbFooterEntry {
    /// The chunk's hash.
    pub hash: ChunkHash,
    /// End of the chunk in the serialized body (header included).
    pub byte_end: u32,
    /// Cumulative decoded length up to the end of the chunk.
    pub unpacked_end: u32,
}

/// The V1 footer ("CasObjectInfo") a server may append to a stored xorb; Tessera stores
/// xorbs without it and builds it only for peers that want one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorbFooter {
    /// The xorb's hash.
    pub hash: XorbHash,
    /// One entry per chunk, in order.
    pub entries: Vec<XorbFooterEntry>,
    /// Optional per-upload uniqueness nonce; excluded from the hash.
    pub nonce: [u8; 4],
}

impl XorbFooter {
    /// The footer describing `chunks`, with a zero nonce.
    pub fn from_chunks(hash: XorbHash, chunks: &[XorbChunk]) -> Self {
        let entries = chunks
            .iter()
            .map(|c| XorbFooterEntry {
                hash: c.hash,
                byte_end: c.byte_end,
                unpacked_end: c.unpacked_start.wrapping_add(c.unpacked_len),
            })
            .collect();
        Self { hash, entries, nonce: [0; 4] }
    }

    /// Encoded length: 92 + 40 bytes per chunk, plus the trailing u32 length.
    pub fn encoded_len(&self) -> usize {
        (FOOTER_FIXED_LEN + FOOTER_PER_CHUNK * self.entries.len() as u64) as usize + 4
    }

    /// The footer bytes, ending with the u32 footer length.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the footer to `out` (after a body, to build the stored-with-footer form).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let n = (self.entries.len() as u32).to_le_bytes();
        let per_chunk_8 = 8 * self.entries.len() as u64;
        let boundaries_from_end = BOUNDARIES_FIXED_LEN + per_chunk_8;
        let hashes_from_end = 12 + 32 * self.entries.len() as u64 + boundaries_from_end;
        out.extend_from_slice(&XORB_FOOTER_MAGIC);
        out.push(FOOTER_VERSION);
        out.extend_from_slice(self.hash.as_bytes());
        out.extend_from_slice(&HASHES_MAGIC);
        out.push(HASHES_VERSION);
        out.extend_from_slice(&n);
        self.entries.iter().for_each(|e| out.extend_from_slice(e.hash.as_bytes()));
        out.extend_from_slice(&BOUNDARIES_MAGIC);
        out.push(BOUNDARIES_VERSION);
        out.extend_from_slice(&n);
        self.entries.iter().for_each(|e| out.extend_from_slice(&e.byte_end.to_le_bytes()));
        self.entries.iter().for_each(|e| out.extend_from_slice(&e.unpacked_end.to_le_bytes()));
        out.extend_from_slice(&n);
        out.extend_from_slice(&(hashes_from_end as u32).to_le_bytes());
        out.extend_from_slice(&(boundaries_from_end as u32).to_le_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&[0; FOOTER_BUFFER_LEN - 4]);
        let len = FOOTER_FIXED_LEN + FOOTER_PER_CHUNK * self.entries.len() as u64;
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }

    /// Decodes a footer that runs exactly to the end of `bytes` (from `XETBLOB` through the
    /// trailing length).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut c = Cursor::new(bytes);
        expect_tag(&mut c, XORB_FOOTER_MAGIC, FOOTER_VERSION, "xorb footer")?;
        let hash = XorbHash::from_bytes(c.array("xorb footer hash")?);
        let hashes_at = c.pos();
        expect_tag(&mut c, HASHES_MAGIC, HASHES_VERSION, "xorb footer hashes")?;
        let n = c.u32("xorb footer chunk count")?;
        // Everything left is a function of n: check it is all there before allocating.
        let rest = FOOTER_PER_CHUNK * u64::from(n) + FOOTER_FIXED_LEN - 52 + 4;
        c.ensure(rest, "xorb footer")?;
        let hashes = (0..n)
            .map(|_| c.array("xorb footer chunk hash").map(ChunkHash::from_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let boundaries_at = c.pos();
        expect_tag(&mut c, BOUNDARIES_MAGIC, BOUNDARIES_VERSION, "xorb footer boundaries")?;
        expect_u32(&mut c, n, "xorb footer boundaries chunk count")?;
        let byte_ends = read_u32s(&mut c, n, "xorb footer chunk boundary")?;
        let unpacked_ends = read_u32s(&mut c, n, "xorb footer unpacked offset")?;
        expect_u32(&mut c, n, "xorb footer chunk count (tail)")?;
        let hashes_from_end = c.u32("xorb footer hashes offset")?;
        let boundaries_from_end = c.u32("xorb footer boundaries offset")?;
        let buffer: [u8; FOOTER_BUFFER_LEN] = c.array("xorb footer buffer")?;
        let end = c.pos();
        expect_u32_eq((end - hashes_at) as u64, hashes_from_end, "xorb footer hashes offset")?;
        expect_u32_eq(
            (end - boundaries_at) as u64,
            boundaries_from_end,
            "xorb footer boundaries offset",
        )?;
        let len = c.u32("xorb footer length")?;
        expect_u32_eq(end as u64, len, "xorb footer length")?;
        if c.remaining() != 0 {
            let (offset, len) = (c.pos(), c.remaining());
            return Err(FormatError::TrailingBytes { what: "xorb footer", offset, len });
        }
        let entries = hashes
            .into_iter()
            .zip(byte_ends.into_iter().zip(unpacked_ends))
            .map(|(hash, (byte_end, unpacked_end))| XorbFooterEntry {
                hash,
                byte_end,
                unpacked_end,
            })
            .collect();
        let [n0, n1, n2, n3, ..] = buffer;
        Ok(Self { hash, entries, nonce: [n0, n1, n2, n3] })
    }

    /// Splits a stored xorb that ends with a footer into its body and decoded footer, using the
    /// trailing length to find where the footer starts.
    pub fn split_stored(stored: &[u8]) -> Result<(&[u8], Self), FormatError> {
        let tail_at = stored.len().checked_sub(4).ok_or(FormatError::Truncated {
            what: "xorb footer length",
            offset: 0,
            needed: 4,
            available: stored.len(),
        })?;
        let len =
            Cursor::new(stored.get(tail_at..).unwrap_or_default()).u32("xorb footer length")?;
        let start = tail_at.checked_sub(len as usize).ok_or(FormatError::Truncated {
            what: "xorb footer",
            offset: 0,
            needed: u64::from(len),
            available: tail_at,
        })?;
        let (body, footer) = stored.split_at(start);
        Ok((body, Self::decode(footer)?))
    }

    /// `self`, if it describes exactly `chunks` hashing to `hash`.
    fn checked_against(self, hash: XorbHash, chunks: &[XorbChunk]) -> Result<Self, FormatError> {
        if self.entries.len() != chunks.len() {
            return Err(FormatError::Mismatch {
                what: "xorb footer chunk count",
                expected: chunks.len() as u64,
                actual: self.entries.len() as u64,
            });
        }
        if self.hash != hash {
            return Err(FormatError::XorbHashMismatch { stored: self.hash, computed: hash });
        }
        for (index, (entry, want)) in
            self.entries.iter().zip(&Self::from_chunks(hash, chunks).entries).enumerate()
        {
            let field = if entry.hash != want.hash {
                "hash"
            } else if entry.byte_end != want.byte_end {
                "chunk boundary"
            } else if entry.unpacked_end != want.unpacked_end {
                "unpacked offset"
            } else {
                continue;
            };
            return Err(FormatError::FooterMismatch { field, index });
        }
        Ok(self)
    }
}

/// Reads a 7-byte section tag and its version byte.
fn expect_tag(
    c: &mut Cursor<'_>,
    tag: [u8; 7],
    version: u8,
    what: &'static str,
) -> Result<(), FormatError> {
    if c.array::<7>(what)? != tag {
        return Err(FormatError::BadMagic { what });
    }
    let found = c.u8(what)?;
    if found != version {
        return Err(FormatError::UnsupportedVersion { what, version: found.into() });
    }
    Ok(())
}

fn expect_u32(c: &mut Cursor<'_>, expected: u32, what: &'static str) -> Result<(), FormatError> {
    let actual = c.u32(what)?;
    expect_u32_eq(u64::from(expected), actual, what)
}

fn expect_u32_eq(expected: u64, actual: u32, what: &'static str) -> Result<(), FormatError> {
    if expected != u64::from(actual) {
        return Err(FormatError::Mismatch { what, expected, actual: actual.into() });
    }
    Ok(())
}

fn read_u32s(c: &mut Cursor<'_>, n: u32, what: &'static str) -> Result<Vec<u32>, FormatError> {
    (0..n).map(|_| c.u32(what)).collect()
}

/// Serializes `chunks` into one xorb's upload form.
pub fn serialize_xorb(
    chunks: &[&[u8]],
    policy: CompressionPolicy,
) -> Result<BuiltXorb, FormatError> {
    let mut builder = XorbBuilder::new(policy);
    for chunk in chunks {
        builder.push(chunk)?;
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::CompressionScheme;
    use proptest::prelude::*;

    fn sample_chunks() -> Vec<Vec<u8>> {
        vec![
            b"hello world".to_vec(),
            (0..20_000u32).flat_map(|i| (1.0f32 + i as f32 * 1e-4).to_le_bytes()).collect(),
            b"abcabcabc ".repeat(900),
            (0..100u8).flat_map(|i| *chunk_hash(&[i]).as_bytes()).collect(),
        ]
    }

    fn build(chunks: &[Vec<u8>]) -> BuiltXorb {
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        serialize_xorb(&refs, CompressionPolicy::Auto)
            .unwrap_or_else(|_| XorbBuilder::new(CompressionPolicy::Auto).finish())
    }

    #[test]
    fn single_chunk_xorb_is_named_by_its_chunk() {
        let xorb = build(&[b"hello world".to_vec()]);
        assert_eq!(
            xorb.hash.to_string(),
            "4e39378b9d359f118190557a1f44130219a54e5fcfa07bd96cf50b466fe651b1"
        );
        assert_eq!(xorb.body[..8], [0x00, 0x0b, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x00]);
        assert_eq!(xorb.body.len(), 19);
        assert_eq!(xorb.chunks[0].byte_end, 19);
    }

    /// The spec's test vector 2: SplitMix64 data, seed 0.
    fn vector2(n: usize) -> Vec<u8> {
        crate::testdata::splitmix(n, 0)
    }

    #[test]
    fn spec_vector_2_xorb_hash() {
        let data = vector2(1_000_000);
        assert_eq!((data[0], data[127], data[111_111]), (175, 132, 118));
        let ends = crate::chunking::chunk_boundaries(&data);
        let chunks: Vec<Vec<u8>> = std::iter::once(0)
            .chain(ends.iter().copied())
            .zip(&ends)
            .map(|(a, &b)| data[a..b].to_vec())
            .collect();
        assert_eq!(chunks.len(), 19);
        let xorb = build(&chunks);
        assert_eq!(
            xorb.hash.to_string(),
            "6f2ce16ca5e317f0100ff0e7e5bf40a0de9032e9ee1ad04b6b8ff4e36cdfbf6c"
        );
        assert_eq!(
            xorb.chunks[0].hash.to_string(),
            "6eca1e7dadaf08cca5d82d318c800f07c2ddcec115a7e8627e5edd9605b94b8d"
        );
        assert_eq!(parse_xorb(&xorb.body).ok().map(|p| p.hash), Some(xorb.hash));
    }

    #[test]
    fn parse_recovers_layout_and_data() {
        let data = sample_chunks();
        let xorb = build(&data);
        let mut seen = Vec::new();
        let parsed = parse_xorb_with(&xorb.body, |c, d| seen.push((c.unpacked_len, d.to_vec())));
        let parsed = parsed.ok();
        assert_eq!(parsed.as_ref().map(|p| p.hash), Some(xorb.hash));
        assert_eq!(parsed.as_ref().map(|p| &p.chunks), Some(&xorb.chunks));
        assert_eq!(parsed.as_ref().map(|p| p.body_len), Some(xorb.body.len()));
        assert_eq!(seen.into_iter().map(|s| s.1).collect::<Vec<_>>(), data);
        let schemes: Vec<_> = iter_chunks(&xorb.body).flatten().map(|r| r.header.scheme).collect();
        assert_eq!(
            schemes,
            [
                CompressionScheme::None,
                CompressionScheme::ByteGrouping4Lz4,
                CompressionScheme::Lz4,
                CompressionScheme::None
            ]
        );
    }

    #[test]
    fn footer_sizes_follow_the_spec() {
        let empty = XorbFooter::from_chunks(XorbHash::ZERO, &[]);
        assert_eq!(empty.encode().len(), 92 + 4);
        let xorb = build(&sample_chunks());
        let footer = xorb.footer().encode();
        assert_eq!(footer.len(), 92 + 40 * 4 + 4);
        assert_eq!(footer[footer.len() - 4..], (92u32 + 160).to_le_bytes());
        assert_eq!(&footer[..7], b"XETBLOB");
        // boundary_section_offset_from_end = 40 + 8n, hashes_section_offset_from_end = 12 + 32n + that.
        let tail = &footer[footer.len() - 32..footer.len() - 20];
        assert_eq!(tail[..4], 4u32.to_le_bytes());
        assert_eq!(tail[4..8], (12u32 + 128 + 72).to_le_bytes());
        assert_eq!(tail[8..], 72u32.to_le_bytes());
        assert_eq!(XorbFooter::decode(&footer).ok(), Some(xorb.footer()));
    }

    #[test]
    fn stored_form_with_footer_parses_and_splits() {
        let xorb = build(&sample_chunks());
        let mut footer = xorb.footer();
        footer.nonce = [1, 2, 3, 4];
        let stored = [xorb.body.clone(), footer.encode()].concat();
        let parsed = parse_xorb(&stored).ok();
        assert_eq!(parsed.as_ref().map(|p| p.body_len), Some(xorb.body.len()));
        assert_eq!(parsed.and_then(|p| p.footer), Some(footer.clone()));
        let split = XorbFooter::split_stored(&stored).ok();
        assert_eq!(split, Some((&xorb.body[..], footer)));
        assert!(XorbFooter::split_stored(&stored[..3]).is_err());
        assert!(XorbFooter::split_stored(&xorb.body).is_err());
    }

    #[test]
    fn footer_must_agree_with_chunks() {
        let xorb = build(&sample_chunks());
        let mut wrong_hash = xorb.footer();
        wrong_hash.hash = XorbHash::ZERO;
        let mut wrong_boundary = xorb.footer();
        wrong_boundary.entries[2].byte_end += 1;
        let mut wrong_unpacked = xorb.footer();
        wrong_unpacked.entries[1].unpacked_end -= 1;
        let mut too_few = xorb.footer();
        too_few.entries.pop();
        for (footer, want) in [
            (wrong_hash, "hash"),
            (wrong_boundary, "chunk boundary"),
            (wrong_unpacked, "unpacked offset"),
            (too_few, "count"),
        ] {
            let err = parse_xorb(&[xorb.body.clone(), footer.encode()].concat()).err();
            let ok = match (&err, want) {
                (Some(FormatError::XorbHashMismatch { .. }), "hash") => true,
                (Some(FormatError::FooterMismatch { field, .. }), f) => *field == f,
                (Some(FormatError::Mismatch { .. }), "count") => true,
                _ => false,
            };
            assert!(ok, "{want}: {err:?}");
        }
    }

    #[test]
    fn truncated_xorbs_fail_unless_cut_at_a_chunk_boundary() {
        let xorb = build(&sample_chunks());
        let stored = [xorb.body.clone(), xorb.footer().encode()].concat();
        let boundaries: Vec<usize> =
            std::iter::once(0).chain(xorb.chunks.iter().map(|c| c.byte_end as usize)).collect();
        for n in 0..stored.len() {
            let result = parse_xorb(&stored[..n]);
            match boundaries.iter().position(|&b| b == n) {
                Some(k) => {
                    assert_eq!(result.ok().map(|p| p.chunks), Some(xorb.chunks[..k].to_vec()))
                }
                None => assert!(result.is_err(), "prefix {n}"),
            }
        }
        assert!(parse_xorb(&stored).is_ok());
    }

    #[test]
    fn chunk_errors_name_the_chunk() {
        let xorb = build(&sample_chunks());
        let mut body = xorb.body.clone();
        let second = xorb.chunks[2].byte_start as usize;
        body[second + 4] = 9;
        match parse_xorb(&body) {
            Err(FormatError::XorbChunk { index, offset, source }) => {
                assert_eq!((index, offset), (2, second));
                assert!(matches!(*source, FormatError::UnknownScheme { scheme: 9 }));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn builder_enforces_xorb_limits() {
        let mut builder = XorbBuilder::new(CompressionPolicy::Fixed(CompressionScheme::None));
        for _ in 0..MAX_XORB_CHUNKS {
            assert!(builder.push(b"x").is_ok());
        }
        assert!(!builder.fits(1));
        assert!(matches!(builder.push(b"x"), Err(FormatError::XorbFull { chunks: 8192, .. })));
        let mut builder = XorbBuilder::new(CompressionPolicy::Fixed(CompressionScheme::None));
        let big = vec![7u8; MAX_CHUNK_LEN];
        for _ in 0..MAX_XORB_BYTES / MAX_CHUNK_LEN {
            assert!(builder.push(&big).is_ok());
        }
        assert_eq!(builder.unpacked_len(), MAX_XORB_BYTES);
        assert!(builder.push(b"x").is_err());
        assert!(matches!(builder.push(&[]), Err(FormatError::EmptyChunk)));
        assert_eq!(builder.len(), 512);
    }

    /// Hand-made bodies of `n` chunks of `len` bytes each (stored uncompressed).
    fn raw_body(n: usize, len: usize) -> Vec<u8> {
        let header = ChunkHeader {
            scheme: CompressionScheme::None,
            compressed_len: len as u32,
            uncompressed_len: len as u32,
        };
        let one = [header.to_bytes().to_vec(), vec![1u8; len]].concat();
        one.repeat(n)
    }

    #[test]
    fn parsing_enforces_xorb_limits_before_decoding() {
        let inner = |r: Result<ParsedXorb, FormatError>| match r {
            Err(FormatError::XorbChunk { index, source, .. }) => Some((index, *source)),
            _ => None,
        };
        let empty = inner(parse_xorb(&raw_body(1_000, 0)));
        assert!(matches!(empty, Some((0, FormatError::EmptyChunk))), "{empty:?}");
        assert!(parse_xorb(&raw_body(MAX_XORB_CHUNKS, 1)).is_ok());
        let many = inner(parse_xorb(&raw_body(MAX_XORB_CHUNKS + 1, 1)));
        assert!(matches!(many, Some((8192, FormatError::TooLarge { .. }))), "{many:?}");
        let n = MAX_XORB_BYTES / MAX_CHUNK_LEN;
        assert!(parse_xorb(&raw_body(n, MAX_CHUNK_LEN)).is_ok());
        let big = inner(parse_xorb(&raw_body(n + 1, MAX_CHUNK_LEN)));
        assert!(matches!(big, Some((512, FormatError::TooLarge { .. }))), "{big:?}");
    }

    fn any_chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let chunk = prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..500),
            proptest::collection::vec(0u8..3, 1..5000),
        ];
        proptest::collection::vec(chunk, 0..8)
    }

    proptest! {
        #[test]
        fn round_trip(chunks in any_chunks(), with_footer in any::<bool>(), nonce in any::<[u8; 4]>()) {
            let xorb = build(&chunks);
            let mut footer = xorb.footer();
            footer.nonce = nonce;
            let bytes = if with_footer { [xorb.body.clone(), footer.encode()].concat() } else { xorb.body.clone() };
            let mut data = Vec::new();
            let parsed = parse_xorb_with(&bytes, |_, d| data.push(d.to_vec()));
            let parsed = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.hash, xorb.hash);
            prop_assert_eq!(&parsed.chunks, &xorb.chunks);
            prop_assert_eq!(parsed.footer, with_footer.then_some(footer));
            prop_assert_eq!(data, chunks);
        }

        #[test]
        fn corrupted_xorbs_never_panic(
            chunks in any_chunks(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let xorb = build(&chunks);
            let mut bytes = [xorb.body.clone(), xorb.footer().encode()].concat();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x.max(1);
            }
            if let Ok(parsed) = parse_xorb(&bytes) {
                prop_assert!(parsed.body_len <= bytes.len());
            }
            let _ = XorbFooter::split_stored(&bytes);
        }

        #[test]
        fn random_footers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), n in 0u32..5) {
            let mut footer = XorbFooter::from_chunks(XorbHash::ZERO, &[]).encode();
            footer.truncate(48);
            footer.extend_from_slice(&n.to_le_bytes());
            footer.extend_from_slice(&bytes);
            let _ = XorbFooter::decode(&footer);
            let _ = parse_xorb(&footer);
        }
    }
}
