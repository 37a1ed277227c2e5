//! `tessera fsck`: verify everything; exit 1 naming what is damaged.

use std::io::Write;
use std::process::ExitCode;

use super::Ctx;

/// Arguments of `tessera fsck`.
#[derive(Debug, clap::Args)]
pub(crate) struct FsckArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: FsckArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let r = ctx.open_store()?.fsck()?;
    if args.json {
        ctx.io.json_line(&r)?;
    } else {
        for p in &r.problems {
            writeln!(ctx.io.out(), "DAMAGED {}: {}", p.object, p.problem)?;
        }
        writeln!(
            ctx.io.out(),
            "checked {} chunks, {} files ({} partially fetched, {} listed but not fetched), {} flat copies: {}",
            r.chunks_verified,
            r.files_checked,
            r.files_partial,
            r.files_unfetched,
            r.flat_verified,
            if r.problems.is_empty() {
                "ok".to_string()
            } else {
                format!("{} problems", r.problems.len())
            }
        )?;
    }
    Ok(if r.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
