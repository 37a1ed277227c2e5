//! `tessera status` and `--metrics-listen`: what a store's holder is doing, for a person, a
//! script (`--json`) or Prometheus (`--prometheus`, and `GET /metrics` on the address given to
//! `--metrics-listen`). Both come from [`exposition`], so a scrape and a `status --prometheus`
//! through the control socket print the same families.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use super::{Ctx, output};
use crate::metrics::{build_info, family, sample};
use crate::store::{DuReport, Store};

/// Arguments of `tessera status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Print one JSON object: {"holder": {...} or null, "store": {du figures}}.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Print the Prometheus text exposition (what `--metrics-listen` serves).
    #[arg(long)]
    prometheus: bool,
}

/// What a long-running holder (`mount`, `hub serve`) tells about itself.
pub(crate) trait HolderStatus: Send + Sync {
    /// For people and scripts: what it is, where, and its counters.
    fn describe(&self) -> serde_json::Value;
    /// Its own Prometheus families (store sizes and build info are added by [`exposition`]).
    fn render(&self, out: &mut String);
    /// Why `gc` must not run inside it, if it must not (said after "gc cannot run ").
    fn refuses_gc(&self) -> Option<&'static str> {
        None
    }
}

/// The full exposition of a store and, when there is one, its holder.
pub(crate) fn exposition(store: &Store, holder: Option<&dyn HolderStatus>) -> String {
    let mut out = String::new();
    build_info(&mut out);
    match store.du() {
        Ok(du) => store_sizes(&mut out, &du),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot measure the store"),
    }
    match store.cache_usage() {
        Ok(usage) => cache_sizes(&mut out, &usage, store.evicted_bytes()),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot measure the cache"),
    }
    if let Some(h) = holder {
        h.render(&mut out);
    }
    out
}

fn store_sizes(out: &mut String, du: &DuReport) {
    let name = "tessera_store_bytes";
    family(
        out,
        name,
        "gauge",
        "Store size by class: logical (files as listed), unique (deduplicated), on_disk (xorb files), flat (passthrough copies).",
    );
    let classes = [
        ("logical", du.logical_bytes),
        ("unique", du.unique_bytes),
        ("on_disk", du.physical_bytes),
        ("flat", du.flat_bytes),
    ];
    for (class, n) in classes {
        sample(out, name, &format!("class=\"{class}\""), n);
    }
    family(out, "tessera_store_files", "gauge", "Files indexed in the store.");
    sample(out, "tessera_store_files", "", du.files);
}

fn cache_sizes(out: &mut String, u: &crate::store::CacheUsage, evicted: u64) {
    let name = "tessera_cache_bytes";
    family(out, name, "gauge", "Disk use against the cap: used (xorbs and flat copies), pinned, evictable.");
    for (class, n) in [("used", u.used), ("pinned", u.pinned), ("evictable", u.evictable)] {
        sample(out, name, &format!("class=\"{class}\""), n);
    }
    family(out, "tessera_cache_cap_bytes", "gauge", "The store's size cap (0: none).");
    sample(out, "tessera_cache_cap_bytes", "", u.cap.unwrap_or(0));
    family(out, "tessera_cache_evicted_bytes_total", "counter", "Bytes evicted to keep to the cap since the holder opened the store.");
    sample(out, "tessera_cache_evicted_bytes_total", "", evicted);
}

pub(crate) fn run(args: StatusArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let store = ctx.open_store()?;
    let holder = ctx.holder_status();
    if args.prometheus {
        ctx.io.out().write_all(exposition(&store, holder.as_deref()).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let (du, cache) = (store.du()?, store.cache_usage()?);
    let evicted = store.evicted_bytes();
    let described = holder.as_ref().map(|h| h.describe());
    if args.json {
        let line = serde_json::json!({ "holder": described, "store": du, "cache": cache, "evicted_bytes": evicted });
        ctx.io.json_line(&line)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_human(ctx, described.as_ref(), &du)?;
    print_cap(ctx, &cache, evicted)?;
    Ok(ExitCode::SUCCESS)
}

fn print_human(ctx: &Ctx, holder: Option<&serde_json::Value>, du: &DuReport) -> anyhow::Result<()> {
    let mut out = ctx.io.out();
    writeln!(out, "store       {}", ctx.home.display())?;
    match holder {
        None => writeln!(out, "held by     nobody (no mount or hub server runs on this store)")?,
        Some(h) => print_holder(&mut *out, h)?,
    }
    let (unique, disk, flat) = (
        output::size(du.unique_bytes),
        output::size(du.physical_bytes),
        output::size(du.flat_bytes),
    );
    writeln!(
        out,
        "cache use   {} files, {unique} unique, {disk} on disk, {flat} in flat copies",
        du.files
    )?;
    Ok(())
}

fn print_cap(ctx: &Ctx, u: &crate::store::CacheUsage, evicted: u64) -> anyhow::Result<()> {
    let Some(cap) = u.cap else { return Ok(()) };
    let (cap, used, pinned) = (output::size(cap), output::size(u.used), output::size(u.pinned));
    let evicted = output::size(evicted);
    writeln!(ctx.io.out(), "cache cap   {cap}: {used} used, {pinned} pinned, {evicted} evicted by the holder")?;
    Ok(())
}

fn print_holder(out: &mut dyn Write, h: &serde_json::Value) -> anyhow::Result<()> {
    let text = |k: &str| h[k].as_str().unwrap_or("-").to_string();
    let num = |k: &str| h[k].as_u64().unwrap_or(0);
    let strings = |k: &str| -> Vec<String> {
        h[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .map(str::to_string)
            .collect()
    };
    writeln!(out, "held by     pid {} ({})", num("pid"), text("command"))?;
    if let Some(mnt) = h["mountpoint"].as_str() {
        let revs = strings("revisions_open");
        writeln!(out, "mount       {mnt}, {} revisions open", revs.len())?;
        for r in revs {
            writeln!(out, "  {r}")?;
        }
        let (served, fetched) =
            (output::size(num("bytes_served")), output::size(num("bytes_fetched")));
        let (hits, misses, inflight) =
            (num("cache_hits"), num("cache_misses"), num("fetches_in_flight"));
        writeln!(
            out,
            "reads       {served} served, {fetched} fetched; {hits} hits, {misses} misses, {inflight} fetches in flight"
        )?;
        let recent = strings("recent_errors");
        writeln!(
            out,
            "errors      {}",
            if recent.is_empty() { "none recently".to_string() } else { recent.join("; ") }
        )?;
    }
    if let Some(addr) = h["metrics_listen"].as_str() {
        writeln!(out, "metrics     http://{addr}/metrics")?;
    }
    Ok(())
}

/// Serves `GET /metrics` on `addr` from a thread of its own, for the life of the process;
/// returns the bound address (port 0 picks one).
pub(crate) fn serve_metrics(
    addr: SocketAddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> anyhow::Result<SocketAddr> {
    use anyhow::Context;
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding --metrics-listen {addr}"))?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let route = move || {
        let text = render();
        async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(route));
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        let served = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app).await
        });
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    })?;
    Ok(bound)
}
