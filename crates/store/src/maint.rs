//! Maintenance: usage report, full verification, and garbage collection.

use std::collections::HashSet;

use super::db::{Table, KvBatch};
use super::records::{FileRecord, TreeEntry, XorbMeta};
use super::{Result, Store};
use tessera_xet::hash::{ChunkHash, FileHash, XorbHash, file_hash};

/// Logical versus physical usage.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DuReport {
    /// Files indexed.
    pub files: u64,
    /// Sum of their sizes.
    pub logical_bytes: u64,
    /// Xorbs indexed.
    pub xorbs: u64,
    /// Chunks present locally.
    pub chunks: u64,
    /// Uncompressed bytes of the chunks present.
    pub unique_bytes: u64,
    /// Bytes the xorb files occupy on disk.
    pub physical_bytes: u64,
    /// `logical_bytes / physical_bytes` (0 when nothing is stored).
    pub dedup_ratio: f64,
    /// Flat copies kept for FUSE passthrough (files read whole through a mount).
    pub flat_files: u64,
    /// Bytes those copies occupy, besides `physical_bytes`.
    pub flat_bytes: u64,
}

/// One problem `fsck` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FsckProblem {
    /// What is damaged: `xorb <hash>`, `xorb <hash> chunk <i>`, `file <hash>`, `tree <commit>`.
    pub object: String,
    /// Why.
    pub problem: String,
}

/// What `fsck` checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsckReport {
    /// Chunks read back and verified.
    pub chunks_verified: u64,
    /// File records checked.
    pub files_checked: u64,
    /// Files whose chunks are not all present (lazily fetched; not damage).
    pub files_partial: u64,
    /// Tree entries whose file is not fetched at all yet (lazy mounts; not damage).
    pub files_unfetched: u64,
    /// Flat copies (for passthrough) read back and matched to their file's SHA-256.
    pub flat_verified: u64,
    /// Damage found.
    pub problems: Vec<FsckProblem>,
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// File records dropped.
    pub files_removed: u64,
    /// Xorbs deleted.
    pub xorbs_removed: u64,
    /// Flat copies deleted (their file is no longer indexed).
    pub flat_removed: u64,
    /// Disk bytes freed.
    pub bytes_freed: u64,
}

impl Store {
    /// Logical versus physical usage.
    pub fn du(&self) -> Result<DuReport> {
        let mut r = DuReport::default();
        self.inner.db.for_each(Table::File, |k, v| {
            let rec = FileRecord::decode(file_key(k)?, v)?;
            r.files += 1;
            r.logical_bytes += rec.size;
            Ok(())
        })?;
        self.inner.db.for_each(Table::Xorb, |k, v| {
            let meta = XorbMeta::decode(xorb_key(k)?, v)?;
            r.xorbs += 1;
            for c in meta.chunks.iter().flatten() {
                r.chunks += 1;
                r.unique_bytes += u64::from(c.unpacked_len);
            }
            r.physical_bytes += self.inner.xorbs.disk_usage(&meta.hash);
            Ok(())
        })?;
        for copy in self.flat_copies()? {
            r.flat_files += 1;
            r.flat_bytes += copy.len;
        }
        r.dedup_ratio = if r.physical_bytes == 0 { 0.0 } else { r.logical_bytes as f64 / r.physical_bytes as f64 };
        Ok(r)
    }

    /// Verifies every present chunk against its hash and every index entry against the data.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut r = FsckReport::default();
        let mut metas = std::collections::HashMap::new();
        self.inner.db.for_each(Table::Xorb, |k, v| {
            match XorbMeta::decode(xorb_key(k)?, v) {
                Ok(meta) => {
                    self.verify_xorb(&meta, &mut r);
                    metas.insert(meta.hash, meta);
                }
                Err(e) => r.problems.push(problem(format!("xorb {}", hex::encode(k)), e.to_string())),
            }
            Ok(())
        })?;
        self.inner.db.for_each(Table::File, |k, v| {
            r.files_checked += 1;
            let hash = file_key(k)?;
            match FileRecord::decode(hash, v) {
                Ok(rec) => check_file(&rec, &metas, &mut r),
                Err(e) => r.problems.push(problem(format!("file {hash}"), e.to_string())),
            }
            Ok(())
        })?;
        self.check_trees(&mut r)?;
        self.check_flat_copies(&mut r)?;
        Ok(r)
    }

    /// A flat copy is served to readers without this process seeing the bytes, so it must
    /// still equal its file: same size, same SHA-256.
    fn check_flat_copies(&self, r: &mut FsckReport) -> Result<()> {
        for copy in self.flat_copies()? {
            let Some(rec) = self.file(&copy.file)? else { continue };
            let object = format!("flat copy {}", copy.path.display());
            if copy.len != rec.size {
                r.problems.push(problem(object, format!("{} bytes, the file has {}", copy.len, rec.size)));
                continue;
            }
            match super::flat::sha256_of_path(&copy.path) {
                Ok(sha) if sha == rec.sha256 => r.flat_verified += 1,
                Ok(_) => r.problems.push(problem(object, "SHA-256 differs from the file's".into())),
                Err(e) => r.problems.push(problem(object, e.to_string())),
            }
        }
        Ok(())
    }

    fn verify_xorb(&self, meta: &XorbMeta, r: &mut FsckReport) {
        for (i, c) in meta.chunks.iter().enumerate() {
            let Some(c) = c else { continue };
            let outcome = self
                .inner
                .xorbs
                .read(&meta.hash, u64::from(c.byte_start), u64::from(c.byte_end))
                .and_then(|raw| super::codec::unpack_chunk(&raw, &c.hash));
            match outcome {
                Ok(data) if data.len() == c.unpacked_len as usize => r.chunks_verified += 1,
                Ok(_) => r.problems.push(problem(format!("xorb {} chunk {i}", meta.hash), "length differs from index".into())),
                Err(e) => r.problems.push(problem(format!("xorb {} chunk {i}", meta.hash), e.to_string())),
            }
        }
    }

    fn check_trees(&self, r: &mut FsckReport) -> Result<()> {
        self.inner.db.for_each(Table::Tree, |k, v| {
            let commit = String::from_utf8_lossy(k).into_owned();
            let Ok(entries) = serde_json::from_slice::<Vec<TreeEntry>>(v) else {
                r.problems.push(problem(format!("tree {commit}"), "does not decode".into()));
                return Ok(());
            };
            // A lazily resolved tree names files before their bytes arrive: not damage.
            for e in entries {
                if self.inner.db.get(Table::File, e.file.as_bytes())?.is_none() {
                    r.files_unfetched += 1;
                }
            }
            Ok(())
        })
    }

    /// Deletes what no root holds (`roots.rs`: pins, recorded trees, hub commits' trees); never
    /// what one holds.
    /// Index entries go first, files after, so a crash in between leaves only orphan files,
    /// which the next run removes.
    pub fn gc(&self) -> Result<GcReport> {
        let roots = self.inner.roots_lock.write();
        let live_files = self.inner.db.rooted_files()?;
        let mut live_xorbs: HashSet<XorbHash> = HashSet::new();
        let mut batch = KvBatch::default();
        let mut report = GcReport::default();
        self.inner.db.for_each(Table::File, |k, v| {
            let rec = FileRecord::decode(file_key(k)?, v)?;
            if live_files.contains(&rec.hash) {
                live_xorbs.extend(rec.terms.iter().map(|t| t.xorb));
            } else {
                batch.delete(Table::File, k.to_vec());
                batch.delete(Table::Sha, rec.sha256.as_bytes().to_vec());
                report.files_removed += 1;
            }
            Ok(())
        })?;
        let mut dead_xorbs = Vec::new();
        self.inner.db.for_each(Table::Xorb, |k, v| {
            let meta = XorbMeta::decode(xorb_key(k)?, v)?;
            if !live_xorbs.contains(&meta.hash) {
                batch.delete(Table::Xorb, k.to_vec());
                for c in meta.chunks.iter().flatten() {
                    batch.delete(Table::Chunk, c.hash.as_bytes().to_vec());
                }
                dead_xorbs.push(meta.hash);
            }
            Ok(())
        })?;
        self.inner.db.write(batch)?;
        drop(roots);
        self.inner.cache.clear();
        for hash in self.inner.xorbs.list()? {
            if !live_xorbs.contains(&hash) {
                report.bytes_freed += self.inner.xorbs.remove(&hash)?;
                report.xorbs_removed += 1;
            }
        }
        self.inner.xorbs.clean_tmp()?;
        self.gc_flat_copies(&mut report)?;
        Ok(report)
    }

    /// Deletes flat copies of files no longer indexed, and partial ones.
    fn gc_flat_copies(&self, report: &mut GcReport) -> Result<()> {
        for copy in self.flat_copies()? {
            if self.file(&copy.file)?.is_none() {
                std::fs::remove_file(&copy.path).map_err(|e| super::StoreError::io("remove", &copy.path, e))?;
                report.flat_removed += 1;
                report.bytes_freed += copy.len;
            }
        }
        report.bytes_freed += self.remove_flat_leftovers()?;
        Ok(())
    }
}

fn check_file(rec: &FileRecord, metas: &std::collections::HashMap<XorbHash, XorbMeta>, r: &mut FsckReport) {
    let mut leaves: Vec<(ChunkHash, u64)> = Vec::new();
    let mut partial = false;
    for t in &rec.terms {
        let Some(meta) = metas.get(&t.xorb) else {
            partial = true;
            continue;
        };
        let mut sum = 0u64;
        for idx in t.chunk_start..t.chunk_end {
            match meta.chunks.get(idx as usize) {
                Some(Some(c)) => {
                    sum += u64::from(c.unpacked_len);
                    leaves.push((c.hash, u64::from(c.unpacked_len)));
                }
                _ => partial = true,
            }
        }
        if !partial && sum != u64::from(t.unpacked_len) {
            r.problems.push(problem(format!("file {}", rec.hash), format!("term in xorb {} has wrong length", t.xorb)));
        }
    }
    if partial {
        r.files_partial += 1;
    } else if file_hash(&leaves) != rec.hash {
        r.problems.push(problem(format!("file {}", rec.hash), "chunks do not hash to the file hash".into()));
    }
}

fn problem(object: String, problem: String) -> FsckProblem {
    FsckProblem { object, problem }
}

pub(super) fn xorb_key(k: &[u8]) -> Result<XorbHash> {
    k.try_into().map(XorbHash::from_bytes).map_err(|_| bad_key("xorb", k))
}

fn file_key(k: &[u8]) -> Result<FileHash> {
    k.try_into().map(FileHash::from_bytes).map_err(|_| bad_key("file", k))
}

fn bad_key(what: &'static str, k: &[u8]) -> super::StoreError {
    super::StoreError::Record(super::RecordError { what, len: k.len() })
}
