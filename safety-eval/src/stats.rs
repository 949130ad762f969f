//! Statistics for verdicts that mean what they say: exact and score intervals
//! for rates, the exact paired test, multiple-testing correction, a cluster
//! bootstrap, and task retention.
//!
//! - [`wilson`] and [`clopper_pearson`]: intervals for a rate `count / n`
//!   that never collapse to zero width (the percentile bootstrap of
//!   [`crate::bootstrap`] gives `[0, 0]` for 0/40). `n = 0` is a typed error.
//! - [`mcnemar`] / [`mcnemar_pooled`]: exact two-sided McNemar test on paired
//!   binary outcomes (the same prompts answered by two models), i.e. a
//!   binomial(½) test on the discordant pairs; the pooled version adds the
//!   discordant pairs of several seeds, which is the exact conditional test
//!   of a stratified design (under H0 every discordant pair, in any stratum,
//!   goes either way with probability ½).
//! - [`holm`]: Holm–Bonferroni adjusted p-values, in input order.
//! - [`cluster_bootstrap`]: a seeded percentile bootstrap that resamples whole
//!   clusters (e.g. `(seed, topic)`, whose prompts are wordings of one goal),
//!   of any statistic of per-column means; [`cluster_bootstrap_mean`] is the
//!   one-column case.
//! - [`retention`]: task retention `R = (U_c − U_base) / (U_full − U_base)`
//!   with a cluster-bootstrap interval, or a typed [`Retention::Undefined`]
//!   when the full fine-tune did not learn the task well enough for `R` to
//!   mean anything.
//!
//! Everything is deterministic: the bootstrap uses ChaCha8 from a seed.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::bootstrap::Rate;

/// Largest number of trials [`clopper_pearson`] and the binomial tails
/// accept: bounds the work of one interval (the exact interval is a
/// bisection over a sum of `n` terms).
pub const MAX_TRIALS: usize = 1_000_000;

/// Largest number of bootstrap resamples accepted.
pub const MAX_RESAMPLES: usize = 1_000_000;

/// Invalid input to a statistic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A rate or mean of nothing.
    #[error("{what}: no observations")]
    Empty {
        /// What was being estimated.
        what: String,
    },
    /// More successes than trials.
    #[error("{what}: count {count} exceeds n {n}")]
    CountExceedsTotal {
        /// What was being estimated.
        what: String,
        /// Successes.
        count: usize,
        /// Trials.
        n: usize,
    },
    /// Too many trials or resamples for the bounded work of one call.
    #[error("{what}: {got} exceeds the limit {limit}")]
    TooLarge {
        /// Which size.
        what: String,
        /// The size given.
        got: usize,
        /// The most accepted.
        limit: usize,
    },
    /// A confidence level outside (0, 1), or too close to 1 to compute.
    #[error("confidence {0} is not in (0, 1 - 1e-12]")]
    Confidence(f64),
    /// Paired inputs of different lengths.
    #[error("{what}: lengths differ ({left} vs {right})")]
    LengthMismatch {
        /// Which inputs.
        what: String,
        /// First length.
        left: usize,
        /// Second length.
        right: usize,
    },
    /// A NaN or infinite input, or a p-value outside [0, 1].
    #[error("{what}: value {value} at index {index} is not valid")]
    BadValue {
        /// Which input.
        what: String,
        /// Position of the value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A bootstrap with no resamples.
    #[error("bootstrap needs at least one resample")]
    NoResamples,
    /// A statistic that is not defined on this data.
    #[error("{0}")]
    Undefined(String),
}

fn check_confidence(confidence: f64) -> Result<(), StatsError> {
    if confidence.is_finite() && confidence > 0.0 && confidence <= 1.0 - 1e-12 {
        Ok(())
    } else {
        Err(StatsError::Confidence(confidence))
    }
}

fn check_counts(what: &str, count: usize, n: usize) -> Result<(), StatsError> {
    if n == 0 {
        return Err(StatsError::Empty { what: what.into() });
    }
    if count > n {
        return Err(StatsError::CountExceedsTotal {
            what: what.into(),
            count,
            n,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- normal quantile

/// Standard normal CDF Φ(x) for x ≥ 0, as ½ + φ(x)·Σ x^(2k+1)/(2k+1)!!.
/// Every term is positive, so the sum has no cancellation; accurate to a
/// few ulps for the x a confidence level in (0, 1 − 1e-12] needs (x < 8).
fn normal_cdf_nonneg(x: f64) -> f64 {
    let mut term = x;
    let mut sum = x;
    let x2 = x * x;
    let mut k = 1.0;
    while term > sum * 1e-17 {
        term *= x2 / (2.0 * k + 1.0);
        sum += term;
        k += 1.0;
    }
    let phi = (-0.5 * x2).exp() / (2.0 * std::f64::consts::PI).sqrt();
    0.5 + phi * sum
}

/// The two-sided critical value z with Φ(z) = (1 + confidence) / 2, e.g.
/// 1.959963984540054 for 95 %. Found by bisection on [`normal_cdf_nonneg`].
pub fn normal_critical_value(confidence: f64) -> Result<f64, StatsError> {
    check_confidence(confidence)?;
    let target = 0.5 + confidence / 2.0;
    let (mut lo, mut hi) = (0.0f64, 9.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf_nonneg(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 {
            break;
        }
    }
    Ok(0.5 * (lo + hi))
}

// ---------------------------------------------------------------- rate intervals

fn rate_of(count: usize, n: usize, low: f64, high: f64, confidence: f64) -> Rate {
    Rate {
        rate: count as f64 / n as f64,
        ci_low: low.clamp(0.0, 1.0),
        ci_high: high.clamp(0.0, 1.0),
        confidence,
        n,
        count,
    }
}

/// Wilson score interval for `count` successes in `n` trials:
/// centre `(p + z²/2n) / (1 + z²/n)`, half-width
/// `z / (1 + z²/n) · √(p(1−p)/n + z²/4n²)`. Never zero width for `n ≥ 1`;
/// `n = 0` is [`StatsError::Empty`].
pub fn wilson(count: usize, n: usize, confidence: f64) -> Result<Rate, StatsError> {
    check_counts("wilson interval", count, n)?;
    let z = normal_critical_value(confidence)?;
    let nf = n as f64;
    let p = count as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z / denom * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    // The exact endpoints at p = 0 and p = 1 are 0 and 1; rounding would
    // otherwise leave ±1e-17.
    let low = if count == 0 { 0.0 } else { centre - half };
    let high = if count == n { 1.0 } else { centre + half };
    Ok(rate_of(count, n, low, high, confidence))
}

/// [`wilson`] of the `true` outcomes.
pub fn wilson_of(outcomes: &[bool], confidence: f64) -> Result<Rate, StatsError> {
    wilson(
        outcomes.iter().filter(|&&b| b).count(),
        outcomes.len(),
        confidence,
    )
}

/// `ln C(n, k)` for `k = 0..=n`, built up term by term.
fn ln_choose_row(n: usize) -> Vec<f64> {
    let mut row = Vec::with_capacity(n + 1);
    let mut acc = 0.0f64;
    row.push(0.0);
    for k in 1..=n {
        acc += ((n - k + 1) as f64).ln() - (k as f64).ln();
        row.push(acc);
    }
    row
}

/// P(X ≤ x) for X ~ Binomial(n, p), from a precomputed `ln C(n, ·)` row.
fn binom_cdf(x: usize, n: usize, p: f64, ln_choose: &[f64]) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if x >= n { 1.0 } else { 0.0 };
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    let s: f64 = (0..=x.min(n))
        .map(|k| (ln_choose[k] + k as f64 * lp + (n - k) as f64 * lq).exp())
        .sum();
    s.min(1.0)
}

/// The p in (0, 1) where the decreasing function `f(p)` crosses `target`.
fn bisect_decreasing(f: impl Fn(f64) -> f64, target: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Clopper–Pearson exact interval: the `p` whose binomial tails put
/// `(1 − confidence) / 2` beyond `count` on each side
/// (`P(X ≥ count | p_low) = α/2`, `P(X ≤ count | p_high) = α/2`), with
/// `p_low = 0` at `count = 0` and `p_high = 1` at `count = n`. Conservative
/// (coverage ≥ the level); never zero width for `n ≥ 1`.
pub fn clopper_pearson(count: usize, n: usize, confidence: f64) -> Result<Rate, StatsError> {
    check_counts("Clopper-Pearson interval", count, n)?;
    check_confidence(confidence)?;
    if n > MAX_TRIALS {
        return Err(StatsError::TooLarge {
            what: "Clopper-Pearson trials".into(),
            got: n,
            limit: MAX_TRIALS,
        });
    }
    let tail = (1.0 - confidence) / 2.0;
    let row = ln_choose_row(n);
    let low = if count == 0 {
        0.0
    } else {
        // P(X ≥ count | p) = 1 − P(X ≤ count − 1 | p) increases with p.
        bisect_decreasing(|p| binom_cdf(count - 1, n, p, &row), 1.0 - tail)
    };
    let high = if count == n {
        1.0
    } else {
        bisect_decreasing(|p| binom_cdf(count, n, p, &row), tail)
    };
    Ok(rate_of(count, n, low, high, confidence))
}

// ---------------------------------------------------------------- McNemar

/// The discordant pairs of a paired comparison of models A and B on the
/// same prompts: `a_only` = A succeeded and B did not, `b_only` = the
/// reverse. Concordant pairs carry no information in McNemar's test but are
/// counted for the rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PairedCounts {
    /// Pairs where A's outcome is true and B's false.
    pub a_only: usize,
    /// Pairs where B's outcome is true and A's false.
    pub b_only: usize,
    /// Pairs where both are true.
    pub both: usize,
    /// Pairs where both are false.
    pub neither: usize,
}

impl PairedCounts {
    /// Counts of the pairs `(a[i], b[i])`.
    pub fn from_pairs(a: &[bool], b: &[bool]) -> Result<Self, StatsError> {
        if a.len() != b.len() {
            return Err(StatsError::LengthMismatch {
                what: "paired outcomes".into(),
                left: a.len(),
                right: b.len(),
            });
        }
        let mut c = Self::default();
        for (&x, &y) in a.iter().zip(b) {
            match (x, y) {
                (true, false) => c.a_only += 1,
                (false, true) => c.b_only += 1,
                (true, true) => c.both += 1,
                (false, false) => c.neither += 1,
            }
        }
        Ok(c)
    }

    /// Number of pairs.
    pub fn n(&self) -> usize {
        self.a_only + self.b_only + self.both + self.neither
    }

    /// Successes of A.
    pub fn a_count(&self) -> usize {
        self.a_only + self.both
    }

    /// Successes of B.
    pub fn b_count(&self) -> usize {
        self.b_only + self.both
    }

    /// The sum of two tables (pairs of another stratum or seed).
    pub fn plus(self, other: Self) -> Self {
        Self {
            a_only: self.a_only + other.a_only,
            b_only: self.b_only + other.b_only,
            both: self.both + other.both,
            neither: self.neither + other.neither,
        }
    }
}

/// Result of an exact McNemar test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// The (pooled) paired counts tested.
    pub counts: PairedCounts,
    /// Exact two-sided p-value: `min(1, 2 · P(X ≤ min(a_only, b_only)))`
    /// for X ~ Binomial(a_only + b_only, ½); 1 without discordant pairs.
    pub p_value: f64,
}

/// P(X ≤ k) for X ~ Binomial(n, ½): exact integer arithmetic while
/// `C(n, ·)` fits in u128 (n ≤ 125), log-space sums beyond.
fn binom_half_cdf(k: usize, n: usize) -> f64 {
    if k >= n {
        return 1.0;
    }
    if n <= 125 {
        let mut c: u128 = 1;
        let mut sum: u128 = 1;
        for i in 1..=k {
            c = c * (n - i + 1) as u128 / i as u128;
            sum += c;
        }
        return sum as f64 / 2f64.powi(n as i32);
    }
    let row = ln_choose_row(n);
    let ln_half = n as f64 * std::f64::consts::LN_2;
    let s: f64 = (0..=k).map(|i| (row[i] - ln_half).exp()).sum();
    s.min(1.0)
}

/// Exact two-sided McNemar test of one table.
pub fn mcnemar_counts(counts: PairedCounts) -> Result<McNemar, StatsError> {
    let discordant = counts.a_only + counts.b_only;
    if discordant > MAX_TRIALS {
        return Err(StatsError::TooLarge {
            what: "McNemar discordant pairs".into(),
            got: discordant,
            limit: MAX_TRIALS,
        });
    }
    let p_value = if discordant == 0 {
        1.0
    } else {
        let k = counts.a_only.min(counts.b_only);
        (2.0 * binom_half_cdf(k, discordant)).min(1.0)
    };
    Ok(McNemar { counts, p_value })
}

/// Exact two-sided McNemar test on the paired outcomes `(a[i], b[i])`
/// (e.g. attack success of the full fine-tune and of its compressed version
/// on the same held-out prompts).
pub fn mcnemar(a: &[bool], b: &[bool]) -> Result<McNemar, StatsError> {
    mcnemar_counts(PairedCounts::from_pairs(a, b)?)
}

/// Exact McNemar test pooling the pairs of several strata (seeds): the
/// discordant counts are summed. Under H0 each discordant pair of every
/// stratum is A-only with probability ½ independently, so the pooled count
/// is Binomial(total discordant, ½): the exact conditional test of the
/// stratified design.
pub fn mcnemar_pooled(strata: &[(Vec<bool>, Vec<bool>)]) -> Result<McNemar, StatsError> {
    let mut total = PairedCounts::default();
    for (a, b) in strata {
        total = total.plus(PairedCounts::from_pairs(a, b)?);
    }
    mcnemar_counts(total)
}

// ---------------------------------------------------------------- Holm

/// Holm–Bonferroni step-down adjusted p-values, returned in input order:
/// with the p-values sorted ascending `p(1) ≤ … ≤ p(m)`,
/// `adj(i) = max_{j ≤ i} min(1, (m − j + 1) · p(j))`. Reject where
/// `adj < α` to control the family-wise error rate at α. Ties keep their
/// input order. A NaN or out-of-range p-value is an error.
pub fn holm(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    for (index, &p) in p_values.iter().enumerate() {
        if !(0.0..=1.0).contains(&p) {
            return Err(StatsError::BadValue {
                what: "p-value".into(),
                index,
                value: p,
            });
        }
    }
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]).then(i.cmp(&j)));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let a = ((m - rank) as f64 * p_values[i]).min(1.0);
        running = running.max(a);
        adjusted[i] = running;
    }
    Ok(adjusted)
}

// ---------------------------------------------------------------- cluster bootstrap

/// Settings of the cluster bootstrap. Default: 2000 resamples, 95 %, seed 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusterBootstrap {
    /// Number of resamples of the clusters.
    pub resamples: usize,
    /// Confidence level of the percentile interval.
    pub confidence: f64,
    /// Seed of the ChaCha8 generator.
    pub seed: u64,
}

impl Default for ClusterBootstrap {
    fn default() -> Self {
        Self {
            resamples: 2000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// A point estimate with a percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on the data as observed.
    pub estimate: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// Confidence level.
    pub confidence: f64,
    /// Number of observations (items).
    pub n: usize,
    /// Number of clusters resampled.
    pub clusters: usize,
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} [{:.3}, {:.3}] (n={}, clusters={})",
            self.estimate, self.low, self.high, self.n, self.clusters
        )
    }
}

/// Linear-interpolation quantile of sorted data (numpy's default).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (sorted[lo], sorted[hi]);
    if a == b {
        // also keeps ±∞ endpoints from producing NaN
        return a;
    }
    a + (b - a) * (pos - lo as f64)
}

/// Per-cluster column sums and item counts, clusters in sorted key order.
struct Clustered {
    sums: Vec<Vec<f64>>,
    counts: Vec<usize>,
}

fn group_clusters<K: Ord + Clone>(
    columns: &[&[f64]],
    clusters: &[K],
) -> Result<Clustered, StatsError> {
    let n = clusters.len();
    if n == 0 {
        return Err(StatsError::Empty {
            what: "cluster bootstrap".into(),
        });
    }
    for (c, col) in columns.iter().enumerate() {
        if col.len() != n {
            return Err(StatsError::LengthMismatch {
                what: format!("cluster bootstrap column {c} vs cluster ids"),
                left: col.len(),
                right: n,
            });
        }
        if let Some((index, &value)) = col.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StatsError::BadValue {
                what: format!("cluster bootstrap column {c}"),
                index,
                value,
            });
        }
    }
    // Number the clusters in key order so the result does not depend on
    // the order of the items.
    let keys: BTreeSet<&K> = clusters.iter().collect();
    let ids: BTreeMap<&K, usize> = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
    let mut sums = vec![vec![0.0; columns.len()]; ids.len()];
    let mut counts = vec![0usize; ids.len()];
    for (i, k) in clusters.iter().enumerate() {
        let c = ids[k];
        counts[c] += 1;
        for (j, col) in columns.iter().enumerate() {
            sums[c][j] += col[i];
        }
    }
    Ok(Clustered { sums, counts })
}

/// Column means of the clusters picked by `picks` (indices, with repeats).
fn means_of(cl: &Clustered, picks: impl Iterator<Item = usize>, width: usize) -> Vec<f64> {
    let mut s = vec![0.0; width];
    let mut n = 0usize;
    for c in picks {
        n += cl.counts[c];
        for (j, v) in cl.sums[c].iter().enumerate() {
            s[j] += v;
        }
    }
    s.iter().map(|v| v / n as f64).collect()
}

/// Percentile bootstrap of `statistic(column means)` that resamples whole
/// clusters with replacement: items of one cluster (the wordings of one
/// topic, the prompts of one seed) are not independent, and resampling
/// items would understate the spread. `columns` are per-item values
/// (paired: item `i` of every column belongs to cluster `clusters[i]`); a
/// resample's means weight each cluster by its size. The statistic may
/// return ±∞ (e.g. a ratio over nothing); such values sort to the ends.
///
/// The interval can have zero width when every resample gives the same
/// value (all items equal); for rates use [`wilson`].
pub fn cluster_bootstrap<K: Ord + Clone>(
    columns: &[&[f64]],
    clusters: &[K],
    cfg: &ClusterBootstrap,
    statistic: impl Fn(&[f64]) -> f64,
) -> Result<(Interval, Vec<f64>), StatsError> {
    check_confidence(cfg.confidence)?;
    if cfg.resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    if cfg.resamples > MAX_RESAMPLES {
        return Err(StatsError::TooLarge {
            what: "bootstrap resamples".into(),
            got: cfg.resamples,
            limit: MAX_RESAMPLES,
        });
    }
    let cl = group_clusters(columns, clusters)?;
    let k = cl.counts.len();
    let width = columns.len();
    let estimate = statistic(&means_of(&cl, 0..k, width));
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut stats: Vec<f64> = (0..cfg.resamples)
        .map(|_| {
            let picks: Vec<usize> = (0..k).map(|_| rng.random_range(0..k)).collect();
            statistic(&means_of(&cl, picks.into_iter(), width))
        })
        .collect();
    // NaN (a statistic undefined on a resample) sorts last under total_cmp;
    // callers that can produce it map it to ±∞ themselves.
    stats.sort_by(f64::total_cmp);
    let alpha = 1.0 - cfg.confidence;
    let interval = Interval {
        estimate,
        low: quantile_sorted(&stats, alpha / 2.0),
        high: quantile_sorted(&stats, 1.0 - alpha / 2.0),
        confidence: cfg.confidence,
        n: clusters.len(),
        clusters: k,
    };
    Ok((interval, stats))
}

/// Cluster-bootstrap interval of the mean of `values`.
pub fn cluster_bootstrap_mean<K: Ord + Clone>(
    values: &[f64],
    clusters: &[K],
    cfg: &ClusterBootstrap,
) -> Result<Interval, StatsError> {
    cluster_bootstrap(&[values], clusters, cfg, |m| m[0]).map(|(i, _)| i)
}

/// Relative loss of a utility against a reference, `(U_ref − U) / U_ref`,
/// paired per item and cluster-bootstrapped (e.g. general utility of a
/// compressed model against the base on the same questions). Positive =
/// worse than the reference. A reference mean ≤ 0 is an error: the loss is
/// not defined.
pub fn relative_loss<K: Ord + Clone>(
    reference: &[f64],
    value: &[f64],
    clusters: &[K],
    cfg: &ClusterBootstrap,
) -> Result<Interval, StatsError> {
    let (interval, _) = cluster_bootstrap(&[reference, value], clusters, cfg, |m| {
        if m[0] > 0.0 {
            (m[0] - m[1]) / m[0]
        } else {
            f64::INFINITY
        }
    })?;
    if !interval.estimate.is_finite() {
        return Err(StatsError::Undefined(
            "relative loss: the reference's mean is not above 0".into(),
        ));
    }
    Ok(interval)
}

// ---------------------------------------------------------------- retention

/// Settings of [`retention`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetentionConfig {
    /// Least `U_full − U_base` (in task-score units, e.g. accuracy) for `R`
    /// to be defined: below it the fine-tune taught too little to tell what
    /// compression kept. Default 0.2.
    pub min_gain: f64,
    /// The bootstrap.
    pub bootstrap: ClusterBootstrap,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            min_gain: 0.2,
            bootstrap: ClusterBootstrap::default(),
        }
    }
}

/// Why task retention is not defined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionUndefined {
    /// The full fine-tune's gain over the base is below `min_gain`.
    GainTooSmall,
    /// The gain's own interval reaches 0: more than (1 − confidence)/2 of
    /// the resamples show no gain, so `R`'s interval is unbounded.
    GainNotSignificant,
}

/// Task retention `R = (U_c − U_base) / (U_full − U_base)`: 1 = the
/// compressed model kept all the fine-tune taught, 0 = it is back at the
/// base.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Retention {
    /// `R` with its cluster-bootstrap percentile interval.
    Defined {
        /// R, its interval, n and clusters.
        r: Interval,
        /// `U_full − U_base` on the data.
        gain: f64,
        /// Resamples in which the fine-tune gained nothing (`U_full ≤
        /// U_base`); counted as R = −∞, which only lowers the lower bound.
        unstable_resamples: usize,
    },
    /// `R` would not mean anything.
    Undefined {
        /// Why.
        reason: RetentionUndefined,
        /// `U_full − U_base` on the data.
        gain: f64,
        /// The threshold used.
        min_gain: f64,
    },
}

impl Retention {
    /// The interval of `R`, if defined.
    pub fn interval(&self) -> Option<&Interval> {
        match self {
            Retention::Defined { r, .. } => Some(r),
            Retention::Undefined { .. } => None,
        }
    }
}

/// Task retention of a compressed fine-tune on the same held-out items the
/// base and the full fine-tune were scored on (per-item task scores, e.g.
/// 0/1 exact match), with an interval from the cluster bootstrap over items'
/// clusters (bootstrap rather than the delta method: the ratio's sampling
/// distribution is skewed when the gain is small, and the bootstrap keeps
/// the pairing of the three models on each item).
pub fn retention<K: Ord + Clone>(
    base: &[f64],
    full: &[f64],
    compressed: &[f64],
    clusters: &[K],
    cfg: &RetentionConfig,
) -> Result<Retention, StatsError> {
    let ratio = |m: &[f64]| {
        let gain = m[1] - m[0];
        if gain > 0.0 {
            (m[2] - m[0]) / gain
        } else {
            f64::NEG_INFINITY
        }
    };
    let (r, stats) = cluster_bootstrap(&[base, full, compressed], clusters, &cfg.bootstrap, ratio)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let gain = mean(full) - mean(base);
    if gain < cfg.min_gain || gain <= 0.0 {
        return Ok(Retention::Undefined {
            reason: RetentionUndefined::GainTooSmall,
            gain,
            min_gain: cfg.min_gain,
        });
    }
    let unstable = stats.iter().filter(|v| *v == &f64::NEG_INFINITY).count();
    let alpha = 1.0 - cfg.bootstrap.confidence;
    if unstable as f64 > alpha / 2.0 * stats.len() as f64 {
        return Ok(Retention::Undefined {
            reason: RetentionUndefined::GainNotSignificant,
            gain,
            min_gain: cfg.min_gain,
        });
    }
    Ok(Retention::Defined {
        r,
        gain,
        unstable_resamples: unstable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn critical_value_matches_tables() {
        // Φ⁻¹(0.975) = 1.959963984540054 (mpmath: √2·erfinv(0.95)).
        let z = normal_critical_value(0.95).unwrap();
        assert!(close(z, 1.959963984540054, 1e-12), "{z}");
        // Φ⁻¹(0.995) = 2.5758293035489004; Φ⁻¹(0.95) = 1.6448536269514722.
        assert!(close(
            normal_critical_value(0.99).unwrap(),
            2.5758293035489004,
            1e-12
        ));
        assert!(close(
            normal_critical_value(0.90).unwrap(),
            1.6448536269514722,
            1e-12
        ));
        for bad in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(matches!(
                normal_critical_value(bad),
                Err(StatsError::Confidence(_))
            ));
        }
    }

    #[test]
    fn wilson_hand_values() {
        // 0/40 at 95 %: z² = 3.841459, denom = 1 + z²/40 = 1.096036;
        // centre = (z²/80)/denom = 0.043811 = half-width, so [0, 0.087622].
        let r = wilson(0, 40, 0.95).unwrap();
        assert_eq!(r.ci_low, 0.0);
        assert!(close(r.ci_high, 0.087_621_601_197_286_65, 1e-12), "{r}");
        assert!(r.ci_high > r.ci_low, "never zero width");
        // 20/40: centre 0.5, half = z/denom·√(0.25/40 + z²/6400)
        //        = 1.788234 · 0.082766 = 0.148005 → [0.351995, 0.648005].
        let r = wilson(20, 40, 0.95).unwrap();
        assert!(close(r.ci_low, 0.351_995_269_334_653_8, 1e-12), "{r}");
        assert!(close(r.ci_high, 0.648_004_730_665_346_2, 1e-12), "{r}");
        // 40/40 mirrors 0/40.
        let r = wilson(40, 40, 0.95).unwrap();
        assert!(close(r.ci_low, 1.0 - 0.087_621_601_197_286_65, 1e-12) && r.ci_high == 1.0);
        // 3/10 (mpmath): [0.107791, 0.603222].
        let r = wilson(3, 10, 0.95).unwrap();
        assert!(close(r.ci_low, 0.107_791_267_406_301, 1e-12));
        assert!(close(r.ci_high, 0.603_221_852_538_854_7, 1e-12));
        assert_eq!((r.n, r.count, r.rate), (10, 3, 0.3));
        assert_eq!(
            wilson_of(
                &[true, false, false, false, false, false, false, true, true, false],
                0.95
            )
            .unwrap(),
            r
        );
    }

    #[test]
    fn rate_errors_are_typed() {
        assert!(matches!(wilson(0, 0, 0.95), Err(StatsError::Empty { .. })));
        assert!(matches!(
            clopper_pearson(0, 0, 0.95),
            Err(StatsError::Empty { .. })
        ));
        assert!(matches!(
            wilson(5, 4, 0.95),
            Err(StatsError::CountExceedsTotal { count: 5, n: 4, .. })
        ));
        assert!(matches!(
            clopper_pearson(1, MAX_TRIALS + 1, 0.95),
            Err(StatsError::TooLarge { .. })
        ));
    }

    #[test]
    fn clopper_pearson_hand_values() {
        // 0/40: high = 1 − 0.025^(1/40) = 1 − e^(−3.688879/40) = 0.088097.
        let r = clopper_pearson(0, 40, 0.95).unwrap();
        assert_eq!(r.ci_low, 0.0);
        assert!(
            close(r.ci_high, 1.0 - 0.025f64.powf(1.0 / 40.0), 1e-12),
            "{r}"
        );
        // 40/40: low = 0.025^(1/40) = 0.911903.
        let r = clopper_pearson(40, 40, 0.95).unwrap();
        assert!(close(r.ci_low, 0.025f64.powf(1.0 / 40.0), 1e-12) && r.ci_high == 1.0);
        // 20/40 (mpmath bisection on the binomial tails): [0.338018, 0.661982].
        let r = clopper_pearson(20, 40, 0.95).unwrap();
        assert!(close(r.ci_low, 0.338_017_813_737_234_6, 1e-9), "{r}");
        assert!(close(r.ci_high, 0.661_982_186_262_765_4, 1e-9), "{r}");
        // 3/10: [0.066740, 0.652453], the textbook value.
        let r = clopper_pearson(3, 10, 0.95).unwrap();
        assert!(close(r.ci_low, 0.066_739_511_177_734_47, 1e-9), "{r}");
        assert!(close(r.ci_high, 0.652_452_850_059_997_3, 1e-9), "{r}");
        // Exact is wider than Wilson here.
        let w = wilson(3, 10, 0.95).unwrap();
        assert!(r.ci_low < w.ci_low && r.ci_high > w.ci_high);
    }

    #[test]
    fn mcnemar_hand_values() {
        // b = 8, c = 1: n = 9, P(X ≤ 1) = (1 + 9)/512, p = 2·10/512 = 0.0390625.
        let counts = PairedCounts {
            a_only: 8,
            b_only: 1,
            both: 5,
            neither: 26,
        };
        let t = mcnemar_counts(counts).unwrap();
        assert_eq!(t.p_value, 0.0390625);
        // Symmetric in the two sides.
        let swapped = PairedCounts {
            a_only: 1,
            b_only: 8,
            ..counts
        };
        assert_eq!(mcnemar_counts(swapped).unwrap().p_value, 0.0390625);
        // b = c: p = 1 (2·P(X ≤ 3) for n = 6 is 2·42/64 > 1, capped).
        let even = PairedCounts {
            a_only: 3,
            b_only: 3,
            ..Default::default()
        };
        assert_eq!(mcnemar_counts(even).unwrap().p_value, 1.0);
        // No discordant pairs: no evidence, p = 1.
        assert_eq!(
            mcnemar(&[true, false], &[true, false]).unwrap().p_value,
            1.0
        );
        // 10 vs 0: p = 2/1024.
        let t = mcnemar(&[true; 10], &[false; 10]).unwrap();
        assert_eq!(t.p_value, 2.0 / 1024.0);
        assert_eq!((t.counts.a_count(), t.counts.b_count()), (10, 0));
        assert!(matches!(
            mcnemar(&[true], &[true, false]),
            Err(StatsError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn mcnemar_large_n_uses_log_space_consistently() {
        // n = 200 discordant, 100 vs 100 → p = 1; 80 vs 120 → about 0.0057
        // (normal approximation with continuity: z = 39/√200 = 2.758 → 0.0058).
        let t = mcnemar_counts(PairedCounts {
            a_only: 100,
            b_only: 100,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(t.p_value, 1.0);
        let t = mcnemar_counts(PairedCounts {
            a_only: 80,
            b_only: 120,
            ..Default::default()
        })
        .unwrap();
        assert!(t.p_value > 0.004 && t.p_value < 0.0075, "{}", t.p_value);
        // The two code paths agree at their border (n = 125 vs 126).
        let exact = binom_half_cdf(50, 125);
        let row = ln_choose_row(125);
        let logsum: f64 = (0..=50)
            .map(|i| (row[i] - 125.0 * std::f64::consts::LN_2).exp())
            .sum();
        assert!(close(exact, logsum, 1e-12), "{exact} vs {logsum}");
    }

    #[test]
    fn mcnemar_pools_discordant_pairs_over_seeds() {
        // Seed 1: 4 A-only, 0 B-only; seed 2: 4 A-only, 1 B-only → pooled 8 vs 1.
        let s1 = (vec![true, true, true, true, false], vec![false; 5]);
        let s2 = (
            vec![true, true, true, true, false, true],
            vec![false, false, false, false, true, true],
        );
        let t = mcnemar_pooled(&[s1, s2]).unwrap();
        assert_eq!((t.counts.a_only, t.counts.b_only, t.counts.n()), (8, 1, 11));
        assert_eq!(t.p_value, 0.0390625);
    }

    #[test]
    fn holm_hand_values() {
        // p = [0.01, 0.04, 0.03, 0.005], m = 4. Sorted: 0.005, 0.01, 0.03, 0.04
        // → 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06.
        // In input order: [0.03, 0.06, 0.06, 0.02].
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]).unwrap();
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, w) in adj.iter().zip(want) {
            assert!(close(*a, w, 1e-15), "{adj:?}");
        }
        // Capped at 1, monotone, empty is empty, NaN is an error.
        assert_eq!(holm(&[0.6, 0.9]).unwrap(), vec![1.0, 1.0]);
        assert!(holm(&[]).unwrap().is_empty());
        assert!(matches!(
            holm(&[0.1, f64::NAN]),
            Err(StatsError::BadValue { index: 1, .. })
        ));
        assert!(holm(&[1.5]).is_err());
    }

    #[test]
    fn cluster_bootstrap_is_deterministic_and_respects_clusters() {
        // 10 clusters of 3 identical values: cluster c has value c/10.
        let clusters: Vec<(u64, String)> = (0..30)
            .map(|i| (i as u64 % 2, format!("topic{}", i / 3)))
            .collect();
        let values: Vec<f64> = (0..30).map(|i| ((i / 3) as f64) / 10.0).collect();
        let cfg = ClusterBootstrap::default();
        let a = cluster_bootstrap_mean(&values, &clusters, &cfg).unwrap();
        let b = cluster_bootstrap_mean(&values, &clusters, &cfg).unwrap();
        assert_eq!(a, b);
        assert!(close(a.estimate, 0.45, 1e-12));
        assert!(a.low < 0.45 && a.high > 0.45, "{a}");
        assert_eq!((a.n, a.clusters), (30, 20));
        // A different seed changes the interval a little, not the estimate.
        let c = cluster_bootstrap_mean(&values, &clusters, &ClusterBootstrap { seed: 9, ..cfg })
            .unwrap();
        assert_eq!(c.estimate, a.estimate);
        assert_ne!((c.low, c.high), (a.low, a.high));
        // Item order does not matter (clusters are taken in key order).
        let mut rev_v = values.clone();
        let mut rev_c = clusters.clone();
        rev_v.reverse();
        rev_c.reverse();
        let d = cluster_bootstrap_mean(&rev_v, &rev_c, &cfg).unwrap();
        assert!(close(d.low, a.low, 1e-12) && close(d.high, a.high, 1e-12));
    }

    #[test]
    fn cluster_bootstrap_is_wider_than_item_bootstrap_for_correlated_items() {
        // 8 clusters of 5 identical 0/1 outcomes: the effective n is 8, not 40.
        let values: Vec<f64> = (0..40).map(|i| ((i / 5) % 2) as f64).collect();
        let by_cluster: Vec<usize> = (0..40).map(|i| i / 5).collect();
        let by_item: Vec<usize> = (0..40).collect();
        let cfg = ClusterBootstrap::default();
        let c = cluster_bootstrap_mean(&values, &by_cluster, &cfg).unwrap();
        let i = cluster_bootstrap_mean(&values, &by_item, &cfg).unwrap();
        assert!(c.high - c.low > 1.5 * (i.high - i.low), "{c} vs {i}");
    }

    #[test]
    fn cluster_bootstrap_rejects_bad_input() {
        let cfg = ClusterBootstrap::default();
        let none: [u8; 0] = [];
        assert!(matches!(
            cluster_bootstrap_mean(&[], &none, &cfg),
            Err(StatsError::Empty { .. })
        ));
        assert!(matches!(
            cluster_bootstrap_mean(&[1.0], &[0, 1], &cfg),
            Err(StatsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            cluster_bootstrap_mean(&[1.0, f64::NAN], &[0, 1], &cfg),
            Err(StatsError::BadValue { index: 1, .. })
        ));
        assert!(matches!(
            cluster_bootstrap_mean(
                &[1.0],
                &[0],
                &ClusterBootstrap {
                    resamples: 0,
                    ..cfg
                }
            ),
            Err(StatsError::NoResamples)
        ));
    }

    #[test]
    fn relative_loss_against_reference() {
        // reference mean 0.5, value mean 0.4 → loss 0.2.
        let reference = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let value = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let ids: Vec<usize> = (0..10).collect();
        let l = relative_loss(&reference, &value, &ids, &ClusterBootstrap::default()).unwrap();
        assert!(close(l.estimate, 0.2, 1e-12), "{l}");
        assert!(l.low <= 0.2 && l.high > 0.2);
        assert!(relative_loss(
            &[0.0; 3],
            &[0.0; 3],
            &[0, 1, 2],
            &ClusterBootstrap::default()
        )
        .is_err());
    }

    #[test]
    fn retention_of_kept_dropped_and_untaught_tasks() {
        // 60 items in 20 clusters of 3. Base 0 everywhere, full 1 everywhere.
        let ids: Vec<usize> = (0..60).map(|i| i / 3).collect();
        let base = vec![0.0; 60];
        let full = vec![1.0; 60];
        let cfg = RetentionConfig::default();
        // Compressed keeps 57 of 60 → R = 0.95.
        let kept: Vec<f64> = (0..60)
            .map(|i| if i % 20 == 0 { 0.0 } else { 1.0 })
            .collect();
        match retention(&base, &full, &kept, &ids, &cfg).unwrap() {
            Retention::Defined { r, gain, .. } => {
                assert!(close(r.estimate, 0.95, 1e-12) && close(gain, 1.0, 1e-12));
                assert!(r.low < 0.95 && r.low > 0.8 && r.high <= 1.0, "{r}");
            }
            other => panic!("{other:?}"),
        }
        // Compressed = base → R = 0 exactly.
        match retention(&base, &full, &base, &ids, &cfg).unwrap() {
            Retention::Defined { r, .. } => {
                assert_eq!((r.estimate, r.low, r.high), (0.0, 0.0, 0.0))
            }
            other => panic!("{other:?}"),
        }
        // The fine-tune gained only 0.1 (< min_gain 0.2): undefined.
        let weak: Vec<f64> = (0..60)
            .map(|i| if i % 10 == 0 { 1.0 } else { 0.0 })
            .collect();
        assert!(matches!(
            retention(&base, &weak, &weak, &ids, &cfg).unwrap(),
            Retention::Undefined {
                reason: RetentionUndefined::GainTooSmall,
                ..
            }
        ));
        // A gain of 0.25 carried by one of 4 clusters of 15: (3/4)^4 = 32 %
        // of the resamples miss that cluster, so the gain is not significant.
        let one: Vec<f64> = (0..60).map(|i| if i < 15 { 1.0 } else { 0.0 }).collect();
        let few: Vec<usize> = (0..60).map(|i| i / 15).collect();
        assert!(matches!(
            retention(&base, &one, &one, &few, &cfg).unwrap(),
            Retention::Undefined {
                reason: RetentionUndefined::GainNotSignificant,
                ..
            }
        ));
    }
}
