//! Losses: token cross-entropy under a weight mask, logit MSE.

use crate::exact_grad::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// `Σ w·(−log p(target)) / normalizer` over `[b, s]` positions (its
/// log-softmax from [`crate::exact_grad`], so the gradient is exact and
/// reproducible).
///
/// With gradient accumulation the normalizer is the number of loss tokens
/// in the whole optimizer step (not in the micro-batch), so that the summed
/// gradients equal those of one large batch — what transformers ≥ 4.46 does
/// with `num_items_in_batch`.
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
    normalizer: f64,
) -> Tensor<B, 1> {
    let [b, s, _] = logits.dims();
    let logp = log_softmax(logits, 2);
    let picked = logp.gather(2, targets.reshape([b, s, 1])).reshape([b, s]);
    picked
        .mul(weights)
        .sum()
        .neg()
        .div_scalar(normalizer.max(1.0))
}

/// Mean squared error between two logit tensors (BitDelta's distillation loss).
pub fn logit_mse<B: Backend, const D: usize>(
    student: Tensor<B, D>,
    teacher: Tensor<B, D>,
) -> Tensor<B, 1> {
    student.sub(teacher).square().mean()
}
