//! The Llama decoder, top to bottom: linear weights → RMSNorm → attention →
//! MLP → block → model (forward with left padding, KV cache and hidden-state
//! capture).
//!
//! Shapes: `b` batch, `s` new tokens, `t` keys (cached + new), `h` query
//! heads, `kv` key/value heads, `d` head width. Linear weights are stored
//! `[in, out]` (Burn's convention); Hugging Face stores `[out, in]`.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::module::embedding;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cache::{KvCache, LayerSlot};
use crate::config::LlamaConfig;
use crate::error::InputError;
use crate::fastpath::{self, project};
use crate::rope::RotaryEmbedding;

// ---------------------------------------------------------------------------
// Linear weights
// ---------------------------------------------------------------------------

/// The weight of one projection (`q_proj`, …, `down_proj`, `lm_head`).
///
/// The default is [`LinearWeight::Dense`]: a fine-tuning delta is merged into
/// the weight when the model is loaded (`W = W_base + Δ̂`, see
/// [`crate::load::DeltaApplied`]). The other variants keep `W_base` and a
/// compressed `Δ̂` apart and compute `x·W_base + x·Δ̂` without materializing
/// the sum; their delta parameters are `Param`s, so they can be trained with
/// the base frozen (BitDelta's scale distillation).
#[derive(Module, Debug)]
pub enum LinearWeight<B: Backend> {
    /// A dense `[in, out]` matrix.
    Dense(Param<Tensor<B, 2>>),
    /// `W_base + α·sign` (BitDelta).
    SignDelta(SignDelta<B>),
    /// `W_base + down·up` (low-rank delta).
    LowRankDelta(LowRankDelta<B>),
    /// `W_base + (α/r)·A·B` with trainable adapters (LoRA); see
    /// [`crate::train`].
    Lora(LoraDelta<B>),
}

/// A LoRA adapter next to a frozen base: `x·W_base + (α/r)·dropout(x)·A·B`
/// (Hu et al. 2021, as PEFT computes it: `A` Kaiming-uniform, `B` zero, so a
/// fresh adapter leaves the model unchanged).
#[derive(Module, Debug)]
pub struct LoraDelta<B: Backend> {
    /// `[in, out]` base weight (frozen while training).
    pub base: Param<Tensor<B, 2>>,
    /// `[in, r]` (PEFT's `lora_A` transposed).
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out]` (PEFT's `lora_B` transposed).
    pub b: Param<Tensor<B, 2>>,
    /// `α / r`.
    #[module(skip)]
    pub scaling: f64,
    /// Dropout probability on the adapter's input (training only).
    #[module(skip)]
    pub dropout: f64,
}

/// `W_base + Σ_k α_k ⊙ S_k`: `K` sign masks `S_k ∈ {−1, +1}`, each with its
/// own scale — one per matrix, or one per output feature (BitDelta's
/// per-row mode). `K = 1` is BitDelta (Liu et al. 2024, arXiv 2402.10193),
/// `K > 1` multi-mask BitDelta (delta-quant's `multimask`: each mask fits the
/// residual of the ones before it).
///
/// The signs are constants, never trained; `base` and `scale` are `Param`s,
/// so scale distillation ([`crate::heal`]) trains `scale` with `base` frozen.
#[derive(Module, Debug)]
pub struct SignDelta<B: Backend> {
    /// `[in, out]` base weight.
    pub base: Param<Tensor<B, 2>>,
    /// `[K, in, out]` signs (±1), a constant.
    pub sign: Tensor<B, 3>,
    /// `[K, 1]` (one scale per mask) or `[K, out]` (one per output feature,
    /// i.e. per row of HF's `[out, in]` matrix).
    pub scale: Param<Tensor<B, 2>>,
}

impl<B: Backend> SignDelta<B> {
    /// Number of masks `K`.
    pub fn num_masks(&self) -> usize {
        self.sign.dims()[0]
    }

    /// Whether each mask has one scale per output feature (rather than one).
    pub fn per_row(&self) -> bool {
        self.scale.val().dims()[1] != 1
    }

    /// `Δ̂ = Σ_k α_k ⊙ S_k` as an `[in, out]` matrix.
    pub fn delta(&self) -> Tensor<B, 2> {
        let [k, in_f, out_f] = self.sign.dims();
        let n = self.scale.val().dims()[1];
        self.sign
            .clone()
            .mul(self.scale.val().reshape([k, 1, n]))
            .sum_dim(0)
            .reshape([in_f, out_f])
    }

    /// The current scales, one `Vec` per mask (1 value, or one per output
    /// feature in HF row order).
    pub fn scales(&self) -> Vec<Vec<f32>> {
        let [k, n] = self.scale.val().dims();
        let flat: Vec<f32> = self
            .scale
            .val()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        if flat.len() != k * n {
            return vec![Vec::new(); k];
        }
        flat.chunks(n.max(1)).map(<[f32]>::to_vec).collect()
    }
}

/// `W_base + down·up` with `down` `[in, r]` and `up` `[r, out]`.
#[derive(Module, Debug)]
pub struct LowRankDelta<B: Backend> {
    /// `[in, out]` base weight.
    pub base: Param<Tensor<B, 2>>,
    /// `[in, r]`.
    pub down: Param<Tensor<B, 2>>,
    /// `[r, out]`.
    pub up: Param<Tensor<B, 2>>,
}

impl<B: Backend> LinearWeight<B> {
    /// A dense weight from a Hugging Face `[out, in]` row-major matrix.
    pub fn from_hf(
        data: &[f32],
        out_features: usize,
        in_features: usize,
        device: &B::Device,
    ) -> Self {
        Self::Dense(Param::from_tensor(hf_matrix(
            data,
            out_features,
            in_features,
            device,
        )))
    }

    /// Keeps this (dense) weight as the base and adds a BitDelta term
    /// `α·sign`, `sign_hf` in HF's `[out, in]` layout (values ±1; 0 counts as +1).
    ///
    /// # Panics
    /// If `sign_hf` does not hold `out · in` values.
    pub fn with_sign_delta(self, sign_hf: &[f32], scale: f32) -> Self {
        self.with_sign_masks(&[(sign_hf, &[scale])])
    }

    /// Keeps this (dense) weight as the base and adds `K` sign masks with
    /// their scales (multi-mask BitDelta): each entry of `masks` is
    /// `(signs, scales)`, signs in HF's `[out, in]` layout (values ±1; 0
    /// counts as +1) and either one scale or one per output feature (HF row).
    /// Every mask must have the same number of scales.
    ///
    /// # Panics
    /// If `masks` is empty, a mask does not hold `out · in` values, or the
    /// scale counts are not all 1 or all `out`.
    pub fn with_sign_masks(self, masks: &[(&[f32], &[f32])]) -> Self {
        assert!(!masks.is_empty(), "need at least one sign mask");
        let base = self.dense();
        let [in_f, out_f] = base.dims();
        let device = base.device();
        let n = masks[0].1.len();
        assert!(
            n == 1 || n == out_f,
            "{n} scales for {out_f} output features (need 1 or {out_f})"
        );
        let mut signs = Vec::with_capacity(masks.len() * in_f * out_f);
        let mut scales = Vec::with_capacity(masks.len() * n);
        for (sign_hf, scale) in masks {
            assert_eq!(sign_hf.len(), out_f * in_f, "sign mask length");
            assert_eq!(scale.len(), n, "every mask needs the same number of scales");
            let pm: Vec<f32> = sign_hf
                .iter()
                .map(|&x| if x < 0.0 { -1.0 } else { 1.0 })
                .collect();
            signs.extend(transpose(&pm, out_f, in_f));
            scales.extend_from_slice(scale);
        }
        let k = masks.len();
        Self::SignDelta(SignDelta {
            base: Param::from_tensor(base),
            sign: Tensor::from_data(TensorData::new(signs, [k, in_f, out_f]), &device),
            scale: Param::from_tensor(Tensor::from_data(TensorData::new(scales, [k, n]), &device)),
        })
    }

    /// Keeps this (dense) weight as the base and adds a low-rank delta
    /// `Δ̂ = U·V` given in HF's layout: `u` `[out, r]`, `v` `[r, in]` (so that
    /// `Δ̂_hf = u·v`).
    pub fn with_low_rank_delta(self, u: &[f32], v: &[f32], rank: usize) -> Self {
        let base = self.dense();
        let [in_f, out_f] = base.dims();
        let device = base.device();
        // x·Δ̂ᵀ = (x·vᵀ)·uᵀ: down = vᵀ [in, r], up = uᵀ [r, out].
        Self::LowRankDelta(LowRankDelta {
            base: Param::from_tensor(base),
            down: Param::from_tensor(hf_matrix(v, rank, in_f, &device)),
            up: Param::from_tensor(hf_matrix(u, out_f, rank, &device)),
        })
    }

    /// `x · W` for `x` `[..., in]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Dense(w) => fastpath::linear(x, w.val()),
            // One matmul with the materialized `W_base + Δ̂` is cheaper than
            // K + 1 (forward and backward) for any batch of more than a few
            // tokens, and the scales' gradient is then `Σ S_k ⊙ ∂W`.
            Self::SignDelta(d) => fastpath::linear(x, d.base.val().add(d.delta())),
            Self::LowRankDelta(d) => {
                let delta = fastpath::linear(fastpath::linear(x.clone(), d.down.val()), d.up.val());
                fastpath::linear(x, d.base.val()).add(delta)
            }
            Self::Lora(d) => {
                // Dropout only acts on an autodiff backend (training).
                let xd = if d.dropout > 0.0 && B::ad_enabled(&x.device()) {
                    burn::nn::DropoutConfig::new(d.dropout)
                        .init()
                        .forward(x.clone())
                } else {
                    x.clone()
                };
                let delta = fastpath::linear(fastpath::linear(xd, d.a.val()), d.b.val())
                    .mul_scalar(d.scaling);
                fastpath::linear(x, d.base.val()).add(delta)
            }
        }
    }

    /// The effective `[in, out]` matrix (materialized for delta variants).
    pub fn dense(&self) -> Tensor<B, 2> {
        match self {
            Self::Dense(w) => w.val(),
            Self::SignDelta(d) => d.base.val().add(d.delta()),
            Self::LowRankDelta(d) => d.base.val().add(d.down.val().matmul(d.up.val())),
            Self::Lora(d) => d
                .base
                .val()
                .add(d.a.val().matmul(d.b.val()).mul_scalar(d.scaling)),
        }
    }

    /// `[in, out]` dimensions.
    pub fn dims(&self) -> [usize; 2] {
        match self {
            Self::Dense(w) => w.val().dims(),
            Self::SignDelta(d) => d.base.val().dims(),
            Self::LowRankDelta(d) => d.base.val().dims(),
            Self::Lora(d) => d.base.val().dims(),
        }
    }
}

/// A `[in, out]` tensor from a HF `[out, in]` row-major matrix.
fn hf_matrix<B: Backend>(
    data: &[f32],
    out_f: usize,
    in_f: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    assert_eq!(data.len(), out_f * in_f, "matrix length");
    Tensor::from_data(
        TensorData::new(transpose(data, out_f, in_f), [in_f, out_f]),
        device,
    )
}

/// Transposes a row-major `[rows, cols]` matrix.
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    for r in 0..rows {
        let row = &data[r * cols..(r + 1) * cols];
        for (c, &x) in row.iter().enumerate() {
            out[c * rows + r] = x;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// RMSNorm
// ---------------------------------------------------------------------------

/// `x / sqrt(mean(x²) + ε) · γ`, as HF's `LlamaRMSNorm`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// γ, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// ε.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Normalizes over the last dimension of `[b, s, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [_, _, n] = x.dims();
        let rms = x.clone().square().mean_dim(2).add_scalar(self.eps).sqrt();
        crate::exact_grad::div(x, rms).mul(self.weight.val().reshape([1, 1, n]))
    }
}

// ---------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------

/// Grouped-query self-attention with rotary positions.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[hidden, heads·d]`.
    pub q_proj: LinearWeight<B>,
    /// `[hidden, kv·d]`.
    pub k_proj: LinearWeight<B>,
    /// `[hidden, kv·d]`.
    pub v_proj: LinearWeight<B>,
    /// `[heads·d, hidden]`.
    pub o_proj: LinearWeight<B>,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Head width.
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// `x` `[b, s, hidden]`; `mask` `[b, 1, s, t]`, true where a key must be
    /// ignored; `cache` the layer's place in a [`KvCache`]: its past
    /// keys/values, to which this call's are appended.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: Option<&Tensor<B, 4, Bool>>,
        cache: Option<LayerSlot<'_, B>>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (h, kv, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let q = project(&self.q_proj, x.clone())
            .reshape([b, s, h, d])
            .swap_dims(1, 2);
        let k = project(&self.k_proj, x.clone())
            .reshape([b, s, kv, d])
            .swap_dims(1, 2);
        let v = project(&self.v_proj, x)
            .reshape([b, s, kv, d])
            .swap_dims(1, 2);
        let q = RotaryEmbedding::apply(q, cos, sin);
        let k = RotaryEmbedding::apply(k, cos, sin);

        let (k, v) = match cache {
            Some(slot) => slot.append(k, v),
            None => (k, v),
        };
        project(&self.o_proj, attend(q, k, v, mask))
    }
}

/// Scaled dot-product attention of queries `q` `[b, h, s, d]` over keys and
/// values `k`, `v` `[b, kv, t, d]` (grouped: query head `i` reads key/value
/// head `i / (h / kv)`); `mask` `[b, 1, s, t]`, true where a key is ignored.
/// Returns `[b, s, h·d]`, the layout the output projection reads.
///
/// The fast path (feature `fastpath`, burn-ndarray f32) runs it in one pass
/// per head; every other tensor takes Burn's operations. Used by
/// [`Attention::forward`] and by callers that keep their own caches (the
/// serving engine), so both compute the same function.
pub fn attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4, Bool>>,
) -> Tensor<B, 3> {
    if let Some(out) = fastpath::attention(&q, &k, &v, mask) {
        return out;
    }
    let [b, h, s, d] = q.dims();
    let kv = k.dims()[1];
    let t = k.dims()[2];
    let n_rep = h / kv;

    // The query heads that share a key/value head are stacked along the
    // sequence axis, so K and V are never repeated.
    let q = q.reshape([b, kv, n_rep * s, d]);
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(1.0 / (d as f64).sqrt());
    let scores = match mask {
        Some(mask) => scores
            .reshape([b, h, s, t])
            .mask_fill(mask.clone().expand([b, h, s, t]), f32::MIN)
            .reshape([b, kv, n_rep * s, t]),
        None => scores,
    };
    let probs = crate::exact_grad::softmax(scores, 3);
    probs
        .matmul(v)
        .reshape([b, h, s, d])
        .swap_dims(1, 2)
        .reshape([b, s, h * d])
}

// ---------------------------------------------------------------------------
// MLP
// ---------------------------------------------------------------------------

/// SwiGLU: `down(silu(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `[hidden, intermediate]`.
    pub gate_proj: LinearWeight<B>,
    /// `[hidden, intermediate]`.
    pub up_proj: LinearWeight<B>,
    /// `[intermediate, hidden]`.
    pub down_proj: LinearWeight<B>,
}

impl<B: Backend> Mlp<B> {
    /// `[b, s, hidden]` → `[b, s, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = project(&self.gate_proj, x.clone());
        let up = project(&self.up_proj, x);
        project(&self.down_proj, fastpath::swiglu(gate, up))
    }
}

// ---------------------------------------------------------------------------
// Decoder block
// ---------------------------------------------------------------------------

/// Pre-norm decoder block: `mid = x + attn(norm(x))`, `out = mid + mlp(norm(mid))`.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Attention.
    pub self_attn: Attention<B>,
    /// MLP.
    pub mlp: Mlp<B>,
    /// Norm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// Returns `(out, mid)`: the block's output and the residual stream after attention.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: Option<&Tensor<B, 4, Bool>>,
        cache: Option<LayerSlot<'_, B>>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let attn = self.self_attn.forward(
            self.input_layernorm.forward(x.clone()),
            cos,
            sin,
            mask,
            cache,
        );
        let mid = x.add(attn);
        let out = mid.clone().add(
            self.mlp
                .forward(self.post_attention_layernorm.forward(mid.clone())),
        );
        (out, mid)
    }
}

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogitsMode {
    /// Every position: `[b, s, vocab]`.
    #[default]
    All,
    /// Only the last position: `[b, 1, vocab]` (what generation needs; with
    /// left padding the last column is every row's last real token).
    Last,
}

/// Options of [`Llama::forward_with`].
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions<B: Backend> {
    /// `[b, s]` of 1 (real token) and 0 (padding) for the tokens of this
    /// call, HF's `attention_mask`. `None`: every token is real.
    pub attention_mask: Option<Tensor<B, 2, Int>>,
    /// Return the residual stream of every layer ([`HiddenStates`]).
    pub capture_hidden: bool,
    /// Which positions get logits.
    pub logits: LogitsMode,
}

/// The residual stream around one decoder block, each `[b, s, hidden]`.
#[derive(Debug, Clone)]
pub struct LayerHidden<B: Backend> {
    /// Input of the block (for block 0: the embedding output).
    pub pre: Tensor<B, 3>,
    /// After the attention residual add.
    pub mid: Tensor<B, 3>,
    /// Output of the block.
    pub post: Tensor<B, 3>,
}

/// Hidden states of a forward pass, what a logit lens reads.
#[derive(Debug, Clone)]
pub struct HiddenStates<B: Backend> {
    /// One entry per block, in order.
    pub layers: Vec<LayerHidden<B>>,
    /// The last block's output after the final norm (what the LM head reads).
    pub final_normed: Tensor<B, 3>,
}

impl<B: Backend> HiddenStates<B> {
    /// HF's `output_hidden_states` list: embedding output, output of each
    /// block but the last, then the final-normed output (`layers + 1` entries).
    pub fn hf_hidden_states(&self) -> Vec<Tensor<B, 3>> {
        let mut out: Vec<_> = self.layers.iter().map(|l| l.pre.clone()).collect();
        out.push(self.final_normed.clone());
        out
    }
}

/// Output of [`Llama::forward_with`].
#[derive(Debug, Clone)]
pub struct ForwardOutput<B: Backend> {
    /// `[b, s, vocab]` or `[b, 1, vocab]` per [`LogitsMode`].
    pub logits: Tensor<B, 3>,
    /// Present when [`ForwardOptions::capture_hidden`] was set.
    pub hidden: Option<HiddenStates<B>>,
}

/// A Llama causal language model (HF's `LlamaForCausalLM`).
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// `[vocab, hidden]` token embedding.
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// Decoder blocks.
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// `[hidden, vocab]` LM head; `None` when tied to the embedding.
    pub lm_head: Option<LinearWeight<B>>,
    #[module(skip)]
    config: LlamaConfig,
    #[module(skip)]
    rope: RotaryEmbedding,
}

impl LlamaConfig {
    /// A model with random weights drawn from a seeded ChaCha generator (the
    /// same seed gives the same weights on every machine and backend).
    pub fn init<B: Backend>(&self, device: &B::Device, seed: u64) -> Llama<B> {
        Llama::random(self.clone(), device, seed)
    }
}

impl<B: Backend> Llama<B> {
    /// Assembles a model from its parts (used by the loaders).
    pub fn from_parts(
        config: LlamaConfig,
        embed_tokens: Param<Tensor<B, 2>>,
        layers: Vec<DecoderLayer<B>>,
        norm: RmsNorm<B>,
        lm_head: Option<LinearWeight<B>>,
    ) -> Self {
        let rope = RotaryEmbedding::new(&config);
        Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config,
            rope,
        }
    }

    /// Random weights: embeddings ~ U(−1, 1)·√3 (unit variance), projections
    /// ~ U(−a, a) with variance 1/fan-in, norms 1.
    pub fn random(config: LlamaConfig, device: &B::Device, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = &config;
        let mut mat = |out_f: usize, in_f: usize| {
            let a = (3.0 / in_f as f32).sqrt();
            let data: Vec<f32> = (0..out_f * in_f).map(|_| rng.random_range(-a..a)).collect();
            LinearWeight::from_hf(&data, out_f, in_f, device)
        };
        let (hd, q_out, kv_out) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for _ in 0..c.num_hidden_layers {
            let self_attn = Attention {
                q_proj: mat(q_out, hd),
                k_proj: mat(kv_out, hd),
                v_proj: mat(kv_out, hd),
                o_proj: mat(hd, q_out),
                n_heads: c.num_attention_heads,
                n_kv_heads: c.num_key_value_heads,
                head_dim: c.head_dim,
            };
            let mlp = Mlp {
                gate_proj: mat(c.intermediate_size, hd),
                up_proj: mat(c.intermediate_size, hd),
                down_proj: mat(hd, c.intermediate_size),
            };
            layers.push(DecoderLayer {
                self_attn,
                mlp,
                input_layernorm: ones_norm(hd, c.rms_norm_eps, device),
                post_attention_layernorm: ones_norm(hd, c.rms_norm_eps, device),
            });
        }
        let lm_head = (!c.tie_word_embeddings).then(|| mat(c.vocab_size, hd));
        let a = 3f32.sqrt();
        let emb: Vec<f32> = (0..c.vocab_size * hd)
            .map(|_| rng.random_range(-a..a))
            .collect();
        let embed_tokens = Param::from_tensor(Tensor::from_data(
            TensorData::new(emb, [c.vocab_size, hd]),
            device,
        ));
        let norm = ones_norm(hd, c.rms_norm_eps, device);
        Self::from_parts(config, embed_tokens, layers, norm, lm_head)
    }

    /// The projection with a Hugging Face weight name
    /// (`model.layers.{i}.self_attn.q_proj.weight`, `…mlp.down_proj.weight`,
    /// `lm_head.weight` when untied).
    pub fn linear(&self, hf_name: &str) -> Option<&LinearWeight<B>> {
        let (layer, part) = parse_linear_name(hf_name)?;
        match layer {
            None => self.lm_head.as_ref(),
            Some(i) => {
                let l = self.layers.get(i)?;
                Some(match part {
                    "self_attn.q_proj" => &l.self_attn.q_proj,
                    "self_attn.k_proj" => &l.self_attn.k_proj,
                    "self_attn.v_proj" => &l.self_attn.v_proj,
                    "self_attn.o_proj" => &l.self_attn.o_proj,
                    "mlp.gate_proj" => &l.mlp.gate_proj,
                    "mlp.up_proj" => &l.mlp.up_proj,
                    "mlp.down_proj" => &l.mlp.down_proj,
                    _ => return None,
                })
            }
        }
    }

    /// Mutable access to the projection with a Hugging Face weight name.
    pub fn linear_mut(&mut self, hf_name: &str) -> Option<&mut LinearWeight<B>> {
        let (layer, part) = parse_linear_name(hf_name)?;
        match layer {
            None => self.lm_head.as_mut(),
            Some(i) => {
                let l = self.layers.get_mut(i)?;
                Some(match part {
                    "self_attn.q_proj" => &mut l.self_attn.q_proj,
                    "self_attn.k_proj" => &mut l.self_attn.k_proj,
                    "self_attn.v_proj" => &mut l.self_attn.v_proj,
                    "self_attn.o_proj" => &mut l.self_attn.o_proj,
                    "mlp.gate_proj" => &mut l.mlp.gate_proj,
                    "mlp.up_proj" => &mut l.mlp.up_proj,
                    "mlp.down_proj" => &mut l.mlp.down_proj,
                    _ => return None,
                })
            }
        }
    }

    /// Replaces the projection named `hf_name` by `f(old)`, e.g. to keep the
    /// base weight and run a compressed delta next to it
    /// ([`LinearWeight::with_sign_delta`]). Returns `false` if there is no
    /// such projection.
    pub fn map_linear(
        &mut self,
        hf_name: &str,
        f: impl FnOnce(LinearWeight<B>) -> LinearWeight<B>,
    ) -> bool {
        let device = self.device();
        let Some(slot) = self.linear_mut(hf_name) else {
            return false;
        };
        let placeholder = LinearWeight::Dense(Param::from_tensor(Tensor::zeros([1, 1], &device)));
        let old = std::mem::replace(slot, placeholder);
        *slot = f(old);
        true
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> B::Device {
        self.embed_tokens.val().device()
    }

    /// Token embeddings `[b, s, hidden]` of `tokens` `[b, s]`.
    pub fn embed(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        embedding(self.embed_tokens.val(), tokens)
    }

    /// The final RMSNorm, for decoding an intermediate hidden state.
    pub fn final_norm(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.norm.forward(hidden)
    }

    /// The unembedding (LM head, or the tied embedding): `[b, s, hidden]` → `[b, s, vocab]`.
    /// Apply [`Self::final_norm`] first to decode a raw residual stream.
    pub fn unembed(&self, normed: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(normed),
            None => fastpath::linear(normed, self.embed_tokens.val().transpose()),
        }
    }

    /// The unembedding matrix `[hidden, vocab]`.
    pub fn unembedding_matrix(&self) -> Tensor<B, 2> {
        match &self.lm_head {
            Some(head) => head.dense(),
            None => self.embed_tokens.val().transpose(),
        }
    }

    /// Checks that `tokens` can be fed as one sequence: non-empty, every id in
    /// the vocabulary, no longer than `max_position_embeddings`. The tensor
    /// entry points ([`Self::forward`], [`Self::forward_with`]) assume this.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<(), InputError> {
        let c = &self.config;
        if tokens.is_empty() {
            return Err(InputError::Empty);
        }
        if let Some((position, &token)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= c.vocab_size)
        {
            return Err(InputError::TokenOutOfRange {
                position,
                token,
                vocab_size: c.vocab_size,
            });
        }
        if tokens.len() > c.max_position_embeddings {
            return Err(InputError::TooLong {
                len: tokens.len(),
                max_position_embeddings: c.max_position_embeddings,
            });
        }
        Ok(())
    }

    /// Logits `[1, s, vocab]` of one sequence of token ids, checked first
    /// ([`Self::check_tokens`]): the entry point for input from a user.
    pub fn logits(&self, tokens: &[u32]) -> Result<Tensor<B, 3>, InputError> {
        self.check_tokens(tokens)?;
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let input =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &self.device());
        Ok(self.forward(input))
    }

    /// Logits `[b, s, vocab]` of unpadded `tokens` `[b, s]`, no cache.
    /// `s` must be at least 1 (see [`Self::check_tokens`] and [`Self::logits`]).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_with(tokens, ForwardOptions::default(), None)
            .logits
    }

    /// The full forward pass.
    ///
    /// - `tokens` `[b, s]`: the new tokens (left padded if rows differ in length).
    /// - `options.attention_mask` `[b, s]`: 1 for real tokens, 0 for padding.
    ///   Positions are `cumsum(mask) - 1` over the cached and new tokens, as in HF.
    /// - `cache`: keys/values of earlier calls; extended with this call's.
    ///
    /// Hidden states are only kept when `options.capture_hidden` is set.
    ///
    /// # Panics
    /// If `tokens` holds no tokens (`s = 0`): check user input with
    /// [`Self::check_tokens`] first.
    pub fn forward_with(
        &self,
        tokens: Tensor<B, 2, Int>,
        options: ForwardOptions<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> ForwardOutput<B> {
        fastpath::in_pool::<B, _>(|| self.forward_impl(tokens, options, cache))
    }

    fn forward_impl(
        &self,
        tokens: Tensor<B, 2, Int>,
        options: ForwardOptions<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> ForwardOutput<B> {
        let [b, s] = tokens.dims();
        assert!(
            b > 0 && s > 0,
            "Llama::forward_with: empty input [{b}, {s}] (check it with Llama::check_tokens)"
        );
        let device = tokens.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let t = past + s;

        // Mask over all keys (cached + new), `None` when nothing is padded.
        let past_mask = cache.as_ref().and_then(|c| c.mask().cloned());
        let full_mask: Option<Tensor<B, 2, Int>> = match (past_mask, options.attention_mask) {
            (None, None) => None,
            (Some(pm), None) => Some(Tensor::cat(vec![pm, Tensor::ones([b, s], &device)], 1)),
            (None, Some(m)) if past == 0 => Some(m),
            (None, Some(m)) => Some(Tensor::cat(vec![Tensor::ones([b, past], &device), m], 1)),
            (Some(pm), Some(m)) => Some(Tensor::cat(vec![pm, m], 1)),
        };

        let positions: Tensor<B, 2, Int> = match &full_mask {
            None => Tensor::<B, 1, Int>::arange(past as i64..t as i64, &device)
                .reshape([1, s])
                .expand([b, s]),
            Some(m) => {
                let pos = m.clone().cumsum(1).sub_scalar(1).narrow(1, past, s);
                let pad = m.clone().narrow(1, past, s).equal_elem(0);
                pos.mask_fill(pad, 1)
            }
        };
        let (cos, sin) = self.rope.cos_sin(positions);

        // true = masked: keys after the query (causal) and padded keys.
        let causal = (s > 1).then(|| {
            Tensor::<B, 2, Bool>::tril_mask([s, t], past as i64, &device)
                .reshape([1, 1, s, t])
                .expand([b, 1, s, t])
        });
        let padding = full_mask.as_ref().map(|m| {
            m.clone()
                .equal_elem(0)
                .reshape([b, 1, 1, t])
                .expand([b, 1, s, t])
        });
        let mask = match (causal, padding) {
            (Some(c), Some(p)) => Some(c.bool_or(p)),
            (c, p) => c.or(p),
        };

        let mut x = self.embed(tokens);
        let mut captured = options
            .capture_hidden
            .then(|| Vec::with_capacity(self.layers.len()));
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_mut().map(|c| c.layer_mut(i));
            let (out, mid) = layer.forward(x.clone(), &cos, &sin, mask.as_ref(), slot);
            if let Some(caps) = captured.as_mut() {
                caps.push(LayerHidden {
                    pre: x,
                    mid,
                    post: out.clone(),
                });
            }
            x = out;
        }
        if let Some(c) = cache {
            c.finish_step(s, full_mask);
        }

        let normed = self.norm.forward(x);
        let head_input = match options.logits {
            LogitsMode::All => normed.clone(),
            LogitsMode::Last => normed.clone().narrow(1, s - 1, 1),
        };
        // `unembed`, on the fast path where the backend allows it.
        let logits = match &self.lm_head {
            Some(head) => project(head, head_input),
            None => fastpath::linear(head_input, self.embed_tokens.val().transpose()),
        };
        let hidden = captured.map(|layers| HiddenStates {
            layers,
            final_normed: normed,
        });
        ForwardOutput { logits, hidden }
    }
}

/// Splits `model.layers.{i}.{part}.weight` into `(Some(i), part)` and
/// `lm_head.weight` into `(None, "lm_head")`.
fn parse_linear_name(name: &str) -> Option<(Option<usize>, &str)> {
    if name == "lm_head.weight" {
        return Some((None, "lm_head"));
    }
    let rest = name
        .strip_prefix("model.layers.")?
        .strip_suffix(".weight")?;
    let (i, part) = rest.split_once('.')?;
    Some((Some(i.parse().ok()?), part))
}

fn ones_norm<B: Backend>(n: usize, eps: f64, device: &B::Device) -> RmsNorm<B> {
    RmsNorm {
        weight: Param::from_tensor(Tensor::ones([n], device)),
        eps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn transpose_is_correct() {
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            vec![1., 4., 2., 5., 3., 6.]
        );
    }

    #[test]
    fn tril_mask_marks_future_keys() {
        let device = Default::default();
        // 2 new queries after 1 cached key: query 0 (abs 1) sees keys 0,1; query 1 sees 0,1,2.
        let m = Tensor::<NdArray, 2, Bool>::tril_mask([2, 3], 1, &device);
        let v: Vec<bool> = m.into_data().to_vec().unwrap();
        assert_eq!(v, vec![false, false, true, false, false, false]);
    }
}
