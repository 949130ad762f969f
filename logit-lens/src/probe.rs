//! Running the lens: decode every probe point of one or more models on one
//! prompt and collect per-cell statistics.
//!
//! [`run_lens`] probes one model; [`crate::compare()`] probes several on the same
//! tokens and adds pairwise divergences. Both share one engine, which keeps
//! only the selected rows' residual vectors, decodes them in batches of
//! [`LensOptions::batch_rows`] rows through [`LensModel::decode`], and reduces
//! each decoded row to statistics at once, so memory stays at
//! `models × batch_rows × vocab` floats for the logits.

use serde::{Deserialize, Serialize};

use crate::contrast::TokenContrast;
use crate::engine::run_engine;
use crate::error::{LensError, Result};
use crate::model::{LensModel, ProbePoint};

/// Which positions to decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// Every position.
    #[default]
    All,
    /// The last `n` positions (all if the prompt is shorter). The last
    /// position is where a chat model's answer starts.
    Last(usize),
    /// These positions (0-based), in this order.
    List(Vec<usize>),
}

impl Positions {
    pub(crate) fn resolve(&self, n: usize) -> Result<Vec<usize>> {
        let v: Vec<usize> = match self {
            Positions::All => (0..n).collect(),
            Positions::Last(k) => (n.saturating_sub(*k)..n).collect(),
            Positions::List(v) => v.clone(),
        };
        if v.is_empty() {
            return Err(LensError::Input("no position selected".into()));
        }
        if let Some(bad) = v.iter().find(|&&p| p >= n) {
            return Err(LensError::Input(format!(
                "position {bad} is out of range for {n} tokens"
            )));
        }
        Ok(v)
    }
}

/// Which probe points to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PointFilter {
    /// Every point the model exposes (embedding, mid, post).
    #[default]
    All,
    /// The embedding and the block outputs only (no `Mid`).
    BlockOutputs,
}

/// What to compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensOptions {
    /// How many top tokens to keep per cell (default 5).
    pub top_k: usize,
    /// Token ids whose `rank`, probability and log-probability are reported
    /// in every cell.
    pub targets: Vec<u32>,
    /// Sets for `log_prob_diff`; `None` leaves it out.
    pub contrast: Option<TokenContrast>,
    /// Positions to decode (default all).
    pub positions: Positions,
    /// Probe points to decode (default all).
    pub points: PointFilter,
    /// Rows (point × position) per [`LensModel::decode`] call (default 128).
    pub batch_rows: usize,
}

impl Default for LensOptions {
    fn default() -> Self {
        LensOptions {
            top_k: 5,
            targets: Vec::new(),
            contrast: None,
            positions: Positions::All,
            points: PointFilter::All,
            batch_rows: 128,
        }
    }
}

/// A token id with its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLabel {
    /// Token id.
    pub id: u32,
    /// Text as given by [`LensModel::token_text`].
    pub text: String,
}

/// One of the top-k tokens of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    /// Token id.
    pub id: u32,
    /// Token text.
    pub text: String,
    /// Probability.
    pub prob: f64,
    /// Natural log of `prob`.
    pub log_prob: f64,
}

/// Statistics of one target token in a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStat {
    /// Token id.
    pub id: u32,
    /// Token text.
    pub text: String,
    /// 0-based rank: how many tokens are strictly more probable.
    pub rank: usize,
    /// Probability.
    pub prob: f64,
    /// Natural log of `prob`.
    pub log_prob: f64,
}

/// Everything about one (probe point, position) cell: the lens distribution
/// `softmax(unembed(final_norm(h)))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellStats {
    /// Position in the input (0-based); the distribution predicts the token
    /// at `position + 1`.
    pub position: usize,
    /// Top-k tokens, most probable first.
    pub top: Vec<TokenProb>,
    /// Entropy of the lens distribution, nats.
    pub entropy: f64,
    /// `KL(final ‖ lens)` in nats, `final` being the model's own output
    /// distribution at this position (0 for the output row itself).
    pub forward_kl: f64,
    /// One entry per [`LensOptions::targets`] id, in that order.
    pub targets: Vec<TargetStat>,
    /// `logsumexp(log p[target set]) − logsumexp(log p[anti set])`, nats;
    /// `None` without a [`LensOptions::contrast`].
    pub log_prob_diff: Option<f64>,
}

impl CellStats {
    /// Probability of the most probable token (0 if `top_k` was 0).
    pub fn top1_prob(&self) -> f64 {
        self.top.first().map_or(0.0, |t| t.prob)
    }

    /// Text of the most probable token (empty if `top_k` was 0).
    pub fn top1_text(&self) -> &str {
        self.top.first().map_or("", |t| t.text.as_str())
    }
}

/// One row of the lens: a probe point at every selected position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointReport {
    /// The probe point.
    pub point: ProbePoint,
    /// Its label (`embed`, `L3.mid`, `L3.post`).
    pub label: String,
    /// One cell per selected position, in [`LensReport::positions`] order.
    pub cells: Vec<CellStats>,
}

/// The lens of one model on one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LensReport {
    /// The caller's name for the model (`base`, `fine-tune`, ...).
    pub model: String,
    /// The whole input.
    pub tokens: Vec<TokenLabel>,
    /// The selected positions (column order).
    pub positions: Vec<usize>,
    /// Rows in depth order (embedding first).
    pub points: Vec<PointReport>,
    /// The same statistics for the model's own final logits.
    pub output: Vec<CellStats>,
    /// Largest `|lens logit − model logit|` over the selected positions at the
    /// last block's output: the lens' self-check (should be ~1e-5 relative to
    /// the logits' scale). `None` if that point was not decoded.
    pub last_point_max_abs_logit_diff: Option<f64>,
}

impl LensReport {
    /// Index of `position` among the selected columns.
    pub fn column_of(&self, position: usize) -> Option<usize> {
        self.positions.iter().position(|&p| p == position)
    }

    /// `log_prob_diff` over the rows (depth order) at column `col`.
    pub fn log_prob_diff_curve(&self, col: usize) -> Vec<Option<f64>> {
        self.points
            .iter()
            .map(|p| p.cells.get(col).and_then(|c| c.log_prob_diff))
            .collect()
    }
}

/// Probes one model on `tokens`.
///
/// `name` labels the model in the report. Errors if the model's trace is
/// malformed, a token/target id is outside the vocabulary, or the model fails.
pub fn run_lens(
    name: &str,
    model: &dyn LensModel,
    tokens: &[u32],
    opts: &LensOptions,
) -> Result<LensReport> {
    let (mut reports, _) = run_engine(&[(name, model)], tokens, opts)?;
    Ok(reports.remove(0))
}
