//! The [`Compressor`] trait and the context each call gets.

use std::collections::BTreeMap;
use std::fmt::Debug;

use burn::tensor::{backend::Backend, Tensor};
use serde_json::Value;

use crate::{Compressed, DeltaMatrix, QuantError};

/// Parameters of a compressor as JSON values, keyed by parameter name; they
/// are written to result records and file metadata.
pub type Params = BTreeMap<String, Value>;

/// Per-call context: which tensor is being compressed (for error messages
/// and per-tensor random streams) and the run's seed.
#[derive(Debug, Clone, Copy)]
pub struct CompressContext<'a> {
    /// Tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: &'a str,
    /// Seed for randomized methods (DARE, randomized SVD). Methods that are
    /// deterministic ignore it.
    pub seed: u64,
}

impl<'a> CompressContext<'a> {
    pub fn new(name: &'a str, seed: u64) -> Self {
        Self { name, seed }
    }
}

/// A delta compressor: takes a 2-D delta, gives a [`Compressed`] value.
///
/// Object-safe, so methods can be chosen at run time with
/// [`crate::parse_method`] and chained in a [`crate::Pipeline`]. For Burn
/// tensors use [`CompressTensor::compress`], implemented for every
/// compressor (including `dyn Compressor`).
///
/// Every implementation rejects NaN/±Inf with [`QuantError::NonFinite`]
/// naming `ctx.name`.
pub trait Compressor: Send + Sync + Debug {
    /// Method name as used in method strings (`"bitdelta"`, ...; `"pipeline"`
    /// for a pipeline).
    fn method(&self) -> &'static str;

    /// All parameters, defaults included.
    fn params(&self) -> Params;

    /// Canonical method string, which [`crate::parse_method`] parses back to
    /// an equal compressor: `name:k=v,...` with keys sorted.
    fn spec(&self) -> String {
        let params = self.params();
        if params.is_empty() {
            return self.method().to_string();
        }
        let kv: Vec<String> = params
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        format!("{}:{}", self.method(), kv.join(","))
    }

    /// Compresses a host-side delta.
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError>;
}

/// Compressing Burn tensors directly, for any backend.
pub trait CompressTensor {
    /// Reads `delta` (any float dtype, converted to f32) and compresses it.
    fn compress<B: Backend>(
        &self,
        delta: Tensor<B, 2>,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError>;
}

impl<T: Compressor + ?Sized> CompressTensor for T {
    fn compress<B: Backend>(
        &self,
        delta: Tensor<B, 2>,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        let m = DeltaMatrix::from_tensor(delta)?;
        self.compress_matrix(&m, ctx)
    }
}
