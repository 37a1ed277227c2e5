//! The KServe v2 / Open Inference Protocol REST API over axum, plus `/metrics`.
//!
//! Health and readiness answer 200 for true and 400 for false, as the protocol says. Errors are
//! `{"error": "..."}`: 400 for a bad request (naming the problem), 404 for an unknown model, 413
//! for a body over the limit, 503 while a model is still loading, 500 when ONNX Runtime fails.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Semaphore;

use super::batch::{self, BatchOptions, Batcher};
use super::metrics::Metrics;
use super::session::{LoadedModel, RunError};
use super::tensor;

/// What the HTTP layer shares: the models (loaded or still loading), metrics and limits.
#[derive(Debug)]
pub struct ServeState {
    slots: BTreeMap<String, ModelSlot>,
    metrics: Metrics,
    max_body: usize,
    loaded: AtomicUsize,
    ready: AtomicBool,
    /// Loads (and warms) a model again from its path, for the repository API and revision
    /// swaps; none until the server sets one.
    loader: OnceLock<Loader>,
}

/// Loads and warms the model of a name from its path (blocking).
pub type LoadFn = dyn Fn(&str, &std::path::Path) -> anyhow::Result<LoadedModel> + Send + Sync;

/// How the server loads a model again: a [`LoadFn`] given by the serving command.
pub struct Loader(pub Box<LoadFn>);

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Loader")
    }
}

#[derive(Debug)]
pub(super) struct ModelSlot {
    path: PathBuf,
    /// The model serving now. A request clones the `Arc` and keeps it to its end, so a swap
    /// never cuts one short: the old model drains and drops with its last request.
    model: parking_lot::RwLock<Option<Arc<Served>>>,
    /// Whether the batch permits were added (once per slot, not per swap).
    batch_permits: AtomicBool,
    /// One load of this model at a time (repository API, revision watch).
    loading: tokio::sync::Mutex<()>,
    /// Runs admitted at once: one per session the model may have.
    pub(super) permits: Semaphore,
    /// Most input elements (all inputs together) one request may send to this model.
    max_elements: usize,
    /// How requests are batched, when they are.
    batch: Option<BatchOptions>,
}

/// A loaded model with its batch queue, swapped in and out together.
#[derive(Debug)]
pub struct Served {
    /// The model.
    pub model: Arc<LoadedModel>,
    /// The batch queue, started on the first request to a batchable model; `None` inside when
    /// the model cannot batch.
    batcher: OnceLock<Option<Batcher>>,
}

/// Caps on one inference request.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Most input elements per request, for models without their own cap.
    pub max_elements: usize,
    /// Per-model caps on input elements (model name, elements), overriding `max_elements`.
    /// A dynamic dimension lets a small request ask a model for huge intermediates (attention
    /// is quadratic in sequence length), so a model's cap is what its operators can afford.
    pub model_elements: Vec<(String, usize)>,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self { max_body: 64 << 20, max_elements: 16 << 20, model_elements: Vec::new() }
    }
}

impl RequestLimits {
    fn elements_for(&self, model: &str) -> usize {
        let own = self.model_elements.iter().rev().find(|(n, _)| n == model);
        own.map_or(self.max_elements, |(_, n)| *n)
    }
}

impl ServeState {
    /// State for these (name, path) models, none loaded yet; `concurrency` runs per model at
    /// once; requests within `limits`.
    pub fn new(
        models: &[(String, PathBuf)],
        concurrency: usize,
        limits: &RequestLimits,
    ) -> Arc<Self> {
        Self::with_batching(models, concurrency, limits, None)
    }

    /// As [`ServeState::new`], with dynamic batching of the models that can batch. A model that
    /// batches admits `concurrency * max_batch` requests at once, so that batches can fill; one
    /// that cannot keeps `concurrency` (more would only queue parsed bodies for its sessions).
    pub fn with_batching(
        models: &[(String, PathBuf)],
        concurrency: usize,
        limits: &RequestLimits,
        batch: Option<(usize, std::time::Duration)>,
    ) -> Arc<Self> {
        let concurrency = concurrency.max(1);
        let batch = batch.filter(|(n, _)| *n > 1).map(|(max_batch, max_delay)| BatchOptions {
            max_batch,
            max_delay,
            runs: concurrency,
        });
        let slots = models
            .iter()
            .map(|(n, p)| {
                let slot = ModelSlot {
                    path: p.clone(),
                    model: parking_lot::RwLock::new(None),
                    batch_permits: AtomicBool::new(false),
                    loading: tokio::sync::Mutex::new(()),
                    permits: Semaphore::new(concurrency),
                    max_elements: limits.elements_for(n),
                    batch,
                };
                (n.clone(), slot)
            })
            .collect();
        Arc::new(ServeState {
            slots,
            metrics: Metrics::new(models.iter().map(|(n, _)| n.as_str())),
            max_body: limits.max_body,
            loaded: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            loader: OnceLock::new(),
        })
    }

    /// Publishes a loaded model, in place of the one serving under its name if any (requests
    /// running on that one finish on it); the server is ready once every model was loaded.
    pub fn set_loaded(&self, model: LoadedModel) {
        let Some(slot) = self.slots.get(&model.name) else { return };
        let batchable = batch::batchable(&model.inputs, &model.outputs);
        if let Some(b) = slot.batch.filter(|_| batchable) {
            if !slot.batch_permits.swap(true, Ordering::SeqCst) {
                slot.permits.add_permits(b.runs.saturating_mul(b.max_batch - 1));
            }
        }
        if let Some(m) = self.metrics.model(&model.name) {
            m.set_loaded(model.load_time, model.cache == super::session::CacheOutcome::Hit);
        }
        let served = Arc::new(Served { model: Arc::new(model), batcher: OnceLock::new() });
        let first = slot.model.write().replace(served).is_none();
        if first
            && !self.ready.load(Ordering::SeqCst)
            && self.loaded.fetch_add(1, Ordering::SeqCst) + 1 == self.slots.len()
        {
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    /// Sets how models are loaded again (repository API, revision swaps).
    pub fn set_loader(&self, loader: Loader) {
        let _ = self.loader.set(loader);
    }

    /// Loads the model `name` again from its path beside the one serving, then swaps it in.
    /// Loads of one model run one at a time; requests keep flowing to the old one meanwhile.
    pub async fn reload(self: &Arc<Self>, name: &str) -> Result<(), String> {
        self.reload_or_api_error(name).await.map_err(|e| e.1)
    }

    async fn reload_or_api_error(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let slot = slot(self, name)?;
        let _one = slot.loading.lock().await;
        let (me, name2, path) = (Arc::clone(self), name.to_string(), slot.path.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let loader = me.loader.get().ok_or_else(|| anyhow::anyhow!("this server cannot load models"))?;
            (loader.0)(&name2, &path)
        })
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("load task: {e}")))?
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("failed to load '{name}': {e:#}")))?;
        tracing::info!(model = name, commit = ?loaded.parameters.get("commit"), "loaded again; swapped in");
        self.set_loaded(loaded);
        Ok(())
    }

    /// Stops serving `name` (requests running on it finish); a load brings it back.
    fn unload(&self, name: &str) -> Result<(), ApiError> {
        slot(self, name)?.model.write().take();
        Ok(())
    }

    /// The commit each model serves now (from the mount's xattrs), for revision watching.
    pub fn serving_commits(&self) -> Vec<(String, PathBuf, Option<String>)> {
        self.slots
            .iter()
            .map(|(n, s)| {
                let commit = s.model.read().as_ref().and_then(|m| m.model.parameters.get("commit").cloned());
                (n.clone(), s.path.clone(), commit)
            })
            .collect()
    }

    /// True once every model is loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// True while this model's slot holds a loaded model.
    pub(super) fn model_ready(&self, slot: &ModelSlot) -> bool {
        slot.model.read().is_some()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// An error answer: status and message, sent as `{"error": message}`.
#[derive(Debug)]
pub(super) struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The routes of the API.
pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { axum::Json(json!({ "live": true })) }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_version))
        .route("/metrics", get(metrics))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route("/v2/repository/models/{model}/unload", post(repository_unload))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then finishes the requests
/// in flight within 30 s; request headers must arrive within 30 s ([`tessera_httpd`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = tessera_httpd::ConnLimits::default();
    tessera_httpd::serve_connections(listener, router(state), limits, shutdown).await
}

async fn server_metadata() -> impl IntoResponse {
    axum::Json(json!({ "name": "tessera", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }))
}

async fn server_ready(State(st): State<Arc<ServeState>>) -> impl IntoResponse {
    let ready = st.is_ready();
    let status = if ready { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    (status, axum::Json(json!({ "ready": ready })))
}

pub(super) fn slot<'s>(st: &'s ServeState, name: &str) -> Result<&'s ModelSlot, ApiError> {
    st.slots.get(name).ok_or_else(|| {
        st.metrics.unknown_model();
        ApiError(StatusCode::NOT_FOUND, format!("unknown model '{name}'"))
    })
}

pub(super) fn loaded(slot: &ModelSlot, name: &str) -> Result<Arc<Served>, ApiError> {
    slot.model.read().clone().ok_or_else(|| {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("model '{name}' is not loaded"))
    })
}

/// Triton's repository index: every model, whether it serves, and what it serves.
async fn repository_index(State(st): State<Arc<ServeState>>) -> impl IntoResponse {
    let models: Vec<serde_json::Value> = st
        .slots
        .iter()
        .map(|(name, slot)| {
            let served = slot.model.read().clone();
            let state = if served.is_some() { "READY" } else { "UNAVAILABLE" };
            let mut entry = json!({ "name": name, "version": "1", "state": state, "reason": "" });
            if let Some(commit) = served.as_ref().and_then(|s| s.model.parameters.get("commit")) {
                entry["commit"] = json!(commit);
            }
            entry
        })
        .collect();
    axum::Json(models)
}

async fn repository_load(State(st): State<Arc<ServeState>>, Path(name): Path<String>) -> ApiResult {
    st.reload_or_api_error(&name).await?;
    Ok(axum::Json(json!({})).into_response())
}

async fn repository_unload(State(st): State<Arc<ServeState>>, Path(name): Path<String>) -> ApiResult {
    st.unload(&name)?;
    Ok(axum::Json(json!({})).into_response())
}

async fn model_ready(State(st): State<Arc<ServeState>>, Path(name): Path<String>) -> ApiResult {
    let ready = slot(&st, &name)?.model.read().is_some();
    let status = if ready { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((status, axum::Json(json!({ "name": name, "ready": ready }))).into_response())
}

async fn model_metadata(State(st): State<Arc<ServeState>>, Path(name): Path<String>) -> ApiResult {
    let slot = slot(&st, &name)?;
    let served = loaded(slot, &name)?;
    let m = &served.model;
    let mut parameters = m.parameters.clone();
    parameters.insert("source".into(), slot.path.display().to_string());
    parameters.insert("device".into(), m.device.to_string());
    Ok(axum::Json(json!({
        "name": name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": m.inputs,
        "outputs": m.outputs,
        "parameters": parameters,
    }))
    .into_response())
}

async fn metrics(State(st): State<Arc<ServeState>>) -> impl IntoResponse {
    let mut text = st.metrics.render();
    text.push_str("# HELP tessera_model_sessions ONNX Runtime sessions created, per model.\n");
    text.push_str("# TYPE tessera_model_sessions gauge\n");
    for (name, slot) in &st.slots {
        if let Some(m) = slot.model.read().clone() {
            text.push_str(&format!(
                "tessera_model_sessions{{model=\"{}\"}} {}\n",
                name.replace('"', "\\\""),
                m.model.sessions()
            ));
        }
    }
    text.push_str("# HELP tessera_batched_requests_total Requests that ran merged with others (dynamic batching), per model.\n");
    text.push_str("# TYPE tessera_batched_requests_total counter\n");
    for (name, slot) in &st.slots {
        let served = slot.model.read().clone();
        if let Some(Some(b)) = served.as_ref().and_then(|s| s.batcher.get()) {
            text.push_str(&format!(
                "tessera_batched_requests_total{{model=\"{}\"}} {}\n",
                name.replace('"', "\\\""),
                b.merged()
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

async fn infer(
    State(st): State<Arc<ServeState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let start = Instant::now();
    let slot = slot(&st, &name)?;
    let _in_flight = st.metrics.model(&name).map(|m| m.in_flight());
    let result = infer_on(&st, slot, &name, &headers, body).await;
    if let Some(m) = st.metrics.model(&name) {
        let status = match &result {
            Ok(r) => r.status(),
            Err(e) => e.0,
        };
        m.observe(status.as_u16(), start.elapsed());
    }
    result
}

/// The versioned route: this server holds one version per model, so the version is not checked.
async fn infer_version(
    state: State<Arc<ServeState>>,
    Path((name, _version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    infer(state, Path(name), headers, body).await
}

async fn infer_on(
    st: &ServeState,
    slot: &ModelSlot,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {} bytes", st.max_body),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body as u64) {
        return Err(too_large());
    }
    let model = loaded(slot, name)?;
    let bytes = axum::body::to_bytes(body, st.max_body).await.map_err(|_| too_large())?;
    // Admitted before parsing: a parsed body costs several times its bytes, so only as many
    // requests as the model runs at once are parsed at once.
    let _permit =
        slot.permits.acquire().await.map_err(|_| {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down".into())
        })?;
    let bad = |e: tensor::TensorError| ApiError(StatusCode::BAD_REQUEST, e.to_string());
    let (json, binary) = split_binary(headers, &bytes)?;
    let req = tensor::parse_request_parts(json, binary).map_err(bad)?;
    drop(bytes);
    let (id, binary) = (req.id.clone(), req.binary.clone());
    let outputs = run_request(slot, model, name, req).await?;
    let encoded = tensor::encode_response(name, id.as_deref(), &outputs, &binary).map_err(|e| {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the response: {e}"))
    })?;
    Ok(response_of(encoded))
}

/// Checks a parsed request against the model and runs it on a blocking thread. The caller holds
/// one of the slot's permits.
pub(super) async fn run_request(
    slot: &ModelSlot,
    served: Arc<Served>,
    name: &str,
    req: tensor::InferRequest,
) -> Result<Vec<tensor::Tensor>, ApiError> {
    let model = Arc::clone(&served.model);
    let bad = |e: tensor::TensorError| ApiError(StatusCode::BAD_REQUEST, e.to_string());
    tensor::check_inputs(&req.inputs, &model.inputs).map_err(bad)?;
    check_elements(&req.inputs, slot.max_elements, name)?;
    if let Some(wanted) = &req.outputs {
        tensor::check_outputs(wanted, &model.outputs).map_err(bad)?;
    }
    let wanted = req.outputs;
    let mut inputs = req.inputs;
    let run = match batcher_of(slot, &served) {
        Some(b) => {
            // The model's input order, so that requests naming inputs in any order stack.
            inputs.sort_by_key(|t| model.inputs.iter().position(|s| s.name == t.name));
            b.run(inputs).await.map(|outs| {
                outs.into_iter()
                    .filter(|t| wanted.as_ref().is_none_or(|w| w.contains(&t.name)))
                    .collect()
            })
        }
        None => tokio::task::spawn_blocking(move || model.run(inputs, wanted.as_deref()))
            .await
            .map_err(|e| {
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("inference task failed: {e}"))
            })?,
    };
    run.map_err(|e| match e {
        RunError::InvalidInput(m) => ApiError(StatusCode::BAD_REQUEST, m),
        RunError::Failed(m) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("inference failed: {m}"))
        }
    })
}

/// The model's batch queue when batching is on and the model can batch.
fn batcher_of<'s>(slot: &ModelSlot, served: &'s Served) -> Option<&'s Batcher> {
    let opts = slot.batch?;
    let model = &served.model;
    served
        .batcher
        .get_or_init(|| {
            batch::batchable(&model.inputs, &model.outputs)
                .then(|| Batcher::start(Arc::clone(model), opts))
        })
        .as_ref()
}

/// The header of the binary tensor data extension: the JSON's length when binary data follows.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// Splits a body into its JSON header and the binary data after it, by the
/// `Inference-Header-Content-Length` header; the whole body is JSON without it.
fn split_binary<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<(&'b [u8], &'b [u8]), ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else { return Ok((body, &[])) };
    let bad = |why: String| ApiError(StatusCode::BAD_REQUEST, format!("{HEADER_LENGTH}: {why}"));
    let text = value.to_str().map_err(|_| bad("not a number".into()))?;
    let n: usize = text.trim().parse().map_err(|_| bad(format!("'{text}' is not a byte count")))?;
    if n > body.len() {
        return Err(bad(format!("{n} is past the end of the {}-byte body", body.len())));
    }
    Ok(body.split_at(n))
}

fn response_of(encoded: tensor::EncodedResponse) -> Response {
    match encoded.json_len {
        None => ([(header::CONTENT_TYPE, "application/json")], encoded.body).into_response(),
        Some(n) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::HeaderName::from_static(HEADER_LENGTH), n.to_string()),
            ],
            encoded.body,
        )
            .into_response(),
    }
}

/// 413 when the inputs hold more elements than the model's cap, before ONNX Runtime sees them.
fn check_elements(inputs: &[tensor::Tensor], max: usize, model: &str) -> Result<(), ApiError> {
    let n = inputs.iter().map(|t| t.data.len()).fold(0usize, usize::saturating_add);
    if n > max {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the inputs hold {n} elements, over the limit of {max} for model '{model}' (--max-elements)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(
        app: Router,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let req =
            Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn routes_without_models_loaded() {
        let limits = RequestLimits { max_body: 1000, ..RequestLimits::default() };
        let st = ServeState::new(&[("m".into(), PathBuf::from("/x.onnx"))], 1, &limits);
        let app = router(st);
        assert_eq!(call(app.clone(), "GET", "/v2/health/live", "").await.0, StatusCode::OK);
        assert_eq!(
            call(app.clone(), "GET", "/v2/health/ready", "").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call(app.clone(), "GET", "/v2/models/m/ready", "").await.0,
            StatusCode::BAD_REQUEST
        );
        let (s, v) = call(app.clone(), "POST", "/v2/models/nope/infer", "{}").await;
        assert_eq!((s, v["error"].as_str()), (StatusCode::NOT_FOUND, Some("unknown model 'nope'")));
        assert_eq!(
            call(app.clone(), "POST", "/v2/models/m/infer", "{}").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (s, v) = call(app.clone(), "GET", "/v2", "").await;
        assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("tessera")));
        assert_eq!(call(app, "GET", "/nope", "").await.0, StatusCode::NOT_FOUND);
    }
}
