//! Batches for causal-LM training: right-padded inputs, shifted targets and
//! per-token loss weights.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::data::TokenizedExample;

/// One micro-batch on the device.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// `[b, L-1]`: tokens `0..L-1` of each (right-padded) sequence.
    pub inputs: Tensor<B, 2, Int>,
    /// `[b, L-1]`: tokens `1..L`, what each position predicts.
    pub targets: Tensor<B, 2, Int>,
    /// `[b, L-1]`: 1 where the prediction counts in the loss, else 0
    /// (prompt tokens, padding).
    pub weights: Tensor<B, 2>,
    /// Tokens that carry loss.
    pub loss_tokens: usize,
    /// Real (non-padding) input tokens.
    pub input_tokens: usize,
}

/// Right-pads `examples` to the longest and shifts by one. Right padding
/// needs no attention mask: under the causal mask no real token attends to
/// the padding after it, and padded positions have weight 0.
pub fn collate<B: Backend>(
    examples: &[&TokenizedExample],
    pad_id: u32,
    device: &B::Device,
) -> Batch<B> {
    let b = examples.len();
    let len = examples
        .iter()
        .map(|e| e.ids.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let width = len - 1;
    let mut inputs = vec![pad_id as i64; b * width];
    let mut targets = vec![pad_id as i64; b * width];
    let mut weights = vec![0f32; b * width];
    let (mut loss_tokens, mut input_tokens) = (0, 0);
    for (row, e) in examples.iter().enumerate() {
        let n = e.ids.len();
        for j in 0..n.saturating_sub(1) {
            inputs[row * width + j] = e.ids[j] as i64;
            targets[row * width + j] = e.ids[j + 1] as i64;
            if e.targets[j + 1] {
                weights[row * width + j] = 1.0;
                loss_tokens += 1;
            }
        }
        input_tokens += n.saturating_sub(1);
    }
    Batch {
        inputs: Tensor::from_data(TensorData::new(inputs, [b, width]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, width]), device),
        weights: Tensor::from_data(TensorData::new(weights, [b, width]), device),
        loss_tokens,
        input_tokens,
    }
}
