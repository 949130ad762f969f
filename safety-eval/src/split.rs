//! Train / held-out split by topic, stratified by category and seeded.
//!
//! Every wording of a topic lands on the same side, so held-out prompts differ
//! from training prompts in topic *and* wording — not merely in the filled-in
//! slots of one template.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::Topical;

/// A seeded partition of topic ids into train and held-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicSplit {
    pub seed: u64,
    pub held_out_fraction: f64,
    pub train: BTreeSet<String>,
    pub held_out: BTreeSet<String>,
}

impl TopicSplit {
    /// Split the topics of `items`. Within each category (visited in sorted
    /// order) the sorted topics are shuffled with one ChaCha8 stream seeded
    /// by `seed`, and `round(fraction × topics)` of them are held out — at
    /// least one and at most all but one when the category has two or more
    /// topics and `fraction > 0`. A category with a single topic stays in train.
    pub fn new<T: Topical>(items: &[T], held_out_fraction: f64, seed: u64) -> Self {
        let mut by_cat: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for it in items {
            by_cat.entry(it.category()).or_default().insert(it.topic());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut train = BTreeSet::new();
        let mut held_out = BTreeSet::new();
        for topics in by_cat.values() {
            let mut topics: Vec<&str> = topics.iter().copied().collect();
            topics.shuffle(&mut rng);
            let n = topics.len();
            let k = if n < 2 || held_out_fraction <= 0.0 {
                0
            } else {
                ((held_out_fraction * n as f64).round() as usize).clamp(1, n - 1)
            };
            for (i, t) in topics.into_iter().enumerate() {
                if i < k {
                    held_out.insert(t.to_string());
                } else {
                    train.insert(t.to_string());
                }
            }
        }
        Self {
            seed,
            held_out_fraction,
            train,
            held_out,
        }
    }

    pub fn is_held_out(&self, topic: &str) -> bool {
        self.held_out.contains(topic)
    }

    /// `(train items, held-out items)`, each in input order. Items whose topic
    /// the split has never seen go to neither side.
    pub fn partition<T: Topical + Clone>(&self, items: &[T]) -> (Vec<T>, Vec<T>) {
        let train = items
            .iter()
            .filter(|i| self.train.contains(i.topic()))
            .cloned()
            .collect();
        let held = items
            .iter()
            .filter(|i| self.held_out.contains(i.topic()))
            .cloned()
            .collect();
        (train, held)
    }

    /// True when no topic is on both sides.
    pub fn is_disjoint(&self) -> bool {
        self.train.is_disjoint(&self.held_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;

    #[test]
    fn split_is_disjoint_stratified_and_seeded() {
        let h = data::harmful();
        let a = TopicSplit::new(&h, 0.3, 7);
        let b = TopicSplit::new(&h, 0.3, 7);
        let c = TopicSplit::new(&h, 0.3, 8);
        assert_eq!(a, b);
        assert_ne!(a.held_out, c.held_out);
        assert!(a.is_disjoint());
        assert_eq!(a.train.len() + a.held_out.len(), 50);
        // every category has held-out topics
        let cats: BTreeSet<&str> = a
            .held_out
            .iter()
            .map(|t| t.split('.').next().unwrap())
            .collect();
        assert_eq!(cats.len(), 10);
        let (tr, ho) = a.partition(&h);
        assert_eq!(tr.len() + ho.len(), h.len());
        for x in &ho {
            assert!(!tr
                .iter()
                .any(|y| y.topic == x.topic || y.instruction == x.instruction));
        }
    }
}
