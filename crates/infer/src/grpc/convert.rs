//! gRPC messages <-> the typed tensors of [`crate::tensor`]. Pure.
//!
//! Inputs come from `raw_input_contents` (one entry per input, in order, the layout of
//! [`crate::binary`]) when the request has any, else from each input's typed `contents`.
//! Outputs always go back as `raw_output_contents`, as Triton answers.

use super::proto::{InferOutputTensor, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::binary;
use crate::tensor::{
    BinaryOutputs, Datatype, InferRequest, Tensor, TensorData, TensorError, dims_of,
};

/// The request as a typed [`InferRequest`], each tensor checked on its own.
pub(super) fn request_of(r: ModelInferRequest) -> Result<InferRequest, TensorError> {
    let raw = r.raw_input_contents;
    if !raw.is_empty() && raw.len() != r.inputs.len() {
        return Err(TensorError::BinaryLayout(format!(
            "{} raw_input_contents for {} inputs",
            raw.len(),
            r.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for (i, t) in r.inputs.into_iter().enumerate() {
        let Some(dtype) = Datatype::from_name(&t.datatype) else {
            return Err(TensorError::UnknownDatatype { input: t.name, datatype: t.datatype });
        };
        let (dims, n) = dims_of(&t.name, &t.shape)?;
        let data = match raw.get(i) {
            Some(bytes) => binary::decode(&t.name, dtype, n, bytes)?,
            None => typed(&t.name, dtype, t.contents.unwrap_or_default())?,
        };
        if data.len() != n {
            return Err(TensorError::LengthMismatch {
                input: t.name,
                shape: dims,
                expected: n,
                actual: data.len(),
            });
        }
        inputs.push(Tensor { name: t.name, shape: dims, data });
    }
    let names: Vec<String> = r.outputs.into_iter().map(|o| o.name).collect();
    Ok(InferRequest {
        id: (!r.id.is_empty()).then_some(r.id),
        inputs,
        outputs: (!names.is_empty()).then_some(names),
        binary: BinaryOutputs::default(),
    })
}

/// Narrows the protocol's wider integers to the datatype's, naming the first that does not fit.
fn narrow<S: Copy + ToString, T: TryFrom<S>>(
    input: &str,
    dtype: Datatype,
    v: Vec<S>,
) -> Result<Vec<T>, TensorError> {
    v.iter()
        .enumerate()
        .map(|(index, &x)| {
            T::try_from(x).map_err(|_| TensorError::BadValue {
                input: input.into(),
                index,
                value: x.to_string(),
                datatype: dtype,
            })
        })
        .collect()
}

/// An input's typed `contents`: the field the protocol assigns to its datatype.
fn typed(input: &str, dtype: Datatype, c: InferTensorContents) -> Result<TensorData, TensorError> {
    Ok(match dtype {
        Datatype::Bool => TensorData::Bool(c.bool_contents),
        Datatype::Int8 => TensorData::Int8(narrow(input, dtype, c.int_contents)?),
        Datatype::Int16 => TensorData::Int16(narrow(input, dtype, c.int_contents)?),
        Datatype::Int32 => TensorData::Int32(c.int_contents),
        Datatype::Int64 => TensorData::Int64(c.int64_contents),
        Datatype::Uint8 => TensorData::Uint8(narrow(input, dtype, c.uint_contents)?),
        Datatype::Uint16 => TensorData::Uint16(narrow(input, dtype, c.uint_contents)?),
        Datatype::Uint32 => TensorData::Uint32(c.uint_contents),
        Datatype::Uint64 => TensorData::Uint64(c.uint64_contents),
        Datatype::Fp32 => TensorData::Fp32(c.fp32_contents),
        Datatype::Fp64 => TensorData::Fp64(c.fp64_contents),
        Datatype::Bytes => TensorData::Bytes(
            c.bytes_contents
                .into_iter()
                .enumerate()
                .map(|(index, b)| {
                    String::from_utf8(b).map_err(|_| TensorError::BadBytesElement {
                        input: input.into(),
                        index,
                        why: "is not UTF-8",
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Fp16 | Datatype::Bf16 => {
            return Err(TensorError::BinaryLayout(format!(
                "input '{input}': {dtype} has no typed contents field; send it in raw_input_contents"
            )));
        }
    })
}

/// The response, every output in `raw_output_contents`.
pub(super) fn response_of(model: String, id: String, outputs: Vec<Tensor>) -> ModelInferResponse {
    let mut raw = Vec::with_capacity(outputs.len());
    let outputs = outputs
        .into_iter()
        .map(|t| {
            let mut bytes = Vec::new();
            binary::encode(&t.data, &mut bytes);
            raw.push(bytes);
            InferOutputTensor {
                datatype: t.data.datatype().name().into(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                name: t.name,
                ..InferOutputTensor::default()
            }
        })
        .collect();
    ModelInferResponse {
        model_name: model,
        id,
        outputs,
        raw_output_contents: raw,
        ..ModelInferResponse::default()
    }
}
