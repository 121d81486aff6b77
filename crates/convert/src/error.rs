//! The converter's error type: every variant names the file (and field or tensor) at fault.

use std::path::PathBuf;

/// Why a checkpoint cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is present but its contents are wrong.
    #[error("{}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A field of a JSON or protobuf file is missing or has the wrong type or value.
    #[error("{}: field '{field}': {problem}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The field (a JSON path such as `rope_scaling.factor`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The checkpoint's `architectures[0]` is not one ggufy converts.
    #[error("{}: architecture '{arch}' is not supported (supported: {supported})", path.display())]
    UnknownArchitecture {
        /// config.json.
        path: PathBuf,
        /// The architecture named there.
        arch: String,
        /// The ones ggufy converts.
        supported: String,
    },
    /// A checkpoint tensor is unusable (unknown name, wrong dtype or shape).
    #[error("tensor '{name}': {problem}")]
    Tensor {
        /// The checkpoint's name for it.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The BPE pre-tokenizer's check hash is not in llama.cpp's table.
    #[error(
        "{}: BPE pre-tokenizer not recognised (check hash {hash}); llama.cpp's converter would refuse it too. If you know which pre-tokenizer the model uses, pass it explicitly (--vocab-pre NAME)",
        path.display()
    )]
    UnknownPreTokenizer {
        /// tokenizer.json.
        path: PathBuf,
        /// sha256 of the check text's token ids.
        hash: String,
    },
    /// The plan could not be built or written.
    #[error(transparent)]
    Plan(#[from] ggufy_plan::PlanError),
}

/// Shorthand for this crate's results.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
