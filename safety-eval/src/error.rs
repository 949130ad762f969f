//! Typed errors. Every error about a file names the file, and the line where
//! there is one.

use std::path::PathBuf;

use crate::model::ModelError;

/// Reading or writing a dataset file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: missing column {column:?} in the header")]
    MissingColumn { path: PathBuf, column: String },
    #[error("{path}:{line}: malformed CSV row: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}:{line}: invalid JSON: {message}")]
    Json {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// Running an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("model failed while {what}: {source}")]
    Model {
        what: String,
        #[source]
        source: ModelError,
    },
    #[error("judge {judge} failed: {source}")]
    Judge {
        judge: String,
        #[source]
        source: ModelError,
    },
    #[error("{what}: expected {expected} results, got {got}")]
    Count {
        what: String,
        expected: usize,
        got: usize,
    },
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Writing reports or re-scoring saved generations.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: invalid JSON: {message}")]
    Json {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("cannot serialize: {0}")]
    Serialize(#[from] serde_json::Error),
}
