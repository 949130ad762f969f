//! [`KvCache`]: keys and values of the tokens seen so far, per layer, plus
//! their padding mask, so that a decode step only computes the new token.

use burn::tensor::{backend::Backend, Int, Tensor};

/// One `(keys, values)` pair per layer, each `[b, kv_heads, t, head_dim]`
/// (keys already rotated), and the `[b, t]` attention mask of those tokens.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    mask: Option<Tensor<B, 2, Int>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` blocks.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            mask: None,
            len: 0,
        }
    }

    /// Number of cached positions (padding included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batch rows held (0 when empty).
    pub fn batch_size(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .next()
            .map_or(0, |(k, _)| k.dims()[0])
    }

    /// The `[b, len]` mask of cached tokens (1 real, 0 padding); `None` when none is padded.
    pub fn mask(&self) -> Option<&Tensor<B, 2, Int>> {
        self.mask.as_ref()
    }

    /// Keeps only the given batch rows, in the given order (used to drop
    /// finished sequences during batched generation).
    pub fn select_rows(&mut self, rows: &[usize]) {
        let Some(device) = self.layers.iter().flatten().next().map(|(k, _)| k.device()) else {
            return;
        };
        let idx = Tensor::<B, 1, Int>::from_data(
            burn::tensor::TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &device,
        );
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, idx.clone());
            *v = v.clone().select(0, idx.clone());
        }
        if let Some(m) = self.mask.as_mut() {
            *m = m.clone().select(0, idx);
        }
    }

    pub(crate) fn layer_mut(&mut self, i: usize) -> &mut Option<(Tensor<B, 4>, Tensor<B, 4>)> {
        &mut self.layers[i]
    }

    /// Records that `s` positions were appended; `full_mask` covers all `len + s`.
    pub(crate) fn finish_step(&mut self, s: usize, full_mask: Option<Tensor<B, 2, Int>>) {
        self.len += s;
        self.mask = full_mask;
    }
}
