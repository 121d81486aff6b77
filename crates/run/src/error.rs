//! Why a model cannot be run.

/// Runner errors; each names the metadata key or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A required metadata key is absent.
    #[error("{key}: missing (the runner needs it)")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A hyperparameter that cannot be right.
    #[error("{key}: {problem}")]
    BadKey {
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A tensor is missing or has the wrong shape or type.
    #[error("tensor {name}: {problem}")]
    Tensor {
        /// The tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The architecture has no forward pass here.
    #[error(
        "architecture '{0}' is not supported by the runner (supported: llama, qwen2, phi3, gemma)"
    )]
    Architecture(String),
    /// The context is full.
    #[error("the context of {0} tokens is full")]
    ContextFull(usize),
    /// A token id outside the vocabulary.
    #[error("token id {id} is out of range (the model has {n_vocab} tokens)")]
    Token {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// GGUF metadata could not be read.
    #[error(transparent)]
    Gguf(#[from] ggufy_gguf::GgufError),
}

/// Result with [`RunError`].
pub type Result<T, E = RunError> = std::result::Result<T, E>;
