//! The Llama-2 family on [Burn](https://burn.dev), matching Hugging Face
//! transformers number for number.
//!
//! deltaguard runs every measurement through this crate: it loads a
//! checkpoint (a HF directory in f32, f16 or bf16, single file or sharded —
//! optionally with a reconstructed fine-tuning delta merged in), runs
//! batched forward passes with left padding and a KV cache, hands out the
//! residual stream of every layer for a logit lens, tokenizes and applies chat
//! templates, and generates text greedily or by seeded sampling.
//!
//! Everything numeric is generic over [`burn::tensor::backend::Backend`]:
//! `NdArray` on the CPU, CUDA behind the `cuda` feature. [`Llama`] is a
//! `#[derive(Module)]` whose weights are `Param<Tensor>`, so an autodiff
//! backend can fine-tune it.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | [`LlamaConfig`] from `config.json` or in code |
//! | [`model`] | RMSNorm, rotary GQA attention, SwiGLU, blocks, [`Llama`]; [`LinearWeight`]: dense, or base + sign / low-rank delta kept apart |
//! | [`exact_grad`] | division, softmax, log-softmax with exact, reproducible gradients on burn-ndarray |
//! | [`rope`] | rotate-half rotary embeddings, linear / llama3 / dynamic-NTK scaling |
//! | [`cache`] | [`KvCache`] |
//! | [`load`] | HF directories through delta-core, in-memory tensors, merged deltas |
//! | [`tokenizer`] | [`Tokenizer`], streaming [`IncrementalDecoder`] |
//! | [`chat`] | HF chat templates ([`ChatTemplate`]) |
//! | [`generate`] | greedy / sampled, batched, streaming generation |
//! | [`heal`] | BitDelta scale distillation: train a delta file's scales against the fine-tune |
//! | [`save`] | a model back out as a HF directory |
//! | [`train`] | chat SFT (full / LoRA), AdamW, schedules |
//!
//! # Example
//!
//! A tiny random model on the CPU: a forward pass, hidden states for a
//! logit lens, and greedy generation for two prompts of different lengths.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Int, Tensor, TensorData};
//! use llama_model::{ForwardOptions, GenerateConfig, LlamaConfig};
//!
//! let device = Default::default();
//! let model = LlamaConfig::tiny().init::<NdArray>(&device, 42);
//!
//! let tokens = Tensor::<NdArray, 2, Int>::from_data(TensorData::new(vec![1i64, 5, 9], [1, 3]), &device);
//! let out = model.forward_with(
//!     tokens,
//!     ForwardOptions { capture_hidden: true, ..Default::default() },
//!     None,
//! );
//! assert_eq!(out.logits.dims(), [1, 3, 320]);
//! let hidden = out.hidden.unwrap();
//! // Decode layer 1's input with the final norm and the unembedding (a logit lens).
//! let lens = model.unembed(model.final_norm(hidden.layers[1].pre.clone()));
//! assert_eq!(lens.dims(), [1, 3, 320]);
//!
//! let outputs = model
//!     .generate(&[vec![1, 5, 9], vec![1, 7]], &GenerateConfig::greedy(4))
//!     .unwrap();
//! assert!(outputs.iter().all(|g| g.tokens.len() <= 4));
//! ```

pub mod cache;
pub mod chat;
pub mod config;
pub mod error;
pub mod exact_grad;
pub mod fastpath;
pub mod generate;
pub mod heal;
pub mod load;
pub mod model;
pub mod rope;
pub mod save;
pub mod tokenizer;
pub mod train;

pub use cache::{KvCache, LayerCache, LayerSlot};
pub use chat::{ChatMessage, ChatTemplate};
pub use config::{LlamaConfig, RopeScaling};
pub use error::{
    ChatTemplateError, ConfigError, GenerateError, InputError, LoadError, TokenizerError,
};
pub use generate::{GenerateConfig, Generation, Sampling, StopReason, TokenEvent};
pub use heal::{
    BaseAndDelta, Calibration, HealConfig, HealError, HealMode, HealObserver, HealReport, HealStep,
};
pub use load::{DeltaApplied, F32Tensor, NamedTensors, TensorSource};
pub use model::{
    attend, ForwardOptions, ForwardOutput, HiddenStates, LayerHidden, LinearWeight, Llama,
    LogitsMode, LoraDelta, LowRankDelta, SignDelta,
};
pub use tokenizer::{IncrementalDecoder, SpecialTokens, Tokenizer};
pub mod gguf;
