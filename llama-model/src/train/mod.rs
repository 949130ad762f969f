//! Training on Burn autodiff: supervised chat fine-tuning — full or LoRA —
//! with AdamW, learning-rate schedules, gradient accumulation and global
//! gradient-norm clipping.
//!
//! | module | what |
//! |---|---|
//! | [`data`] | chat JSONL / Alpaca JSON → conversations → tokens with an assistant-only loss mask |
//! | [`batch`] | right-padded, shifted micro-batches |
//! | [`loss`] | masked token cross-entropy, logit MSE |
//! | [`schedule`] | constant / linear / cosine with warm-up (HF's definitions) |
//! | [`lora`] | LoRA adapters: add, merge, export in PEFT's layout |
//! | [`trainer`] | the loop: [`train`], [`TrainConfig`], [`Preset`], [`TrainObserver`] |
//!
//! Precision: burn-ndarray computes in f32 only. The loop is generic over
//! the autodiff backend, so on CUDA a `Cuda<bf16>` backend trains in bf16.

pub mod batch;
pub mod data;
pub mod lora;
pub mod loss;
pub mod schedule;
pub mod trainer;

pub use data::{
    load_chat_file, tokenize_chat, tokenize_dataset, Conversation, DataError, TokenizedExample,
};
pub use lora::{add_lora, merge_lora, LoraConfig};
pub use schedule::{LrSchedule, ScheduleKind};
pub use trainer::{
    into_inference, total_steps, train, Preset, Quiet, StepStats, TrainConfig, TrainError,
    TrainObserver, TrainOutcome,
};
