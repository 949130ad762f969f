//! Several models (base, fine-tune, compressed fine-tune) on the same prompt:
//! per-model lens reports, pairwise divergences at every cell, and curves
//! over depth at one position.

use serde::{Deserialize, Serialize};

use crate::engine::run_engine;
use crate::error::{LensError, Result};
use crate::model::{LensModel, ProbePoint};
use crate::probe::{LensOptions, LensReport, TokenLabel};

/// Identifier of the JSON layout written by [`Comparison::to_json`].
pub const SCHEMA: &str = "deltaguard.logit-lens.v1";

/// Divergences between two models' lens distributions at one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergenceCell {
    /// Input position.
    pub position: usize,
    /// `KL(P_a ‖ P_b)`, nats.
    pub kl_divergence: f64,
    /// Jensen–Shannon divergence, nats, in `[0, ln 2]`.
    pub js_divergence: f64,
    /// Total variation distance, in `[0, 1]`.
    pub total_variation: f64,
}

/// One row of a pair's divergences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairPoint {
    /// The probe point.
    pub point: ProbePoint,
    /// Its label.
    pub label: String,
    /// One cell per selected position.
    pub cells: Vec<DivergenceCell>,
}

/// Divergences between models `a` and `b` (`a` comes first in the model
/// list; `kl_divergence` is `KL(P_a ‖ P_b)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairDivergence {
    /// Name of the first model.
    pub a: String,
    /// Name of the second model.
    pub b: String,
    /// Rows in depth order, as in the models' reports.
    pub points: Vec<PairPoint>,
    /// Divergences of the models' own output distributions.
    pub output: Vec<DivergenceCell>,
}

/// Which divergence to plot or extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Divergence {
    /// `kl_divergence`.
    Kl,
    /// `js_divergence`.
    Js,
    /// `total_variation`.
    Tv,
}

impl Divergence {
    /// The statistic's name (`kl_divergence`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Divergence::Kl => "kl_divergence",
            Divergence::Js => "js_divergence",
            Divergence::Tv => "total_variation",
        }
    }

    /// Picks this divergence out of a cell.
    pub fn of(self, c: &DivergenceCell) -> f64 {
        match self {
            Divergence::Kl => c.kl_divergence,
            Divergence::Js => c.js_divergence,
            Divergence::Tv => c.total_variation,
        }
    }
}

/// Per-model statistics over depth at one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCurves {
    /// Model name.
    pub model: String,
    /// `log_prob_diff` per row (`null` without a contrast).
    pub log_prob_diff: Vec<Option<f64>>,
    /// Entropy per row, nats.
    pub entropy: Vec<f64>,
    /// `forward_kl` per row, nats.
    pub forward_kl: Vec<f64>,
    /// Top-1 token text per row.
    pub top1: Vec<String>,
    /// Top-1 probability per row.
    pub top1_prob: Vec<f64>,
}

/// Pairwise divergences over depth at one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairCurves {
    /// First model.
    pub a: String,
    /// Second model.
    pub b: String,
    /// `KL(P_a ‖ P_b)` per row.
    pub kl_divergence: Vec<f64>,
    /// JS divergence per row.
    pub js_divergence: Vec<f64>,
    /// Total variation per row.
    pub total_variation: Vec<f64>,
}

/// Curves over depth (rows in depth order) at one input position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    /// The input position.
    pub position: usize,
    /// Row labels (x axis).
    pub points: Vec<String>,
    /// One entry per model.
    pub models: Vec<ModelCurves>,
    /// One entry per pair, as in [`Comparison::pairs`].
    pub pairs: Vec<PairCurves>,
}

/// The lens of several models on one prompt; also the JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Version of this crate that wrote it.
    pub version: String,
    /// The options used.
    pub options: LensOptions,
    /// The whole input.
    pub tokens: Vec<TokenLabel>,
    /// Selected positions (columns).
    pub positions: Vec<usize>,
    /// Probe points (rows), depth order.
    pub points: Vec<ProbePoint>,
    /// Per-model reports, in the order given.
    pub models: Vec<LensReport>,
    /// Every pair `(i, j)`, `i < j`: (0,1), (0,2), ..., (1,2), ...
    pub pairs: Vec<PairDivergence>,
    /// Curves at the last selected position (where the answer starts).
    pub curves: Curves,
}

/// Probes every model on the same `tokens` and compares them.
///
/// Models must share the vocabulary, hidden size and probe points; names
/// must be distinct. List the reference first (e.g. base, fine-tune,
/// compressed): pair divergences are `KL(first ‖ second)`.
pub fn compare(
    models: &[(&str, &dyn LensModel)],
    tokens: &[u32],
    opts: &LensOptions,
) -> Result<Comparison> {
    let (reports, pairs) = run_engine(models, tokens, opts)?;
    let first = &reports[0];
    let mut c = Comparison {
        schema: SCHEMA.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        options: opts.clone(),
        tokens: first.tokens.clone(),
        positions: first.positions.clone(),
        points: first.points.iter().map(|p| p.point).collect(),
        models: reports,
        pairs,
        curves: Curves {
            position: 0,
            points: Vec::new(),
            models: Vec::new(),
            pairs: Vec::new(),
        },
    };
    let last = *c.positions.last().expect("at least one position");
    c.curves = c.curves_at(last)?;
    Ok(c)
}

impl Comparison {
    /// The report of model `name`.
    pub fn model(&self, name: &str) -> Option<&LensReport> {
        self.models.iter().find(|m| m.model == name)
    }

    /// The divergences between `a` and `b` (in either order; the KL is
    /// always `KL(first listed ‖ second listed)`).
    pub fn pair(&self, a: &str, b: &str) -> Option<&PairDivergence> {
        self.pairs
            .iter()
            .find(|p| (p.a == a && p.b == b) || (p.a == b && p.b == a))
    }

    /// Row labels.
    pub fn point_labels(&self) -> Vec<String> {
        self.points.iter().map(|p| p.label()).collect()
    }

    /// Curves over depth at input `position` (must be a selected position).
    pub fn curves_at(&self, position: usize) -> Result<Curves> {
        let col = self
            .positions
            .iter()
            .position(|&p| p == position)
            .ok_or_else(|| LensError::Input(format!("position {position} was not decoded")))?;
        let models = self
            .models
            .iter()
            .map(|m| {
                let cells: Vec<_> = m.points.iter().map(|p| &p.cells[col]).collect();
                ModelCurves {
                    model: m.model.clone(),
                    log_prob_diff: cells.iter().map(|c| c.log_prob_diff).collect(),
                    entropy: cells.iter().map(|c| c.entropy).collect(),
                    forward_kl: cells.iter().map(|c| c.forward_kl).collect(),
                    top1: cells.iter().map(|c| c.top1_text().to_string()).collect(),
                    top1_prob: cells.iter().map(|c| c.top1_prob()).collect(),
                }
            })
            .collect();
        let pairs = self
            .pairs
            .iter()
            .map(|p| {
                let cells: Vec<_> = p.points.iter().map(|r| &r.cells[col]).collect();
                PairCurves {
                    a: p.a.clone(),
                    b: p.b.clone(),
                    kl_divergence: cells.iter().map(|c| c.kl_divergence).collect(),
                    js_divergence: cells.iter().map(|c| c.js_divergence).collect(),
                    total_variation: cells.iter().map(|c| c.total_variation).collect(),
                }
            })
            .collect();
        Ok(Curves {
            position,
            points: self.point_labels(),
            models,
            pairs,
        })
    }
}
