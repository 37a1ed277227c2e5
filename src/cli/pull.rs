//! `tessera pull`: mirror a revision into the store.

use std::io::Write;
use std::process::ExitCode;

use indicatif::ProgressBar;

use super::remote::{RemoteArgs, RepoSpec, runtime};
use super::{Ctx, output};
use crate::sync::{PullProgress, PullReport};

/// Arguments of `tessera pull`.
#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// Print a final JSON line {"repo","revision","commit","files","bytes_total","bytes_fetched","seconds"}.
    #[arg(long)]
    json: bool,
    /// Do not pin the revision: in a store with a cap (`tessera cache-size`), its data may then
    /// be evicted like data read lazily through a mount.
    #[arg(long)]
    no_pin: bool,
    #[command(flatten)]
    remote: RemoteArgs,
    /// `org/name[@revision]`; the revision is a branch, tag, commit id or refs/pr/N (default main).
    repo: RepoSpec,
}

struct Bar(ProgressBar);

impl PullProgress for Bar {
    fn start(&self, _files: usize, bytes: u64) {
        self.0.set_length(bytes);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

/// Chunk cache of a pull: fetched chunks wait in it, decoded, for the SHA-256 that follows the
/// transfer in file order; what it misses is read back. Larger only grows the peak memory.
const PULL_CHUNK_CACHE: usize = 64 << 20;

pub(crate) fn run(args: PullArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let key = args.remote.key(&args.repo);
    let store =
        ctx.open_store_with(crate::store::StoreOptions::with_cache_bytes(PULL_CHUNK_CACHE))?;
    let report = if args.remote.offline(&ctx.env) {
        crate::sync::pull_offline(&store, &key, !args.no_pin)?
    } else {
        let hub = args.remote.client(&ctx.env)?;
        let bar = Bar(ctx.io.byte_bar(0, "pulling"));
        let pulled = crate::sync::pull(&hub, &store, &key, !args.no_pin, &bar);
        let report = runtime()?.block_on(ctx.io.unless_hung_up(pulled))?;
        bar.0.finish_and_clear();
        report
    };
    print(ctx, &report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print(ctx: &Ctx, r: &PullReport, json: bool) -> anyhow::Result<()> {
    if json {
        return ctx.io.json_line(r);
    }
    writeln!(
        ctx.io.out(),
        "{}@{} -> {}: {} files, {} total, {} fetched in {:.2}s",
        r.repo,
        r.revision,
        r.commit,
        r.files,
        output::size(r.bytes_total),
        output::size(r.bytes_fetched),
        r.seconds
    )?;
    Ok(())
}
