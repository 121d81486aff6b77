//! Why a vocabulary cannot be used, or why an id cannot be decoded.

/// Tokenizer errors; each names the metadata key (and index) at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required key is absent.
    #[error("{key}: missing")]
    Missing {
        /// The metadata key.
        key: &'static str,
    },
    /// A key has the wrong type or a value that cannot be used.
    #[error("{key}: {problem}")]
    Invalid {
        /// The metadata key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// One element of an array is bad.
    #[error("{key}[{index}]: {problem}")]
    Element {
        /// The metadata key.
        key: &'static str,
        /// Index into the array.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is out of range (the vocabulary has {n_vocab} tokens)")]
    OutOfRange {
        /// The id asked for.
        id: i64,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// The GGUF metadata could not be read.
    #[error(transparent)]
    Gguf(#[from] ggufy_gguf::GgufError),
}

/// Result with [`TokenizerError`].
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;
