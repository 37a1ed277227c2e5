//! Typed Xet hashes: chunk, xorb, file and term-verification hashes, plus SHA-256.
//!
//! Every hash here is the one `hf_xet` and the Hub compute for the same bytes
//! (`xet-protocol.md` §2). Each kind is its own newtype so a xorb hash can never be passed where
//! a file hash is expected; all share the Xet string form, whose quirk is that each 8-byte group
//! of the raw bytes is printed reversed.
//!
//! ```
//! use tessera_xet::hash::{chunk_hash, file_hash, ChunkHash};
//! let c = chunk_hash(b"hello world");
//! assert_eq!(c.to_string(), "4e39378b9d359f118190557a1f44130219a54e5fcfa07bd96cf50b466fe651b1");
//! let f = file_hash(&[(c, 11)]);
//! assert_eq!(f.to_string(), "f15edd43b7e85cfd25e2758ffe13b99fdd09dfa817e8d9f6548722a7a126db7f");
//! ```

use std::fmt;
use std::str::FromStr;

use sha2::Digest;

/// Key of the chunk hash (keyed BLAKE3 over the chunk bytes).
const DATA_KEY: [u8; 32] =
    hex32("6697f5775b9550de3135cbaca597181c9de421109beb2b58b4d0b04b93adf229");
/// Key of Merkle internal nodes.
const INTERNAL_NODE_KEY: [u8; 32] =
    hex32("017ec5c7a5472996fd946666b48a02e65ddd536f37c76dd2f86352e64a53713f");
/// Key of term verification (range) hashes.
const VERIFICATION_KEY: [u8; 32] =
    hex32("7f1857d6ce56ed66127ff913e7a5c3f3a4cd26d5b5db49e64124987f28fb94c3");

/// Compile-time hex decoding of the protocol keys, so they read as in the spec.
const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex in key constant"),
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// A hash string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hash {input:?}: expected 64 hex digits")]
pub struct ParseHashError {
    /// The rejected input, truncated to 80 characters.
    pub input: String,
}

/// Raw 32 bytes shared by every Xet hash kind.
fn to_xet_hex(raw: &[u8; 32]) -> String {
    let mut swapped = *raw;
    for group in swapped.chunks_exact_mut(8) {
        group.reverse();
    }
    hex::encode(swapped)
}

fn from_xet_hex(s: &str) -> Result<[u8; 32], ParseHashError> {
    let err = || ParseHashError { input: s.chars().take(80).collect() };
    if s.len() != 64 {
        return Err(err());
    }
    let mut raw = [0u8; 32];
    hex::decode_to_slice(s, &mut raw).map_err(|_| err())?;
    for group in raw.chunks_exact_mut(8) {
        group.reverse();
    }
    Ok(raw)
}

macro_rules! xet_hash_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The all-zero hash (empty file, empty xorb).
            pub const ZERO: Self = Self([0; 32]);

            /// Wraps raw bytes as stored in shards and xorb footers.
            pub const fn from_bytes(raw: [u8; 32]) -> Self {
                Self(raw)
            }

            /// The raw bytes, as written in binary formats.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Raw bytes 24..32 as a little-endian u64: the value `hash % n` is taken of.
            pub fn low_u64(&self) -> u64 {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.0[24..32]);
                u64::from_le_bytes(b)
            }

            /// Parses the Xet string form (64 lowercase or uppercase hex digits).
            pub fn from_hex(s: &str) -> Result<Self, ParseHashError> {
                from_xet_hex(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&to_xet_hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), to_xet_hex(&self.0))
            }
        }

        impl FromStr for $name {
            type Err = ParseHashError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

xet_hash_type!(
    /// Keyed BLAKE3 of one chunk's bytes: the unit of deduplication.
    ChunkHash
);
xet_hash_type!(
    /// Merkle root over a xorb's chunks: the xorb's name in the CAS.
    XorbHash
);
xet_hash_type!(
    /// Xet file id: keyed hash of the Merkle root over all of a file's chunks.
    FileHash
);
xet_hash_type!(
    /// Verification hash of one term's chunk range, sent in shards to prove possession.
    RangeHash
);

/// Standard SHA-256 of a file: the Hub's LFS oid, printed as ordinary hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    /// Wraps a standard digest.
    pub const fn from_bytes(raw: [u8; 32]) -> Self {
        Self(raw)
    }

    /// The standard digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// SHA-256 of a byte slice.
    pub fn of(data: &[u8]) -> Self {
        Self(sha2::Sha256::digest(data).into())
    }

    /// The bytes as stored in a shard's `FileMetadataExt`: each 8-byte group reversed, so the
    /// Xet string form of the stored bytes equals the standard hex (`xet-protocol.md` §2.3).
    pub fn to_shard_bytes(&self) -> [u8; 32] {
        let mut out = self.0;
        for group in out.chunks_exact_mut(8) {
            group.reverse();
        }
        out
    }

    /// Inverse of [`Sha256::to_shard_bytes`].
    pub fn from_shard_bytes(stored: [u8; 32]) -> Self {
        let mut out = stored;
        for group in out.chunks_exact_mut(8) {
            group.reverse();
        }
        Self(out)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, ParseHashError> {
        let mut raw = [0u8; 32];
        hex::decode_to_slice(s, &mut raw)
            .map_err(|_| ParseHashError { input: s.chars().take(80).collect() })?;
        Ok(Self(raw))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", hex::encode(self.0))
    }
}

impl FromStr for Sha256 {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl serde::Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental SHA-256, for streaming ingest.
#[derive(Clone, Default)]
pub struct Sha256Hasher(sha2::Sha256);

impl Sha256Hasher {
    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Sha256 {
        Sha256(self.0.finalize().into())
    }
}

/// Hash of one chunk's bytes.
pub fn chunk_hash(data: &[u8]) -> ChunkHash {
    ChunkHash(*blake3::keyed_hash(&DATA_KEY, data).as_bytes())
}

/// The Merkle node over a group of (hash, size) children: hash of their text listing.
fn merge_group(group: &[([u8; 32], u64)]) -> ([u8; 32], u64) {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(group.len() * 90);
    let mut size = 0u64;
    for (h, s) in group {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{} : {}", to_xet_hex(h), s);
        size += s;
    }
    (*blake3::keyed_hash(&INTERNAL_NODE_KEY, text.as_bytes()).as_bytes(), size)
}

/// How many of the next nodes form one group: content-defined, 3 to 9 (mean 4).
fn next_group_len(rest: &[([u8; 32], u64)]) -> usize {
    if rest.len() <= 2 {
        return rest.len();
    }
    let max = rest.len().min(9);
    for (j, node) in rest.iter().enumerate().take(max).skip(2) {
        if XorbHash(node.0).low_u64() % 4 == 0 {
            return j + 1;
        }
    }
    max
}

/// Root of Xet's content-defined Merkle tree over (hash, size) leaves.
fn merkle_root(leaves: &[(ChunkHash, u64)]) -> [u8; 32] {
    let mut level: Vec<([u8; 32], u64)> = leaves.iter().map(|(h, s)| (h.0, *s)).collect();
    if level.is_empty() {
        return [0; 32];
    }
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len() / 4 + 1);
        let mut rest = &level[..];
        while !rest.is_empty() {
            let n = next_group_len(rest);
            next.push(merge_group(&rest[..n]));
            rest = &rest[n..];
        }
        level = next;
    }
    level[0].0
}

/// Xorb hash: the Merkle root over the xorb's chunks in order.
pub fn xorb_hash(chunks: &[(ChunkHash, u64)]) -> XorbHash {
    XorbHash(merkle_root(chunks))
}

/// File hash: keyed (zero key) BLAKE3 of the Merkle root over all of a file's chunks.
/// The empty file hashes to all zeros.
pub fn file_hash(chunks: &[(ChunkHash, u64)]) -> FileHash {
    if chunks.is_empty() {
        return FileHash::ZERO;
    }
    FileHash(*blake3::keyed_hash(&[0u8; 32], &merkle_root(chunks)).as_bytes())
}

/// Verification hash of a term: keyed BLAKE3 over the raw chunk hashes of its range.
pub fn range_hash(chunks: &[ChunkHash]) -> RangeHash {
    let mut h = blake3::Hasher::new_keyed(&VERIFICATION_KEY);
    for c in chunks {
        h.update(&c.0);
    }
    RangeHash(*h.finalize().as_bytes())
}

/// A chunk hash keyed with a global-dedup response key, as servers hide raw hashes.
pub fn keyed_chunk_hash(key: &[u8; 32], chunk: &ChunkHash) -> ChunkHash {
    ChunkHash(*blake3::keyed_hash(key, &chunk.0).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> ChunkHash {
        ChunkHash::from_hex(s).unwrap_or_default()
    }

    #[test]
    fn string_form_reverses_each_word() {
        let raw: [u8; 32] = std::array::from_fn(|i| i as u8);
        let s = XorbHash::from_bytes(raw).to_string();
        assert_eq!(s, "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918");
        assert_eq!(XorbHash::from_hex(&s), Ok(XorbHash::from_bytes(raw)));
        assert!(XorbHash::from_hex("zz").is_err());
    }

    #[test]
    fn hello_world_vectors() {
        let c = chunk_hash(b"hello world");
        assert_eq!(
            c.to_string(),
            "4e39378b9d359f118190557a1f44130219a54e5fcfa07bd96cf50b466fe651b1"
        );
        assert_eq!(xorb_hash(&[(c, 11)]).to_string(), c.to_string());
        assert_eq!(
            range_hash(&[c]).to_string(),
            "22ef2fdcff5cea306e42ad7e15ed8a0c5e789e7d2ec34658c10d2758946847da"
        );
        assert_eq!(
            chunk_hash(b"").to_string(),
            "e0f2cf784e7e5f10c34f84af150e9a5ff9664216debad915364d741049870f67"
        );
    }

    #[test]
    fn merkle_small_vectors() {
        let a = h("cfc5d07f6f03c29bbf424132963fe08d19a37d5757aaf520bf08119f05cd56d6");
        let b = h("c3e67584b5c4fc2a89837ec39e40f2c8a6bb0b2987ac94cd4b31e5fbdd210a72");
        let c = h("0d2beb91b9196929a5ddec9f6e306924ddf4a24268e3e59fd8464738d525af37");
        assert_eq!(xorb_hash(&[]), XorbHash::ZERO);
        assert_eq!(file_hash(&[]), FileHash::ZERO);
        assert_eq!(
            file_hash(&[(ChunkHash::ZERO, 0)]).to_string(),
            "638a6bc391964a85939d48f008e8bdbae6a7975e7ca2d87a3ce2492f4e4d8a4c"
        );
        assert_eq!(
            file_hash(&[(a, 100)]).to_string(),
            "8e16257caa3fe079d484d872a8975264b2ff683b0d6db9028cc7c0f968a45661"
        );
        let three = [(a, 100), (b, 200), (c, 300)];
        assert_eq!(
            xorb_hash(&three).to_string(),
            "71ec1275fca074724e2dd666921b3277c7cee603e4d025bcab2d4050015be2bc"
        );
        assert_eq!(
            file_hash(&three).to_string(),
            "54e55dccc6653c612bdb5576c5d3cb34bb31bc4e100248abccf4c908b3ef7715"
        );
        let two = [(a, 100), (ChunkHash::ZERO, 0)];
        assert_eq!(
            xorb_hash(&two).to_string(),
            "e8660f81494ca836a58e395c1395ef97870ed71e2b113eec1fab6b3361f46dd6"
        );
        assert_eq!(
            file_hash(&two).to_string(),
            "274d92f7e2acebaa2b8d63c0b5e7a4fc15814a606e3e3825d55609e671bcc5d9"
        );
    }

    #[test]
    fn sha256_shard_byte_order() {
        let s = Sha256::of(b"hello world");
        assert!(s.to_string().starts_with("b94d27b9934d3e08"));
        let stored = s.to_shard_bytes();
        assert_eq!(hex::encode(&stored[..8]), "083e4d93b9274db9");
        assert_eq!(Sha256::from_shard_bytes(stored), s);
        assert_eq!(XorbHash::from_bytes(stored).to_string(), s.to_string());
    }
}
