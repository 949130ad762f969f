//! # logit-lens
//!
//! See, layer by layer, where a fine-tune loses a refusal and where delta
//! compression brings it back. The logit lens decodes the residual stream at
//! every probe point — the embedding output, after each block's attention
//! (`mid`) and after each block (`post`) — through the model's *final*
//! RMSNorm (recomputed per vector) and unembedding, as if the network stopped
//! there. At the last block the lens is exactly the model's own output.
//!
//! * [`LensModel`] (in [`model`]) is the small trait a model implements: one
//!   forward pass returning a [`ForwardTrace`] (hidden states at every
//!   [`ProbePoint`] plus final logits), batched [`decode`](LensModel::decode)
//!   through final norm + unembedding (the big matmul stays on the model's
//!   own backend), and token text. This crate holds only plain `f32`/`f64`
//!   math and never depends on a model implementation.
//! * [`run_lens`] probes one model; [`compare()`] probes several (base,
//!   fine-tune, compressed fine-tune) on the same tokens and adds pairwise
//!   divergences. Per cell (probe point × position): top-k tokens,
//!   target-token `rank`/probability/log-probability, `entropy`,
//!   `forward_kl` = KL(final ‖ lens) and `log_prob_diff` between a target and
//!   an anti-target [`TokenContrast`] (default refusal openers vs compliance
//!   openers); per pair: `kl_divergence`, `js_divergence`, `total_variation`
//!   ([`stats`] has the formulas).
//! * [`Comparison`] is also the JSON document ([`report`] documents the
//!   schema); [`svg`] draws a [`Heatmap`] (rows = probe points, columns =
//!   positions, top-1 token in each cell) and a [`CurveChart`] of
//!   `log_prob_diff` over depth for several models, with plotters' SVG
//!   backend only (no system fonts). Files are written atomically.
//!
//! ```
//! use logit_lens::{
//!     compare, CellColor, CurveChart, CurveOptions, ForwardTrace, Heatmap, HeatmapOptions,
//!     LensModel, LensOptions, ProbeHidden, ProbePoint, TokenContrast, TokenSet,
//! };
//!
//! /// One block on 2-d embeddings, final RMSNorm (weight 1), tied unembedding.
//! struct Tiny { shift: f32 }
//! const EMB: [[f32; 2]; 3] = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]];
//!
//! impl LensModel for Tiny {
//!     fn hidden_size(&self) -> usize { 2 }
//!     fn vocab_size(&self) -> usize { 3 }
//!     fn trace(&self, tokens: &[u32]) -> logit_lens::Result<ForwardTrace> {
//!         let emb: Vec<f32> = tokens.iter().flat_map(|&t| EMB[t as usize]).collect();
//!         let mid: Vec<f32> = emb.iter().map(|x| x + self.shift).collect(); // "attention"
//!         let post: Vec<f32> = mid.iter().map(|x| 2.0 * x).collect(); // "MLP"
//!         let logits = self.decode(&post, tokens.len())?;
//!         let points = vec![
//!             ProbeHidden { point: ProbePoint::Embedding, hidden: emb },
//!             ProbeHidden { point: ProbePoint::Mid { layer: 0 }, hidden: mid },
//!             ProbeHidden { point: ProbePoint::Post { layer: 0 }, hidden: post },
//!         ];
//!         Ok(ForwardTrace { n_positions: tokens.len(), points, logits })
//!     }
//!     fn decode(&self, hidden: &[f32], _n: usize) -> logit_lens::Result<Vec<f32>> {
//!         Ok(hidden
//!             .chunks(2)
//!             .flat_map(|h| {
//!                 let rms = ((h[0] * h[0] + h[1] * h[1]) / 2.0 + 1e-6).sqrt();
//!                 EMB.map(|e| (e[0] * h[0] + e[1] * h[1]) / rms)
//!             })
//!             .collect())
//!     }
//!     fn token_text(&self, id: u32) -> String {
//!         ["I", "Sure", "<&>"][id as usize].to_string()
//!     }
//! }
//!
//! let (base, tuned) = (Tiny { shift: 0.0 }, Tiny { shift: 0.7 });
//! let opts = LensOptions {
//!     targets: vec![0],
//!     // With a real tokenizer: TokenContrast::refusal_vs_compliance(&|w| first_ids(w)).
//!     contrast: Some(TokenContrast::new(
//!         TokenSet::from_ids("refusal", [0]),
//!         TokenSet::from_ids("compliance", [1]),
//!     )?),
//!     ..LensOptions::default()
//! };
//! let cmp = compare(&[("base", &base), ("fine-tune", &tuned)], &[0, 2, 1], &opts)?;
//!
//! // The lens at the last block reproduces the model's own logits.
//! assert!(cmp.models[0].last_point_max_abs_logit_diff.unwrap() < 1e-5);
//! // Statistics per model, probe point and position; divergences per pair.
//! let cell = &cmp.models[1].points[2].cells[0];
//! assert!(cell.entropy > 0.0 && cell.forward_kl.abs() < 1e-9);
//! assert!(cmp.pairs[0].points[2].cells[0].js_divergence <= std::f64::consts::LN_2);
//!
//! let json = cmp.to_json()?;
//! let heatmap = Heatmap::from_report(&cmp.models[1], CellColor::TopProbability)
//!     .to_svg(&HeatmapOptions::default())?;
//! let curves = CurveChart::log_prob_diff(&cmp, 2)?.to_svg(&CurveOptions::default())?;
//! assert!(json.contains("\"forward_kl\"") && heatmap.contains("&lt;&amp;&gt;"));
//! assert!(curves.contains("fine-tune"));
//! # Ok::<(), logit_lens::LensError>(())
//! ```

pub mod compare;
pub mod contrast;
mod engine;
pub mod error;
pub mod model;
pub mod probe;
pub mod report;
pub mod stats;
pub mod svg;

pub use compare::{
    compare, Comparison, Curves, Divergence, DivergenceCell, ModelCurves, PairCurves,
    PairDivergence, PairPoint, SCHEMA,
};
pub use contrast::{TokenContrast, TokenSet, COMPLIANCE_OPENERS, REFUSAL_OPENERS};
pub use error::{LensError, Result};
pub use model::{ForwardTrace, LensModel, ProbeHidden, ProbePoint};
pub use probe::{
    run_lens, CellStats, LensOptions, LensReport, PointFilter, PointReport, Positions, TargetStat,
    TokenLabel, TokenProb,
};
pub use report::{write_file_atomic, write_json_atomic};
pub use svg::{
    display_token, CellColor, CurveChart, CurveOptions, CurveSeries, Heatmap, HeatmapOptions,
};
