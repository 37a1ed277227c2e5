//! The `tessera` command line.
//!
//! TEMPORARY (branch `infer`): a minimal `Cli` with only `serve`, until the lead wires the full
//! command set.

#[cfg(feature = "infer")]
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Model repositories as local files.
#[derive(Parser, Debug)]
#[command(name = "tessera", version)]
pub struct Cli {
    /// The store directory [default: $TESSERA_HOME or ~/.cache/tessera].
    #[arg(long, global = true, env = "TESSERA_HOME")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve ONNX models over the KServe v2 REST API.
    #[cfg(feature = "infer")]
    Serve(serve::ServeArgs),
}

/// Parses the arguments, runs the command and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let home = cli.home.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from(".tessera"), |h| PathBuf::from(h).join(".cache/tessera"))
    });
    let result = match cli.command {
        #[cfg(feature = "infer")]
        Command::Serve(args) => serve::run(args, &home),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
