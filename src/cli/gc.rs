//! `tessera gc`: delete what nothing references.

use std::io::Write;
use std::process::ExitCode;

use super::{Ctx, output};

/// Arguments of `tessera gc`.
#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: GcArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if let Some(why) = ctx.holder_status().and_then(|h| h.refuses_gc()) {
        anyhow::bail!("gc cannot run {why}");
    }
    let r = ctx.open_store()?.gc()?;
    if args.json {
        ctx.io.json_line(&r)?;
    } else {
        writeln!(
            ctx.io.out(),
            "removed {} files, {} xorbs and {} flat copies, freed {}",
            r.files_removed,
            r.xorbs_removed,
            r.flat_removed,
            output::size(r.bytes_freed)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
