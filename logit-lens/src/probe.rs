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

use crate::compare::{DivergenceCell, PairDivergence, PairPoint};
use crate::contrast::TokenContrast;
use crate::error::{LensError, Result};
use crate::model::{LensModel, ProbePoint};
use crate::stats;

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
    fn resolve(&self, n: usize) -> Result<Vec<usize>> {
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

/// Per-model data kept between the forward pass and decoding.
struct Prepared {
    /// Selected rows (point-major, then position), `rows × hidden`.
    hidden: Vec<f32>,
    /// Model logits at the selected positions, `positions × vocab`.
    logits: Vec<f32>,
    /// Log-softmax of those logits.
    final_logp: Vec<Vec<f64>>,
}

fn check_finite(values: &[f32], what: impl Fn() -> String) -> Result<()> {
    if values.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(LensError::NonFinite(what()))
    }
}

fn cell_stats(
    model: &dyn LensModel,
    logp: &[f64],
    final_logp: Option<&[f64]>,
    position: usize,
    opts: &LensOptions,
) -> CellStats {
    let top = stats::top_k(logp, opts.top_k)
        .into_iter()
        .map(|(id, lp)| TokenProb {
            id,
            text: model.token_text(id),
            prob: lp.exp(),
            log_prob: lp,
        })
        .collect();
    let targets = opts
        .targets
        .iter()
        .map(|&id| {
            let lp = logp[id as usize];
            TargetStat {
                id,
                text: model.token_text(id),
                rank: stats::rank(logp, id).unwrap_or(usize::MAX),
                prob: lp.exp(),
                log_prob: lp,
            }
        })
        .collect();
    CellStats {
        position,
        top,
        entropy: stats::entropy(logp),
        forward_kl: final_logp.map_or(0.0, |f| stats::kl_divergence(f, logp)),
        targets,
        log_prob_diff: opts.contrast.as_ref().and_then(|c| c.log_prob_diff(logp)),
    }
}

fn divergence(position: usize, p: &[f64], q: &[f64]) -> DivergenceCell {
    DivergenceCell {
        position,
        kl_divergence: stats::kl_divergence(p, q),
        js_divergence: stats::js_divergence(p, q),
        total_variation: stats::total_variation(p, q),
    }
}

/// The shared engine: per-model reports plus divergences for every pair
/// `(i, j)`, `i < j`, in that order.
pub(crate) fn run_engine(
    models: &[(&str, &dyn LensModel)],
    tokens: &[u32],
    opts: &LensOptions,
) -> Result<(Vec<LensReport>, Vec<PairDivergence>)> {
    let (_, first) = *models
        .first()
        .ok_or_else(|| LensError::Input("no model to probe".into()))?;
    if tokens.is_empty() {
        return Err(LensError::Input("no input tokens".into()));
    }
    let (d, vocab) = (first.hidden_size(), first.vocab_size());
    if d == 0 || vocab == 0 {
        return Err(LensError::Shape(
            "hidden size and vocabulary must be > 0".into(),
        ));
    }
    for (i, (name, m)) in models.iter().enumerate() {
        if m.hidden_size() != d || m.vocab_size() != vocab {
            return Err(LensError::Mismatch(format!(
                "`{name}` has hidden size {} and vocabulary {}, `{}` has {d} and {vocab}",
                m.hidden_size(),
                m.vocab_size(),
                models[0].0
            )));
        }
        if models[..i].iter().any(|(n, _)| n == name) {
            return Err(LensError::Input(format!("model name `{name}` used twice")));
        }
    }
    let check_id = |id: u32, what: &str| {
        if (id as usize) < vocab {
            Ok(())
        } else {
            Err(LensError::Input(format!(
                "{what} id {id} is outside the vocabulary ({vocab})"
            )))
        }
    };
    for &t in tokens {
        check_id(t, "input token")?;
    }
    for &t in &opts.targets {
        check_id(t, "target token")?;
    }
    if let Some(c) = &opts.contrast {
        for &t in c.target.ids.iter().chain(&c.anti.ids) {
            check_id(t, "contrast token")?;
        }
    }
    let positions = opts.positions.resolve(tokens.len())?;
    let batch_rows = opts.batch_rows.max(1);

    // Forward passes; keep only the selected rows.
    let mut point_list: Option<Vec<ProbePoint>> = None;
    let mut selected: Vec<usize> = Vec::new(); // indices into the trace's points
    let mut last_is_selected = false;
    let mut prepared = Vec::with_capacity(models.len());
    for (name, m) in models {
        let trace = m.trace(tokens)?;
        trace.validate(d, vocab)?;
        if trace.n_positions != tokens.len() {
            return Err(LensError::Shape(format!(
                "`{name}` returned {} positions for {} tokens",
                trace.n_positions,
                tokens.len()
            )));
        }
        let pts: Vec<ProbePoint> = trace.points.iter().map(|p| p.point).collect();
        match &point_list {
            None => {
                selected = (0..pts.len())
                    .filter(|&i| {
                        opts.points == PointFilter::All || !matches!(pts[i], ProbePoint::Mid { .. })
                    })
                    .collect();
                last_is_selected = selected.last() == Some(&(pts.len() - 1))
                    && matches!(pts.last(), Some(ProbePoint::Post { .. }));
                point_list = Some(pts);
            }
            Some(prev) if *prev != pts => {
                return Err(LensError::Mismatch(format!(
                    "`{name}` exposes different probe points than `{}`",
                    models[0].0
                )));
            }
            Some(_) => {}
        }
        let mut hidden = Vec::with_capacity(selected.len() * positions.len() * d);
        for &pi in &selected {
            for &pos in &positions {
                hidden.extend_from_slice(trace.hidden_row(pi, pos, d));
            }
        }
        check_finite(&hidden, || format!("hidden states of `{name}`"))?;
        let mut logits = Vec::with_capacity(positions.len() * vocab);
        for &pos in &positions {
            logits.extend_from_slice(trace.logits_row(pos, vocab));
        }
        check_finite(&logits, || format!("logits of `{name}`"))?;
        let final_logp = logits.chunks(vocab).map(stats::log_softmax).collect();
        prepared.push(Prepared {
            hidden,
            logits,
            final_logp,
        });
    }
    let point_list = point_list.unwrap_or_default();

    let n_pos = positions.len();
    let n_rows = selected.len() * n_pos;
    let mut cells: Vec<Vec<CellStats>> = vec![Vec::with_capacity(n_rows); models.len()];
    let n_pairs = models.len() * models.len().saturating_sub(1) / 2;
    let mut pair_cells: Vec<Vec<DivergenceCell>> = vec![Vec::with_capacity(n_rows); n_pairs];
    let mut max_diff = vec![0f64; models.len()];

    let mut start = 0;
    while start < n_rows {
        let end = (start + batch_rows).min(n_rows);
        let n = end - start;
        let mut decoded = Vec::with_capacity(models.len());
        for ((name, m), prep) in models.iter().zip(&prepared) {
            let out = m.decode(&prep.hidden[start * d..end * d], n)?;
            if out.len() != n * vocab {
                return Err(LensError::Shape(format!(
                    "`{name}`.decode returned {} values for {n} rows × {vocab}",
                    out.len()
                )));
            }
            check_finite(&out, || format!("lens logits of `{name}`"))?;
            decoded.push(out);
        }
        for r in 0..n {
            let row = start + r;
            let (sel_idx, col) = (row / n_pos, row % n_pos);
            let position = positions[col];
            let is_last = last_is_selected && sel_idx + 1 == selected.len();
            let mut logps = Vec::with_capacity(models.len());
            for (mi, ((_, m), prep)) in models.iter().zip(&prepared).enumerate() {
                let lens_logits = &decoded[mi][r * vocab..(r + 1) * vocab];
                if is_last {
                    let own = &prep.logits[col * vocab..(col + 1) * vocab];
                    let diff = lens_logits
                        .iter()
                        .zip(own)
                        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
                        .fold(0.0, f64::max);
                    max_diff[mi] = max_diff[mi].max(diff);
                }
                let logp = stats::log_softmax(lens_logits);
                cells[mi].push(cell_stats(
                    *m,
                    &logp,
                    Some(&prep.final_logp[col]),
                    position,
                    opts,
                ));
                logps.push(logp);
            }
            let mut k = 0;
            for i in 0..models.len() {
                for j in i + 1..models.len() {
                    pair_cells[k].push(divergence(position, &logps[i], &logps[j]));
                    k += 1;
                }
            }
        }
        start = end;
    }

    // Assemble reports.
    let mut reports = Vec::with_capacity(models.len());
    for (mi, ((name, m), prep)) in models.iter().zip(&prepared).enumerate() {
        let mut it = std::mem::take(&mut cells[mi]).into_iter();
        let points = selected
            .iter()
            .map(|&pi| PointReport {
                point: point_list[pi],
                label: point_list[pi].label(),
                cells: it.by_ref().take(n_pos).collect(),
            })
            .collect();
        let output = positions
            .iter()
            .zip(&prep.final_logp)
            .map(|(&pos, logp)| cell_stats(*m, logp, None, pos, opts))
            .collect();
        reports.push(LensReport {
            model: name.to_string(),
            tokens: tokens
                .iter()
                .map(|&id| TokenLabel {
                    id,
                    text: m.token_text(id),
                })
                .collect(),
            positions: positions.clone(),
            points,
            output,
            last_point_max_abs_logit_diff: last_is_selected.then_some(max_diff[mi]),
        });
    }
    let mut pairs = Vec::with_capacity(n_pairs);
    let mut k = 0;
    for i in 0..models.len() {
        for j in i + 1..models.len() {
            let mut it = std::mem::take(&mut pair_cells[k]).into_iter();
            let points = selected
                .iter()
                .map(|&pi| PairPoint {
                    point: point_list[pi],
                    label: point_list[pi].label(),
                    cells: it.by_ref().take(n_pos).collect(),
                })
                .collect();
            let output = (0..n_pos)
                .map(|c| {
                    divergence(
                        positions[c],
                        &prepared[i].final_logp[c],
                        &prepared[j].final_logp[c],
                    )
                })
                .collect();
            pairs.push(PairDivergence {
                a: models[i].0.to_string(),
                b: models[j].0.to_string(),
                points,
                output,
            });
            k += 1;
        }
    }
    Ok((reports, pairs))
}
