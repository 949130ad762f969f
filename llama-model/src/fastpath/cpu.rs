//! The burn-ndarray kernels of the fast path (see the [parent module](super)).
//!
//! burn-ndarray 0.21 copies every operand of a matrix product before
//! multiplying: `linear` reshapes the `[in, out]` weight to `[1, in, out]`
//! and `matmul` reshapes it again to `[batch, in, out]`, and each reshape
//! copies the whole matrix, even a contiguous one (`to_shape(..)
//! .into_shared()` turns the borrowed view into an owned copy); a transposed
//! weight (the tied LM head, `embed_tokensᵀ`) is copied element by element.
//! matrixmultiply then packs the weight once more, even for a single row.
//! Decoding one token thus moved every weight byte four or five times.
//!
//! - [`linear`] computes `x · W` straight from the tensors' memory when the
//!   tensors are burn-ndarray f32 tensors: a matrix–vector kernel for up
//!   to [`MAX_VECTOR_ROWS`] rows (decoding: each weight read once, large ones
//!   split over the rayon threads) and faer's GEMM on the original strides
//!   for more rows (prefill: no copies).
//! - [`swiglu`] is one pass over the MLP's two halves.
//! - [`in_pool`] runs a forward pass on a rayon thread.
//!
//! A tensor that is not a plain burn-ndarray f32 tensor (another backend,
//! `Autodiff<NdArray>` in training, a strided view) takes the generic path
//! of the parent module.

use std::any::{Any, TypeId};
use std::borrow::Cow;

use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

/// At most this many rows go through the matrix–vector kernel; more use sgemm.
const MAX_VECTOR_ROWS: usize = 8;
/// Products smaller than this many weight entries run on one thread.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 18;

/// `x · W` for `x` `[..., in]` and `W` `[in, out]`, as
/// `burn::tensor::module::linear(x, w, None)` computes it.
///
/// Other backends get a two-dimensional `matmul` of the flattened rows:
/// `linear` would reshape the weight to `[1, …, in, out]`, which copies a
/// transposed weight (the tied LM head) on burn-flex and CUDA, and copies
/// any weight on burn-ndarray (twice, with the reshape inside `matmul`).
pub(crate) fn linear<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    if let Some(y) = ndarray_linear(&x, &w) {
        return y;
    }
    super::generic_linear(x, w)
}

/// `silu(gate) · up`, the SwiGLU product of the MLP.
///
/// On burn-ndarray (f32, no autodiff) it is one pass over the two inputs;
/// on other backends without autodiff, `g / (1 + e^(−g)) · u` (one
/// exponential, where Burn's `sigmoid` takes two and a logarithm); under
/// autodiff, Burn's `silu`, whose gradient is safe for any input.
pub(crate) fn swiglu<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    if let Some(y) = ndarray_swiglu(&gate, &up) {
        return y;
    }
    super::generic_swiglu(gate, up)
}

fn ndarray_swiglu<B: Backend, const D: usize>(
    gate: &Tensor<B, D>,
    up: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let TensorPrimitive::Float(gp) = gate.clone().into_primitive() else {
        return None;
    };
    let TensorPrimitive::Float(up_p) = up.clone().into_primitive() else {
        return None;
    };
    let (NdArrayTensor::F32(gs), NdArrayTensor::F32(us)) =
        (as_ndarray_f32(&gp)?, as_ndarray_f32(&up_p)?)
    else {
        return None;
    };
    let (gv, uv) = (gs.view(), us.view());
    if gv.shape() != uv.shape() {
        return None;
    }
    let (g, u) = (gv.to_slice()?, uv.to_slice()?);
    let out: Vec<f32> = g
        .iter()
        .zip(u)
        .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
        .collect();
    Some(Tensor::from_data(
        TensorData::new(out, gv.shape().to_vec()),
        &gate.device(),
    ))
}

/// Scaled dot-product attention on burn-ndarray (f32), fused: `q`
/// `[b, h, s, d]`, `k`, `v` `[b, kv, t, d]` (query head `i` reads key/value
/// head `i / (h / kv)`), `mask` `[b, 1, s, t]`, true where a key is
/// ignored. Returns `[b, s, h·d]`, the layout the output projection reads,
/// or `None` on other backends (the caller then runs Burn's operations).
///
/// It computes what the generic path does — scores `q·kᵀ · d^(−½)`, masked
/// scores set to `f32::MIN`, softmax, `· v` — without its dozen
/// intermediate tensors and layout copies per layer.
pub(crate) fn attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4, Bool>>,
) -> Option<Tensor<B, 3>> {
    let prims = [q, k, v].map(|t| t.clone().into_primitive());
    let [TensorPrimitive::Float(qp), TensorPrimitive::Float(kp), TensorPrimitive::Float(vp)] =
        &prims
    else {
        return None;
    };
    let (NdArrayTensor::F32(qs), NdArrayTensor::F32(ks), NdArrayTensor::F32(vs)) = (
        as_ndarray_f32(qp)?,
        as_ndarray_f32(kp)?,
        as_ndarray_f32(vp)?,
    ) else {
        return None;
    };
    let mask_prim = mask.map(|m| m.clone().into_primitive());
    let mask_view = match &mask_prim {
        Some(p) => match (p as &dyn Any).downcast_ref::<NdArrayTensor>()? {
            NdArrayTensor::Bool(m) => Some(m.view()),
            _ => return None,
        },
        None => None,
    };
    let (qv, kv_, vv) = (qs.view(), ks.view(), vs.view());
    let (&[b, h, s, d], &[kb, kvh, t, kd]) = (qv.shape(), kv_.shape()) else {
        return None;
    };
    if kb != b || kd != d || vv.shape() != kv_.shape() || kvh == 0 || h % kvh != 0 {
        return None;
    }
    if let Some(m) = &mask_view {
        if m.shape() != [b, 1, s, t] {
            return None;
        }
    }
    // Contiguous copies only where the input is a strided view (small:
    // activations and the filled part of the cache).
    let (qc, kc, vc) = (
        qv.as_standard_layout(),
        kv_.as_standard_layout(),
        vv.as_standard_layout(),
    );
    let mc = mask_view.as_ref().map(|m| m.as_standard_layout());
    let (qf, kf, vf) = (qc.as_slice()?, kc.as_slice()?, vc.as_slice()?);
    let mf: Option<&[bool]> = match &mc {
        Some(m) => Some(m.as_slice()?),
        None => None,
    };
    let n_rep = h / kvh;
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let fma = has_fma();
    let head = |bh: usize| -> Vec<f32> {
        let (bi, hi) = (bh / h, bh % h);
        let q = &qf[bh * s * d..(bh + 1) * s * d];
        let kvi = bi * kvh + hi / n_rep;
        let k = &kf[kvi * t * d..(kvi + 1) * t * d];
        let v = &vf[kvi * t * d..(kvi + 1) * t * d];
        let m = mf.map(|m| &m[bi * s * t..(bi + 1) * s * t]);
        let mut out = vec![0f32; s * d];
        if fma {
            // SAFETY: `has_fma` checked that the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                attend_fma(q, k, v, m, s, t, d, scale, &mut out)
            }
        } else {
            attend::<false>(q, k, v, m, s, t, d, scale, &mut out)
        }
        out
    };
    let heads: Vec<Vec<f32>> = if b * h * s * t * d >= PARALLEL_MIN_WEIGHTS {
        (0..b * h).into_par_iter().map(head).collect()
    } else {
        (0..b * h).map(head).collect()
    };
    // [b, h, s, d] → [b, s, h·d].
    let mut out = vec![0f32; b * s * h * d];
    for (bh, o) in heads.iter().enumerate() {
        let (bi, hi) = (bh / h, bh % h);
        for i in 0..s {
            let dst = ((bi * s + i) * h + hi) * d;
            out[dst..dst + d].copy_from_slice(&o[i * d..(i + 1) * d]);
        }
    }
    Some(Tensor::from_data(
        TensorData::new(out, [b, s, h * d]),
        &q.device(),
    ))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_fma(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[bool]>,
    s: usize,
    t: usize,
    d: usize,
    scale: f32,
    out: &mut [f32],
) {
    attend::<true>(q, k, v, mask, s, t, d, scale, out)
}

/// One head: `out[i] = softmax_j(q_i·k_j · scale, masked → f32::MIN) · v`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend<const FMA: bool>(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[bool]>,
    s: usize,
    t: usize,
    d: usize,
    scale: f32,
    out: &mut [f32],
) {
    let mut p = vec![0f32; t];
    for i in 0..s {
        let qi = &q[i * d..(i + 1) * d];
        let row_mask = mask.map(|m| &m[i * t..(i + 1) * t]);
        for (j, pj) in p.iter_mut().enumerate() {
            *pj = if row_mask.is_some_and(|m| m[j]) {
                f32::MIN
            } else {
                dot::<FMA>(qi, &k[j * d..(j + 1) * d]) * scale
            };
        }
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for pj in p.iter_mut() {
            *pj = (*pj - max).exp();
            sum += *pj;
        }
        let oi = &mut out[i * d..(i + 1) * d];
        for (j, &pj) in p.iter().enumerate() {
            if pj == 0.0 {
                continue;
            }
            let w = pj / sum;
            for (o, &x) in oi.iter_mut().zip(&v[j * d..(j + 1) * d]) {
                *o = madd::<FMA>(w, x, *o);
            }
        }
    }
}

/// `a · b` with sixteen independent partial sums (vectorizable).
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (at, bt) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            lanes[l] = madd::<FMA>(x[l], y[l], lanes[l]);
        }
    }
    let mut s: f32 = lanes.iter().sum();
    for (&x, &y) in at.iter().zip(bt) {
        s = madd::<FMA>(x, y, s);
    }
    s
}

/// Runs `f` on a thread of rayon's pool when `B` is burn-ndarray (whose
/// operations and the kernels here split their work over that pool), so
/// that the calling thread does not hand every parallel operation to the
/// pool and sleep until it is done: one thread fewer competing for the
/// cores, and no wake-up per operation. Other backends run `f` in place.
pub(crate) fn in_pool<B: Backend, R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let ndarray = TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<NdArrayTensor>();
    if !ndarray || rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// The f32 burn-ndarray storage behind a float tensor primitive, if that is what it is.
fn as_ndarray_f32<P: 'static>(p: &P) -> Option<&NdArrayTensor> {
    match (p as &dyn Any).downcast_ref::<NdArrayTensor>()? {
        t @ NdArrayTensor::F32(_) => Some(t),
        _ => None,
    }
}

fn ndarray_linear<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    w: &Tensor<B, 2>,
) -> Option<Tensor<B, D>> {
    let TensorPrimitive::Float(xp) = x.clone().into_primitive() else {
        return None;
    };
    let TensorPrimitive::Float(wp) = w.clone().into_primitive() else {
        return None;
    };
    let (NdArrayTensor::F32(xs), NdArrayTensor::F32(ws)) =
        (as_ndarray_f32(&xp)?, as_ndarray_f32(&wp)?)
    else {
        return None;
    };
    let (xv, wv) = (xs.view(), ws.view());
    let (x_shape, w_shape, w_strides) = (xv.shape(), wv.shape(), wv.strides());
    if x_shape.len() != D || w_shape.len() != 2 || D < 2 {
        return None;
    }
    let (k, n) = (w_shape[0], w_shape[1]);
    if x_shape[D - 1] != k || k == 0 || n == 0 {
        return None;
    }
    let m: usize = x_shape[..D - 1].iter().product();
    let mut out_shape = x_shape.to_vec();
    out_shape[D - 1] = n;
    if m == 0 {
        return None;
    }
    // Rows of x one after the other (a copy only for a strided x, which is small).
    let xs: Cow<[f32]> = match xv.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(xv.iter().copied().collect()),
    };
    let (rs, cs) = (w_strides[0], w_strides[1]);
    let mut out = vec![0f32; m * n];
    let row_major = cs == 1 && (rs == n as isize || k == 1);
    let col_major = rs == 1 && (cs == k as isize || n == 1);
    if m <= MAX_VECTOR_ROWS && row_major {
        let w = wv.to_slice()?;
        matvec_row_major(&xs, m, k, w, n, &mut out);
    } else if m <= MAX_VECTOR_ROWS && col_major {
        // The memory holds Wᵀ `[out, in]` row-major: one dot product per output.
        let wt = wv.reversed_axes().to_slice()?;
        matvec_col_major(&xs, m, k, wt, n, &mut out);
    } else {
        // faer's GEMM straight on the original strides (any layout of W).
        let threads = threads_for(k * n);
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `out` is `[m, n]` row-major, `xs` `[m, k]` row-major, and
        // `wv` a live `[k, n]` view whose strides are `(rs, cs)` elements;
        // every index the product touches lies inside those buffers.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                xs.as_ptr(),
                1,
                k as isize,
                wv.as_ptr(),
                cs,
                rs,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
    Some(Tensor::from_data(
        TensorData::new(out, out_shape),
        &x.device(),
    ))
}

/// Threads worth using for a product with this many weight entries.
fn threads_for(weights: usize) -> usize {
    if weights >= PARALLEL_MIN_WEIGHTS {
        rayon::current_num_threads().max(1)
    } else {
        1
    }
}

/// Column blocks of an `[.., n]` output, one per thread.
fn column_blocks(n: usize, weights: usize) -> Vec<(usize, usize)> {
    let width = n.div_ceil(threads_for(weights)).max(1);
    (0..n)
        .step_by(width)
        .map(|j0| (j0, (j0 + width).min(n)))
        .collect()
}

/// Runs `kernel(j0, j1, acc)` on every column block (in parallel when worth
/// it), `acc` being that block's `[m, j1 - j0]` output, and assembles `out`.
fn per_block(
    m: usize,
    n: usize,
    weights: usize,
    out: &mut [f32],
    kernel: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let blocks = column_blocks(n, weights);
    if blocks.len() == 1 {
        kernel(0, n, out);
        return;
    }
    let parts: Vec<Vec<f32>> = blocks
        .par_iter()
        .map(|&(j0, j1)| {
            let mut acc = vec![0f32; m * (j1 - j0)];
            kernel(j0, j1, &mut acc);
            acc
        })
        .collect();
    for (&(j0, j1), acc) in blocks.iter().zip(&parts) {
        let bw = j1 - j0;
        for r in 0..m {
            out[r * n + j0..r * n + j1].copy_from_slice(&acc[r * bw..(r + 1) * bw]);
        }
    }
}

/// `out[m, n] = x[m, k] · w[k, n]`, `w` row-major: `y += x_i · w_i` over the
/// rows of `w`, each row read once for all `m` rows of `x`. Threads take
/// contiguous bands of rows (one sequential stream each) and their partial
/// sums are added.
fn matvec_row_major(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, out: &mut [f32]) {
    let fma = has_fma();
    let run = |i0: usize, i1: usize, acc: &mut [f32]| {
        if fma {
            // SAFETY: `has_fma` checked that the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                axpy_rows_fma(x, m, k, w, n, i0, i1, acc)
            }
        } else {
            axpy_rows::<false>(x, m, k, w, n, i0, i1, acc)
        }
    };
    let threads = threads_for(k * n);
    if threads == 1 {
        run(0, k, out);
        return;
    }
    let band = k.div_ceil(threads).div_ceil(4) * 4;
    let partials: Vec<Vec<f32>> = (0..k)
        .step_by(band)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|i0| {
            let mut acc = vec![0f32; m * n];
            run(i0, (i0 + band).min(k), &mut acc);
            acc
        })
        .collect();
    out.copy_from_slice(&partials[0]);
    for p in &partials[1..] {
        for (o, &v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// `out[m, n] = x[m, k] · wtᵀ` with `wt` `[n, k]` row-major: a dot product per output.
fn matvec_col_major(x: &[f32], m: usize, k: usize, wt: &[f32], n: usize, out: &mut [f32]) {
    let fma = has_fma();
    per_block(m, n, k * n, out, |j0, j1, acc| {
        if fma {
            // SAFETY: `has_fma` checked that the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                dot_block_fma(x, m, k, wt, j0, j1, acc)
            }
        } else {
            dot_block::<false>(x, m, k, wt, j0, j1, acc)
        }
    });
}

#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_fma() -> bool {
    false
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn axpy_rows_fma(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    i0: usize,
    i1: usize,
    acc: &mut [f32],
) {
    axpy_rows::<true>(x, m, k, w, n, i0, i1, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_block_fma(
    x: &[f32],
    m: usize,
    k: usize,
    wt: &[f32],
    j0: usize,
    j1: usize,
    acc: &mut [f32],
) {
    dot_block::<true>(x, m, k, wt, j0, j1, acc)
}

/// `acc[r, :] += Σ_{i in i0..i1} x[r, i] · w[i, :]`, four rows of `w` at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn axpy_rows<const FMA: bool>(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    i0: usize,
    i1: usize,
    acc: &mut [f32],
) {
    let row = |i: usize| &w[i * n..(i + 1) * n];
    let mut i = i0;
    while i + 4 <= i1 {
        let (w0, w1, w2, w3) = (row(i), row(i + 1), row(i + 2), row(i + 3));
        for r in 0..m {
            let xr = &x[r * k + i..r * k + i + 4];
            let (a0, a1, a2, a3) = (xr[0], xr[1], xr[2], xr[3]);
            let y = &mut acc[r * n..(r + 1) * n];
            for ((((y, &b0), &b1), &b2), &b3) in y.iter_mut().zip(w0).zip(w1).zip(w2).zip(w3) {
                *y = madd::<FMA>(
                    a3,
                    b3,
                    madd::<FMA>(a2, b2, madd::<FMA>(a1, b1, madd::<FMA>(a0, b0, *y))),
                );
            }
        }
        i += 4;
    }
    while i < i1 {
        let wi = row(i);
        for r in 0..m {
            let a = x[r * k + i];
            let y = &mut acc[r * n..(r + 1) * n];
            for (y, &b) in y.iter_mut().zip(wi) {
                *y = madd::<FMA>(a, b, *y);
            }
        }
        i += 1;
    }
}

/// `acc[r, j - j0] = x[r, :] · wt[j, :]` for `j` in `j0..j1`.
#[inline(always)]
fn dot_block<const FMA: bool>(
    x: &[f32],
    m: usize,
    k: usize,
    wt: &[f32],
    j0: usize,
    j1: usize,
    acc: &mut [f32],
) {
    let bw = j1 - j0;
    for j in j0..j1 {
        let wj = &wt[j * k..(j + 1) * k];
        for r in 0..m {
            acc[r * bw + (j - j0)] = dot::<FMA>(&x[r * k..(r + 1) * k], wj);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};

    type B = NdArray<f32>;

    fn check(m: usize, k: usize, n: usize, transposed: bool) {
        let device = Default::default();
        let x = Tensor::<B, 3>::random([1, m, k], Distribution::Uniform(-1.0, 1.0), &device);
        let w = if transposed {
            Tensor::<B, 2>::random([n, k], Distribution::Uniform(-1.0, 1.0), &device).transpose()
        } else {
            Tensor::<B, 2>::random([k, n], Distribution::Uniform(-1.0, 1.0), &device)
        };
        assert!(ndarray_linear(&x, &w).is_some(), "fast path taken");
        let fast = linear(x.clone(), w.clone());
        let reference = burn::tensor::module::linear(x, w, None);
        fast.into_data()
            .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::absolute(1e-4));
    }

    #[test]
    fn matches_burn_linear_for_every_path() {
        for &(m, k, n) in &[
            (1, 7, 5),
            (1, 64, 1000),
            (3, 130, 2100),
            (8, 33, 17),
            (9, 40, 50),
            (20, 64, 3000),
        ] {
            check(m, k, n, false);
            check(m, k, n, true);
        }
    }

    /// The whole model on burn-ndarray (every fast path) against the same
    /// weights on `Autodiff<NdArray>` (Burn's generic operations only):
    /// tied and untied heads, left padding, a cached decode step.
    #[test]
    fn fast_and_generic_paths_agree_on_a_whole_model() {
        use crate::{ForwardOptions, KvCache, LlamaConfig, LogitsMode};
        use burn::tensor::Int;
        type A = burn::backend::Autodiff<NdArray<f32>>;
        let device = Default::default();
        for tied in [false, true] {
            let cfg = LlamaConfig {
                tie_word_embeddings: tied,
                ..LlamaConfig::tiny()
            };
            let fast = cfg.init::<B>(&device, 7);
            let generic = cfg.init::<A>(&device, 7);
            let ids = vec![0i64, 5, 9, 17, 3, 44, 101, 7, 250, 12];
            let mask = vec![0i64, 1, 1, 1, 1, 1, 1, 1, 1, 1];
            let run = |model_ids: &[i64], m: Option<&[i64]>, cache_steps: bool| {
                let outs_fast;
                let outs_generic;
                {
                    let tok = Tensor::<B, 2, Int>::from_data(
                        TensorData::new(model_ids.to_vec(), [2, model_ids.len() / 2]),
                        &device,
                    );
                    let am = m.map(|m| {
                        Tensor::<B, 2, Int>::from_data(
                            TensorData::new(m.to_vec(), [2, m.len() / 2]),
                            &device,
                        )
                    });
                    let mut cache = KvCache::with_capacity(cfg.num_hidden_layers, 8);
                    let opts = ForwardOptions {
                        attention_mask: am,
                        capture_hidden: false,
                        logits: LogitsMode::All,
                    };
                    let mut out = fast.forward_with(tok, opts, Some(&mut cache)).logits;
                    if cache_steps {
                        let next = Tensor::<B, 2, Int>::from_data(
                            TensorData::new(vec![33i64, 34], [2, 1]),
                            &device,
                        );
                        out = fast
                            .forward_with(next, ForwardOptions::default(), Some(&mut cache))
                            .logits;
                    }
                    outs_fast = out.into_data();
                }
                {
                    let tok = Tensor::<A, 2, Int>::from_data(
                        TensorData::new(model_ids.to_vec(), [2, model_ids.len() / 2]),
                        &device,
                    );
                    let am = m.map(|m| {
                        Tensor::<A, 2, Int>::from_data(
                            TensorData::new(m.to_vec(), [2, m.len() / 2]),
                            &device,
                        )
                    });
                    let mut cache = KvCache::new(cfg.num_hidden_layers);
                    let opts = ForwardOptions {
                        attention_mask: am,
                        capture_hidden: false,
                        logits: LogitsMode::All,
                    };
                    let mut out = generic.forward_with(tok, opts, Some(&mut cache)).logits;
                    if cache_steps {
                        let next = Tensor::<A, 2, Int>::from_data(
                            TensorData::new(vec![33i64, 34], [2, 1]),
                            &device,
                        );
                        out = generic
                            .forward_with(next, ForwardOptions::default(), Some(&mut cache))
                            .logits;
                    }
                    outs_generic = out.into_data();
                }
                outs_fast.assert_approx_eq::<f32>(&outs_generic, Tolerance::absolute(1e-4));
            };
            run(&ids, None, false);
            run(&ids, Some(&mask), false);
            run(&ids, Some(&mask), true);
        }
    }

    #[test]
    fn strided_input_and_other_backends_fall_back_or_agree() {
        let device = Default::default();
        // A non-contiguous x (a narrowed middle column of [2, 3, k]).
        let x = Tensor::<B, 3>::random([2, 3, 16], Distribution::Uniform(-1.0, 1.0), &device)
            .narrow(1, 1, 1);
        let w = Tensor::<B, 2>::random([16, 40], Distribution::Uniform(-1.0, 1.0), &device);
        let fast = linear(x.clone(), w.clone());
        let reference = burn::tensor::module::linear(x, w, None);
        fast.into_data()
            .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::absolute(1e-5));

        type A = burn::backend::Autodiff<NdArray<f32>>;
        let x = Tensor::<A, 2>::ones([1, 4], &device);
        let w = Tensor::<A, 2>::ones([4, 3], &device);
        assert!(
            ndarray_linear(&x, &w).is_none(),
            "autodiff tensors take Burn's path"
        );
    }
}
