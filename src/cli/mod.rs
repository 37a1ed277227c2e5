//! The command line (minimal wiring on the server branch; the lead's version replaces it).

pub mod hub;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Model repositories that behave like local files.
#[derive(Debug, Parser)]
#[command(name = "tessera", version)]
struct Cli {
    /// Store directory [default: ~/.cache/tessera].
    #[arg(long, global = true, env = "TESSERA_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Log filter (e.g. `info`, `tessera=debug`); logs go to stderr.
    #[arg(long, global = true, env = "TESSERA_LOG", default_value = "warn", value_name = "FILTER")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Hub-compatible server (Hub API + Xet CAS) over a store.
    Hub {
        #[command(subcommand)]
        cmd: hub::HubCommand,
    },
}

/// Entry point of the `tessera` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let home = cli.home.clone().unwrap_or_else(|| PathBuf::from(".tessera"));
    let result = match cli.command {
        Command::Hub { cmd } => hub::run(cmd, &home),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tessera: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
