//! Property tests of the divergences.

use logit_lens::stats::{
    entropy, js_divergence, kl_divergence, log_softmax, total_variation, Dist,
};
use proptest::prelude::*;

fn logits(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-30.0f32..30.0, n)
}

fn pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (1usize..64).prop_flat_map(|n| (logits(n), logits(n)))
}

proptest! {
    #[test]
    fn js_is_symmetric_and_bounded((a, b) in pair()) {
        let (p, q) = (log_softmax(&a), log_softmax(&b));
        let (pq, qp) = (js_divergence(&p, &q), js_divergence(&q, &p));
        prop_assert!((pq - qp).abs() < 1e-12);
        prop_assert!((0.0..=std::f64::consts::LN_2).contains(&pq));
    }

    /// `js_divergence` clamps to `[0, ln 2]`, so the bound above alone cannot
    /// fail; here the value is checked against the textbook form
    /// `H(m) − ½ H(p) − ½ H(q)` computed independently (no clamp) from the
    /// probabilities, which itself must lie in `[0, ln 2]`.
    #[test]
    fn js_matches_the_entropy_form_which_is_bounded((a, b) in pair()) {
        let (p, q) = (log_softmax(&a), log_softmax(&b));
        let h = |v: &[f64]| -> f64 {
            v.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum()
        };
        let pp: Vec<f64> = p.iter().map(|x| x.exp()).collect();
        let qq: Vec<f64> = q.iter().map(|x| x.exp()).collect();
        let m: Vec<f64> = pp.iter().zip(&qq).map(|(x, y)| 0.5 * (x + y)).collect();
        let naive = h(&m) - 0.5 * h(&pp) - 0.5 * h(&qq);
        prop_assert!(naive > -1e-9 && naive <= std::f64::consts::LN_2 + 1e-9, "{}", naive);
        prop_assert!((js_divergence(&p, &q) - naive).abs() < 1e-9);
    }

    #[test]
    fn kl_is_nonnegative_and_zero_on_itself((a, b) in pair()) {
        let (p, q) = (log_softmax(&a), log_softmax(&b));
        prop_assert!(kl_divergence(&p, &q) >= 0.0);
        prop_assert!(kl_divergence(&p, &p).abs() < 1e-12);
        prop_assert!(js_divergence(&p, &p).abs() < 1e-12);
        prop_assert!(total_variation(&p, &p).abs() < 1e-12);
    }

    #[test]
    fn tv_bounded_and_pinsker((a, b) in pair()) {
        let (p, q) = (log_softmax(&a), log_softmax(&b));
        let tv = total_variation(&p, &q);
        prop_assert!((0.0..=1.0).contains(&tv));
        // Pinsker: TV ≤ sqrt(KL / 2).
        prop_assert!(tv <= (kl_divergence(&p, &q) / 2.0).sqrt() + 1e-9);
    }

    #[test]
    fn softmax_normalised_and_entropy_bounded(a in (1usize..64).prop_flat_map(logits)) {
        let p = log_softmax(&a);
        let s: f64 = p.iter().map(|x| x.exp()).sum();
        prop_assert!((s - 1.0).abs() < 1e-9);
        let h = entropy(&p);
        prop_assert!(h >= 0.0 && h <= (a.len() as f64).ln() + 1e-9);
    }

    #[test]
    fn dist_methods_match_the_functions((a, b) in pair()) {
        let (p, q) = (log_softmax(&a), log_softmax(&b));
        let (dp, dq) = (Dist::from_logits(&a), Dist::from_logits(&b));
        prop_assert_eq!(dp.entropy(), entropy(&p));
        prop_assert_eq!(dp.kl(&dq), kl_divergence(&p, &q));
        prop_assert_eq!(dp.js(&dq), js_divergence(&p, &q));
        prop_assert_eq!(dp.tv(&dq), total_variation(&p, &q));
    }
}
