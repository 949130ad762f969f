//! Line chart of a statistic over depth for several models at one position.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::{clean_label, display_token, plot_err, PALETTE};
use crate::compare::{Comparison, Divergence};
use crate::error::{LensError, Result};
use crate::report::write_file_atomic;

/// One line of a [`CurveChart`]; `None` values leave a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveSeries {
    /// Legend entry.
    pub name: String,
    /// One value per x label.
    pub values: Vec<Option<f64>>,
}

/// Size of a curve chart.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveOptions {
    /// Width, pixels (default 960).
    pub width: u32,
    /// Height, pixels (default 540).
    pub height: u32,
    /// Title; `None` writes the chart's own.
    pub title: Option<String>,
}

impl Default for CurveOptions {
    fn default() -> Self {
        CurveOptions {
            width: 960,
            height: 540,
            title: None,
        }
    }
}

/// Data of a line chart over probe points.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveChart {
    /// Default title.
    pub title: String,
    /// Probe point labels (x axis), depth order.
    pub x_labels: Vec<String>,
    /// Y axis description.
    pub y_label: String,
    /// The lines.
    pub series: Vec<CurveSeries>,
}

fn position_note(c: &Comparison, position: usize) -> String {
    let tok = c
        .tokens
        .get(position)
        .map_or(String::new(), |t| display_token(&t.text, 16));
    format!("position {position} ({tok}), predicting the next token")
}

impl CurveChart {
    /// `log_prob_diff` of every model at `position` — with the default
    /// contrast, refusal (up) against compliance (down): the picture of a
    /// refusal failing in a fine-tune and recovering under compression.
    pub fn log_prob_diff(c: &Comparison, position: usize) -> Result<CurveChart> {
        let curves = c.curves_at(position)?;
        let contrast =
            c.options.contrast.as_ref().ok_or_else(|| {
                LensError::Input("log_prob_diff needs LensOptions::contrast".into())
            })?;
        Ok(CurveChart {
            title: format!("log_prob_diff over depth — {}", position_note(c, position)),
            x_labels: curves.points,
            y_label: format!(
                "log p({}) − log p({}), nats",
                contrast.target.name, contrast.anti.name
            ),
            series: curves
                .models
                .into_iter()
                .map(|m| CurveSeries {
                    name: m.model,
                    values: m.log_prob_diff,
                })
                .collect(),
        })
    }

    /// A divergence between `reference` and every other model at `position`.
    pub fn divergence(
        c: &Comparison,
        reference: &str,
        div: Divergence,
        position: usize,
    ) -> Result<CurveChart> {
        let col = c
            .positions
            .iter()
            .position(|&p| p == position)
            .ok_or_else(|| LensError::Input(format!("position {position} was not decoded")))?;
        if c.model(reference).is_none() {
            return Err(LensError::Input(format!("no model `{reference}`")));
        }
        let series = c
            .pairs
            .iter()
            .filter(|p| p.a == reference || p.b == reference)
            .map(|p| {
                let other = if p.a == reference { &p.b } else { &p.a };
                CurveSeries {
                    name: format!("{reference} vs {other}"),
                    values: p
                        .points
                        .iter()
                        .map(|r| Some(div.of(&r.cells[col])))
                        .collect(),
                }
            })
            .collect();
        Ok(CurveChart {
            title: format!("{} over depth — {}", div.name(), position_note(c, position)),
            x_labels: c.point_labels(),
            y_label: format!("{} (nats)", div.name()),
            series,
        })
    }

    /// Draws the chart.
    pub fn to_svg(&self, opts: &CurveOptions) -> Result<String> {
        let n = self.x_labels.len();
        if n == 0 {
            return Err(LensError::Input("empty curve chart".into()));
        }
        let finite = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .copied()
            .filter(|v| v.is_finite());
        let (mut lo, mut hi) = finite.fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
        let pad = ((hi - lo) * 0.08).max(0.05);
        lo -= pad;
        hi += pad;
        let labels: Vec<String> = self
            .x_labels
            .iter()
            .map(|l| clean_label(l, 0, false))
            .collect();
        let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32;

        let mut buf = String::new();
        {
            let root =
                SVGBackend::with_string(&mut buf, (opts.width.max(200), opts.height.max(150)))
                    .into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let title = clean_label(
                &opts.title.clone().unwrap_or_else(|| self.title.clone()),
                0,
                false,
            );
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36 + 7 * longest)
                .y_label_area_size(64)
                .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), lo..hi)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_labels(n.min(80))
                // Probe point labels are drawn below, rotated and left-anchored
                // (plotters centres rotated tick labels on the axis).
                .x_label_formatter(&|_| String::new())
                .y_desc(clean_label(&self.y_label, 0, false))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(plot_err)?;
            if lo < 0.0 && hi > 0.0 {
                chart
                    .draw_series(LineSeries::new(
                        vec![(-0.3, 0.0), (n as f64 - 0.7, 0.0)],
                        BLACK.mix(0.4).stroke_width(1),
                    ))
                    .map_err(plot_err)?;
            }
            for (k, s) in self.series.iter().enumerate() {
                let color = PALETTE[k % PALETTE.len()];
                let style = color.stroke_width(2);
                // Split at gaps (None / non-finite).
                let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
                for (i, v) in s.values.iter().enumerate() {
                    match v {
                        Some(v) if v.is_finite() => {
                            segments.last_mut().expect("non-empty").push((i as f64, *v))
                        }
                        _ => segments.push(Vec::new()),
                    }
                }
                let mut labelled = false;
                for seg in segments.into_iter().filter(|s| !s.is_empty()) {
                    chart
                        .draw_series(
                            seg.iter()
                                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                        )
                        .map_err(plot_err)?;
                    let drawn = chart
                        .draw_series(LineSeries::new(seg, style))
                        .map_err(plot_err)?;
                    if !labelled {
                        drawn
                            .label(clean_label(&s.name, 0, false))
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                            });
                        labelled = true;
                    }
                }
            }
            let tick_style = ("sans-serif", 11)
                .into_font()
                .color(&BLACK)
                .transform(FontTransform::Rotate90)
                .pos(Pos::new(HPos::Left, VPos::Center));
            for (i, label) in labels.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(i as f64, lo));
                root.draw(&Text::new(label.clone(), (px, py + 6), tick_style.clone()))
                    .map_err(plot_err)?;
            }
            let (_, bottom) = root.dim_in_pixel();
            let (x_mid, _) = chart.backend_coord(&((n as f64 - 1.0) / 2.0, lo));
            root.draw(&Text::new(
                "probe point".to_string(),
                (x_mid, bottom as i32 - 10),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            ))
            .map_err(plot_err)?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        Ok(buf)
    }

    /// Draws and writes the SVG atomically.
    pub fn write_svg(&self, path: &Path, opts: &CurveOptions) -> Result<()> {
        write_file_atomic(path, self.to_svg(opts)?.as_bytes())
    }
}
