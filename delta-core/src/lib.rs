//! # delta-core
//!
//! Hugging Face checkpoints as streamed named tensors, and the fine-tuning delta
//! Δ = W_ft − W_base between a base model and its fine-tune.
//!
//! * [`Checkpoint`] opens a HF model directory — `config.json` plus
//!   `model.safetensors`, or shards listed in `model.safetensors.index.json` —
//!   in f32, f16 or bf16, memory-mapped: nothing is read until a tensor is asked
//!   for, so a 7B checkpoint is never held whole in memory.
//! * [`CheckpointWriter`] writes one back the HF way (same names and dtypes,
//!   sharded by a maximum size with an index, config/tokenizer/chat-template files
//!   copied), under a temporary name renamed into place only when complete.
//! * [`DeltaPair`] pairs a base with its fine-tune and refuses a mismatch with a
//!   [`MismatchError`] listing every difference (architecture, vocabulary, missing
//!   or extra tensors, shapes, dtypes). [`Selection`] says which tensors are
//!   compressed — by default BitDelta's `*proj` weights under `self_attn` and
//!   `mlp`; everything else is carried from the fine-tune at full precision.
//!
//! Extraction ([`DeltaPair::delta`]) and merging ([`add_delta`]) work one tensor
//! at a time, so peak memory is a few tensors, not the model.
//!
//! ```
//! use delta_core::{Action, CheckpointWriter, DType, DeltaPair, Selection, WriteOptions};
//! # let tmp = tempfile::tempdir()?;
//! # let (base_dir, ft_dir) = (tmp.path().join("base"), tmp.path().join("ft"));
//! // Two tiny checkpoints that differ in one projection weight.
//! for (dir, w) in [(&base_dir, 0.5f32), (&ft_dir, 0.75)] {
//!     let mut out = CheckpointWriter::create(dir, WriteOptions::default())?;
//!     out.write_aux_file("config.json", br#"{"model_type": "llama", "vocab_size": 4}"#)?;
//!     out.write_f32("model.layers.0.mlp.up_proj.weight", DType::F32, &[2, 2], &[w; 4])?;
//!     out.write_f32("model.norm.weight", DType::F32, &[2], &[1.0, 1.0])?;
//!     out.finish()?;
//! }
//! let pair = DeltaPair::open(&base_dir, &ft_dir)?;
//! for entry in pair.plan(&Selection::bitdelta()) {
//!     if entry.action == Action::Compress {
//!         let delta = pair.delta(&entry.info.name)?;
//!         assert_eq!(delta, vec![0.25; 4]);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod atomic;
pub mod checkpoint;
pub mod dtype;
pub mod error;
pub mod pair;
pub mod selection;
pub mod writer;

pub use atomic::{write_file_atomic, AtomicDir, AtomicFile, OutputLock};
pub use checkpoint::{Checkpoint, TensorInfo, TensorView, INDEX_FILE, SINGLE_FILE};
pub use dtype::DType;
pub use error::{CheckpointError, DeltaError, Difference, MismatchError};
pub use pair::{add_delta, delta_of, Action, DeltaPair, PlanEntry, ARCHITECTURE_FIELDS};
pub use selection::{glob_match, Selection, BITDELTA_PATTERNS};
pub use writer::{CheckpointWriter, WriteOptions, AUX_FILES};
