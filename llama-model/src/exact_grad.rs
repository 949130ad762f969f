//! Division, softmax and log-softmax whose gradients are exact and
//! reproducible on burn-ndarray.
//!
//! Burn 0.21's autodiff computes the gradient of `a / b` (for `a`) as
//! `grad · recip(b)` and that of `log(x)` as `grad · recip(x)`, and
//! burn-ndarray's `recip` runs `_mm512_rcp14_ps` / `_mm256_rcp_ps` — an
//! *approximate* reciprocal (relative error up to 2⁻¹⁴ resp. 1.5·2⁻¹²) — on the
//! SIMD-aligned middle of the buffer and an exact `1 / x` on the unaligned
//! head and tail. Which elements get which depends on the buffer's address,
//! so two identical training runs gave different gradients (issue 14: same
//! seed, different fine-tunes, samples and log-likelihoods), and every
//! gradient through RMSNorm, attention's softmax and the cross-entropy was
//! off by up to ~6e-5 relative.
//!
//! Under autodiff the functions here build the same values from operations
//! whose gradients burn computes with exact divisions (`1 / b` as
//! `ones / b`, whose gradient is `−ones / b²`) and plain products; without
//! autodiff they are burn's own operations, so inference is unchanged.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// `1 / x` (under autodiff: `ones / x`, whose gradient `−1 / x²` burn
/// computes with an exact division; `x.recip()`'s would use `recip` again).
pub fn recip<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if B::ad_enabled(&x.device()) {
        x.ones_like().div(x)
    } else {
        x.recip()
    }
}

/// `a / b` with broadcasting (under autodiff `a · (1 / b)`, see [`recip`]:
/// within one rounding of `a / b`, with an exact gradient for both).
pub fn div<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if B::ad_enabled(&a.device()) {
        a.mul(recip(b))
    } else {
        a.div(b)
    }
}

/// `ln x` whose gradient is `grad / x` by an exact division. The value is
/// `ln(x)` exactly: under autodiff `ln(x̄) + (x − x̄) · (1 / x̄)` with `x̄`
/// the detached `x`, where `x − x̄` is exactly zero.
pub fn ln<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if !B::ad_enabled(&x.device()) {
        return x.log();
    }
    let fixed = x.clone().detach();
    let slope = fixed.ones_like().div(fixed.clone());
    fixed.clone().log().add(x.sub(fixed).mul(slope))
}

/// `softmax(x)` along `dim` (max-shifted, as burn's), normalized through
/// [`recip`] under autodiff.
pub fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    if !B::ad_enabled(&x.device()) {
        return burn::tensor::activation::softmax(x, dim);
    }
    let max = x.clone().detach().max_dim(dim);
    let e = x.sub(max).exp();
    let sum = e.clone().sum_dim(dim);
    e.mul(recip(sum))
}

/// `log_softmax(x)` along `dim` (max-shifted log-sum-exp, as burn's), its
/// logarithm through [`ln`] under autodiff.
pub fn log_softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    if !B::ad_enabled(&x.device()) {
        return burn::tensor::activation::log_softmax(x, dim);
    }
    let max = x.clone().detach().max_dim(dim);
    let shifted = x.sub(max);
    let sum = shifted.clone().exp().sum_dim(dim);
    shifted.sub(ln(sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Distribution, TensorData};

    type Inner = NdArray<f32>;
    type Ad = Autodiff<Inner>;

    fn inputs() -> (Tensor<Inner, 3>, Tensor<Inner, 3>) {
        let device = Default::default();
        // Sizes that are not multiples of a SIMD width, so the buffers
        // have unaligned heads and tails.
        let x = Tensor::<Inner, 3>::random([3, 37, 61], Distribution::Normal(0.0, 2.0), &device);
        let w = Tensor::<Inner, 3>::random([3, 37, 61], Distribution::Normal(0.0, 1.0), &device);
        (x, w)
    }

    fn values(t: Tensor<Inner, 3>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// A function of one autodiff tensor.
    type AdFn = dyn Fn(Tensor<Ad, 3>) -> Tensor<Ad, 3>;

    /// The gradient of `Σ w · f(x)` with respect to `x`.
    fn grad(f: &AdFn, x: &Tensor<Inner, 3>, w: &Tensor<Inner, 3>) -> Vec<f32> {
        let x = Tensor::<Ad, 3>::from_inner(x.clone()).require_grad();
        let loss = f(x.clone()).mul(Tensor::from_inner(w.clone())).sum();
        values(x.grad(&loss.backward()).unwrap())
    }

    /// Bit for bit the same gradient on every evaluation, whatever address
    /// the allocator hands out (the allocations in between move them), and
    /// equal to the analytic gradient in f64 to f32 rounding — burn's own
    /// log-softmax gradient is off by the approximate reciprocal.
    #[test]
    fn gradients_are_reproducible_and_exact() {
        let (x, w) = inputs();
        let (xs, ws) = (values(x.clone()), values(w.clone()));
        let cases: [(&str, &AdFn); 3] = [
            ("log_softmax", &|x| log_softmax(x, 2)),
            ("softmax", &|x| softmax(x, 2)),
            ("div by rms", &|x: Tensor<Ad, 3>| {
                let rms = x.clone().square().mean_dim(2).add_scalar(1e-5).sqrt();
                div(x, rms)
            }),
        ];
        for (name, f) in cases {
            let first = grad(f, &x, &w);
            for _ in 0..8 {
                // Shift the allocator's next addresses by an odd amount.
                let _pad = Vec::<u8>::with_capacity(4 * 7 + 4);
                let again = grad(f, &x, &w);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&first), bits(&again), "{name}: gradient changed");
            }
            if name == "log_softmax" {
                // d/dx_j Σ_i w_i (x_i − lse) = w_j − softmax_j · Σ_i w_i.
                let n = 61;
                for (r, (xr, wr)) in xs.chunks(n).zip(ws.chunks(n)).enumerate() {
                    let m = xr.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                    let z: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
                    let sw: f64 = wr.iter().map(|&v| v as f64).sum();
                    let sw_abs: f64 = wr.iter().map(|&v| (v as f64).abs()).sum();
                    for j in 0..n {
                        let want = wr[j] as f64 - (xr[j] as f64 - m).exp() / z * sw;
                        let got = first[r * n + j] as f64;
                        // f32 rounding of the exact formula (Σ w in f32
                        // errs by ~ε·Σ|w|).
                        let p = (xr[j] as f64 - m).exp() / z;
                        let scale = (wr[j] as f64).abs() + p * sw_abs;
                        assert!(
                            (got - want).abs() <= 4e-6 * scale + 1e-9,
                            "row {r} col {j}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Without autodiff these are burn's operations; with it, the same
    /// values (to one rounding for the division).
    #[test]
    fn values_match_burn() {
        let (x, _) = inputs();
        let plain = values(burn::tensor::activation::log_softmax(x.clone(), 2));
        assert_eq!(values(log_softmax(x.clone(), 2)), plain);
        let ad = values(log_softmax(Tensor::<Ad, 3>::from_inner(x.clone()), 2).inner());
        for (a, b) in ad.iter().zip(&plain) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
        let sm = values(burn::tensor::activation::softmax(x.clone(), 2));
        let ad = values(softmax(Tensor::<Ad, 3>::from_inner(x.clone()), 2).inner());
        for (a, b) in ad.iter().zip(&sm) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-30), "{a} vs {b}");
        }
        let device = Default::default();
        let y = Tensor::<Ad, 1>::from_data(TensorData::from([2.0f32, 4.0, 8.0]), &device);
        assert_eq!(
            recip(y).inner().into_data().to_vec::<f32>().unwrap(),
            vec![0.5, 0.25, 0.125]
        );
    }
}
