//! A base checkpoint and its fine-tune, checked to belong together; the delta
//! W_ft − W_base extracted one tensor at a time, and merged back.

use crate::checkpoint::{Checkpoint, TensorInfo, TensorView};
use crate::dtype;
use crate::error::{DeltaError, Difference, MismatchError};
use crate::selection::Selection;
use rayon::prelude::*;

/// `config.json` fields that must agree for two checkpoints to share weights
/// layouts. `vocab_size` is checked separately so the error says so plainly.
pub const ARCHITECTURE_FIELDS: &[&str] = &[
    "architectures",
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "tie_word_embeddings",
];

/// `config.json` fields that do not change tensor shapes but do change what
/// the weights compute. A delta file carries no config and `apply` writes the
/// base's, so a fine-tune that changed one of these would be silently run
/// with the base's value: the pair is refused instead, naming the field.
/// Rope settings are compared as their effective values (`rope_theta` /
/// `rope_scaling` or transformers 5's `rope_parameters`), numbers by value.
pub const NUMERICS_FIELDS: &[&str] = &[
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "max_position_embeddings",
    "hidden_act",
    "attention_bias",
    "mlp_bias",
];

/// What happens to one tensor of the fine-tuned model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Its delta against the base is compressed.
    Compress,
    /// The fine-tuned tensor is stored as is, at full precision.
    Carry,
}

/// One line of a compression plan.
#[derive(Debug, Clone)]
pub struct PlanEntry {
    /// The fine-tuned tensor's name, dtype and shape.
    pub info: TensorInfo,
    /// Whether its delta is compressed or the tensor carried.
    pub action: Action,
}

/// A base and a fine-tuned checkpoint with identical architecture, tensor
/// names, shapes and dtypes.
#[derive(Debug)]
pub struct DeltaPair {
    base: Checkpoint,
    finetuned: Checkpoint,
}

impl DeltaPair {
    /// Pair two checkpoints, or say every way in which they differ.
    pub fn new(base: Checkpoint, finetuned: Checkpoint) -> Result<DeltaPair, MismatchError> {
        let differences = differences(&base, &finetuned);
        if differences.is_empty() {
            Ok(DeltaPair { base, finetuned })
        } else {
            Err(MismatchError {
                base: base.dir().to_path_buf(),
                finetuned: finetuned.dir().to_path_buf(),
                differences,
            })
        }
    }

    /// Open and pair two HF directories.
    pub fn open(
        base: impl AsRef<std::path::Path>,
        finetuned: impl AsRef<std::path::Path>,
    ) -> Result<DeltaPair, DeltaError> {
        let base = Checkpoint::open(base)?;
        let finetuned = Checkpoint::open(finetuned)?;
        Ok(DeltaPair::new(base, finetuned)?)
    }

    /// The base checkpoint.
    pub fn base(&self) -> &Checkpoint {
        &self.base
    }

    /// The fine-tuned checkpoint.
    pub fn finetuned(&self) -> &Checkpoint {
        &self.finetuned
    }

    /// Every tensor with what `selection` does to it, in name order.
    pub fn plan(&self, selection: &Selection) -> Vec<PlanEntry> {
        self.finetuned
            .infos()
            .map(|info| PlanEntry {
                action: if selection.selects(&info.name, &info.shape) {
                    Action::Compress
                } else {
                    Action::Carry
                },
                info: info.clone(),
            })
            .collect()
    }

    /// Δ = W_ft − W_base for one tensor, in `f32`. Refuses NaN or Inf in
    /// either checkpoint or in the difference, naming the tensor and element.
    pub fn delta(&self, name: &str) -> Result<Vec<f32>, DeltaError> {
        let base = self.base.view(name)?;
        let ft = self.finetuned.view(name)?;
        let delta = delta_of(name, base, ft);
        self.base.release(name);
        self.finetuned.release(name);
        delta
    }
}

/// Δ = ft − base, decoded in parallel chunks (the conversion is memory-bound,
/// and both cores help).
pub fn delta_of(
    name: &str,
    base: TensorView<'_>,
    ft: TensorView<'_>,
) -> Result<Vec<f32>, DeltaError> {
    let n = base.info.num_elements();
    if ft.info.num_elements() != n {
        return Err(DeltaError::DeltaSize {
            tensor: name.to_string(),
            expected: n,
            got: ft.info.num_elements(),
        });
    }
    const CHUNK: usize = 1 << 16;
    let mut out = vec![0f32; n];
    let (bd, fd) = (base.info.dtype, ft.info.dtype);
    let (bs, fs) = (bd.size(), fd.size());
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .try_for_each(|(c, chunk)| {
            let start = c * CHUNK;
            let end = start + chunk.len();
            let b = dtype::decode(&base.bytes[start * bs..end * bs], bd);
            let f = dtype::decode(&ft.bytes[start * fs..end * fs], fd);
            for (i, ((o, &b), &f)) in chunk.iter_mut().zip(&b).zip(&f).enumerate() {
                let d = f - b;
                if !d.is_finite() {
                    let (which, value) = if !b.is_finite() {
                        ("the base", b)
                    } else if !f.is_finite() {
                        ("the fine-tune", f)
                    } else {
                        ("the delta", d)
                    };
                    return Err(DeltaError::NonFinite {
                        tensor: name.to_string(),
                        which,
                        index: start + i,
                        value,
                    });
                }
                *o = d;
            }
            Ok(())
        })?;
    Ok(out)
}

/// W = W_base + Δ̂, encoded in the base tensor's dtype. Refuses a delta of the
/// wrong length or a non-finite result.
pub fn add_delta(name: &str, base: TensorView<'_>, delta: &[f32]) -> Result<Vec<u8>, DeltaError> {
    let n = base.info.num_elements();
    if delta.len() != n {
        return Err(DeltaError::DeltaSize {
            tensor: name.to_string(),
            expected: n,
            got: delta.len(),
        });
    }
    let dt = base.info.dtype;
    const CHUNK: usize = 1 << 16;
    let mut out = vec![0u8; n * dt.size()];
    out.par_chunks_mut(CHUNK * dt.size())
        .enumerate()
        .try_for_each(|(c, bytes_out)| {
            let start = c * CHUNK;
            let len = bytes_out.len() / dt.size();
            let mut w = dtype::decode(
                &base.bytes[start * dt.size()..(start + len) * dt.size()],
                dt,
            );
            for (i, (w, d)) in w.iter_mut().zip(&delta[start..start + len]).enumerate() {
                *w += d;
                if !w.is_finite() {
                    return Err(DeltaError::NonFinite {
                        tensor: name.to_string(),
                        which: "the merged weight",
                        index: start + i,
                        value: *w,
                    });
                }
            }
            bytes_out.copy_from_slice(&dtype::encode(&w, dt));
            Ok(())
        })?;
    Ok(out)
}

/// The value of an architecture field, or the default transformers derives
/// when `config.json` leaves it out: `head_dim` = `hidden_size` /
/// `num_attention_heads`, `num_key_value_heads` = `num_attention_heads`, and
/// `tie_word_embeddings` = false for `llama` (`LlamaConfig`'s default).
///
/// Older configs (Llama-2's own, from 2023) omit `head_dim`, while
/// transformers ≥ 4.45 writes it out when it saves a fine-tune; without the
/// default such a pair would be refused although its weights agree.
/// The effective value of a [`NUMERICS_FIELDS`] entry: rope settings read
/// from either spelling transformers has used; a `default` rope type is no
/// scaling; an absent bias flag is `false` (Llama's default).
fn numerics_field(config: &serde_json::Value, field: &str) -> Option<serde_json::Value> {
    use serde_json::Value;
    let params = config.get("rope_parameters").filter(|v| v.is_object());
    match field {
        "rope_theta" => config
            .get("rope_theta")
            .filter(|v| !v.is_null())
            .or_else(|| params.and_then(|p| p.get("rope_theta")))
            .cloned(),
        "rope_scaling" => {
            let mut scaling = config
                .get("rope_scaling")
                .filter(|v| !v.is_null())
                .or(params)
                .cloned()?;
            if let Value::Object(m) = &mut scaling {
                m.remove("rope_theta");
                // transformers spells the type `rope_type` (new) or `type` (old).
                if let Some(t) = m.remove("type") {
                    m.entry("rope_type").or_insert(t);
                }
                let default = m.get("rope_type").and_then(Value::as_str) == Some("default");
                if m.is_empty() || (default && m.len() == 1) {
                    return None;
                }
            }
            Some(scaling)
        }
        "attention_bias" | "mlp_bias" => Some(
            config
                .get(field)
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(Value::Bool(false)),
        ),
        _ => config.get(field).filter(|v| !v.is_null()).cloned(),
    }
}

/// JSON equality with numbers compared by value (`10000` = `10000.0`).
fn same_json(a: Option<&serde_json::Value>, b: Option<&serde_json::Value>) -> bool {
    use serde_json::Value;
    match (a, b) {
        (None, None) => true,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.len() == y.len() && x.iter().all(|(k, v)| same_json(Some(v), y.get(k)))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(u, v)| same_json(Some(u), Some(v)))
        }
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn effective_field(config: &serde_json::Value, field: &str) -> Option<serde_json::Value> {
    if let Some(v) = config.get(field).filter(|v| !v.is_null()) {
        return Some(v.clone());
    }
    let int = |k: &str| config.get(k).and_then(serde_json::Value::as_u64);
    match field {
        "head_dim" => {
            let (hidden, heads) = (int("hidden_size")?, int("num_attention_heads")?);
            (heads > 0 && hidden % heads == 0).then(|| serde_json::json!(hidden / heads))
        }
        "num_key_value_heads" => int("num_attention_heads").map(|h| serde_json::json!(h)),
        "tie_word_embeddings" => {
            let llama = config.get("model_type").and_then(|m| m.as_str()) == Some("llama");
            llama.then_some(serde_json::Value::Bool(false))
        }
        _ => None,
    }
}

fn differences(base: &Checkpoint, ft: &Checkpoint) -> Vec<Difference> {
    let mut out = Vec::new();
    let (bc, fc) = (base.config_json(), ft.config_json());
    for field in ARCHITECTURE_FIELDS {
        let (b, f) = (effective_field(bc, field), effective_field(fc, field));
        if b != f {
            out.push(Difference::Architecture {
                field: field.to_string(),
                base: b.map_or_else(|| "unset".to_string(), |v| v.to_string()),
                finetuned: f.map_or_else(|| "unset".to_string(), |v| v.to_string()),
            });
        }
    }
    for field in NUMERICS_FIELDS {
        let (b, f) = (numerics_field(bc, field), numerics_field(fc, field));
        if !same_json(b.as_ref(), f.as_ref()) {
            out.push(Difference::Config {
                field: field.to_string(),
                base: b.map_or_else(|| "unset".to_string(), |v| v.to_string()),
                finetuned: f.map_or_else(|| "unset".to_string(), |v| v.to_string()),
            });
        }
    }
    let (bv, fv) = (
        bc.get("vocab_size").and_then(|v| v.as_u64()),
        fc.get("vocab_size").and_then(|v| v.as_u64()),
    );
    if bv != fv {
        out.push(Difference::VocabSize {
            base: bv,
            finetuned: fv,
        });
    }
    for b in base.infos() {
        match ft.info(&b.name) {
            None => out.push(Difference::MissingTensor(b.name.clone())),
            Some(f) => {
                if f.shape != b.shape {
                    out.push(Difference::Shape {
                        tensor: b.name.clone(),
                        base: b.shape.clone(),
                        finetuned: f.shape.clone(),
                    });
                } else if f.dtype != b.dtype {
                    out.push(Difference::DType {
                        tensor: b.name.clone(),
                        base: b.dtype,
                        finetuned: f.dtype,
                    });
                }
            }
        }
    }
    for f in ft.infos() {
        if !base.contains(&f.name) {
            out.push(Difference::ExtraTensor(f.name.clone()));
        }
    }
    out
}
