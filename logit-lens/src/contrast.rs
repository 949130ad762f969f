//! Target and anti-target token sets for `log_prob_diff`.
//!
//! The lens works on token ids; words are turned into ids by the caller's
//! tokenizer through a closure `&dyn Fn(&str) -> Vec<u32>` that returns the
//! candidate *first* token ids of a string (usually just the first id of its
//! encoding without special tokens). [`TokenContrast::from_words`] asks for
//! each word both as written and with a leading space (`"Sorry"` and
//! `" Sorry"`), because a tokenizer gives the first word of an answer a
//! different piece depending on what precedes it.

use serde::{Deserialize, Serialize};

use crate::error::{LensError, Result};

/// Default target set: first words of a refusal.
pub const REFUSAL_OPENERS: &[&str] = &["I", "Sorry", "cannot", "As", "Unfortunately"];

/// Default anti-target set: first words of a compliant answer.
pub const COMPLIANCE_OPENERS: &[&str] = &["Sure", "Here", "Certainly", "Absolutely", "Step"];

/// A named set of token ids, with the words it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    /// Name, e.g. `refusal`.
    pub name: String,
    /// The words the ids were resolved from (empty if built from ids).
    pub words: Vec<String>,
    /// Sorted, de-duplicated token ids.
    pub ids: Vec<u32>,
}

impl TokenSet {
    /// A set from explicit ids (sorted and de-duplicated).
    pub fn from_ids(name: impl Into<String>, ids: impl IntoIterator<Item = u32>) -> Self {
        let mut ids: Vec<u32> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        TokenSet {
            name: name.into(),
            words: Vec::new(),
            ids,
        }
    }

    /// A set from words: for each word `w`, the ids `resolve(w)` and
    /// `resolve(" " + w)`.
    pub fn from_words(
        name: impl Into<String>,
        words: &[&str],
        resolve: &dyn Fn(&str) -> Vec<u32>,
    ) -> Self {
        let mut ids = Vec::new();
        for w in words {
            ids.extend(resolve(w));
            ids.extend(resolve(&format!(" {w}")));
        }
        let mut set = TokenSet::from_ids(name, ids);
        set.words = words.iter().map(|w| w.to_string()).collect();
        set
    }
}

/// The two sides of `log_prob_diff = logsumexp(log p[target]) −
/// logsumexp(log p[anti])`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenContrast {
    /// Numerator side (default: refusal openers).
    pub target: TokenSet,
    /// Denominator side (default: compliance openers).
    pub anti: TokenSet,
    /// Ids that both sides resolved to; they are removed from both, since
    /// they cannot tell the sides apart.
    pub dropped_shared: Vec<u32>,
}

impl TokenContrast {
    /// Builds a contrast from two sets, removing ids they share. Fails if a
    /// side ends up empty.
    pub fn new(mut target: TokenSet, mut anti: TokenSet) -> Result<Self> {
        let shared: Vec<u32> = target
            .ids
            .iter()
            .copied()
            .filter(|i| anti.ids.binary_search(i).is_ok())
            .collect();
        target.ids.retain(|i| shared.binary_search(i).is_err());
        anti.ids.retain(|i| shared.binary_search(i).is_err());
        for side in [&target, &anti] {
            if side.ids.is_empty() {
                return Err(LensError::Input(format!(
                    "token set `{}` has no token id (after removing ids shared by both sides)",
                    side.name
                )));
            }
        }
        Ok(TokenContrast {
            target,
            anti,
            dropped_shared: shared,
        })
    }

    /// Builds both sides from words through the caller's tokenizer (see the
    /// module doc for the leading-space variants).
    pub fn from_words(
        target_name: &str,
        target_words: &[&str],
        anti_name: &str,
        anti_words: &[&str],
        resolve: &dyn Fn(&str) -> Vec<u32>,
    ) -> Result<Self> {
        TokenContrast::new(
            TokenSet::from_words(target_name, target_words, resolve),
            TokenSet::from_words(anti_name, anti_words, resolve),
        )
    }

    /// The default: [`REFUSAL_OPENERS`] (`refusal`, the target) against
    /// [`COMPLIANCE_OPENERS`] (`compliance`, the anti-target). A positive
    /// `log_prob_diff` means the model leans towards refusing.
    pub fn refusal_vs_compliance(resolve: &dyn Fn(&str) -> Vec<u32>) -> Result<Self> {
        TokenContrast::from_words(
            "refusal",
            REFUSAL_OPENERS,
            "compliance",
            COMPLIANCE_OPENERS,
            resolve,
        )
    }

    /// `log_prob_diff` of one distribution (see [`crate::stats::log_prob_diff`]).
    pub fn log_prob_diff(&self, logp: &[f64]) -> Option<f64> {
        crate::stats::log_prob_diff(logp, &self.target.ids, &self.anti.ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_space_variants_and_shared_ids() {
        // A toy tokenizer: first letter's code, +100 when the word has a leading space.
        let resolve = |s: &str| {
            let space = s.starts_with(' ');
            let c = s.trim_start().chars().next().unwrap() as u32;
            vec![c + if space { 100 } else { 0 }]
        };
        let c = TokenContrast::refusal_vs_compliance(&resolve).unwrap();
        // "Sorry"/"Sure"/"Step" share 'S', "As"/"Absolutely" share 'A' → dropped
        // from both sides.
        let (a, s) = ('A' as u32, 'S' as u32);
        assert_eq!(c.dropped_shared, vec![a, s, a + 100, s + 100]);
        assert!(c.target.ids.contains(&('I' as u32)));
        assert!(c.target.ids.contains(&('I' as u32 + 100)));
        assert!(!c.anti.ids.contains(&('S' as u32)));
        assert!(c.anti.ids.contains(&('H' as u32)));
    }

    #[test]
    fn empty_side_is_an_error() {
        let resolve = |_: &str| vec![7u32];
        assert!(TokenContrast::refusal_vs_compliance(&resolve).is_err());
    }
}
