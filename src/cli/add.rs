//! `tessera add`: ingest files and directories, pinning each so `gc` keeps it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::{Ctx, output};
use crate::hash::FileHash;

/// Arguments of `tessera add`.
#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// One JSON object per file, then a summary object.
    #[arg(long)]
    json: bool,
    /// Files or directories (walked recursively; `.git/` is skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Arguments of `tessera unpin`.
#[derive(Debug, clap::Args)]
pub(crate) struct UnpinArgs {
    /// Paths as given to `add` (or their file hashes), or pinned revisions `org/name@rev`.
    #[arg(required = true)]
    targets: Vec<String>,
    /// Repo type of revisions given: model, dataset or space.
    #[arg(long, default_value = "model", value_name = "TYPE")]
    repo_type: crate::protocol::RepoType,
}

#[derive(serde::Serialize)]
struct FileLine {
    path: String,
    size: u64,
    xet_hash: String,
    sha256: String,
    new_bytes: u64,
    new_chunks: usize,
    total_chunks: usize,
}

#[derive(serde::Serialize, Default)]
struct Summary {
    files: u64,
    logical_bytes: u64,
    new_bytes: u64,
    deduplicated_bytes: u64,
    seconds: f64,
}

pub(crate) fn run(args: AddArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let paths: Vec<PathBuf> = args.paths.iter().map(|p| ctx.path(p)).collect();
    let files = collect_files(&paths)?;
    let total: u64 = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
    let store = ctx.open_store()?;
    let bar = ctx.io.byte_bar(total, "adding");
    let mut session = store.ingest_session();
    let mut lines = Vec::with_capacity(files.len());
    for path in &files {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let report = session
            .add_reader(bar.wrap_read(file))
            .with_context(|| format!("cannot add {}", path.display()))?;
        lines.push((pin_name(path), report));
    }
    session.commit().context("cannot commit to the store")?;
    bar.finish_and_clear();
    let mut sum = Summary::default();
    for (name, r) in &lines {
        store.pin(name, &r.file)?;
        sum.files += 1;
        sum.logical_bytes += r.size;
        sum.new_bytes += r.new_bytes;
        let line = FileLine {
            path: name.clone(),
            size: r.size,
            xet_hash: r.file.to_string(),
            sha256: r.sha256.to_string(),
            new_bytes: r.new_bytes,
            new_chunks: r.new_chunks,
            total_chunks: r.total_chunks,
        };
        if args.json {
            ctx.io.json_line(&line)?;
        }
    }
    sum.deduplicated_bytes = sum.logical_bytes - sum.new_bytes.min(sum.logical_bytes);
    sum.seconds = started.elapsed().as_secs_f64();
    if args.json {
        ctx.io.json_line(&sum)?;
    } else {
        print_summary(ctx, &sum, &lines)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(
    ctx: &Ctx,
    sum: &Summary,
    lines: &[(String, crate::store::IngestReport)],
) -> anyhow::Result<()> {
    for (name, r) in lines {
        writeln!(
            ctx.io.out(),
            "{}  {:>10}  new {:>10}  {name}",
            r.file,
            output::size(r.size),
            output::size(r.new_bytes)
        )?;
    }
    writeln!(
        ctx.io.out(),
        "added {} files: {} logical, {} new, {} deduplicated, in {:.2}s",
        sum.files,
        output::size(sum.logical_bytes),
        output::size(sum.new_bytes),
        output::size(sum.deduplicated_bytes),
        sum.seconds
    )?;
    Ok(())
}

/// The pin of an added file: its absolute path, so re-adding a path replaces its pin.
fn pin_name(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("path:{}", abs.display())
}

/// Regular files under `paths`, sorted, skipping `.git` directories and symlinks.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta =
            std::fs::symlink_metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else if meta.is_file() {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ty = e.file_type()?;
        if ty.is_dir() && e.file_name() != ".git" {
            walk(&e.path(), out)?;
        } else if ty.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

pub(crate) fn unpin(args: UnpinArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let mut missing = 0;
    for t in &args.targets {
        if t.contains('@') {
            if !super::pin::unpin_revision(&store, t, args.repo_type)? {
                writeln!(ctx.io.err(), "tessera: {t} is not pinned")?;
                missing += 1;
            }
            continue;
        }
        let name = if FileHash::from_hex(t).is_ok() {
            format!("hash:{t}")
        } else {
            pin_name(&ctx.path(Path::new(t)))
        };
        let removed = store.unpin(&name)? || unpin_by_hash(&store, t)?;
        if !removed {
            writeln!(ctx.io.err(), "tessera: no pin for {t}")?;
            missing += 1;
        }
    }
    Ok(if missing == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Removes every pin pointing at a file hash.
fn unpin_by_hash(store: &crate::store::Store, target: &str) -> anyhow::Result<bool> {
    let Ok(hash) = FileHash::from_hex(target) else { return Ok(false) };
    let mut any = false;
    for (name, file) in store.pins()? {
        if file == hash {
            any |= store.unpin(&name)?;
        }
    }
    Ok(any)
}
