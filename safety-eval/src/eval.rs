//! Running a suite: batched generation, scoring by keywords and a judge,
//! per-sample records and rates.

use serde::{Deserialize, Serialize};

use crate::bootstrap::{BootstrapConfig, Rate};
use crate::chat::Message;
use crate::error::EvalError;
use crate::judge::{Judge, JudgeInput};
use crate::metrics::{compute_metrics, RateMetric};
use crate::model::{ChatModel, GenerationSettings};
use crate::refusal::{RefusalMode, RefusalScorer};
use crate::suite::{EvalSuite, Group, SuiteKind};

/// How to run a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    pub generation: GenerationSettings,
    /// Chats per `generate` call.
    pub batch_size: usize,
    pub bootstrap: BootstrapConfig,
    pub scorer: RefusalScorer,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            generation: GenerationSettings::default(),
            batch_size: 16,
            bootstrap: BootstrapConfig::default(),
            scorer: RefusalScorer::default(),
        }
    }
}

/// Progress of a run, reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

/// One scored generation: one line of the per-sample JSONL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub suite: String,
    pub id: String,
    pub group: Group,
    pub category: String,
    pub topic: String,
    pub prompt: String,
    pub messages: Vec<Message>,
    pub output: String,
    pub refused_substring: bool,
    pub refused_anchored: bool,
    /// Refusal strings found anywhere in the output.
    pub refusal_keywords: Vec<String>,
    pub judge: String,
    pub judge_refused: bool,
    pub judge_attack_success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_unsafe: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// Whether the output contains `marker` (manipulation suites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hit: Option<bool>,
    pub generation: GenerationSettings,
}

/// The result of one suite on one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    pub suite: String,
    pub kind: SuiteKind,
    pub model: String,
    pub judge: String,
    pub generation: GenerationSettings,
    pub bootstrap: BootstrapConfig,
    pub metrics: Vec<RateMetric>,
    pub samples: Vec<SampleRecord>,
}

impl SuiteReport {
    /// The rate of `metric` on `group` by `scorer`, if computed.
    pub fn metric(&self, metric: &str, group: Group, scorer: &str) -> Option<&Rate> {
        self.metrics
            .iter()
            .find(|m| m.metric == metric && m.group == group && m.scorer == scorer)
            .map(|m| &m.rate)
    }

    /// A Markdown table of every rate with its interval and n.
    pub fn table(&self) -> String {
        let mut s = format!(
            "suite `{}` · model `{}` · judge `{}`\n\n| metric | group | scorer | rate | 95% CI | n |\n|---|---|---|---|---|---|\n",
            self.suite, self.model, self.judge
        );
        for m in &self.metrics {
            s.push_str(&format!(
                "| {} | {} | {} | {:.3} | [{:.3}, {:.3}] | {} |\n",
                m.metric, m.group, m.scorer, m.rate.rate, m.rate.ci_low, m.rate.ci_high, m.rate.n
            ));
        }
        s
    }
}

/// Generate an answer for every item of `suite` (in batches of
/// `settings.batch_size`, calling `progress` after each), score the answers
/// and compute the rates.
pub fn run_suite(
    model: &mut dyn ChatModel,
    judge: &mut dyn Judge,
    suite: &EvalSuite,
    settings: &EvalSettings,
    progress: &mut dyn FnMut(Progress),
) -> Result<SuiteReport, EvalError> {
    if settings.batch_size == 0 {
        return Err(EvalError::Invalid("batch_size must be at least 1".into()));
    }
    let total = suite.items.len();
    let mut outputs = Vec::with_capacity(total);
    progress(Progress { done: 0, total });
    for (b, chunk) in suite.items.chunks(settings.batch_size).enumerate() {
        let chats: Vec<Vec<Message>> = chunk.iter().map(|i| i.messages.clone()).collect();
        let start = b * settings.batch_size;
        let got = model
            .generate(&chats, &settings.generation)
            .map_err(|source| EvalError::Model {
                what: format!(
                    "generating items {}..{} of suite {}",
                    start,
                    start + chunk.len(),
                    suite.name
                ),
                source,
            })?;
        if got.len() != chunk.len() {
            return Err(EvalError::Count {
                what: "generate".into(),
                expected: chunk.len(),
                got: got.len(),
            });
        }
        outputs.extend(got);
        progress(Progress {
            done: outputs.len(),
            total,
        });
    }
    score_outputs(&model.name(), suite, &outputs, judge, settings)
}

/// Score already generated `outputs` (one per item of `suite`, in order)
/// without running the model.
pub fn score_outputs(
    model_name: &str,
    suite: &EvalSuite,
    outputs: &[String],
    judge: &mut dyn Judge,
    settings: &EvalSettings,
) -> Result<SuiteReport, EvalError> {
    if outputs.len() != suite.items.len() {
        return Err(EvalError::Count {
            what: "outputs".into(),
            expected: suite.items.len(),
            got: outputs.len(),
        });
    }
    let judge_name = judge.name();
    let inputs: Vec<JudgeInput<'_>> = suite
        .items
        .iter()
        .zip(outputs)
        .map(|(i, o)| JudgeInput {
            prompt: &i.prompt,
            output: o,
        })
        .collect();
    let mut verdicts = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(settings.batch_size.max(1)) {
        let v = judge.judge(chunk).map_err(|source| EvalError::Judge {
            judge: judge_name.clone(),
            source,
        })?;
        if v.len() != chunk.len() {
            return Err(EvalError::Count {
                what: "judge".into(),
                expected: chunk.len(),
                got: v.len(),
            });
        }
        verdicts.extend(v);
    }
    let sc = &settings.scorer;
    let samples: Vec<SampleRecord> = suite
        .items
        .iter()
        .zip(outputs)
        .zip(&verdicts)
        .map(|((item, out), v)| SampleRecord {
            suite: suite.name.clone(),
            id: item.id.clone(),
            group: item.group,
            category: item.category.clone(),
            topic: item.topic.clone(),
            prompt: item.prompt.clone(),
            messages: item.messages.clone(),
            output: out.clone(),
            refused_substring: sc.refused_substring(out),
            refused_anchored: sc.refused_anchored(out),
            refusal_keywords: sc
                .matches(out, RefusalMode::Substring)
                .into_iter()
                .map(String::from)
                .collect(),
            judge: judge_name.clone(),
            judge_refused: v.refused,
            judge_attack_success: v.attack_success(),
            judge_unsafe: v.unsafe_output,
            judge_score: v.score,
            marker: item.marker.clone(),
            target_hit: item.marker.as_ref().map(|m| out.contains(m.as_str())),
            generation: settings.generation,
        })
        .collect();
    let metrics = compute_metrics(&samples, &judge_name, &settings.bootstrap);
    Ok(SuiteReport {
        suite: suite.name.clone(),
        kind: suite.kind,
        model: model_name.to_string(),
        judge: judge_name,
        generation: settings.generation,
        bootstrap: settings.bootstrap,
        metrics,
        samples,
    })
}
