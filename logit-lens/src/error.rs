//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while probing, comparing or writing reports.
#[derive(Debug, thiserror::Error)]
pub enum LensError {
    /// The model behind [`LensModel`](crate::LensModel) failed; the glue that
    /// implements the trait wraps its own error with [`LensError::model`].
    #[error("model error: {0}")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A [`ForwardTrace`](crate::ForwardTrace) or a decoded batch has the wrong
    /// size or order.
    #[error("invalid shape: {0}")]
    Shape(String),
    /// The caller asked for something that cannot be computed (no tokens, an
    /// out-of-range position or token id, an empty token set, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// Models compared on one prompt disagree on vocabulary, hidden size or
    /// probe points.
    #[error("models cannot be compared: {0}")]
    Mismatch(String),
    /// A logit or hidden value was NaN or infinite.
    #[error("non-finite value in {0}")]
    NonFinite(String),
    /// Drawing an SVG failed.
    #[error("plot error: {0}")]
    Plot(String),
    /// Writing or reading a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// JSON (de)serialisation failed.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

impl LensError {
    /// Wraps a model implementation's own error.
    pub fn model<E>(err: E) -> Self
    where
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        LensError::Model(err.into())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LensError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = LensError> = std::result::Result<T, E>;
