//! Element types of checkpoint tensors and their conversion to and from `f32`.
//!
//! Checkpoints store little-endian bytes that are not guaranteed to be aligned
//! for `f32` (a safetensors header can have any length), so decoding goes
//! through `from_le_bytes` on byte chunks rather than a pointer cast.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The floating-point element types deltaguard reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16 (8 exponent bits, 7 mantissa bits).
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The name safetensors uses in its header (`"F32"`, `"F16"`, `"BF16"`).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }

    /// Parse a safetensors / `config.json` name (`"F32"`, `"float16"`, `"bfloat16"`...).
    pub fn parse(name: &str) -> Option<DType> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "float" => Some(DType::F32),
            "f16" | "float16" | "half" => Some(DType::F16),
            "bf16" | "bfloat16" => Some(DType::BF16),
            _ => None,
        }
    }

    /// The safetensors dtype of this element type.
    pub fn to_safetensors(self) -> safetensors::Dtype {
        match self {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
        }
    }

    /// The element type of a safetensors dtype, `None` for non-float types.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        match d {
            safetensors::Dtype::F32 => Some(DType::F32),
            safetensors::Dtype::F16 => Some(DType::F16),
            safetensors::Dtype::BF16 => Some(DType::BF16),
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// Decode little-endian `bytes` of element type `dtype` into `out` (cleared first).
///
/// `bytes.len()` must be a multiple of `dtype.size()`; trailing bytes are ignored.
pub fn decode_into(bytes: &[u8], dtype: DType, out: &mut Vec<f32>) {
    out.clear();
    out.reserve(bytes.len() / dtype.size());
    match dtype {
        DType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        DType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        DType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
    }
}

/// The first NaN or ±Inf among little-endian `bytes` of element type `dtype`:
/// `(element index, value)`. Tests the exponent bits, so it costs one pass
/// over the bytes with no conversion.
pub fn first_non_finite(bytes: &[u8], dtype: DType) -> Option<(usize, f32)> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .position(|b| b & 0x7f80_0000 == 0x7f80_0000)
            .map(|i| {
                (
                    i,
                    f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes")),
                )
            }),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .position(|b| b & 0x7c00 == 0x7c00)
            .map(|i| {
                (
                    i,
                    f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32(),
                )
            }),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .position(|b| b & 0x7f80 == 0x7f80)
            .map(|i| {
                (
                    i,
                    bf16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32(),
                )
            }),
    }
}

/// Decode little-endian `bytes` of element type `dtype` into a new `Vec<f32>`.
pub fn decode(bytes: &[u8], dtype: DType) -> Vec<f32> {
    let mut out = Vec::new();
    decode_into(bytes, dtype, &mut out);
    out
}

/// Encode `values` as little-endian bytes of element type `dtype`
/// (round-to-nearest-even for f16 / bf16, as PyTorch's `.to()` does).
pub fn encode(values: &[f32], dtype: DType) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    match dtype {
        DType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        DType::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly_representable_values() {
        let values = [0.0f32, -1.5, 2.0, 0.25, -1024.0];
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let bytes = encode(&values, dtype);
            assert_eq!(bytes.len(), values.len() * dtype.size());
            assert_eq!(decode(&bytes, dtype), values, "{dtype}");
        }
    }

    #[test]
    fn decodes_unaligned_bytes() {
        let mut bytes = vec![0u8];
        bytes.extend(encode(&[3.5, -7.25], DType::F32));
        assert_eq!(decode(&bytes[1..], DType::F32), vec![3.5, -7.25]);
    }

    #[test]
    fn parses_config_names() {
        assert_eq!(DType::parse("bfloat16"), Some(DType::BF16));
        assert_eq!(DType::parse("F16"), Some(DType::F16));
        assert_eq!(DType::parse("int8"), None);
    }
}
