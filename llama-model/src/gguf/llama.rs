//! Llama GGUF → Hugging Face layout: config, tensor names, shapes and the Q/K
//! un-permutation.

use std::path::Path;

use serde_json::{json, Value};

use super::error::GgufError;
use super::reader::{GgufFile, TensorInfo};
use super::tokenizer;
use crate::config::LlamaConfig;
use crate::error::ConfigError;

/// Maps a llama.cpp tensor name to its Hugging Face `LlamaForCausalLM` name
/// (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`), or `None`
/// for names with no HF counterpart (e.g. `rope_freqs.weight`).
pub fn gguf_to_hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty()
        || !layer.bytes().all(|b| b.is_ascii_digit())
        || layer.len() > 1 && layer.starts_with('0')
    {
        return None;
    }
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let hf = match module {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    if hf.ends_with("layernorm") && suffix != "weight" {
        return None;
    }
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Which rows go where within one head under llama.cpp's permutation: GGUF row
/// `2i + j` holds HF row `j·d/2 + i`. Calls `f(hf_row, gguf_row)` for every row.
fn for_each_row_pair(n_head: usize, rows: usize, mut f: impl FnMut(usize, usize)) {
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    for h in 0..n_head {
        let base = h * head_dim;
        for i in 0..half {
            for j in 0..2 {
                f(base + j * half + i, base + 2 * i + j);
            }
        }
    }
}

fn check_perm_shape(w: &[f32], n_head: usize, rows: usize, cols: usize) -> Result<(), String> {
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(format!(
            "cannot (un)permute {rows} rows for {n_head} heads: rows must be n_head × an even head size"
        ));
    }
    if rows.checked_mul(cols) != Some(w.len()) {
        return Err(format!(
            "{} values do not form a {rows}×{cols} matrix",
            w.len()
        ));
    }
    Ok(())
}

/// llama.cpp's Q/K row permutation (`convert_hf_to_gguf.py`'s `LlamaModel.permute`):
/// HF layout → GGUF layout, for a row-major `[rows, cols]` matrix (`cols = 1` for a bias).
pub fn permute_qk(w: &[f32], n_head: usize, rows: usize, cols: usize) -> Result<Vec<f32>, String> {
    check_perm_shape(w, n_head, rows, cols)?;
    let mut out = vec![0f32; w.len()];
    for_each_row_pair(n_head, rows, |hf, gg| {
        out[gg * cols..(gg + 1) * cols].copy_from_slice(&w[hf * cols..(hf + 1) * cols]);
    });
    Ok(out)
}

/// Inverse of [`permute_qk`]: GGUF layout → HF layout. Use `n_head =
/// head_count` for `attn_q` and `n_head = head_count_kv` for `attn_k`.
pub fn unpermute_qk(
    w: &[f32],
    n_head: usize,
    rows: usize,
    cols: usize,
) -> Result<Vec<f32>, String> {
    check_perm_shape(w, n_head, rows, cols)?;
    let mut out = vec![0f32; w.len()];
    for_each_row_pair(n_head, rows, |hf, gg| {
        out[hf * cols..(hf + 1) * cols].copy_from_slice(&w[gg * cols..(gg + 1) * cols]);
    });
    Ok(out)
}

fn model_err(file: &GgufFile, message: impl Into<String>) -> GgufError {
    GgufError::Model {
        file: file.name().to_string(),
        message: message.into(),
    }
}

struct Dims {
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
}

fn required_u64(file: &GgufFile, key: &str) -> Result<u64, GgufError> {
    file.get_u64(key)?.ok_or_else(|| GgufError::MissingKey {
        file: file.name().to_string(),
        key: key.to_string(),
    })
}

fn positive(file: &GgufFile, key: &str, v: u64) -> Result<usize, GgufError> {
    match usize::try_from(v) {
        Ok(n) if n > 0 && n <= u32::MAX as usize => Ok(n),
        _ => Err(GgufError::WrongType {
            file: file.name().to_string(),
            key: key.to_string(),
            expected: "a positive integer below 2^32".into(),
            found: v.to_string(),
        }),
    }
}

/// The HF `config.json` of a `LlamaForCausalLM`, built from a Llama GGUF's
/// metadata (`general.architecture` must be `llama`; the keys read are
/// `llama.block_count`, `.embedding_length`, `.feed_forward_length`,
/// `.attention.head_count`, `.attention.head_count_kv`, `.attention.key_length`,
/// `.attention.layer_norm_rms_epsilon`, `.rope.freq_base`, `.rope.dimension_count`,
/// `.rope.scaling.{type,factor,original_context_length}` / `.rope.scale_linear`,
/// `.context_length`, `.vocab_size`, and `tokenizer.ggml.{bos,eos,padding}_token_id`).
///
/// `tie_word_embeddings` is true when the file has no `output.weight`;
/// `attention_bias` when it has `blk.0.attn_q.bias`. `torch_dtype` is `float32`
/// (the tensors come out dequantized). A GGUF with a `rope_freqs.weight` tensor
/// (Llama-3.1-style RoPE scaling, whose HF parameters are not in the file) is
/// rejected.
pub fn llama_config_json(file: &GgufFile) -> Result<Value, GgufError> {
    Ok(llama_config(file)?.0)
}

fn llama_config(file: &GgufFile) -> Result<(Value, Dims), GgufError> {
    let arch = file
        .get_str("general.architecture")?
        .ok_or_else(|| GgufError::MissingKey {
            file: file.name().to_string(),
            key: "general.architecture".into(),
        })?;
    if arch != "llama" {
        return Err(model_err(
            file,
            format!("general.architecture is {arch:?}; only \"llama\" is supported"),
        ));
    }
    let k = |s: &str| format!("llama.{s}");
    let get = |s: &str| -> Result<usize, GgufError> {
        let key = k(s);
        positive(file, &key, required_u64(file, &key)?)
    };
    let n_layer = get("block_count")?;
    let hidden = get("embedding_length")?;
    let ffn = get("feed_forward_length")?;
    let n_head = get("attention.head_count")?;
    let n_head_kv = match file.get_u64(&k("attention.head_count_kv"))? {
        Some(v) => positive(file, &k("attention.head_count_kv"), v)?,
        None => n_head,
    };
    if n_head % n_head_kv != 0 {
        return Err(model_err(
            file,
            format!("head_count {n_head} is not a multiple of head_count_kv {n_head_kv}"),
        ));
    }
    let head_dim = match file.get_u64(&k("attention.key_length"))? {
        Some(v) => positive(file, &k("attention.key_length"), v)?,
        None => {
            if hidden % n_head != 0 {
                return Err(model_err(
                    file,
                    format!("embedding_length {hidden} is not a multiple of head_count {n_head}"),
                ));
            }
            hidden / n_head
        }
    };
    if let Some(v) = file.get_u64(&k("attention.value_length"))? {
        if v != head_dim as u64 {
            return Err(model_err(
                file,
                format!("attention.value_length {v} differs from key_length {head_dim}"),
            ));
        }
    }
    if head_dim % 2 != 0 {
        return Err(model_err(file, format!("head size {head_dim} is odd")));
    }
    if let Some(rot) = file.get_u64(&k("rope.dimension_count"))? {
        if rot != head_dim as u64 {
            return Err(model_err(
                file,
                format!(
                    "rope.dimension_count {rot} differs from the head size {head_dim} (partial rotary is not Llama)"
                ),
            ));
        }
    }
    if file.tensor("rope_freqs.weight").is_some() {
        return Err(model_err(
            file,
            "has a rope_freqs.weight tensor (Llama-3.1-style RoPE scaling), which is not supported",
        ));
    }
    let rms_eps = file
        .get_f64(&k("attention.layer_norm_rms_epsilon"))?
        .unwrap_or(1e-5);
    let rope_theta = file.get_f64(&k("rope.freq_base"))?.unwrap_or(10000.0);
    let ctx = file.get_u64(&k("context_length"))?.unwrap_or(2048);
    let vocab = match file.get_u64(&k("vocab_size"))? {
        Some(v) => v,
        None => match file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(a) => a.values.len() as u64,
            None => match file.tensor("token_embd.weight") {
                Some(t) if t.dims.len() == 2 => t.dims[1],
                _ => {
                    return Err(GgufError::MissingKey {
                        file: file.name().to_string(),
                        key: k("vocab_size"),
                    })
                }
            },
        },
    };

    let scaling_type = file.get_str(&k("rope.scaling.type"))?;
    let factor = file.get_f64(&k("rope.scaling.factor"))?;
    let linear_legacy = file.get_f64(&k("rope.scale_linear"))?;
    let rope_scaling = match (scaling_type, factor, linear_legacy) {
        (None, None, None) | (Some("none"), _, _) => Value::Null,
        (Some("linear") | None, f, legacy) => {
            let f = f.or(legacy).unwrap_or(1.0);
            if f == 1.0 {
                Value::Null
            } else {
                json!({"type": "linear", "rope_type": "linear", "factor": f})
            }
        }
        (Some("yarn"), f, _) => {
            let orig = file.get_u64(&k("rope.scaling.original_context_length"))?;
            json!({
                "type": "yarn", "rope_type": "yarn",
                "factor": f.unwrap_or(1.0),
                "original_max_position_embeddings": orig,
            })
        }
        (Some(other), _, _) => {
            return Err(model_err(
                file,
                format!("unsupported llama.rope.scaling.type {other:?}"),
            ))
        }
    };

    let tok_id = |s: &str| file.get_u64(&format!("tokenizer.ggml.{s}"));
    let tied = file.tensor("output.weight").is_none();
    let attention_bias = file.tensor("blk.0.attn_q.bias").is_some();
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "head_dim": head_dim,
        "max_position_embeddings": ctx,
        "rms_norm_eps": rms_eps,
        "rope_theta": rope_theta,
        "rope_scaling": rope_scaling,
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "attention_bias": attention_bias,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "bos_token_id": tok_id("bos_token_id")?,
        "eos_token_id": tok_id("eos_token_id")?,
        "pad_token_id": tok_id("padding_token_id")?,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": true,
        "torch_dtype": "float32",
    });
    let checked = validated_config(file, &config)?;
    check_tensor_shapes(file, &checked)?;
    Ok((
        config,
        Dims {
            n_head,
            n_head_kv,
            head_dim,
        },
    ))
}

/// The GGUF metadata key a `config.json` field comes from, for error messages.
fn gguf_key_of(field: &str) -> String {
    let key = match field {
        "num_hidden_layers" => "llama.block_count",
        "hidden_size" => "llama.embedding_length",
        "intermediate_size" => "llama.feed_forward_length",
        "num_attention_heads" => "llama.attention.head_count",
        "num_key_value_heads" => "llama.attention.head_count_kv",
        "head_dim" => "llama.attention.key_length",
        "max_position_embeddings" => "llama.context_length",
        "vocab_size" => "llama.vocab_size (or the tokenizer's token count)",
        "rms_norm_eps" => "llama.attention.layer_norm_rms_epsilon",
        "rope_theta" => "llama.rope.freq_base",
        "bos_token_id" => "tokenizer.ggml.bos_token_id",
        "eos_token_id" => "tokenizer.ggml.eos_token_id",
        "pad_token_id" => "tokenizer.ggml.padding_token_id",
        f if f.starts_with("rope_scaling.") => "llama.rope.scaling.*",
        other => other,
    };
    key.to_string()
}

/// The metadata as a [`LlamaConfig`], with every bound and consistency check
/// of [`LlamaConfig::validate`] applied before anything is allocated from
/// it. Attention biases and YaRN scaling are carried into `config.json` for
/// transformers, so they are not refused here (the model in this crate refuses
/// them when loading); YaRN's factor must still be finite and positive.
fn validated_config(file: &GgufFile, config: &Value) -> Result<LlamaConfig, GgufError> {
    let mut probe = config.clone();
    probe["attention_bias"] = Value::Bool(false);
    if probe["rope_scaling"]["rope_type"] == "yarn" {
        let factor = probe["rope_scaling"]["factor"].as_f64().unwrap_or(f64::NAN);
        if !(factor.is_finite() && factor > 0.0) {
            return Err(model_err(
                file,
                format!("llama.rope.scaling.factor {factor} must be finite and positive"),
            ));
        }
        probe["rope_scaling"] = Value::Null;
    }
    LlamaConfig::from_json(&probe, file.name()).map_err(|e| {
        let (field, reason) = match &e {
            ConfigError::InvalidField { field, reason, .. }
            | ConfigError::Unsupported { field, reason, .. } => (field.clone(), reason.clone()),
            ConfigError::MissingField { field, .. } => (field.clone(), "missing".to_string()),
            other => (String::new(), other.to_string()),
        };
        model_err(
            file,
            format!(
                "metadata {} (config.json `{field}`) is invalid: {reason}",
                gguf_key_of(&field)
            ),
        )
    })
}

/// Every tensor the configuration implies is present with its shape, and no
/// weight lies outside it (e.g. a block beyond `llama.block_count`), so a
/// file whose metadata disagrees with its tensors is refused on open instead
/// of converting into a model nothing can load. Attention biases are only
/// checked against their projection's width.
fn check_tensor_shapes(file: &GgufFile, config: &LlamaConfig) -> Result<(), GgufError> {
    let present: std::collections::HashMap<String, (&str, Vec<usize>)> = file
        .tensors()
        .iter()
        .filter_map(|t| gguf_to_hf_name(&t.name).map(|hf| (hf, (t.name.as_str(), t.shape()))))
        .collect();
    let expected = crate::load::expected_shapes(config);
    for (name, shape) in &expected {
        match present.get(name) {
            None => {
                return Err(model_err(
                    file,
                    format!(
                        "no tensor for {name}, which the metadata implies                          (llama.block_count {}, tied embeddings: {})",
                        config.num_hidden_layers, config.tie_word_embeddings
                    ),
                ))
            }
            Some((gguf_name, found)) if found != shape => {
                return Err(model_err(
                    file,
                    format!(
                        "tensor {gguf_name:?} ({name}) has shape {found:?}, the metadata implies {shape:?}"
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let known: std::collections::HashMap<&str, &Vec<usize>> =
        expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
    for (hf, (gguf_name, found)) in &present {
        if let Some(weight) = hf.strip_suffix(".bias") {
            let rows = known.get(format!("{weight}.weight").as_str()).map(|s| s[0]);
            if rows.is_some_and(|r| found == &vec![r]) {
                continue;
            }
            return Err(model_err(
                file,
                format!("bias {gguf_name:?} of shape {found:?} matches no weight of the model"),
            ));
        }
        if !known.contains_key(hf.as_str()) {
            return Err(model_err(
                file,
                format!(
                    "tensor {gguf_name:?} lies outside the model the metadata describes                      (llama.block_count {})",
                    config.num_hidden_layers
                ),
            ));
        }
    }
    Ok(())
}

/// One tensor in Hugging Face naming and layout, dequantized to `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// HF name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// The GGUF name it came from.
    pub gguf_name: String,
    /// Shape in PyTorch order (`[out_features, in_features]` for a Linear weight).
    pub shape: Vec<usize>,
    /// Row-major values, Q/K rows un-permuted.
    pub data: Vec<f32>,
}

/// A Llama GGUF opened for use as a HF checkpoint: config, tokenizer, chat
/// template, and tensors dequantized one at a time on demand.
pub struct GgufLlama {
    /// The underlying file.
    pub file: GgufFile,
    /// HF `config.json` for `LlamaForCausalLM` (see [`llama_config_json`]).
    pub config_json: Value,
    /// Whether the LM head shares the embedding (no `output.weight` in the file).
    pub tied_embeddings: bool,
    /// The embedded tokenizer as a HF `tokenizer.json` value.
    pub tokenizer_json: Value,
    /// The same, loaded.
    pub tokenizer: tokenizers::Tokenizer,
    /// `tokenizer.chat_template`, when present.
    pub chat_template: Option<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
}

impl std::fmt::Debug for GgufLlama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufLlama")
            .field("file", &self.file)
            .field("config_json", &self.config_json)
            .field("tied_embeddings", &self.tied_embeddings)
            .field("bos_token_id", &self.bos_token_id)
            .field("eos_token_id", &self.eos_token_id)
            .finish_non_exhaustive()
    }
}

/// Opens a Llama GGUF: parses and validates the file, builds the HF config and
/// the tokenizer. Tensors are dequantized later, one at a time
/// ([`GgufLlama::tensors`], [`GgufLlama::tensor`]).
pub fn load_llama_gguf(path: impl AsRef<Path>) -> Result<GgufLlama, GgufError> {
    GgufLlama::from_file(GgufFile::open(path)?)
}

impl GgufLlama {
    /// Builds from an already opened file.
    pub fn from_file(file: GgufFile) -> Result<Self, GgufError> {
        let (config_json, dims) = llama_config(&file)?;
        for t in file.tensors() {
            if gguf_to_hf_name(&t.name).is_none() {
                return Err(model_err(
                    &file,
                    format!("tensor {:?} has no Hugging Face Llama counterpart", t.name),
                ));
            }
        }
        if file.tensor("token_embd.weight").is_none() {
            return Err(model_err(&file, "no token_embd.weight tensor"));
        }
        let tokenizer_json = tokenizer::tokenizer_json(&file)?;
        let tokenizer = tokenizer::load_tokenizer_json(&file, &tokenizer_json)?;
        let chat_template = tokenizer::chat_template(&file)?;
        let id = |key: &str| -> Result<Option<u32>, GgufError> {
            file.get_u64(key)?
                .map(|v| {
                    u32::try_from(v).map_err(|_| GgufError::WrongType {
                        file: file.name().to_string(),
                        key: key.to_string(),
                        expected: "a token id (u32)".into(),
                        found: v.to_string(),
                    })
                })
                .transpose()
        };
        Ok(Self {
            tied_embeddings: file.tensor("output.weight").is_none(),
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: id("tokenizer.ggml.eos_token_id")?,
            config_json,
            tokenizer_json,
            tokenizer,
            chat_template,
            n_head: dims.n_head,
            n_head_kv: dims.n_head_kv,
            head_dim: dims.head_dim,
            file,
        })
    }

    /// `(gguf_name, hf_name)` of every tensor, in file order.
    pub fn tensor_names(&self) -> Vec<(String, String)> {
        self.file
            .tensors()
            .iter()
            .filter_map(|t| gguf_to_hf_name(&t.name).map(|hf| (t.name.clone(), hf)))
            .collect()
    }

    /// Every tensor, dequantized and in HF layout, one at a time in file order
    /// (only the tensor being yielded is held in memory).
    pub fn tensors(&self) -> impl Iterator<Item = Result<HfTensor, GgufError>> + '_ {
        self.file.tensors().iter().map(move |t| self.convert(t))
    }

    /// One tensor by its HF name.
    pub fn tensor(&self, hf_name: &str) -> Result<HfTensor, GgufError> {
        let info = self
            .file
            .tensors()
            .iter()
            .find(|t| gguf_to_hf_name(&t.name).as_deref() == Some(hf_name))
            .ok_or_else(|| GgufError::TensorNotFound {
                file: self.file.name().to_string(),
                tensor: hf_name.to_string(),
            })?;
        self.convert(info)
    }

    /// `tokenizer_config.json` for a HF directory (see [`tokenizer::tokenizer_config_json`]).
    pub fn tokenizer_config_json(&self) -> Result<Value, GgufError> {
        tokenizer::tokenizer_config_json(&self.file)
    }

    /// `generation_config.json` for a HF directory: BOS/EOS/pad ids.
    pub fn generation_config_json(&self) -> Value {
        json!({
            "bos_token_id": self.config_json["bos_token_id"],
            "eos_token_id": self.config_json["eos_token_id"],
            "pad_token_id": self.config_json["pad_token_id"],
        })
    }

    fn convert(&self, info: &TensorInfo) -> Result<HfTensor, GgufError> {
        let name = gguf_to_hf_name(&info.name).ok_or_else(|| {
            model_err(
                &self.file,
                format!(
                    "tensor {:?} has no Hugging Face Llama counterpart",
                    info.name
                ),
            )
        })?;
        let shape = info.shape();
        let mut data = self.file.dequantize_info(info)?;
        let n_head = if name.contains(".self_attn.q_proj.") {
            Some(self.n_head)
        } else if name.contains(".self_attn.k_proj.") {
            Some(self.n_head_kv)
        } else {
            None
        };
        if let Some(n_head) = n_head {
            let rows = shape[0];
            let cols = shape[1..].iter().product::<usize>();
            if rows != n_head * self.head_dim {
                return Err(model_err(
                    &self.file,
                    format!(
                        "tensor {:?}: {rows} rows, expected {n_head} heads × {} = {}",
                        info.name,
                        self.head_dim,
                        n_head * self.head_dim
                    ),
                ));
            }
            data = unpermute_qk(&data, n_head, rows, cols)
                .map_err(|m| model_err(&self.file, format!("tensor {:?}: {m}", info.name)))?;
        }
        Ok(HfTensor {
            name,
            gguf_name: info.name.clone(),
            shape,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            gguf_to_hf_name("blk.12.attn_q.weight").unwrap(),
            "model.layers.12.self_attn.q_proj.weight"
        );
        assert_eq!(
            gguf_to_hf_name("blk.0.ffn_norm.weight").unwrap(),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(
            gguf_to_hf_name("blk.0.attn_output.weight").unwrap(),
            "model.layers.0.self_attn.o_proj.weight"
        );
        assert_eq!(gguf_to_hf_name("output.weight").unwrap(), "lm_head.weight");
        assert_eq!(gguf_to_hf_name("rope_freqs.weight"), None);
        assert_eq!(gguf_to_hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(gguf_to_hf_name("blk.01.attn_q.weight"), None);
        assert_eq!(gguf_to_hf_name("blk.1.attn_norm.bias"), None);
    }

    /// The permutation written exactly as numpy does it:
    /// `w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2).reshape(w.shape)`.
    fn numpy_permute(w: &[f32], n_head: usize, rows: usize, cols: usize) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(w.len());
        // Output index order (h, i, j, c) reads input (h, j, i, c).
        for h in 0..n_head {
            for i in 0..half {
                for j in 0..2 {
                    let src = ((h * 2 + j) * half + i) * cols;
                    out.extend_from_slice(&w[src..src + cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_permute() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for &(n_head, head_dim, cols) in &[(9, 64, 5), (3, 64, 7), (4, 8, 1), (1, 2, 3)] {
            let rows = n_head * head_dim;
            let w: Vec<f32> = (0..rows * cols).map(|_| rng.random::<f32>()).collect();
            let p = permute_qk(&w, n_head, rows, cols).unwrap();
            assert_eq!(p, numpy_permute(&w, n_head, rows, cols));
            assert_eq!(unpermute_qk(&p, n_head, rows, cols).unwrap(), w);
            if head_dim > 2 {
                assert_ne!(p, w);
            }
        }
        assert!(unpermute_qk(&[0.0; 6], 2, 6, 1).is_err());
        assert!(unpermute_qk(&[0.0; 5], 1, 6, 1).is_err());
    }
}
