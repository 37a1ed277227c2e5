//! `tessera serve`: ONNX models over the KServe v2 REST API.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::infer::{
    DeviceRequest, LoadedModel, Loader, ModelOptions, RequestLimits, Runtime, ServeState, serve,
    serve_grpc,
};

/// Serve ONNX models over the KServe v2 / Open Inference Protocol REST API.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Also serve the inference metrics (plus build info) at http://ADDR/metrics, apart from
    /// the API's own `/metrics`, for a scraper that must not reach the API port.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Also answer the KServe v2 gRPC protocol (`inference.GRPCInferenceService`, as
    /// `tritonclient.grpc` speaks it) on this address; port 0 picks a free port (logged as
    /// `gRPC listening on ADDR`). Off when not given.
    #[arg(long, value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// A model to serve, as NAME=PATH to an .onnx file; repeat for more.
    #[arg(long = "model", value_name = "NAME=PATH", required = true, value_parser = parse_model)]
    pub models: Vec<(String, PathBuf)>,
    /// auto (CUDA when a GPU and the CUDA provider are present, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Intra-op threads per session [default: cores / workers].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sessions per model that may run at once [default: number of cores].
    #[arg(long)]
    pub workers: Option<usize>,
    /// The ONNX Runtime library, e.g. .../onnxruntime/capi/libonnxruntime.so.1.31.1
    /// [default: the `onnxruntime` package of the active Python environment ($VIRTUAL_ENV,
    /// $CONDA_PREFIX), then of a python3 on PATH, then libonnxruntime.so on the loader's path].
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// Most input elements (all inputs of one request together) a model accepts, as N for
    /// every model or NAME=N for one; repeatable. Over the cap is a 413. Set it per model to
    /// what the model affords: a transformer's memory grows with the square of the sequence.
    #[arg(long = "max-elements", value_name = "[NAME=]N", value_parser = parse_max_elements)]
    pub max_elements: Vec<(Option<String>, usize)>,
    /// A KServe v2 JSON request body (file) that warms up model NAME; repeatable. Before a model
    /// is ready, every one of its `--workers` sessions is created and runs this request once, so
    /// that the first requests after ready run at full speed. Without it the warm-up sends zeros
    /// with dynamic dimensions 1, which some models reject (a warning says so; the sessions are
    /// still created).
    #[arg(long = "warmup", value_name = "NAME=FILE", value_parser = parse_model)]
    pub warmups: Vec<(String, PathBuf)>,
    /// Dynamic batching: concurrent requests to a model whose inputs and outputs all have a
    /// dynamic first dimension are merged up to this many rows and run once, each client getting
    /// its own rows back. 1 (the default) turns it off.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_batch: u32,
    /// How long a request may wait for others to join its batch, in microseconds (with
    /// `--max-batch` over 1).
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub max_queue_delay: u64,
    /// Neither read nor write the optimized-model cache (<home>/ort-cache).
    #[arg(long)]
    pub no_cache: bool,
    /// How often to check whether the commit behind a model served from a tessera mount
    /// changed (a branch re-resolved after the mount's `--ref-ttl`), in seconds; a changed one
    /// is loaded and warmed beside the old, then swapped in while the old drains. 0 turns it
    /// off. `POST /v2/repository/models/NAME/load` does the same on demand.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub watch_revisions: u64,
}

fn parse_max_elements(s: &str) -> Result<(Option<String>, usize), String> {
    let (name, n) = match s.split_once('=') {
        Some((name, n)) => (Some(name.to_owned()), n),
        None => (None, s),
    };
    let n: usize = n.parse().map_err(|_| format!("'{s}' is not N or NAME=N"))?;
    if n == 0 {
        return Err("--max-elements must be positive".into());
    }
    Ok((name, n))
}

/// The request caps of the arguments: a bare N is the default, NAME=N one model's.
fn request_limits(args: &ServeArgs) -> RequestLimits {
    let mut limits = RequestLimits { max_body: args.max_request_bytes, ..RequestLimits::default() };
    for (name, n) in &args.max_elements {
        match name {
            Some(name) => limits.model_elements.push((name.clone(), *n)),
            None => limits.max_elements = *n,
        }
    }
    limits
}

fn parse_model(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or_else(|| format!("'{s}' is not NAME=PATH"))?;
    let ok =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(format!(
            "model name '{name}' must be non-empty and use only letters, digits, '_', '.' and '-'"
        ));
    }
    if path.is_empty() {
        return Err(format!("model '{name}' has an empty path"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// Runs the server until SIGTERM or Ctrl-C. Models load in the background after the listener is
/// bound; `/v2/health/ready` turns true when all have. A model that fails to load stops the
/// server with an error.
pub(crate) fn run(args: ServeArgs, home: &Path) -> anyhow::Result<()> {
    for (i, (name, _)) in args.models.iter().enumerate() {
        if args.models[..i].iter().any(|(n, _)| n == name) {
            bail!("model name '{name}' is given twice");
        }
    }
    let lib = args.ort_lib.clone().or_else(super::ort_lib::locate);
    if let Some(lib) = &lib {
        tracing::info!(lib = %lib.display(), "ONNX Runtime");
    }
    let (runtime, device_line) = Runtime::init(lib.as_deref(), args.device)?;
    tracing::info!("{device_line}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = args.workers.unwrap_or(cores).max(1);
    let opts = ModelOptions {
        threads: args.threads.unwrap_or((cores / workers).max(1)),
        max_sessions: workers,
        cache_dir: (!args.no_cache).then(|| home.join("ort-cache")),
    };
    if let Some((Some(name), _)) = args
        .max_elements
        .iter()
        .find(|(n, _)| n.as_ref().is_some_and(|n| !args.models.iter().any(|(m, _)| m == n)))
    {
        bail!("--max-elements names '{name}', which is not a --model");
    }
    let batch = (args.max_batch as usize, std::time::Duration::from_micros(args.max_queue_delay));
    let state =
        ServeState::with_batching(&args.models, workers, &request_limits(&args), Some(batch));
    let runtime = Arc::new(runtime);
    state.set_loader(loader(&runtime, &args.warmups, &opts));
    if let Some(addr) = args.metrics_listen {
        let st = Arc::clone(&state);
        let render = move || {
            let mut text = String::new();
            crate::metrics::build_info(&mut text);
            text + &st.metrics().render()
        };
        let bound = super::status::serve_metrics(addr, Arc::new(render))?;
        eprintln!("tessera serve: metrics at http://{bound}/metrics");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!("listening on http://{addr}");
        // The first stdout line names the address, as `hub serve` does, for scripts using port 0.
        println!("tessera serve: listening on http://{addr}");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stopping = stop_on(shutdown_signal(stop_rx));
        let grpc = match &args.grpc_listen {
            Some(at) => Some(spawn_grpc(at, &state, args.max_request_bytes, &stopping).await?),
            None => None,
        };
        let server = tokio::spawn(serve(listener, Arc::clone(&state), stopped(&stopping)));
        let loading = {
            let state = Arc::clone(&state);
            tokio::task::spawn_blocking(move || {
                load_all(&runtime, &args.models, &args.warmups, &opts, &state, cores)
            })
        };
        let loaded = loading.await.context("model loading task")?;
        if let Err(e) = loaded {
            let _ = stop_tx.send(());
            let _ = server.await;
            return Err(e);
        }
        if args.watch_revisions > 0 {
            tokio::spawn(watch_revisions(Arc::clone(&state), Duration::from_secs(args.watch_revisions)));
        }
        server.await.context("server task")?.context("serving")?;
        if let Some(grpc) = grpc {
            grpc.await.context("gRPC server task")?.context("serving gRPC")?;
        }
        tracing::info!("shut down");
        // The sender lives until here so that the server only stops on a signal.
        drop(stop_tx);
        Ok(())
    })
}

/// How the repository API and revision swaps load a model again: as at start, warm-up included.
fn loader(runtime: &Arc<Runtime>, warmups: &[(String, PathBuf)], opts: &ModelOptions) -> Loader {
    let (runtime, warmups, opts) = (Arc::clone(runtime), warmups.to_vec(), opts.clone());
    Loader(Box::new(move |name: &str, path: &Path| {
        let m = LoadedModel::load(&runtime, name, path, &opts)?;
        warm_up(&m, warmups.iter().find(|(n, _)| n == name).map(|(_, f)| f.as_path()))?;
        Ok(m)
    }))
}

/// Every `period`, reloads the models whose file on a tessera mount now belongs to another
/// commit than the one serving (the mount's branch moved); files elsewhere are left alone.
async fn watch_revisions(state: Arc<ServeState>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (name, path, serving) in state.serving_commits() {
            let Some(serving) = serving else { continue };
            let now = tokio::task::spawn_blocking(move || crate::infer::session::tessera_xattrs(&path).remove("commit"));
            let Ok(Some(now)) = now.await else { continue };
            if now != serving {
                tracing::info!(model = %name, from = %serving, to = %now, "the model's revision moved; loading it beside the old");
                if let Err(e) = state.reload(&name).await {
                    tracing::warn!(model = %name, error = %e, "could not load the new revision; the old one keeps serving");
                }
            }
        }
    }
}

/// Loads every model, `threads` at a time; stops at the first failure.
fn load_all(
    runtime: &Runtime,
    models: &[(String, PathBuf)],
    warmups: &[(String, PathBuf)],
    opts: &ModelOptions,
    state: &ServeState,
    threads: usize,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let failed = parking_lot::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, models.len().max(1)) {
            s.spawn(|| {
                while failed.lock().is_none() {
                    let Some((name, path)) = models.get(next.fetch_add(1, Ordering::SeqCst)) else { return };
                    match LoadedModel::load(runtime, name, path, opts).map_err(anyhow::Error::from).and_then(|m| {
                        warm_up(&m, warmups.iter().find(|(n, _)| n == name).map(|(_, f)| f.as_path()))?;
                        Ok(m)
                    }) {
                        Ok(m) => {
                            tracing::info!(
                                "loaded model '{name}' from {} in {:.1} ms (optimized-model cache: {:?})",
                                path.display(),
                                m.load_time.as_secs_f64() * 1e3,
                                m.cache
                            );
                            state.set_loaded(m);
                        }
                        Err(e) => {
                            failed.lock().get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    tracing::info!(
        "ready: {} models loaded in {:.2} s",
        models.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A flag that turns true once `signal` completes, so that both servers stop on one signal.
fn stop_on(
    signal: impl Future<Output = ()> + Send + 'static,
) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = tx.send(true);
    });
    rx
}

/// Completes when the flag of [`stop_on`] turns true (or its sender is gone).
fn stopped(flag: &tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut flag = flag.clone();
    async move {
        let _ = flag.wait_for(|stop| *stop).await;
    }
}

/// Binds the gRPC listener at `at` and serves it in a task until the stop flag turns true.
async fn spawn_grpc(
    at: &str,
    state: &Arc<ServeState>,
    max_message: usize,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("cannot listen for gRPC on {at}"))?;
    let addr = listener.local_addr()?;
    tracing::info!("gRPC listening on {addr}");
    println!("tessera serve: gRPC listening on {addr}");
    Ok(tokio::spawn(serve_grpc(listener, Arc::clone(state), max_message, stopped(stopping))))
}

/// Creates and warms every session of `m` with the request in `file` (zeros without one). A
/// file that does not fit the model is an error; zeros the model rejects are a warning.
fn warm_up(m: &LoadedModel, file: Option<&Path>) -> anyhow::Result<()> {
    let start = Instant::now();
    let inputs = match file {
        Some(f) => {
            let body =
                std::fs::read(f).with_context(|| format!("reading --warmup {}", f.display()))?;
            let req = crate::infer::tensor::parse_request(&body)
                .with_context(|| format!("--warmup {} for model '{}'", f.display(), m.name))?;
            crate::infer::tensor::check_inputs(&req.inputs, &m.inputs)
                .with_context(|| format!("--warmup {} for model '{}'", f.display(), m.name))?;
            req.inputs
        }
        None => m.zero_inputs(),
    };
    let failures = m.warm_up(&inputs).with_context(|| format!("warming up model '{}'", m.name))?;
    match (failures.first(), file) {
        (Some(e), Some(f)) => bail!("--warmup {} fails on model '{}': {e}", f.display(), m.name),
        (Some(e), None) => tracing::warn!(
            "model '{}' rejects a zero warm-up request ({e}); its sessions are made but not warm: pass --warmup {}=REQUEST.json",
            m.name,
            m.name
        ),
        (None, _) => {}
    }
    tracing::info!(
        "model '{}': {} sessions created and warmed in {:.1} ms",
        m.name,
        m.sessions(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Completes on SIGTERM, Ctrl-C, or when `stop` fires.
async fn shutdown_signal(stop: tokio::sync::oneshot::Receiver<()>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM: finishing requests in flight"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: finishing requests in flight"),
        Ok(()) = stop => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_parse() {
        assert_eq!(parse_model("vad=/m/a.onnx"), Ok(("vad".into(), PathBuf::from("/m/a.onnx"))));
        assert_eq!(parse_model("a=b=c"), Ok(("a".into(), PathBuf::from("b=c"))));
        assert!(parse_model("nopath").is_err());
        assert!(parse_model("=x").is_err());
        assert!(parse_model("a/b=x").is_err());
        assert!(parse_model("a=").is_err());
    }
}
