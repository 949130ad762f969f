//! A CPU fast path for the dense projections on burn-ndarray.
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
//! [`linear`] computes `x · W` straight from the tensors' memory when the
//! backend is burn-ndarray with f32 tensors: a matrix–vector kernel for a
//! few rows (decoding: each weight read once, split over the rayon threads)
//! and ndarray's matrix product on the original strides for more rows
//! (prefill: no copies; matrixmultiply's kernels). Any other backend — including `Autodiff<NdArray>`
//! used for training, whose tensors are not `NdArrayTensor`s — and any
//! other dtype takes Burn's generic `linear`, so the model stays generic
//! and differentiable.

use std::any::{Any, TypeId};
use std::borrow::Cow;

use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Ix2};
use rayon::prelude::*;

use crate::model::LinearWeight;

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
    let dims = x.dims();
    let (k, n) = (dims[D - 1], w.dims()[1]);
    let m = dims[..D - 1].iter().product::<usize>();
    let mut out = dims;
    out[D - 1] = n;
    x.reshape([m, k]).matmul(w).reshape(out)
}

/// `weight.forward(x)`, through [`linear`] for a dense weight.
pub(crate) fn project<B: Backend, const D: usize>(
    weight: &LinearWeight<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    match weight {
        LinearWeight::Dense(w) => linear(x, w.val()),
        other => other.forward(x),
    }
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
    if B::ad_enabled(&gate.device()) {
        burn::tensor::activation::silu(gate).mul(up)
    } else {
        gate.clone().div(gate.neg().exp().add_scalar(1.0)).mul(up)
    }
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
        // ndarray's product (matrixmultiply) on the original strides.
        let x2 = ArrayView2::from_shape((m, k), &xs[..]).ok()?;
        let w2 = wv.into_dimensionality::<Ix2>().ok()?;
        let mut y2 = ArrayViewMut2::from_shape((m, n), &mut out[..]).ok()?;
        general_mat_mul(1.0, &x2, &w2, 0.0, &mut y2);
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
    const LANES: usize = 16;
    let bw = j1 - j0;
    for j in j0..j1 {
        let wj = &wt[j * k..(j + 1) * k];
        for r in 0..m {
            let xr = &x[r * k..(r + 1) * k];
            let mut lanes = [0f32; LANES];
            let (xc, wc) = (xr.chunks_exact(LANES), wj.chunks_exact(LANES));
            let (xt, wtail) = (xc.remainder(), wc.remainder());
            for (xa, wa) in xc.zip(wc) {
                for l in 0..LANES {
                    lanes[l] = madd::<FMA>(xa[l], wa[l], lanes[l]);
                }
            }
            let mut s: f32 = lanes.iter().sum();
            for (&a, &b) in xt.iter().zip(wtail) {
                s = madd::<FMA>(a, b, s);
            }
            acc[r * bw + (j - j0)] = s;
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
