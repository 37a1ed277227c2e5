//! Raw tensor bytes, as the KServe v2 binary tensor data extension (HTTP) and the gRPC
//! protocol's `raw_input_contents` / `raw_output_contents` carry them. Pure: no I/O.
//!
//! Fixed-size datatypes are their elements' little-endian bytes, row-major (BOOL one byte, 0 or
//! 1). BYTES is each element as a 4-byte little-endian length followed by its bytes; this server
//! holds strings, so each element must be UTF-8.
//!
//! Decoding trusts no length: the byte count must equal what the shape needs before anything is
//! allocated, and a BYTES element's length is checked against the bytes that are left.

use half::{bf16, f16};

use super::tensor::{Datatype, TensorData, TensorError};

/// Bytes per element of a fixed-size datatype; `None` for BYTES.
pub fn element_size(dtype: Datatype) -> Option<usize> {
    Some(match dtype {
        Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => 1,
        Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 | Datatype::Bf16 => 2,
        Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => 4,
        Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => 8,
        Datatype::Bytes => return None,
    })
}

/// Decodes `raw` as `elements` values of `dtype` for input `input`.
pub fn decode(
    input: &str,
    dtype: Datatype,
    elements: usize,
    raw: &[u8],
) -> Result<TensorData, TensorError> {
    let Some(size) = element_size(dtype) else {
        return decode_strings(input, elements, raw).map(TensorData::Bytes);
    };
    let needed = elements.checked_mul(size);
    if needed != Some(raw.len()) {
        return Err(TensorError::BinaryLength {
            input: input.into(),
            datatype: dtype,
            elements,
            needed: elements as u128 * size as u128,
            bytes: raw.len(),
        });
    }
    macro_rules! le {
        ($variant:ident, $t:ty) => {
            TensorData::$variant(
                raw.chunks_exact(size)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )
        };
    }
    Ok(match dtype {
        Datatype::Bool => TensorData::Bool(decode_bools(input, raw)?),
        Datatype::Uint8 => TensorData::Uint8(raw.to_vec()),
        Datatype::Int8 => le!(Int8, i8),
        Datatype::Uint16 => le!(Uint16, u16),
        Datatype::Uint32 => le!(Uint32, u32),
        Datatype::Uint64 => le!(Uint64, u64),
        Datatype::Int16 => le!(Int16, i16),
        Datatype::Int32 => le!(Int32, i32),
        Datatype::Int64 => le!(Int64, i64),
        Datatype::Fp16 => le!(Fp16, f16),
        Datatype::Bf16 => le!(Bf16, bf16),
        Datatype::Fp32 => le!(Fp32, f32),
        Datatype::Fp64 => le!(Fp64, f64),
        Datatype::Bytes => unreachable!("BYTES has no element size"),
    })
}

fn decode_bools(input: &str, raw: &[u8]) -> Result<Vec<bool>, TensorError> {
    raw.iter()
        .enumerate()
        .map(|(index, &b)| match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(TensorError::BadValue {
                input: input.into(),
                index,
                value: b.to_string(),
                datatype: Datatype::Bool,
            }),
        })
        .collect()
}

/// BYTES elements: each a u32 LE length and that many UTF-8 bytes; exactly `elements` of them
/// and no bytes left over.
fn decode_strings(input: &str, elements: usize, raw: &[u8]) -> Result<Vec<String>, TensorError> {
    let bad = |index: usize, why: &'static str| TensorError::BadBytesElement {
        input: input.into(),
        index,
        why,
    };
    // Every element costs at least its 4-byte length, which bounds the allocation by the body.
    let mut out = Vec::with_capacity(elements.min(raw.len() / 4));
    let mut rest = raw;
    while !rest.is_empty() {
        let index = out.len();
        if index == elements {
            return Err(bad(index, "is more than the shape holds"));
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(bad(index, "has a truncated 4-byte length"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > tail.len() {
            return Err(bad(index, "has a length past the end of the data"));
        }
        let (bytes, tail) = tail.split_at(len);
        let s = std::str::from_utf8(bytes).map_err(|_| bad(index, "is not UTF-8"))?;
        out.push(s.to_owned());
        rest = tail;
    }
    if out.len() != elements {
        return Err(bad(out.len(), "is missing (the data ends early)"));
    }
    Ok(out)
}

/// The encoded size of `data`, bytes.
pub fn encoded_len(data: &TensorData) -> usize {
    match data {
        TensorData::Bytes(v) => v.iter().map(|s| 4 + s.len()).sum(),
        other => other.len() * element_size(other.datatype()).unwrap_or(0),
    }
}

/// Appends `data` in the raw form to `out`.
pub fn encode(data: &TensorData, out: &mut Vec<u8>) {
    out.reserve(encoded_len(data));
    macro_rules! le {
        ($v:expr) => {
            $v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Int8(v) => le!(v),
        TensorData::Uint16(v) => le!(v),
        TensorData::Uint32(v) => le!(v),
        TensorData::Uint64(v) => le!(v),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp16(v) => le!(v),
        TensorData::Bf16(v) => le!(v),
        TensorData::Fp32(v) => le!(v),
        TensorData::Fp64(v) => le!(v),
        TensorData::Bytes(v) => {
            for s in v {
                // A string over 4 GiB cannot come out of a request within the body cap.
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn round_trip(data: TensorData) {
        let mut raw = Vec::new();
        encode(&data, &mut raw);
        assert_eq!(raw.len(), encoded_len(&data));
        let back = decode("x", data.datatype(), data.len(), &raw).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn every_datatype_round_trips() {
        round_trip(TensorData::Bool(vec![true, false]));
        round_trip(TensorData::Uint8(vec![0, 255]));
        round_trip(TensorData::Uint16(vec![1, u16::MAX]));
        round_trip(TensorData::Uint32(vec![1, u32::MAX]));
        round_trip(TensorData::Uint64(vec![1, u64::MAX]));
        round_trip(TensorData::Int8(vec![-128, 127]));
        round_trip(TensorData::Int16(vec![i16::MIN, 3]));
        round_trip(TensorData::Int32(vec![i32::MIN, 3]));
        round_trip(TensorData::Int64(vec![i64::MIN, 3]));
        round_trip(TensorData::Fp16(vec![f16::from_f32(0.5), f16::MAX]));
        round_trip(TensorData::Bf16(vec![bf16::from_f32(-2.0)]));
        round_trip(TensorData::Fp32(vec![0.1, f32::INFINITY]));
        round_trip(TensorData::Fp64(vec![0.1, -1e300]));
        round_trip(TensorData::Bytes(vec!["a".into(), String::new(), "é".into()]));
    }

    #[test]
    fn layout_is_little_endian() {
        let mut raw = Vec::new();
        encode(&TensorData::Int32(vec![1, -2]), &mut raw);
        assert_eq!(raw, [1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]);
        raw.clear();
        encode(&TensorData::Bytes(vec!["ab".into()]), &mut raw);
        assert_eq!(raw, [2, 0, 0, 0, b'a', b'b']);
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        let msg = |dt, n, raw: &[u8]| decode("x", dt, n, raw).unwrap_err().to_string();
        assert_eq!(
            msg(Datatype::Fp32, 2, &[0; 7]),
            "input 'x': 7 bytes of binary data, but 2 FP32 elements need 8"
        );
        assert!(msg(Datatype::Fp32, usize::MAX, &[0; 8]).contains("need"));
        assert!(msg(Datatype::Bool, 1, &[2]).contains("not a valid BOOL"));
        assert!(msg(Datatype::Bytes, 1, &[9, 0, 0, 0, b'a']).contains("past the end"));
        assert!(msg(Datatype::Bytes, 1, &[0, 0, 0]).contains("truncated"));
        assert!(msg(Datatype::Bytes, 2, &[0, 0, 0, 0]).contains("missing"));
        assert!(msg(Datatype::Bytes, 0, &[0, 0, 0, 0]).contains("more than the shape"));
        assert!(msg(Datatype::Bytes, 1, &[1, 0, 0, 0, 0xff]).contains("not UTF-8"));
        // A huge element count with tiny data allocates nothing big.
        assert!(msg(Datatype::Bytes, usize::MAX, &[0, 0, 0, 0]).contains("missing"));
    }
}
