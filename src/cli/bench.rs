//! `tessera bench ...`: end-to-end benchmarks of the real binaries.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::bench::report::parse_rate;
use crate::bench::restart::{ModelSpec, RestartOptions};

/// `tessera bench` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Process start to the first correct inference answer, for each way of getting there
    /// (Python snapshot_download + onnxruntime, tessera mount + serve; cold and warm).
    Restart(RestartArgs),
}

/// Arguments of `tessera bench restart`.
#[derive(Debug, clap::Args)]
pub(crate) struct RestartArgs {
    /// The model to answer with, as REPO@REV:PATH [default: the embedded repo's MiniLM int8,
    /// bench/minilm-l6-v2@main:onnx/model.onnx].
    #[arg(long, value_name = "REPO@REV:PATH")]
    model: Option<ModelSpec>,
    /// Measure against this hub instead of starting one and publishing the default repo.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Runs per scenario.
    #[arg(long, default_value_t = 5, value_name = "N")]
    runs: usize,
    /// Limit the embedded hub's send rate, e.g. 100MB/s (decimal units; `Mbit/s` for bits).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    bandwidth: Option<u64>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Write a bar chart: FILE.svg, or FILE.png (rendered with rsvg-convert).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Python with huggingface_hub, hf_xet, onnxruntime, onnx, numpy
    /// [default: $TESSERA_VENV/bin/python, else python3].
    #[arg(long, value_name = "PATH")]
    baseline_python: Option<PathBuf>,
    /// Registry packages unpacked by scripts/setup.sh, for the default repo.
    #[arg(long, env = "TESSERA_ASSETS", value_name = "DIR")]
    assets: Option<PathBuf>,
    /// Reduced fixture for tests: no safetensors, a 4 MB large model.
    #[arg(long)]
    small: bool,
    /// Size of the generated large ONNX model in the default repo, MB.
    #[arg(long, default_value_t = 256, value_name = "MB")]
    large_mb: u64,
    /// Work directory [default: a new one under the temp dir]; removed at the end unless --keep.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the work directory (stores, caches, logs).
    #[arg(long)]
    keep: bool,
}

pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Restart(args) => restart(args),
    }
}

fn restart(args: RestartArgs) -> anyhow::Result<ExitCode> {
    let python = args.baseline_python.clone().unwrap_or_else(|| {
        std::env::var_os("TESSERA_VENV")
            .map(|v| PathBuf::from(v).join("bin/python"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("python3"))
    });
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tessera-bench-restart-{}", std::process::id()))
    });
    let opts = RestartOptions {
        tessera_bin: std::env::current_exe().context("locating the tessera binary")?,
        python,
        assets: args.assets.clone(),
        model: args.model.clone(),
        endpoint: args.endpoint.clone(),
        runs: args.runs,
        bandwidth: args.bandwidth,
        small: args.small,
        large_mb: args.large_mb.max(1),
        work_dir,
        keep: args.keep,
    };
    let report = crate::bench::restart::run(&opts, &mut |line| eprintln!("bench: {line}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.table());
    }
    if let Some(plot) = &args.plot {
        write_plot(plot, &report.svg())?;
        eprintln!("bench: wrote {}", plot.display());
    }
    Ok(if report.all_correct() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn write_plot(path: &std::path::Path, svg: &str) -> anyhow::Result<()> {
    let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !png {
        return std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()));
    }
    let tmp = path.with_extension("svg.tmp");
    std::fs::write(&tmp, svg).with_context(|| format!("writing {}", tmp.display()))?;
    let status = std::process::Command::new("rsvg-convert").arg("-o").arg(path).arg(&tmp).status();
    let _ = std::fs::remove_file(&tmp);
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => anyhow::bail!("rsvg-convert failed ({s})"),
        Err(e) => anyhow::bail!("a PNG plot needs rsvg-convert (apt install librsvg2-bin), or ask for .svg: {e}"),
    }
}
