//! `tessera export`: a pulled revision as plain files, or as a Hugging Face cache that
//! `huggingface_hub` and transformers use with `HF_HUB_OFFLINE=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::Ctx;
use super::remote::{RemoteArgs, RepoSpec, runtime};
use crate::protocol::{CommitId, GitOid};
use crate::store::{RevisionKey, Store, TreeEntry};

/// Bytes copied per read from the store.
const PIECE: u64 = 16 << 20;

/// Arguments of `tessera export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// Write the Hugging Face cache layout under this directory
    /// (`models--org--name/{blobs,snapshots/<commit>,refs}`) instead of plain files.
    #[arg(long, value_name = "CACHE_DIR")]
    hf_cache: Option<PathBuf>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// `org/name[@revision]`.
    repo: RepoSpec,
    /// Target directory for plain files (not with --hf-cache).
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: ExportArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let key = args.remote.key(&args.repo);
    let store = ctx.open_store()?;
    let (commit, tree) = local_or_pull(ctx, &store, &key, &args.remote)?;
    match (&args.hf_cache, &args.dir) {
        (Some(cache), None) => export_hf_cache(&store, &key, &commit, &tree, &ctx.path(cache))?,
        (None, Some(dir)) => {
            for e in &tree {
                write_file(&store, e, &safe_join(&ctx.path(dir), &e.path)?, None)?;
            }
        }
        _ => bail!("give either a target DIR or --hf-cache CACHE_DIR"),
    }
    writeln!(
        ctx.io.err(),
        "exported {} files of {}@{} ({commit})",
        tree.len(),
        key.repo_id,
        key.revision
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The revision from the store, pulling it first unless offline.
pub(crate) fn local_or_pull(
    ctx: &Ctx,
    store: &Store,
    key: &RevisionKey,
    remote: &RemoteArgs,
) -> anyhow::Result<(CommitId, Vec<TreeEntry>)> {
    if let Ok(found) = crate::sync::local_revision(store, key) {
        if remote.offline(&ctx.env) || key.as_commit().is_some() {
            return Ok(found);
        }
    }
    if remote.offline(&ctx.env) {
        return Ok(crate::sync::local_revision(store, key)?);
    }
    let hub = remote.client(&ctx.env)?;
    runtime()?.block_on(ctx.io.unless_hung_up(crate::sync::pull(&hub, store, key, true, &())))?;
    Ok(crate::sync::local_revision(store, key)?)
}

/// `models--org--name/{blobs/<etag>, snapshots/<commit>/<path> -> ../../blobs/<etag>, refs/<rev>}`.
/// The commit is a [`CommitId`] (checked where it entered); every blob name came from a hub, so
/// each must be an id (64-hex sha256, 40-hex git blob id) before it names a file, and a git
/// blob id is recomputed from the bytes written under it.
fn export_hf_cache(
    store: &Store,
    key: &RevisionKey,
    commit: &CommitId,
    tree: &[TreeEntry],
    cache: &Path,
) -> anyhow::Result<()> {
    let repo_dir =
        cache.join(format!("{}s--{}", key.repo_type, key.repo_id.to_string().replace('/', "--")));
    let snapshot = repo_dir.join("snapshots").join(commit.as_str());
    for e in tree {
        let etag = e.etag();
        if !e.lfs && !crate::protocol::is_commit_id(&etag) {
            bail!("{}: {etag:?} is not a git blob id", e.path);
        }
        let blob = repo_dir.join("blobs").join(&etag);
        if !blob.exists() {
            write_file(store, e, &blob, (!e.lfs).then_some(&e.git_oid))?;
        }
        let link = safe_join(&snapshot, &e.path)?;
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let depth = e.path.matches('/').count() + 2;
        let target = PathBuf::from("../".repeat(depth)).join("blobs").join(&etag);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    if key.as_commit().is_none() {
        let r = safe_join(&repo_dir.join("refs"), key.revision.as_str())?;
        if let Some(parent) = r.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&r, commit.as_str())?;
    }
    Ok(())
}

/// `base/path`, refusing paths that would leave `base`.
fn safe_join(base: &Path, path: &str) -> anyhow::Result<PathBuf> {
    let clean = crate::protocol::normalize_repo_path(path)
        .with_context(|| format!("unsafe path {path:?}"))?;
    Ok(base.join(clean))
}

/// Writes one file's bytes from the store, via a temp file renamed into place. With
/// `git_oid`, the bytes must hash to that git blob id, or nothing is put in place.
fn write_file(
    store: &Store,
    e: &TreeEntry,
    dest: &Path,
    git_oid: Option<&GitOid>,
) -> anyhow::Result<()> {
    use sha1::Digest;
    use std::io::Write;
    let record = store.file(&e.file)?.with_context(|| format!("{} is not in the store", e.path))?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = dest.with_extension("tessera-partial");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    let mut blob = git_oid.map(|_| sha1::Sha1::new_with_prefix(format!("blob {}\0", record.size)));
    let mut pos = 0;
    while pos < record.size {
        let n = PIECE.min(record.size - pos);
        let bytes = store.read_record_range(&record, pos, n)?;
        if let Some(h) = blob.as_mut() {
            h.update(&bytes);
        }
        out.write_all(&bytes)?;
        pos += n;
    }
    out.flush()?;
    drop(out);
    let got = blob.map(|h| GitOid::from_sha1(h.finalize().into()));
    if let Some(want) = git_oid.filter(|want| got.as_ref() != Some(*want)) {
        let _ = std::fs::remove_file(&tmp);
        bail!("{}: the content's git blob id is not {want}", e.path);
    }
    std::fs::rename(&tmp, dest).with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(())
}
