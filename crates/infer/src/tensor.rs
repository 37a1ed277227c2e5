//! KServe v2 JSON tensors <-> typed tensors. Pure: no I/O, no ONNX Runtime.
//!
//! A request tensor is `{"name", "shape", "datatype", "data"}`; `data` is the row-major content,
//! flat or nested. Non-finite floats, which JSON cannot write as numbers, are the strings `"NaN"`,
//! `"Infinity"` and `"-Infinity"` both ways (`"inf"`/`"-inf"` are also read).

use half::{bf16, f16};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A KServe v2 tensor datatype that this server converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    /// UTF-8 strings (ONNX `string`).
    Bytes,
}

impl Datatype {
    /// Every datatype, for messages and tests.
    pub const ALL: [Datatype; 14] = [
        Datatype::Bool,
        Datatype::Uint8,
        Datatype::Uint16,
        Datatype::Uint32,
        Datatype::Uint64,
        Datatype::Int8,
        Datatype::Int16,
        Datatype::Int32,
        Datatype::Int64,
        Datatype::Fp16,
        Datatype::Bf16,
        Datatype::Fp32,
        Datatype::Fp64,
        Datatype::Bytes,
    ];

    /// The protocol's name, e.g. `FP32`.
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::Uint8 => "UINT8",
            Datatype::Uint16 => "UINT16",
            Datatype::Uint32 => "UINT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Int8 => "INT8",
            Datatype::Int16 => "INT16",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Fp16 => "FP16",
            Datatype::Bf16 => "BF16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bytes => "BYTES",
        }
    }

    /// Parses a protocol name (exact, upper case).
    pub fn from_name(name: &str) -> Option<Datatype> {
        Datatype::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The flat, row-major content of a tensor.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Bf16(Vec<bf16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<String>),
}

/// Applies `$body` to the vector inside any [`TensorData`] variant.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Bf16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    /// The datatype of the elements.
    pub fn datatype(&self) -> Datatype {
        match self {
            TensorData::Bool(_) => Datatype::Bool,
            TensorData::Uint8(_) => Datatype::Uint8,
            TensorData::Uint16(_) => Datatype::Uint16,
            TensorData::Uint32(_) => Datatype::Uint32,
            TensorData::Uint64(_) => Datatype::Uint64,
            TensorData::Int8(_) => Datatype::Int8,
            TensorData::Int16(_) => Datatype::Int16,
            TensorData::Int32(_) => Datatype::Int32,
            TensorData::Int64(_) => Datatype::Int64,
            TensorData::Fp16(_) => Datatype::Fp16,
            TensorData::Bf16(_) => Datatype::Bf16,
            TensorData::Fp32(_) => Datatype::Fp32,
            TensorData::Fp64(_) => Datatype::Fp64,
            TensorData::Bytes(_) => Datatype::Bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor with a concrete shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Input or output name.
    pub name: String,
    /// Dimensions; their product is `data.len()`.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: TensorData,
}

/// What a model declares for one input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSpec {
    /// Name in the graph.
    pub name: String,
    /// The protocol datatype name; for element types this server cannot convert, a descriptive
    /// name such as `FP8_E4M3FN`.
    pub datatype: String,
    /// Dimensions; `-1` for a dynamic one.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    fn dtype(&self) -> Option<Datatype> {
        Datatype::from_name(&self.datatype)
    }
}

/// A request or output that cannot be converted. Each message names the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TensorError {
    /// The body is not JSON of the request's shape.
    #[error("malformed request JSON: {0}")]
    MalformedJson(String),
    /// A datatype name the protocol does not have.
    #[error(
        "input '{input}': unknown datatype '{datatype}' (expected one of {})",
        datatype_names()
    )]
    UnknownDatatype {
        /// Input name.
        input: String,
        /// The name sent.
        datatype: String,
    },
    /// A negative dimension or a shape whose product overflows.
    #[error("input '{input}': invalid shape {shape:?}")]
    BadShape {
        /// Input name.
        input: String,
        /// The shape sent.
        shape: Vec<i64>,
    },
    /// An element that is not a value of the datatype.
    #[error("input '{input}': data[{index}] = {value} is not a valid {datatype}")]
    BadValue {
        /// Input name.
        input: String,
        /// Flat index of the element.
        index: usize,
        /// The element as sent (shortened).
        value: String,
        /// The datatype declared.
        datatype: Datatype,
    },
    /// `data` holds a different number of elements than the shape.
    #[error("input '{input}': shape {shape:?} needs {expected} values but data has {actual}")]
    LengthMismatch {
        /// Input name.
        input: String,
        /// The shape sent.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Elements sent.
        actual: usize,
    },
    /// Two request inputs with the same name.
    #[error("input '{0}' is given twice")]
    DuplicateInput(String),
    /// A request input the model does not have.
    #[error("model has no input '{input}' (its inputs: {known})")]
    UnknownInput {
        /// Input name.
        input: String,
        /// The model's input names.
        known: String,
    },
    /// A model input the request does not give.
    #[error("missing input '{input}' (the model needs: {known})")]
    MissingInput {
        /// Input name.
        input: String,
        /// The model's input names.
        known: String,
    },
    /// The request's datatype differs from the model's.
    #[error("input '{input}': datatype {actual} does not match the model's {expected}")]
    DatatypeMismatch {
        /// Input name.
        input: String,
        /// What the request says.
        actual: Datatype,
        /// What the model declares.
        expected: String,
    },
    /// The request's shape does not fit the model's (rank or a fixed dimension).
    #[error("input '{input}': shape {actual:?} does not match the model's {expected:?} (-1 = any)")]
    ShapeMismatch {
        /// Input name.
        input: String,
        /// What the request says.
        actual: Vec<usize>,
        /// What the model declares.
        expected: Vec<i64>,
    },
    /// Binary data whose length does not fit the shape and datatype.
    #[error(
        "input '{input}': {bytes} bytes of binary data, but {elements} {datatype} elements need {needed}"
    )]
    BinaryLength {
        /// Input name.
        input: String,
        /// The datatype declared.
        datatype: Datatype,
        /// Elements the shape holds.
        elements: usize,
        /// Bytes those elements take.
        needed: u128,
        /// Bytes sent.
        bytes: usize,
    },
    /// A BYTES element of binary data that cannot be read.
    #[error("input '{input}': BYTES element {index} {why}")]
    BadBytesElement {
        /// Input name.
        input: String,
        /// Index of the element.
        index: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The binary part of a body does not match what the JSON header declares.
    #[error("binary data: {0}")]
    BinaryLayout(String),
    /// A requested output the model does not have.
    #[error("model has no output '{output}' (its outputs: {known})")]
    UnknownOutput {
        /// Output name.
        output: String,
        /// The model's output names.
        known: String,
    },
}

fn datatype_names() -> String {
    Datatype::ALL.map(Datatype::name).join(", ")
}

/// A parsed inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The client's request id, echoed in the response.
    pub id: Option<String>,
    /// The inputs, in request order.
    pub inputs: Vec<Tensor>,
    /// The outputs asked for by name; `None` means all.
    pub outputs: Option<Vec<String>>,
    /// Which outputs go back as binary data (the binary tensor data extension).
    pub binary: BinaryOutputs,
}

/// Which outputs a client wants as binary data: an output's own `binary_data` parameter, else
/// the request's `binary_data_output`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinaryOutputs {
    /// The request's `binary_data_output` parameter.
    pub all: bool,
    /// Outputs with their own `binary_data` parameter.
    pub named: Vec<(String, bool)>,
}

impl BinaryOutputs {
    /// True when output `name` goes back as binary data.
    pub fn wants(&self, name: &str) -> bool {
        self.named.iter().find(|(n, _)| n == name).map_or(self.all, |(_, b)| *b)
    }
}

type Parameters = serde_json::Map<String, Value>;

#[derive(Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputRequestJson>>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct OutputRequestJson {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

fn bool_param(p: Option<&Parameters>, key: &str) -> Option<bool> {
    p?.get(key)?.as_bool()
}

/// Parses a KServe v2 inference request body that is JSON only.
pub fn parse_request(body: &[u8]) -> Result<InferRequest, TensorError> {
    parse_request_parts(body, &[])
}

/// Parses a KServe v2 inference request: the JSON header and the binary data after it (empty
/// without the binary extension). Checks each tensor on its own (datatype, values, shape
/// against data length), not yet against a model. Inputs with a `binary_data_size` parameter
/// take their bytes from `binary` in order; together they must use all of it.
pub fn parse_request_parts(json: &[u8], binary: &[u8]) -> Result<InferRequest, TensorError> {
    let req: RequestJson =
        serde_json::from_slice(json).map_err(|e| TensorError::MalformedJson(e.to_string()))?;
    let mut rest = binary;
    let inputs =
        req.inputs.into_iter().map(|i| parse_input(i, &mut rest)).collect::<Result<Vec<_>, _>>()?;
    if !rest.is_empty() {
        return Err(TensorError::BinaryLayout(format!(
            "{} bytes follow the JSON header but the inputs' binary_data_size add up to {}",
            binary.len(),
            binary.len() - rest.len()
        )));
    }
    let outputs = req.outputs.unwrap_or_default();
    let binary = BinaryOutputs {
        all: bool_param(req.parameters.as_ref(), "binary_data_output").unwrap_or(false),
        named: outputs
            .iter()
            .filter_map(|o| {
                Some((o.name.clone(), bool_param(o.parameters.as_ref(), "binary_data")?))
            })
            .collect(),
    };
    let names: Vec<String> = outputs.into_iter().map(|o| o.name).collect();
    Ok(InferRequest { id: req.id, inputs, outputs: (!names.is_empty()).then_some(names), binary })
}

/// The input's `binary_data_size`, when it has one: a non-negative integer within `available`.
fn binary_size(input: &InputJson, available: usize) -> Result<Option<usize>, TensorError> {
    let Some(v) = input.parameters.as_ref().and_then(|p| p.get("binary_data_size")) else {
        return Ok(None);
    };
    let layout = |why: String| TensorError::BinaryLayout(format!("input '{}': {why}", input.name));
    let n =
        v.as_u64().ok_or_else(|| layout(format!("binary_data_size {v} is not a byte count")))?;
    match usize::try_from(n) {
        Ok(n) if n <= available => Ok(Some(n)),
        _ => Err(layout(format!(
            "binary_data_size {n} runs past the end of the body ({available} bytes left)"
        ))),
    }
}

/// The shape as sizes, and the number of elements it holds.
pub fn dims_of(name: &str, shape: &[i64]) -> Result<(Vec<usize>, usize), TensorError> {
    let bad_shape = || TensorError::BadShape { input: name.into(), shape: shape.to_vec() };
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad_shape()))
        .collect::<Result<Vec<_>, _>>()?;
    let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(bad_shape)?;
    Ok((dims, n))
}

fn parse_input(input: InputJson, binary: &mut &[u8]) -> Result<Tensor, TensorError> {
    let Some(dtype) = Datatype::from_name(&input.datatype) else {
        return Err(TensorError::UnknownDatatype { input: input.name, datatype: input.datatype });
    };
    let (dims, expected) = dims_of(&input.name, &input.shape)?;
    let data = match (binary_size(&input, binary.len())?, &input.data) {
        (Some(n), None) => {
            let (raw, rest) = binary.split_at(n);
            *binary = rest;
            super::binary::decode(&input.name, dtype, expected, raw)?
        }
        (None, Some(data)) => parse_data(&input.name, dtype, data)?,
        (Some(_), Some(_)) => {
            return Err(TensorError::MalformedJson(format!(
                "input '{}' has both data and binary_data_size",
                input.name
            )));
        }
        (None, None) => {
            return Err(TensorError::MalformedJson(format!(
                "input '{}' has neither data nor binary_data_size",
                input.name
            )));
        }
    };
    let name = input.name;
    if data.len() != expected {
        return Err(TensorError::LengthMismatch {
            input: name,
            shape: dims,
            expected,
            actual: data.len(),
        });
    }
    Ok(Tensor { name, shape: dims, data })
}

/// Reads `data` (flat or nested arrays, or one bare scalar) as elements of `dtype`.
pub fn parse_data(input: &str, dtype: Datatype, data: &Value) -> Result<TensorData, TensorError> {
    fn collect<T>(
        input: &str,
        dtype: Datatype,
        data: &Value,
        conv: fn(&Value) -> Option<T>,
    ) -> Result<Vec<T>, TensorError> {
        let mut out = Vec::new();
        let mut stack = vec![data];
        // Depth-first, left to right: push children in reverse.
        while let Some(v) = stack.pop() {
            match v {
                Value::Array(items) => stack.extend(items.iter().rev()),
                leaf => match conv(leaf) {
                    Some(x) => out.push(x),
                    None => {
                        return Err(TensorError::BadValue {
                            input: input.to_string(),
                            index: out.len(),
                            value: shorten(leaf.to_string()),
                            datatype: dtype,
                        });
                    }
                },
            }
        }
        Ok(out)
    }
    fn int<T: TryFrom<i64> + TryFrom<u64>>(v: &Value) -> Option<T> {
        match v {
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => T::try_from(i).ok(),
                (None, Some(u)) => T::try_from(u).ok(),
                _ => None,
            },
            _ => None,
        }
    }
    Ok(match dtype {
        Datatype::Bool => TensorData::Bool(collect(input, dtype, data, |v| match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_u64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            _ => None,
        })?),
        Datatype::Uint8 => TensorData::Uint8(collect(input, dtype, data, int)?),
        Datatype::Uint16 => TensorData::Uint16(collect(input, dtype, data, int)?),
        Datatype::Uint32 => TensorData::Uint32(collect(input, dtype, data, int)?),
        Datatype::Uint64 => TensorData::Uint64(collect(input, dtype, data, int)?),
        Datatype::Int8 => TensorData::Int8(collect(input, dtype, data, int)?),
        Datatype::Int16 => TensorData::Int16(collect(input, dtype, data, int)?),
        Datatype::Int32 => TensorData::Int32(collect(input, dtype, data, int)?),
        Datatype::Int64 => TensorData::Int64(collect(input, dtype, data, int)?),
        Datatype::Fp16 => {
            TensorData::Fp16(collect(input, dtype, data, |v| float(v).map(f16::from_f64))?)
        }
        Datatype::Bf16 => {
            TensorData::Bf16(collect(input, dtype, data, |v| float(v).map(bf16::from_f64))?)
        }
        Datatype::Fp32 => {
            TensorData::Fp32(collect(input, dtype, data, |v| float(v).map(|x| x as f32))?)
        }
        Datatype::Fp64 => TensorData::Fp64(collect(input, dtype, data, float)?),
        Datatype::Bytes => TensorData::Bytes(collect(input, dtype, data, |v| match v {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })?),
    })
}

/// A JSON number, or one of the strings that stand for non-finite floats.
fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" | "+inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn shorten(mut s: String) -> String {
    if s.len() > 40 {
        let mut cut = 40;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn names(specs: &[TensorSpec]) -> String {
    specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks the request's inputs against the model's: every input given once, datatypes equal,
/// ranks equal and fixed dimensions equal.
pub fn check_inputs(inputs: &[Tensor], specs: &[TensorSpec]) -> Result<(), TensorError> {
    for (i, t) in inputs.iter().enumerate() {
        if inputs[..i].iter().any(|u| u.name == t.name) {
            return Err(TensorError::DuplicateInput(t.name.clone()));
        }
        let Some(spec) = specs.iter().find(|s| s.name == t.name) else {
            return Err(TensorError::UnknownInput { input: t.name.clone(), known: names(specs) });
        };
        if spec.dtype() != Some(t.data.datatype()) {
            return Err(TensorError::DatatypeMismatch {
                input: t.name.clone(),
                actual: t.data.datatype(),
                expected: spec.datatype.clone(),
            });
        }
        let fits = spec.shape.len() == t.shape.len()
            && spec.shape.iter().zip(&t.shape).all(|(&m, &r)| m < 0 || m as u64 == r as u64);
        if !fits {
            return Err(TensorError::ShapeMismatch {
                input: t.name.clone(),
                actual: t.shape.clone(),
                expected: spec.shape.clone(),
            });
        }
    }
    if let Some(missing) = specs.iter().find(|s| !inputs.iter().any(|t| t.name == s.name)) {
        return Err(TensorError::MissingInput { input: missing.name.clone(), known: names(specs) });
    }
    Ok(())
}

/// Checks that every requested output exists.
pub fn check_outputs(requested: &[String], specs: &[TensorSpec]) -> Result<(), TensorError> {
    match requested.iter().find(|r| !specs.iter().any(|s| &s.name == *r)) {
        Some(r) => Err(TensorError::UnknownOutput { output: r.clone(), known: names(specs) }),
        None => Ok(()),
    }
}

/// The body of an inference response.
#[derive(Debug, Serialize)]
pub struct InferResponse<'a> {
    /// The model that answered.
    pub model_name: &'a str,
    /// The request's id, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// The outputs, in the model's order.
    pub outputs: Vec<OutputJson<'a>>,
}

/// One response tensor.
#[derive(Debug, Serialize)]
pub struct OutputJson<'a> {
    /// Output name.
    pub name: &'a str,
    /// Protocol datatype.
    pub datatype: &'static str,
    /// Dimensions.
    pub shape: &'a [usize],
    /// `binary_data_size` when the data follows the JSON as binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BinarySize>,
    /// Flat row-major elements, unless they go as binary data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a TensorData>,
}

/// The parameters of an output sent as binary data.
#[derive(Debug, Serialize)]
pub struct BinarySize {
    /// Its bytes after the JSON header.
    pub binary_data_size: usize,
}

impl<'a> OutputJson<'a> {
    /// Borrows a tensor for the response, its data in the JSON.
    pub fn new(t: &'a Tensor) -> Self {
        OutputJson {
            name: &t.name,
            datatype: t.data.datatype().name(),
            shape: &t.shape,
            parameters: None,
            data: Some(&t.data),
        }
    }

    /// Borrows a tensor whose data goes after the JSON header as binary.
    pub fn binary(t: &'a Tensor) -> Self {
        let size = super::binary::encoded_len(&t.data);
        OutputJson {
            parameters: Some(BinarySize { binary_data_size: size }),
            data: None,
            ..Self::new(t)
        }
    }
}

/// An encoded response body and, when binary data follows the JSON, the JSON's length (the
/// `Inference-Header-Content-Length` header).
#[derive(Debug)]
pub struct EncodedResponse {
    /// The body.
    pub body: Vec<u8>,
    /// Length of the JSON header when binary data follows it.
    pub json_len: Option<usize>,
}

/// Encodes the response to `model`: JSON, with the outputs `binary` asks for appended as binary
/// data in output order.
pub fn encode_response(
    model: &str,
    id: Option<&str>,
    outputs: &[Tensor],
    binary: &BinaryOutputs,
) -> Result<EncodedResponse, serde_json::Error> {
    let as_binary: Vec<bool> = outputs.iter().map(|t| binary.wants(&t.name)).collect();
    let response = InferResponse {
        model_name: model,
        id,
        outputs: outputs
            .iter()
            .zip(&as_binary)
            .map(|(t, &b)| if b { OutputJson::binary(t) } else { OutputJson::new(t) })
            .collect(),
    };
    let mut body = serde_json::to_vec(&response)?;
    if !as_binary.contains(&true) {
        return Ok(EncodedResponse { body, json_len: None });
    }
    let json_len = body.len();
    for (t, _) in outputs.iter().zip(&as_binary).filter(|(_, b)| **b) {
        super::binary::encode(&t.data, &mut body);
    }
    Ok(EncodedResponse { body, json_len: Some(json_len) })
}

/// A float as JSON: a number when finite, else a string.
struct JsonFloat(f64, bool);

impl Serialize for JsonFloat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let JsonFloat(x, single) = *self;
        if x.is_nan() {
            s.serialize_str("NaN")
        } else if x.is_infinite() {
            s.serialize_str(if x > 0.0 { "Infinity" } else { "-Infinity" })
        } else if single {
            s.serialize_f32(x as f32)
        } else {
            s.serialize_f64(x)
        }
    }
}

impl Serialize for TensorData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        match self {
            TensorData::Fp16(v) => {
                for x in v {
                    seq.serialize_element(&JsonFloat(x.to_f64(), true))?;
                }
            }
            TensorData::Bf16(v) => {
                for x in v {
                    seq.serialize_element(&JsonFloat(x.to_f64(), true))?;
                }
            }
            TensorData::Fp32(v) => {
                for x in v {
                    seq.serialize_element(&JsonFloat(f64::from(*x), true))?;
                }
            }
            TensorData::Fp64(v) => {
                for x in v {
                    seq.serialize_element(&JsonFloat(*x, false))?;
                }
            }
            TensorData::Bool(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint8(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint16(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int8(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int16(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Bytes(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
        }
        seq.end()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(name: &str, dt: &str, shape: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), datatype: dt.into(), shape: shape.to_vec() }
    }

    fn one(body: &str) -> Result<Tensor, TensorError> {
        parse_request(body.as_bytes()).map(|mut r| r.inputs.remove(0))
    }

    #[test]
    fn parses_every_datatype() {
        let cases = [
            ("BOOL", "[true, false, 1]", TensorData::Bool(vec![true, false, true])),
            ("UINT8", "[0, 255, 7]", TensorData::Uint8(vec![0, 255, 7])),
            ("UINT16", "[0, 65535, 7]", TensorData::Uint16(vec![0, 65535, 7])),
            ("UINT32", "[0, 4294967295, 7]", TensorData::Uint32(vec![0, u32::MAX, 7])),
            ("UINT64", "[0, 18446744073709551615, 7]", TensorData::Uint64(vec![0, u64::MAX, 7])),
            ("INT8", "[-128, 127, 0]", TensorData::Int8(vec![-128, 127, 0])),
            ("INT16", "[-32768, 32767, 0]", TensorData::Int16(vec![i16::MIN, i16::MAX, 0])),
            ("INT32", "[-2147483648, 1, 0]", TensorData::Int32(vec![i32::MIN, 1, 0])),
            (
                "INT64",
                "[-9223372036854775808, 9223372036854775807, 0]",
                TensorData::Int64(vec![i64::MIN, i64::MAX, 0]),
            ),
            (
                "FP16",
                "[0.5, -2, 65504]",
                TensorData::Fp16(vec![f16::from_f32(0.5), f16::from_f32(-2.0), f16::MAX]),
            ),
            (
                "BF16",
                "[0.5, -2, 1]",
                TensorData::Bf16(vec![bf16::from_f32(0.5), bf16::from_f32(-2.0), bf16::ONE]),
            ),
            ("FP32", "[0.1, -2, 3e38]", TensorData::Fp32(vec![0.1, -2.0, 3e38])),
            ("FP64", "[0.1, -2, 1e300]", TensorData::Fp64(vec![0.1, -2.0, 1e300])),
            (
                "BYTES",
                r#"["a", "", "é"]"#,
                TensorData::Bytes(vec!["a".into(), "".into(), "é".into()]),
            ),
        ];
        for (dt, data, want) in cases {
            let body = format!(
                r#"{{"inputs":[{{"name":"x","shape":[3],"datatype":"{dt}","data":{data}}}]}}"#
            );
            let t = one(&body).unwrap_or_else(|e| panic!("{dt}: {e}"));
            assert_eq!(t.data, want, "{dt}");
            assert_eq!(t.shape, vec![3]);
            // Round trip through the response form.
            let back = serde_json::to_value(&t.data).unwrap();
            let again = parse_data("x", want.datatype(), &back).unwrap();
            assert_eq!(again, want, "{dt} round trip");
        }
    }

    #[test]
    fn nested_data_and_scalars() {
        let t = one(
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]}]}"#,
        )
        .unwrap();
        assert_eq!(t.data, TensorData::Int32(vec![1, 2, 3, 4]));
        let t = one(r#"{"inputs":[{"name":"x","shape":[],"datatype":"INT64","data":[16000]}]}"#)
            .unwrap();
        assert_eq!((t.shape.len(), t.data), (0, TensorData::Int64(vec![16000])));
        let t =
            one(r#"{"inputs":[{"name":"x","shape":[0,3],"datatype":"FP32","data":[]}]}"#).unwrap();
        assert!(t.data.is_empty());
    }

    #[test]
    fn non_finite_floats_both_ways() {
        let t = one(r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":["NaN","Infinity","-inf"]}]}"#)
            .unwrap();
        let TensorData::Fp32(v) = &t.data else { panic!() };
        assert!(v[0].is_nan() && v[1] == f32::INFINITY && v[2] == f32::NEG_INFINITY);
        assert_eq!(serde_json::to_string(&t.data).unwrap(), r#"["NaN","Infinity","-Infinity"]"#);
    }

    #[test]
    fn fp32_output_is_shortest_round_trip() {
        let d = TensorData::Fp32(vec![0.1, 1.0 / 3.0]);
        assert_eq!(serde_json::to_string(&d).unwrap(), "[0.1,0.33333334]");
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let msg = |body: &str| one(body).unwrap_err().to_string();
        assert!(msg("{").starts_with("malformed request JSON"));
        assert!(msg(r#"{"inputs":[{"name":"x","shape":[1],"data":[1]}]}"#).contains("datatype"));
        assert!(
            msg(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#)
                .contains("unknown datatype 'FLOAT'")
        );
        assert_eq!(
            msg(r#"{"inputs":[{"name":"x","shape":[3],"datatype":"INT8","data":[1,300,2]}]}"#),
            "input 'x': data[1] = 300 is not a valid INT8"
        );
        assert!(
            msg(r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1.5,2]}]}"#)
                .contains("data[0] = 1.5 is not a valid INT32")
        );
        assert!(
            msg(r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":["a",2]}]}"#)
                .contains("not a valid FP32")
        );
        assert_eq!(
            msg(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#),
            "input 'x': shape [2, 2] needs 4 values but data has 3"
        );
        assert!(
            msg(r#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[]}]}"#)
                .contains("invalid shape [-1]")
        );
        assert!(msg(&format!(
            r#"{{"inputs":[{{"name":"x","shape":[{m},{m},{m}],"datatype":"FP32","data":[]}}]}}"#,
            m = i64::MAX
        ))
        .contains("invalid shape"));
    }

    #[test]
    fn checks_against_the_model() {
        let specs = [spec("a", "FP32", &[-1, 3]), spec("b", "INT64", &[])];
        let t = |name: &str, shape: Vec<usize>, data: TensorData| Tensor {
            name: name.into(),
            shape,
            data,
        };
        let a = t("a", vec![2, 3], TensorData::Fp32(vec![0.0; 6]));
        let b = t("b", vec![], TensorData::Int64(vec![1]));
        assert_eq!(check_inputs(&[a.clone(), b.clone()], &specs), Ok(()));
        let err = |inputs: &[Tensor]| check_inputs(inputs, &specs).unwrap_err().to_string();
        assert_eq!(err(std::slice::from_ref(&a)), "missing input 'b' (the model needs: a, b)");
        assert_eq!(
            err(&[a.clone(), b.clone(), t("c", vec![], TensorData::Int64(vec![1]))]),
            "model has no input 'c' (its inputs: a, b)"
        );
        assert_eq!(err(&[a.clone(), a.clone(), b.clone()]), "input 'a' is given twice");
        assert_eq!(
            err(&[t("a", vec![2, 3], TensorData::Fp64(vec![0.0; 6])), b.clone()]),
            "input 'a': datatype FP64 does not match the model's FP32"
        );
        assert_eq!(
            err(&[t("a", vec![3, 2], TensorData::Fp32(vec![0.0; 6])), b.clone()]),
            "input 'a': shape [3, 2] does not match the model's [-1, 3] (-1 = any)"
        );
        assert!(err(&[t("a", vec![6], TensorData::Fp32(vec![0.0; 6])), b]).contains("shape [6]"));
        assert!(
            check_outputs(&["y".into()], &specs).unwrap_err().to_string().contains("no output 'y'")
        );
    }
}
