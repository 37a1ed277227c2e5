//! `tessera cat`: a stored file's bytes on stdout, whole or a byte range.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::Ctx;
use crate::hash::FileHash;

/// Bytes read from the store per write to stdout.
const PIECE: u64 = 16 << 20;

/// Arguments of `tessera cat`.
#[derive(Debug, clap::Args)]
pub(crate) struct CatArgs {
    /// A Xet file hash (64 hex digits), or `org/name[@rev]:path` of a pulled (or pullable) repo.
    target: String,
    #[command(flatten)]
    remote: super::remote::RemoteArgs,
    /// Only bytes START-END (END exclusive; either may be omitted: `100-`, `-4096`).
    #[arg(long, value_name = "START-END")]
    range: Option<String>,
}

pub(crate) fn run(args: CatArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let hash = resolve_target(ctx, &store, &args)?;
    let record = store.file(&hash)?.with_context(|| format!("file {hash} is not in the store"))?;
    let (start, end) = parse_range(args.range.as_deref(), record.size)?;
    let mut out = ctx.io.out();
    let mut pos = start;
    while pos < end {
        let n = PIECE.min(end - pos);
        let bytes = store.read_record_range(&record, pos, n)?;
        out.write_all(&bytes)?;
        pos += n;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A file hash, given directly or as `org/name[@rev]:path`.
fn resolve_target(
    ctx: &Ctx,
    store: &crate::store::Store,
    args: &CatArgs,
) -> anyhow::Result<FileHash> {
    if let Ok(h) = FileHash::from_hex(&args.target) {
        return Ok(h);
    }
    let (spec, path) =
        args.target.split_once(':').context("expected a file hash or org/name[@rev]:path")?;
    let key = super::remote::parse_spec(spec, args.remote.repo_type)?;
    let (commit, tree) = super::export::local_or_pull(ctx, store, &key, &args.remote)?;
    tree.iter()
        .find(|e| e.path == path)
        .map(|e| e.file)
        .with_context(|| format!("no file {path:?} in {spec} (commit {commit})"))
}

/// Parses `START-END` against a file of `size` bytes.
pub(crate) fn parse_range(range: Option<&str>, size: u64) -> anyhow::Result<(u64, u64)> {
    let Some(r) = range else { return Ok((0, size)) };
    let (a, b) = r.split_once('-').context("range must look like START-END")?;
    let start = if a.is_empty() { 0 } else { a.parse().context("bad range start")? };
    let end =
        if b.is_empty() { size } else { b.parse::<u64>().context("bad range end")?.min(size) };
    if start > end {
        bail!("range start {start} is after its end {end} (file has {size} bytes)");
    }
    Ok((start, end))
}
