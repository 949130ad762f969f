//! The forward pass's hot operations — `x · W`, SwiGLU, attention — with a
//! CPU fast path for burn-ndarray behind the `fastpath` cargo feature (on
//! by default).
//!
//! With the feature, the `cpu` submodule computes these straight from burn-ndarray's
//! f32 buffers (no operand copies, a matrix–vector kernel for decoding,
//! one pass for SwiGLU and attention) whenever the tensors *are* plain
//! burn-ndarray f32 tensors; every other tensor (another backend,
//! `Autodiff<NdArray>` in training) takes the generic Burn operations
//! below. Both paths compute the same function (the tests compare them on
//! whole models, within f32 rounding); the feature only trades compile
//! time and dependencies (ndarray, matrixmultiply, gemm, rayon) for CPU
//! speed. Without it every backend, burn-ndarray included, runs the
//! generic operations. [`ENABLED`] says which build this is.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::model::LinearWeight;

#[cfg(feature = "fastpath")]
pub(crate) mod cpu;

#[cfg(feature = "fastpath")]
pub(crate) use cpu::{attention, in_pool, linear, swiglu};

/// Whether this build has the burn-ndarray fast path (cargo feature
/// `fastpath` of `llama-model`).
pub const ENABLED: bool = cfg!(feature = "fastpath");

/// `x · W` for `x` `[..., in]` and `W` `[in, out]` as a two-dimensional
/// `matmul` of the flattened rows: `linear` would reshape the weight to
/// `[1, …, in, out]`, which copies a transposed weight (the tied LM head)
/// on burn-flex and CUDA, and copies any weight on burn-ndarray.
pub(crate) fn generic_linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let (k, n) = (dims[D - 1], w.dims()[1]);
    let m = dims[..D - 1].iter().product::<usize>();
    let mut out = dims;
    out[D - 1] = n;
    x.reshape([m, k]).matmul(w).reshape(out)
}

/// `silu(gate) · up`: without autodiff `g / (1 + e^(−g)) · u` (one
/// exponential, where Burn's `sigmoid` takes two and a logarithm); under
/// autodiff Burn's `silu`, whose gradient is safe for any input.
pub(crate) fn generic_swiglu<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    if B::ad_enabled(&gate.device()) {
        burn::tensor::activation::silu(gate).mul(up)
    } else {
        gate.clone().div(gate.neg().exp().add_scalar(1.0)).mul(up)
    }
}

/// `x · W` (see [`generic_linear`]).
#[cfg(not(feature = "fastpath"))]
pub(crate) fn linear<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    generic_linear(x, w)
}

/// SwiGLU (see [`generic_swiglu`]).
#[cfg(not(feature = "fastpath"))]
pub(crate) fn swiglu<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    generic_swiglu(gate, up)
}

/// Fused attention exists only in the fast path: `None` tells the caller
/// to run Burn's operations.
#[cfg(not(feature = "fastpath"))]
pub(crate) fn attention<B: Backend>(
    _q: &Tensor<B, 4>,
    _k: &Tensor<B, 4>,
    _v: &Tensor<B, 4>,
    _mask: Option<&Tensor<B, 4, burn::tensor::Bool>>,
) -> Option<Tensor<B, 3>> {
    None
}

/// Runs `f` in place (the fast path runs it on a rayon thread).
#[cfg(not(feature = "fastpath"))]
pub(crate) fn in_pool<B: Backend, R: Send>(f: impl FnOnce() -> R + Send) -> R {
    f()
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
