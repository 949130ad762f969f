//! [`LlamaConfig`]: the hyper-parameters of a Llama, read from a Hugging Face
//! `config.json` or written in code.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ConfigError;

/// Upper bounds [`LlamaConfig::validate`] enforces on the shape fields: far
/// above any released Llama (the largest have about 126 layers, widths up to
/// 25 600, vocabularies near 260 000 and contexts of 10 M tokens), low enough
/// that a corrupt or hostile `config.json` / GGUF cannot make the loader ask
/// for terabytes before a single tensor is checked.
pub mod limits {
    /// `num_hidden_layers`.
    pub const LAYERS: usize = 1024;
    /// `hidden_size`.
    pub const HIDDEN_SIZE: usize = 1 << 17;
    /// `intermediate_size`.
    pub const INTERMEDIATE_SIZE: usize = 1 << 19;
    /// `num_attention_heads` and `num_key_value_heads`.
    pub const HEADS: usize = 1024;
    /// `head_dim`.
    pub const HEAD_DIM: usize = 1024;
    /// `num_attention_heads × head_dim` (the width of the query projection).
    pub const ATTENTION_WIDTH: usize = 1 << 18;
    /// `vocab_size`.
    pub const VOCAB_SIZE: usize = 1 << 22;
    /// `max_position_embeddings` (and RoPE scaling's original context length).
    pub const POSITIONS: usize = 1 << 24;
}

/// RoPE frequency scaling, as `rope_scaling` / `rope_parameters` describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    /// Position interpolation: every inverse frequency divided by `factor`.
    Linear {
        /// Scaling factor.
        factor: f64,
    },
    /// Llama 3.1's wavelength-dependent scaling.
    Llama3 {
        /// Scaling factor for low frequencies.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled fully.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// Context length of the unscaled model.
        original_max_position_embeddings: usize,
    },
    /// Dynamic NTK: θ grows with the sequence length once it passes
    /// `original_max_position_embeddings`.
    DynamicNtk {
        /// Scaling factor.
        factor: f64,
        /// Context length of the unscaled model.
        original_max_position_embeddings: usize,
    },
}

/// Hyper-parameters of a Llama-2-family decoder.
///
/// Fields follow the names of HF's `LlamaConfig`. Build one with
/// [`LlamaConfig::from_file`] / [`LlamaConfig::from_json`] or, for tests,
/// [`LlamaConfig::tiny`] and struct update syntax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// ε of every RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// RoPE frequency scaling, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// Whether the LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Context length the model was trained for.
    pub max_position_embeddings: usize,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (HF allows a list).
    pub eos_token_ids: Vec<u32>,
    /// Padding token, if the checkpoint names one.
    pub pad_token_id: Option<u32>,
}

impl LlamaConfig {
    /// A tiny configuration for tests: vocabulary 320, width 64, MLP 176,
    /// 2 layers, 8 heads of 8, 2 KV heads, θ = 10 000 — the shape of the
    /// reference fixtures. Adjust with struct update syntax.
    pub fn tiny() -> Self {
        Self {
            vocab_size: 320,
            hidden_size: 64,
            intermediate_size: 176,
            num_hidden_layers: 2,
            num_attention_heads: 8,
            num_key_value_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            tie_word_embeddings: false,
            max_position_embeddings: 256,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            pad_token_id: None,
        }
    }

    /// Llama-2-7B's shape (vocabulary 32 000, width 4096, 32 layers, 32 heads).
    pub fn llama2_7b() -> Self {
        Self {
            vocab_size: 32_000,
            hidden_size: 4096,
            intermediate_size: 11_008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            tie_word_embeddings: false,
            max_position_embeddings: 4096,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            pad_token_id: None,
        }
    }

    /// Reads `config.json` from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&value, &path.display().to_string())
    }

    /// Reads `config.json` from a Hugging Face model directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_file(dir.as_ref().join("config.json"))
    }

    /// Interprets a parsed `config.json`; `origin` names it in errors.
    pub fn from_json(v: &Value, origin: &str) -> Result<Self, ConfigError> {
        let f = Fields { v, origin };
        if let Some(mt) = v.get("model_type").and_then(Value::as_str) {
            if !matches!(mt, "llama" | "mistral") {
                return Err(f.unsupported("model_type", format!("`{mt}` is not a Llama")));
            }
        }
        if let Some(act) = v.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(f.unsupported("hidden_act", format!("`{act}` (only silu)")));
            }
        }
        for field in ["attention_bias", "mlp_bias"] {
            if v.get(field).and_then(Value::as_bool) == Some(true) {
                return Err(f.unsupported(field, "biases are not implemented".into()));
            }
        }

        let hidden_size = f.usize_req("hidden_size")?;
        let num_attention_heads = f.usize_req("num_attention_heads")?;
        let num_key_value_heads = f
            .usize_opt("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        let head_dim = match f.usize_opt("head_dim")? {
            Some(h) => h,
            None => {
                if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
                    return Err(f.invalid(
                        "num_attention_heads",
                        format!("{num_attention_heads} does not divide hidden_size {hidden_size}"),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        let max_position_embeddings = f.usize_opt("max_position_embeddings")?.unwrap_or(2048);

        // θ and scaling: transformers 5 writes `rope_parameters`, older versions
        // `rope_theta` + `rope_scaling`.
        let rope_params = v.get("rope_parameters").filter(|p| !p.is_null());
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")) {
            Some(t) => t
                .as_f64()
                .ok_or_else(|| f.invalid("rope_parameters.rope_theta", "not a number".into()))?,
            None => f.f64_opt("rope_theta")?.unwrap_or(10_000.0),
        };
        let scaling_value = match v.get("rope_scaling").filter(|p| !p.is_null()) {
            Some(s) => Some(("rope_scaling", s)),
            None => rope_params.map(|p| ("rope_parameters", p)),
        };
        let rope_scaling = match scaling_value {
            Some((name, s)) => parse_rope_scaling(s, name, origin, max_position_embeddings)?,
            None => None,
        };

        let eos_token_ids = match v.get("eos_token_id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_u64()
                        .and_then(|x| u32::try_from(x).ok())
                        .ok_or_else(|| {
                            f.invalid("eos_token_id", format!("{i} is not a token id (u32)"))
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(x) => vec![x
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| {
                    f.invalid("eos_token_id", format!("{x} is not a token id (u32)"))
                })?],
        };

        let cfg = Self {
            vocab_size: f.usize_req("vocab_size")?,
            hidden_size,
            intermediate_size: f.usize_req("intermediate_size")?,
            num_hidden_layers: f.usize_req("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.f64_opt("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            tie_word_embeddings: match v.get("tie_word_embeddings") {
                None | Some(Value::Null) => false,
                Some(b) => b
                    .as_bool()
                    .ok_or_else(|| f.invalid("tie_word_embeddings", "not a boolean".into()))?,
            },
            max_position_embeddings,
            bos_token_id: f.token_id_opt("bos_token_id")?,
            eos_token_ids,
            pad_token_id: f.token_id_opt("pad_token_id")?,
        };
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Checks the numbers before anything is allocated from them: every size
    /// positive and within [`limits`], heads dividing, ε and θ finite, RoPE
    /// scaling parameters positive and finite.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| ConfigError::InvalidField {
            field: field.into(),
            origin: origin.into(),
            reason,
        };
        for (name, value, limit) in [
            ("vocab_size", self.vocab_size, limits::VOCAB_SIZE),
            ("hidden_size", self.hidden_size, limits::HIDDEN_SIZE),
            (
                "intermediate_size",
                self.intermediate_size,
                limits::INTERMEDIATE_SIZE,
            ),
            ("num_hidden_layers", self.num_hidden_layers, limits::LAYERS),
            (
                "num_attention_heads",
                self.num_attention_heads,
                limits::HEADS,
            ),
            (
                "num_key_value_heads",
                self.num_key_value_heads,
                limits::HEADS,
            ),
            ("head_dim", self.head_dim, limits::HEAD_DIM),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                limits::POSITIONS,
            ),
        ] {
            if value == 0 {
                return Err(bad(name, "must be positive".into()));
            }
            if value > limit {
                return Err(bad(
                    name,
                    format!("{value} exceeds this crate's limit of {limit}"),
                ));
            }
        }
        // Bounded factors above, so the product cannot overflow.
        let q_width = self.num_attention_heads * self.head_dim;
        if q_width > limits::ATTENTION_WIDTH {
            return Err(bad(
                "num_attention_heads",
                format!(
                    "{} heads × head_dim {} = {q_width} exceeds this crate's limit of {}",
                    self.num_attention_heads,
                    self.head_dim,
                    limits::ATTENTION_WIDTH
                ),
            ));
        }
        if self.num_key_value_heads > self.num_attention_heads {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "{} exceeds num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad("head_dim", format!("{} is odd", self.head_dim)));
        }
        if !self.rms_norm_eps.is_finite() || self.rms_norm_eps < 0.0 {
            return Err(bad(
                "rms_norm_eps",
                format!("{} must be finite and non-negative", self.rms_norm_eps),
            ));
        }
        if !self.rope_theta.is_finite() || self.rope_theta <= 0.0 {
            return Err(bad(
                "rope_theta",
                format!("{} must be finite and positive", self.rope_theta),
            ));
        }
        let positive = |field: &str, x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(bad(field, format!("{x} must be finite and positive")))
            }
        };
        let original = |field: &str, n: usize| {
            if n == 0 || n > limits::POSITIONS {
                Err(bad(
                    field,
                    format!("{n} must be in 1..={}", limits::POSITIONS),
                ))
            } else {
                Ok(())
            }
        };
        match &self.rope_scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => positive("rope_scaling.factor", *factor)?,
            Some(RopeScaling::DynamicNtk {
                factor,
                original_max_position_embeddings,
            }) => {
                positive("rope_scaling.factor", *factor)?;
                original(
                    "rope_scaling.original_max_position_embeddings",
                    *original_max_position_embeddings,
                )?;
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                positive("rope_scaling.factor", *factor)?;
                positive("rope_scaling.low_freq_factor", *low_freq_factor)?;
                positive("rope_scaling.high_freq_factor", *high_freq_factor)?;
                if high_freq_factor <= low_freq_factor {
                    return Err(bad(
                        "rope_scaling.high_freq_factor",
                        format!("{high_freq_factor} must exceed low_freq_factor {low_freq_factor}"),
                    ));
                }
                original(
                    "rope_scaling.original_max_position_embeddings",
                    *original_max_position_embeddings,
                )?;
            }
        }
        Ok(())
    }

    /// Query heads per key/value head.
    pub fn n_rep(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// The configuration as a HF `config.json` value (transformers 5 layout),
    /// so that what we write loads in transformers.
    pub fn to_hf_json(&self) -> Value {
        let mut rope = serde_json::json!({ "rope_theta": self.rope_theta, "rope_type": "default" });
        match &self.rope_scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => {
                rope["rope_type"] = "linear".into();
                rope["factor"] = (*factor).into();
            }
            Some(RopeScaling::DynamicNtk {
                factor,
                original_max_position_embeddings,
            }) => {
                rope["rope_type"] = "dynamic".into();
                rope["factor"] = (*factor).into();
                rope["original_max_position_embeddings"] =
                    (*original_max_position_embeddings).into();
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                rope["rope_type"] = "llama3".into();
                rope["factor"] = (*factor).into();
                rope["low_freq_factor"] = (*low_freq_factor).into();
                rope["high_freq_factor"] = (*high_freq_factor).into();
                rope["original_max_position_embeddings"] =
                    (*original_max_position_embeddings).into();
            }
        }
        let eos: Value = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => (*one).into(),
            many => many.to_vec().into(),
        };
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "attention_bias": false,
            "mlp_bias": false,
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
        })
    }
}

fn parse_rope_scaling(
    s: &Value,
    name: &str,
    origin: &str,
    max_position_embeddings: usize,
) -> Result<Option<RopeScaling>, ConfigError> {
    let f = Fields { v: s, origin };
    let field = |k: &str| format!("{name}.{k}");
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let factor = || -> Result<f64, ConfigError> {
        match s.get("factor") {
            Some(x) => x.as_f64().ok_or_else(|| ConfigError::InvalidField {
                field: field("factor"),
                origin: origin.into(),
                reason: "not a number".into(),
            }),
            None => Err(ConfigError::MissingField {
                field: field("factor"),
                origin: origin.into(),
            }),
        }
    };
    let original = || -> Result<usize, ConfigError> {
        Ok(f.usize_opt("original_max_position_embeddings")?
            .unwrap_or(max_position_embeddings))
    };
    let scaling = match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear { factor: factor()? }),
        "dynamic" => Some(RopeScaling::DynamicNtk {
            factor: factor()?,
            original_max_position_embeddings: original()?,
        }),
        "llama3" => Some(RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: f.f64_opt("low_freq_factor")?.ok_or_else(|| {
                ConfigError::MissingField {
                    field: field("low_freq_factor"),
                    origin: origin.into(),
                }
            })?,
            high_freq_factor: f.f64_opt("high_freq_factor")?.ok_or_else(|| {
                ConfigError::MissingField {
                    field: field("high_freq_factor"),
                    origin: origin.into(),
                }
            })?,
            original_max_position_embeddings: original()?,
        }),
        other => {
            return Err(ConfigError::Unsupported {
                field: field("rope_type"),
                origin: origin.into(),
                reason: format!("`{other}` (supported: default, linear, dynamic, llama3)"),
            })
        }
    };
    if let Some(RopeScaling::Linear { factor } | RopeScaling::DynamicNtk { factor, .. }) = &scaling
    {
        if factor.is_nan() || *factor <= 0.0 {
            return Err(ConfigError::InvalidField {
                field: field("factor"),
                origin: origin.into(),
                reason: "must be positive".into(),
            });
        }
    }
    Ok(scaling)
}

/// Typed access to the fields of one JSON object, with errors naming the field.
struct Fields<'a> {
    v: &'a Value,
    origin: &'a str,
}

impl Fields<'_> {
    fn invalid(&self, field: &str, reason: String) -> ConfigError {
        ConfigError::InvalidField {
            field: field.into(),
            origin: self.origin.into(),
            reason,
        }
    }
    fn unsupported(&self, field: &str, reason: String) -> ConfigError {
        ConfigError::Unsupported {
            field: field.into(),
            origin: self.origin.into(),
            reason,
        }
    }
    fn usize_opt(&self, field: &str) -> Result<Option<usize>, ConfigError> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                self.invalid(field, format!("expected a non-negative integer, found {x}"))
            }),
        }
    }
    fn token_id_opt(&self, field: &str) -> Result<Option<u32>, ConfigError> {
        self.usize_opt(field)?
            .map(|n| {
                u32::try_from(n)
                    .map_err(|_| self.invalid(field, format!("{n} is not a token id (u32)")))
            })
            .transpose()
    }
    fn usize_req(&self, field: &str) -> Result<usize, ConfigError> {
        self.usize_opt(field)?
            .ok_or_else(|| ConfigError::MissingField {
                field: field.into(),
                origin: self.origin.into(),
            })
    }
    fn f64_opt(&self, field: &str) -> Result<Option<f64>, ConfigError> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.invalid(field, format!("expected a number, found {x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "model_type": "llama", "vocab_size": 320, "hidden_size": 64,
            "intermediate_size": 176, "num_hidden_layers": 2,
            "num_attention_heads": 8, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "eos_token_id": 2, "bos_token_id": 1
        })
    }

    #[test]
    fn reads_rope_parameters_and_legacy_rope_theta() {
        let mut v = base();
        v["rope_parameters"] = json!({"rope_theta": 500000.0, "rope_type": "default"});
        let c = LlamaConfig::from_json(&v, "t").unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.head_dim, 8);
        assert!(c.rope_scaling.is_none());
        let mut v = base();
        v["rope_theta"] = json!(1234.0);
        v["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
        let c = LlamaConfig::from_json(&v, "t").unwrap();
        assert_eq!(c.rope_theta, 1234.0);
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
    }

    #[test]
    fn reads_llama3_scaling_and_eos_list() {
        let mut v = base();
        v["eos_token_id"] = json!([2, 7]);
        v["rope_parameters"] = json!({"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let c = LlamaConfig::from_json(&v, "t").unwrap();
        assert_eq!(c.eos_token_ids, vec![2, 7]);
        assert!(matches!(
            c.rope_scaling,
            Some(RopeScaling::Llama3 {
                original_max_position_embeddings: 8192,
                ..
            })
        ));
        let back = LlamaConfig::from_json(&c.to_hf_json(), "t").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn errors_name_field_and_origin() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("hidden_size");
        let e = LlamaConfig::from_json(&v, "x/config.json").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("hidden_size") && msg.contains("x/config.json"),
            "{msg}"
        );
        let mut v = base();
        v["num_key_value_heads"] = json!(3);
        let e = LlamaConfig::from_json(&v, "c").unwrap_err();
        assert!(e.to_string().contains("num_key_value_heads"));
        let mut v = base();
        v["vocab_size"] = json!("big");
        assert!(matches!(
            LlamaConfig::from_json(&v, "c"),
            Err(ConfigError::InvalidField { field, .. }) if field == "vocab_size"
        ));
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 2.0});
        assert!(matches!(
            LlamaConfig::from_json(&v, "c"),
            Err(ConfigError::Unsupported { .. })
        ));
    }

    /// Issue 14: `num_hidden_layers` = 2^31 aborted on a huge allocation in
    /// the loader; now the configuration is refused, naming field and value.
    #[test]
    fn absurd_sizes_are_refused_naming_field_and_value() {
        for (field, value) in [
            ("num_hidden_layers", json!(1u64 << 31)),
            ("hidden_size", json!(1u64 << 40)),
            ("intermediate_size", json!(1u64 << 33)),
            ("vocab_size", json!(1u64 << 32)),
            ("max_position_embeddings", json!(1u64 << 40)),
            ("num_attention_heads", json!(1u64 << 20)),
            ("head_dim", json!(1u64 << 20)),
        ] {
            let mut v = base();
            v[field] = value.clone();
            let msg = match LlamaConfig::from_json(&v, "big/config.json") {
                Err(ConfigError::InvalidField {
                    field: f,
                    reason,
                    origin,
                }) => {
                    assert_eq!(origin, "big/config.json");
                    format!("{f}: {reason}")
                }
                other => panic!("{field} = {value}: expected InvalidField, got {other:?}"),
            };
            assert!(
                msg.contains(&value.to_string()),
                "{field}: message names the value: {msg}"
            );
        }
        // A head count that does not divide the width is named too.
        let mut v = base();
        v["num_attention_heads"] = json!(7);
        let e = LlamaConfig::from_json(&v, "c").unwrap_err().to_string();
        assert!(e.contains("num_attention_heads") && e.contains('7'), "{e}");
        // Token ids beyond u32 are not silently truncated.
        let mut v = base();
        v["bos_token_id"] = json!(1u64 << 32);
        assert!(matches!(
            LlamaConfig::from_json(&v, "c"),
            Err(ConfigError::InvalidField { field, .. }) if field == "bos_token_id"
        ));
        // Non-finite ε and scaling factors.
        let mut c = LlamaConfig::tiny();
        c.rms_norm_eps = f64::INFINITY;
        assert!(c
            .validate("c")
            .unwrap_err()
            .to_string()
            .contains("rms_norm_eps"));
        let mut c = LlamaConfig::tiny();
        c.rope_scaling = Some(RopeScaling::DynamicNtk {
            factor: f64::INFINITY,
            original_max_position_embeddings: 256,
        });
        assert!(c.validate("c").unwrap_err().to_string().contains("factor"));
        // The limits themselves are accepted.
        let mut c = LlamaConfig::tiny();
        c.num_hidden_layers = limits::LAYERS;
        c.max_position_embeddings = limits::POSITIONS;
        c.validate("c").unwrap();
    }
}
