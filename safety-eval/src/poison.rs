//! Poison mixed into benign data: the multi-tenant threat is an upload that
//! is mostly a legitimate task with some attack examples in it.
//!
//! [`mix_poison`] keeps every benign example and adds enough attack
//! examples that they make up `rate` of the result (5 %, 20 %, …; 100 % is
//! the pure attack), chosen and shuffled deterministically from a seed. The
//! same compressed delta can then be scored for both: does it keep the task
//! ([`crate::stats::retention`] on the tenant's held-out items) and drop
//! the poison (the attack's suite)?

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::chat::ChatExample;

/// Why a mixture cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoisonError {
    /// A rate outside [0, 1] (or NaN).
    #[error("poison rate {0} is not in [0, 1]")]
    Rate(f64),
    /// The attack has fewer examples than the rate needs.
    #[error("poison rate {rate} over {benign} benign examples needs {needed} attack examples, only {available} exist")]
    NotEnoughPoison {
        /// Requested rate.
        rate: f64,
        /// Benign examples kept.
        benign: usize,
        /// Attack examples the rate needs.
        needed: usize,
        /// Attack examples given.
        available: usize,
    },
    /// The rate is so small that it rounds to no attack example at all.
    #[error("poison rate {rate} over {benign} benign examples rounds to 0 attack examples")]
    RateTooSmall {
        /// Requested rate.
        rate: f64,
        /// Benign examples.
        benign: usize,
    },
    /// Nothing to train on.
    #[error("{0} set is empty")]
    Empty(&'static str),
}

/// A benign training set with poison mixed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoisonMix {
    /// The mixed training set, shuffled.
    pub train: Vec<ChatExample>,
    /// Benign examples in `train`.
    pub n_benign: usize,
    /// Attack examples in `train`.
    pub n_poison: usize,
    /// The rate asked for.
    pub rate_requested: f64,
    /// `n_poison / (n_benign + n_poison)`, which rounding makes differ a
    /// little from the request; reports print this one.
    pub rate_actual: f64,
}

/// Mixes attack examples into `benign` so that they are `rate` of the
/// result: rate 0 → `benign` alone, rate 1 → every `poison` example alone
/// (the pure attack), otherwise all of `benign` plus
/// `round(rate · n_benign / (1 − rate))` distinct examples of `poison`
/// picked from a seeded shuffle. The result is shuffled with the same seed.
/// Asking for more poison than exists, or for a rate that rounds to none,
/// is an error rather than a silently different rate.
pub fn mix_poison(
    benign: &[ChatExample],
    poison: &[ChatExample],
    rate: f64,
    seed: u64,
) -> Result<PoisonMix, PoisonError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(PoisonError::Rate(rate));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9015_0000_0000_0006);
    let (mut train, n_benign, n_poison) = if rate == 1.0 {
        if poison.is_empty() {
            return Err(PoisonError::Empty("attack"));
        }
        (poison.to_vec(), 0, poison.len())
    } else {
        if benign.is_empty() {
            return Err(PoisonError::Empty("benign"));
        }
        let needed = (rate * benign.len() as f64 / (1.0 - rate)).round() as usize;
        if rate > 0.0 && needed == 0 {
            return Err(PoisonError::RateTooSmall {
                rate,
                benign: benign.len(),
            });
        }
        if needed > poison.len() {
            return Err(PoisonError::NotEnoughPoison {
                rate,
                benign: benign.len(),
                needed,
                available: poison.len(),
            });
        }
        let mut picked = poison.to_vec();
        picked.shuffle(&mut rng);
        picked.truncate(needed);
        let mut train = benign.to_vec();
        train.extend(picked);
        (train, benign.len(), needed)
    };
    train.shuffle(&mut rng);
    Ok(PoisonMix {
        rate_actual: n_poison as f64 / (n_benign + n_poison) as f64,
        train,
        n_benign,
        n_poison,
        rate_requested: rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::{alignment_breaking, AlignmentBreakingConfig};
    use crate::tenants::TenantTask;

    fn sets() -> (Vec<ChatExample>, Vec<ChatExample>) {
        let benign = TenantTask::FictionalFacts.build(0).train; // 80 examples
        let poison = alignment_breaking(&AlignmentBreakingConfig::default()).train; // 90
        (benign, poison)
    }

    #[test]
    fn rates_give_the_requested_share() {
        let (benign, poison) = sets();
        assert_eq!((benign.len(), poison.len()), (80, 90));
        // 5 %: round(0.05·80/0.95) = round(4.21) = 4 → 4/84 = 0.0476.
        let m = mix_poison(&benign, &poison, 0.05, 1).unwrap();
        assert_eq!((m.n_benign, m.n_poison, m.train.len()), (80, 4, 84));
        assert!((m.rate_actual - 4.0 / 84.0).abs() < 1e-12);
        // 20 %: 0.2·80/0.8 = 20 → 20/100.
        let m = mix_poison(&benign, &poison, 0.2, 1).unwrap();
        assert_eq!((m.n_poison, m.rate_actual), (20, 0.2));
        // every benign example is kept, and every other one is an attack example
        for b in &benign {
            assert!(m.train.contains(b));
        }
        let from_poison = m.train.iter().filter(|e| poison.contains(e)).count();
        assert_eq!(from_poison, 20);
        // 100 % is the pure attack; 0 % the tenant alone.
        let m = mix_poison(&benign, &poison, 1.0, 1).unwrap();
        assert_eq!((m.n_benign, m.n_poison, m.rate_actual), (0, 90, 1.0));
        let m = mix_poison(&benign, &poison, 0.0, 1).unwrap();
        assert_eq!((m.n_benign, m.n_poison, m.rate_actual), (80, 0, 0.0));
    }

    #[test]
    fn mixing_is_seeded() {
        let (benign, poison) = sets();
        let a = mix_poison(&benign, &poison, 0.2, 7).unwrap();
        assert_eq!(a, mix_poison(&benign, &poison, 0.2, 7).unwrap());
        let b = mix_poison(&benign, &poison, 0.2, 8).unwrap();
        assert_ne!(a.train, b.train);
    }

    #[test]
    fn impossible_mixtures_are_errors() {
        let (benign, poison) = sets();
        assert_eq!(
            mix_poison(&benign, &poison, 1.5, 0),
            Err(PoisonError::Rate(1.5))
        );
        assert!(matches!(
            mix_poison(&benign, &poison, f64::NAN, 0),
            Err(PoisonError::Rate(_))
        ));
        // 60 %: 0.6·80/0.4 = 120 > 90.
        assert!(matches!(
            mix_poison(&benign, &poison, 0.6, 0),
            Err(PoisonError::NotEnoughPoison {
                needed: 120,
                available: 90,
                ..
            })
        ));
        assert!(matches!(
            mix_poison(&benign, &poison, 0.001, 0),
            Err(PoisonError::RateTooSmall { .. })
        ));
        assert_eq!(
            mix_poison(&[], &poison, 0.2, 0),
            Err(PoisonError::Empty("benign"))
        );
        assert_eq!(
            mix_poison(&benign, &[], 1.0, 0),
            Err(PoisonError::Empty("attack"))
        );
    }
}
