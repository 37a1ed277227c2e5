//! Integration tests.

#[cfg(feature = "infer")]
mod serve;
