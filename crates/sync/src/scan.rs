//! The local side of a push: walking the folder (skipping `.git/` and `.cache/`, applying the
//! include/exclude filter) and chunking and hashing its files on every core.

use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::SyncError;
use super::plan::{LFS_THRESHOLD, LocalFile, PathFilter};
use tessera_xet::chunking::parallel::chunk_boundaries_parallel;
use tessera_xet::chunking::stream::chunk_stream;
use tessera_xet::hash::{ChunkHash, Sha256, chunk_hash, file_hash};

/// Files up to this size are read whole; larger ones are streamed window by window.
const IN_MEMORY: u64 = 16 << 20;
/// Bytes of the preupload sample.
const SAMPLE: usize = 512;

/// A file found under the folder.
#[derive(Debug, Clone)]
pub(crate) struct FoundFile {
    /// Path in the repo.
    pub(crate) path: String,
    /// Where it is on disk.
    pub(crate) abs: PathBuf,
    /// Size when listed.
    pub(crate) size: u64,
}

/// Every file under `dir` that `filter` allows, sorted by repo path. Symlinks to files are
/// followed; symlinks to folders are not (no loops).
pub(crate) fn walk(dir: &Path, filter: &PathFilter) -> Result<Vec<FoundFile>, SyncError> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| SyncError::Usage(format!("cannot read folder {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(SyncError::Usage(format!("{} is not a folder", dir.display())));
    }
    let mut out = Vec::new();
    walk_into(dir, "", filter, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk_into(
    dir: &Path,
    prefix: &str,
    filter: &PathFilter,
    out: &mut Vec<FoundFile>,
) -> Result<(), SyncError> {
    let local = |e| SyncError::io(dir)(e);
    for entry in std::fs::read_dir(dir).map_err(local)? {
        let entry = entry.map_err(local)?;
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            SyncError::Usage(format!("{}: file name is not UTF-8", entry.path().display()))
        })?;
        let path = format!("{prefix}{name}");
        let kind = entry.file_type().map_err(local)?;
        if kind.is_dir() {
            if name != ".git" && name != ".cache" {
                walk_into(&entry.path(), &format!("{path}/"), filter, out)?;
            }
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
        if !meta.is_file() || !filter.allows(&path) {
            continue;
        }
        tessera_protocol::normalize_repo_path(&path)
            .map_err(|e| SyncError::Usage(format!("cannot push {path:?}: {e}")))?;
        out.push(FoundFile { path, abs: entry.path(), size: meta.len() });
    }
    Ok(())
}

/// Chunks and hashes every file, several at a time; `progress` gets byte counts as they finish.
pub(crate) fn hash_files(
    files: &[FoundFile],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<LocalFile>, SyncError> {
    files.par_iter().map(|f| hash_file(f, progress)).collect()
}

fn hash_file(f: &FoundFile, progress: &(dyn Fn(u64) + Sync)) -> Result<LocalFile, SyncError> {
    let local = |e| SyncError::io(&f.abs)(e);
    if f.size <= IN_MEMORY {
        let data = std::fs::read(&f.abs).map_err(local)?;
        progress(data.len() as u64);
        return Ok(hash_bytes(&f.path, &data));
    }
    let file = std::fs::File::open(&f.abs).map_err(local)?;
    let mut chunks: Vec<(ChunkHash, u32)> = Vec::new();
    let mut sample = Vec::with_capacity(SAMPLE);
    let summary =
        chunk_stream::<_, std::io::Error>(std::io::BufReader::with_capacity(0, file), |w| {
            if sample.is_empty() {
                sample.extend_from_slice(&w.data[..w.data.len().min(SAMPLE)]);
            }
            let mut start = 0;
            for (end, h) in w.ends.iter().zip(w.hashes) {
                chunks.push((*h, (end - start) as u32));
                start = *end;
            }
            progress(start as u64);
            Ok(())
        })
        .map_err(local)?;
    Ok(LocalFile {
        path: f.path.clone(),
        size: summary.size,
        file_hash: summary.file_hash,
        sha256: summary.sha256,
        git_oid: None,
        chunks,
        sample,
    })
}

/// The identity of bytes held in memory.
pub(crate) fn hash_bytes(path: &str, data: &[u8]) -> LocalFile {
    let (sha256, (ends, hashes)) = rayon::join(
        || Sha256::of(data),
        || {
            let ends = chunk_boundaries_parallel(data, rayon::current_num_threads());
            let hashes: Vec<ChunkHash> = (0..ends.len())
                .into_par_iter()
                .map(|i| chunk_hash(&data[if i == 0 { 0 } else { ends[i - 1] }..ends[i]]))
                .collect();
            (ends, hashes)
        },
    );
    let mut start = 0;
    let chunks: Vec<(ChunkHash, u32)> = ends
        .iter()
        .zip(hashes)
        .map(|(end, h)| {
            let len = (end - start) as u32;
            start = *end;
            (h, len)
        })
        .collect();
    let leaves: Vec<(ChunkHash, u64)> = chunks.iter().map(|(h, l)| (*h, u64::from(*l))).collect();
    LocalFile {
        path: path.to_string(),
        size: data.len() as u64,
        file_hash: file_hash(&leaves),
        sha256,
        git_oid: (data.len() as u64 <= LFS_THRESHOLD).then(|| tessera_protocol::git_blob_oid(data)),
        chunks,
        sample: data[..data.len().min(SAMPLE)].to_vec(),
    }
}

/// Reads a whole small file again (inline commit content), checking it did not change.
pub(crate) fn read_unchanged(f: &FoundFile, expected: &LocalFile) -> Result<Vec<u8>, SyncError> {
    let mut data = Vec::with_capacity(expected.size as usize);
    std::fs::File::open(&f.abs)
        .and_then(|mut file| file.read_to_end(&mut data))
        .map_err(SyncError::io(&f.abs))?;
    if Sha256::of(&data) != expected.sha256 {
        return Err(changed(f));
    }
    Ok(data)
}

/// The error for a file modified while it was being pushed.
pub(crate) fn changed(f: &FoundFile) -> SyncError {
    SyncError::Changed { path: f.abs.clone() }
}

#[cfg(test)]
mod tests {
    // Test fixtures are built in place; a panic is the failure report.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn streamed_and_in_memory_hashes_agree() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(IN_MEMORY as usize + 300_000))
            .map(|i| (i as u64).wrapping_mul(2654435761) as u8 ^ (i >> 13) as u8)
            .collect();
        let p = dir.path().join("big.bin");
        std::fs::write(&p, &data).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), b"ref").unwrap();
        std::fs::write(dir.path().join("small.txt"), b"hello world").unwrap();
        let found = walk(dir.path(), &PathFilter::default()).unwrap();
        assert_eq!(
            found.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            vec!["big.bin", "small.txt"]
        );
        let hashed = hash_files(&found, &|_| {}).unwrap();
        let whole = hash_bytes("big.bin", &data);
        assert_eq!(
            (hashed[0].file_hash, hashed[0].sha256, &hashed[0].chunks),
            (whole.file_hash, whole.sha256, &whole.chunks)
        );
        assert_eq!(hashed[0].sample, data[..SAMPLE]);
        assert_eq!(
            hashed[1].file_hash.to_string(),
            "f15edd43b7e85cfd25e2758ffe13b99fdd09dfa817e8d9f6548722a7a126db7f"
        );
        assert!(walk(&dir.path().join("nope"), &PathFilter::default()).is_err());
    }
}
