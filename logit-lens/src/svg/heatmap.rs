//! Heatmap: probe points × positions, top-1 token in each cell.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::{clean_label, display_token, fmt_num, plot_err, text_color_on, viridis};
use crate::compare::{Comparison, Divergence, PairDivergence};
use crate::error::{LensError, Result};
use crate::probe::LensReport;
use crate::report::write_file_atomic;

/// What colours a cell of a single-model heatmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellColor {
    /// Probability of the top-1 token, scale `[0, 1]`.
    TopProbability,
    /// `entropy` (nats), scale `[0, max]`.
    Entropy,
    /// `forward_kl` = KL(final ‖ lens) (nats), scale `[0, max]`.
    ForwardKl,
}

/// Layout of a heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapOptions {
    /// Cell width, pixels (default 72).
    pub cell_width: u32,
    /// Cell height, pixels (default 22).
    pub cell_height: u32,
    /// Longest token label, characters (default 9; longer ones end in `…`).
    pub max_label_chars: usize,
    /// Colour scale `(min, max)`; `None` picks it from the statistic.
    pub scale: Option<(f64, f64)>,
    /// Title; `None` writes a default one.
    pub title: Option<String>,
}

impl Default for HeatmapOptions {
    fn default() -> Self {
        HeatmapOptions {
            cell_width: 72,
            cell_height: 22,
            max_label_chars: 9,
            scale: None,
            title: None,
        }
    }
}

/// The data of a heatmap, ready to draw. Row 0 is the shallowest probe point
/// (drawn at the bottom).
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// Default title.
    pub title: String,
    /// Name of the colour statistic (colour bar label).
    pub statistic: String,
    /// Probe point labels, depth order.
    pub row_labels: Vec<String>,
    /// Input token at each column's position (`pos: token`, the token made
    /// visible by [`display_token`](super::display_token)).
    pub col_labels: Vec<String>,
    /// `values[row][col]`, the colour statistic.
    pub values: Vec<Vec<f64>>,
    /// `text[row][col]`, the top-1 token written in the cell.
    pub text: Vec<Vec<String>>,
    /// Default colour scale.
    pub scale: (f64, f64),
}

fn max_or(values: &[Vec<f64>], floor: f64) -> f64 {
    values
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .fold(floor, f64::max)
}

fn col_labels(report: &LensReport) -> Vec<String> {
    report
        .positions
        .iter()
        .map(|&p| {
            let t = report.tokens.get(p).map_or("", |t| t.text.as_str());
            format!("{p}: {}", display_token(t, 0))
        })
        .collect()
}

impl Heatmap {
    /// A single model's lens, coloured by `color`.
    pub fn from_report(report: &LensReport, color: CellColor) -> Heatmap {
        let values: Vec<Vec<f64>> = report
            .points
            .iter()
            .map(|p| {
                p.cells
                    .iter()
                    .map(|c| match color {
                        CellColor::TopProbability => c.top1_prob(),
                        CellColor::Entropy => c.entropy,
                        CellColor::ForwardKl => c.forward_kl,
                    })
                    .collect()
            })
            .collect();
        let (statistic, scale) = match color {
            CellColor::TopProbability => ("top-1 probability", (0.0, 1.0)),
            CellColor::Entropy => ("entropy (nats)", (0.0, max_or(&values, 1e-6))),
            CellColor::ForwardKl => (
                "forward_kl = KL(final ‖ lens) (nats)",
                (0.0, max_or(&values, 1e-6)),
            ),
        };
        Heatmap {
            title: format!("logit lens — {} — colour: {statistic}", report.model),
            statistic: statistic.to_string(),
            row_labels: report.points.iter().map(|p| p.label.clone()).collect(),
            col_labels: col_labels(report),
            values,
            text: report
                .points
                .iter()
                .map(|p| p.cells.iter().map(|c| c.top1_text().to_string()).collect())
                .collect(),
            scale,
        }
    }

    /// Divergence between the two models of `pair` at each cell; the cell
    /// text is model `b`'s top-1 token.
    pub fn from_pair(c: &Comparison, pair: &PairDivergence, div: Divergence) -> Result<Heatmap> {
        let b = c
            .model(&pair.b)
            .ok_or_else(|| LensError::Input(format!("no model `{}` in the comparison", pair.b)))?;
        let values: Vec<Vec<f64>> = pair
            .points
            .iter()
            .map(|p| p.cells.iter().map(|x| div.of(x)).collect())
            .collect();
        let scale = match div {
            Divergence::Js => (0.0, std::f64::consts::LN_2),
            Divergence::Tv => (0.0, 1.0),
            Divergence::Kl => (0.0, max_or(&values, 1e-6)),
        };
        Ok(Heatmap {
            title: format!(
                "logit lens — {} between {} and {} — text: top-1 of {}",
                div.name(),
                pair.a,
                pair.b,
                pair.b
            ),
            statistic: div.name().to_string(),
            row_labels: pair.points.iter().map(|p| p.label.clone()).collect(),
            col_labels: col_labels(b),
            values,
            text: b
                .points
                .iter()
                .map(|p| p.cells.iter().map(|c| c.top1_text().to_string()).collect())
                .collect(),
            scale,
        })
    }

    /// Draws the heatmap. Every `<rect>` in the result is a cell (one per
    /// row × column; the background and colour bar are polygons).
    pub fn to_svg(&self, opts: &HeatmapOptions) -> Result<String> {
        let rows = self.row_labels.len();
        let cols = self.col_labels.len();
        if rows == 0 || cols == 0 {
            return Err(LensError::Input("empty heatmap".into()));
        }
        if self.values.len() != rows || self.values.iter().any(|r| r.len() != cols) {
            return Err(LensError::Shape(
                "heatmap values do not match its labels".into(),
            ));
        }
        let (cw, ch) = (
            opts.cell_width.max(8) as i32,
            opts.cell_height.max(8) as i32,
        );
        let max_chars = opts.max_label_chars.max(1);
        let (lo, hi) = opts.scale.unwrap_or(self.scale);
        let span = if hi > lo { hi - lo } else { 1.0 };

        let char_w = 7;
        let col_labels: Vec<String> = self
            .col_labels
            .iter()
            .map(|l| clean_label(l, max_chars + 6, false))
            .collect();
        let longest_row = self
            .row_labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(4);
        let longest_col = col_labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(4);
        let left = 20 + char_w * longest_row as i32;
        let top = 44;
        let bottom = 36 + char_w * longest_col as i32;
        let right = 110;
        let (gw, gh) = (cw * cols as i32, ch * rows as i32);
        let width = (left + gw + right).max(480);
        let height = top + gh + bottom;

        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (width as u32, height as u32))
                .into_drawing_area();
            let white = ShapeStyle::from(&WHITE).filled();
            root.draw(&Polygon::new(
                vec![(0, 0), (width, 0), (width, height), (0, height)],
                white,
            ))
            .map_err(plot_err)?;

            let title = clean_label(
                &opts.title.clone().unwrap_or_else(|| self.title.clone()),
                0,
                false,
            );
            let title_style = ("sans-serif", 16)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(title, (10, top / 2), title_style))
                .map_err(plot_err)?;

            for (r, row) in self.values.iter().enumerate() {
                let y0 = top + (rows - 1 - r) as i32 * ch;
                for (c, &v) in row.iter().enumerate() {
                    let x0 = left + c as i32 * cw;
                    let fill = viridis((v - lo) / span);
                    root.draw(&Rectangle::new(
                        [(x0, y0), (x0 + cw, y0 + ch)],
                        ShapeStyle::from(&fill).filled(),
                    ))
                    .map_err(plot_err)?;
                    let text = self
                        .text
                        .get(r)
                        .and_then(|t| t.get(c))
                        .map_or(String::new(), |t| display_token(t, max_chars));
                    let fg = text_color_on(fill);
                    let style = ("sans-serif", 12)
                        .into_font()
                        .color(&fg)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    root.draw(&Text::new(text, (x0 + cw / 2, y0 + ch / 2), style))
                        .map_err(plot_err)?;
                }
                let style = ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center));
                root.draw(&Text::new(
                    clean_label(&self.row_labels[r], 0, false),
                    (left - 6, y0 + ch / 2),
                    style,
                ))
                .map_err(plot_err)?;
            }
            for (c, label) in col_labels.into_iter().enumerate() {
                let style = ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .transform(FontTransform::Rotate90)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                root.draw(&Text::new(
                    label,
                    (left + c as i32 * cw + cw / 2, top + gh + 6),
                    style,
                ))
                .map_err(plot_err)?;
            }
            let axis = ("sans-serif", 13).into_font().color(&BLACK);
            root.draw(&Text::new(
                "position: input token (each cell predicts the next token)".to_string(),
                (left, height - 14),
                axis.pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(plot_err)?;

            // Colour bar: stacked polygons, so that every <rect> is a cell.
            let bar_x = left + gw + 20;
            let bar_w = 16;
            let steps = 64;
            for s in 0..steps {
                let t0 = s as f64 / steps as f64;
                let ya = top + gh - (t0 * gh as f64).round() as i32;
                let yb = top + gh - (((s + 1) as f64 / steps as f64) * gh as f64).round() as i32;
                let fill = viridis(t0 + 0.5 / steps as f64);
                root.draw(&Polygon::new(
                    vec![
                        (bar_x, ya),
                        (bar_x + bar_w, ya),
                        (bar_x + bar_w, yb),
                        (bar_x, yb),
                    ],
                    ShapeStyle::from(&fill).filled(),
                ))
                .map_err(plot_err)?;
            }
            let small = ("sans-serif", 11)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            for (frac, v) in [(0.0, lo), (0.5, lo + 0.5 * (hi - lo)), (1.0, hi)] {
                let y = top + gh - (frac * gh as f64).round() as i32;
                root.draw(&Text::new(
                    fmt_num(v),
                    (bar_x + bar_w + 4, y),
                    small.clone(),
                ))
                .map_err(plot_err)?;
            }
            let bar_title = ("sans-serif", 11)
                .into_font()
                .color(&BLACK)
                .transform(FontTransform::Rotate90)
                .pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(
                self.statistic.clone(),
                (bar_x + bar_w + 56, top + gh / 2),
                bar_title,
            ))
            .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        Ok(buf)
    }

    /// Draws and writes the SVG atomically.
    pub fn write_svg(&self, path: &Path, opts: &HeatmapOptions) -> Result<()> {
        write_file_atomic(path, self.to_svg(opts)?.as_bytes())
    }
}
