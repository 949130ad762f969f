//! Sparse storage shared by DARE and magnitude pruning.
//!
//! Payloads: `indices` U32 `[nnz]` — flat row-major positions
//! (`row * cols + col`), strictly increasing — and `values` F32 `[nnz]`.
//! That is 8 bytes per kept entry; matrices with more than 2³² entries are
//! rejected (no Llama projection comes close: 11008 × 4096 ≈ 2²⁵·⁴).

use serde_json::{json, Value};

use crate::compressed::{meta_usize, PartsReader, Payload};
use crate::decode::Decoder;
use crate::{DeltaMatrix, QuantError};

/// Positions and values of the kept entries.
#[derive(Debug, Clone, PartialEq)]
pub struct SparsePayload {
    rows: usize,
    cols: usize,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl SparsePayload {
    /// `indices` must be strictly increasing and `< rows * cols`.
    pub fn new(
        rows: usize,
        cols: usize,
        indices: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self, QuantError> {
        check_indices(rows, cols, &indices).map_err(QuantError::Shape)?;
        if indices.len() != values.len() {
            return Err(QuantError::Shape(format!(
                "{} indices but {} values",
                indices.len(),
                values.len()
            )));
        }
        Ok(Self {
            rows,
            cols,
            indices,
            values,
        })
    }
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
    pub fn storage_bytes(&self) -> u64 {
        8 * self.indices.len() as u64
    }
    /// The kept entries in an otherwise zero matrix.
    pub fn reconstruct(&self) -> DeltaMatrix {
        Decoder::sparse(self).reconstruct()
    }
    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        let n = self.indices.len();
        out.push((
            format!("{prefix}indices"),
            Payload::u32(vec![n], &self.indices),
        ));
        out.push((
            format!("{prefix}values"),
            Payload::f32(vec![n], &self.values),
        ));
        json!({ "nnz": n })
    }
    pub(crate) fn decode(
        meta: &Value,
        r: &PartsReader<'_>,
        prefix: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Self, QuantError> {
        let nnz = meta_usize(meta, "nnz", r.tensor)?;
        if rows * cols > u32::MAX as usize {
            return Err(QuantError::Metadata(format!(
                "tensor `{}`: too large for u32 indices",
                r.tensor
            )));
        }
        let idx_name = format!("{prefix}indices");
        let indices = r.u32(&idx_name, nnz)?;
        check_indices(rows, cols, &indices).map_err(|e| r.bad(&idx_name, e))?;
        let val_name = format!("{prefix}values");
        let values = r.f32(&val_name, nnz)?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(r.bad(&val_name, "non-finite value"));
        }
        Ok(Self {
            rows,
            cols,
            indices,
            values,
        })
    }
}

pub(crate) fn check_indices(rows: usize, cols: usize, indices: &[u32]) -> Result<(), String> {
    let n = rows * cols;
    if indices.windows(2).any(|w| w[0] >= w[1]) {
        return Err("indices not strictly increasing".into());
    }
    if let Some(&last) = indices.last() {
        if last as usize >= n {
            return Err(format!("index {last} out of range for {rows}x{cols}"));
        }
    }
    Ok(())
}

/// Fails for matrices whose flat positions do not fit in u32.
pub(crate) fn check_u32_addressable(d: &DeltaMatrix, tensor: &str) -> Result<(), QuantError> {
    if d.len() > u32::MAX as usize {
        return Err(QuantError::Unsupported {
            tensor: tensor.to_string(),
            reason: format!("{} entries exceed u32 sparse indices", d.len()),
        });
    }
    Ok(())
}

/// Flat positions of the `k` largest |Δ|, ascending. Ties in |Δ| go to the
/// lower position, so the selection is a deterministic function of Δ.
pub(crate) fn top_k_positions(data: &[f32], k: usize) -> Vec<u32> {
    let n = data.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<u32> = (0..n as u32).collect();
    // Total order: |Δ| descending, then position ascending.
    let cmp = |a: &u32, b: &u32| {
        data[*b as usize]
            .abs()
            .total_cmp(&data[*a as usize].abs())
            .then(a.cmp(b))
    };
    if k < n {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable();
    idx
}

/// `round(density · n)` (half away from zero), clamped to `[0, n]`.
pub(crate) fn keep_count(density: f64, n: usize) -> usize {
    ((density * n as f64).round() as usize).min(n)
}
