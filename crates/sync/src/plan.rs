//! Pure planning of a push: which local files differ from the remote revision, which chunks
//! the remote lacks, how those chunks pack into new xorbs, and the shard and commit lines that
//! describe the result. No I/O, clock or environment: `push` feeds it hashes and remote answers.
//!
//! ```
//! use std::collections::HashMap;
//! use tessera_xet::hash::chunk_hash;
//! use tessera_sync::plan::{pack, XorbRef};
//! let (a, b) = (chunk_hash(b"a"), chunk_hash(b"b"));
//! let file = vec![(a, 1), (b, 1)];
//! // Nothing is known remotely: both chunks go into new xorb 0, as one term.
//! let p = pack(&[&file[..]], &HashMap::new());
//! assert_eq!(p.new_chunks(), 2);
//! assert_eq!(p.terms[0].len(), 1);
//! assert_eq!(p.terms[0][0].xorb, XorbRef::New(0));
//! ```

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use base64::Engine;

use tessera_protocol::{
    CommitHeader, CommitLine, GitOid, InlineFile, LfsFileOp, PathOp, TreeFile, UploadMode,
};
use tessera_xet::format::{
    CHUNK_FLAG_GLOBAL_DEDUP, MAX_XORB_BYTES, MAX_XORB_CHUNKS, SHARD_HEADER_LEN, Shard, ShardChunk,
    ShardFile, ShardTerm, ShardXorb, XorbChunk,
};
use tessera_xet::hash::{ChunkHash, FileHash, Sha256, XorbHash, keyed_chunk_hash, range_hash};

/// Chunks whose hash is 0 modulo this (and every file's first chunk) may be asked about in
/// global-dedup queries (`xet-protocol.md` §7).
pub const GLOBAL_DEDUP_MODULUS: u64 = 1024;
pub use tessera_protocol::LFS_THRESHOLD;
/// Shards are cut well below the CAS's 64 MiB limit.
pub const SHARD_TARGET_BYTES: usize = 32 << 20;
/// Bytes of one shard record.
const RECORD: usize = 48;

/// A local file, chunked and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Path in the repo (`/`-separated).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Xet file hash.
    pub file_hash: FileHash,
    /// SHA-256 of the content.
    pub sha256: Sha256,
    /// Git blob id, for files small enough to be committed inline.
    pub git_oid: Option<GitOid>,
    /// Chunk hashes and lengths, in order.
    pub chunks: Vec<(ChunkHash, u32)>,
    /// The first 512 bytes (the preupload sample).
    pub sample: Vec<u8>,
}

/// Whether a path is never uploaded: anything under a `.git` or `.cache` folder.
pub fn is_ignored_path(path: &str) -> bool {
    path.split('/').any(|seg| seg == ".git" || seg == ".cache")
}

/// `--include` / `--exclude` globs over repo paths (`*` also matches `/`, as in fnmatch).
#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
}

impl PathFilter {
    /// Builds the filter; an empty `include` list means everything.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, globset::Error> {
        let set = |pats: &[String]| -> Result<Option<globset::GlobSet>, globset::Error> {
            if pats.is_empty() {
                return Ok(None);
            }
            let mut b = globset::GlobSetBuilder::new();
            for p in pats {
                b.add(globset::Glob::new(p)?);
            }
            b.build().map(Some)
        };
        Ok(Self { include: set(include)?, exclude: set(exclude)? })
    }

    /// Whether `path` takes part in the push.
    pub fn allows(&self, path: &str) -> bool {
        !is_ignored_path(path)
            && self.include.as_ref().is_none_or(|s| s.is_match(path))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(path))
    }
}

/// Whether a local file has the content of a remote entry: same Xet hash when the listing gives
/// one, else the same LFS sha256, else (regular files) the same git blob id.
pub fn same_content(local: &LocalFile, remote: &TreeFile) -> bool {
    if local.size != remote.size {
        return false;
    }
    if let Some(x) = remote.xet_hash.as_deref().and_then(|h| FileHash::from_hex(h).ok()) {
        return x == local.file_hash;
    }
    if let Some(lfs) = &remote.lfs {
        return lfs.oid == GitOid::from(local.sha256);
    }
    local.git_oid.as_ref() == Some(&remote.oid)
}

/// What a push changes in the remote revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Indices (into the local files) of files absent remotely.
    pub added: Vec<usize>,
    /// Indices of files whose remote content differs.
    pub updated: Vec<usize>,
    /// Remote paths to delete.
    pub deleted: Vec<String>,
}

impl Diff {
    /// Whether the push changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.deleted.is_empty()
    }

    /// Added and updated files, in local order.
    pub fn changed(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.added.iter().chain(&self.updated).copied().collect();
        v.sort_unstable();
        v
    }
}

/// Compares local files with the remote listing. With `delete`, remote files absent locally
/// are deleted when `may_delete` allows them; `.gitattributes` is never deleted.
pub fn diff(
    local: &[LocalFile],
    remote: &[TreeFile],
    delete: bool,
    may_delete: impl Fn(&str) -> bool,
) -> Diff {
    let by_path: HashMap<&str, &TreeFile> = remote.iter().map(|r| (r.path.as_str(), r)).collect();
    let mut d = Diff::default();
    for (i, f) in local.iter().enumerate() {
        match by_path.get(f.path.as_str()) {
            None => d.added.push(i),
            Some(r) if !same_content(f, r) => d.updated.push(i),
            Some(_) => {}
        }
    }
    if delete {
        let here: HashSet<&str> = local.iter().map(|f| f.path.as_str()).collect();
        d.deleted = remote
            .iter()
            .map(|r| r.path.clone())
            .filter(|p| {
                !here.contains(p.as_str()) && may_delete(p) && !p.ends_with(".gitattributes")
            })
            .collect();
        d.deleted.sort();
    }
    d
}

/// Upload mode by the Hub's rule, for when no preupload answer can be had (a dry run against
/// a repo that does not exist yet): regular for empty files, LFS for large, binary or
/// typically-binary ones.
pub fn guess_upload_mode(path: &str, size: u64, sample: &[u8]) -> UploadMode {
    tessera_protocol::upload_mode(path, size, Some(sample))
}

/// Whether the chunk at `index` of a file may be asked about in a global-dedup query.
pub fn is_key_chunk(index: usize, hash: &ChunkHash) -> bool {
    index == 0 || hash.low_u64() % GLOBAL_DEDUP_MODULUS == 0
}

/// The key chunks of files, deduplicated, in first-seen order.
pub fn key_chunks<'a>(files: impl IntoIterator<Item = &'a [(ChunkHash, u32)]>) -> Vec<ChunkHash> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for chunks in files {
        for (i, (h, _)) in chunks.iter().enumerate() {
            if is_key_chunk(i, h) && seen.insert(*h) {
                out.push(*h);
            }
        }
    }
    out
}

/// Chunks of a global-dedup answer that we hold: `(our chunk hash, xorb, index in xorb)`.
/// When the answer carries an HMAC key, its chunk hashes are keyed; ours are keyed to match.
pub fn match_dedup(answer: &Shard, ours: &[ChunkHash]) -> Vec<(ChunkHash, XorbHash, u32)> {
    let key = answer.footer.and_then(|f| f.hmac_key);
    let mut listed: HashMap<ChunkHash, (XorbHash, u32)> = HashMap::new();
    for x in &answer.xorbs {
        for (i, c) in (0u32..).zip(&x.chunks) {
            listed.entry(c.hash).or_insert((x.hash, i));
        }
    }
    ours.iter()
        .filter_map(|h| {
            let k = key.map_or(*h, |key| keyed_chunk_hash(&key, h));
            listed.get(&k).map(|(x, i)| (*h, *x, *i))
        })
        .collect()
}

/// Which xorb a term reads: one the remote has, or the n-th xorb this push builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XorbRef {
    /// A xorb the remote already holds.
    Remote(XorbHash),
    /// The n-th new xorb of this push.
    New(usize),
}

/// One term of a file: chunks `chunk_start..chunk_end` of a xorb, which are the file's chunks
/// `file_chunks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTerm {
    /// The xorb.
    pub xorb: XorbRef,
    /// First chunk index in the xorb.
    pub chunk_start: u32,
    /// One past the last.
    pub chunk_end: u32,
    /// Sum of the chunk lengths.
    pub unpacked_len: u32,
    /// The same chunks as indices into the file's chunk list.
    pub file_chunks: Range<usize>,
}

/// A chunk to pack into a new xorb: chunk `index` of file `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewChunk {
    /// Index of the file in the list given to [`pack`].
    pub file: usize,
    /// Index of the chunk in that file.
    pub index: usize,
}

/// How a set of files is stored: new xorbs to build and each file's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packing {
    /// The chunks of each new xorb, in order.
    pub xorbs: Vec<Vec<NewChunk>>,
    /// Terms of each file, in the order given.
    pub terms: Vec<Vec<PlannedTerm>>,
    /// Uncompressed bytes of the new chunks.
    pub new_bytes: u64,
}

impl Packing {
    /// Chunks packed into new xorbs.
    pub fn new_chunks(&self) -> usize {
        self.xorbs.iter().map(Vec::len).sum()
    }
}

/// Packs the chunks the remote lacks (`known` maps the ones it has) into new xorbs, each chunk
/// once, and describes every file as terms over remote and new xorbs. Xorbs are cut as
/// [`tessera_xet::format::XorbBuilder`] requires (64 MiB, 8192 chunks).
pub fn pack(files: &[&[(ChunkHash, u32)]], known: &HashMap<ChunkHash, (XorbHash, u32)>) -> Packing {
    let mut p = Packing::default();
    let mut session: HashMap<ChunkHash, (usize, u32)> = HashMap::new();
    let mut open_bytes = 0usize;
    for (fi, chunks) in files.iter().enumerate() {
        let mut terms: Vec<PlannedTerm> = Vec::new();
        for (ci, (h, len)) in chunks.iter().enumerate() {
            let (xorb, idx) = match (known.get(h), session.get(h)) {
                (Some((x, i)), _) => (XorbRef::Remote(*x), *i),
                (None, Some((n, i))) => (XorbRef::New(*n), *i),
                (None, None) => {
                    let (n, i) = place(
                        &mut p,
                        &mut open_bytes,
                        *len as usize,
                        NewChunk { file: fi, index: ci },
                    );
                    session.insert(*h, (n, i));
                    (XorbRef::New(n), i)
                }
            };
            extend_terms(&mut terms, xorb, idx, *len, ci);
        }
        p.terms.push(terms);
    }
    p
}

/// Appends a new chunk to the open xorb, opening another when it would not fit.
fn place(p: &mut Packing, open_bytes: &mut usize, len: usize, chunk: NewChunk) -> (usize, u32) {
    let full = p
        .xorbs
        .last()
        .is_none_or(|x| x.len() >= MAX_XORB_CHUNKS || *open_bytes + len > MAX_XORB_BYTES);
    if full {
        p.xorbs.push(Vec::new());
        *open_bytes = 0;
    }
    *open_bytes += len;
    p.new_bytes += len as u64;
    let n = p.xorbs.len() - 1;
    let x = &mut p.xorbs[n];
    x.push(chunk);
    (n, (x.len() - 1) as u32)
}

/// Extends the last term when the chunk continues it in the same xorb, else starts a term.
fn extend_terms(terms: &mut Vec<PlannedTerm>, xorb: XorbRef, idx: u32, len: u32, ci: usize) {
    if let Some(t) = terms.last_mut() {
        if t.xorb == xorb && t.chunk_end == idx && t.file_chunks.end == ci {
            t.chunk_end += 1;
            t.unpacked_len += len;
            t.file_chunks.end += 1;
            return;
        }
    }
    terms.push(PlannedTerm {
        xorb,
        chunk_start: idx,
        chunk_end: idx + 1,
        unpacked_len: len,
        file_chunks: ci..ci + 1,
    });
}

/// A file's shard entry: its terms (new xorbs named by `new_hashes`), one verification hash
/// per term over the file's own chunk hashes, and its sha256.
pub fn shard_file(
    file: &LocalFile,
    terms: &[PlannedTerm],
    new_hashes: &[XorbHash],
) -> Option<ShardFile> {
    let mut out = Vec::with_capacity(terms.len());
    let mut verification = Vec::with_capacity(terms.len());
    for t in terms {
        let xorb = match t.xorb {
            XorbRef::Remote(x) => x,
            XorbRef::New(n) => *new_hashes.get(n)?,
        };
        out.push(ShardTerm {
            xorb,
            unpacked_len: t.unpacked_len,
            chunk_start: t.chunk_start,
            chunk_end: t.chunk_end,
        });
        let hashes: Vec<ChunkHash> =
            file.chunks.get(t.file_chunks.clone())?.iter().map(|c| c.0).collect();
        verification.push(range_hash(&hashes));
    }
    Some(ShardFile {
        hash: file.file_hash,
        terms: out,
        verification: Some(verification),
        sha256: Some(file.sha256),
    })
}

/// A new xorb's shard entry; chunks in `first_chunks` or with a key hash carry the
/// global-dedup flag.
pub fn shard_xorb(
    hash: XorbHash,
    body_len: usize,
    chunks: &[XorbChunk],
    first_chunks: &HashSet<ChunkHash>,
) -> ShardXorb {
    let chunks = chunks
        .iter()
        .map(|c| {
            let key =
                first_chunks.contains(&c.hash) || c.hash.low_u64() % GLOBAL_DEDUP_MODULUS == 0;
            ShardChunk {
                hash: c.hash,
                unpacked_start: c.unpacked_start,
                len: c.unpacked_len,
                flags: if key { CHUNK_FLAG_GLOBAL_DEDUP } else { 0 },
            }
        })
        .collect();
    ShardXorb { hash, bytes_on_disk: u32::try_from(body_len).unwrap_or(u32::MAX), chunks }
}

/// Splits shard content into shards of about `target` bytes each: xorb-only shards first (so
/// the xorbs are registered before files that use them), then file shards. Files are sorted
/// by hash and listed once, as xet-core does.
pub fn split_shards(mut files: Vec<ShardFile>, xorbs: Vec<ShardXorb>, target: usize) -> Vec<Shard> {
    files.sort_by_key(|f| f.hash);
    files.dedup_by_key(|f| f.hash);
    let base = SHARD_HEADER_LEN + 2 * RECORD;
    let mut out: Vec<Shard> = Vec::new();
    let mut size = usize::MAX;
    for x in xorbs {
        let n = RECORD * (1 + x.chunks.len());
        if size.saturating_add(n) > target {
            out.push(Shard::default());
            size = base;
        }
        size += n;
        if let Some(s) = out.last_mut() {
            s.xorbs.push(x);
        }
    }
    for f in files {
        let n = RECORD * (2 + 2 * f.terms.len());
        if size.saturating_add(n) > target {
            out.push(Shard::default());
            size = base;
        }
        size += n;
        if let Some(s) = out.last_mut() {
            s.files.push(f);
        }
    }
    out
}

/// One operation of the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOp {
    /// A file uploaded through Xet, committed as an LFS pointer.
    Lfs {
        /// Path in the repo.
        path: String,
        /// Its sha256.
        sha256: Sha256,
        /// Its size.
        size: u64,
    },
    /// A small file sent inline.
    Inline {
        /// Path in the repo.
        path: String,
        /// Its bytes.
        content: Vec<u8>,
    },
    /// A file to delete.
    Delete {
        /// Path in the repo.
        path: String,
    },
}

/// The NDJSON lines of a commit whose parent must be `parent`.
pub fn commit_lines(
    summary: &str,
    description: &str,
    parent: Option<&str>,
    ops: Vec<CommitOp>,
) -> Vec<CommitLine> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let header = CommitHeader {
        summary: summary.to_string(),
        description: description.to_string(),
        parent_commit: parent.map(str::to_string),
    };
    let mut lines = vec![CommitLine::Header(header)];
    lines.extend(ops.into_iter().map(|op| match op {
        CommitOp::Lfs { path, sha256, size } => CommitLine::LfsFile(LfsFileOp {
            path,
            algo: Some("sha256".into()),
            oid: sha256.into(),
            size: Some(size),
        }),
        CommitOp::Inline { path, content } => CommitLine::File(InlineFile {
            content: b64.encode(content),
            path,
            encoding: Some("base64".into()),
        }),
        CommitOp::Delete { path } => CommitLine::DeletedFile(PathOp { path }),
    }));
    lines
}

#[cfg(test)]
mod tests {
    // Test fixtures are built in place; a panic is the failure report.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tessera_protocol::LfsInfo;
    use tessera_xet::hash::{chunk_hash, file_hash};

    fn h(i: u32) -> ChunkHash {
        chunk_hash(&i.to_le_bytes())
    }

    fn local(path: &str, content: &[u8]) -> LocalFile {
        let chunks = vec![(chunk_hash(content), content.len() as u32)];
        let leaves: Vec<(ChunkHash, u64)> =
            chunks.iter().map(|(h, l)| (*h, u64::from(*l))).collect();
        LocalFile {
            path: path.into(),
            size: content.len() as u64,
            file_hash: file_hash(&leaves),
            sha256: Sha256::of(content),
            git_oid: Some(tessera_protocol::git_blob_oid(content)),
            chunks,
            sample: content.iter().take(512).copied().collect(),
        }
    }

    fn remote(f: &LocalFile, lfs: bool, xet: bool) -> TreeFile {
        TreeFile {
            oid: f.git_oid.clone().unwrap(),
            size: f.size,
            path: f.path.clone(),
            lfs: lfs.then(|| LfsInfo { oid: f.sha256.into(), size: f.size, pointer_size: 130 }),
            xet_hash: xet.then(|| f.file_hash.to_string()),
        }
    }

    #[test]
    fn diff_finds_added_updated_deleted() {
        let a = local("a.bin", b"one");
        let b = local("b.txt", b"two");
        let c = local("c.txt", b"three");
        let mut b_old = remote(&local("b.txt", b"TWO"), false, false);
        b_old.size = 3;
        let listing = vec![
            remote(&a, true, true),
            b_old,
            remote(&local("gone", b"x"), false, false),
            remote(&local(".gitattributes", b"*"), false, false),
        ];
        let d = diff(&[a.clone(), b, c], &listing, true, |_| true);
        assert_eq!(
            (d.added.clone(), d.updated.clone(), d.deleted.clone()),
            (vec![2], vec![1], vec!["gone".to_string()])
        );
        assert_eq!(d.changed(), vec![1, 2]);
        let keep = diff(&[a], &listing, false, |_| true);
        assert!(keep.deleted.is_empty() && keep.added.is_empty() && keep.updated.is_empty());
    }

    #[test]
    fn same_content_by_xet_lfs_or_git_oid() {
        let f = local("m.onnx", b"weights");
        assert!(same_content(&f, &remote(&f, true, true)));
        assert!(same_content(&f, &remote(&f, true, false)));
        assert!(same_content(&f, &remote(&f, false, false)));
        let other = local("m.onnx", b"WEIGHTS");
        assert!(!same_content(&other, &remote(&f, true, true)));
        assert!(!same_content(&other, &remote(&f, false, false)));
        let mut no_oid = f.clone();
        no_oid.git_oid = None;
        assert!(
            !same_content(&no_oid, &remote(&f, false, false)),
            "unknown git oid counts as changed"
        );
    }

    #[test]
    fn filters_and_ignored_paths() {
        let f = PathFilter::new(&["*.onnx".into(), "cfg/*".into()], &["*half*".into()]).unwrap();
        assert!(f.allows("a/b/model.onnx") && f.allows("cfg/x.json"));
        assert!(!f.allows("model_half.onnx") && !f.allows("README.md"));
        assert!(!PathFilter::default().allows(".git/config"));
        assert!(!PathFilter::default().allows("a/.cache/huggingface/x"));
        assert!(PathFilter::default().allows("a/.gitignore"));
    }

    #[test]
    fn pack_reuses_remote_and_session_chunks() {
        let known: HashMap<ChunkHash, (XorbHash, u32)> =
            [(h(1), (XorbHash::ZERO, 4)), (h(2), (XorbHash::ZERO, 5)), (h(9), (XorbHash::ZERO, 9))]
                .into_iter()
                .collect();
        // File 0: two remote chunks in sequence, then two new; file 1 repeats a new chunk.
        let f0 = vec![(h(1), 10), (h(2), 20), (h(3), 30), (h(4), 40)];
        let f1 = vec![(h(4), 40), (h(3), 30), (h(9), 5)];
        let p = pack(&[&f0, &f1], &known);
        assert_eq!(p.new_chunks(), 2);
        assert_eq!(p.new_bytes, 70);
        let t0 = &p.terms[0];
        assert_eq!(t0.len(), 2);
        assert_eq!(
            (t0[0].xorb, t0[0].chunk_start, t0[0].chunk_end, t0[0].unpacked_len),
            (XorbRef::Remote(XorbHash::ZERO), 4, 6, 30)
        );
        assert_eq!(
            (t0[1].xorb, t0[1].chunk_start, t0[1].chunk_end, t0[1].file_chunks.clone()),
            (XorbRef::New(0), 0, 2, 2..4)
        );
        // Out of order in file 1: three terms, never a backwards range.
        let t1 = &p.terms[1];
        assert_eq!(
            t1.iter().map(|t| (t.chunk_start, t.chunk_end)).collect::<Vec<_>>(),
            vec![(1, 2), (0, 1), (9, 10)]
        );
    }

    #[test]
    fn pack_cuts_xorbs_at_the_chunk_limit() {
        let chunks: Vec<(ChunkHash, u32)> =
            (0..MAX_XORB_CHUNKS as u32 + 3).map(|i| (h(i), 1)).collect();
        let p = pack(&[&chunks], &HashMap::new());
        assert_eq!(p.xorbs.iter().map(Vec::len).collect::<Vec<_>>(), vec![MAX_XORB_CHUNKS, 3]);
        assert_eq!(p.terms[0].len(), 2);
        assert_eq!(p.terms[0][1].xorb, XorbRef::New(1));
    }

    #[test]
    fn shard_entries_verify_like_the_server() {
        let f = local("x", b"hello world");
        let p = pack(&[&f.chunks], &HashMap::new());
        let x = XorbHash::from_bytes([7; 32]);
        let sf = shard_file(&f, &p.terms[0], &[x]).unwrap();
        assert_eq!(sf.terms[0].xorb, x);
        assert_eq!(
            sf.verification.as_ref().unwrap()[0].to_string(),
            "22ef2fdcff5cea306e42ad7e15ed8a0c5e789e7d2ec34658c10d2758946847da"
        );
        assert!(shard_file(&f, &p.terms[0], &[]).is_none(), "unresolved new xorb");
        let shard = Shard { files: vec![sf], xorbs: vec![], footer: None };
        assert!(Shard::decode(&shard.encode_upload().unwrap()).is_ok());
    }

    #[test]
    fn split_puts_xorbs_first_and_respects_the_target() {
        let file = |i: u8| ShardFile {
            hash: FileHash::from_bytes([i; 32]),
            terms: vec![ShardTerm {
                xorb: XorbHash::ZERO,
                unpacked_len: 1,
                chunk_start: 0,
                chunk_end: 1,
            }],
            verification: Some(vec![range_hash(&[h(0)])]),
            sha256: Some(Sha256::default()),
        };
        let xorb = |i: u8| ShardXorb {
            hash: XorbHash::from_bytes([i; 32]),
            bytes_on_disk: 9,
            chunks: vec![ShardChunk { hash: h(0), unpacked_start: 0, len: 1, flags: 0 }; 10],
        };
        let one = split_shards(vec![file(2), file(1), file(2)], vec![xorb(1)], SHARD_TARGET_BYTES);
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].files.iter().map(|f| f.hash.as_bytes()[0]).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let many = split_shards(vec![file(1), file(2)], vec![xorb(1), xorb(2)], 700);
        assert!(
            many.len() >= 3 && many[0].files.is_empty() && !many[0].xorbs.is_empty(),
            "{many:?}"
        );
        assert!(many.iter().all(|s| s.encode_upload().unwrap().len() <= 700));
        assert!(split_shards(vec![], vec![], 700).is_empty());
    }

    #[test]
    fn dedup_answers_match_keyed_hashes() {
        let key = [3u8; 32];
        let listed = [h(1), h(2), h(3)];
        // The server lists raw hashes; encoding the answer keys them, as a CAS does.
        let chunks = listed
            .iter()
            .enumerate()
            .map(|(i, c)| ShardChunk { hash: *c, unpacked_start: i as u32, len: 1, flags: 0 })
            .collect();
        let x = XorbHash::from_bytes([5; 32]);
        let answer = Shard {
            files: vec![],
            xorbs: vec![ShardXorb { hash: x, bytes_on_disk: 0, chunks }],
            footer: None,
        };
        let bytes = answer.encode_dedup_response(Some(key), Some(1)).unwrap();
        let decoded = Shard::decode(&bytes).unwrap();
        assert_ne!(decoded.xorbs[0].chunks[0].hash, h(1), "hashes are keyed on the wire");
        assert_eq!(match_dedup(&decoded, &[h(3), h(7), h(1)]), vec![(h(3), x, 2), (h(1), x, 0)]);
        let plain = Shard::decode(&answer.encode_dedup_response(None, None).unwrap()).unwrap();
        assert_eq!(match_dedup(&plain, &[h(2)]), vec![(h(2), x, 1)]);
    }

    #[test]
    fn key_chunks_are_first_chunks_and_modulus_hits() {
        let hit = (0u32..).map(h).find(|c| c.low_u64() % GLOBAL_DEDUP_MODULUS == 0).unwrap();
        let f0 = [(h(100_000), 1), (hit, 1), (h(100_001), 1)];
        let f1 = [(h(100_000), 1), (h(100_002), 1)];
        assert_eq!(key_chunks([&f0[..], &f1[..]]), vec![h(100_000), hit]);
    }

    #[test]
    fn upload_modes_and_commit_lines() {
        assert_eq!(guess_upload_mode("README.md", 10, b"# hi"), UploadMode::Regular);
        assert_eq!(guess_upload_mode("w.safetensors", 10, b"x"), UploadMode::Lfs);
        assert_eq!(guess_upload_mode("data.dat", 10, b"a\0"), UploadMode::Lfs);
        assert_eq!(guess_upload_mode("empty.onnx", 0, b""), UploadMode::Regular);
        let ops = vec![
            CommitOp::Lfs { path: "m.onnx".into(), sha256: Sha256::of(b"x"), size: 1 },
            CommitOp::Inline { path: "a.txt".into(), content: b"hi".to_vec() },
            CommitOp::Delete { path: "old".into() },
        ];
        let lines = commit_lines("msg", "", Some("abc"), ops);
        let text: Vec<String> = lines.iter().map(|l| serde_json::to_string(l).unwrap()).collect();
        assert_eq!(
            text[0],
            r#"{"key":"header","value":{"summary":"msg","description":"","parentCommit":"abc"}}"#
        );
        assert!(text[1].contains(r#""key":"lfsFile""#) && text[1].contains(r#""algo":"sha256""#));
        assert_eq!(
            text[2],
            r#"{"key":"file","value":{"content":"aGk=","path":"a.txt","encoding":"base64"}}"#
        );
        assert_eq!(text[3], r#"{"key":"deletedFile","value":{"path":"old"}}"#);
    }
}
