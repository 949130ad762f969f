//! Rotary position embeddings in Hugging Face's rotate-half layout.
//!
//! HF Llama checkpoints rotate the pair `(x[i], x[i + d/2])`, not the
//! interleaved pairs `(x[2i], x[2i+1])` of Meta's layout (and of burn-nn's
//! `RotaryEncoding`). Positions come per batch row, so left-padded prompts get
//! the positions HF gives them (`cumsum(mask) - 1`).

use burn::tensor::{backend::Backend, ElementConversion, Int, Tensor, TensorData};

use crate::config::{LlamaConfig, RopeScaling};

/// Inverse frequencies of one head, with the configured scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct RotaryEmbedding {
    head_dim: usize,
    theta: f64,
    scaling: Option<RopeScaling>,
}

impl RotaryEmbedding {
    /// The rotary embedding a configuration implies.
    pub fn new(config: &LlamaConfig) -> Self {
        Self {
            head_dim: config.head_dim,
            theta: config.rope_theta,
            scaling: config.rope_scaling.clone(),
        }
    }

    /// Inverse frequencies (`head_dim / 2` values) for a forward pass whose
    /// largest position is `seq_len - 1` (only dynamic NTK depends on it).
    pub fn inv_freq(&self, seq_len: usize) -> Vec<f32> {
        let dim = self.head_dim;
        let base_inv = |base: f64| -> Vec<f64> {
            (0..dim / 2)
                .map(|i| {
                    // HF computes the exponent in f32: arange(0, dim, 2).float() / dim.
                    let e = ((2 * i) as f32 / dim as f32) as f64;
                    1.0 / base.powf(e)
                })
                .collect()
        };
        let inv: Vec<f64> = match &self.scaling {
            None => base_inv(self.theta),
            Some(RopeScaling::Linear { factor }) => base_inv(self.theta)
                .into_iter()
                .map(|f| f / factor)
                .collect(),
            Some(RopeScaling::DynamicNtk {
                factor,
                original_max_position_embeddings: orig,
            }) => {
                if seq_len > *orig {
                    let seq = seq_len as f64;
                    let orig = *orig as f64;
                    let base = self.theta
                        * ((factor * seq / orig) - (factor - 1.0))
                            .powf(dim as f64 / (dim as f64 - 2.0));
                    base_inv(base)
                } else {
                    base_inv(self.theta)
                }
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let old = *original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base_inv(self.theta)
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen > low_wavelen {
                            f / factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        inv.into_iter().map(|x| x as f32).collect()
    }

    /// `cos` and `sin` tables for `positions` `[batch, seq]`, each
    /// `[batch, 1, seq, head_dim]` (broadcast over heads).
    pub fn cos_sin<B: Backend>(
        &self,
        positions: Tensor<B, 2, Int>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, s] = positions.dims();
        let device = positions.device();
        let seq_len = match self.scaling {
            Some(RopeScaling::DynamicNtk { .. }) => {
                let max: i64 = positions.clone().max().into_scalar().elem();
                max.max(0) as usize + 1
            }
            _ => 0,
        };
        let inv = self.inv_freq(seq_len);
        let half = inv.len();
        let inv =
            Tensor::<B, 1>::from_data(TensorData::new(inv, [half]), &device).reshape([1, 1, half]);
        let freqs = positions.float().reshape([b, s, 1]).mul(inv); // [b, s, d/2]
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).reshape([b, 1, s, 2 * half]);
        (emb.clone().cos(), emb.sin())
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]` by the tables of [`Self::cos_sin`].
    pub fn apply<B: Backend>(
        x: Tensor<B, 4>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let [b, h, s, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let cos = cos.clone().expand([b, h, s, d]);
        let sin = sin.clone().expand([b, h, s, d]);
        x.mul(cos).add(rotated.mul(sin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn default_inv_freq_matches_formula() {
        let r = RotaryEmbedding::new(&LlamaConfig::tiny());
        let inv = r.inv_freq(1);
        assert_eq!(inv.len(), 4);
        assert_eq!(inv[0], 1.0);
        assert!((inv[1] - 10000f32.powf(-0.25)).abs() < 1e-7);
    }

    #[test]
    fn llama3_keeps_high_and_scales_low_frequencies() {
        let cfg = LlamaConfig {
            head_dim: 128,
            rope_theta: 500_000.0,
            rope_scaling: Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            ..LlamaConfig::tiny()
        };
        let scaled = RotaryEmbedding::new(&cfg).inv_freq(1);
        let plain = RotaryEmbedding::new(&LlamaConfig {
            rope_scaling: None,
            ..cfg
        })
        .inv_freq(1);
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[63] - plain[63] / 8.0).abs() < 1e-12);
    }

    #[test]
    fn position_zero_is_identity() {
        let device = Default::default();
        let r = RotaryEmbedding::new(&LlamaConfig::tiny());
        let pos =
            Tensor::<NdArray, 2, Int>::from_data(TensorData::new(vec![0i64], [1, 1]), &device);
        let (cos, sin) = r.cos_sin(pos);
        let x = Tensor::<NdArray, 4>::random(
            [1, 2, 1, 8],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let y = RotaryEmbedding::apply(x.clone(), &cos, &sin);
        x.into_data()
            .assert_approx_eq::<f32>(&y.into_data(), burn::tensor::Tolerance::default());
    }
}
