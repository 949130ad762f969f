//! Writing a [`Llama`] back out as a Hugging Face model directory
//! (`config.json`, `model.safetensors` or shards, `tokenizer.json`,
//! `tokenizer_config.json` with the chat template, `generation_config.json`),
//! atomically through delta-core's writer: an interrupted save leaves no
//! directory behind.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use delta_core::{CheckpointError, CheckpointWriter, DType, WriteOptions};
use serde_json::json;

use crate::chat::ChatTemplate;
use crate::load::{F32Tensor, NamedTensors};
use crate::model::{transpose, Llama};
use crate::tokenizer::Tokenizer;

/// Errors of [`save_hf_dir`].
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Writing the checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The tokenizer cannot be serialized.
    #[error("cannot serialize the tokenizer: {0}")]
    Tokenizer(String),
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 data converts to Vec<f32>")
}

fn hf_linear<B: Backend>(w: Tensor<B, 2>) -> F32Tensor {
    let [in_f, out_f] = w.dims();
    F32Tensor {
        shape: vec![out_f, in_f],
        data: transpose(&values(w), in_f, out_f),
    }
}

impl<B: Backend> Llama<B> {
    /// Every weight under its HF name and layout (`[out, in]` projections);
    /// base + delta projections are materialized.
    pub fn to_hf_tensors(&self) -> NamedTensors {
        let mut out = NamedTensors::new();
        let h = self.config().hidden_size;
        let embed = self.embed_tokens.val();
        let [vocab, _] = embed.dims();
        out.insert(
            "model.embed_tokens.weight".into(),
            F32Tensor {
                shape: vec![vocab, h],
                data: values(embed),
            },
        );
        let norm = |t: Tensor<B, 1>| F32Tensor {
            shape: vec![h],
            data: values(t),
        };
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &l.self_attn;
            let m = &l.mlp;
            for (name, w) in [
                ("self_attn.q_proj", &a.q_proj),
                ("self_attn.k_proj", &a.k_proj),
                ("self_attn.v_proj", &a.v_proj),
                ("self_attn.o_proj", &a.o_proj),
                ("mlp.gate_proj", &m.gate_proj),
                ("mlp.up_proj", &m.up_proj),
                ("mlp.down_proj", &m.down_proj),
            ] {
                out.insert(format!("{p}.{name}.weight"), hf_linear(w.dense()));
            }
            out.insert(
                format!("{p}.input_layernorm.weight"),
                norm(l.input_layernorm.weight.val()),
            );
            out.insert(
                format!("{p}.post_attention_layernorm.weight"),
                norm(l.post_attention_layernorm.weight.val()),
            );
        }
        out.insert("model.norm.weight".into(), norm(self.norm.weight.val()));
        if let Some(head) = &self.lm_head {
            out.insert("lm_head.weight".into(), hf_linear(head.dense()));
        }
        out
    }
}

/// Writes `model` with its tokenizer and chat template as a HF directory at
/// `dir`, weights in `dtype`. The directory appears only when complete.
pub fn save_hf_dir<B: Backend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    chat_template: Option<&ChatTemplate>,
    dir: impl AsRef<Path>,
    dtype: DType,
    options: WriteOptions,
) -> Result<PathBuf, SaveError> {
    let mut writer = CheckpointWriter::create(dir.as_ref(), options)?;
    let mut config = model.config().to_hf_json();
    config["torch_dtype"] = json!(match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    });
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    writer.write_aux_file("config.json", &pretty(&config))?;
    let tok_json = tokenizer
        .inner()
        .to_string(false)
        .map_err(|e| SaveError::Tokenizer(e.to_string()))?;
    writer.write_aux_file("tokenizer.json", tok_json.as_bytes())?;
    let special = tokenizer.special_tokens();
    let mut tok_cfg = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": false,
        "add_eos_token": false,
        "bos_token": special.bos_token,
        "eos_token": special.eos_token,
        "pad_token": special.pad_token,
        "unk_token": special.unk_token,
        "model_max_length": model.config().max_position_embeddings,
    });
    if let Some(t) = chat_template {
        tok_cfg["chat_template"] = json!(t.source());
        writer.write_aux_file("chat_template.jinja", t.source().as_bytes())?;
    }
    writer.write_aux_file("tokenizer_config.json", &pretty(&tok_cfg))?;
    writer.write_aux_file(
        "generation_config.json",
        &pretty(&json!({
            "bos_token_id": tokenizer.bos_id(),
            "eos_token_id": tokenizer.eos_id(),
            "pad_token_id": tokenizer.pad_id(),
        })),
    )?;
    for (name, t) in model.to_hf_tensors() {
        writer.write_f32(&name, dtype, &t.shape, &t.data)?;
    }
    Ok(writer.finish()?)
}
