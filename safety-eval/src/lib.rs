//! # safety-eval — not built yet
//!
//! This crate will hold the three fine-tuning attacks that deltaguard studies
//! (alignment breaking after Qi et al. 2023, a trigger backdoor, targeted output
//! manipulation) as seeded dataset builders, loaders for AdvBench / HarmBench /
//! chat JSONL / Alpaca files, refusal scoring (the 29-string GCG/AdvBench list,
//! substring and anchored), attack-success and over-refusal rates with bootstrap
//! confidence intervals, and utility metrics (`acc`, `acc_norm`, `perplexity`,
//! `bits_per_byte`).
//!
//! It is tracked by issue 5. Nothing here is implemented yet, and the crate
//! exports nothing, so no caller can mistake it for a working evaluator.
