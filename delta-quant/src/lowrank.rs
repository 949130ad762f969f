//! Low-rank approximation by truncated SVD (Eckart–Young: the best rank-r
//! approximation in Frobenius norm), the delta-compression baseline used by
//! Delta-CoMe (arXiv 2406.08903) and by LoRA-extraction tools.
//!
//! Δ ≈ U_r Σ_r V_rᵀ; Σ is folded into U. Storage: `a` = U_r Σ_r F32
//! `[rows, r]` and `b` = V_r F32 `[cols, r]`, i.e. 4·r·(rows + cols) bytes.
//!
//! SVD solver (`solver=`): `exact` is faer's thin SVD (in f64); `randomized`
//! is Halko, Martinsson & Tropp (2011, arXiv 0909.4061, Alg. 4.4) with
//! [`OVERSAMPLE`] extra columns and [`POWER_ITERS`] power iterations,
//! seeded from the per-tensor stream (see [`crate::dare::tensor_rng`]);
//! `auto` (default) uses exact when min(rows, cols) ≤ 512 or the sketch
//! would be at least a quarter of it, randomized otherwise (a full SVD of a
//! 4096² matrix takes tens of seconds on two cores; the sketch, well under
//! one). Randomized error is within a small factor of optimal when the
//! spectrum decays, as it does for fine-tuning deltas.

use std::borrow::Cow;

use faer::Mat;
use rand::RngCore;
use serde_json::{json, Value};

use crate::compressed::{meta_usize, PartsReader, Payload};
use crate::compressor::{CompressContext, Compressor, Params};
use crate::dare::tensor_rng;
use crate::decode::Decoder;
use crate::params::ParamList;
use crate::{Compressed, DeltaMatrix, QuantError};

/// Extra sketch columns of the randomized SVD.
pub const OVERSAMPLE: usize = 10;
/// Power (subspace) iterations of the randomized SVD.
pub const POWER_ITERS: usize = 3;

/// Which SVD algorithm to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SvdSolver {
    #[default]
    Auto,
    Exact,
    Randomized,
}

impl SvdSolver {
    pub fn as_str(&self) -> &'static str {
        match self {
            SvdSolver::Auto => "auto",
            SvdSolver::Exact => "exact",
            SvdSolver::Randomized => "randomized",
        }
    }
    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        match p.raw("solver").unwrap_or("auto") {
            "auto" => Ok(SvdSolver::Auto),
            "exact" => Ok(SvdSolver::Exact),
            "randomized" => Ok(SvdSolver::Randomized),
            other => Err(p.invalid("solver", other, "one of auto, exact, randomized")),
        }
    }
}

/// Truncated SVD factors in f64: `u` is rows × r, `v` cols × r.
pub(crate) struct Factors {
    pub u: Mat<f64>,
    pub s: Vec<f64>,
    pub v: Mat<f64>,
}

/// Rank-`rank` truncated SVD of `d` (rank clamped to min(rows, cols)).
pub(crate) fn truncated_svd(
    d: &DeltaMatrix,
    rank: usize,
    solver: SvdSolver,
    seed: u64,
    tensor: &str,
) -> Result<Factors, QuantError> {
    let (m, n) = (d.rows(), d.cols());
    let k = m.min(n);
    let r = rank.min(k);
    if r == 0 {
        return Ok(Factors {
            u: Mat::zeros(m, 0),
            s: Vec::new(),
            v: Mat::zeros(n, 0),
        });
    }
    let data = d.data();
    let a = Mat::<f64>::from_fn(m, n, |i, j| data[i * n + j] as f64);
    let l = (r + OVERSAMPLE).min(k);
    let exact = match solver {
        SvdSolver::Exact => true,
        SvdSolver::Randomized => false,
        SvdSolver::Auto => k <= 512 || 4 * l >= k,
    };
    let fail = |e: faer::linalg::svd::SvdError| QuantError::Unsupported {
        tensor: tensor.to_string(),
        reason: format!("SVD failed: {e:?}"),
    };
    if exact {
        let svd = a.thin_svd().map_err(fail)?;
        let s = svd.S().column_vector();
        return Ok(Factors {
            u: Mat::from_fn(m, r, |i, j| svd.U()[(i, j)]),
            s: (0..r).map(|j| s[j]).collect(),
            v: Mat::from_fn(n, r, |i, j| svd.V()[(i, j)]),
        });
    }
    let mut rng = tensor_rng(seed, tensor);
    // Uniform(−1, 1) test matrix: any i.i.d. zero-mean distribution works for
    // the range finder; Gaussian only sharpens the constants.
    let omega = Mat::<f64>::from_fn(n, l, |_, _| {
        (rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    });
    let mut q = (&a * &omega).qr().compute_thin_Q();
    for _ in 0..POWER_ITERS {
        let z = (a.transpose() * &q).qr().compute_thin_Q();
        q = (&a * &z).qr().compute_thin_Q();
    }
    let b = q.transpose() * &a; // l × n
    let svd = b.thin_svd().map_err(fail)?;
    let u = &q * svd.U();
    let s = svd.S().column_vector();
    Ok(Factors {
        u: Mat::from_fn(m, r, |i, j| u[(i, j)]),
        s: (0..r).map(|j| s[j]).collect(),
        v: Mat::from_fn(n, r, |i, j| svd.V()[(i, j)]),
    })
}

/// Truncated-SVD compression to rank `rank`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowRank {
    pub rank: usize,
    pub solver: SvdSolver,
}

impl LowRank {
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            solver: SvdSolver::Auto,
        }
    }
    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        Ok(Self {
            rank: p.get("rank", 16usize)?,
            solver: SvdSolver::from_params(p)?,
        })
    }
}

impl Compressor for LowRank {
    fn method(&self) -> &'static str {
        "svd"
    }
    fn params(&self) -> Params {
        Params::from([
            ("rank".to_string(), json!(self.rank)),
            ("solver".to_string(), json!(self.solver.as_str())),
        ])
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        delta.check_finite(ctx.name)?;
        let f = truncated_svd(delta, self.rank, self.solver, ctx.seed, ctx.name)?;
        let (m, n, r) = (delta.rows(), delta.cols(), f.s.len());
        let mut a = vec![0f32; m * r];
        let mut b = vec![0f32; n * r];
        for i in 0..m {
            for k in 0..r {
                a[i * r + k] = (f.u[(i, k)] * f.s[k]) as f32;
            }
        }
        for j in 0..n {
            for k in 0..r {
                b[j * r + k] = f.v[(j, k)] as f32;
            }
        }
        Ok(Compressed::LowRank(LowRankPayload {
            rows: m,
            cols: n,
            rank: r,
            a,
            b,
        }))
    }
}

/// Low-rank factors, Δ̂ = a · bᵀ.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRankPayload {
    rows: usize,
    cols: usize,
    rank: usize,
    a: Vec<f32>,
    b: Vec<f32>,
}

impl LowRankPayload {
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// U_r Σ_r, row-major `[rows, rank]`.
    pub fn a(&self) -> &[f32] {
        &self.a
    }
    /// V_r, row-major `[cols, rank]`.
    pub fn b(&self) -> &[f32] {
        &self.b
    }
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
    pub fn storage_bytes(&self) -> u64 {
        4 * (self.a.len() + self.b.len()) as u64
    }
    /// a · bᵀ as a new matrix.
    pub fn reconstruct(&self) -> DeltaMatrix {
        Decoder::factors(
            self.shape(),
            self.rank,
            Cow::Borrowed(&self.a),
            Cow::Borrowed(&self.b),
        )
        .reconstruct()
    }
    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        out.push((
            format!("{prefix}a"),
            Payload::f32(vec![self.rows, self.rank], &self.a),
        ));
        out.push((
            format!("{prefix}b"),
            Payload::f32(vec![self.cols, self.rank], &self.b),
        ));
        json!({ "rank": self.rank })
    }
    pub(crate) fn decode(
        meta: &Value,
        r: &PartsReader<'_>,
        prefix: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Self, QuantError> {
        let rank = meta_usize(meta, "rank", r.tensor)?;
        if rank > rows.min(cols) {
            return Err(QuantError::Metadata(format!(
                "tensor `{}`: rank {rank} > min dim",
                r.tensor
            )));
        }
        let a = r.f32(&format!("{prefix}a"), rows * rank)?;
        let b = r.f32(&format!("{prefix}b"), cols * rank)?;
        if a.iter().chain(&b).any(|x| !x.is_finite()) {
            return Err(r.bad(&format!("{prefix}a"), "non-finite factor"));
        }
        Ok(Self {
            rows,
            cols,
            rank,
            a,
            b,
        })
    }
}
