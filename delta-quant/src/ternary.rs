//! ComPEFT-style ternary compression (Yadav et al. 2023, "ComPEFT:
//! Compression for Communicating Parameter Efficient Updates via Sparsification
//! and Quantization", arXiv 2311.13171, code: github.com/prateeky2806/compeft).
//!
//! Keep the k = round(density · n) entries with largest |Δ| (ties to the
//! lower position, as in [`crate::Magnitude`]), and replace each kept entry
//! by sign(Δ) · α · std(Δ), where std is the population standard deviation
//! of all entries of Δ and α a scalar (ComPEFT tunes α; default 1).
//! Entries that are exactly zero are never kept (their sign is undefined).
//!
//! Storage, whichever is smaller for the matrix (ComPEFT itself entropy-codes
//! positions; we keep two simple fixed layouts):
//! * **dense**: `codes` U8 `[rows, ceil(cols/4)]`, 2 bits per entry
//!   ([`crate::pack`] layout) with 0 = zero, 1 = +s, 2 = −s;
//! * **sparse**: `indices` U32 `[nnz]` (strictly increasing flat positions)
//!   and `signs` U8 `[ceil(nnz/8)]` (LSB-first, 1 = +s).
//!
//! Both also store `scale` F32 `[1]` = α · std(Δ). Dense costs n/4 bytes,
//! sparse 4·nnz + ceil(nnz/8); sparse wins below ≈ 6 % density.

use serde_json::{json, Value};

use crate::compressed::{meta_str, meta_usize, PartsReader, Payload};
use crate::compressor::{CompressContext, Compressor, Params};
use crate::decode::Decoder;
use crate::pack::{pack_row, row_bytes, BitMatrix};
use crate::params::ParamList;
use crate::sparse::{check_indices, check_u32_addressable, keep_count, top_k_positions};
use crate::{Compressed, DeltaMatrix, QuantError};

/// ComPEFT-style ternary compression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compeft {
    /// Fraction of entries kept, in [0, 1].
    pub density: f64,
    /// Scale multiplier α (> 0).
    pub alpha: f64,
}

impl Compeft {
    pub fn new(density: f64, alpha: f64) -> Result<Self, QuantError> {
        let bad = |p: &str, v: f64, r: &str| QuantError::InvalidParam {
            method: "compeft".into(),
            param: p.into(),
            value: v.to_string(),
            reason: r.into(),
        };
        if !(0.0..=1.0).contains(&density) {
            return Err(bad("density", density, "must be in [0, 1]"));
        }
        if !(alpha > 0.0 && alpha.is_finite()) {
            return Err(bad("alpha", alpha, "must be finite and > 0"));
        }
        Ok(Self { density, alpha })
    }
    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        let density = p.get_in("density", 0.1f64, 0.0, 1.0, "in [0, 1]")?;
        let alpha = p.get_in(
            "alpha",
            1.0f64,
            f64::MIN_POSITIVE,
            f64::MAX,
            "finite and > 0",
        )?;
        Ok(Self { density, alpha })
    }
}

impl Compressor for Compeft {
    fn method(&self) -> &'static str {
        "compeft"
    }
    fn params(&self) -> Params {
        Params::from([
            ("density".to_string(), json!(self.density)),
            ("alpha".to_string(), json!(self.alpha)),
        ])
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        Compeft::new(self.density, self.alpha)?;
        delta.check_finite(ctx.name)?;
        check_u32_addressable(delta, ctx.name)?;
        let data = delta.data();
        let n = data.len();
        let var = if n == 0 {
            0.0
        } else {
            let mean = data.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
            data.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64
        };
        let scale = (self.alpha * var.sqrt()) as f32;
        let mut idx = top_k_positions(data, keep_count(self.density, n));
        idx.retain(|&i| data[i as usize] != 0.0);
        let positive: Vec<bool> = idx.iter().map(|&i| data[i as usize] > 0.0).collect();
        let [rows, cols] = delta.shape();
        Ok(Compressed::Ternary(TernaryPayload::from_support(
            rows, cols, &idx, &positive, scale,
        )))
    }
}

/// Ternary values {−scale, 0, +scale}; layout in the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryPayload {
    rows: usize,
    cols: usize,
    scale: f32,
    layout: TernaryLayout,
}

/// The two storage layouts of [`TernaryPayload`].
#[derive(Debug, Clone, PartialEq)]
pub enum TernaryLayout {
    /// 2-bit code per entry: 0 = zero, 1 = +s, 2 = −s.
    Dense(BitMatrix),
    /// Positions and sign bits (1 = +s, LSB-first).
    Sparse { indices: Vec<u32>, signs: Vec<u8> },
}

impl TernaryPayload {
    /// Builds the smaller layout for the given support.
    pub(crate) fn from_support(
        rows: usize,
        cols: usize,
        idx: &[u32],
        positive: &[bool],
        scale: f32,
    ) -> Self {
        let nnz = idx.len();
        let dense_bytes = rows * row_bytes(cols, 2);
        let sparse_bytes = 4 * nnz + nnz.div_ceil(8);
        let layout = if sparse_bytes < dense_bytes {
            let bits: Vec<u8> = positive.iter().map(|&p| p as u8).collect();
            let mut signs = vec![0u8; nnz.div_ceil(8)];
            pack_row(&bits, 1, &mut signs);
            TernaryLayout::Sparse {
                indices: idx.to_vec(),
                signs,
            }
        } else {
            let mut codes = vec![0u8; rows * cols];
            for (&i, &p) in idx.iter().zip(positive) {
                codes[i as usize] = if p { 1 } else { 2 };
            }
            TernaryLayout::Dense(BitMatrix::pack(rows, cols, 2, &codes).expect("codes < 4"))
        };
        Self {
            rows,
            cols,
            scale,
            layout,
        }
    }
    pub fn scale(&self) -> f32 {
        self.scale
    }
    pub fn layout(&self) -> &TernaryLayout {
        &self.layout
    }
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
    pub fn storage_bytes(&self) -> u64 {
        4 + match &self.layout {
            TernaryLayout::Dense(b) => b.as_bytes().len() as u64,
            TernaryLayout::Sparse { indices, signs } => (4 * indices.len() + signs.len()) as u64,
        }
    }
    /// {−s, 0, +s} values as a new matrix.
    pub fn reconstruct(&self) -> DeltaMatrix {
        Decoder::ternary(self).reconstruct()
    }
    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        out.push((
            format!("{prefix}scale"),
            Payload::f32(vec![1], &[self.scale]),
        ));
        match &self.layout {
            TernaryLayout::Dense(b) => {
                out.push((
                    format!("{prefix}codes"),
                    Payload::u8(vec![self.rows, b.row_bytes()], b.as_bytes().to_vec()),
                ));
                json!({ "layout": "dense" })
            }
            TernaryLayout::Sparse { indices, signs } => {
                out.push((
                    format!("{prefix}indices"),
                    Payload::u32(vec![indices.len()], indices),
                ));
                out.push((
                    format!("{prefix}signs"),
                    Payload::u8(vec![signs.len()], signs.clone()),
                ));
                json!({ "layout": "sparse", "nnz": indices.len() })
            }
        }
    }
    pub(crate) fn decode(
        meta: &Value,
        r: &PartsReader<'_>,
        prefix: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Self, QuantError> {
        let scale_name = format!("{prefix}scale");
        let scale = r.f32(&scale_name, 1)?[0];
        if !scale.is_finite() {
            return Err(r.bad(&scale_name, "non-finite scale"));
        }
        let layout = match meta_str(meta, "layout", r.tensor)?.as_str() {
            "dense" => {
                let name = format!("{prefix}codes");
                let bytes = r.u8(&name, rows * row_bytes(cols, 2))?;
                let b = BitMatrix::from_bytes(rows, cols, 2, bytes)
                    .map_err(|e| r.bad(&name, e.to_string()))?;
                if b.unpack().contains(&3) {
                    return Err(r.bad(&name, "ternary code 3 is not defined"));
                }
                TernaryLayout::Dense(b)
            }
            "sparse" => {
                let nnz = meta_usize(meta, "nnz", r.tensor)?;
                if rows * cols > u32::MAX as usize {
                    return Err(QuantError::Metadata(format!(
                        "tensor `{}`: too large for u32 indices",
                        r.tensor
                    )));
                }
                let name = format!("{prefix}indices");
                let indices = r.u32(&name, nnz)?;
                check_indices(rows, cols, &indices).map_err(|e| r.bad(&name, e))?;
                let sname = format!("{prefix}signs");
                let signs = r.u8(&sname, nnz.div_ceil(8))?;
                if nnz % 8 != 0 && signs[nnz / 8] >> (nnz % 8) != 0 {
                    return Err(r.bad(&sname, "non-zero padding bits"));
                }
                TernaryLayout::Sparse { indices, signs }
            }
            other => {
                return Err(QuantError::Metadata(format!(
                    "tensor `{}`: unknown ternary layout `{other}`",
                    r.tensor
                )))
            }
        };
        Ok(Self {
            rows,
            cols,
            scale,
            layout,
        })
    }
}
