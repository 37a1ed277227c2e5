//! `tessera hub fsck` and `tessera hub gc` over a bucket (`server::bucket` for the layout).
//!
//! What is referenced: every commit record in the bucket (history stays readable by commit id,
//! so a moved branch does not free its old files) names a tree; a tree names files; a file
//! record names xorbs and its SHA-256 alias; a shard is referenced while any file it defines
//! is. Metadata objects (repos, refs, commits, trees, grants) are never collected.
//!
//! GC is safe while replicas run because of the grace period: an upload writes its xorbs,
//! shard and file records before the commit that references them, so an object younger than
//! the grace may belong to an upload in flight and is kept. The one window it does not close:
//! an object unreferenced for longer than the grace that a commit re-references while a GC run
//! deletes it (`hub-server.md`, Limits).

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use super::bucket::{Bucket, Listed, file_key, meta_object, xorb_key};
use super::db::{CommitRecord, Entry, tree_key};
use super::error::{ApiError, ApiResult};
use tessera_xet::hash::{FileHash, XorbHash};
use super::storage::TREES;
use tessera_store::FileRecord;

/// What `fsck` found: each problem names the object and what is wrong with it.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Commits, trees, files and xorbs that were checked.
    pub commits: usize,
    /// Distinct trees.
    pub trees: usize,
    /// Distinct files.
    pub files: usize,
    /// Distinct xorbs.
    pub xorbs: usize,
    /// Problems, one line each.
    pub problems: Vec<String>,
}

/// What `gc` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Content objects something references.
    pub referenced: usize,
    /// Unreferenced objects younger than the grace period, kept.
    pub kept_fresh: usize,
    /// Keys removed.
    pub deleted: Vec<String>,
}

/// Everything the bucket's commits reach.
#[derive(Default)]
struct Reach {
    files: HashSet<FileHash>,
    xorbs: HashSet<XorbHash>,
    shas: HashSet<String>,
    report: CheckReport,
}

/// The commit records in the bucket, with their repo key; discussions share the table.
fn commits(bucket: &Bucket) -> ApiResult<Vec<(String, CommitRecord)>> {
    let mut out = Vec::new();
    for l in bucket.list("meta/commits/")? {
        let parts: Vec<&str> = l.key.trim_start_matches("meta/commits/").split('/').collect();
        if parts.len() != 2 {
            continue;
        }
        let Some((bytes, _)) = bucket.get(&l.key)? else { continue };
        let record: CommitRecord = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("{}: {e}", l.key)))?;
        out.push((parts[0].to_owned(), record));
    }
    Ok(out)
}

/// Walks refs, commits, trees and file records; `verify` also fetches and re-hashes xorbs.
fn reach(bucket: &Bucket, verify: bool) -> ApiResult<Reach> {
    let mut r = Reach::default();
    let commits = commits(bucket)?;
    let ids: HashSet<(String, String)> =
        commits.iter().map(|(repo, c)| (repo.clone(), c.id.to_string())).collect();
    check_refs(bucket, &ids, &mut r.report)?;
    let trees: BTreeSet<String> = commits.iter().map(|(_, c)| c.tree.clone()).collect();
    (r.report.commits, r.report.trees) = (commits.len(), trees.len());
    for tree in &trees {
        for e in tree_entries(bucket, tree, &mut r.report)? {
            r.files.insert(e.file);
        }
    }
    for file in r.files.clone() {
        let Some(record) = file_record(bucket, &file, &mut r.report)? else { continue };
        r.shas.insert(record.sha256.to_string());
        r.xorbs.extend(record.terms.iter().map(|t| t.xorb));
    }
    (r.report.files, r.report.xorbs) = (r.files.len(), r.xorbs.len());
    for x in &r.xorbs {
        check_xorb(bucket, x, verify, &mut r.report)?;
    }
    Ok(r)
}

/// Every ref names a commit of its repo that is in the bucket.
fn check_refs(
    bucket: &Bucket,
    ids: &HashSet<(String, String)>,
    report: &mut CheckReport,
) -> ApiResult<()> {
    for l in bucket.list("meta/refs/")? {
        let repo = l.key.trim_start_matches("meta/refs/").split('/').next().unwrap_or_default();
        let Some((bytes, _)) = bucket.get(&l.key)? else { continue };
        let commit = String::from_utf8_lossy(&bytes).into_owned();
        if !ids.contains(&(repo.to_owned(), commit.clone())) {
            report.problems.push(format!("{}: names commit {commit}, which is missing", l.key));
        }
    }
    Ok(())
}

fn tree_entries(bucket: &Bucket, tree: &str, report: &mut CheckReport) -> ApiResult<Vec<Entry>> {
    let key = meta_object(TREES, &tree_key(tree))
        .ok_or_else(|| ApiError::internal("trees have no bucket directory"))?;
    match bucket.get(&key)? {
        Some((bytes, _)) => {
            serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("{key}: {e}")))
        }
        None => {
            report.problems.push(format!("tree {tree}: missing ({key})"));
            Ok(Vec::new())
        }
    }
}

fn file_record(
    bucket: &Bucket,
    file: &FileHash,
    report: &mut CheckReport,
) -> ApiResult<Option<FileRecord>> {
    let Some((bytes, _)) = bucket.get(&file_key(file))? else {
        report.problems.push(format!("file {file}: record missing"));
        return Ok(None);
    };
    match FileRecord::decode(*file, &bytes) {
        Ok(r) => {
            let terms: u64 = r.terms.iter().map(|t| u64::from(t.unpacked_len)).sum();
            if terms != r.size {
                let size = r.size;
                report.problems.push(format!("file {file}: terms add up to {terms}, not {size}"));
            }
            Ok(Some(r))
        }
        Err(e) => {
            report.problems.push(format!("file {file}: record unreadable: {e}"));
            Ok(None)
        }
    }
}

fn check_xorb(
    bucket: &Bucket,
    x: &XorbHash,
    verify: bool,
    report: &mut CheckReport,
) -> ApiResult<()> {
    if !verify {
        if !bucket.exists(&xorb_key(x))? {
            report.problems.push(format!("xorb {x}: missing"));
        }
        return Ok(());
    }
    match bucket.get(&xorb_key(x))? {
        None => report.problems.push(format!("xorb {x}: missing")),
        Some((bytes, _)) => match tessera_xet::format::parse_xorb(&bytes) {
            Ok(p) if p.hash == *x => {}
            Ok(p) => report.problems.push(format!("xorb {x}: its chunks hash to {}", p.hash)),
            Err(e) => report.problems.push(format!("xorb {x}: unreadable: {e}")),
        },
    }
    Ok(())
}

/// Checks that every object the bucket's commits reference exists, and that every xorb hashes
/// to its name.
pub fn fsck(bucket: &Bucket) -> ApiResult<CheckReport> {
    Ok(reach(bucket, true)?.report)
}

/// Removes content objects (xorbs, shards, file records, SHA-256 aliases) nothing references
/// and older than `grace`; refuses to delete anything while references are broken.
pub fn gc(bucket: &Bucket, grace: Duration, now_unix: i64) -> ApiResult<GcReport> {
    let mut listed = Vec::new();
    for dir in ["xorbs/", "xorb-tables/", "files/", "sha256/", "shards/"] {
        listed.extend(bucket.list(dir)?);
    }
    let r = reach(bucket, false)?;
    if let Some(p) = r.report.problems.first() {
        return Err(ApiError::conflict(format!(
            "not collecting: {} broken references (first: {p}); run `tessera hub fsck`",
            r.report.problems.len()
        )));
    }
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let mut report = GcReport::default();
    for l in listed {
        if referenced(bucket, &r, &l)? {
            report.referenced += 1;
        } else if now_unix.saturating_sub(l.modified) < grace {
            report.kept_fresh += 1;
        } else {
            bucket.delete(&l.key)?;
            report.deleted.push(l.key);
        }
    }
    Ok(report)
}

/// Whether a listed content object is reachable; a shard is read to see which files it
/// defines.
fn referenced(bucket: &Bucket, r: &Reach, l: &Listed) -> ApiResult<bool> {
    let (dir, name) = l.key.split_once('/').unwrap_or(("", ""));
    Ok(match dir {
        "xorbs" | "xorb-tables" => name.parse().is_ok_and(|x: XorbHash| r.xorbs.contains(&x)),
        "files" => name.parse().is_ok_and(|f: FileHash| r.files.contains(&f)),
        "sha256" => r.shas.contains(name),
        "shards" => match bucket.get(&l.key)? {
            Some((bytes, _)) => tessera_xet::format::Shard::decode(&bytes)
                .map(|s| s.files.iter().any(|f| r.files.contains(&f.hash)))
                .unwrap_or(false),
            None => false,
        },
        _ => true,
    })
}
