//! Plain statistics of next-token distributions (tuned-lens names).
//!
//! Everything takes log-probabilities as `f64` slices produced by
//! [`log_softmax`] (which accumulates in `f64`), so divergences between two
//! nearly equal distributions do not drown in `f32` rounding. All natural
//! logarithms: entropies and divergences are in nats.

use std::f64::consts::LN_2;

/// Log-softmax of one row of logits, accumulated in `f64`:
/// `log p_i = x_i − log Σ_j exp(x_j)`. Logits must be finite.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let sum: f64 = logits.iter().map(|&x| (f64::from(x) - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&x| f64::from(x) - lse).collect()
}

/// `log Σ exp(v)`, stable; `-inf` for an empty input.
pub fn logsumexp(values: impl IntoIterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.into_iter().collect();
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    max + v.iter().map(|&x| (x - max).exp()).sum::<f64>().ln()
}

/// `log(exp(a) + exp(b))`, stable.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// A distribution with its log-probabilities and probabilities, so that
/// several statistics of it share one pass of `exp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dist {
    /// Natural log-probabilities.
    pub logp: Vec<f64>,
    /// Probabilities, `exp(logp)`.
    pub p: Vec<f64>,
}

impl Dist {
    /// `softmax(logits)` (see [`log_softmax`]).
    pub fn from_logits(logits: &[f32]) -> Self {
        Dist::from_log_probs(log_softmax(logits))
    }

    /// From log-probabilities.
    pub fn from_log_probs(logp: Vec<f64>) -> Self {
        let p = logp.iter().map(|x| x.exp()).collect();
        Dist { logp, p }
    }

    /// [`entropy`] of this distribution.
    pub fn entropy(&self) -> f64 {
        entropy_core(&self.p, &self.logp)
    }

    /// [`kl_divergence`]`(self ‖ other)`.
    pub fn kl(&self, other: &Dist) -> f64 {
        kl_core(&self.p, &self.logp, &other.logp)
    }

    /// [`js_divergence`] of the two.
    pub fn js(&self, other: &Dist) -> f64 {
        js_core(&self.p, &self.logp, &other.p, &other.logp)
    }

    /// [`total_variation`] of the two.
    pub fn tv(&self, other: &Dist) -> f64 {
        tv_core(&self.p, &other.p)
    }
}

fn exp_all(logp: &[f64]) -> Vec<f64> {
    logp.iter().map(|x| x.exp()).collect()
}

fn entropy_core(p: &[f64], logp: &[f64]) -> f64 {
    let h: f64 = p
        .iter()
        .zip(logp)
        .map(|(&p, &lp)| if p > 0.0 { -p * lp } else { 0.0 })
        .sum();
    h.max(0.0)
}

fn kl_core(p: &[f64], logp: &[f64], logq: &[f64]) -> f64 {
    debug_assert_eq!(logp.len(), logq.len());
    let kl: f64 = p
        .iter()
        .zip(logp)
        .zip(logq)
        .map(|((&p, &lp), &lq)| if p > 0.0 { p * (lp - lq) } else { 0.0 })
        .sum();
    kl.max(0.0)
}

fn js_core(p: &[f64], logp: &[f64], q: &[f64], logq: &[f64]) -> f64 {
    debug_assert_eq!(logp.len(), logq.len());
    let mut js = 0.0;
    for i in 0..p.len() {
        let (pi, qi) = (p[i], q[i]);
        let m = 0.5 * (pi + qi);
        if m > 0.0 {
            let logm = if m.is_normal() {
                m.ln()
            } else {
                log_add_exp(logp[i], logq[i]) - LN_2
            };
            if pi > 0.0 {
                js += 0.5 * pi * (logp[i] - logm);
            }
            if qi > 0.0 {
                js += 0.5 * qi * (logq[i] - logm);
            }
        }
    }
    js.clamp(0.0, LN_2)
}

fn tv_core(p: &[f64], q: &[f64]) -> f64 {
    debug_assert_eq!(p.len(), q.len());
    let tv: f64 = p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum();
    (0.5 * tv).clamp(0.0, 1.0)
}

/// Shannon entropy `H(p) = −Σ p_i log p_i` in nats (0 ≤ H ≤ ln V).
pub fn entropy(logp: &[f64]) -> f64 {
    entropy_core(&exp_all(logp), logp)
}

/// `KL(p ‖ q) = Σ p_i (log p_i − log q_i)` in nats, clamped at 0 against
/// rounding. Terms with `p_i = 0` contribute nothing. Not symmetric.
///
/// As `forward_kl` the lens reports `KL(final ‖ lens)`: `p` is the model's own
/// output distribution and `q` the lens distribution at a probe point.
pub fn kl_divergence(logp: &[f64], logq: &[f64]) -> f64 {
    kl_core(&exp_all(logp), logp, logq)
}

/// Jensen–Shannon divergence `½ KL(p ‖ m) + ½ KL(q ‖ m)` with `m = ½ (p + q)`,
/// in nats: symmetric and in `[0, ln 2]` (clamped against rounding).
pub fn js_divergence(logp: &[f64], logq: &[f64]) -> f64 {
    js_core(&exp_all(logp), logp, &exp_all(logq), logq)
}

/// Total variation distance `½ Σ |p_i − q_i|`, in `[0, 1]`.
pub fn total_variation(logp: &[f64], logq: &[f64]) -> f64 {
    tv_core(&exp_all(logp), &exp_all(logq))
}

/// 0-based rank of token `id`: the number of tokens with a strictly larger
/// log-probability (so the top-1 token has rank 0; ties share the better
/// rank). `None` if `id` is outside the vocabulary.
pub fn rank(logp: &[f64], id: u32) -> Option<usize> {
    let v = *logp.get(id as usize)?;
    Some(logp.iter().filter(|&&x| x > v).count())
}

/// The `k` most probable tokens as `(id, log_prob)`, most probable first;
/// ties are broken by the smaller id.
pub fn top_k(logp: &[f64], k: usize) -> Vec<(u32, f64)> {
    let k = k.min(logp.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &u32, b: &u32| {
        logp[*b as usize]
            .total_cmp(&logp[*a as usize])
            .then(a.cmp(b))
    };
    let mut idx: Vec<u32> = (0..logp.len() as u32).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable_by(cmp);
    idx.into_iter().map(|i| (i, logp[i as usize])).collect()
}

/// `log_prob_diff = log Σ_{t ∈ target} p_t − log Σ_{a ∈ anti} p_a`
/// (each side a logsumexp of log-probabilities), in nats.
///
/// Positive when the distribution puts more mass on the target set than on
/// the anti-target set. Ids outside the vocabulary are ignored; returns `None`
/// if either side has no valid id.
pub fn log_prob_diff(logp: &[f64], target: &[u32], anti: &[u32]) -> Option<f64> {
    let side = |ids: &[u32]| {
        let v: Vec<f64> = ids
            .iter()
            .filter_map(|&i| logp.get(i as usize).copied())
            .collect();
        if v.is_empty() {
            None
        } else {
            Some(logsumexp(v))
        }
    };
    Some(side(target)? - side(anti)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_equal_logits_is_uniform() {
        let lp = log_softmax(&[2.0, 2.0, 2.0, 2.0]);
        for x in &lp {
            assert!((x + 4f64.ln()).abs() < 1e-12);
        }
        assert!((entropy(&lp) - 4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn rank_and_top_k() {
        let lp = log_softmax(&[0.0, 3.0, 1.0, 3.0]);
        assert_eq!(rank(&lp, 1), Some(0));
        assert_eq!(rank(&lp, 3), Some(0));
        assert_eq!(rank(&lp, 2), Some(2));
        assert_eq!(rank(&lp, 0), Some(3));
        assert_eq!(rank(&lp, 9), None);
        let top: Vec<u32> = top_k(&lp, 3).into_iter().map(|(i, _)| i).collect();
        assert_eq!(top, vec![1, 3, 2]);
        assert_eq!(top_k(&lp, 10).len(), 4);
    }

    #[test]
    fn disjoint_distributions() {
        let p = [0.0, f64::NEG_INFINITY];
        let q = [f64::NEG_INFINITY, 0.0];
        assert!((js_divergence(&p, &q) - LN_2).abs() < 1e-12);
        assert!((total_variation(&p, &q) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn log_prob_diff_by_hand() {
        // p = (0.5, 0.25, 0.25): target {0} vs anti {1, 2} → log 0.5 − log 0.5 = 0.
        let lp = [0.5f64.ln(), 0.25f64.ln(), 0.25f64.ln()];
        assert!(log_prob_diff(&lp, &[0], &[1, 2]).unwrap().abs() < 1e-12);
        assert!((log_prob_diff(&lp, &[0], &[1]).unwrap() - 2f64.ln()).abs() < 1e-12);
        assert_eq!(log_prob_diff(&lp, &[], &[1]), None);
    }
}
