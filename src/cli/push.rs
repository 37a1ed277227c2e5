//! `tessera push`: publish a folder as a commit, sending only what the remote lacks.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::ProgressBar;

use super::remote::{RemoteArgs, RepoSpec, runtime};
use super::{Ctx, output};
use crate::protocol::RepoType;
use crate::sync::{PushOptions, PushProgress, PushReport};

/// Arguments of `tessera push`.
#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// Print a final JSON line {"repo","revision","commit","commit_url","pr_url","pr_revision",
    /// "pushed","files_added",
    /// "files_updated","files_deleted","bytes_total","bytes_uploaded","chunks_total","chunks_new",...}.
    #[arg(long)]
    json: bool,
    /// Create the repo (or the branch, from the default branch) when it does not exist.
    #[arg(long)]
    create: bool,
    /// Make a repo created by --create private.
    #[arg(long)]
    private: bool,
    /// Commit title [default: "Upload N files with tessera"].
    #[arg(long, short = 'm', value_name = "MSG")]
    message: Option<String>,
    /// Tag the resulting commit.
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// Also delete remote files absent from DIR (within --include/--exclude; .gitattributes stays).
    #[arg(long)]
    delete: bool,
    /// Push only paths matching this glob (repeatable; `*` matches `/` too).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Never push paths matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Compute and print the same figures without sending anything.
    #[arg(long)]
    dry_run: bool,
    /// Open a pull request against the branch (`refs/pr/N`) instead of committing on it; prints
    /// the pull request's URL.
    #[arg(long, conflicts_with = "tag")]
    create_pr: bool,
    /// SDK of a Space created by --create (the Hub requires one).
    #[arg(long, value_name = "SDK", value_parser = crate::protocol::SPACE_SDKS)]
    space_sdk: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// The folder to publish (`.git/` and `.cache/` folders are never uploaded).
    dir: PathBuf,
    /// `org/name[@branch]` (default branch main).
    repo: RepoSpec,
}

struct Bar(ProgressBar);

impl PushProgress for Bar {
    fn phase(&self, what: &'static str, bytes: u64) {
        self.0.reset();
        self.0.set_length(bytes);
        self.0.set_message(what);
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub(crate) fn run(args: PushArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if args.remote.offline(&ctx.env) {
        anyhow::bail!("push needs the network (unset HF_HUB_OFFLINE, drop --offline)");
    }
    let opts = options(&args, ctx)?;
    let hub = args.remote.client(&ctx.env)?;
    let store = ctx.open_store()?;
    let bar = Bar(ctx.io.byte_bar(0, "pushing"));
    let report =
        runtime()?.block_on(ctx.io.unless_hung_up(crate::sync::push(&hub, &store, &opts, &bar)));
    bar.0.finish_and_clear();
    let report = report.with_context(|| format!("push to {} failed", opts.repo_id))?;
    print(ctx, &report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn options(args: &PushArgs, ctx: &Ctx) -> anyhow::Result<PushOptions> {
    let key = args.remote.key(&args.repo);
    let repo_type = key.repo_type;
    if args.space_sdk.is_some() && repo_type != RepoType::Space {
        anyhow::bail!("--space-sdk is for Spaces: add --repo-type space");
    }
    if let Some(tag) = &args.tag {
        crate::protocol::validate_ref_name(tag).with_context(|| format!("bad tag {tag:?}"))?;
    }
    Ok(PushOptions {
        dir: ctx.path(&args.dir),
        repo_type,
        repo_id: key.repo_id,
        branch: key.revision,
        create: args.create,
        private: args.private,
        message: args.message.clone(),
        tag: args.tag.clone(),
        delete: args.delete,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        dry_run: args.dry_run,
        create_pr: args.create_pr,
        space_sdk: args.space_sdk.clone(),
    })
}

fn print(ctx: &Ctx, r: &PushReport, json: bool) -> anyhow::Result<()> {
    if json {
        return ctx.io.json_line(r);
    }
    let target = format!("{}@{}", r.repo, r.revision);
    let commit = r.commit.as_ref().map_or("(new repo)", |c| c.as_str());
    let changes = format!(
        "{} added, {} updated, {} deleted",
        r.files_added, r.files_updated, r.files_deleted
    );
    let sent = format!(
        "{} of {} ({} new chunks of {})",
        output::size(r.bytes_uploaded),
        output::size(r.bytes_total),
        r.chunks_new,
        r.chunks_total
    );
    if let (Some(url), Some(rev)) = (&r.pr_url, &r.pr_revision) {
        writeln!(ctx.io.out(), "opened pull request {rev} on {}: {url}", r.repo)?;
    }
    match (r.dry_run, r.pushed) {
        (true, _) if r.files_added + r.files_updated + r.files_deleted == 0 => {
            writeln!(ctx.io.out(), "dry run: {target} is up to date at {commit}")?
        }
        (true, _) => writeln!(
            ctx.io.out(),
            "dry run: {target} at {commit}: would push {changes}, sending {sent}"
        )?,
        (false, false) => {
            writeln!(ctx.io.out(), "{target} is up to date at {commit}: nothing to push")?
        }
        (false, true) => writeln!(
            ctx.io.out(),
            "{target} -> {commit}: {changes}; sent {sent} in {:.2}s",
            r.seconds
        )?,
    }
    Ok(())
}
