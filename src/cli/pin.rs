//! `tessera pin`, the revision side of `tessera unpin`, and `tessera cache-size`: what a
//! bounded store keeps and how large it may grow (`store/evict.rs`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::remote::parse_spec;
use super::{Ctx, output};
use crate::store::Store;
use crate::sync::local_revision;

/// Arguments of `tessera pin`.
#[derive(Debug, clap::Args)]
pub(crate) struct PinArgs {
    /// Print JSON lines: one {"revision","commit","files","bytes","missing_bytes"} per pin made,
    /// or {"pinned":[...]} when listing.
    #[arg(long)]
    json: bool,
    /// Repo type of the revisions: model, dataset or space.
    #[arg(long, default_value = "model", value_name = "TYPE")]
    repo_type: crate::protocol::RepoType,
    /// `org/name[@revision]` (default main), as recorded by `pull` or a mount; none: list the
    /// pinned revisions.
    revisions: Vec<String>,
}

/// Arguments of `tessera cache-size`.
#[derive(Debug, clap::Args)]
pub(crate) struct CacheSizeArgs {
    /// Print one JSON object {"cap","used","pinned","evictable"} (bytes; cap null when none).
    #[arg(long)]
    json: bool,
    /// The new cap (`50G`, `512M`, `2T`; binary units), or `off`; none: print the current one.
    size: Option<String>,
}

pub(crate) fn pin(args: PinArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    if args.revisions.is_empty() {
        return list(&store, ctx, args.json);
    }
    for spec in &args.revisions {
        let key = parse_spec(spec, args.repo_type)?;
        let (commit, tree) = local_revision(&store, &key)
            .with_context(|| format!("{spec} is not in the store (pull it first)"))?;
        store.pin_revision(&key.at(commit.clone()))?;
        let bytes: u64 = tree.iter().map(|e| e.size).sum();
        let missing = missing_bytes(&store, &tree)?;
        if args.json {
            let line = serde_json::json!({ "revision": spec, "commit": commit, "files": tree.len(), "bytes": bytes, "missing_bytes": missing });
            ctx.io.json_line(&line)?;
            continue;
        }
        write!(ctx.io.out(), "pinned {spec} ({commit}): {} files, {}", tree.len(), output::size(bytes))?;
        if missing > 0 {
            write!(ctx.io.out(), "; {} not in the store yet (pull it to fetch them)", output::size(missing))?;
        }
        writeln!(ctx.io.out())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn list(store: &Store, ctx: &Ctx, json: bool) -> anyhow::Result<ExitCode> {
    let pinned: Vec<String> = store.pinned_revisions()?.iter().map(ToString::to_string).collect();
    if json {
        ctx.io.json_line(&serde_json::json!({ "pinned": pinned }))?;
    } else {
        for p in pinned {
            writeln!(ctx.io.out(), "{p}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes of a tree's files that are not wholly in the store.
fn missing_bytes(store: &Store, tree: &[crate::store::TreeEntry]) -> anyhow::Result<u64> {
    let mut missing = 0;
    for e in tree {
        let whole = match store.file(&e.file)? {
            Some(rec) => store.is_complete(&rec)?,
            None => e.size == 0,
        };
        if !whole {
            missing += e.size;
        }
    }
    Ok(missing)
}

/// Unpins `org/name@revision` (what `tessera unpin` does with an argument holding `@`);
/// whether it was pinned.
pub(crate) fn unpin_revision(store: &Store, spec: &str, repo_type: crate::protocol::RepoType) -> anyhow::Result<bool> {
    let key = parse_spec(spec, repo_type)?;
    let Ok((commit, _)) = local_revision(store, &key) else { return Ok(false) };
    Ok(store.unpin_revision(&key.at(commit))?)
}

pub(crate) fn cache_size(args: CacheSizeArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    if let Some(size) = &args.size {
        let cap = match size.as_str() {
            "off" | "none" => None,
            s => Some(output::parse_cache_size(s)?),
        };
        let evicted = store.set_cache_cap(cap)?;
        if evicted.bytes > 0 && !args.json {
            writeln!(ctx.io.err(), "evicted {} to fit", output::size(evicted.bytes))?;
        }
    }
    let usage = store.cache_usage()?;
    if args.json {
        ctx.io.json_line(&usage)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_usage(&mut *ctx.io.out(), &usage)?;
    Ok(ExitCode::SUCCESS)
}

/// The cap lines of `du` and `cache-size`.
pub(crate) fn print_usage(out: &mut dyn Write, u: &crate::store::CacheUsage) -> anyhow::Result<()> {
    let cap = u.cap.map_or_else(|| "none".to_string(), |c| format!("{c}  ({})", output::size(c)));
    writeln!(out, "cache cap      {cap:>12}")?;
    let lines = [("cache used", u.used), ("pinned", u.pinned), ("evictable", u.evictable)];
    for (label, n) in lines {
        writeln!(out, "{label:<14} {n:>12}  ({})", output::size(n))?;
    }
    Ok(())
}
