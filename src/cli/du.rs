//! `tessera du`: logical versus physical usage.

use std::io::Write;
use std::process::ExitCode;

use super::{Ctx, output};

/// Arguments of `tessera du`.
#[derive(Debug, clap::Args)]
pub(crate) struct DuArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: DuArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let (r, cache) = (store.du()?, store.cache_usage()?);
    if args.json {
        let mut line = serde_json::to_value(&r)?;
        line["cache"] = serde_json::to_value(&cache)?;
        ctx.io.json_line(&line)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = ctx.io.out();
    writeln!(out, "files          {:>12}", r.files)?;
    let sizes = [
        ("logical bytes", r.logical_bytes),
        ("unique bytes", r.unique_bytes),
        ("on disk", r.physical_bytes),
    ];
    for (label, n) in sizes {
        writeln!(out, "{label:<14} {n:>12}  ({})", output::size(n))?;
    }
    writeln!(out, "xorbs          {:>12}", r.xorbs)?;
    writeln!(out, "chunks         {:>12}", r.chunks)?;
    writeln!(out, "dedup ratio    {:>12.2}x", r.dedup_ratio)?;
    if r.flat_files > 0 {
        let flat = output::size(r.flat_bytes);
        writeln!(out, "flat copies    {:>12}  ({flat}, for mount passthrough)", r.flat_files)?;
    }
    super::pin::print_usage(&mut *out, &cache)?;
    Ok(ExitCode::SUCCESS)
}
