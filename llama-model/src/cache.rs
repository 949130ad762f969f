//! [`KvCache`]: keys and values of the tokens seen so far, per layer, plus
//! their padding mask, so that a decode step only computes the new token.
//!
//! Each layer's keys and values live in a buffer with room for more
//! positions than are filled; a step writes its new positions in place
//! (`slice_assign`, which the CPU and GPU backends do without copying when
//! the cache holds the only reference) and attention reads the filled part
//! (`narrow`, a view). [`KvCache::with_capacity`] sizes the buffers once
//! (generation knows prompt length + token budget); without a capacity, or
//! when it runs out, a buffer grows geometrically, so appending stays
//! amortized O(new tokens) instead of copying the whole cache every step.

use burn::tensor::{backend::Backend, Int, Tensor};

/// One layer's keys and values, each `[b, kv_heads, capacity, head_dim]`
/// (keys already rotated); positions `0..len` are filled.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    len: usize,
}

impl<B: Backend> LayerCache<B> {
    /// Appends `k`, `v` (`[b, kv_heads, s, head_dim]`) to the cache in `slot`
    /// (created on first use, with room for at least `capacity` positions) and
    /// returns the keys and values of all cached positions, `[b, kv_heads, len + s, head_dim]`.
    pub(crate) fn append(
        slot: &mut Option<Self>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        capacity: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, kv, s, d] = k.dims();
        let mut layer = match slot.take() {
            Some(layer) => layer,
            None if capacity <= s => {
                // No room asked beyond this call: keep the tensors as they are.
                *slot = Some(Self {
                    keys: k.clone(),
                    values: v.clone(),
                    len: s,
                });
                return (k, v);
            }
            None => {
                let device = k.device();
                Self {
                    keys: Tensor::zeros([b, kv, capacity, d], &device),
                    values: Tensor::zeros([b, kv, capacity, d], &device),
                    len: 0,
                }
            }
        };
        let (start, end) = (layer.len, layer.len + s);
        let room = layer.keys.dims()[2];
        if end > room {
            // Grow (at least double), keeping the filled positions.
            let new_room = end.max(2 * room).max(capacity);
            let device = k.device();
            let grow = |old: Tensor<B, 4>| {
                Tensor::zeros([b, kv, new_room, d], &device)
                    .slice_assign([0..b, 0..kv, 0..start, 0..d], old.narrow(2, 0, start))
            };
            layer.keys = grow(layer.keys);
            layer.values = grow(layer.values);
        }
        layer.keys = layer.keys.slice_assign([0..b, 0..kv, start..end, 0..d], k);
        layer.values = layer
            .values
            .slice_assign([0..b, 0..kv, start..end, 0..d], v);
        layer.len = end;
        let out = (
            layer.keys.clone().narrow(2, 0, end),
            layer.values.clone().narrow(2, 0, end),
        );
        *slot = Some(layer);
        out
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers hold before they must grow.
    pub fn capacity(&self) -> usize {
        self.keys.dims()[2]
    }
}

/// One layer's place in a [`KvCache`], handed to
/// [`crate::model::Attention::forward`] for one call.
#[derive(Debug)]
pub struct LayerSlot<'a, B: Backend> {
    slot: &'a mut Option<LayerCache<B>>,
    capacity: usize,
}

impl<B: Backend> LayerSlot<'_, B> {
    /// Appends this call's keys and values (`[b, kv_heads, s, head_dim]`)
    /// and returns those of every cached position.
    pub fn append(self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        LayerCache::append(self.slot, k, v, self.capacity)
    }

    /// The layer's cache so far (`None` before the first call).
    pub fn get(&self) -> Option<&LayerCache<B>> {
        self.slot.as_ref()
    }
}

/// One [`LayerCache`] per layer, and the `[b, t]` attention mask of the cached tokens.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerCache<B>>>,
    mask: Option<Tensor<B, 2, Int>>,
    len: usize,
    capacity: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `num_layers` blocks; its buffers grow as needed.
    pub fn new(num_layers: usize) -> Self {
        Self::with_capacity(num_layers, 0)
    }

    /// An empty cache whose buffers are allocated once with room for
    /// `capacity` positions (prompt + new tokens), so no step copies the cache.
    pub fn with_capacity(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            mask: None,
            len: 0,
            capacity,
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

    /// The capacity asked for at construction (0: grow as needed).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Batch rows held (0 when empty).
    pub fn batch_size(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .next()
            .map_or(0, |l| l.keys.dims()[0])
    }

    /// The `[b, len]` mask of cached tokens (1 real, 0 padding); `None` when none is padded.
    pub fn mask(&self) -> Option<&Tensor<B, 2, Int>> {
        self.mask.as_ref()
    }

    /// Keeps only the given batch rows, in the given order (used to drop
    /// finished sequences during batched generation).
    pub fn select_rows(&mut self, rows: &[usize]) {
        let Some(device) = self.layers.iter().flatten().next().map(|l| l.keys.device()) else {
            return;
        };
        let idx = Tensor::<B, 1, Int>::from_data(
            burn::tensor::TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &device,
        );
        for l in self.layers.iter_mut().flatten() {
            l.keys = l.keys.clone().select(0, idx.clone());
            l.values = l.values.clone().select(0, idx.clone());
        }
        if let Some(m) = self.mask.as_mut() {
            *m = m.clone().select(0, idx);
        }
    }

    /// Layer `i`'s place in the cache. A caller that runs the layers itself
    /// (the serving engine) appends each layer's keys and values through it,
    /// then calls [`Self::finish_step`] once.
    pub fn layer_mut(&mut self, i: usize) -> LayerSlot<'_, B> {
        LayerSlot {
            slot: &mut self.layers[i],
            capacity: self.capacity,
        }
    }

    /// Records that `s` positions were appended to every layer; `full_mask`
    /// covers all `len + s` (`None`: no position is padding).
    pub fn finish_step(&mut self, s: usize, full_mask: Option<Tensor<B, 2, Int>>) {
        self.len += s;
        self.mask = full_mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, TensorData};

    type B = NdArray<f32>;

    /// Appending in steps gives the concatenation, with or without a
    /// capacity, and across growth.
    #[test]
    fn append_equals_concatenation() {
        let device = Default::default();
        let parts: Vec<Tensor<B, 4>> = [3usize, 1, 1, 4, 1]
            .iter()
            .map(|&s| Tensor::random([2, 3, s, 4], Distribution::Uniform(-1.0, 1.0), &device))
            .collect();
        let expected = Tensor::cat(parts.clone(), 2).into_data();
        for capacity in [0usize, 5, 10, 64] {
            let mut slot = None;
            let mut last = None;
            for p in &parts {
                last = Some(LayerCache::append(
                    &mut slot,
                    p.clone(),
                    p.clone().neg(),
                    capacity,
                ));
            }
            let (k, v) = last.unwrap();
            assert_eq!(k.dims(), [2, 3, 10, 4], "capacity {capacity}");
            k.into_data().assert_eq(&expected, true);
            v.neg().into_data().assert_eq(&expected, true);
            let layer = slot.unwrap();
            assert_eq!(layer.len(), 10);
            assert!(layer.capacity() >= 10);
        }
    }

    #[test]
    fn select_rows_keeps_the_chosen_rows() {
        let device = Default::default();
        let k = Tensor::<B, 4>::from_data(
            TensorData::new((0..8).map(|x| x as f32).collect::<Vec<_>>(), [2, 1, 2, 2]),
            &device,
        );
        let mut cache = KvCache::<B>::with_capacity(1, 6);
        cache.layer_mut(0).append(k.clone(), k.clone());
        cache.finish_step(2, None);
        cache.select_rows(&[1]);
        assert_eq!(cache.batch_size(), 1);
        let layer = cache.layers[0].as_ref().unwrap();
        let kept: Vec<f32> = layer
            .keys
            .clone()
            .narrow(2, 0, 2)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(kept, vec![4.0, 5.0, 6.0, 7.0]);
    }
}
