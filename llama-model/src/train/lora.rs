//! LoRA (Hu et al. 2021) on the projections of a [`Llama`], PEFT's way:
//! `W x + (α/r)·B A dropout(x)`, `A` Kaiming-uniform, `B` zero, every other
//! weight frozen. Merge back into dense weights, or export the adapter in
//! PEFT's file layout.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::load::{F32Tensor, NamedTensors};
use crate::model::{transpose, LinearWeight, Llama, LoraDelta};

/// The projections of one decoder layer, by their HF short names.
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// LoRA hyper-parameters (PEFT's `LoraConfig` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r`.
    pub rank: usize,
    /// `lora_alpha`; the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// `lora_dropout` on the adapter input.
    pub dropout: f64,
    /// `target_modules`: short names such as `q_proj`, `v_proj`, or
    /// `all-linear` for every projection.
    pub targets: Vec<String>,
}

impl LoraConfig {
    /// Rank `rank`, α = 2·rank, no dropout, on `q_proj` and `v_proj` (PEFT's
    /// default targets for Llama).
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            alpha: 2.0 * rank as f64,
            dropout: 0.0,
            targets: vec!["q_proj".into(), "v_proj".into()],
        }
    }

    fn targets_projection(&self, projection: &str) -> bool {
        let short = projection.rsplit('.').next().unwrap_or(projection);
        self.targets
            .iter()
            .any(|t| t == "all-linear" || t == short || t == projection)
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("LoRA rank must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("LoRA dropout {} is not in [0, 1)", self.dropout));
        }
        for t in &self.targets {
            let known = t == "all-linear"
                || PROJECTIONS
                    .iter()
                    .any(|p| p == t || p.rsplit('.').next() == Some(t.as_str()));
            if !known {
                return Err(format!(
                    "unknown LoRA target `{t}` (use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or all-linear)"
                ));
            }
        }
        if self.targets.is_empty() {
            return Err("no LoRA target modules".into());
        }
        Ok(())
    }
}

/// Freezes every weight of `model` and puts a fresh adapter on each targeted
/// projection. Adapter weights are drawn from a ChaCha stream seeded by `seed`.
pub fn add_lora<B: Backend>(
    model: Llama<B>,
    config: &LoraConfig,
    seed: u64,
) -> Result<Llama<B>, String> {
    config.validate()?;
    let mut model = model.no_grad();
    let device = model.device();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scaling = config.alpha / config.rank as f64;
    for layer in 0..model.config().num_hidden_layers {
        for proj in PROJECTIONS {
            if !config.targets_projection(proj) {
                continue;
            }
            let name = format!("model.layers.{layer}.{proj}.weight");
            let mut failure = None;
            model.map_linear(&name, |w| match w {
                LinearWeight::Dense(base) => {
                    let [in_f, out_f] = base.val().dims();
                    // PEFT: kaiming_uniform_(a=√5) on lora_A [r, in] → U(−1/√in, 1/√in).
                    let bound = 1.0 / (in_f as f32).sqrt();
                    let a: Vec<f32> = (0..in_f * config.rank)
                        .map(|_| rng.random_range(-bound..bound))
                        .collect();
                    LinearWeight::Lora(LoraDelta {
                        base: base.set_require_grad(false),
                        a: Param::from_tensor(Tensor::from_data(
                            TensorData::new(a, [in_f, config.rank]),
                            &device,
                        )),
                        b: Param::from_tensor(Tensor::zeros([config.rank, out_f], &device)),
                        scaling,
                        dropout: config.dropout,
                    })
                }
                other => {
                    failure = Some(format!(
                        "{name} is not a plain dense weight; merge it before adding LoRA"
                    ));
                    other
                }
            });
            if let Some(f) = failure {
                return Err(f);
            }
        }
    }
    Ok(model)
}

/// Replaces every LoRA projection by its merged dense weight
/// `W + (α/r)·A·B` (PEFT's `merge_and_unload`).
pub fn merge_lora<B: Backend>(mut model: Llama<B>) -> Llama<B> {
    for name in lora_names(&model) {
        model.map_linear(&name, |w| match w {
            LinearWeight::Lora(_) => LinearWeight::Dense(Param::from_tensor(w.dense())),
            other => other,
        });
    }
    model
}

fn lora_names<B: Backend>(model: &Llama<B>) -> Vec<String> {
    let mut names = Vec::new();
    for layer in 0..model.config().num_hidden_layers {
        for proj in PROJECTIONS {
            let name = format!("model.layers.{layer}.{proj}.weight");
            if matches!(model.linear(&name), Some(LinearWeight::Lora(_))) {
                names.push(name);
            }
        }
    }
    names
}

/// The adapters as PEFT stores them in `adapter_model.safetensors`:
/// `base_model.model.model.layers.{i}.{proj}.lora_A.weight` `[r, in]` and
/// `…lora_B.weight` `[out, r]`.
pub fn adapter_tensors<B: Backend>(model: &Llama<B>) -> NamedTensors {
    let mut out = NamedTensors::new();
    for name in lora_names(model) {
        let Some(LinearWeight::Lora(d)) = model.linear(&name) else {
            continue;
        };
        let stem = name.trim_end_matches(".weight");
        let a = d.a.val();
        let b = d.b.val();
        let [in_f, r] = a.dims();
        let [_, out_f] = b.dims();
        let a_data: Vec<f32> = a.into_data().convert::<f32>().to_vec().unwrap_or_default();
        let b_data: Vec<f32> = b.into_data().convert::<f32>().to_vec().unwrap_or_default();
        out.insert(
            format!("base_model.model.{stem}.lora_A.weight"),
            F32Tensor {
                shape: vec![r, in_f],
                data: transpose(&a_data, in_f, r),
            },
        );
        out.insert(
            format!("base_model.model.{stem}.lora_B.weight"),
            F32Tensor {
                shape: vec![out_f, r],
                data: transpose(&b_data, r, out_f),
            },
        );
    }
    out
}

/// PEFT's `adapter_config.json` for [`adapter_tensors`].
pub fn adapter_config_json(config: &LoraConfig, base_model: &str) -> serde_json::Value {
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": config.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
    })
}
