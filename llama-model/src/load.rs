//! Building a [`Llama`] from named tensors: a Hugging Face directory read
//! through delta-core (f32, f16 or bf16, single file or sharded), tensors
//! produced elsewhere (the GGUF reader), and either of them with a
//! reconstructed fine-tuning delta merged in (`W = W_base + Δ̂`).
//!
//! Every weight is converted to f32 on the host and uploaded to the backend
//! (burn-ndarray is f32-only).

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use delta_core::Checkpoint;

use crate::config::LlamaConfig;
use crate::error::LoadError;
use crate::model::{Attention, DecoderLayer, LinearWeight, Llama, Mlp, RmsNorm};

/// Anything that can hand out f32 tensors by HF name.
pub trait TensorSource {
    /// Shape of a tensor, `None` if it is absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The tensor's values in row-major order, converted to f32.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError>;
}

impl TensorSource for Checkpoint {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.info(name).map(|i| i.shape.clone())
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        Ok(Checkpoint::read_f32(self, name)?)
    }
}

/// One f32 tensor held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct F32Tensor {
    /// Shape (HF layout: linear weights `[out, in]`).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl F32Tensor {
    /// A tensor, checking that `data` fills `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, LoadError> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(LoadError::BadLength {
                name: String::new(),
                shape,
                expected,
                found: data.len(),
            });
        }
        Ok(Self { shape, data })
    }
}

/// Named f32 tensors in memory (what the GGUF reader and delta
/// reconstruction produce).
pub type NamedTensors = BTreeMap<String, F32Tensor>;

impl TensorSource for NamedTensors {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).map(|t| t.shape.clone())
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        self.get(name)
            .map(|t| t.data.clone())
            .ok_or_else(|| LoadError::MissingTensor { name: name.into() })
    }
}

/// A base source with reconstructed deltas added: reading a tensor that has a
/// delta returns `base + Δ̂`; every other tensor is the base's.
#[derive(Debug)]
pub struct DeltaApplied<'a, S: TensorSource + ?Sized> {
    base: &'a S,
    deltas: &'a NamedTensors,
}

impl<'a, S: TensorSource + ?Sized> DeltaApplied<'a, S> {
    /// Checks that every delta names a base tensor of the same shape.
    pub fn new(base: &'a S, deltas: &'a NamedTensors) -> Result<Self, LoadError> {
        for (name, d) in deltas {
            match base.shape(name) {
                None => {
                    return Err(LoadError::Delta {
                        name: name.clone(),
                        reason: "the base checkpoint has no such tensor".into(),
                    })
                }
                Some(shape) if shape != d.shape => {
                    return Err(LoadError::Delta {
                        name: name.clone(),
                        reason: format!("shape {:?}, base tensor is {:?}", d.shape, shape),
                    })
                }
                Some(_) => {}
            }
            let n: usize = d.shape.iter().product();
            if n != d.data.len() {
                return Err(LoadError::Delta {
                    name: name.clone(),
                    reason: format!("{} values for shape {:?}", d.data.len(), d.shape),
                });
            }
        }
        Ok(Self { base, deltas })
    }
}

impl<S: TensorSource + ?Sized> TensorSource for DeltaApplied<'_, S> {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.base.shape(name)
    }
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let mut w = self.base.read_f32(name)?;
        if let Some(d) = self.deltas.get(name) {
            for (w, d) in w.iter_mut().zip(&d.data) {
                *w += d;
            }
        }
        Ok(w)
    }
}

impl<B: Backend> Llama<B> {
    /// Loads a Hugging Face model directory (`config.json` + safetensors).
    pub fn from_hf_dir(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self, LoadError> {
        let ck = Checkpoint::open(dir.as_ref())?;
        Self::from_checkpoint(&ck, device)
    }

    /// Loads an opened checkpoint.
    pub fn from_checkpoint(ck: &Checkpoint, device: &B::Device) -> Result<Self, LoadError> {
        let config = LlamaConfig::from_json(
            ck.config_json(),
            &ck.dir().join("config.json").display().to_string(),
        )?;
        Self::from_tensors(config, ck, device)
    }

    /// Loads a checkpoint with reconstructed deltas merged into its weights
    /// (`W = W_base + Δ̂` for every tensor named in `deltas`, HF names and layout).
    pub fn from_checkpoint_with_delta(
        ck: &Checkpoint,
        deltas: &NamedTensors,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let config = LlamaConfig::from_json(
            ck.config_json(),
            &ck.dir().join("config.json").display().to_string(),
        )?;
        let src = DeltaApplied::new(ck, deltas)?;
        Self::from_tensors(config, &src, device)
    }

    /// Builds the model from any tensor source with HF names
    /// (`model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`, …).
    pub fn from_tensors<S: TensorSource + ?Sized>(
        config: LlamaConfig,
        src: &S,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        config.validate("configuration")?;
        let c = &config;
        let h = c.hidden_size;
        let q_out = c.num_attention_heads * c.head_dim;
        let kv_out = c.num_key_value_heads * c.head_dim;

        let linear =
            |name: &str, out_f: usize, in_f: usize| -> Result<LinearWeight<B>, LoadError> {
                let data = read(src, name, &[out_f, in_f])?;
                Ok(LinearWeight::from_hf(&data, out_f, in_f, device))
            };
        let norm = |name: &str| -> Result<RmsNorm<B>, LoadError> {
            let data = read(src, name, &[h])?;
            Ok(RmsNorm {
                weight: Param::from_tensor(Tensor::from_data(TensorData::new(data, [h]), device)),
                eps: c.rms_norm_eps,
            })
        };

        let embed = read(src, "model.embed_tokens.weight", &[c.vocab_size, h])?;
        let embed_tokens = Param::from_tensor(Tensor::from_data(
            TensorData::new(embed, [c.vocab_size, h]),
            device,
        ));

        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(DecoderLayer {
                self_attn: Attention {
                    q_proj: linear(&format!("{p}.self_attn.q_proj.weight"), q_out, h)?,
                    k_proj: linear(&format!("{p}.self_attn.k_proj.weight"), kv_out, h)?,
                    v_proj: linear(&format!("{p}.self_attn.v_proj.weight"), kv_out, h)?,
                    o_proj: linear(&format!("{p}.self_attn.o_proj.weight"), h, q_out)?,
                    n_heads: c.num_attention_heads,
                    n_kv_heads: c.num_key_value_heads,
                    head_dim: c.head_dim,
                },
                mlp: Mlp {
                    gate_proj: linear(
                        &format!("{p}.mlp.gate_proj.weight"),
                        c.intermediate_size,
                        h,
                    )?,
                    up_proj: linear(&format!("{p}.mlp.up_proj.weight"), c.intermediate_size, h)?,
                    down_proj: linear(
                        &format!("{p}.mlp.down_proj.weight"),
                        h,
                        c.intermediate_size,
                    )?,
                },
                input_layernorm: norm(&format!("{p}.input_layernorm.weight"))?,
                post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
            });
        }
        let final_norm = norm("model.norm.weight")?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(linear("lm_head.weight", c.vocab_size, h)?)
        };
        Ok(Llama::from_parts(
            config,
            embed_tokens,
            layers,
            final_norm,
            lm_head,
        ))
    }
}

/// Reads a tensor, checking presence, shape, length and that every value is
/// finite (a NaN/Inf weight — a carried tensor of a bad fine-tune or delta, an
/// overflowing merge — would make every logit non-finite).
fn read<S: TensorSource + ?Sized>(
    src: &S,
    name: &str,
    expected: &[usize],
) -> Result<Vec<f32>, LoadError> {
    let shape = src
        .shape(name)
        .ok_or_else(|| LoadError::MissingTensor { name: name.into() })?;
    if shape != expected {
        return Err(LoadError::ShapeMismatch {
            name: name.into(),
            expected: expected.to_vec(),
            found: shape,
        });
    }
    let data = src.read_f32(name)?;
    let n: usize = expected.iter().product();
    if data.len() != n {
        return Err(LoadError::BadLength {
            name: name.into(),
            shape,
            expected: n,
            found: data.len(),
        });
    }
    if let Some(index) = data.iter().position(|x| !x.is_finite()) {
        return Err(LoadError::NonFinite {
            name: name.into(),
            index,
            value: data[index],
        });
    }
    Ok(data)
}

/// The HF names of the weights BitDelta compresses by default (every `*proj`
/// under `self_attn` and `mlp`), for a model with `num_layers` blocks.
pub fn projection_names(num_layers: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(num_layers * 7);
    for i in 0..num_layers {
        for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            out.push(format!("model.layers.{i}.self_attn.{p}.weight"));
        }
        for p in ["gate_proj", "up_proj", "down_proj"] {
            out.push(format!("model.layers.{i}.mlp.{p}.weight"));
        }
    }
    out
}

/// Every weight a model of `config` is built from, with its HF shape
/// (`[out, in]` for a linear weight), in loading order: the embedding, each
/// block's projections and norms, the final norm, and `lm_head` unless tied.
/// Validate `config` first ([`LlamaConfig::validate`]): its sizes bound the
/// list's length.
pub fn expected_shapes(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let c = config;
    let h = c.hidden_size;
    let q_out = c.num_attention_heads * c.head_dim;
    let kv_out = c.num_key_value_heads * c.head_dim;
    let ffn = c.intermediate_size;
    let mut out = Vec::with_capacity(3 + 9 * c.num_hidden_layers);
    out.push((
        "model.embed_tokens.weight".to_string(),
        vec![c.vocab_size, h],
    ));
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj", vec![q_out, h]),
            ("self_attn.k_proj", vec![kv_out, h]),
            ("self_attn.v_proj", vec![kv_out, h]),
            ("self_attn.o_proj", vec![h, q_out]),
            ("mlp.gate_proj", vec![ffn, h]),
            ("mlp.up_proj", vec![ffn, h]),
            ("mlp.down_proj", vec![h, ffn]),
            ("input_layernorm", vec![h]),
            ("post_attention_layernorm", vec![h]),
        ] {
            out.push((format!("{p}.{name}.weight"), shape));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !c.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    }
    out
}
