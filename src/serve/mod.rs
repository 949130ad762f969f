//! `deltaguard serve`: one base model in memory, many tenants' compressed
//! fine-tuning deltas next to it, one OpenAI-compatible HTTP server.
//!
//! | module | what |
//! |---|---|
//! | [`payload`] | the adapter from delta-quant's compressed payloads to `x ↦ Δ̂x` operators |
//! | [`signs`] | the packed-sign kernels (AVX-512 masked adds, AVX2 lane masks, portable byte tables) |
//! | [`tenant`] | the shared [`Base`] and validated [`Tenant`]s |
//! | [`forward`] | one batched forward step over sequences of any tenants |
//! | [`engine`] | the engine thread: bounded queue, fair admission, continuous batching |
//! | [`http`] | the OpenAI-compatible server (axum): routes, auth, streaming, drain |
//! | [`api`] | OpenAI request / error shapes, stop strings |
//! | [`keys`] | the API keys file |
//! | [`metrics`] | Prometheus metrics |
//! | [`gate`] | the safety gate: held-out harmful-suite ASR before a tenant is admitted |
//!
//! A tenant never materialises `W_base + Δ̂`: per projection the base weight
//! multiplies every row of the batch once, and each tenant's delta term is
//! added for its rows from the compressed form (packed sign bits for
//! BitDelta / multi-mask, factors for SVD, index/value pairs for DARE and
//! magnitude pruning; other encodings hold a dense Δ̂ — see [`payload`]).
//!
//! # Example (library use, no HTTP)
//!
//! ```no_run
//! use deltaguard::backend::{device, Backend};
//! use deltaguard::serve::{Base, EngineConfig, EngineHandle, GenParams, Tenant};
//! use deltaguard::llama_model::Sampling;
//! use std::path::Path;
//!
//! let engine = EngineHandle::<Backend>::start(
//!     || {
//!         let base = Base::load(Path::new("models/base"), Some("base".into()), &device())?;
//!         let t = Tenant::load("tenant-a", Path::new("a.delta.safetensors"), &base)?;
//!         Ok((base, vec![t]))
//!     },
//!     EngineConfig::default(),
//! )
//! .unwrap();
//! let (tokens, _why) = engine
//!     .generate(GenParams {
//!         model: "tenant-a".into(),
//!         prompt: vec![1, 5, 9],
//!         max_tokens: 16,
//!         sampling: Sampling::Greedy,
//!         seed: 0,
//!     })
//!     .unwrap();
//! assert!(tokens.len() <= 16);
//! ```

pub mod api;
pub mod engine;
pub mod forward;
pub mod gate;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod payload;
pub mod signs;
pub mod tenant;

pub use engine::{EngineConfig, EngineHandle, Finish, GenEvent, GenParams, Shared, SubmitError};
pub use tenant::{Base, Tenant, TenantInfo};

use std::path::PathBuf;

/// Errors of the serving engine.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The base model could not be loaded.
    #[error("base model: {0}")]
    Base(String),
    /// A delta file was refused.
    #[error("{file}: {reason}")]
    Tenant {
        /// The delta file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A model name that is not 1..=64 characters of `[A-Za-z0-9._:-]`.
    #[error("`{0}` is not a valid model name (1 to 64 characters of A-Z a-z 0-9 . _ : -)")]
    BadName(String),
    /// A model of that name is already served.
    #[error("a model named `{0}` is already being served")]
    Exists(String),
    /// No tenant of that name.
    #[error("no tenant named `{0}`")]
    NotFound(String),
    /// The safety gate refused the tenant.
    #[error("tenant `{name}` refused by the safety gate: {reason}")]
    Gate {
        /// Tenant name.
        name: String,
        /// The measurement.
        reason: String,
    },
    /// A request was not accepted.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// Generation failed.
    #[error("generation failed: {0}")]
    Generation(String),
    /// Bad server configuration.
    #[error("{0}")]
    Config(String),
}
