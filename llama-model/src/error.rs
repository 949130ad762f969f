//! Typed errors of this crate: one enum per concern, each naming the file,
//! field or tensor at fault.

use std::path::PathBuf;

/// A `config.json` (or an in-code configuration) that cannot describe a Llama.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// A required field is absent.
    #[error("{origin}: missing field `{field}`")]
    MissingField {
        /// Field name (dotted for nested fields).
        field: String,
        /// Where the configuration came from (file path or "in-code").
        origin: String,
    },
    /// A field has the wrong type or an impossible value.
    #[error("{origin}: field `{field}` is invalid: {reason}")]
    InvalidField {
        /// Field name.
        field: String,
        /// Where the configuration came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration describes something this crate does not implement.
    #[error("{origin}: unsupported `{field}`: {reason}")]
    Unsupported {
        /// Field name.
        field: String,
        /// Where the configuration came from.
        origin: String,
        /// What is not supported.
        reason: String,
    },
}

/// Loading weights into a [`crate::Llama`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration is bad.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The checkpoint reader failed.
    #[error(transparent)]
    Checkpoint(#[from] delta_core::CheckpointError),
    /// Another tensor source (e.g. a GGUF reader) failed.
    #[error("tensor source: {0}")]
    Source(String),
    /// A tensor the model needs is not in the checkpoint.
    #[error("tensor `{name}` is missing from the checkpoint")]
    MissingTensor {
        /// HF tensor name.
        name: String,
    },
    /// A tensor has a shape other than the configuration implies.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// HF tensor name.
        name: String,
        /// Shape the configuration implies.
        expected: Vec<usize>,
        /// Shape found in the checkpoint.
        found: Vec<usize>,
    },
    /// A tensor's data length does not match its shape.
    #[error("tensor `{name}` holds {found} values, its shape {shape:?} needs {expected}")]
    BadLength {
        /// HF tensor name.
        name: String,
        /// Declared shape.
        shape: Vec<usize>,
        /// Element count the shape implies.
        expected: usize,
        /// Element count read.
        found: usize,
    },
    /// A tensor holds NaN or ±Inf.
    #[error("tensor `{name}` holds a non-finite value ({value}) at element {index}")]
    NonFinite {
        /// HF tensor name.
        name: String,
        /// Flat index of the first non-finite element.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A delta names a tensor the model does not have, or has the wrong shape.
    #[error("delta for `{name}`: {reason}")]
    Delta {
        /// HF tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Building or using a tokenizer failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error, as text.
        reason: String,
    },
    /// `tokenizer_config.json` is malformed.
    #[error("{path}: {reason}")]
    Config {
        /// File that failed.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `tokenizers` crate reported an error.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

/// Loading or rendering a chat template failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// File that failed.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The named template is not among the checkpoint's templates.
    #[error("no chat template named `{0}`")]
    NoSuchTemplate(String),
    /// The template does not compile.
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    /// Rendering failed (including `raise_exception` called by the template).
    #[error("chat template rendering failed: {0}")]
    Render(String),
}

/// Token ids that cannot be fed to the model as one sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// No tokens at all (an empty `--text` without BOS, an empty token list).
    #[error("the input has no tokens (give a non-empty prompt)")]
    Empty,
    /// A token id is outside the vocabulary.
    #[error("token {token} at position {position} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfRange {
        /// Where in the sequence.
        position: usize,
        /// Offending id.
        token: u32,
        /// Model vocabulary size.
        vocab_size: usize,
    },
    /// The sequence is longer than the model's context.
    #[error(
        "the input has {len} tokens, more than the model's context \
         (max_position_embeddings {max_position_embeddings})"
    )]
    TooLong {
        /// Tokens in the sequence.
        len: usize,
        /// The model's context length.
        max_position_embeddings: usize,
    },
}

/// Generation was asked for something impossible.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A prompt has no tokens.
    #[error("prompt {row} is empty")]
    EmptyPrompt {
        /// Index of the prompt.
        row: usize,
    },
    /// A prompt token is outside the vocabulary.
    #[error("prompt {row} holds token {token}, vocabulary size is {vocab_size}")]
    TokenOutOfRange {
        /// Index of the prompt.
        row: usize,
        /// Offending id.
        token: u32,
        /// Model vocabulary size.
        vocab_size: usize,
    },
    /// Prompt plus new tokens do not fit in the model's context.
    #[error(
        "prompt {row} has {prompt_len} tokens; with max_new_tokens {max_new_tokens} that is \
         {total}, more than the model's context (max_position_embeddings \
         {max_position_embeddings}): shorten the prompt or lower max_new_tokens"
    )]
    TooLong {
        /// Index of the prompt.
        row: usize,
        /// Its length in tokens.
        prompt_len: usize,
        /// Tokens asked for.
        max_new_tokens: usize,
        /// `prompt_len + max_new_tokens` (saturating).
        total: usize,
        /// The model's context length.
        max_position_embeddings: usize,
    },
    /// The model produced a NaN or ±Inf logit: its weights are broken.
    #[error(
        "the model's logits are not finite (logit of token {token} is {value} for prompt {row} \
         at step {step}); refusing to generate from it"
    )]
    NonFiniteLogits {
        /// Index of the prompt.
        row: usize,
        /// Index of the new token being chosen.
        step: usize,
        /// Vocabulary entry whose logit is not finite (the first one).
        token: usize,
        /// The logit.
        value: f32,
    },
    /// Sampling parameters are out of range.
    #[error("invalid sampling parameter: {0}")]
    BadSampling(String),
}
