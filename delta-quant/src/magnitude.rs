//! Magnitude sparsification: keep the entries with the largest |Δ|
//! (the "magnitude pruning" baseline of DARE, arXiv 2311.03099, and of
//! TIES-Merging's trim step, arXiv 2306.01708).
//!
//! Keeps exactly k = round(density · n) entries (round half away from
//! zero), the k largest |Δ|; ties go to the lower row-major position, so
//! the result is a deterministic function of Δ. Values are stored
//! unchanged. Storage: [`SparsePayload`].

use serde_json::json;

use crate::compressor::{CompressContext, Compressor, Params};
use crate::params::ParamList;
use crate::sparse::{check_u32_addressable, keep_count, top_k_positions, SparsePayload};
use crate::{Compressed, DeltaMatrix, QuantError};

/// Keep the `density` fraction of entries with largest magnitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Magnitude {
    /// Fraction kept, in [0, 1].
    pub density: f64,
}

impl Magnitude {
    pub fn new(density: f64) -> Result<Self, QuantError> {
        if !(0.0..=1.0).contains(&density) {
            return Err(QuantError::InvalidParam {
                method: "magnitude".into(),
                param: "density".into(),
                value: density.to_string(),
                reason: "must be in [0, 1]".into(),
            });
        }
        Ok(Self { density })
    }
    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        Ok(Self {
            density: p.get_in("density", 0.1f64, 0.0, 1.0, "in [0, 1]")?,
        })
    }
    /// How many entries a matrix of `n` entries keeps.
    pub fn keep_count(&self, n: usize) -> usize {
        keep_count(self.density, n)
    }
}

impl Compressor for Magnitude {
    fn method(&self) -> &'static str {
        "magnitude"
    }
    fn params(&self) -> Params {
        Params::from([("density".to_string(), json!(self.density))])
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        Magnitude::new(self.density)?;
        delta.check_finite(ctx.name)?;
        check_u32_addressable(delta, ctx.name)?;
        let idx = top_k_positions(delta.data(), self.keep_count(delta.len()));
        let values = idx.iter().map(|&i| delta.data()[i as usize]).collect();
        let [rows, cols] = delta.shape();
        Ok(Compressed::Sparse(SparsePayload::new(
            rows, cols, idx, values,
        )?))
    }
}
