//! # logit-lens — not built yet
//!
//! This crate will decode each layer's residual stream (embedding output, after
//! attention, after each block) through the final RMSNorm and the unembedding,
//! compute the tuned-lens statistics (`rank`, `entropy`, `forward_kl`,
//! `log_prob_diff`, `kl_divergence`, `js_divergence`, `total_variation`) and draw
//! SVG heatmaps and `log_prob_diff` curves comparing a base, a fine-tune and its
//! compressed fine-tune.
//!
//! It is tracked by issue 6. Nothing here is implemented yet, and the crate
//! exports nothing, so no caller can mistake it for a working lens.
