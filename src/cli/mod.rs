//! The command line: parses arguments, builds runtimes and the log subscriber, maps errors to
//! exit codes. Nothing else in the crate reads the environment or prints for the user.

mod add;
#[cfg(all(feature = "mount", feature = "infer"))]
mod bench;
mod cat;
mod du;
mod export;
mod fsck;
mod gc;
mod hash;
mod ls;
pub mod hub;
#[cfg(feature = "mount")]
mod mount;
#[cfg(feature = "infer")]
mod ort_lib;
mod output;
mod pull;
mod push;
mod remote;
#[cfg(feature = "infer")]
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Model repositories that behave like local files: a Xet-exact, deduplicating chunk store,
/// a Hub-compatible server, lazy FUSE mounts and ONNX serving.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, propagate_version = true)]
struct Cli {
    /// Store directory [default: ~/.cache/tessera].
    #[arg(long, global = true, env = "TESSERA_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Log filter (e.g. `info`, `tessera=debug`); logs go to stderr [default: $RUST_LOG, else warn].
    #[arg(long, global = true, env = "TESSERA_LOG", value_name = "FILTER")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Xet file hash and SHA-256 of files (as the Hub and hf_xet compute them).
    Hash(hash::HashArgs),
    /// Add files or directories to the store, deduplicating against everything in it.
    Add(add::AddArgs),
    /// Write a stored file's bytes to stdout.
    Cat(cat::CatArgs),
    /// Show logical versus physical usage and the dedup ratio.
    Du(du::DuArgs),
    /// Verify every stored chunk and index entry; exits 1 naming what is damaged.
    Fsck(fsck::FsckArgs),
    /// Delete data that nothing references any more.
    Gc(gc::GcArgs),
    /// Forget a pin made by `add` (the data goes at the next `gc`).
    Unpin(add::UnpinArgs),
    /// Mirror a revision of a Hub repo into the store, fetching only what it lacks.
    Pull(pull::PullArgs),
    /// Publish a folder as a commit, sending only the chunks the remote lacks.
    Push(push::PushArgs),
    /// List the files of a revision (path, size, hashes).
    Ls(ls::LsArgs),
    /// Write a revision out as plain files, or as a Hugging Face cache (--hf-cache).
    Export(export::ExportArgs),
    /// Run a Hub-compatible server (Hub API + Xet CAS) over a store.
    Hub {
        #[command(subcommand)]
        cmd: hub::HubCommand,
    },
    /// Mount every revision of every model read-only at MOUNTPOINT/<org>/<name>@<rev>/.
    #[cfg(feature = "mount")]
    Mount(mount::MountArgs),
    /// Serve ONNX models (e.g. from a mount) over the KServe v2 / Open Inference REST API.
    #[cfg(feature = "infer")]
    Serve(serve::ServeArgs),
    /// End-to-end benchmarks of the real binaries.
    #[cfg(all(feature = "mount", feature = "infer"))]
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCommand,
    },
}

/// Context every subcommand receives.
pub(crate) struct Ctx {
    pub(crate) home: PathBuf,
}

impl Ctx {
    pub(crate) fn open_store(&self) -> anyhow::Result<crate::store::Store> {
        self.open_store_with(crate::store::StoreOptions::default())
    }

    /// Opens the store with explicit options (the mount's smaller chunk cache).
    pub(crate) fn open_store_with(&self, options: crate::store::StoreOptions) -> anyhow::Result<crate::store::Store> {
        crate::store::Store::open_with(&self.home, options).map_err(|e| {
            anyhow::anyhow!("cannot open the store at {}: {e:#}", self.home.display())
        })
    }
}

/// Entry point of the `tessera` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = cli.log.clone().or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| "warn".into());
    init_logging(&filter);
    let ctx = Ctx { home: cli.home.clone().unwrap_or_else(default_home) };
    match run(cli.command, &ctx) {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match command {
        Command::Hash(a) => hash::run(a),
        Command::Add(a) => add::run(a, ctx),
        Command::Cat(a) => cat::run(a, ctx),
        Command::Du(a) => du::run(a, ctx),
        Command::Fsck(a) => fsck::run(a, ctx),
        Command::Gc(a) => gc::run(a, ctx),
        Command::Unpin(a) => add::unpin(a, ctx),
        Command::Pull(a) => pull::run(a, ctx),
        Command::Push(a) => push::run(a, ctx),
        Command::Ls(a) => ls::run(a, ctx),
        Command::Export(a) => export::run(a, ctx),
        Command::Hub { cmd } => hub::run(cmd, &ctx.home),
        #[cfg(feature = "mount")]
        Command::Mount(a) => mount::run(a, ctx),
        #[cfg(feature = "infer")]
        Command::Serve(a) => serve::run(a, &ctx.home).map(|()| ExitCode::SUCCESS),
        #[cfg(all(feature = "mount", feature = "infer"))]
        Command::Bench { cmd } => bench::run(cmd),
    }
}

fn default_home() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tessera")
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
