//! JSON output and atomic file writes.
//!
//! # JSON schema (`"schema": "deltaguard.logit-lens.v1"`)
//!
//! [`Comparison::to_json`] writes one object (a single-model run is a
//! comparison of one model). Probabilities are plain numbers, logarithms are
//! natural, entropies and divergences are in nats. Row order is depth order
//! (embedding first); column order is `positions`.
//!
//! ```text
//! {
//!   "schema": "deltaguard.logit-lens.v1",
//!   "version": "0.1.0",                         // logit-lens crate version
//!   "options": {
//!     "top_k": 5,
//!     "targets": [306, ...],                    // token ids with per-cell rank/prob
//!     "contrast": null | {
//!       "target": {"name": "refusal",    "words": ["I", ...],    "ids": [...]},
//!       "anti":   {"name": "compliance", "words": ["Sure", ...], "ids": [...]},
//!       "dropped_shared": [...]                 // ids both sides resolved to, removed
//!     },
//!     "positions": "all" | {"last": n} | {"list": [..]},
//!     "points": "all" | "block_outputs",
//!     "batch_rows": 128
//!   },
//!   "tokens":    [{"id": 1, "text": "<s>"}, ...],  // the whole input
//!   "positions": [0, 1, ...],                       // decoded positions (columns)
//!   "points":    [{"kind": "embedding"}, {"kind": "mid", "layer": 0},
//!                 {"kind": "post", "layer": 0}, ...],  // rows
//!   "models": [{
//!     "model": "base",
//!     "tokens": [...], "positions": [...],
//!     "points": [{
//!       "point": {"kind": "post", "layer": 3}, "label": "L3.post",
//!       "cells": [{                              // one per position
//!         "position": 7,                         // predicts token 8
//!         "top": [{"id": 306, "text": "▁I", "prob": 0.61, "log_prob": -0.49}, ...],
//!         "entropy": 1.73,                       // H(lens), nats
//!         "forward_kl": 0.42,                    // KL(final ‖ lens), nats
//!         "targets": [{"id": 306, "text": "▁I", "rank": 0, "prob": 0.61, "log_prob": -0.49}],
//!         "log_prob_diff": 2.1 | null            // lse log p[target] − lse log p[anti]
//!       }, ...]
//!     }, ...],
//!     "output": [ cell, ... ],                   // same statistics of the model's own logits
//!     "last_point_max_abs_logit_diff": 1e-6 | null  // lens at last block vs model logits
//!   }, ...],
//!   "pairs": [{                                  // every (i, j), i < j, in model order
//!     "a": "base", "b": "fine-tune",
//!     "points": [{"point": ..., "label": "L3.post",
//!                 "cells": [{"position": 7, "kl_divergence": 0.3,   // KL(P_a ‖ P_b)
//!                            "js_divergence": 0.07, "total_variation": 0.2}, ...]}, ...],
//!     "output": [ divergence cell, ... ]         // between the models' own outputs
//!   }, ...],
//!   "curves": {                                  // at the last decoded position
//!     "position": 7, "points": ["embed", "L0.mid", ...],
//!     "models": [{"model": "base", "log_prob_diff": [..|null], "entropy": [..],
//!                 "forward_kl": [..], "top1": ["▁I", ..], "top1_prob": [..]}, ...],
//!     "pairs":  [{"a": "base", "b": "fine-tune", "kl_divergence": [..],
//!                 "js_divergence": [..], "total_variation": [..]}, ...]
//!   }
//! }
//! ```

use std::path::Path;

use serde::Serialize;

use crate::compare::{Comparison, SCHEMA};
use crate::error::{LensError, Result};

/// Writes `bytes` to `path` atomically: a uniquely named temporary file in
/// the same directory, flushed and synced, then renamed over `path`
/// (delta-core's writer, the workspace's one implementation).
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    delta_core::write_file_atomic(path, bytes).map_err(|e| match e {
        delta_core::CheckpointError::Io { source, .. } => LensError::io(path, source),
        other => LensError::Input(format!("{}: {other}", path.display())),
    })
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_file_atomic(path, &bytes)
}

impl Comparison {
    /// Pretty JSON (see the [module doc](crate::report) for the schema).
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Reads a document written by [`to_json`](Self::to_json); refuses other
    /// schemas.
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Comparison = serde_json::from_str(text)?;
        if c.schema != SCHEMA {
            return Err(LensError::Input(format!(
                "unknown schema `{}` (expected `{SCHEMA}`)",
                c.schema
            )));
        }
        Ok(c)
    }

    /// Writes the JSON atomically to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        write_json_atomic(path, self)
    }
}
