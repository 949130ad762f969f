//! Utility metrics, the lm-evaluation-harness way: multiple choice by
//! log-likelihood (`acc`, `acc_norm`), and `perplexity` / `bits_per_byte`
//! from rolling log-likelihoods.
//!
//! Multiple choice: the context is `"Question: {q}\nAnswer:"`, each
//! continuation `" {choice}"`. `acc` picks the choice with the highest summed
//! log-likelihood; `acc_norm` divides each by the choice's length in
//! characters (the choice text without the leading space, as lm-eval's
//! `completion_len = len(choice)`); ties go to the first choice (`np.argmax`).

use serde::{Deserialize, Serialize};

use crate::bootstrap::{BootstrapConfig, Rate};
use crate::data::MultipleChoice;
use crate::error::EvalError;
use crate::eval::Progress;
use crate::model::{LogLikelihoodModel, LoglikelihoodRequest};

/// The context given to the model for a question.
pub fn mc_context(question: &str) -> String {
    format!("Question: {question}\nAnswer:")
}

/// Index of the first maximum (like `np.argmax`); NaN never wins.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

/// `(pred, pred_norm)` from per-choice log-likelihoods and the choices.
pub fn mc_predictions(lls: &[f64], choices: &[String]) -> (usize, usize) {
    let norm: Vec<f64> = lls
        .iter()
        .zip(choices)
        .map(|(ll, c)| ll / (c.chars().count().max(1) as f64))
        .collect();
    (argmax(lls), argmax(&norm))
}

/// Per-question result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McRecord {
    pub id: String,
    pub gold: usize,
    pub loglikelihoods: Vec<f64>,
    pub pred: usize,
    pub pred_norm: usize,
    pub acc: bool,
    pub acc_norm: bool,
}

/// Multiple-choice accuracy with intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McReport {
    pub acc: Rate,
    pub acc_norm: Rate,
    pub records: Vec<McRecord>,
}

/// Evaluate `questions` with `batch_size` requests per model call.
pub fn evaluate_multiple_choice(
    model: &mut dyn LogLikelihoodModel,
    questions: &[MultipleChoice],
    batch_size: usize,
    bootstrap: &BootstrapConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<McReport, EvalError> {
    let mut requests = Vec::new();
    for q in questions {
        if q.choices.is_empty() || q.gold >= q.choices.len() {
            return Err(EvalError::Invalid(format!(
                "question {:?}: gold {} out of {} choices",
                q.id,
                q.gold,
                q.choices.len()
            )));
        }
        let context = mc_context(&q.question);
        for c in &q.choices {
            requests.push(LoglikelihoodRequest {
                context: context.clone(),
                continuation: format!(" {c}"),
            });
        }
    }
    let total = requests.len();
    let mut lls = Vec::with_capacity(total);
    progress(Progress { done: 0, total });
    for chunk in requests.chunks(batch_size.max(1)) {
        let got = model
            .loglikelihood(chunk)
            .map_err(|source| EvalError::Model {
                what: format!("scoring multiple-choice requests from {}", lls.len()),
                source,
            })?;
        if got.len() != chunk.len() {
            return Err(EvalError::Count {
                what: "loglikelihood".into(),
                expected: chunk.len(),
                got: got.len(),
            });
        }
        lls.extend(got.into_iter().map(|r| r.logprob));
        progress(Progress {
            done: lls.len(),
            total,
        });
    }
    let mut records = Vec::with_capacity(questions.len());
    let mut at = 0;
    for q in questions {
        let l = lls[at..at + q.choices.len()].to_vec();
        at += q.choices.len();
        let (pred, pred_norm) = mc_predictions(&l, &q.choices);
        records.push(McRecord {
            id: q.id.clone(),
            gold: q.gold,
            loglikelihoods: l,
            pred,
            pred_norm,
            acc: pred == q.gold,
            acc_norm: pred_norm == q.gold,
        });
    }
    let acc: Vec<bool> = records.iter().map(|r| r.acc).collect();
    let acc_norm: Vec<bool> = records.iter().map(|r| r.acc_norm).collect();
    Ok(McReport {
        acc: crate::metrics::wilson_or_bootstrap(&acc, bootstrap),
        acc_norm: crate::metrics::wilson_or_bootstrap(&acc_norm, bootstrap),
        records,
    })
}

/// Perplexity-type metrics over a set of texts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerplexityReport {
    /// Token perplexity `exp(−Σ logprob / Σ tokens)`.
    pub perplexity: f64,
    /// `−Σ logprob / (Σ bytes · ln 2)` (UTF-8 bytes), as lm-eval.
    pub bits_per_byte: f64,
    /// `exp(−Σ logprob / Σ bytes)`.
    pub byte_perplexity: f64,
    /// `exp(−Σ logprob / Σ words)`, words split on whitespace.
    pub word_perplexity: f64,
    pub logprob: f64,
    pub n_tokens: usize,
    pub n_bytes: usize,
    pub n_words: usize,
    pub n_texts: usize,
}

/// Perplexity metrics from totals.
pub fn perplexity_from_totals(
    logprob: f64,
    n_tokens: usize,
    n_bytes: usize,
    n_words: usize,
    n_texts: usize,
) -> PerplexityReport {
    let div = |n: usize| {
        if n == 0 {
            f64::NAN
        } else {
            -logprob / n as f64
        }
    };
    PerplexityReport {
        perplexity: div(n_tokens).exp(),
        bits_per_byte: div(n_bytes) / std::f64::consts::LN_2,
        byte_perplexity: div(n_bytes).exp(),
        word_perplexity: div(n_words).exp(),
        logprob,
        n_tokens,
        n_bytes,
        n_words,
        n_texts,
    }
}

/// Rolling log-likelihood of every text, aggregated.
pub fn evaluate_perplexity(
    model: &mut dyn LogLikelihoodModel,
    texts: &[String],
    batch_size: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<PerplexityReport, EvalError> {
    let (mut lp, mut toks) = (0.0, 0usize);
    let total = texts.len();
    progress(Progress { done: 0, total });
    let mut done = 0;
    for chunk in texts.chunks(batch_size.max(1)) {
        let got = model
            .loglikelihood_rolling(chunk)
            .map_err(|source| EvalError::Model {
                what: format!("rolling log-likelihood of texts from {done}"),
                source,
            })?;
        if got.len() != chunk.len() {
            return Err(EvalError::Count {
                what: "loglikelihood_rolling".into(),
                expected: chunk.len(),
                got: got.len(),
            });
        }
        for r in got {
            lp += r.logprob;
            toks += r.n_tokens;
        }
        done += chunk.len();
        progress(Progress { done, total });
    }
    let bytes = texts.iter().map(|t| t.len()).sum();
    let words = texts.iter().map(|t| t.split_whitespace().count()).sum();
    Ok(perplexity_from_totals(lp, toks, bytes, words, texts.len()))
}

/// Built-in held-out text for perplexity: the reference answers of the
/// benign topics held out by the default split with `seed`.
pub fn heldout_texts(seed: u64) -> Vec<String> {
    let b = crate::data::benign();
    let split = crate::split::TopicSplit::new(&b, crate::attacks::DEFAULT_HELD_OUT_FRACTION, seed);
    let (_, held) = split.partition(&b);
    let mut seen = std::collections::BTreeSet::new();
    held.into_iter()
        .filter(|x| seen.insert(x.topic.clone()))
        .map(|x| x.answer)
        .collect()
}

/// The built-in utility inputs: every built-in multiple-choice question and
/// [`heldout_texts`] for `seed` (what `--suite utility` evaluates).
pub fn builtin_utility_inputs(seed: u64) -> (Vec<MultipleChoice>, Vec<String>) {
    (crate::data::multiple_choice(), heldout_texts(seed))
}

/// Relative utility loss of `value` against `reference` (the uncompressed
/// fine-tune), positive when worse: `(ref − value)/ref` for metrics where
/// higher is better (accuracy), `(value − ref)/ref` where lower is better
/// (perplexity, bits per byte). 0 when the reference is 0.
pub fn utility_loss(reference: f64, value: f64, higher_is_better: bool) -> f64 {
    if reference == 0.0 {
        return 0.0;
    }
    if higher_is_better {
        (reference - value) / reference
    } else {
        (value - reference) / reference
    }
}

/// Utility of one model: multiple choice and perplexity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtilityReport {
    pub model: String,
    pub multiple_choice: McReport,
    pub perplexity: PerplexityReport,
}

/// Run both utility evaluations on the built-in data (or any questions/texts).
pub fn run_utility(
    model: &mut dyn LogLikelihoodModel,
    questions: &[MultipleChoice],
    texts: &[String],
    batch_size: usize,
    bootstrap: &BootstrapConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<UtilityReport, EvalError> {
    let multiple_choice =
        evaluate_multiple_choice(model, questions, batch_size, bootstrap, progress)?;
    let perplexity = evaluate_perplexity(model, texts, batch_size, progress)?;
    Ok(UtilityReport {
        model: model.name(),
        multiple_choice,
        perplexity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acc_norm_matches_hand_computation() {
        // choices of length 1, 10, 4 characters
        let choices: Vec<String> = ["a", "abcdefghij", "abcd"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let lls = [-3.0, -5.0, -4.0];
        // acc: argmax(-3, -5, -4) = 0
        // acc_norm: -3/1 = -3, -5/10 = -0.5, -4/4 = -1 → argmax = 1
        assert_eq!(mc_predictions(&lls, &choices), (0, 1));
        // ties go to the first index
        assert_eq!(argmax(&[1.0, 1.0, 0.0]), 0);
        // length counted in characters, not bytes: "éé" is 2 chars (4 bytes)
        let c2: Vec<String> = vec!["éé".into(), "abc".into()];
        // -2/2 = -1.0 vs -3.3/3 = -1.1 → 0
        assert_eq!(mc_predictions(&[-2.0, -3.3], &c2), (0, 0));
    }

    #[test]
    fn perplexity_and_bits_per_byte() {
        let r = perplexity_from_totals(-10.0, 5, 20, 4, 1);
        assert!((r.perplexity - 2f64.exp()).abs() < 1e-12);
        assert!((r.bits_per_byte - 0.5 / std::f64::consts::LN_2).abs() < 1e-12);
        assert!((r.word_perplexity - 2.5f64.exp()).abs() < 1e-12);
    }

    #[test]
    fn utility_loss_signs() {
        assert!((utility_loss(0.5, 0.45, true) - 0.1).abs() < 1e-12);
        assert!((utility_loss(10.0, 12.0, false) - 0.2).abs() < 1e-12);
        assert_eq!(utility_loss(0.0, 1.0, true), 0.0);
    }

    #[test]
    fn heldout_texts_nonempty() {
        let t = heldout_texts(0);
        assert!(t.len() >= 10);
    }
}
