//! The small trait through which the lens talks to a model, and what one
//! forward pass hands back.
//!
//! The lens never sees weights. A model runs one forward pass and returns the
//! residual stream at every [`ProbePoint`] plus its own final logits
//! ([`ForwardTrace`]); it decodes any batch of residual vectors through its final
//! RMSNorm and unembedding ([`LensModel::decode`]) — the big matmul stays on the
//! model's own (possibly GPU) backend; and it turns token ids into strings for
//! labels.

use serde::{Deserialize, Serialize};

use crate::error::{LensError, Result};

/// Where in the network a residual stream is read.
///
/// Ordered by depth: `Embedding < Mid(0) < Post(0) < Mid(1) < ... < Post(L-1)`.
/// Serialised as `{"kind": "embedding"}`, `{"kind": "mid", "layer": 3}` or
/// `{"kind": "post", "layer": 3}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbePoint {
    /// The embedding output, i.e. the input of block 0.
    Embedding,
    /// Inside block `layer`: the residual stream after the attention
    /// sub-layer has been added (`h + attn(norm(h))`), before the MLP.
    Mid {
        /// Block index, from 0.
        layer: usize,
    },
    /// The output of block `layer` (after the MLP residual add). The last
    /// block's `Post` is what the model's final norm and unembedding read.
    Post {
        /// Block index, from 0.
        layer: usize,
    },
}

impl ProbePoint {
    /// Position in depth order: 0 for the embedding, `2 i + 1` for `Mid(i)`,
    /// `2 i + 2` for `Post(i)`.
    pub fn depth(self) -> usize {
        match self {
            ProbePoint::Embedding => 0,
            ProbePoint::Mid { layer } => 2 * layer + 1,
            ProbePoint::Post { layer } => 2 * layer + 2,
        }
    }

    /// Short label: `embed`, `L3.mid`, `L3.post`.
    pub fn label(self) -> String {
        match self {
            ProbePoint::Embedding => "embed".to_string(),
            ProbePoint::Mid { layer } => format!("L{layer}.mid"),
            ProbePoint::Post { layer } => format!("L{layer}.post"),
        }
    }

    /// The points of an `n_layers`-block model in depth order:
    /// embedding, then `Mid(i)`, `Post(i)` for each block.
    pub fn all(n_layers: usize) -> Vec<ProbePoint> {
        let mut v = Vec::with_capacity(2 * n_layers + 1);
        v.push(ProbePoint::Embedding);
        for layer in 0..n_layers {
            v.push(ProbePoint::Mid { layer });
            v.push(ProbePoint::Post { layer });
        }
        v
    }
}

impl std::fmt::Display for ProbePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// The residual stream at one probe point for every position.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeHidden {
    /// Where it was read.
    pub point: ProbePoint,
    /// `n_positions × hidden_size`, row-major (one row per position), *before*
    /// the final norm.
    pub hidden: Vec<f32>,
}

/// What one forward pass of a [`LensModel`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardTrace {
    /// Number of input tokens (= positions).
    pub n_positions: usize,
    /// Residual streams in depth order. A model exposes the embedding output,
    /// then for each block `Mid` (may be omitted) and `Post`; the last entry is
    /// the last block's `Post`.
    pub points: Vec<ProbeHidden>,
    /// The model's own final logits, `n_positions × vocab_size`, row-major.
    pub logits: Vec<f32>,
}

impl ForwardTrace {
    /// Checks sizes, depth order and that the last point is a block output.
    pub fn validate(&self, hidden_size: usize, vocab_size: usize) -> Result<()> {
        let n = self.n_positions;
        if n == 0 {
            return Err(LensError::Shape("trace has no positions".into()));
        }
        if self.points.is_empty() {
            return Err(LensError::Shape("trace has no probe points".into()));
        }
        if !matches!(
            self.points.first().map(|p| p.point),
            Some(ProbePoint::Embedding)
        ) {
            return Err(LensError::Shape(
                "the first probe point must be the embedding output".into(),
            ));
        }
        if self.points.len() > 1
            && !matches!(
                self.points.last().map(|p| p.point),
                Some(ProbePoint::Post { .. })
            )
        {
            return Err(LensError::Shape(
                "the last probe point must be a block output (Post)".into(),
            ));
        }
        for w in self.points.windows(2) {
            if w[0].point.depth() >= w[1].point.depth() {
                return Err(LensError::Shape(format!(
                    "probe points out of depth order: {} then {}",
                    w[0].point, w[1].point
                )));
            }
        }
        for p in &self.points {
            if p.hidden.len() != n * hidden_size {
                return Err(LensError::Shape(format!(
                    "{}: {} values, expected {n} positions × {hidden_size}",
                    p.point,
                    p.hidden.len()
                )));
            }
        }
        if self.logits.len() != n * vocab_size {
            return Err(LensError::Shape(format!(
                "logits: {} values, expected {n} positions × {vocab_size}",
                self.logits.len()
            )));
        }
        Ok(())
    }

    /// The hidden row of `point_index` at `position`.
    pub fn hidden_row(&self, point_index: usize, position: usize, hidden_size: usize) -> &[f32] {
        let h = &self.points[point_index].hidden;
        &h[position * hidden_size..(position + 1) * hidden_size]
    }

    /// The model's own logits at `position`.
    pub fn logits_row(&self, position: usize, vocab_size: usize) -> &[f32] {
        &self.logits[position * vocab_size..(position + 1) * vocab_size]
    }
}

/// A model the lens can probe.
///
/// Implement it next to the model type (the `deltaguard` root package does so
/// for llama-model's Llama). Requirements:
///
/// * [`trace`](Self::trace) runs one forward pass on `tokens` (no KV cache
///   reuse, causal attention as usual) and returns the residual stream at every
///   probe point plus the model's own final logits.
/// * [`decode`](Self::decode) applies the *final* RMSNorm (recomputed per row,
///   with the model's own weight and epsilon) and then the unembedding (tied or
///   untied) to `n` rows. Decoding the last block's `Post` rows must reproduce
///   the trace's logits.
/// * [`token_text`](Self::token_text) gives a printable string for a token id
///   (the raw vocabulary piece is fine; the plots escape and make whitespace
///   visible).
pub trait LensModel {
    /// Width of the residual stream.
    fn hidden_size(&self) -> usize;
    /// Number of output logits per position.
    fn vocab_size(&self) -> usize;
    /// One forward pass on `tokens`.
    fn trace(&self, tokens: &[u32]) -> Result<ForwardTrace>;
    /// Final norm + unembedding of `n` rows: `hidden` is `n × hidden_size`
    /// row-major, the result `n × vocab_size` row-major.
    fn decode(&self, hidden: &[f32], n: usize) -> Result<Vec<f32>>;
    /// Printable text of a token id.
    fn token_text(&self, id: u32) -> String;
}

impl<M: LensModel + ?Sized> LensModel for &M {
    fn hidden_size(&self) -> usize {
        (**self).hidden_size()
    }
    fn vocab_size(&self) -> usize {
        (**self).vocab_size()
    }
    fn trace(&self, tokens: &[u32]) -> Result<ForwardTrace> {
        (**self).trace(tokens)
    }
    fn decode(&self, hidden: &[f32], n: usize) -> Result<Vec<f32>> {
        (**self).decode(hidden, n)
    }
    fn token_text(&self, id: u32) -> String {
        (**self).token_text(id)
    }
}
