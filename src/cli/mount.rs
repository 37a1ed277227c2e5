//! `tessera mount MOUNTPOINT`: every revision of every model as read-only files, in the
//! foreground until SIGINT or SIGTERM (or an external unmount), then unmounted cleanly.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;

use super::Ctx;
use super::control::{ControlServer, Held};
use super::output::{parse_duration, parse_size};
use super::status::{HolderStatus, exposition, serve_metrics};
use crate::mount::{MountConfig, Mounted, Vfs, VfsOptions};
use crate::store::{RemoteSource, Store};

/// Arguments of `tessera mount`.
#[derive(Debug, clap::Args)]
pub(crate) struct MountArgs {
    /// Directory to mount on (created if missing); files appear as
    /// MOUNTPOINT/<org>/<name>@<rev>/<path>, with `/` in a revision written `%2F`.
    mountpoint: PathBuf,
    /// Serve exactly what the store holds; never contact a remote.
    #[arg(long, env = "HF_HUB_OFFLINE")]
    offline: bool,
    /// Re-resolve branches and tags after this long (e.g. 90s, 10m, 1h) [default: once per mount].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    ref_ttl: Option<Duration>,
    /// Let every user read the mount (non-root users need `user_allow_other` in /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
    /// Fail a read with EIO when its bytes made no progress for this long (a slow link is never
    /// an error while bytes keep arriving).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    fetch_timeout: Duration,
    /// Most bytes fetched ahead of a sequential reader (binary units: 16M, 128M, 1G). Fetched
    /// chunks wait decoded in memory until read, so the mount's memory grows with it (a cold
    /// 2 GiB read peaks at 240-244 MB with 16M, 268-270 MB with 32M); raise it for links whose
    /// bandwidth times round-trip time exceeds it (16M covers 320 MB/s at 50 ms).
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    read_ahead: u64,
    /// Cap the store's disk use (binary units: 50G, 512M, 2T), recorded in the store so every
    /// later command keeps to it (`tessera cache-size` changes it). Past the cap the least
    /// recently read data no pin protects is evicted, flat copies first; revisions pulled or
    /// pinned (`tessera pin`) and files open now are never evicted. Default: the store's
    /// recorded cap, else unbounded.
    #[arg(long, value_name = "SIZE", value_parser = super::output::parse_cache_size)]
    max_cache_size: Option<u64>,
    /// Threads answering the kernel (each holds a 16 MiB request buffer of its own; reads
    /// waiting on the remote share streams, so a few threads keep a link busy).
    #[arg(long, default_value_t = 8, value_name = "N")]
    threads: usize,
    /// Do not use FUSE passthrough. By default (as root, on kernels that offer it) a file read
    /// whole through the mount gets a flat copy under <home>/flat, and later opens hand that
    /// copy to the kernel: local-disk read speed, at the cost of the file's size again on disk
    /// (`tessera du` shows it, `gc` drops copies of files no longer indexed).
    #[arg(long, conflicts_with = "passthrough")]
    no_passthrough: bool,
    /// Use passthrough (the default as root; kept for scripts written before it was).
    #[arg(long, hide = true)]
    passthrough: bool,
    /// Hub to fetch from on demand [env: HF_ENDPOINT; default: https://huggingface.co].
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks
    /// one, which `tessera status` shows): bytes served and fetched, cache hits and misses,
    /// fetch latency, fetches in flight, errors by kind, store size by class, build info.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Mount without fusermount3's auto_unmount (a killed process then leaves a stale mount
    /// point, which the next `tessera mount` cleans up).
    #[arg(long)]
    no_auto_unmount: bool,
}

/// Passthrough needs CAP_SYS_ADMIN to register backing files; without it every open would try
/// and fail, so only root gets it by default.
fn passthrough_wanted(args: &MountArgs) -> bool {
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    !args.no_passthrough && (args.passthrough || root)
}

/// Chunk cache of a mount beside its read-ahead: with the default 16 MiB read-ahead, 24 MiB
/// holds the 16 MiB a warm reader decodes ahead (`DECODE_AHEAD` in the mount crate) with room
/// to spare; every MiB here is a MiB of the mount's peak RSS. Fetched chunks enter the cache decoded and hashed; a cache smaller than what is fetched
/// ahead evicted them before the reader came, and reading them back from disk cost a second
/// decode and hash of every byte (a cold 2 GiB read: 4.5-5.2 s of FUSE-thread CPU with a 32 MiB
/// cache under 128 MiB of read-ahead, 1.1-1.3 s with 64 MiB under 32 MiB). The kernel's page
/// cache does the rest.
const MOUNT_DECODE_CACHE: usize = 8 << 20;

/// How long an unmounted mount waits for its fetches in flight to end before it exits.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Builds the remote that fills the store on demand, given the open store.
pub(crate) type RemoteFactory = dyn Fn(&Store) -> anyhow::Result<Arc<dyn RemoteSource>>;

pub(crate) fn run(args: MountArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let remote = super::remote::RemoteArgs {
        endpoint: args.endpoint.clone(),
        offline: args.offline,
        repo_type: crate::protocol::RepoType::Model,
    };
    let runtime = super::remote::runtime()?;
    let handle = runtime.handle().clone();
    let stall = args.fetch_timeout;
    let env = ctx.env.clone();
    let factory = move |store: &Store| -> anyhow::Result<Arc<dyn RemoteSource>> {
        let hub = remote.client_with(&env, crate::hub::RetryPolicy::interactive())?;
        Ok(Arc::new(crate::sync::HubSource::new(hub, store.clone(), handle.clone(), stall)))
    };
    let code = run_with(args, ctx, Some(&factory));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Mounts with the given remote factory (`None`: no remote available).
pub(crate) fn run_with(
    args: MountArgs,
    ctx: &Ctx,
    remote: Option<&RemoteFactory>,
) -> anyhow::Result<ExitCode> {
    // The kernel's page cache holds what was read; the chunk cache only bridges a reader and
    // the bytes decoded (or just fetched) ahead of it, so a small one keeps the daemon lean.
    let cache_bytes =
        usize::try_from(args.read_ahead).unwrap_or(usize::MAX).saturating_add(MOUNT_DECODE_CACHE);
    let store = ctx.open_store_with(crate::store::StoreOptions::with_cache_bytes(cache_bytes))?;
    if let Some(cap) = args.max_cache_size {
        store.set_cache_cap(Some(cap)).context("cannot evict down to --max-cache-size")?;
    }
    let remote = match (args.offline, remote) {
        (true, _) => None,
        (false, Some(make)) => Some(make(&store).context("cannot set up the remote")?),
        (false, None) => {
            eprintln!("tessera: no remote configured; serving only what the store holds");
            None
        }
    };
    let owner =
        std::fs::metadata(&ctx.home).with_context(|| format!("stat {}", ctx.home.display()))?;
    let mut opts = VfsOptions::default();
    opts.ref_ttl = args.ref_ttl;
    opts.fetch_timeout = args.fetch_timeout;
    (opts.uid, opts.gid) = (owner.uid(), owner.gid());
    opts.flat_dir = passthrough_wanted(&args).then(|| store.flat_dir());
    opts.prefetch_window = args.read_ahead;
    let mut cfg = MountConfig::default();
    cfg.allow_other = args.allow_other;
    cfg.threads = args.threads.clamp(1, 256);
    cfg.auto_unmount = !args.no_auto_unmount;
    let mode = if remote.is_some() { "lazy" } else { "offline" };
    let closing = store.clone();
    let vfs = Vfs::new(store.clone(), remote, opts);
    let mounted = crate::mount::mount(vfs.clone(), &args.mountpoint, &cfg)?;
    let status = Arc::new(MountStatus {
        vfs,
        store: store.clone(),
        mountpoint: mounted.mountpoint().to_path_buf(),
        metrics: OnceLock::new(),
    });
    let control = serve_node(&args, store, &status)?;
    eprintln!(
        "tessera: mounted {} at {} ({mode}); Ctrl-C or SIGTERM unmounts",
        ctx.home.display(),
        mounted.mountpoint().display()
    );
    super::notify::ready(&ctx.env, &format!("mounted {}", mounted.mountpoint().display()));
    let why = wait_for_stop(&mounted)?;
    let mountpoint = mounted.mountpoint().to_path_buf();
    mounted.unmount()?;
    // Chunks fetched in the last moments are indexed now rather than fetched again next time.
    if let Err(e) = closing.flush() {
        tracing::warn!(error = %e, "could not index the last fetched chunks");
    }
    drop((control, status));
    // Read-ahead and streams still running finish while the runtime they use is alive.
    if !closing.close(CLOSE_WAIT) {
        tracing::warn!("fetches still running {CLOSE_WAIT:?} after the unmount; exiting anyway");
    }
    eprintln!("tessera: {why}: unmounted {}", mountpoint.display());
    Ok(ExitCode::SUCCESS)
}

/// What `tessera status` and `/metrics` show of a mount.
struct MountStatus {
    vfs: Vfs,
    store: Store,
    mountpoint: PathBuf,
    /// Where `--metrics-listen` bound, once it has.
    metrics: OnceLock<std::net::SocketAddr>,
}

impl HolderStatus for MountStatus {
    fn describe(&self) -> serde_json::Value {
        let (pid, command) = super::control::identity();
        let s = self.vfs.metrics().snapshot();
        serde_json::json!({
            "kind": "mount", "pid": pid, "command": command,
            "mountpoint": self.mountpoint, "revisions_open": self.vfs.open_revisions(),
            "bytes_served": s.bytes_served, "bytes_fetched": self.vfs.bytes_fetched(),
            "cache_hits": s.cache_hits, "cache_misses": s.cache_misses,
            "fetches_in_flight": s.fetches_in_flight, "errors": s.errors,
            "recent_errors": s.recent_errors,
            "metrics_listen": self.metrics.get().map(ToString::to_string),
        })
    }

    fn render(&self, out: &mut String) {
        self.vfs.metrics().render(out, self.vfs.bytes_fetched());
    }
}

/// Starts what makes the mount a node service: `--metrics-listen`, and the control socket
/// through which other commands on this home run in here from now on (`cli::control`).
fn serve_node(
    args: &MountArgs,
    store: Store,
    status: &Arc<MountStatus>,
) -> anyhow::Result<ControlServer> {
    if let Some(addr) = args.metrics_listen {
        // The metrics thread outlives the mount: it must not keep the store open at exit.
        let status_of = Arc::downgrade(status);
        let render = move || status_of.upgrade().map(|s| exposition(&s.store, Some(s.as_ref()))).unwrap_or_default();
        let bound = serve_metrics(addr, Arc::new(render))?;
        let _ = status.metrics.set(bound);
        eprintln!("tessera: metrics at http://{bound}/metrics");
    }
    super::serve_control(Held::new(store, status.clone()))
}

/// Blocks until SIGINT, SIGTERM or the session ending by itself; says which.
fn wait_for_stop(mounted: &Mounted) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok("SIGTERM"),
                _ = int.recv() => return Ok("SIGINT"),
                _ = tick.tick() => if mounted.is_finished() { return Ok("unmounted from outside") },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m").ok(), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1d").ok(), Some(Duration::from_secs(86400)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("32M").ok(), Some(32 << 20));
        assert_eq!(parse_size("1GiB").ok(), Some(1 << 30));
        assert_eq!(parse_size("1048576").ok(), Some(1 << 20));
        assert!(parse_size("512K").is_err(), "below 1 MiB");
        assert!(parse_size("5G").is_err(), "above 4 GiB");
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size("3T").is_err());
    }
}
