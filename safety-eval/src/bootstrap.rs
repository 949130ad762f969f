//! Percentile bootstrap confidence intervals, seeded and portable
//! (ChaCha8, so the same seed gives the same interval on every machine).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Bootstrap settings. Default: 1000 resamples, 95 %, seed 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    pub resamples: usize,
    pub confidence: f64,
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 1000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// A proportion with its bootstrap interval and sample count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Fraction of positive outcomes (0 when `n == 0`).
    pub rate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Confidence level of `[ci_low, ci_high]`.
    pub confidence: f64,
    /// Number of samples.
    pub n: usize,
    /// Number of positive outcomes.
    pub count: usize,
}

impl Rate {
    /// Half-width of the interval, for display.
    pub fn half_width(&self) -> f64 {
        (self.ci_high - self.ci_low) / 2.0
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} [{:.3}, {:.3}] (n={})",
            self.rate, self.ci_low, self.ci_high, self.n
        )
    }
}

/// Linear-interpolation quantile of sorted data (numpy's default).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Percentile-bootstrap interval of the mean of `values`.
/// Returns `(mean, low, high)`; for empty input `(0, 0, 1)`.
pub fn bootstrap_mean(values: &[f64], cfg: &BootstrapConfig) -> (f64, f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0, 1.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let resamples = cfg.resamples.max(1);
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut s = 0.0;
        for _ in 0..n {
            s += values[rng.random_range(0..n)];
        }
        stats.push(s / n as f64);
    }
    stats.sort_by(f64::total_cmp);
    let alpha = 1.0 - cfg.confidence;
    (
        mean,
        quantile_sorted(&stats, alpha / 2.0),
        quantile_sorted(&stats, 1.0 - alpha / 2.0),
    )
}

/// The rate of `true` outcomes with its percentile-bootstrap interval.
pub fn rate(outcomes: &[bool], cfg: &BootstrapConfig) -> Rate {
    let values: Vec<f64> = outcomes
        .iter()
        .map(|&b| if b { 1.0 } else { 0.0 })
        .collect();
    let (mean, lo, hi) = bootstrap_mean(&values, cfg);
    Rate {
        rate: mean,
        ci_low: lo,
        ci_high: hi,
        confidence: cfg.confidence,
        n: outcomes.len(),
        count: outcomes.iter().filter(|&&b| b).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_seed_and_contains_estimate() {
        let o: Vec<bool> = (0..50).map(|i| i % 3 == 0).collect();
        let cfg = BootstrapConfig::default();
        let a = rate(&o, &cfg);
        let b = rate(&o, &cfg);
        assert_eq!(a, b);
        assert_eq!(a.n, 50);
        assert_eq!(a.count, 17);
        assert!(a.ci_low <= a.rate && a.rate <= a.ci_high);
        assert!(a.ci_low > 0.15 && a.ci_high < 0.55, "{a}");
    }

    #[test]
    fn degenerate_cases() {
        let cfg = BootstrapConfig::default();
        let all = rate(&[true; 10], &cfg);
        assert_eq!((all.rate, all.ci_low, all.ci_high), (1.0, 1.0, 1.0));
        let none = rate(&[false; 10], &cfg);
        assert_eq!((none.rate, none.ci_low, none.ci_high), (0.0, 0.0, 0.0));
        let empty = rate(&[], &cfg);
        assert_eq!((empty.n, empty.ci_low, empty.ci_high), (0, 0.0, 1.0));
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), 2.5);
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 4.0);
    }

    /// Simulation: the 95 % interval covers the true rate in roughly ≥ 90 %
    /// of repetitions (the percentile bootstrap is a little liberal at small n).
    #[test]
    fn interval_covers_true_rate_in_simulation() {
        let mut rng = ChaCha8Rng::seed_from_u64(12345);
        for &(p, n) in &[(0.3, 80usize), (0.6, 60)] {
            let reps = 200;
            let mut covered = 0;
            for r in 0..reps {
                let o: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < p).collect();
                let cfg = BootstrapConfig {
                    resamples: 500,
                    confidence: 0.95,
                    seed: r as u64,
                };
                let ci = rate(&o, &cfg);
                if ci.ci_low <= p && p <= ci.ci_high {
                    covered += 1;
                }
            }
            let cov = covered as f64 / reps as f64;
            assert!(cov >= 0.90, "coverage {cov} for p={p} n={n}");
        }
    }
}
