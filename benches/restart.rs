//! `cargo bench --profile dev --bench restart [-- ARGS]`: runs `tessera bench restart` with its
//! defaults (the embedded hub and repo, 5 runs), or with ARGS (e.g. `--bandwidth 100MB/s
//! --plot restart.svg`), through the real binary, as a user would.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // cargo passes `--bench`; everything else goes to the harness.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let status = Command::new(env!("CARGO_BIN_EXE_tessera")).args(["bench", "restart"]).args(&args).status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("tessera bench restart failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run tessera: {e}");
            ExitCode::FAILURE
        }
    }
}
