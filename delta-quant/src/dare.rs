//! DARE — Drop And REscale (Yu et al. 2023, "Language Models are Super
//! Mario", arXiv 2311.03099, code: github.com/yule-BUAA/MergeLM).
//!
//! Each entry is dropped with probability `p`; survivors are multiplied by
//! 1/(1 − p), so E[Δ̂] = Δ. Randomness: a ChaCha20 generator keyed by the
//! seed (`seed=` in the method string, else [`CompressContext::seed`]) with
//! the ChaCha *stream* set to the 64-bit FNV-1a hash of the tensor name.
//! Every tensor thus gets an independent, reproducible stream, whatever
//! order (or thread) tensors are processed in. One `u32` is drawn per entry
//! in row-major order; the entry is kept iff it is ≥ round(p · 2³²).
//!
//! Storage: [`SparsePayload`] (U32 positions + F32 rescaled values).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;

use crate::compressor::{CompressContext, Compressor, Params};
use crate::params::ParamList;
use crate::sparse::{check_u32_addressable, SparsePayload};
use crate::{Compressed, DeltaMatrix, QuantError};

/// DARE with drop probability `p`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dare {
    /// Drop probability, in [0, 1).
    pub p: f64,
    /// Overrides the context's seed when set.
    pub seed: Option<u64>,
}

impl Dare {
    pub fn new(p: f64, seed: Option<u64>) -> Result<Self, QuantError> {
        if !(0.0..1.0).contains(&p) {
            return Err(QuantError::InvalidParam {
                method: "dare".into(),
                param: "p".into(),
                value: p.to_string(),
                reason: "must be in [0, 1)".into(),
            });
        }
        Ok(Self { p, seed })
    }
    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        let prob = p.get("p", 0.9f64)?;
        if !(0.0..1.0).contains(&prob) {
            return Err(p.invalid("p", &prob.to_string(), "must be in [0, 1)"));
        }
        let seed = match p.raw("seed") {
            None => None,
            Some(_) => Some(p.get("seed", 0u64)?),
        };
        Ok(Self { p: prob, seed })
    }
}

/// 64-bit FNV-1a; stable across platforms and Rust versions (unlike
/// `std`'s hasher), so streams are reproducible everywhere.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The per-tensor random stream used by seeded methods.
pub fn tensor_rng(seed: u64, tensor: &str) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(fnv1a64(tensor));
    rng
}

impl Compressor for Dare {
    fn method(&self) -> &'static str {
        "dare"
    }
    fn params(&self) -> Params {
        let mut p = Params::from([("p".to_string(), json!(self.p))]);
        if let Some(s) = self.seed {
            p.insert("seed".into(), json!(s));
        }
        p
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        Dare::new(self.p, self.seed)?;
        delta.check_finite(ctx.name)?;
        check_u32_addressable(delta, ctx.name)?;
        let mut rng = tensor_rng(self.seed.unwrap_or(ctx.seed), ctx.name);
        let threshold = (self.p * 4_294_967_296.0).round() as u64;
        let rescale = (1.0 / (1.0 - self.p)) as f32;
        let mut indices =
            Vec::with_capacity(((1.0 - self.p) * delta.len() as f64 * 1.05) as usize + 16);
        let mut values = Vec::with_capacity(indices.capacity());
        for (i, &x) in delta.data().iter().enumerate() {
            if rng.next_u32() as u64 >= threshold {
                indices.push(i as u32);
                values.push(x * rescale);
            }
        }
        let [rows, cols] = delta.shape();
        Ok(Compressed::Sparse(SparsePayload::new(
            rows, cols, indices, values,
        )?))
    }
}
