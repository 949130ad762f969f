//! Typed errors. Every variant names the file, tensor or field it is about,
//! so a user can act on the message without a debugger.

use std::fmt;
use std::path::PathBuf;

/// Reading or writing a checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Hugging Face model directory: no config.json")]
    MissingConfig { path: PathBuf },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{dir}: no weights: expected model.safetensors or model.safetensors.index.json")]
    NoWeights { dir: PathBuf },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    #[error(
        "{path}: tensor `{tensor}` has dtype {dtype}, but only F32, F16 and BF16 are supported"
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error("{path}: tensor `{tensor}` appears in more than one shard (also in {other})")]
    DuplicateTensor {
        path: PathBuf,
        tensor: String,
        other: PathBuf,
    },
    #[error("{index}: tensor `{tensor}` is mapped to {shard}, which does not contain it")]
    IndexMismatch {
        index: PathBuf,
        tensor: String,
        shard: PathBuf,
    },
    #[error("{index}: invalid index: {reason}")]
    InvalidIndex { index: PathBuf, reason: String },
    #[error("{dir}: no tensor named `{tensor}`")]
    TensorNotFound { dir: PathBuf, tensor: String },
    #[error("tensor `{tensor}`: {reason}")]
    InvalidTensor { tensor: String, reason: String },
    /// A tensor about to be written holds NaN or ±Inf: a model with it would
    /// load and then produce non-finite logits.
    #[error("tensor `{tensor}`: non-finite value {value} at element {index}; refusing to write it into {path}")]
    NonFinite {
        path: PathBuf,
        tensor: String,
        index: usize,
        value: f32,
    },
    /// Another process holds the advisory lock on this output.
    #[error("{path} is being written by another process (it holds the lock {lock}); wait for it or choose another output")]
    OutputLocked { path: PathBuf, lock: PathBuf },
    #[error("{path} already exists (pass overwrite to replace it)")]
    OutputExists { path: PathBuf },
    #[error("interrupted; nothing was written to {path}")]
    Interrupted { path: PathBuf },
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CheckpointError {
        let path = path.into();
        move |source| CheckpointError::Io { path, source }
    }
}

/// One way in which a fine-tuned checkpoint differs from its base.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// A config field that decides the architecture differs.
    Architecture {
        field: String,
        base: String,
        finetuned: String,
    },
    /// A config field that changes what the weights compute (norm epsilon,
    /// rope, context length, activation) differs: the delta file would lose it.
    Config {
        field: String,
        base: String,
        finetuned: String,
    },
    VocabSize {
        base: Option<u64>,
        finetuned: Option<u64>,
    },
    /// In the base, absent from the fine-tune.
    MissingTensor(String),
    /// In the fine-tune, absent from the base.
    ExtraTensor(String),
    Shape {
        tensor: String,
        base: Vec<usize>,
        finetuned: Vec<usize>,
    },
    DType {
        tensor: String,
        base: crate::DType,
        finetuned: crate::DType,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Architecture {
                field,
                base,
                finetuned,
            } => write!(f, "config `{field}`: base {base}, fine-tuned {finetuned}"),
            Difference::Config {
                field,
                base,
                finetuned,
            } => write!(
                f,
                "config `{field}`: base {base}, fine-tuned {finetuned} (a delta file keeps the \
                 base's config, so the fine-tune's value would be lost; re-export the fine-tune \
                 with the base's value or compress against a matching base)"
            ),
            Difference::VocabSize { base, finetuned } => write!(
                f,
                "vocabulary size: base {}, fine-tuned {}",
                opt(base),
                opt(finetuned)
            ),
            Difference::MissingTensor(t) => {
                write!(f, "tensor `{t}` is in the base but not in the fine-tune")
            }
            Difference::ExtraTensor(t) => {
                write!(f, "tensor `{t}` is in the fine-tune but not in the base")
            }
            Difference::Shape {
                tensor,
                base,
                finetuned,
            } => write!(
                f,
                "tensor `{tensor}`: shape {base:?} in the base, {finetuned:?} in the fine-tune"
            ),
            Difference::DType {
                tensor,
                base,
                finetuned,
            } => write!(
                f,
                "tensor `{tensor}`: dtype {base} in the base, {finetuned} in the fine-tune"
            ),
        }
    }
}

fn opt(v: &Option<u64>) -> String {
    v.map_or_else(|| "unset".to_string(), |v| v.to_string())
}

/// A base and a fine-tuned checkpoint that cannot be paired.
#[derive(Debug, Clone, thiserror::Error)]
pub struct MismatchError {
    pub base: PathBuf,
    pub finetuned: PathBuf,
    pub differences: Vec<Difference>,
}

impl fmt::Display for MismatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a fine-tune of {}: {} difference(s)",
            self.finetuned.display(),
            self.base.display(),
            self.differences.len()
        )?;
        const SHOWN: usize = 20;
        for d in self.differences.iter().take(SHOWN) {
            write!(f, "\n  - {d}")?;
        }
        if self.differences.len() > SHOWN {
            write!(f, "\n  ... and {} more", self.differences.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Extracting or applying a delta failed.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Mismatch(#[from] MismatchError),
    #[error("tensor `{tensor}`: {which} has a non-finite value ({value}) at element {index}")]
    NonFinite {
        tensor: String,
        which: &'static str,
        index: usize,
        value: f32,
    },
    #[error("tensor `{tensor}`: delta has {got} elements, the base tensor {expected}")]
    DeltaSize {
        tensor: String,
        expected: usize,
        got: usize,
    },
    #[error("invalid tensor pattern `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
}
