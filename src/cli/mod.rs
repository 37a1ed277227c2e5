//! The command line: parses arguments, builds runtimes and the log subscriber, maps errors to
//! exit codes. Nothing else in the crate reads the environment or prints for the user.

mod add;
#[cfg(all(feature = "mount", feature = "infer"))]
mod bench;
mod cat;
mod control;
mod du;
mod env;
mod export;
mod fsck;
mod gc;
mod hash;
pub mod hub;
mod ls;
#[cfg(feature = "mount")]
mod mount;
mod notify;
#[cfg(feature = "infer")]
mod ort_lib;
mod output;
mod pin;
mod pull;
mod push;
mod remote;
#[cfg(feature = "infer")]
mod serve;
mod status;

use std::io::Write;
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
    /// Forget a pin made by `add` (the data goes at the next `gc`) or a pinned revision
    /// (`org/name@rev`: its data becomes evictable).
    Unpin(add::UnpinArgs),
    /// Pin revisions so a capped store never evicts them (`pull` pins what it brings); with no
    /// argument, list the pinned revisions.
    Pin(pin::PinArgs),
    /// Show or set the store's size cap, with its used, pinned and evictable bytes.
    CacheSize(pin::CacheSizeArgs),
    /// What the store's holder (a mount or hub server) is doing: mounts, revisions open, reads,
    /// fetches, recent errors, cache use; `--prometheus` prints the metrics text.
    Status(status::StatusArgs),
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

impl Command {
    /// Whether the command works on the store and so, while a mount or hub server holds it,
    /// runs in that holder (see `control`). The holders themselves, and commands that never
    /// open the store, run here.
    fn uses_store(&self) -> bool {
        match self {
            Command::Hash(_) | Command::Hub { .. } => false,
            #[cfg(feature = "mount")]
            Command::Mount(_) => false,
            #[cfg(feature = "infer")]
            Command::Serve(_) => false,
            #[cfg(all(feature = "mount", feature = "infer"))]
            Command::Bench { .. } => false,
            _ => true,
        }
    }
}

/// Context every subcommand receives: where the store is, and the caller's working
/// directory, environment and output streams (a forwarded command's are its client's).
pub(crate) struct Ctx {
    pub(crate) home: PathBuf,
    pub(crate) cwd: PathBuf,
    pub(crate) env: env::Env,
    pub(crate) io: output::Io,
    /// The holder's open store, when this command runs inside the holder.
    held: Option<control::Held>,
}

impl Ctx {
    /// A command run by this process for itself.
    fn local(home: PathBuf) -> Self {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Self { home, cwd, env: env::Env::process(), io: output::Io::process(), held: None }
    }

    /// The status of the holder running this command, if one does.
    pub(crate) fn holder_status(&self) -> Option<std::sync::Arc<dyn status::HolderStatus>> {
        self.held.as_ref().map(|h| h.status.clone())
    }

    /// A path from the command line, relative to the caller's working directory.
    pub(crate) fn path(&self, p: &std::path::Path) -> PathBuf {
        self.cwd.join(p)
    }

    pub(crate) fn open_store(&self) -> anyhow::Result<crate::store::Store> {
        self.open_store_with(crate::store::StoreOptions::default())
    }

    /// Opens the store with explicit options (the mount's smaller chunk cache), and records
    /// this process as its holder. A store held by another process is an error naming it.
    /// Inside the holder it is the holder's open store, whose options are the holder's.
    pub(crate) fn open_store_with(
        &self,
        options: crate::store::StoreOptions,
    ) -> anyhow::Result<crate::store::Store> {
        if let Some(held) = &self.held {
            return Ok(held.store.clone());
        }
        let store = crate::store::Store::open_with(&self.home, options).map_err(|e| {
            let held =
                is_lock_error(&e).then(|| format!(": {}", control::held_message(&self.home)));
            anyhow::anyhow!(
                "cannot open the store at {}{}: {e:#}",
                self.home.display(),
                held.unwrap_or_default()
            )
        })?;
        if let Err(e) = control::write_record(&self.home, false) {
            tracing::warn!(error = %format!("{e:#}"), "cannot record this process as the store's holder");
        }
        Ok(store)
    }
}

/// Whether opening failed because another process holds RocksDB's lock.
fn is_lock_error(e: &crate::store::StoreError) -> bool {
    matches!(e, crate::store::StoreError::Db(db) if db.as_ref().contains("LOCK"))
}

/// Entry point of the `tessera` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        cli.log.clone().or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| "warn".into());
    init_logging(&filter);
    let home = cli.home.clone().unwrap_or_else(default_home);
    let ctx = Ctx::local(home);
    if cli.command.uses_store() {
        match control::forward(&ctx.home, &ctx.env) {
            Ok(Some(code)) => return ExitCode::from(code),
            Ok(None) => {}
            Err(e) => {
                eprintln!("tessera: error: {e:#}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::from(execute(cli.command, &ctx))
}

/// Runs a command and reports its error on the command's stderr; returns the exit status
/// (0 ok, 1 the command's own "no" (fsck found damage), 2 an error).
fn execute(command: Command, ctx: &Ctx) -> u8 {
    let code = match run(command, ctx) {
        Ok(code) => exit_number(code),
        Err(e) if output::is_broken_pipe(&e) => 0,
        Err(e) => {
            let _ = writeln!(ctx.io.err(), "tessera: error: {e:#}");
            2
        }
    };
    match ctx.io.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe && code == 0 => 2,
        _ => code,
    }
}

/// The number of an `ExitCode` (which does not expose it).
fn exit_number(code: ExitCode) -> u8 {
    (0..=u8::MAX).find(|&n| ExitCode::from(n) == code).unwrap_or(2)
}

/// In a holder: parses and runs a command another `tessera` forwarded, against the open
/// store, with the caller's directory, environment and streams.
fn run_forwarded(request: control::Request, held: control::Held, io: output::Io) -> u8 {
    let cli = match Cli::try_parse_from(&request.argv) {
        Ok(cli) if cli.command.uses_store() => cli,
        Ok(_) => {
            let _ = writeln!(
                io.err(),
                "tessera: error: this command does not run through the store's holder"
            );
            return 2;
        }
        Err(e) => {
            let _ = write!(io.err(), "{}", e.render());
            return 2;
        }
    };
    let gate = match cli.command {
        Command::Gc(_) => Some(true),
        Command::Status(_) => None,
        _ => Some(false),
    };
    let home = held.store.home().to_path_buf();
    let lent = held.clone();
    let ctx = Ctx { home, cwd: PathBuf::from(request.cwd), env: request.env, io, held: Some(held) };
    lent.gated(gate, || execute(cli.command, &ctx))
}

/// Serves the control socket of a holder's store (`mount`, `hub serve`).
pub(crate) fn serve_control(held: control::Held) -> anyhow::Result<control::ControlServer> {
    control::serve(held, run_forwarded)
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
        Command::Pin(a) => pin::pin(a, ctx),
        Command::CacheSize(a) => pin::cache_size(a, ctx),
        Command::Status(a) => status::run(a, ctx),
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
    // A daemon whose stderr was closed (a supervisor that stopped reading) must keep running:
    // tracing's report of a failed write is an `eprintln!`, which panics on a closed stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}
