//! # deltaguard
//!
//! Compress the fine-tuning deltas of LLMs (BitDelta and friends) and measure
//! what that does to safety. This facade re-exports the workspace crates so a
//! user can depend on one crate, and hosts the `deltaguard` command-line tool.
//!
//! | crate | what it holds |
//! |---|---|
//! | [`delta_core`] | HF checkpoints as streamed named tensors; delta pairing, extraction, merging |
//! | [`delta_quant`] | delta compressors behind one trait; the compressed-delta file; whole-checkpoint compress/apply |
//! | [`llama_model`] | the Llama-2 family on Burn: HF safetensors and GGUF loading, forward, generation |
//! | [`safety_eval`] | (issue 5) attack datasets, refusal scoring, utility metrics |
//! | [`logit_lens`] | (issue 6) per-layer probes and statistics |
//!
//! ```
//! use deltaguard::delta_quant::parse_method;
//! // Every method string the CLI takes is available to the library too.
//! let c = parse_method("dare:p=0.9+bitdelta").unwrap();
//! assert!(c.spec().starts_with("dare"));
//! ```

pub use delta_core;
pub use delta_quant;
pub use llama_model;
pub use logit_lens;
pub use safety_eval;

pub mod adapters;
pub mod backend;
pub mod model_io;
pub mod progress;
pub mod serve;
pub mod study;
