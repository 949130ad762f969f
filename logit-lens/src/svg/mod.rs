//! SVG figures drawn with plotters' SVG backend.
//!
//! * [`Heatmap`]: probe points as rows (embedding at the bottom), positions
//!   as columns, the top-1 token written in each cell, colour by probability,
//!   entropy, `forward_kl` or a pairwise divergence.
//! * [`CurveChart`]: `log_prob_diff` (or a divergence) over depth for several
//!   models at one position, with a legend.
//!
//! Only plotters' `svg_backend` is enabled (no `ttf`/`ab_glyph`), so nothing
//! touches system fonts at build or run time: text is written as SVG
//! `<text>` elements (font family `sans-serif`) that the viewer renders, and
//! plotters escapes `<`, `>`, `&` and quotes. Token strings are additionally
//! made printable by [`display_token`] (control characters that XML forbids
//! are spelled out, spaces shown as `␣`).

mod curves;
mod heatmap;

pub use curves::{CurveChart, CurveOptions, CurveSeries};
pub use heatmap::{CellColor, Heatmap, HeatmapOptions};

use plotters::style::RGBColor;

/// A token string made safe and visible for a label: spaces become `␣`,
/// `\n`, `\r`, `\t` are written as escapes, other control and non-character
/// code points as `\u{..}`, and the result is cut to `max_chars` characters
/// (with `…`). XML escaping of `<`, `&`, quotes is left to the SVG writer.
pub fn display_token(text: &str, max_chars: usize) -> String {
    clean_label(text, max_chars, true)
}

/// [`display_token`] with optional space marking (labels that are not
/// tokens keep their spaces).
pub(crate) fn clean_label(text: &str, max_chars: usize, mark_spaces: bool) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            ' ' if mark_spaces => out.push('␣'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_xml_forbidden(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push('∅');
    }
    let n = out.chars().count();
    if max_chars > 0 && n > max_chars {
        let keep = max_chars.saturating_sub(1).max(1);
        out = out.chars().take(keep).collect::<String>() + "…";
    }
    out
}

/// Code points XML 1.0 does not allow in text even though Rust strings may
/// hold them (besides C0/C1 controls, which `is_control` covers).
fn is_xml_forbidden(c: char) -> bool {
    matches!(c as u32, 0xFFFE | 0xFFFF)
}

/// Viridis colour map, `t` in `[0, 1]` (clamped; NaN → 0).
pub(crate) fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 9] = [
        (68.0, 1.0, 84.0),
        (71.0, 44.0, 122.0),
        (59.0, 81.0, 139.0),
        (44.0, 113.0, 142.0),
        (33.0, 144.0, 141.0),
        (39.0, 173.0, 129.0),
        (92.0, 200.0, 99.0),
        (170.0, 220.0, 50.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let lerp = |u: f64, v: f64| (u + (v - u) * f).round().clamp(0.0, 255.0) as u8;
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// Black or white, whichever reads better on `bg`.
pub(crate) fn text_color_on(bg: RGBColor) -> RGBColor {
    let l = 0.299 * f64::from(bg.0) + 0.587 * f64::from(bg.1) + 0.114 * f64::from(bg.2);
    if l > 140.0 {
        RGBColor(0, 0, 0)
    } else {
        RGBColor(255, 255, 255)
    }
}

/// Distinct line colours for the curve chart (Tableau 10).
pub(crate) const PALETTE: [RGBColor; 10] = [
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

/// Short number for labels.
pub(crate) fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 100.0 || x.abs() < 0.01 {
        format!("{x:.2e}")
    } else {
        format!("{x:.3}")
    }
}

pub(crate) fn plot_err<E: std::fmt::Display>(e: E) -> crate::LensError {
    crate::LensError::Plot(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_token_makes_whitespace_and_controls_visible() {
        assert_eq!(display_token(" a\nb", 0), "␣a\\nb");
        assert_eq!(display_token("\u{0}", 0), "\\u{0}");
        assert_eq!(display_token("", 0), "∅");
        assert_eq!(display_token("abcdef", 4), "abc…");
        assert_eq!(display_token("<&\"'>", 0), "<&\"'>");
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(f64::NAN), RGBColor(68, 1, 84));
    }
}
