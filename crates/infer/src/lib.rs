//! ONNX inference served over the KServe v2 / Open Inference Protocol REST API.
//!
//! - [`tensor`] (pure): KServe JSON tensors <-> typed tensors, and the checks of a request
//!   against a model's declared inputs, each error naming the problem.
//! - [`binary`] (pure): raw tensor bytes of the binary extension and of gRPC.
//! - [`batch`]: dynamic batching, requests merged along the first dimension and split back.
//! - [`grpc`]: the same API over KServe v2 gRPC (tonic), on its own listener.
//! - [`session`]: ONNX Runtime through `ort` (loaded with `ort::init_from`, never the panicking
//!   implicit loader), device choice, model loading through the optimized-model cache, pooled
//!   sessions.
//! - [`http`]: the axum router (`router`) and `serve`; inference runs on `spawn_blocking`.
//! - [`metrics`]: Prometheus text metrics.

#![forbid(unsafe_code)]

pub mod batch;
pub mod binary;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod session;
pub mod tensor;

pub use grpc::serve_grpc;
pub use http::{Loader, RequestLimits, ServeState, router, serve};
pub use metrics::Metrics;
pub use session::{
    CacheOutcome, Device, DeviceRequest, InferError, LoadedModel, ModelOptions, RunError, Runtime,
};
pub use tensor::{Datatype, InferRequest, Tensor, TensorData, TensorError, TensorSpec};
