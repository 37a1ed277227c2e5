//! `tessera hub serve`: run the Hub-compatible server with its Xet CAS over a store or a
//! bucket; `tessera hub gc` / `fsck`: collect and check a bucket replicas share.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::output::{self, parse_duration};
use crate::server::bucket::{Bucket, StorageUrl};
use crate::server::bucket_check;
use crate::server::{AppState, ServerOptions, TokenTable, serve};

/// `tessera hub ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum HubCommand {
    /// Serve the Hub API and the Xet CAS API from a store, for `huggingface_hub` / `hf_xet`
    /// clients pointed at it with `HF_ENDPOINT`.
    Serve(HubServeArgs),
    /// Remove xorbs, shards and file records of a bucket that no commit references and that
    /// are older than the grace period. Safe while replicas run: an upload in flight writes
    /// its objects before its commit, within the grace period.
    Gc(HubGcArgs),
    /// Check that every object a bucket's refs and commits reference exists and that every
    /// xorb hashes to its name. Exits 1 when something is wrong.
    Fsck(HubFsckArgs),
}

/// Arguments of `tessera hub gc`.
#[derive(Debug, clap::Args)]
pub struct HubGcArgs {
    /// The bucket, `s3://BUCKET/PREFIX` (credentials from the AWS_* variables, as for serve).
    #[arg(long, value_name = "URL")]
    storage: StorageUrl,
    /// Keep unreferenced objects younger than this (`90s`, `10m`, `1h`, `1d`): longer than
    /// any upload takes from its first xorb to its commit.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    grace: Duration,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tessera hub fsck`.
#[derive(Debug, clap::Args)]
pub struct HubFsckArgs {
    /// The bucket, `s3://BUCKET/PREFIX` (credentials from the AWS_* variables, as for serve).
    #[arg(long, value_name = "URL")]
    storage: StorageUrl,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tessera hub serve`.
#[derive(Debug, clap::Args)]
pub struct HubServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Serve Prometheus metrics at http://ADDR/metrics (store size by class, build info).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Store directory holding files, repos, refs and commits [default: --home].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Hub tokens, one `TOKEN USER read|write` per line. Without it every write is refused.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Base URL for the URLs the server hands out [default: http://{Host header}].
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Limit the send rate of all response bodies together, in bytes per second.
    #[arg(long, value_name = "N")]
    max_bytes_per_sec: Option<u64>,
    /// Limit the receive rate of all request bodies (uploads) together, in bytes per second.
    #[arg(long, value_name = "N")]
    max_upload_bytes_per_sec: Option<u64>,
    /// Serve as a Hub without Xet storage (plain LFS downloads only), to test fallbacks.
    #[arg(long)]
    no_xet: bool,
    /// LFS objects larger than this many bytes upload in parts of this size (multipart), as
    /// on the Hub.
    #[arg(long, default_value_t = crate::server::state::LFS_PART_SIZE, value_name = "BYTES")]
    lfs_part_size: u64,
    /// Answer /v2/reconstructions with 404, like a CAS without multi-range reconstructions,
    /// to test clients' fallback to v1.
    #[arg(long)]
    no_v2_reconstructions: bool,
    /// Uploads with large bodies (commits, xorbs, shards, LFS objects) handled at once; more
    /// wait for a slot (503 after 2 minutes).
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_concurrent_uploads: usize,
    /// Seconds a client has to send a request's headers (and a kept-alive connection may idle).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    header_timeout: u64,
    /// Seconds a request body may pause before the request fails.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    body_idle_timeout: u64,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    shutdown_grace: u64,
    /// Keep repos, commits, refs, xorbs and shards in S3-compatible object storage
    /// (`s3://BUCKET/PREFIX`), shared by every replica on it; `--data` is then a cache.
    /// Endpoint, region and credentials come from AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (path-style; http:// endpoints allowed).
    #[arg(long, value_name = "URL")]
    storage: Option<StorageUrl>,
    /// With --storage: serve xorb bytes through this server instead of handing clients
    /// presigned object-storage URLs (for a store clients cannot reach).
    #[arg(long, requires = "storage")]
    proxy_bytes: bool,
    /// Entries per page of tree listings and commit history.
    #[arg(long, default_value_t = 1000, hide = true)]
    tree_page_size: usize,
}

/// Runs a `hub` subcommand.
pub fn run(cmd: HubCommand, home: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        HubCommand::Serve(args) => run_serve(args, home),
        HubCommand::Gc(args) => run_gc(args),
        HubCommand::Fsck(args) => run_fsck(args),
    }
}

/// A runtime for the S3 client and the bucket connected on it (blocking calls run outside it).
fn connect(url: &StorageUrl) -> anyhow::Result<(tokio::runtime::Runtime, Bucket)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let bucket = Bucket::connect(url, runtime.handle().clone())?;
    Ok((runtime, bucket))
}

/// The error of a bucket walk: its message (5xx causes are in the log).
fn walk_error(e: crate::server::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{} (status {})", e.message(), e.status())
}

/// Prints a bucket walk's report: one JSON object, or a line per item and a summary.
fn print_report(
    json: bool,
    report: &impl serde::Serialize,
    items: &[String],
    summary: &str,
) -> anyhow::Result<()> {
    if json {
        return output::json_line(report);
    }
    for line in items {
        println!("{line}");
    }
    println!("{summary}");
    Ok(())
}

fn run_gc(args: HubGcArgs) -> anyhow::Result<ExitCode> {
    let (_runtime, bucket) = connect(&args.storage)?;
    let now = i64::try_from(crate::clock::unix_secs())?;
    let r = bucket_check::gc(&bucket, args.grace, now).map_err(walk_error)?;
    let removed: Vec<String> = r.deleted.iter().map(|k| format!("removed {k}")).collect();
    let summary = format!(
        "{} referenced, {} unreferenced but younger than {:?} kept, {} removed",
        r.referenced,
        r.kept_fresh,
        args.grace,
        r.deleted.len()
    );
    print_report(args.json, &r, &removed, &summary)?;
    Ok(ExitCode::SUCCESS)
}

fn run_fsck(args: HubFsckArgs) -> anyhow::Result<ExitCode> {
    let (_runtime, bucket) = connect(&args.storage)?;
    let r = bucket_check::fsck(&bucket).map_err(walk_error)?;
    let problems: Vec<String> = r.problems.iter().map(|p| format!("problem: {p}")).collect();
    let summary = format!(
        "{} commits, {} trees, {} files, {} xorbs checked; {} problems",
        r.commits,
        r.trees,
        r.files,
        r.xorbs,
        r.problems.len()
    );
    print_report(args.json, &r, &problems, &summary)?;
    Ok(if r.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run_serve(args: HubServeArgs, home: &Path) -> anyhow::Result<ExitCode> {
    let tokens = match &args.tokens {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            TokenTable::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => TokenTable::default(),
    };
    if args.max_bytes_per_sec == Some(0) || args.max_upload_bytes_per_sec == Some(0) {
        anyhow::bail!("--max-bytes-per-sec and --max-upload-bytes-per-sec must be positive");
    }
    let options = ServerOptions::default()
        .public_url(args.public_url.clone())
        .tokens(tokens)
        .max_bytes_per_sec(args.max_bytes_per_sec)
        .max_upload_bytes_per_sec(args.max_upload_bytes_per_sec)
        .tree_page_size(args.tree_page_size)
        .max_concurrent_uploads(args.max_concurrent_uploads)
        .timeouts(
            secs(args.header_timeout),
            secs(args.body_idle_timeout),
            secs(args.shutdown_grace),
        )
        .no_xet(args.no_xet)
        .lfs_part_size(args.lfs_part_size)
        .no_v2_reconstructions(args.no_v2_reconstructions)
        .proxy_bytes(args.proxy_bytes);
    let grace = secs(args.shutdown_grace);
    let data = args.data.clone().unwrap_or_else(|| home.to_owned());
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let bucket = match &args.storage {
        Some(url) => Some(Bucket::connect(url, runtime.handle().clone())?),
        None => None,
    };
    let state = AppState::open_with(&data, options, bucket).map_err(|e| {
        let held = e
            .to_string()
            .contains("LOCK")
            .then(|| format!(": {}", super::control::held_message(&data)));
        anyhow::anyhow!("opening {}{}: {e}", data.display(), held.unwrap_or_default())
    })?;
    // Other commands on this store run in here while it serves (`cli::control`).
    let _control = serve_node(&args, &state.store, &state.requests)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("tessera hub: listening on http://{addr}");
        super::notify::ready(&super::env::Env::process(), &format!("listening on http://{addr}"));
        tracing::info!(%addr, data = %data.display(), "hub server ready");
        serve(listener, state, shutdown_signal()).await?;
        tracing::info!("hub server stopped");
        anyhow::Ok(())
    })?;
    // Blocking store work still running after the grace period is not waited for either.
    runtime.shutdown_timeout(grace);
    Ok(ExitCode::SUCCESS)
}

/// What `tessera status` shows of a hub server.
struct HubStatus {
    metrics: Option<SocketAddr>,
}

impl super::status::HolderStatus for HubStatus {
    fn describe(&self) -> serde_json::Value {
        let (pid, command) = super::control::identity();
        let metrics = self.metrics.map(|a| a.to_string());
        serde_json::json!({ "kind": "hub serve", "pid": pid, "command": command, "metrics_listen": metrics })
    }

    fn render(&self, _out: &mut String) {}

    fn refuses_gc(&self) -> Option<&'static str> {
        Some(
            "inside a hub server: it may be receiving a push whose xorbs and files no commit roots yet; stop `tessera hub serve`, then run gc",
        )
    }
}

/// `--metrics-listen`, and the control socket through which other commands on this store run
/// in here while it serves (`cli::control`).
fn serve_node(
    args: &HubServeArgs,
    store: &crate::store::Store,
    requests: &std::sync::Arc<crate::server::metrics::RequestMetrics>,
) -> anyhow::Result<super::control::ControlServer> {
    let mut status = HubStatus { metrics: None };
    if let Some(addr) = args.metrics_listen {
        let (st, requests) = (store.clone(), requests.clone());
        let render = std::sync::Arc::new(move || {
            let mut out = super::status::exposition(&st, None);
            requests.render(&mut out);
            out
        });
        let bound = super::status::serve_metrics(addr, render)?;
        eprintln!("tessera hub: metrics at http://{bound}/metrics");
        status.metrics = Some(bound);
    }
    super::serve_control(super::control::Held::new(store.clone(), std::sync::Arc::new(status)))
}

fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n.max(1))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
