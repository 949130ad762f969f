//! The small traits through which this crate talks to a model.
//!
//! Both are object safe and batch oriented; implement them for your model type
//! where that type lives (the `deltaguard` root package does it for
//! llama-model). Errors are boxed so that any backend error fits.

use serde::{Deserialize, Serialize};

use crate::chat::Message;

/// Any error a model implementation wants to report.
pub type ModelError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How tokens are chosen during generation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Sampling {
    /// Argmax decoding: deterministic.
    Greedy,
    /// Temperature plus nucleus (top-p) sampling from a seeded generator.
    Sample {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

/// Generation settings, recorded with every sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GenerationSettings {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
}

impl Default for GenerationSettings {
    /// 64 new tokens, greedy: enough to see whether an answer opens with a refusal.
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            sampling: Sampling::Greedy,
        }
    }
}

/// A model that answers chats.
pub trait ChatModel {
    /// A short identifier recorded in reports (e.g. a path or model id).
    fn name(&self) -> String;

    /// Generate one assistant reply per chat, in order. The returned text is
    /// the new text only (no prompt, no special tokens).
    fn generate(
        &mut self,
        chats: &[Vec<Message>],
        settings: &GenerationSettings,
    ) -> Result<Vec<String>, ModelError>;
}

/// One lm-evaluation-harness `loglikelihood` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoglikelihoodRequest {
    pub context: String,
    pub continuation: String,
}

/// The answer to a [`LoglikelihoodRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Loglikelihood {
    /// Sum of natural-log probabilities of the continuation tokens given the context.
    pub logprob: f64,
    /// Whether greedy decoding from the context would produce exactly the continuation.
    pub is_greedy: bool,
    /// Number of continuation tokens scored.
    pub n_tokens: usize,
}

/// The answer to a rolling (whole-text) log-likelihood request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RollingLoglikelihood {
    /// Sum of natural-log probabilities of every token of the text.
    pub logprob: f64,
    /// Number of tokens scored.
    pub n_tokens: usize,
}

/// A model that scores text, lm-evaluation-harness style.
pub trait LogLikelihoodModel {
    /// A short identifier recorded in reports.
    fn name(&self) -> String;

    /// Score each continuation given its context, in order.
    fn loglikelihood(
        &mut self,
        requests: &[LoglikelihoodRequest],
    ) -> Result<Vec<Loglikelihood>, ModelError>;

    /// Score each whole text (windowed as the model needs), in order.
    fn loglikelihood_rolling(
        &mut self,
        texts: &[String],
    ) -> Result<Vec<RollingLoglikelihood>, ModelError>;
}
