//! `tessera hash`: Xet file hash and SHA-256 of local files, without touching the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::output;
use crate::chunking::stream::chunk_stream;

/// Arguments of `tessera hash`.
#[derive(Debug, clap::Args)]
pub(crate) struct HashArgs {
    /// One JSON object per file: {"path", "size", "xet_hash", "sha256"}.
    #[arg(long)]
    json: bool,
    /// Files to hash.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct HashLine<'a> {
    path: &'a str,
    size: u64,
    xet_hash: String,
    sha256: String,
}

pub(crate) fn run(args: HashArgs) -> anyhow::Result<ExitCode> {
    for path in &args.files {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let summary = chunk_stream::<_, std::io::Error>(std::io::BufReader::with_capacity(0, file), |_| Ok(()))
            .with_context(|| format!("cannot read {}", path.display()))?;
        let line = HashLine {
            path: &path.to_string_lossy(),
            size: summary.size,
            xet_hash: summary.file_hash.to_string(),
            sha256: summary.sha256.to_string(),
        };
        if args.json {
            output::json_line(&line)?;
        } else {
            println!("{}  {}  {}  {}", line.xet_hash, line.sha256, line.size, line.path);
        }
    }
    Ok(ExitCode::SUCCESS)
}
