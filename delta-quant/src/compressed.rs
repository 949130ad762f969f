//! [`Compressed`]: the output of every compressor, its exact storage size,
//! reconstruction, and conversion to/from named byte payloads (what the
//! [file format](crate::file) stores).

use std::collections::BTreeMap;

use burn::tensor::{backend::Backend, Tensor};
use safetensors::Dtype;
use serde_json::{json, Value};

use crate::bitdelta::{MultiMaskPayload, SignScales};
use crate::decode::{Decoder, Mode};
use crate::deltacome::DeltaComePayload;
use crate::lowrank::LowRankPayload;
use crate::pack::BitMatrix;
use crate::payload::{CompressedTensor, CustomPayload, EncodingReader, PartsWriter};
use crate::rtn::RtnPayload;
use crate::sparse::SparsePayload;
use crate::ternary::TernaryPayload;
use crate::{DeltaMatrix, QuantError};

/// One stored array: dtype, shape and little-endian bytes, exactly as it
/// goes into the safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Payload {
    pub fn u8(shape: Vec<usize>, data: Vec<u8>) -> Self {
        Self {
            dtype: Dtype::U8,
            shape,
            data,
        }
    }
    pub fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    pub fn u32(shape: Vec<usize>, values: &[u32]) -> Self {
        Self {
            dtype: Dtype::U32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    /// Stored size in bytes.
    pub fn nbytes(&self) -> u64 {
        self.data.len() as u64
    }
}

/// A compressed value split into what the file stores: a small JSON
/// `encoding` (kind, shape, bit widths, ...) and named payloads.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    pub encoding: Value,
    pub payloads: Vec<(String, Payload)>,
}

/// A compressed 2-D delta. Each variant holds exactly what is stored; see
/// each payload type for its layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Compressed {
    /// 1-bit signs + scale(s): BitDelta.
    BitDelta(SignScales),
    /// k residual sign masks, each with its scale(s).
    MultiMask(MultiMaskPayload),
    /// Group-wise k-bit round-to-nearest codes + scales + zero points.
    Rtn(RtnPayload),
    /// Sparse indices + values (DARE, magnitude pruning).
    Sparse(SparsePayload),
    /// Low-rank factors.
    LowRank(LowRankPayload),
    /// SVD with mixed-precision quantized singular vectors.
    DeltaCome(DeltaComePayload),
    /// Ternary {−s, 0, +s} (ComPEFT).
    Ternary(TernaryPayload),
    /// A pipeline result: the last stage's payload, multiplied elementwise by
    /// a 1-bit support mask of the previous stage's output.
    Masked(MaskedPayload),
    /// A payload defined outside this crate (see [`CompressedTensor`] and
    /// [`Compressed::custom`]); its encoding kind must be registered
    /// ([`crate::registry::register_encoding`]) for files holding it to open.
    Custom(CustomPayload),
}

/// Last pipeline stage's payload restricted to a kept support.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedPayload {
    /// 1 = entry kept (see [`crate::pack`] for the layout).
    pub mask: BitMatrix,
    pub inner: Box<Compressed>,
}

impl MaskedPayload {
    /// `[rows, cols]` of the delta.
    pub fn shape(&self) -> [usize; 2] {
        [self.mask.rows(), self.mask.cols()]
    }
    /// The mask's bytes plus the inner payload's.
    pub fn storage_bytes(&self) -> u64 {
        self.mask.as_bytes().len() as u64 + self.inner.storage_bytes()
    }
    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        out.push((
            format!("{prefix}mask"),
            Payload::u8(
                vec![self.mask.rows(), self.mask.row_bytes()],
                self.mask.as_bytes().to_vec(),
            ),
        ));
        let inner = self.inner.encode(&format!("{prefix}inner."), out);
        json!({ "inner": inner })
    }
}

impl Compressed {
    /// Wraps a downstream payload.
    pub fn custom(payload: impl CompressedTensor) -> Self {
        Compressed::Custom(CustomPayload::new(payload))
    }

    /// The payload behind this value, as the open trait every encoding
    /// implements.
    pub fn as_tensor(&self) -> &dyn CompressedTensor {
        match self {
            Compressed::BitDelta(p) => p,
            Compressed::MultiMask(p) => p,
            Compressed::Rtn(p) => p,
            Compressed::Sparse(p) => p,
            Compressed::LowRank(p) => p,
            Compressed::DeltaCome(p) => p,
            Compressed::Ternary(p) => p,
            Compressed::Masked(p) => p,
            Compressed::Custom(p) => p.get(),
        }
    }

    /// Whether a downstream payload is inside (directly or under a mask).
    pub fn has_custom(&self) -> bool {
        match self {
            Compressed::Custom(_) => true,
            Compressed::Masked(m) => m.inner.has_custom(),
            _ => false,
        }
    }

    /// Short name of the encoding (`"bitdelta"`, `"rtn"`, ...; a
    /// downstream payload's [`CompressedTensor::kind`]).
    pub fn kind(&self) -> &'static str {
        self.as_tensor().kind()
    }

    /// `[rows, cols]` of the delta this reconstructs.
    pub fn shape(&self) -> [usize; 2] {
        self.as_tensor().shape()
    }

    /// Exact bytes of all payloads as stored (the sum of
    /// [`Payload::nbytes`] over [`Compressed::to_parts`]; the small JSON
    /// encoding record is not counted, like a tensor header is not).
    pub fn storage_bytes(&self) -> u64 {
        self.as_tensor().storage_bytes()
    }

    /// Δ̂ as a host matrix (see [`Compressed::reconstruct_into`]).
    pub fn reconstruct(&self) -> DeltaMatrix {
        Decoder::new(self).reconstruct()
    }

    /// Writes Δ̂ into `out` (row-major, `rows · cols` values), overwriting
    /// it; a wrong length is a [`QuantError::Shape`].
    ///
    /// Parallel over fixed row chunks, so the result does not depend on the
    /// number of threads. Bit-identical to the scalar decoders this crate
    /// used before for every encoding except the low-rank ones (`lowrank`,
    /// `deltacome`), whose matrix product may round differently (see
    /// [`decode`](crate::decode)).
    pub fn reconstruct_into(&self, out: &mut [f32]) -> Result<(), QuantError> {
        match self {
            Compressed::Custom(p) => p.get().reconstruct_into(out),
            _ => Decoder::new(self).run(out, Mode::Set),
        }
    }

    /// `base += Δ̂` in one pass without materialising Δ̂ — what applying a
    /// delta needs. Equal, value for value, to `base[i] + reconstruct()[i]`
    /// in f32 (same exceptions as [`Compressed::reconstruct_into`]); a wrong
    /// length is a [`QuantError::Shape`].
    pub fn add_into(&self, base: &mut [f32]) -> Result<(), QuantError> {
        match self {
            Compressed::Custom(p) => p.get().add_into(base),
            _ => Decoder::new(self).run(base, Mode::Add),
        }
    }

    /// Δ̂ as a Burn tensor on `device`.
    pub fn reconstruct_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        self.reconstruct().to_tensor(device)
    }

    /// Splits into an encoding record and named payloads.
    pub fn to_parts(&self) -> Parts {
        let mut payloads = Vec::new();
        let encoding = self.encode("", &mut payloads);
        Parts { encoding, payloads }
    }

    /// Rebuilds from [`Compressed::to_parts`]' output, validating every
    /// payload's dtype and size. `tensor` is only used in error messages.
    pub fn from_parts(tensor: &str, parts: &Parts) -> Result<Self, QuantError> {
        let map: BTreeMap<&str, &Payload> = parts
            .payloads
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let r = PartsReader {
            tensor,
            payloads: &map,
        };
        let c = Self::decode(&parts.encoding, &r, "")?;
        // Every payload must have been used: extra ones mean the writer and
        // reader disagree about the encoding.
        let expected = c.to_parts();
        if expected.payloads.len() != parts.payloads.len() {
            let names: Vec<_> = expected.payloads.iter().map(|(n, _)| n.as_str()).collect();
            let extra = parts
                .payloads
                .iter()
                .find(|(n, _)| !names.contains(&n.as_str()))
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            return Err(QuantError::bad_payload(
                tensor,
                &extra,
                "payload not used by the encoding",
            ));
        }
        Ok(c)
    }

    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        let [rows, cols] = self.shape();
        let mut v = match self {
            Compressed::BitDelta(p) => p.encode(prefix, out),
            Compressed::MultiMask(p) => p.encode(prefix, out),
            Compressed::Rtn(p) => p.encode(prefix, out),
            Compressed::Sparse(p) => p.encode(prefix, out),
            Compressed::LowRank(p) => p.encode(prefix, out),
            Compressed::DeltaCome(p) => p.encode(prefix, out),
            Compressed::Ternary(p) => p.encode(prefix, out),
            Compressed::Custom(p) => p.get().write_parts(&mut PartsWriter { prefix, out }),
            Compressed::Masked(p) => p.encode(prefix, out),
        };
        if !v.is_object() {
            // A downstream payload returned a non-object: keep its value
            // under `value` rather than dropping it.
            v = json!({ "value": v });
        }
        let obj = v.as_object_mut().expect("made an object above");
        obj.insert("kind".into(), json!(self.kind()));
        obj.insert("rows".into(), json!(rows));
        obj.insert("cols".into(), json!(cols));
        v
    }

    pub(crate) fn decode(
        meta: &Value,
        r: &PartsReader<'_>,
        prefix: &str,
    ) -> Result<Self, QuantError> {
        let kind = meta_str(meta, "kind", r.tensor)?;
        let rows = meta_usize(meta, "rows", r.tensor)?;
        let cols = meta_usize(meta, "cols", r.tensor)?;
        // Bounds every size computed from the shape (bits · entries).
        rows.checked_mul(cols)
            .and_then(|n| n.checked_mul(8))
            .ok_or_else(|| {
                QuantError::Metadata(format!("tensor `{}`: shape overflows", r.tensor))
            })?;
        Ok(match kind.as_str() {
            "bitdelta" => Compressed::BitDelta(SignScales::decode(meta, r, prefix, rows, cols)?),
            "multimask" => {
                Compressed::MultiMask(MultiMaskPayload::decode(meta, r, prefix, rows, cols)?)
            }
            "rtn" => Compressed::Rtn(RtnPayload::decode(meta, r, prefix, rows, cols)?),
            "sparse" => Compressed::Sparse(SparsePayload::decode(meta, r, prefix, rows, cols)?),
            "lowrank" => Compressed::LowRank(LowRankPayload::decode(meta, r, prefix, rows, cols)?),
            "deltacome" => {
                Compressed::DeltaCome(DeltaComePayload::decode(meta, r, prefix, rows, cols)?)
            }
            "ternary" => Compressed::Ternary(TernaryPayload::decode(meta, r, prefix, rows, cols)?),
            "masked" => {
                let mask_bytes = r.u8(
                    &format!("{prefix}mask"),
                    rows * crate::pack::row_bytes(cols, 1),
                )?;
                let mask = BitMatrix::from_bytes(rows, cols, 1, mask_bytes)
                    .map_err(|e| QuantError::bad_payload(r.tensor, "mask", e.to_string()))?;
                let inner_meta = meta.get("inner").ok_or_else(|| {
                    QuantError::Metadata(format!(
                        "tensor `{}`: masked encoding without `inner`",
                        r.tensor
                    ))
                })?;
                let inner = Compressed::decode(inner_meta, r, &format!("{prefix}inner."))?;
                if inner.shape() != [rows, cols] {
                    return Err(QuantError::Metadata(format!(
                        "tensor `{}`: masked inner shape {:?} != {:?}",
                        r.tensor,
                        inner.shape(),
                        [rows, cols]
                    )));
                }
                Compressed::Masked(MaskedPayload {
                    mask,
                    inner: Box::new(inner),
                })
            }
            other => {
                let Some(decode) = crate::registry::encoding(other) else {
                    return Err(QuantError::Metadata(format!(
                        "tensor `{}`: unknown encoding kind `{other}` (known: {}; a \
                         downstream method must be registered before the file is read)",
                        r.tensor,
                        crate::registry::encoding_kinds().join(", ")
                    )));
                };
                let c = decode(&EncodingReader {
                    meta,
                    parts: r,
                    prefix,
                    rows,
                    cols,
                })?;
                if c.shape() != [rows, cols] {
                    return Err(QuantError::Metadata(format!(
                        "tensor `{}`: `{other}` decoder gave shape {:?}, the record says {:?}",
                        r.tensor,
                        c.shape(),
                        [rows, cols]
                    )));
                }
                c
            }
        })
    }
}

/// Looks payloads up by name, checking dtype and element count.
pub(crate) struct PartsReader<'a> {
    pub tensor: &'a str,
    pub payloads: &'a BTreeMap<&'a str, &'a Payload>,
}

impl PartsReader<'_> {
    fn get(&self, name: &str, dtype: Dtype, len: usize) -> Result<&Payload, QuantError> {
        let p = self
            .payloads
            .get(name)
            .ok_or_else(|| QuantError::MissingPayload {
                tensor: self.tensor.to_string(),
                payload: name.to_string(),
            })?;
        if p.dtype != dtype {
            return Err(QuantError::bad_payload(
                self.tensor,
                name,
                format!("dtype {} (expected {dtype})", p.dtype),
            ));
        }
        let numel: Option<usize> = p.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let want_bytes = len.checked_mul(dtype.bitsize()).map(|b| b / 8);
        if numel != Some(len) || want_bytes != Some(p.data.len()) {
            return Err(QuantError::bad_payload(
                self.tensor,
                name,
                format!(
                    "shape {:?} / {} bytes, expected {len} elements of {dtype}",
                    p.shape,
                    p.data.len()
                ),
            ));
        }
        Ok(p)
    }
    pub fn u8(&self, name: &str, len: usize) -> Result<Vec<u8>, QuantError> {
        Ok(self.get(name, Dtype::U8, len)?.data.clone())
    }
    pub fn f32(&self, name: &str, len: usize) -> Result<Vec<f32>, QuantError> {
        let p = self.get(name, Dtype::F32, len)?;
        Ok(p.data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    pub fn u32(&self, name: &str, len: usize) -> Result<Vec<u32>, QuantError> {
        let p = self.get(name, Dtype::U32, len)?;
        Ok(p.data
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    pub fn bad(&self, name: &str, reason: impl Into<String>) -> QuantError {
        QuantError::bad_payload(self.tensor, name, reason)
    }
}

pub(crate) fn meta_usize(meta: &Value, key: &str, tensor: &str) -> Result<usize, QuantError> {
    meta.get(key)
        .and_then(Value::as_u64)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| {
            QuantError::Metadata(format!("tensor `{tensor}`: encoding lacks integer `{key}`"))
        })
}

pub(crate) fn meta_str(meta: &Value, key: &str, tensor: &str) -> Result<String, QuantError> {
    meta.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            QuantError::Metadata(format!("tensor `{tensor}`: encoding lacks string `{key}`"))
        })
}

pub(crate) fn meta_bool(meta: &Value, key: &str, tensor: &str) -> Result<bool, QuantError> {
    meta.get(key).and_then(Value::as_bool).ok_or_else(|| {
        QuantError::Metadata(format!("tensor `{tensor}`: encoding lacks bool `{key}`"))
    })
}
