//! The KServe v2 gRPC protocol (`inference.GRPCInferenceService`) beside the REST API:
//! ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, so that
//! `tritonclient.grpc` and KServe's gRPC clients work unmodified.
//!
//! tonic serves HTTP/2 and frames the messages; one tower service routes by method path
//! ([`GrpcService`]), as tonic's generated servers do, so no code generation is needed. Inference
//! shares the REST path's admission, checks and metrics ([`super::http::run_request`]); errors
//! map once from the REST status to a gRPC code ([`status_of`]). Methods this server does not
//! have answer UNIMPLEMENTED.

mod convert;
pub mod proto;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::StatusCode;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, http};

use super::http::{ApiError, ServeState, loaded, run_request, slot};
use proto::*;

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// The service's path prefix.
const PREFIX: &str = "/inference.GRPCInferenceService/";

/// Serves the gRPC API on `listener` until `shutdown` completes. Messages over `max_message`
/// bytes are refused before they are decoded.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    state: Arc<ServeState>,
    max_message: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(GrpcService { state, max_message }, incoming, shutdown)
        .await
}

/// Routes one gRPC call by its method path.
#[derive(Clone)]
struct GrpcService {
    state: Arc<ServeState>,
    max_message: usize,
}

impl Service<http::Request<Body>> for GrpcService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let (st, max) = (Arc::clone(&self.state), self.max_message);
        Box::pin(async move {
            let method = req.uri().path().strip_prefix(PREFIX).unwrap_or_default().to_owned();
            Ok(match method.as_str() {
                "ServerLive" => {
                    unary(req, max, |_: ServerLiveRequest| async {
                        Ok(ServerLiveResponse { live: true })
                    })
                    .await
                }
                "ServerReady" => {
                    unary(req, max, |_: ServerReadyRequest| async move {
                        Ok(ServerReadyResponse { ready: st.is_ready() })
                    })
                    .await
                }
                "ModelReady" => unary(req, max, |r| model_ready(st, r)).await,
                "ServerMetadata" => {
                    unary(req, max, |_: ServerMetadataRequest| async {
                        Ok(ServerMetadataResponse {
                            name: "tessera".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            extensions: Vec::new(),
                        })
                    })
                    .await
                }
                "ModelMetadata" => unary(req, max, |r| model_metadata(st, r)).await,
                "ModelInfer" => unary(req, max, |r| model_infer(st, r)).await,
                _ => Status::unimplemented(format!("no method {}", req.uri().path())).into_http(),
            })
        })
    }
}

/// Decodes one request message, runs `f` on it and encodes its answer.
async fn unary<Req, Resp, F, Fut>(
    req: http::Request<Body>,
    max: usize,
    f: F,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    let codec = tonic_prost::ProstCodec::<Resp, Req>::new();
    let mut grpc = tonic::server::Grpc::new(codec)
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX);
    grpc.unary(Once(Some(f)), req).await
}

/// A handler called once per call, as tonic's unary path does.
struct Once<F>(Option<F>);

impl<F, Fut, Req, Resp> Service<tonic::Request<Req>> for Once<F>
where
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    type Response = tonic::Response<Resp>;
    type Error = Status;
    type Future = BoxFuture<tonic::Response<Resp>, Status>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::Request<Req>) -> Self::Future {
        match self.0.take() {
            Some(f) => {
                let fut = f(req.into_inner());
                Box::pin(async move { fut.await.map(tonic::Response::new) })
            }
            None => Box::pin(async { Err(Status::internal("handler called twice")) }),
        }
    }
}

/// The gRPC code for a REST error status.
fn status_of(e: ApiError) -> Status {
    let ApiError(code, msg) = e;
    match code {
        StatusCode::BAD_REQUEST => Status::invalid_argument(msg),
        StatusCode::NOT_FOUND => Status::not_found(msg),
        StatusCode::PAYLOAD_TOO_LARGE => Status::resource_exhausted(msg),
        StatusCode::SERVICE_UNAVAILABLE => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

async fn model_ready(
    st: Arc<ServeState>,
    r: ModelReadyRequest,
) -> Result<ModelReadyResponse, Status> {
    let slot = slot(&st, &r.name).map_err(status_of)?;
    Ok(ModelReadyResponse { ready: st.model_ready(slot) })
}

async fn model_metadata(
    st: Arc<ServeState>,
    r: ModelMetadataRequest,
) -> Result<ModelMetadataResponse, Status> {
    let slot = slot(&st, &r.name).map_err(status_of)?;
    let served = loaded(slot, &r.name).map_err(status_of)?;
    let m = &served.model;
    let meta = |specs: &[super::TensorSpec]| {
        specs
            .iter()
            .map(|s| TensorMetadata {
                name: s.name.clone(),
                datatype: s.datatype.clone(),
                shape: s.shape.clone(),
            })
            .collect()
    };
    Ok(ModelMetadataResponse {
        name: r.name,
        versions: vec!["1".into()],
        platform: "onnxruntime_onnx".into(),
        inputs: meta(&m.inputs),
        outputs: meta(&m.outputs),
    })
}

async fn model_infer(
    st: Arc<ServeState>,
    r: ModelInferRequest,
) -> Result<ModelInferResponse, Status> {
    let start = Instant::now();
    let name = r.model_name.clone();
    let _in_flight = st.metrics().model(&name).map(|m| m.in_flight());
    let result = infer_on(&st, r).await;
    if let Some(m) = st.metrics().model(&name) {
        let code = match &result {
            Ok(_) => StatusCode::OK,
            Err(e) => e.0,
        };
        m.observe(code.as_u16(), start.elapsed());
    }
    result.map_err(status_of)
}

async fn infer_on(st: &ServeState, r: ModelInferRequest) -> Result<ModelInferResponse, ApiError> {
    let slot = slot(st, &r.model_name)?;
    let model = loaded(slot, &r.model_name)?;
    let _permit =
        slot.permits.acquire().await.map_err(|_| {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down".into())
        })?;
    let (name, id) = (r.model_name.clone(), r.id.clone());
    let req =
        convert::request_of(r).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let outputs = run_request(slot, model, &name, req).await?;
    Ok(convert::response_of(name, id, outputs))
}
