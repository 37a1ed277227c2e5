//! `tessera hub serve`: a Hugging Face Hub–compatible server with a Xet CAS, backed by the
//! store, so unmodified `huggingface_hub` / `hf_xet` clients can use it as their Hub.
//!
//! - [`router`] builds the routes (Hub API of `hub-api.md` §6, CAS API of `xet-protocol.md`
//!   §5) over an [`AppState`]; [`serve`] runs it until a shutdown future resolves.
//! - [`storage`]: the seam between the handlers and where metadata lives and content is
//!   published: the local store, or [`bucket`] (S3-compatible object storage shared by
//!   replicas, `--storage s3://…`); [`bucket_check`]: `hub fsck` / `hub gc` of a bucket.
//! - [`state`]: store, repo database, tokens, signing key, options; [`auth`]: Hub tokens,
//!   access rules, CAS tokens and presigned URLs; [`error`]: the one `IntoResponse` that sets
//!   `X-Error-Code` / `X-Error-Message`; [`limit`]: the request- and response-body rate limiters;
//!   `plan`: the reconstruction planner (pure, unit-tested);
//!   `routes/*`: the handlers.
//! - Store work runs on the blocking pool; request bodies are bounded per route.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tessera_server::{router, serve, AppState, ServerOptions};
//! let state = AppState::open(std::path::Path::new("/tmp/hub"), ServerOptions::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod auth;
pub mod bucket;
pub mod bucket_check;
pub mod db;
pub mod error;
pub mod limit;
pub mod metrics;
mod plan;
pub mod routes;
pub mod state;
pub mod storage;

use std::future::Future;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get, post, put};

pub use auth::{Scope, TokenFileError, TokenTable};
pub use error::ApiError;
pub use state::{AppState, ServerOptions, StateError};

use routes::{cas, commits, discussions, files, lfs, refs, repos};

/// All routes of the server.
pub fn router(state: AppState) -> Router {
    let api = "/api/{kind}/{ns}/{name}";
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/whoami-v2", get(repos::whoami))
        .route("/api/repos/create", post(repos::create))
        .route("/api/repos/delete", axum::routing::delete(repos::delete))
        .route("/api/validate-yaml", post(repos::validate_yaml))
        .route(api, get(repos::info))
        .route(&format!("{api}/revision/{{rev}}"), get(repos::info))
        .route(&format!("{api}/tree/{{rev}}"), get(repos::tree))
        .route(&format!("{api}/tree/{{rev}}/{{*path}}"), get(repos::tree))
        .route(&format!("{api}/paths-info/{{rev}}"), post(repos::paths_info))
        .route(&format!("{api}/refs"), get(refs::list))
        .route(&format!("{api}/tag/{{rev}}"), post(refs::create_tag).delete(refs::delete_tag))
        .route(
            &format!("{api}/branch/{{rev}}"),
            post(refs::create_branch).delete(refs::delete_branch),
        )
        .route(&format!("{api}/commits/{{rev}}"), get(commits::history))
        .route(&format!("{api}/preupload/{{rev}}"), post(commits::preupload))
        .route(&format!("{api}/commit/{{rev}}"), post(commits::commit))
        .route(&format!("{api}/discussions"), get(discussions::list).post(discussions::create))
        .route(&format!("{api}/discussions/{{num}}"), get(discussions::details))
        .route(&format!("{api}/discussions/{{num}}/merge"), post(discussions::merge))
        .route(&format!("{api}/discussions/{{num}}/status"), post(discussions::status))
        .route(&format!("{api}/xet-read-token/{{rev}}"), get(cas::read_token))
        .route(&format!("{api}/xet-write-token/{{rev}}"), get(cas::write_token))
        .route("/{ns}/{name}/resolve/{rev}/{*path}", get(files::resolve_model))
        .route("/datasets/{ns}/{name}/resolve/{rev}/{*path}", get(files::resolve_dataset))
        .route("/spaces/{ns}/{name}/resolve/{rev}/{*path}", get(files::resolve_space))
        .route("/{ns}/{name}/info/lfs/objects/batch", post(lfs::batch_model))
        .route("/datasets/{ns}/{name}/info/lfs/objects/batch", post(lfs::batch_dataset))
        .route("/spaces/{ns}/{name}/info/lfs/objects/batch", post(lfs::batch_space))
        .route("/_lfs/upload/{oid}/{size}", put(lfs::upload))
        .route("/_lfs/part/{oid}/{size}/{part}", put(lfs::upload_part))
        .route("/_lfs/complete/{oid}/{size}", post(lfs::complete))
        .route("/_lfs/verify", post(lfs::verify))
        .route("/_lfs/objects/{oid}/{size}", get(lfs::download))
        .route("/v1/reconstructions/{file_id}", get(cas::reconstruction_v1))
        .route("/v2/reconstructions/{file_id}", get(cas::reconstruction_v2))
        .route("/v1/reconstructions", any(cas::reconstruction_batch))
        .route("/v1/files/{file_id}", axum::routing::head(cas::head_file))
        .route("/v1/xorbs/{prefix}/{hash}", post(cas::upload_xorb).head(cas::head_xorb))
        .route("/v1/shards", post(cas::upload_shard_v1))
        .route("/v2/shards", post(cas::upload_shard_v2))
        .route("/v1/chunks/{prefix}/{hash}", get(cas::dedup))
        .route("/v1/telemetry", post(cas::telemetry))
        .route("/_cas/fetch/{xorb}", get(cas::fetch))
        .fallback(|| async { ApiError::not_found("Not found") })
        .layer(middleware::from_fn_with_state(state.clone(), limit::throttle))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Logs method, path (never the query, which may hold signatures, nor headers, which hold
/// tokens), status and latency, and counts the request in [`metrics::RequestMetrics`].
async fn log_request(State(s): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let t = Instant::now();
    let response = next.run(req).await;
    let (status, took) = (response.status().as_u16(), t.elapsed());
    s.requests.record(status, took);
    let ms = took.as_millis() as u64;
    if status >= 500 {
        tracing::warn!(%method, %path, status, ms, "request");
    } else {
        tracing::info!(%method, %path, status, ms, "request");
    }
    response
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish within the grace
/// period of the options ([`tessera_httpd`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = tessera_httpd::ConnLimits {
        header_timeout: state.options.header_timeout,
        shutdown_grace: state.options.shutdown_grace,
    };
    tessera_httpd::serve_connections(listener, router(state), limits, shutdown).await
}
