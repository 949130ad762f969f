//! Which tensors a delta compressor touches.
//!
//! BitDelta (Liu et al. 2024, `bitdelta/diff.py`) compresses only the linear
//! projections inside the decoder blocks — every `*proj` weight under
//! `self_attn` and `mlp` — and keeps embeddings, `lm_head` and norms from the
//! fine-tuned model at full precision. That is [`Selection::bitdelta`], the
//! default. Users override it with glob patterns over HF tensor names
//! (`*` matches any run of characters, `?` one character).

use crate::error::DeltaError;

/// A rule that says, per tensor, whether its delta is compressed or the
/// fine-tuned tensor is carried at full precision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    include: Vec<String>,
    exclude: Vec<String>,
}

/// BitDelta's default include patterns.
pub const BITDELTA_PATTERNS: &[&str] = &["*.self_attn.*proj.weight", "*.mlp.*proj.weight"];

impl Default for Selection {
    fn default() -> Self {
        Selection::bitdelta()
    }
}

impl Selection {
    /// BitDelta's rule: `*.self_attn.*proj.weight` and `*.mlp.*proj.weight`.
    pub fn bitdelta() -> Selection {
        Selection {
            include: BITDELTA_PATTERNS.iter().map(|s| s.to_string()).collect(),
            exclude: Vec::new(),
        }
    }

    /// Compress the 2-D tensors that match an `include` pattern and no `exclude`
    /// pattern.
    pub fn from_patterns<S: AsRef<str>>(
        include: &[S],
        exclude: &[S],
    ) -> Result<Selection, DeltaError> {
        let check = |p: &S| -> Result<String, DeltaError> {
            let p = p.as_ref();
            if p.is_empty() {
                return Err(DeltaError::Pattern {
                    pattern: p.to_string(),
                    reason: "empty pattern".to_string(),
                });
            }
            Ok(p.to_string())
        };
        Ok(Selection {
            include: include.iter().map(check).collect::<Result<_, _>>()?,
            exclude: exclude.iter().map(check).collect::<Result<_, _>>()?,
        })
    }

    /// Patterns a compressed tensor's name must match (one of them).
    pub fn include_patterns(&self) -> &[String] {
        &self.include
    }

    /// Patterns a compressed tensor's name must not match (any of them).
    pub fn exclude_patterns(&self) -> &[String] {
        &self.exclude
    }

    /// Whether the tensor `name` with `shape` is compressed. Only matrices
    /// qualify: a compressor works on 2-D deltas.
    pub fn selects(&self, name: &str, shape: &[usize]) -> bool {
        shape.len() == 2
            && self.include.iter().any(|p| glob_match(p, name))
            && !self.exclude.iter().any(|p| glob_match(p, name))
    }
}

/// Glob match with `*` (any run, possibly empty) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with single backtrack point: linear for patterns with
    // one `*`, and never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitdelta_default_selects_projections_only() {
        let s = Selection::bitdelta();
        let m = [8, 8];
        assert!(s.selects("model.layers.0.self_attn.q_proj.weight", &m));
        assert!(s.selects("model.layers.31.mlp.down_proj.weight", &m));
        assert!(!s.selects("model.layers.0.input_layernorm.weight", &[8]));
        assert!(!s.selects("model.embed_tokens.weight", &m));
        assert!(!s.selects("lm_head.weight", &m));
        assert!(!s.selects("model.norm.weight", &[8]));
        // a 1-D bias under self_attn is never compressed
        assert!(!s.selects("model.layers.0.self_attn.q_proj.bias", &[8]));
    }

    #[test]
    fn patterns_override() {
        let s = Selection::from_patterns(&["*proj.weight"], &["*.layers.0.*"]).unwrap();
        assert!(!s.selects("model.layers.0.mlp.up_proj.weight", &[2, 2]));
        assert!(s.selects("model.layers.1.mlp.up_proj.weight", &[2, 2]));
        assert!(Selection::from_patterns(&[""], &[]).is_err());
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match(
            "*.q_proj.*",
            "model.layers.0.self_attn.q_proj.weight"
        ));
    }
}
