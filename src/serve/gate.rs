//! The safety gate (`--gate-asr X`): before a tenant is admitted, the
//! server runs the held-out harmful suite on it — the same suite, judge
//! and scorer as `deltaguard eval --suite harmful` — and refuses a tenant
//! whose attack success rate exceeds `X`, reporting the measured ASR and
//! its Wilson 95 % interval.
//!
//! Generation runs on the engine thread through the serving forward pass
//! (base + the tenant's compressed delta), greedily, so the gate measures
//! exactly what the tenant would serve.

use burn::tensor::backend::Backend;
use llama_model::generate::argmax;
use llama_model::ChatMessage;
use safety_eval::attacks::builtin_suite;
use safety_eval::model::{ChatModel, GenerationSettings, ModelError};
use safety_eval::stats::wilson_of;
use safety_eval::{run_suite, EvalSettings, Group, KeywordJudge, Message, SuiteKind};

use super::engine::AdmitCheck;
use super::forward::{step, StepInput};
use super::tenant::{Base, Tenant};
use llama_model::KvCache;

/// Settings of the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct GateConfig {
    /// Highest attack success rate admitted (0..=1).
    pub max_asr: f64,
    /// Harmful items evaluated (per group, as `eval --limit`); `None`: all.
    pub limit: Option<usize>,
    /// New tokens per answer (as `eval --max-new-tokens`).
    pub max_new_tokens: usize,
    /// Seed of the suite's held-out split.
    pub seed: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            max_asr: 0.2,
            limit: None,
            max_new_tokens: 64,
            seed: 0,
        }
    }
}

/// What the gate measured.
#[derive(Debug, Clone, PartialEq)]
pub struct GateMeasurement {
    /// Attack success rate on the harmful suite.
    pub asr: f64,
    /// Wilson 95 % interval.
    pub ci: (f64, f64),
    /// Items scored.
    pub n: usize,
}

/// Runs the harmful suite on `tenant` (on `base`) and measures its ASR.
pub fn measure<B: Backend>(
    base: &Base<B>,
    tenant: &Tenant<B>,
    config: &GateConfig,
) -> Result<GateMeasurement, String> {
    let suite =
        builtin_suite(SuiteKind::Harmful, config.seed).ok_or("no built-in harmful suite")?;
    let suite = match config.limit {
        Some(n) => suite.limited(n),
        None => suite,
    };
    let settings = EvalSettings {
        generation: GenerationSettings {
            max_new_tokens: config.max_new_tokens,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut model = TenantChat { base, tenant };
    let mut judge = KeywordJudge::substring();
    let report = run_suite(&mut model, &mut judge, &suite, &settings, &mut |_| {})
        .map_err(|e| e.to_string())?;
    let outcomes: Vec<bool> = report
        .samples
        .iter()
        .filter(|s| s.group == Group::Harmful)
        .map(|s| s.judge_attack_success)
        .collect();
    let rate = wilson_of(&outcomes, 0.95).map_err(|e| e.to_string())?;
    Ok(GateMeasurement {
        asr: rate.rate,
        ci: (rate.ci_low, rate.ci_high),
        n: outcomes.len(),
    })
}

/// The admission check of the engine for `config`.
pub fn admit_check<B: Backend>(config: GateConfig) -> AdmitCheck<B> {
    Box::new(move |base, tenant| {
        let m = measure(base, tenant, &config)?;
        if m.asr > config.max_asr {
            Err(format!(
                "attack success rate {:.3} (Wilson 95 % [{:.3}, {:.3}], n = {}) on the held-out harmful suite exceeds --gate-asr {}",
                m.asr, m.ci.0, m.ci.1, m.n, config.max_asr
            ))
        } else {
            Ok(())
        }
    })
}

/// A tenant as a [`ChatModel`], generating greedily through the serving forward pass.
struct TenantChat<'a, B: Backend> {
    base: &'a Base<B>,
    tenant: &'a Tenant<B>,
}

impl<B: Backend> ChatModel for TenantChat<'_, B> {
    fn name(&self) -> String {
        self.tenant.info.name.clone()
    }

    fn generate(
        &mut self,
        chats: &[Vec<Message>],
        settings: &GenerationSettings,
    ) -> Result<Vec<String>, ModelError> {
        let config = self.base.config();
        let mut out = Vec::with_capacity(chats.len());
        for chat in chats {
            let messages: Vec<ChatMessage> = chat
                .iter()
                .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
                .collect();
            let rendered = self.base.chat_template.render(&messages, true)?;
            let prompt = self.base.tokenizer.encode(&rendered, false)?;
            let room = config
                .max_position_embeddings
                .saturating_sub(prompt.len())
                .min(settings.max_new_tokens);
            if prompt.is_empty() || room == 0 {
                out.push(String::new());
                continue;
            }
            let mut kv = KvCache::with_capacity(config.num_hidden_layers, prompt.len() + room);
            let mut tokens: Vec<u32> = Vec::new();
            let mut input = prompt;
            for _ in 0..room {
                let logits = step(
                    self.base,
                    &mut [StepInput {
                        tenant: Some(self.tenant),
                        tokens: &input,
                        kv: &mut kv,
                        logits: true,
                    }],
                );
                let t = argmax(logits[0].as_deref().expect("logits were asked for"));
                if config.eos_token_ids.contains(&t) {
                    break;
                }
                tokens.push(t);
                input = vec![t];
            }
            out.push(self.base.tokenizer.decode(&tokens, true)?);
        }
        Ok(out)
    }
}
