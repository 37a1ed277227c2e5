//! `tessera ls`: the files of a pulled revision.

use std::io::Write;
use std::process::ExitCode;

use super::Ctx;
use super::remote::{RemoteArgs, RepoSpec};

/// Arguments of `tessera ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// One JSON object per file.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
    /// `org/name[@revision]` (pulled before; see `tessera pull`).
    repo: RepoSpec,
}

pub(crate) fn run(args: LsArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let key = args.remote.key(&args.repo);
    let store = ctx.open_store()?;
    let (commit, tree) = super::export::local_or_pull(ctx, &store, &key, &args.remote)?;
    for e in &tree {
        if args.json {
            ctx.io.json_line(e)?;
        } else {
            writeln!(ctx.io.out(), "{:>12}  {}  {}  {}", e.size, e.file, e.sha256, e.path)?;
        }
    }
    if !args.json {
        writeln!(ctx.io.err(), "{} files at commit {commit}", tree.len())?;
    }
    Ok(ExitCode::SUCCESS)
}
