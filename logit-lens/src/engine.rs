//! The engine behind [`run_lens`](crate::run_lens) and
//! [`compare`](crate::compare()): forward passes, batched decoding, per-row
//! statistics in parallel, assembly into reports.

use rayon::prelude::*;

use crate::compare::{DivergenceCell, PairDivergence, PairPoint};
use crate::error::{LensError, Result};
use crate::model::{LensModel, ProbePoint};
use crate::probe::{
    CellStats, LensOptions, LensReport, PointFilter, PointReport, TargetStat, TokenLabel, TokenProb,
};
use crate::stats::{self, Dist};

/// Per-model data kept between the forward pass and decoding.
struct Prepared {
    /// Selected rows (point-major, then position), `rows × hidden`.
    hidden: Vec<f32>,
    /// Model logits at the selected positions, `positions × vocab`.
    logits: Vec<f32>,
    /// Their distributions.
    final_dist: Vec<Dist>,
}

fn check_finite(values: &[f32], what: impl Fn() -> String) -> Result<()> {
    if values.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(LensError::NonFinite(what()))
    }
}

/// A cell's statistics before token texts are attached (computed in
/// parallel; the model is not asked for anything there).
struct RawCell {
    top: Vec<(u32, f64)>,
    entropy: f64,
    forward_kl: f64,
    targets: Vec<(u32, usize, f64)>,
    log_prob_diff: Option<f64>,
}

fn raw_cell(d: &Dist, final_dist: Option<&Dist>, opts: &LensOptions) -> RawCell {
    RawCell {
        top: stats::top_k(&d.logp, opts.top_k),
        entropy: d.entropy(),
        forward_kl: final_dist.map_or(0.0, |f| f.kl(d)),
        targets: opts
            .targets
            .iter()
            .map(|&id| {
                let rank = stats::rank(&d.logp, id).unwrap_or(usize::MAX);
                (id, rank, d.logp[id as usize])
            })
            .collect(),
        log_prob_diff: opts
            .contrast
            .as_ref()
            .and_then(|c| c.log_prob_diff(&d.logp)),
    }
}

fn with_text(model: &dyn LensModel, raw: RawCell, position: usize) -> CellStats {
    CellStats {
        position,
        top: raw
            .top
            .into_iter()
            .map(|(id, lp)| TokenProb {
                id,
                text: model.token_text(id),
                prob: lp.exp(),
                log_prob: lp,
            })
            .collect(),
        entropy: raw.entropy,
        forward_kl: raw.forward_kl,
        targets: raw
            .targets
            .into_iter()
            .map(|(id, rank, lp)| TargetStat {
                id,
                text: model.token_text(id),
                rank,
                prob: lp.exp(),
                log_prob: lp,
            })
            .collect(),
        log_prob_diff: raw.log_prob_diff,
    }
}

fn divergence(position: usize, p: &Dist, q: &Dist) -> DivergenceCell {
    DivergenceCell {
        position,
        kl_divergence: p.kl(q),
        js_divergence: p.js(q),
        total_variation: p.tv(q),
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
        let final_dist = logits.par_chunks(vocab).map(Dist::from_logits).collect();
        prepared.push(Prepared {
            hidden,
            logits,
            final_dist,
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
        // Statistics of every row, in parallel; texts are attached after.
        let n_models = models.len();
        let rows: Vec<(Vec<RawCell>, Vec<DivergenceCell>, Vec<f64>)> = (0..n)
            .into_par_iter()
            .map(|r| {
                let row = start + r;
                let (sel_idx, col) = (row / n_pos, row % n_pos);
                let is_last = last_is_selected && sel_idx + 1 == selected.len();
                let mut dists = Vec::with_capacity(n_models);
                let mut raws = Vec::with_capacity(n_models);
                let mut diffs = Vec::with_capacity(n_models);
                for (mi, prep) in prepared.iter().enumerate() {
                    let lens_logits = &decoded[mi][r * vocab..(r + 1) * vocab];
                    let mut diff = 0f64;
                    if is_last {
                        let own = &prep.logits[col * vocab..(col + 1) * vocab];
                        diff = lens_logits
                            .iter()
                            .zip(own)
                            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
                            .fold(0.0, f64::max);
                    }
                    let d = Dist::from_logits(lens_logits);
                    raws.push(raw_cell(&d, Some(&prep.final_dist[col]), opts));
                    diffs.push(diff);
                    dists.push(d);
                }
                let mut divs = Vec::with_capacity(n_pairs);
                for i in 0..dists.len() {
                    for j in i + 1..dists.len() {
                        divs.push(divergence(positions[col], &dists[i], &dists[j]));
                    }
                }
                (raws, divs, diffs)
            })
            .collect();
        for (r, (raws, divs, diffs)) in rows.into_iter().enumerate() {
            let position = positions[(start + r) % n_pos];
            for (mi, raw) in raws.into_iter().enumerate() {
                cells[mi].push(with_text(models[mi].1, raw, position));
                max_diff[mi] = max_diff[mi].max(diffs[mi]);
            }
            for (k, dc) in divs.into_iter().enumerate() {
                pair_cells[k].push(dc);
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
            .zip(&prep.final_dist)
            .map(|(&pos, d)| with_text(*m, raw_cell(d, None, opts), pos))
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
                        &prepared[i].final_dist[c],
                        &prepared[j].final_dist[c],
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
