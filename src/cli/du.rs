//! `tessera du`: logical versus physical usage.

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
    let r = ctx.open_store()?.du()?;
    if args.json {
        output::json_line(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("files          {:>12}", r.files);
    println!("logical bytes  {:>12}  ({})", r.logical_bytes, output::size(r.logical_bytes));
    println!("unique bytes   {:>12}  ({})", r.unique_bytes, output::size(r.unique_bytes));
    println!("on disk        {:>12}  ({})", r.physical_bytes, output::size(r.physical_bytes));
    println!("xorbs          {:>12}", r.xorbs);
    println!("chunks         {:>12}", r.chunks);
    println!("dedup ratio    {:>12.2}x", r.dedup_ratio);
    if r.flat_files > 0 {
        println!("flat copies    {:>12}  ({}, for mount passthrough)", r.flat_files, output::size(r.flat_bytes));
    }
    Ok(ExitCode::SUCCESS)
}
