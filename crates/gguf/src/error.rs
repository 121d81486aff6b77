//! The crate's one error type: every variant names the file position or field it is about.

use std::path::PathBuf;

/// Anything that can go wrong reading, validating or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The OS refused an operation on a path.
    #[error("{path}: {err}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the OS said.
        err: std::io::Error,
    },
    /// The bytes are not GGUF at all; the text says what they look like instead.
    #[error("not a GGUF file: {0}")]
    NotGguf(String),
    /// A GGUF file in a variant ggufy does not read (v1, a future version).
    #[error("unsupported GGUF: {0}")]
    Unsupported(String),
    /// The file breaks the format: `field` at byte `offset` has a bad value.
    #[error("malformed GGUF: {field} at byte {offset}: {problem}")]
    Malformed {
        /// Byte offset of the field in the file.
        offset: u64,
        /// Which field (key, tensor, count) is wrong.
        field: String,
        /// What is wrong with it, with the value found.
        problem: String,
    },
    /// A metadata key is missing or has a type or value the caller cannot use.
    #[error("metadata key '{key}': {problem}")]
    Metadata {
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// An input file changed (size, time or identity) while the output was being made from it,
    /// so the output may mix old and new data; it was discarded.
    #[error("{path}: changed while it was being read ({what}); the output was discarded")]
    InputChanged {
        /// The input file.
        path: PathBuf,
        /// What differs, before → after.
        what: String,
    },
    /// A write was asked for something a valid GGUF file cannot hold.
    #[error("cannot write GGUF: {0}")]
    InvalidPlan(String),
}

/// Shorthand for results whose error is [`GgufError`].
pub type Result<T, E = GgufError> = std::result::Result<T, E>;

impl GgufError {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        GgufError::Io {
            path: path.into(),
            err,
        }
    }
}
