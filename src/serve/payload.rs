//! The one adapter between delta-quant's compressed payloads and the serving
//! engine: a [`DeltaOp`] computes `y += Δ̂·x` for a block of rows.
//!
//! Everything the engine knows about delta-quant goes through
//! [`DeltaOp::from_compressed`], so when the compressed-payload trait of
//! delta-quant changes (issue 13) only this file changes.
//!
//! | encoding | what is held per tenant | `x ↦ Δ̂x` |
//! |---|---|---|
//! | `bitdelta`, `multimask` | the packed sign bits (1 bit/entry) + scales | streams the bits: `α·(2·Σ_{s=+1} x − Σ x)` per output row, `Σ_{s=+1} x` by masked adds of 16 entries (AVX-512) or a table lookup per byte of signs ([`super::signs`]) |
//! | `lowrank` (SVD) | the factors `a = UΣ` `[out, r]`, `b = V` `[in, r]` | `a·(bᵀx)` |
//! | `sparse` (DARE, magnitude) | u32 index + f32 value per kept entry | sparse product |
//! | every other encoding (`rtn`, `deltacome`, `ternary`, `masked` pipelines) | **a dense reconstructed Δ̂, f32 `[in, out]`** | a dense product with Δ̂ (never with `W_base + Δ̂`) |
//!
//! The dense fallback costs 4 bytes per entry per tenant (as much as the
//! base projection itself); [`DeltaOp::resident_bytes`] reports it and
//! `GET /v1/models` shows it per tenant, so the cost is visible.

use burn::module::Param;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use delta_quant::{Compressed, LowRankPayload, SignScales, SparsePayload};
use llama_model::LinearWeight;

use super::signs::positive_sums;

/// A tenant's compressed delta of one projection, ready to apply to
/// activations. Matrices are HF's `[out, in]`.
#[derive(Debug)]
pub enum DeltaOp<B: Backend> {
    /// `Σ_k α_k ⊙ S_k` from packed sign bits (BitDelta `K = 1`, multi-mask `K > 1`).
    Signs(Vec<SignScales>),
    /// `a·bᵀ` from the SVD factors.
    LowRank(LowRankPayload),
    /// Kept entries of a sparse delta.
    Sparse(SparsePayload),
    /// A reconstructed dense Δ̂ `[in, out]` (encodings without a direct
    /// `x ↦ Δ̂x` form here).
    Dense(Box<LinearWeight<B>>),
}

impl<B: Backend> DeltaOp<B> {
    /// Builds the operator for one tensor's compressed delta.
    pub fn from_compressed(c: Compressed, device: &B::Device) -> Self {
        match c {
            Compressed::BitDelta(s) => Self::Signs(vec![s]),
            Compressed::MultiMask(m) => Self::Signs(m.masks().to_vec()),
            Compressed::LowRank(l) => Self::LowRank(l),
            Compressed::Sparse(s) => Self::Sparse(s),
            other => {
                let [rows, cols] = other.shape();
                let hf = other.reconstruct();
                let t = Tensor::<B, 2>::from_data(
                    TensorData::new(hf.data().to_vec(), [rows, cols]),
                    device,
                )
                .transpose();
                // Contiguous `[in, out]`, the layout the dense product reads fastest.
                let t = Tensor::from_data(t.into_data(), device);
                Self::Dense(Box::new(LinearWeight::Dense(Param::from_tensor(t))))
            }
        }
    }

    /// How this operator computes `Δ̂x` (for `/v1/models` and the docs).
    pub fn form(&self) -> &'static str {
        match self {
            Self::Signs(_) => "packed-signs",
            Self::LowRank(_) => "low-rank",
            Self::Sparse(_) => "sparse",
            Self::Dense(_) => "dense-reconstructed",
        }
    }

    /// `[out, in]` of the delta.
    pub fn shape(&self) -> [usize; 2] {
        match self {
            Self::Signs(m) => m[0].shape(),
            Self::LowRank(l) => l.shape(),
            Self::Sparse(s) => s.shape(),
            Self::Dense(w) => {
                let [i, o] = w.dims();
                [o, i]
            }
        }
    }

    /// Bytes this operator keeps in memory.
    pub fn resident_bytes(&self) -> u64 {
        match self {
            Self::Signs(m) => m.iter().map(SignScales::storage_bytes).sum(),
            Self::LowRank(l) => l.storage_bytes(),
            Self::Sparse(s) => s.storage_bytes(),
            Self::Dense(w) => {
                let [i, o] = w.dims();
                4 * (i * o) as u64
            }
        }
    }

    /// `y += Δ̂·x` for `rows` rows: `x` `[rows, in]`, `y` `[rows, out]`,
    /// row-major. Only the host-side forms use this; see [`Self::dense`].
    pub fn add_host(&self, x: &[f32], y: &mut [f32], rows: usize) {
        let [out_f, in_f] = self.shape();
        debug_assert_eq!(x.len(), rows * in_f);
        debug_assert_eq!(y.len(), rows * out_f);
        match self {
            Self::Signs(masks) => {
                let totals: Vec<f32> = x.chunks_exact(in_f).map(|r| r.iter().sum()).collect();
                let mut pos = vec![0.0f32; out_f * rows];
                for m in masks {
                    positive_sums(m.signs(), x, rows, &mut pos);
                    let scales = m.scales();
                    for (o, p) in pos.chunks_exact(rows).enumerate() {
                        let a = if scales.len() == 1 {
                            scales[0]
                        } else {
                            scales[o]
                        };
                        for (r, (&p, &t)) in p.iter().zip(&totals).enumerate() {
                            y[r * out_f + o] += a * (2.0 * p - t);
                        }
                    }
                }
            }
            Self::LowRank(l) => {
                let r = l.rank();
                let (a, b) = (l.a(), l.b());
                for (xr, yr) in x.chunks_exact(in_f).zip(y.chunks_exact_mut(out_f)) {
                    // t = bᵀx, [r]
                    let mut t = vec![0.0f32; r];
                    for (i, &xi) in xr.iter().enumerate() {
                        for (tk, &bk) in t.iter_mut().zip(&b[i * r..(i + 1) * r]) {
                            *tk += bk * xi;
                        }
                    }
                    for (o, yo) in yr.iter_mut().enumerate() {
                        let ao = &a[o * r..(o + 1) * r];
                        *yo += ao.iter().zip(&t).map(|(p, q)| p * q).sum::<f32>();
                    }
                }
            }
            Self::Sparse(s) => sparse_add(s, x, y, rows),
            Self::Dense(_) => unreachable!("dense deltas run on the backend"),
        }
    }

    /// The dense Δ̂ `[in, out]` when this operator runs as a backend product.
    pub fn dense(&self) -> Option<&LinearWeight<B>> {
        match self {
            Self::Dense(w) => Some(w),
            _ => None,
        }
    }
}

/// `y += Δ̂·x` for a sparse Δ̂: output rows in blocks over the rayon
/// threads (a block's entries found by binary search, as the flat positions
/// are strictly increasing), every kept entry applied to all input rows at
/// once on `x` transposed (`[in, rows]`), so a prefill chunk's rows are one
/// contiguous run per entry.
fn sparse_add(s: &SparsePayload, x: &[f32], y: &mut [f32], rows: usize) {
    use rayon::prelude::*;
    const BLOCK: usize = 64;
    let [out_f, in_f] = s.shape();
    let mut xt = vec![0.0f32; in_f * rows];
    for (r, xr) in x.chunks_exact(in_f).enumerate() {
        for (i, &v) in xr.iter().enumerate() {
            xt[i * rows + r] = v;
        }
    }
    let (indices, values) = (s.indices(), s.values());
    // `[out, rows]` sums, added into `y` (`[rows, out]`) afterwards.
    let mut yt = vec![0.0f32; out_f * rows];
    let block = |bi: usize, acc: &mut [f32]| {
        let o0 = bi * BLOCK;
        let at = |o: usize| indices.partition_point(|&p| (p as usize) < o * in_f);
        let mut lo = at(o0);
        for (k, dst) in acc.chunks_exact_mut(rows).enumerate() {
            // Row o's entries: flat positions in [o·in, (o + 1)·in).
            let start = (o0 + k) * in_f;
            let hi = lo + indices[lo..].partition_point(|&p| (p as usize) < start + in_f);
            for (&p, &v) in indices[lo..hi].iter().zip(&values[lo..hi]) {
                let i = p as usize - start;
                for (d, &xv) in dst.iter_mut().zip(&xt[i * rows..(i + 1) * rows]) {
                    *d += v * xv;
                }
            }
            lo = hi;
        }
    };
    if indices.len() * rows >= 1 << 16 {
        yt.par_chunks_mut(BLOCK * rows)
            .enumerate()
            .for_each(|(bi, a)| block(bi, a));
    } else {
        yt.chunks_mut(BLOCK * rows)
            .enumerate()
            .for_each(|(bi, a)| block(bi, a));
    }
    for (o, so) in yt.chunks_exact(rows).enumerate() {
        for (r, &v) in so.iter().enumerate() {
            y[r * out_f + o] += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use delta_quant::{parse_method, CompressContext, DeltaMatrix};

    fn check(method: &str, (rows, cols): (usize, usize), n: usize) {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let delta = DeltaMatrix::new(rows, cols, values).unwrap();
        let c = parse_method(method)
            .unwrap()
            .compress_matrix(&delta, &CompressContext::new("t", 1))
            .unwrap();
        let rec = c.reconstruct();
        let op = DeltaOp::<NdArray>::from_compressed(c, &Default::default());
        let x: Vec<f32> = (0..n * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y = vec![0.5f32; n * rows];
        if op.dense().is_some() {
            return;
        }
        op.add_host(&x, &mut y, n);
        for r in 0..n {
            for o in 0..rows {
                let want: f32 = 0.5
                    + (0..cols)
                        .map(|i| rec.data()[o * cols + i] * x[r * cols + i])
                        .sum::<f32>();
                let got = y[r * rows + o];
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{method} [{rows}x{cols}, {n} rows] ({o}, {r}): {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn host_kernels_equal_the_reconstruction_times_x() {
        for m in [
            "bitdelta",
            "bitdelta:per_row=true",
            "multimask:k=3",
            "svd:rank=4",
            "magnitude:density=0.2",
            "dare:p=0.5,seed=3",
        ] {
            // Small; past the 64-row sparse blocks; large enough for the threads.
            check(m, (13, 21), 2);
            check(m, (150, 37), 3);
            check(m, (300, 400), 5);
        }
    }
}
