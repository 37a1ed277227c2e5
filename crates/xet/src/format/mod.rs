//! Byte codecs of the Xet formats: chunks, xorbs, xorb footers and MDB shards
//! (`xet-protocol.md` §3–4, layouts summarised in `docs/format.md`).
//!
//! Everything here is pure: bytes in, values out, no I/O, clock or environment, so the store,
//! the Hub client and the CAS server share one implementation and the decoders can be fuzzed.
//! Decoders treat input as hostile: every count and length is checked against the remaining
//! input with checked arithmetic before anything is allocated, and failures are
//! [`FormatError`]s, never panics.
//!
//! - [`encode_chunk`] / [`decode_chunk`]: one chunk (8-byte header + None, LZ4 or BG4+LZ4
//!   payload), with the scheme chosen as `hf_xet` chooses it.
//! - [`XorbBuilder`] builds the upload form of a xorb (concatenated chunks, no footer);
//!   [`parse_xorb`] reads a body with or without footer, decoding and hashing every chunk;
//!   [`XorbFooter`] is the stored V1 footer.
//! - [`Shard`] encodes the upload and dedup-response forms of a shard and decodes any form.
//!
//! ```
//! use tessera_xet::format::{parse_xorb, CompressionPolicy, XorbBuilder};
//! let mut builder = XorbBuilder::new(CompressionPolicy::Auto);
//! builder.push(b"hello world")?;
//! let xorb = builder.finish();
//! assert_eq!(xorb.hash.to_string(), "4e39378b9d359f118190557a1f44130219a54e5fcfa07bd96cf50b466fe651b1");
//! let parsed = parse_xorb(&xorb.body)?;
//! assert_eq!(parsed.hash, xorb.hash);
//! assert_eq!(parsed.chunks, xorb.chunks);
//! # Ok::<(), tessera_xet::format::FormatError>(())
//! ```

mod bg4;
mod chunk;
mod cursor;
mod shard;
mod xorb;

pub use bg4::{bg4_recommended, bg4_regroup_into, bg4_split_into};
pub use chunk::{
    CHUNK_HEADER_LEN, ChunkDecoder, ChunkHeader, CompressionPolicy, CompressionScheme,
    MAX_CHUNK_LEN, MAX_COMPRESSED_CHUNK_LEN, compress_chunk_for_store, decode_chunk,
    decode_chunk_into, decompress_chunk, encode_chunk, encode_chunk_into, max_encoded_len,
};
pub use shard::{
    CHUNK_FLAG_GLOBAL_DEDUP, SHARD_FOOTER_LEN, SHARD_HEADER_LEN, Shard, ShardChunk, ShardFile,
    ShardFooter, ShardTerm, ShardXorb,
};
pub use xorb::{
    BuiltXorb, MAX_XORB_BYTES, MAX_XORB_CHUNKS, ParsedXorb, RawChunk, RawChunks, XORB_FOOTER_MAGIC,
    XorbBuilder, XorbChunk, XorbFooter, XorbFooterEntry, iter_chunks, parse_xorb, parse_xorb_with,
    serialize_xorb,
};

use crate::hash::{FileHash, XorbHash};

/// Why bytes could not be decoded (or, for a few encoders, values could not be encoded).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ends before a field or section it declares.
    #[error("{what} at byte {offset} needs {needed} bytes, only {available} left")]
    Truncated {
        /// The field or section being read.
        what: &'static str,
        /// Where it starts, from the start of the decoded input.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the input.
        available: usize,
    },
    /// A magic tag or section identifier is wrong.
    #[error("{what}: wrong magic bytes")]
    BadMagic {
        /// The tag that did not match.
        what: &'static str,
    },
    /// A version field this code does not know.
    #[error("{what}: unsupported version {version}")]
    UnsupportedVersion {
        /// The structure carrying the version.
        what: &'static str,
        /// The version found.
        version: u64,
    },
    /// A chunk header names a compression scheme other than 0, 1 or 2.
    #[error("unknown chunk compression scheme {scheme}")]
    UnknownScheme {
        /// The scheme byte found.
        scheme: u8,
    },
    /// A length or count is over its format limit.
    #[error("{what} is {value}, over the limit of {max}")]
    TooLarge {
        /// The quantity.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// A xorb holds a chunk of zero bytes, which no chunker produces.
    #[error("empty chunk")]
    EmptyChunk,
    /// Two fields that must agree do not.
    #[error("{what}: expected {expected}, found {actual}")]
    Mismatch {
        /// The quantity.
        what: &'static str,
        /// The value implied by the rest of the input.
        expected: u64,
        /// The value found.
        actual: u64,
    },
    /// An LZ4 payload is not a valid frame.
    #[error("LZ4 payload does not decode")]
    Decompress {
        /// The LZ4 decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// LZ4 compression failed (writing to memory, so not expected in practice).
    #[error("LZ4 compression failed")]
    Compress {
        /// The LZ4 encoder's error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes follow the end of a structure that must end the input.
    #[error("{what}: {len} unexpected bytes at byte {offset}")]
    TrailingBytes {
        /// The structure that should have ended the input.
        what: &'static str,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        len: usize,
    },
    /// One chunk of a xorb is invalid.
    #[error("xorb chunk {index} at byte {offset}")]
    XorbChunk {
        /// The chunk's index in the xorb.
        index: usize,
        /// Where its header starts.
        offset: usize,
        /// What is wrong with it.
        #[source]
        source: Box<FormatError>,
    },
    /// A xorb footer names a different hash than its chunks produce.
    #[error("xorb footer names {stored}, the chunks hash to {computed}")]
    XorbHashMismatch {
        /// The hash in the footer.
        stored: XorbHash,
        /// The hash of the decoded chunks.
        computed: XorbHash,
    },
    /// A xorb footer entry disagrees with the chunk it describes.
    #[error("xorb footer {field} of chunk {index} disagrees with the chunk data")]
    FooterMismatch {
        /// The footer field.
        field: &'static str,
        /// The chunk index.
        index: usize,
    },
    /// Adding a chunk would pass a xorb's byte or chunk limit.
    #[error("xorb full: {chunks} chunks, {bytes} bytes; cannot add {len} more bytes")]
    XorbFull {
        /// Chunks already in the xorb.
        chunks: usize,
        /// Uncompressed bytes already in the xorb.
        bytes: u64,
        /// Length of the chunk refused.
        len: usize,
    },
    /// Only some files of a shard carry verification entries.
    #[error("file {file}: verification entries must be on every file of a shard or on none")]
    MixedVerification {
        /// The first file that differs from the ones before it.
        file: FileHash,
    },
    /// A file's verification list is not one entry per term.
    #[error("file {file}: {terms} terms but {verification} verification entries")]
    VerificationCount {
        /// The file.
        file: FileHash,
        /// Its terms.
        terms: usize,
        /// Its verification entries.
        verification: usize,
    },
}
