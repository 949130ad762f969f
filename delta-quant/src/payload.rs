//! [`CompressedTensor`]: what a compressed 2-D delta is, for any method —
//! the eight built-in payload types and any a downstream crate defines.
//!
//! A compressed tensor knows
//! * its **encoding kind** (the `kind` field of the file's encoding record,
//!   looked up in the [registry](crate::registry) when a file is read),
//! * its **shape** and exact **storage bytes**,
//! * its **parts** for the file: a small JSON record plus named
//!   [`Payload`]s, written through a [`PartsWriter`] and read back through
//!   an [`EncodingReader`] by the decoder registered for its kind,
//! * how to **reconstruct** Δ̂ into a buffer or **add** it onto a base
//!   buffer, and optionally how to compute `y += x · Δ̂ᵀ` directly (a model
//!   layer or a server running base + compressed delta without merging).
//!
//! A downstream payload is wrapped with [`Compressed::custom`]; everything
//! that handles a [`Compressed`] (files, apply, model loading, sizes,
//! pipelines) then handles it. See the crate docs for a full example.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use serde_json::Value;

use crate::compressed::{meta_bool, meta_str, meta_usize, PartsReader, Payload};
use crate::{Compressed, DeltaMatrix, QuantError};

/// A compressed 2-D delta `[rows, cols]` (rows = output features).
///
/// Implementations must be deterministic: `write_parts` followed by the
/// registered decoder must give a value whose reconstruction is bitwise
/// the same.
pub trait CompressedTensor: Debug + Send + Sync + Any {
    /// Encoding kind stored in the file (`"bitdelta"`, `"sparse"`, ...). A
    /// downstream kind must be registered with
    /// [`register_encoding`](crate::registry::register_encoding) so files
    /// holding it can be opened.
    fn kind(&self) -> &'static str;

    /// `[rows, cols]` of the delta this reconstructs.
    fn shape(&self) -> [usize; 2];

    /// Exact bytes of all payloads as stored (the JSON record not counted).
    /// The file reader checks it against the payloads it decoded.
    fn storage_bytes(&self) -> u64;

    /// Pushes the named payloads through `w` and returns the JSON object of
    /// the encoding's own fields (`kind`, `rows` and `cols` are added by
    /// the caller and must not be used as keys).
    fn write_parts(&self, w: &mut PartsWriter<'_>) -> Value;

    /// Writes Δ̂ into `out` (row-major, `rows · cols` values), overwriting
    /// it; a wrong length must be a [`QuantError::Shape`].
    fn reconstruct_into(&self, out: &mut [f32]) -> Result<(), QuantError>;

    /// `base += Δ̂`. The default reconstructs into a temporary and adds;
    /// implement it to save the temporary.
    fn add_into(&self, base: &mut [f32]) -> Result<(), QuantError> {
        let mut tmp = vec![0f32; base.len()];
        self.reconstruct_into(&mut tmp)?;
        for (b, d) in base.iter_mut().zip(&tmp) {
            *b += d;
        }
        Ok(())
    }

    /// Optional direct product: `y += x · Δ̂ᵀ` for `x` row-major `[n, cols]`
    /// and `y` row-major `[n, rows]`. `None` = not implemented; callers then
    /// use [`Compressed::matmul_t_add`]'s generic path (decode rows, dot).
    fn matmul_t_add(&self, x: &[f32], n: usize, y: &mut [f32]) -> Option<Result<(), QuantError>> {
        let _ = (x, n, y);
        None
    }

    /// `self` as [`Any`], for [`CustomPayload::downcast_ref`].
    fn as_any(&self) -> &dyn Any;
}

/// Collects the payloads of one compressed tensor under its name prefix
/// (a pipeline's inner payload is stored as `inner.<name>`).
pub struct PartsWriter<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) out: &'a mut Vec<(String, Payload)>,
}

impl PartsWriter<'_> {
    /// Adds payload `name` (the prefix is prepended; names may not contain
    /// `::`, the file's tensor/payload separator).
    pub fn push(&mut self, name: &str, payload: Payload) {
        self.out.push((format!("{}{name}", self.prefix), payload));
    }
}

/// What a registered decoder sees of one stored tensor: the encoding
/// record, the shape, and its payloads by (unprefixed) name, each checked
/// for dtype and element count before it is handed out.
pub struct EncodingReader<'a> {
    pub(crate) meta: &'a Value,
    pub(crate) parts: &'a PartsReader<'a>,
    pub(crate) prefix: &'a str,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<'a> EncodingReader<'a> {
    /// Name of the tensor being decoded (for error messages).
    pub fn tensor(&self) -> &str {
        self.parts.tensor
    }
    /// Rows of the delta (bounded: `rows · cols · 8` fits in `usize`).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns of the delta.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The whole encoding record (a JSON object).
    pub fn meta(&self) -> &Value {
        self.meta
    }
    /// Integer field `key` of the record, or a [`QuantError::Metadata`].
    pub fn meta_usize(&self, key: &str) -> Result<usize, QuantError> {
        meta_usize(self.meta, key, self.tensor())
    }
    /// String field `key` of the record.
    pub fn meta_str(&self, key: &str) -> Result<String, QuantError> {
        meta_str(self.meta, key, self.tensor())
    }
    /// Boolean field `key` of the record.
    pub fn meta_bool(&self, key: &str) -> Result<bool, QuantError> {
        meta_bool(self.meta, key, self.tensor())
    }
    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
    /// Payload `name` as `len` bytes (dtype U8).
    pub fn u8(&self, name: &str, len: usize) -> Result<Vec<u8>, QuantError> {
        self.parts.u8(&self.full(name), len)
    }
    /// Payload `name` as `len` f32 values.
    pub fn f32(&self, name: &str, len: usize) -> Result<Vec<f32>, QuantError> {
        self.parts.f32(&self.full(name), len)
    }
    /// Payload `name` as `len` u32 values.
    pub fn u32(&self, name: &str, len: usize) -> Result<Vec<u32>, QuantError> {
        self.parts.u32(&self.full(name), len)
    }
    /// A [`QuantError::BadPayload`] naming the tensor and payload `name`.
    pub fn bad(&self, name: &str, reason: impl Into<String>) -> QuantError {
        self.parts.bad(&self.full(name), reason)
    }
}

/// A downstream [`CompressedTensor`] inside [`Compressed::Custom`].
///
/// Cheap to clone (shared). Two values are equal when they store the same
/// thing: same kind, shape, encoding record and payload bytes.
#[derive(Debug, Clone)]
pub struct CustomPayload(pub(crate) Arc<dyn CompressedTensor>);

impl CustomPayload {
    /// Wraps a payload.
    pub fn new(payload: impl CompressedTensor) -> Self {
        Self(Arc::new(payload))
    }
    /// The payload as a trait object.
    pub fn get(&self) -> &dyn CompressedTensor {
        self.0.as_ref()
    }
    /// The payload as its concrete type, if it is a `T`.
    pub fn downcast_ref<T: CompressedTensor>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }
    fn stored(&self) -> (Value, Vec<(String, Payload)>) {
        let mut out = Vec::new();
        let v = self.0.write_parts(&mut PartsWriter {
            prefix: "",
            out: &mut out,
        });
        (v, out)
    }
}

impl PartialEq for CustomPayload {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind()
            && self.0.shape() == other.0.shape()
            && self.stored() == other.stored()
    }
}

/// Checks an output buffer's length against a shape (the error every
/// implementation of [`CompressedTensor::reconstruct_into`] should give).
pub fn check_len(shape: [usize; 2], len: usize) -> Result<(), QuantError> {
    if Some(len) != shape[0].checked_mul(shape[1]) {
        return Err(QuantError::Shape(format!(
            "{len} values given for a {}x{} delta",
            shape[0], shape[1]
        )));
    }
    Ok(())
}

/// Implements [`CompressedTensor`] for a built-in payload type through its
/// inherent `encode` and its decoder.
macro_rules! builtin_tensor {
    ($ty:ty, $kind:literal) => {
        impl CompressedTensor for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn shape(&self) -> [usize; 2] {
                <$ty>::shape(self)
            }
            fn storage_bytes(&self) -> u64 {
                <$ty>::storage_bytes(self)
            }
            fn write_parts(&self, w: &mut PartsWriter<'_>) -> Value {
                self.encode(w.prefix, w.out)
            }
            fn reconstruct_into(&self, out: &mut [f32]) -> Result<(), QuantError> {
                crate::decode::Decoder::of(self).run(out, crate::decode::Mode::Set)
            }
            fn add_into(&self, base: &mut [f32]) -> Result<(), QuantError> {
                crate::decode::Decoder::of(self).run(base, crate::decode::Mode::Add)
            }
            fn as_any(&self) -> &dyn Any {
                self
            }
        }
    };
}

builtin_tensor!(crate::bitdelta::SignScales, "bitdelta");
builtin_tensor!(crate::bitdelta::MultiMaskPayload, "multimask");
builtin_tensor!(crate::rtn::RtnPayload, "rtn");
builtin_tensor!(crate::sparse::SparsePayload, "sparse");
builtin_tensor!(crate::lowrank::LowRankPayload, "lowrank");
builtin_tensor!(crate::deltacome::DeltaComePayload, "deltacome");
builtin_tensor!(crate::ternary::TernaryPayload, "ternary");
builtin_tensor!(crate::compressed::MaskedPayload, "masked");

/// Decodes `meta` + payloads into a [`Compressed`]; what a registered
/// encoding provides (see [`register_encoding`](crate::registry::register_encoding)).
pub type DecodeFn = fn(&EncodingReader<'_>) -> Result<Compressed, QuantError>;

/// Rows of Δ̂ decoded per step of the generic `x · Δ̂ᵀ` (bounds the
/// temporary to a few MiB for 4096-wide rows).
const MATMUL_ROWS: usize = 256;

impl Compressed {
    /// `y += x · Δ̂ᵀ` for `x` row-major `[n, cols]`, `y` row-major
    /// `[n, rows]`: the delta term of a layer that runs base + compressed
    /// delta without merging. Uses the payload's own product when it has
    /// one ([`CompressedTensor::matmul_t_add`]), else decodes blocks of
    /// rows of Δ̂ (never the whole matrix) and multiplies.
    pub fn matmul_t_add(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), QuantError> {
        let [rows, cols] = self.shape();
        if Some(x.len()) != n.checked_mul(cols) || Some(y.len()) != n.checked_mul(rows) {
            return Err(QuantError::Shape(format!(
                "x has {} values and y {} for n={n} through a {rows}x{cols} delta",
                x.len(),
                y.len()
            )));
        }
        if let Some(r) = self.as_tensor().matmul_t_add(x, n, y) {
            return r;
        }
        let dec = crate::decode::Decoder::new(self);
        let mut block = vec![0f32; MATMUL_ROWS.min(rows.max(1)) * cols];
        let mut r0 = 0;
        while r0 < rows {
            let nr = MATMUL_ROWS.min(rows - r0);
            let blk = &mut block[..nr * cols];
            dec.rows_into(r0, blk, crate::decode::Mode::Set);
            for i in 0..n {
                let xi = &x[i * cols..(i + 1) * cols];
                let yi = &mut y[i * rows + r0..i * rows + r0 + nr];
                for (yj, dj) in yi.iter_mut().zip(blk.chunks_exact(cols)) {
                    *yj += xi.iter().zip(dj).map(|(a, b)| a * b).sum::<f32>();
                }
            }
            r0 += nr;
        }
        Ok(())
    }
}

/// Δ̂ of any [`CompressedTensor`] as a new matrix.
pub fn reconstruct_matrix(t: &dyn CompressedTensor) -> Result<DeltaMatrix, QuantError> {
    let [rows, cols] = t.shape();
    let mut d = DeltaMatrix::zeros(rows, cols);
    t.reconstruct_into(d.data_mut())?;
    Ok(d)
}
