//! MDB shards: the binary metadata that says which xorb chunks make up each file, and which
//! chunks each new xorb holds (`xet-protocol.md` §4).
//!
//! A shard is a 48-byte header, a file section and a CAS (xorb) section, each a run of 48-byte
//! records ended by a bookend record, then optionally lookup tables and a 200-byte footer.
//! [`Shard`] is the plain value; its encoders produce the upload form (no footer) and the
//! global-dedup response form, and [`Shard::decode`] reads any of them.

use super::FormatError;
use super::cursor::Cursor;
use crate::hash::{ChunkHash, FileHash, RangeHash, Sha256, XorbHash, keyed_chunk_hash};

/// Bytes of the shard header.
pub const SHARD_HEADER_LEN: usize = 48;
/// Bytes of the shard footer.
pub const SHARD_FOOTER_LEN: usize = 200;
/// Chunk flag: the server may answer global-dedup queries for this chunk.
pub const CHUNK_FLAG_GLOBAL_DEDUP: u32 = 1 << 31;

/// `HFRepoMetaData`, a zero byte, then 17 fixed random bytes.
const SHARD_MAGIC: [u8; 32] = [
    b'H', b'F', b'R', b'e', b'p', b'o', b'M', b'e', b't', b'a', b'D', b'a', b't', b'a', 0, 85, 105,
    103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169,
];
const SHARD_VERSION: u64 = 2;
const FOOTER_VERSION: u64 = 1;
/// Every record of the file and CAS sections is 48 bytes.
const RECORD_LEN: u64 = 48;
/// The hash of the record that ends a section.
const BOOKEND: [u8; 32] = [0xFF; 32];
/// File flag: one verification record per term follows the terms.
const FILE_FLAG_VERIFICATION: u32 = 1 << 31;
/// File flag: one metadata-extension record (the SHA-256) ends the file block.
const FILE_FLAG_METADATA_EXT: u32 = 1 << 30;
/// Lookup table entry sizes: (u64 key, u32 index) and (u64 key, u32 xorb, u32 chunk).
const LOOKUP_ENTRY_LEN: u64 = 12;
const CHUNK_LOOKUP_ENTRY_LEN: u64 = 16;

/// A run of chunks of one xorb that forms part of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardTerm {
    /// The xorb holding the chunks.
    pub xorb: XorbHash,
    /// Total decoded length of the chunks.
    pub unpacked_len: u32,
    /// First chunk index.
    pub chunk_start: u32,
    /// Chunk index after the last (exclusive).
    pub chunk_end: u32,
}

/// How to rebuild one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFile {
    /// The file's Xet hash.
    pub hash: FileHash,
    /// Its terms, in file order.
    pub terms: Vec<ShardTerm>,
    /// One range hash per term, proving the uploader holds the chunks (required on upload).
    pub verification: Option<Vec<RangeHash>>,
    /// The file's SHA-256 (required on upload to Git-backed Hub repos).
    pub sha256: Option<Sha256>,
}

impl ShardFile {
    /// The file's length: the sum of its terms.
    pub fn size(&self) -> u64 {
        self.terms.iter().map(|t| u64::from(t.unpacked_len)).sum()
    }
}

/// One chunk of a xorb as a shard lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardChunk {
    /// Chunk hash (keyed with the footer's HMAC key in dedup responses).
    pub hash: ChunkHash,
    /// Offset of its decoded bytes within the xorb's decoded bytes.
    pub unpacked_start: u32,
    /// Its decoded length.
    pub len: u32,
    /// Flags; see [`CHUNK_FLAG_GLOBAL_DEDUP`].
    pub flags: u32,
}

/// A xorb as a shard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardXorb {
    /// The xorb's hash.
    pub hash: XorbHash,
    /// Serialized length of the xorb (xet-core sends 0).
    pub bytes_on_disk: u32,
    /// All of its chunks, in order.
    pub chunks: Vec<ShardChunk>,
}

impl ShardXorb {
    /// Total decoded bytes of the xorb.
    pub fn unpacked_len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.len)).sum()
    }
}

/// The parts of a shard footer that carry information; offsets and lookup-table counts are
/// derived from the content when encoding and checked when decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardFooter {
    /// Key the CAS section's chunk hashes are keyed with, if any.
    pub hmac_key: Option<[u8; 32]>,
    /// Creation time, unix seconds.
    pub creation_timestamp: u64,
    /// Unix seconds after which a dedup response must not be used; `None` if it never expires.
    pub key_expiry: Option<u64>,
    /// Sum of the xorbs' `bytes_on_disk`.
    pub stored_bytes_on_disk: u64,
    /// Sum of the files' sizes.
    pub materialized_bytes: u64,
    /// Sum of the xorbs' decoded sizes.
    pub stored_bytes: u64,
}

/// A shard as plain values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shard {
    /// File reconstructions.
    pub files: Vec<ShardFile>,
    /// Xorbs and their chunks.
    pub xorbs: Vec<ShardXorb>,
    /// The footer, for the forms that carry one.
    pub footer: Option<ShardFooter>,
}

/// Byte offsets of the sections written so far, for the footer.
struct Layout {
    cas_start: u64,
    cas_end: u64,
}

/// The three lookup tables of a full shard, sorted by key.
#[derive(Default)]
struct Lookups {
    files: Vec<(u64, u32)>,
    xorbs: Vec<(u64, u32)>,
    chunks: Vec<(u64, u32, u32)>,
}

impl Shard {
    /// The upload body: header with footer size 0, file and CAS sections, no footer.
    pub fn encode_upload(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::with_capacity(self.record_bytes());
        put_header(&mut out, 0);
        self.put_sections(&mut out, true, None)?;
        Ok(out)
    }

    /// A global-dedup response: no files, the CAS section with every chunk hash keyed by `key`
    /// (when given and non-zero), then a footer carrying the key and `expiry` and no lookup
    /// tables, as xet-core's server writes it. The creation time is 0: codecs read no clock.
    pub fn encode_dedup_response(
        &self,
        key: Option<[u8; 32]>,
        expiry: Option<u64>,
    ) -> Result<Vec<u8>, FormatError> {
        let key = key.filter(|k| *k != [0; 32]);
        let mut out = Vec::with_capacity(self.record_bytes() + SHARD_FOOTER_LEN);
        put_header(&mut out, SHARD_FOOTER_LEN as u64);
        let layout = self.put_sections(&mut out, false, key.as_ref())?;
        let footer = ShardFooter {
            hmac_key: key,
            key_expiry: expiry,
            materialized_bytes: 0,
            ..self.footer_totals()
        };
        put_footer(&mut out, &footer, &layout, &Lookups::default(), 0);
        Ok(out)
    }

    /// The full form a local shard cache keeps: files, xorbs as given (hashes written as they
    /// are), optionally the lookup tables, and `footer`.
    pub fn encode_with_footer(
        &self,
        footer: &ShardFooter,
        lookup_tables: bool,
    ) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::with_capacity(self.record_bytes() + SHARD_FOOTER_LEN);
        put_header(&mut out, SHARD_FOOTER_LEN as u64);
        let layout = self.put_sections(&mut out, true, None)?;
        let lookups = if lookup_tables { self.lookups() } else { Lookups::default() };
        put_lookups(&mut out, &lookups);
        put_footer(&mut out, footer, &layout, &lookups, u64::MAX);
        Ok(out)
    }

    /// A footer whose byte totals describe this shard's content, with no key or expiry.
    pub fn footer_totals(&self) -> ShardFooter {
        ShardFooter {
            stored_bytes_on_disk: self.xorbs.iter().map(|x| u64::from(x.bytes_on_disk)).sum(),
            materialized_bytes: self.files.iter().map(ShardFile::size).sum(),
            stored_bytes: self.xorbs.iter().map(ShardXorb::unpacked_len).sum(),
            ..ShardFooter::default()
        }
    }

    /// Header, sections and bookends: an estimate for the output buffer's capacity.
    fn record_bytes(&self) -> usize {
        let files: usize = self.files.iter().map(|f| 2 + 2 * f.terms.len()).sum();
        let xorbs: usize = self.xorbs.iter().map(|x| 1 + x.chunks.len()).sum();
        (3 + files + xorbs) * RECORD_LEN as usize
    }

    fn put_sections(
        &self,
        out: &mut Vec<u8>,
        with_files: bool,
        key: Option<&[u8; 32]>,
    ) -> Result<Layout, FormatError> {
        if with_files {
            check_verification_rule(&self.files)?;
            for file in &self.files {
                put_file(out, file)?;
            }
        }
        put_record(out, &BOOKEND, [0; 4]);
        let cas_start = out.len() as u64;
        for xorb in &self.xorbs {
            put_xorb(out, xorb, key)?;
        }
        put_record(out, &BOOKEND, [0; 4]);
        Ok(Layout { cas_start, cas_end: out.len() as u64 })
    }

    fn lookups(&self) -> Lookups {
        let mut t = Lookups::default();
        let mut index = 0u32;
        for file in &self.files {
            t.files.push((truncate(file.hash.as_bytes()), index));
            index = index.wrapping_add(file_record_count(file));
        }
        let mut index = 0u32;
        for xorb in &self.xorbs {
            t.xorbs.push((truncate(xorb.hash.as_bytes()), index));
            for (i, chunk) in (0u32..).zip(&xorb.chunks) {
                t.chunks.push((truncate(chunk.hash.as_bytes()), index, i));
            }
            index = index.wrapping_add(1).wrapping_add(xorb.chunks.len() as u32);
        }
        t.files.sort_unstable();
        t.xorbs.sort_unstable();
        t.chunks.sort_unstable();
        t
    }

    /// Decodes a shard in any form: upload (no footer), dedup response, or full with lookup
    /// tables. Lookup tables are checked for size and position but not kept.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let footer_size = read_header(&mut Cursor::new(bytes))?;
        let (content, footer_bytes) = split_footer(bytes, footer_size)?;
        let mut c = Cursor::new(content);
        c.take(SHARD_HEADER_LEN, "shard header")?;
        let files = read_file_section(&mut c)?;
        let cas_start = c.pos() as u64;
        let xorbs = read_cas_section(&mut c)?;
        let layout = Layout { cas_start, cas_end: c.pos() as u64 };
        let footer = match footer_bytes {
            Some(f) => Some(read_footer(f, &layout, content.len() as u64)?),
            None if c.remaining() != 0 => {
                let (offset, len) = (c.pos(), c.remaining());
                return Err(FormatError::TrailingBytes { what: "shard", offset, len });
            }
            None => None,
        };
        Ok(Self { files, xorbs, footer })
    }
}

/// First 8 raw bytes of a hash as a little-endian u64: the lookup-table key.
fn truncate(hash: &[u8; 32]) -> u64 {
    let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = *hash;
    u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
}

fn to_u32(what: &'static str, value: u64) -> Result<u32, FormatError> {
    u32::try_from(value).map_err(|_| FormatError::TooLarge { what, value, max: u32::MAX.into() })
}

fn put_header(out: &mut Vec<u8>, footer_size: u64) {
    out.extend_from_slice(&SHARD_MAGIC);
    out.extend_from_slice(&SHARD_VERSION.to_le_bytes());
    out.extend_from_slice(&footer_size.to_le_bytes());
}

fn put_record(out: &mut Vec<u8>, hash: &[u8; 32], words: [u32; 4]) {
    out.extend_from_slice(hash);
    for word in words {
        out.extend_from_slice(&word.to_le_bytes());
    }
}

/// Records in a file block: header, terms, verification entries, metadata extension.
fn file_record_count(file: &ShardFile) -> u32 {
    let per_term = 1 + u32::from(file.verification.is_some());
    let terms = (file.terms.len() as u32).wrapping_mul(per_term);
    1u32.wrapping_add(terms).wrapping_add(u32::from(file.sha256.is_some()))
}

/// Either every file has verification entries or none has.
fn check_verification_rule(files: &[ShardFile]) -> Result<(), FormatError> {
    let first = files.first().map(|f| f.verification.is_some());
    match files.iter().find(|f| Some(f.verification.is_some()) != first) {
        Some(f) => Err(FormatError::MixedVerification { file: f.hash }),
        None => Ok(()),
    }
}

fn put_file(out: &mut Vec<u8>, file: &ShardFile) -> Result<(), FormatError> {
    let n = to_u32("shard file term count", file.terms.len() as u64)?;
    if let Some(v) = file.verification.as_ref().filter(|v| v.len() != file.terms.len()) {
        let (terms, verification) = (file.terms.len(), v.len());
        return Err(FormatError::VerificationCount { file: file.hash, terms, verification });
    }
    let mut flags = 0;
    if file.verification.is_some() {
        flags |= FILE_FLAG_VERIFICATION;
    }
    if file.sha256.is_some() {
        flags |= FILE_FLAG_METADATA_EXT;
    }
    put_record(out, file.hash.as_bytes(), [flags, n, 0, 0]);
    for t in &file.terms {
        put_record(out, t.xorb.as_bytes(), [0, t.unpacked_len, t.chunk_start, t.chunk_end]);
    }
    for range in file.verification.iter().flatten() {
        put_record(out, range.as_bytes(), [0; 4]);
    }
    if let Some(sha) = &file.sha256 {
        put_record(out, &sha.to_shard_bytes(), [0; 4]);
    }
    Ok(())
}

fn put_xorb(
    out: &mut Vec<u8>,
    xorb: &ShardXorb,
    key: Option<&[u8; 32]>,
) -> Result<(), FormatError> {
    let n = to_u32("shard xorb chunk count", xorb.chunks.len() as u64)?;
    let unpacked = to_u32("shard xorb length", xorb.unpacked_len())?;
    put_record(out, xorb.hash.as_bytes(), [0, n, unpacked, xorb.bytes_on_disk]);
    for chunk in &xorb.chunks {
        let hash = key.map_or(chunk.hash, |k| keyed_chunk_hash(k, &chunk.hash));
        put_record(out, hash.as_bytes(), [chunk.unpacked_start, chunk.len, chunk.flags, 0]);
    }
    Ok(())
}

fn put_lookups(out: &mut Vec<u8>, t: &Lookups) {
    for (key, index) in t.files.iter().chain(&t.xorbs) {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&index.to_le_bytes());
    }
    for (key, xorb, chunk) in &t.chunks {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&xorb.to_le_bytes());
        out.extend_from_slice(&chunk.to_le_bytes());
    }
}

/// Writes the footer; `no_expiry` is what a `None` expiry is written as (0 in dedup responses,
/// `u64::MAX` in local shards, as xet-core does).
fn put_footer(out: &mut Vec<u8>, f: &ShardFooter, layout: &Layout, t: &Lookups, no_expiry: u64) {
    let file_lookup = layout.cas_end;
    let xorb_lookup = file_lookup + LOOKUP_ENTRY_LEN * t.files.len() as u64;
    let chunk_lookup = xorb_lookup + LOOKUP_ENTRY_LEN * t.xorbs.len() as u64;
    let footer_offset = chunk_lookup + CHUNK_LOOKUP_ENTRY_LEN * t.chunks.len() as u64;
    let words = [
        FOOTER_VERSION,
        SHARD_HEADER_LEN as u64,
        layout.cas_start,
        file_lookup,
        t.files.len() as u64,
        xorb_lookup,
        t.xorbs.len() as u64,
        chunk_lookup,
        t.chunks.len() as u64,
    ];
    words.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
    out.extend_from_slice(&f.hmac_key.unwrap_or_default());
    let tail = [f.creation_timestamp, f.key_expiry.unwrap_or(no_expiry), 0, 0, 0, 0, 0, 0];
    let totals = [f.stored_bytes_on_disk, f.materialized_bytes, f.stored_bytes, footer_offset];
    tail.iter().chain(&totals).for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
}

/// Checks magic and version; returns the declared footer size.
fn read_header(c: &mut Cursor<'_>) -> Result<u64, FormatError> {
    if c.array::<32>("shard header")? != SHARD_MAGIC {
        return Err(FormatError::BadMagic { what: "shard header" });
    }
    let version = c.u64("shard version")?;
    if version != SHARD_VERSION {
        return Err(FormatError::UnsupportedVersion { what: "shard header", version });
    }
    c.u64("shard footer size")
}

/// Splits off the footer the header declares.
fn split_footer(bytes: &[u8], footer_size: u64) -> Result<(&[u8], Option<&[u8]>), FormatError> {
    match footer_size {
        0 => Ok((bytes, None)),
        200 => {
            let at = bytes.len().checked_sub(SHARD_FOOTER_LEN).filter(|&at| at >= SHARD_HEADER_LEN);
            let at = at.ok_or(FormatError::Truncated {
                what: "shard footer",
                offset: SHARD_HEADER_LEN,
                needed: SHARD_FOOTER_LEN as u64,
                available: bytes.len().saturating_sub(SHARD_HEADER_LEN),
            })?;
            let (content, footer) = bytes.split_at(at);
            Ok((content, Some(footer)))
        }
        other => Err(FormatError::Mismatch {
            what: "shard footer size",
            expected: SHARD_FOOTER_LEN as u64,
            actual: other,
        }),
    }
}

/// A 48-byte record: a hash and four u32 words.
fn read_record(
    c: &mut Cursor<'_>,
    what: &'static str,
) -> Result<([u8; 32], [u32; 4]), FormatError> {
    let hash = c.array::<32>(what)?;
    Ok((hash, [c.u32(what)?, c.u32(what)?, c.u32(what)?, c.u32(what)?]))
}

/// Reads `n` records after checking they are all present, so `n` cannot force a large
/// allocation the input does not back.
fn read_records<T>(
    c: &mut Cursor<'_>,
    n: u64,
    what: &'static str,
    f: impl Fn([u8; 32], [u32; 4]) -> T,
) -> Result<Vec<T>, FormatError> {
    c.ensure(n.saturating_mul(RECORD_LEN), what)?;
    (0..n).map(|_| read_record(c, what).map(|(h, w)| f(h, w))).collect()
}

fn read_file_section(c: &mut Cursor<'_>) -> Result<Vec<ShardFile>, FormatError> {
    let mut files = Vec::new();
    loop {
        let (hash, [flags, n, _, _]) = read_record(c, "shard file header")?;
        if hash == BOOKEND {
            break;
        }
        files.push(read_file_block(c, FileHash::from_bytes(hash), flags, n)?);
    }
    check_verification_rule(&files)?;
    Ok(files)
}

fn read_file_block(
    c: &mut Cursor<'_>,
    hash: FileHash,
    flags: u32,
    n: u32,
) -> Result<ShardFile, FormatError> {
    let verified = flags & FILE_FLAG_VERIFICATION != 0;
    let has_ext = flags & FILE_FLAG_METADATA_EXT != 0;
    let records = u64::from(n) * (1 + u64::from(verified)) + u64::from(has_ext);
    c.ensure(records * RECORD_LEN, "shard file entries")?;
    let terms =
        read_records(c, n.into(), "shard file term", |xorb, [_, len, start, end]| ShardTerm {
            xorb: XorbHash::from_bytes(xorb),
            unpacked_len: len,
            chunk_start: start,
            chunk_end: end,
        })?;
    let verification = match verified {
        true => {
            Some(read_records(c, n.into(), "shard verification", |h, _| RangeHash::from_bytes(h))?)
        }
        false => None,
    };
    let sha256 = match has_ext {
        true => Some(Sha256::from_shard_bytes(read_record(c, "shard file metadata")?.0)),
        false => None,
    };
    Ok(ShardFile { hash, terms, verification, sha256 })
}

fn read_cas_section(c: &mut Cursor<'_>) -> Result<Vec<ShardXorb>, FormatError> {
    let mut xorbs = Vec::new();
    loop {
        let (hash, [_, n, unpacked, bytes_on_disk]) = read_record(c, "shard xorb header")?;
        if hash == BOOKEND {
            return Ok(xorbs);
        }
        let chunks = read_records(c, n.into(), "shard xorb chunk", |h, [start, len, flags, _]| {
            ShardChunk { hash: ChunkHash::from_bytes(h), unpacked_start: start, len, flags }
        })?;
        let xorb = ShardXorb { hash: XorbHash::from_bytes(hash), bytes_on_disk, chunks };
        if xorb.unpacked_len() != u64::from(unpacked) {
            return Err(FormatError::Mismatch {
                what: "shard xorb length (sum of its chunks)",
                expected: xorb.unpacked_len(),
                actual: unpacked.into(),
            });
        }
        xorbs.push(xorb);
    }
}

/// Reads the footer and checks every offset in it against the sections just read.
fn read_footer(
    bytes: &[u8],
    layout: &Layout,
    footer_offset: u64,
) -> Result<ShardFooter, FormatError> {
    let mut c = Cursor::new(bytes);
    let version = c.u64("shard footer version")?;
    if version != FOOTER_VERSION {
        return Err(FormatError::UnsupportedVersion { what: "shard footer", version });
    }
    expect(
        c.u64("shard file section offset")?,
        SHARD_HEADER_LEN as u64,
        "shard file section offset",
    )?;
    expect(c.u64("shard CAS section offset")?, layout.cas_start, "shard CAS section offset")?;
    let mut table_at = layout.cas_end;
    for (what, entry_len) in [
        ("shard file lookup", LOOKUP_ENTRY_LEN),
        ("shard xorb lookup", LOOKUP_ENTRY_LEN),
        ("shard chunk lookup", CHUNK_LOOKUP_ENTRY_LEN),
    ] {
        expect(c.u64(what)?, table_at, what)?;
        let count = c.u64(what)?;
        let len = count.checked_mul(entry_len).ok_or(FormatError::TooLarge {
            what,
            value: count,
            max: u64::MAX / entry_len,
        })?;
        table_at = table_at.checked_add(len).ok_or(FormatError::TooLarge {
            what,
            value: count,
            max: u64::MAX / entry_len,
        })?;
    }
    let key: [u8; 32] = c.array("shard footer hmac key")?;
    let creation_timestamp = c.u64("shard footer timestamp")?;
    let expiry = c.u64("shard footer expiry")?;
    c.take(48, "shard footer reserved")?;
    let totals = [
        c.u64("shard footer totals")?,
        c.u64("shard footer totals")?,
        c.u64("shard footer totals")?,
    ];
    expect(c.u64("shard footer offset")?, table_at, "shard lookup tables end")?;
    expect(footer_offset, table_at, "shard footer offset")?;
    let [stored_bytes_on_disk, materialized_bytes, stored_bytes] = totals;
    Ok(ShardFooter {
        hmac_key: Some(key).filter(|k| *k != [0; 32]),
        creation_timestamp,
        key_expiry: Some(expiry).filter(|e| *e != 0 && *e != u64::MAX),
        stored_bytes_on_disk,
        materialized_bytes,
        stored_bytes,
    })
}

fn expect(actual: u64, expected: u64, what: &'static str) -> Result<(), FormatError> {
    if actual != expected {
        return Err(FormatError::Mismatch { what, expected, actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{chunk_hash, range_hash};
    use proptest::prelude::*;

    fn h(seed: u8) -> [u8; 32] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
    }

    fn sample() -> Shard {
        let chunks: Vec<ShardChunk> = (0..3u8)
            .map(|i| ShardChunk {
                hash: chunk_hash(&[i]),
                unpacked_start: u32::from(i) * 100,
                len: 100,
                flags: if i == 0 { CHUNK_FLAG_GLOBAL_DEDUP } else { 0 },
            })
            .collect();
        let xorb = XorbHash::from_bytes(h(1));
        let term = |start, end| ShardTerm {
            xorb,
            unpacked_len: (end - start) * 100,
            chunk_start: start,
            chunk_end: end,
        };
        let file = |seed, terms: Vec<ShardTerm>| ShardFile {
            hash: FileHash::from_bytes(h(seed)),
            verification: Some(terms.iter().map(|_| range_hash(&[chunk_hash(&[seed])])).collect()),
            terms,
            sha256: Some(Sha256::of(&[seed])),
        };
        Shard {
            files: vec![
                file(7, vec![term(0, 2), term(2, 3)]),
                file(8, vec![]),
                file(9, vec![term(1, 2)]),
            ],
            xorbs: vec![
                ShardXorb { hash: xorb, bytes_on_disk: 400, chunks },
                ShardXorb { hash: XorbHash::from_bytes(h(2)), bytes_on_disk: 0, chunks: vec![] },
            ],
            footer: None,
        }
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    }

    #[test]
    fn header_magic_matches_the_spec() {
        let mut out = Vec::new();
        put_header(&mut out, 0);
        assert_eq!(
            hex::encode(&out[..32]),
            "48465265706f4d6574614461746100556967456a7b815783a5bdd95ccdd14aa9"
        );
        assert_eq!(u64_at(&out, 32), 2);
        assert_eq!(u64_at(&out, 40), 0);
    }

    #[test]
    fn empty_upload_is_header_and_two_bookends() {
        let bytes = Shard::default().encode_upload().unwrap_or_default();
        assert_eq!(bytes.len(), 144);
        assert_eq!(bytes[48..80], [0xFF; 32]);
        assert_eq!(bytes[80..96], [0; 16]);
        assert_eq!(bytes[96..128], [0xFF; 32]);
        assert_eq!(Shard::decode(&bytes).ok(), Some(Shard::default()));
    }

    #[test]
    fn upload_form_layout_and_round_trip() {
        let shard = sample();
        let bytes = shard.encode_upload().unwrap_or_default();
        // Files: 1 + 2 + 2 + 1, 1 + 0 + 0 + 1, 1 + 1 + 1 + 1 records; bookend; xorbs 4 + 1; bookend.
        assert_eq!(bytes.len(), 48 + 48 * (6 + 2 + 4 + 1 + 5 + 1));
        assert_eq!(bytes[48..80], h(7));
        let flags = u32::from_le_bytes([bytes[80], bytes[81], bytes[82], bytes[83]]);
        assert_eq!(flags, FILE_FLAG_VERIFICATION | FILE_FLAG_METADATA_EXT);
        assert_eq!(bytes[84..88], 2u32.to_le_bytes());
        // The metadata extension of file 7 is its 6th record, holding the shard-order SHA-256.
        assert_eq!(bytes[48 + 5 * 48..48 + 5 * 48 + 32], Sha256::of(&[7]).to_shard_bytes());
        assert_eq!(Shard::decode(&bytes).ok(), Some(shard));
    }

    #[test]
    fn dedup_response_keys_chunks_and_drops_files() {
        let shard = sample();
        let key = h(42);
        let bytes = shard.encode_dedup_response(Some(key), Some(1_700_000_000)).unwrap_or_default();
        assert_eq!(bytes.len(), 48 + 48 + 48 * 6 + 200);
        assert_eq!(u64_at(&bytes, 40), 200);
        let decoded = Shard::decode(&bytes).unwrap_or_default();
        assert!(decoded.files.is_empty());
        let footer = decoded.footer.unwrap_or_default();
        assert_eq!(footer.hmac_key, Some(key));
        assert_eq!(footer.key_expiry, Some(1_700_000_000));
        assert_eq!(footer.stored_bytes, 300);
        assert_eq!(footer.stored_bytes_on_disk, 400);
        let keyed: Vec<ChunkHash> =
            shard.xorbs[0].chunks.iter().map(|c| keyed_chunk_hash(&key, &c.hash)).collect();
        let got: Vec<ChunkHash> = decoded.xorbs[0].chunks.iter().map(|c| c.hash).collect();
        assert_eq!(got, keyed);
        assert_eq!(decoded.xorbs[0].chunks[0].flags, CHUNK_FLAG_GLOBAL_DEDUP);
        // Footer offsets: lookup tables empty, all at the end of the CAS section.
        let footer_at = bytes.len() - 200;
        assert_eq!(u64_at(&bytes, footer_at + 8), 48);
        assert_eq!(u64_at(&bytes, footer_at + 16), 96);
        assert_eq!(u64_at(&bytes, footer_at + 24), footer_at as u64);
        assert_eq!(u64_at(&bytes, footer_at + 192), footer_at as u64);
    }

    #[test]
    fn unkeyed_dedup_response_keeps_hashes() {
        let shard = sample();
        let bytes = shard.encode_dedup_response(None, None).unwrap_or_default();
        let decoded = Shard::decode(&bytes).unwrap_or_default();
        assert_eq!(decoded.xorbs, shard.xorbs);
        assert_eq!(decoded.footer.and_then(|f| f.hmac_key), None);
        assert_eq!(decoded.footer.and_then(|f| f.key_expiry), None);
    }

    #[test]
    fn full_form_with_lookup_tables() {
        let shard = sample();
        let footer = ShardFooter { creation_timestamp: 5, ..shard.footer_totals() };
        for tables in [false, true] {
            let bytes = shard.encode_with_footer(&footer, tables).unwrap_or_default();
            let extra = if tables { 12 * 3 + 12 * 2 + 16 * 3 } else { 0 };
            assert_eq!(bytes.len(), shard.encode_upload().unwrap_or_default().len() + extra + 200);
            let decoded = Shard::decode(&bytes).ok();
            assert_eq!(decoded, Some(Shard { footer: Some(footer), ..shard.clone() }));
        }
        assert_eq!(footer.materialized_bytes, 400);
        let t = shard.lookups();
        assert!(t.chunks.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(t.files.iter().map(|f| f.1).collect::<Vec<_>>().len(), 3);
        assert!(t.files.contains(&(truncate(&h(8)), 6)));
        assert!(t.files.contains(&(truncate(&h(9)), 8)));
        assert!(t.xorbs.contains(&(truncate(&h(2)), 4)));
    }

    #[test]
    fn encoders_refuse_inconsistent_files() {
        let mut shard = sample();
        shard.files[1].verification = None;
        assert!(matches!(shard.encode_upload(), Err(FormatError::MixedVerification { .. })));
        let mut shard = sample();
        shard.files[0].verification = Some(vec![]);
        assert!(matches!(
            shard.encode_upload(),
            Err(FormatError::VerificationCount { terms: 2, .. })
        ));
        let mut shard = sample();
        shard.xorbs[0].chunks[0].len = u32::MAX;
        assert!(matches!(shard.encode_upload(), Err(FormatError::TooLarge { .. })));
    }

    #[test]
    fn decoder_refuses_mixed_verification() {
        let mut shard = sample();
        for f in &mut shard.files {
            f.verification = None;
        }
        let plain = shard.encode_upload().unwrap_or_default();
        assert!(Shard::decode(&plain).is_ok());
        // Set the verification flag on the middle file alone (it has no terms, so sizes hold).
        let mut mixed = plain.clone();
        let second_file = 48 + 48 * 4;
        mixed[second_file + 35] |= 0x80;
        assert!(matches!(Shard::decode(&mixed), Err(FormatError::MixedVerification { .. })));
    }

    #[test]
    fn every_truncation_fails() {
        let shard = sample();
        let forms = [
            shard.encode_upload().unwrap_or_default(),
            shard.encode_dedup_response(Some(h(3)), Some(9)).unwrap_or_default(),
            shard.encode_with_footer(&shard.footer_totals(), true).unwrap_or_default(),
        ];
        for bytes in forms {
            assert!(Shard::decode(&bytes).is_ok());
            for n in 0..bytes.len() {
                assert!(Shard::decode(&bytes[..n]).is_err(), "prefix {n} of {}", bytes.len());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Shard::decode(&longer).is_err());
        }
    }

    #[test]
    fn bad_headers_and_counts_fail() {
        let bytes = sample().encode_upload().unwrap_or_default();
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'h';
        assert!(matches!(Shard::decode(&bad_magic), Err(FormatError::BadMagic { .. })));
        let mut bad_version = bytes.clone();
        bad_version[32] = 3;
        assert!(matches!(Shard::decode(&bad_version), Err(FormatError::UnsupportedVersion { .. })));
        let mut bad_footer_size = bytes.clone();
        bad_footer_size[40] = 1;
        assert!(matches!(Shard::decode(&bad_footer_size), Err(FormatError::Mismatch { .. })));
        // A huge term count must fail on the length check, not try to allocate.
        let mut huge = bytes.clone();
        huge[84..88].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Shard::decode(&huge), Err(FormatError::Truncated { .. })));
        let mut wrong_total = bytes;
        let cas = 48 + 48 * 13;
        wrong_total[cas + 40] ^= 1;
        assert!(matches!(Shard::decode(&wrong_total), Err(FormatError::Mismatch { .. })));
    }

    fn any_hash() -> impl Strategy<Value = [u8; 32]> {
        any::<[u8; 32]>().prop_map(|mut h| {
            h[0] &= 0x7f; // never the bookend
            h
        })
    }

    fn any_file(verified: bool) -> impl Strategy<Value = ShardFile> {
        let term =
            (any_hash(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(x, u, s, e)| {
                ShardTerm {
                    xorb: XorbHash::from_bytes(x),
                    unpacked_len: u,
                    chunk_start: s,
                    chunk_end: e,
                }
            });
        (any_hash(), proptest::collection::vec(term, 0..4), any::<Option<[u8; 32]>>(), any_hash())
            .prop_map(move |(hash, terms, sha, r)| ShardFile {
                hash: FileHash::from_bytes(hash),
                verification: verified
                    .then(|| terms.iter().map(|_| RangeHash::from_bytes(r)).collect()),
                terms,
                sha256: sha.map(Sha256::from_bytes),
            })
    }

    fn any_xorb() -> impl Strategy<Value = ShardXorb> {
        let chunk = (any_hash(), any::<u32>(), 0u32..200_000, any::<u32>()).prop_map(
            |(h, s, len, flags)| ShardChunk {
                hash: ChunkHash::from_bytes(h),
                unpacked_start: s,
                len,
                flags,
            },
        );
        (any_hash(), any::<u32>(), proptest::collection::vec(chunk, 0..5)).prop_map(
            |(h, bytes_on_disk, chunks)| ShardXorb {
                hash: XorbHash::from_bytes(h),
                bytes_on_disk,
                chunks,
            },
        )
    }

    fn any_shard() -> impl Strategy<Value = Shard> {
        any::<bool>()
            .prop_flat_map(|v| {
                (
                    proptest::collection::vec(any_file(v), 0..4),
                    proptest::collection::vec(any_xorb(), 0..4),
                )
            })
            .prop_map(|(files, xorbs)| Shard { files, xorbs, footer: None })
    }

    proptest! {
        #[test]
        fn round_trip_all_forms(shard in any_shard(), key in any::<Option<[u8; 32]>>(), expiry in 1u64..u64::MAX, tables in any::<bool>()) {
            let upload = shard.encode_upload().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Shard::decode(&upload).ok(), Some(shard.clone()));

            let dedup = shard.encode_dedup_response(key, Some(expiry)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let decoded = Shard::decode(&dedup).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(decoded.files.is_empty());
            prop_assert_eq!(decoded.footer.and_then(|f| f.key_expiry), Some(expiry));
            let unkeyed = shard.encode_dedup_response(None, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Shard::decode(&unkeyed).ok().map(|s| s.xorbs), Some(shard.xorbs.clone()));

            let footer = ShardFooter { hmac_key: key, key_expiry: Some(expiry), creation_timestamp: expiry / 2, ..shard.footer_totals() };
            let full = shard.encode_with_footer(&footer, tables).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let footer = ShardFooter { hmac_key: key.filter(|k| *k != [0; 32]), ..footer };
            prop_assert_eq!(Shard::decode(&full).ok(), Some(Shard { footer: Some(footer), ..shard }));
        }

        #[test]
        fn corrupted_shards_never_panic(
            shard in any_shard(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            form in 0u8..3,
        ) {
            let mut bytes = match form {
                0 => shard.encode_upload(),
                1 => shard.encode_dedup_response(Some([1; 32]), None),
                _ => shard.encode_with_footer(&shard.footer_totals(), true),
            }
            .unwrap_or_default();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x.max(1);
            }
            let _ = Shard::decode(&bytes);
        }

        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), footer in any::<bool>()) {
            let mut bytes = Vec::new();
            put_header(&mut bytes, if footer { 200 } else { 0 });
            bytes.extend_from_slice(&body);
            let _ = Shard::decode(&bytes);
        }
    }
}
