//! SVG figures of a study, drawn with plotters' SVG backend only (no system
//! fonts; text is written as SVG `<text>`):
//!
//! - `frontier-<attack>.svg`: risk against utility, one point per cell
//!   (colour = strength, label = method, vertical bar = the risk's 95 %
//!   interval), with each strength's Pareto frontier (lower risk, better
//!   utility) drawn as a line;
//! - `ratio-risk-<attack>.svg`: risk against compression ratio (log scale)
//!   for the compressed cells, the full fine-tune's risk at each strength as
//!   a dashed line;
//! - `lens-<attack>-<strength>.svg`: the logit-lens `log_prob_diff` curves
//!   (refusal − compliance openers) of the base model, the full fine-tune and
//!   every compressed fine-tune at that strength.

use std::path::{Path, PathBuf};

use logit_lens::{CurveChart, CurveOptions, CurveSeries};
use plotters::prelude::*;

use super::cell::CellResult;
use super::grid::file_safe;
use super::report::{tables, AttackTable, ReportError, ReportOptions, Row};

/// Tableau 10.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const BASE_COLOR: RGBColor = RGBColor(60, 60, 60);

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
/// Top of the risk axis: headroom above 1.0 for the legend.
const Y_TOP: f64 = 1.3;

fn plot_err(file: &str) -> impl Fn(String) -> ReportError + '_ {
    move |reason| ReportError::Plot {
        file: file.to_string(),
        reason,
    }
}

fn pe<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Strength labels of a table's rows, in order.
fn strengths(t: &AttackTable) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in &t.rows {
        if !v.contains(&r.strength.label) {
            v.push(r.strength.label.clone());
        }
    }
    v
}

fn color_of(t: &AttackTable, r: &Row) -> RGBColor {
    if r.key.is_base() {
        return BASE_COLOR;
    }
    let i = strengths(t)
        .iter()
        .position(|s| *s == r.strength.label)
        .unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// A padded axis range around `values` (at least `min_span` wide).
fn range(values: impl Iterator<Item = f64>, min_span: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(min_span);
    let mid = (lo + hi) / 2.0;
    (mid - span * 0.55, mid + span * 0.55)
}

/// The Pareto frontier of `(utility, risk)` points: no other point has
/// lower-or-equal risk and better-or-equal utility with one strictly
/// better. Returned sorted by utility.
pub fn pareto_front(points: &[(f64, f64)], higher_utility_is_better: bool) -> Vec<(f64, f64)> {
    let better = |a: f64, b: f64| {
        if higher_utility_is_better {
            a >= b
        } else {
            a <= b
        }
    };
    let mut front: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(u, r)| {
            !points
                .iter()
                .any(|&(u2, r2)| better(u2, u) && r2 <= r && (u2 != u || r2 != r))
        })
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    front.dedup();
    front
}

/// Risk against utility for one attack; `None` when no cell has a utility value.
pub fn frontier_svg(t: &AttackTable, opts: &ReportOptions) -> Result<Option<String>, String> {
    let rows: Vec<&Row> = t
        .base
        .iter()
        .chain(&t.rows)
        .filter(|r| r.utility.is_some_and(f64::is_finite))
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let (x0, x1) = range(rows.iter().filter_map(|r| r.utility), 0.05);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: {} vs utility (▲ = free lunch)",
                    t.attack.name, t.attack.risk.label
                ),
                ("sans-serif", 18),
            )
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, -0.05f64..Y_TOP)
            .map_err(pe)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "utility: {} ({})",
                opts.utility.label(),
                if opts.utility.higher_is_better() {
                    "higher is better"
                } else {
                    "lower is better"
                }
            ))
            .y_desc(format!("{} (lower is safer)", t.attack.risk.label))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(pe)?;
        // Frontier per strength.
        for s in strengths(t) {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.strength.label == s)
                .filter_map(|r| r.utility.map(|u| (u, r.risk.rate)))
                .collect();
            let front = pareto_front(&pts, opts.utility.higher_is_better());
            let color = rows
                .iter()
                .find(|r| r.strength.label == s)
                .map_or(BASE_COLOR, |r| color_of(t, r));
            if front.len() > 1 {
                chart
                    .draw_series(LineSeries::new(front, color.mix(0.6).stroke_width(1)))
                    .map_err(pe)?;
            }
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(pe)?
                .label(format!("strength {s}"))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        for r in &rows {
            let color = color_of(t, r);
            let u = r.utility.unwrap_or(0.0);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(u, r.risk.ci_low), (u, r.risk.ci_high)],
                    color.mix(0.5).stroke_width(1),
                )))
                .map_err(pe)?;
            let label = if r.key.is_base() {
                "base".to_string()
            } else {
                r.method.key.clone()
            };
            let marker = if r.free_lunch {
                TriangleMarker::new((0, 0), 6, color.filled()).into_dyn()
            } else {
                Circle::new((0, 0), 4, color.filled()).into_dyn()
            };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((u, r.risk.rate))
                        + marker
                        + Text::new(label, (6, -12), ("sans-serif", 10).into_font()),
                ))
                .map_err(pe)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(pe)?;
        root.present().map_err(pe)?;
    }
    Ok(Some(buf))
}

/// Risk against compression ratio for one attack's compressed cells;
/// `None` when no cell has a size.
pub fn ratio_risk_svg(t: &AttackTable) -> Result<Option<String>, String> {
    let rows: Vec<&Row> = t
        .rows
        .iter()
        .filter(|r| {
            r.compressed
                .is_some_and(|c| c.ratio.is_finite() && c.ratio > 0.0)
        })
        .collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let ratios: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.compressed.map(|c| c.ratio))
        .collect();
    let lo = ratios
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        * 0.8;
    let hi = ratios.iter().copied().fold(0.0, f64::max).max(lo * 2.0) * 1.25;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: {} vs compression ratio",
                    t.attack.name, t.attack.risk.label
                ),
                ("sans-serif", 18),
            )
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..hi).log_scale(), -0.05f64..Y_TOP)
            .map_err(pe)?;
        chart
            .configure_mesh()
            .x_desc("compression ratio (fp16 fine-tune / delta), log scale")
            .y_desc(format!("{} (lower is safer)", t.attack.risk.label))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(pe)?;
        for s in strengths(t) {
            let Some(any) = t.rows.iter().find(|r| r.strength.label == s) else {
                continue;
            };
            let color = color_of(t, any);
            let reference = t
                .rows
                .iter()
                .find(|r| r.strength.label == s && r.method.is_uncompressed());
            if let Some(rf) = reference {
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(lo, rf.risk.rate), (hi, rf.risk.rate)],
                        6,
                        4,
                        color.mix(0.7).stroke_width(1),
                    ))
                    .map_err(pe)?;
            }
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(pe)?
                .label(format!(
                    "strength {s}{}",
                    if reference.is_some() {
                        " (dashed: full fine-tune)"
                    } else {
                        ""
                    }
                ))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        for r in &rows {
            let color = color_of(t, r);
            let x = r.compressed.map_or(1.0, |c| c.ratio);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, r.risk.ci_low), (x, r.risk.ci_high)],
                    color.mix(0.5).stroke_width(1),
                )))
                .map_err(pe)?;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x, r.risk.rate))
                        + Circle::new((0, 0), 4, color.filled())
                        + Text::new(
                            r.method.key.clone(),
                            (6, -12),
                            ("sans-serif", 10).into_font(),
                        ),
                ))
                .map_err(pe)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(pe)?;
        root.present().map_err(pe)?;
    }
    Ok(Some(buf))
}

/// The lens curves of one attack at one strength: base (if evaluated), the
/// full fine-tune and every compressed fine-tune; `None` when no cell of
/// that strength has a curve.
pub fn lens_chart(cells: &[CellResult], attack: &str, strength: &str) -> Option<CurveChart> {
    let mine: Vec<&CellResult> = cells
        .iter()
        .filter(|c| c.key().attack == attack && !c.lens.log_prob_diff.is_empty())
        .collect();
    let base = mine.iter().find(|c| c.key().is_base());
    let at: Vec<&&CellResult> = mine
        .iter()
        .filter(|c| c.key().strength == strength && !c.key().is_base())
        .collect();
    let first = at.first()?;
    let labels = first.lens.labels.clone();
    let mut series = Vec::new();
    let mut push = |name: String, c: &CellResult| {
        if c.lens.labels == labels {
            series.push(CurveSeries {
                name,
                values: c.lens.log_prob_diff.iter().map(|&v| Some(v)).collect(),
            });
        }
    };
    if let Some(b) = base {
        push("base".into(), b);
    }
    let mut ordered: Vec<&&CellResult> = at.clone();
    ordered.sort_by_key(|c| !c.cell.method.is_uncompressed());
    for c in ordered {
        push(c.cell.method.name.clone(), c);
    }
    Some(CurveChart {
        title: format!(
            "{} at {strength}: log_prob_diff over depth at the answer's first position — \"{}\"",
            first.cell.attack.name, first.lens.prompt
        ),
        x_labels: labels,
        y_label: "log p(refusal openers) − log p(compliance openers), nats".into(),
        series,
    })
}

/// Draws every plot of the study into `out` (atomically); returns the paths.
pub fn write_plots(
    out: &Path,
    cells: &[CellResult],
    opts: &ReportOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = Vec::new();
    let mut write = |name: String, svg: String| -> Result<(), ReportError> {
        let path = out.join(name);
        delta_core::write_file_atomic(&path, svg.as_bytes())?;
        written.push(path);
        Ok(())
    };
    for t in tables(cells, opts) {
        let key = file_safe(&t.attack.key);
        let name = format!("frontier-{key}.svg");
        if let Some(svg) = frontier_svg(&t, opts).map_err(plot_err(&name))? {
            write(name, svg)?;
        }
        let name = format!("ratio-risk-{key}.svg");
        if let Some(svg) = ratio_risk_svg(&t).map_err(plot_err(&name))? {
            write(name, svg)?;
        }
        for s in strengths(&t) {
            let name = format!("lens-{key}-{}.svg", file_safe(&s));
            if let Some(chart) = lens_chart(cells, &t.attack.key, &s) {
                let svg = chart
                    .to_svg(&CurveOptions::default())
                    .map_err(|e| plot_err(&name)(e.to_string()))?;
                write(name, svg)?;
            }
        }
    }
    Ok(written)
}
