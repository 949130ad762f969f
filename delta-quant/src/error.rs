//! One error type for the crate. Every variant that concerns a tensor names
//! it, so a failure deep inside a 7B-model run says *which* matrix was bad.

use std::path::PathBuf;

/// Errors from parsing method strings, compressing, decoding payloads and
/// reading or writing compressed-delta files.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// The delta contains NaN or ±Inf; compressing it would silently poison
    /// the scales, so we refuse.
    #[error("tensor `{tensor}`: non-finite value {value} at [{row}, {col}]")]
    NonFinite {
        tensor: String,
        row: usize,
        col: usize,
        value: f32,
    },
    /// A method name that is neither built in nor registered
    /// ([`crate::registry`]).
    #[error("unknown compression method `{name}`; valid methods: {valid}")]
    UnknownMethod { name: String, valid: String },
    /// A parameter name the method does not take.
    #[error("method `{method}`: unknown parameter `{param}`; valid parameters: {valid}")]
    UnknownParam {
        method: String,
        param: String,
        valid: String,
    },
    /// A parameter value that does not parse or is out of range.
    #[error("method `{method}`: invalid value `{value}` for `{param}`: {reason}")]
    InvalidParam {
        method: String,
        param: String,
        value: String,
        reason: String,
    },
    /// A method string that is not `name[:k=v,...][+name...]`.
    #[error("invalid method string `{spec}`: {reason}")]
    Syntax { spec: String, reason: String },
    /// Shapes or lengths that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A tensor the method cannot handle (too large for u32 indices, SVD did
    /// not converge, ...).
    #[error("tensor `{tensor}`: {reason}")]
    Unsupported { tensor: String, reason: String },
    /// A payload a compressed tensor needs is not there.
    #[error("tensor `{tensor}`: missing payload `{payload}`")]
    MissingPayload { tensor: String, payload: String },
    /// A payload with the wrong dtype, shape or byte length, or contents
    /// that break an invariant (unsorted indices, out-of-range codes, ...).
    #[error("tensor `{tensor}`: payload `{payload}` is malformed: {reason}")]
    BadPayload {
        tensor: String,
        payload: String,
        reason: String,
    },
    /// The file's `__metadata__` is missing a key or does not parse.
    #[error("bad delta-file metadata: {0}")]
    Metadata(String),
    /// A file written by a newer (or foreign) format version.
    #[error("unsupported delta-file format version `{0}` (this build reads versions 1 and 2)")]
    Version(String),
    /// A stored tensor's bytes do not match the checksum written with them:
    /// the file was corrupted (disk, transfer, an edit) after it was written.
    #[error("container tensor `{tensor}` fails its checksum (stored xxh3-64 {expected}, bytes hash to {got}): the file is corrupted")]
    Checksum {
        tensor: String,
        expected: String,
        got: String,
    },
    /// A method or encoding registration that was refused (name taken,
    /// invalid name or parameter key), or a file that holds a downstream
    /// payload whose kind is not registered.
    #[error("method registry: `{name}`: {reason}")]
    Registry { name: String, reason: String },
    /// Asked for a tensor the file does not hold (or holds as the other kind).
    #[error("tensor `{0}` not found")]
    NotFound(String),
    /// The safetensors container itself is invalid (truncated, header
    /// offsets that lie, bad JSON, ...).
    #[error("invalid safetensors container: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// An I/O error, with the path it happened on.
    #[error("i/o error on `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl QuantError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        QuantError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_payload(tensor: &str, payload: &str, reason: impl Into<String>) -> Self {
        QuantError::BadPayload {
            tensor: tensor.to_string(),
            payload: payload.to_string(),
            reason: reason.into(),
        }
    }
}
