//! Benchmark harnesses that measure the real binaries end to end (`tessera bench ...`).
//!
//! - [`restart`]: process start to the first correct inference answer, the status quo
//!   (`huggingface_hub` + Python onnxruntime) against mount + serve, cold and warm;
//! - [`report`]: its results as a table, JSON and an SVG chart (pure).

pub mod report;
pub mod restart;
