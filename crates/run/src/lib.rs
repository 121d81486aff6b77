//! A minimal, faithful llama-family runner: loads a GGUF file in place (no dequantized copy),
//! runs llama.cpp's forward pass, samples, and streams text — enough for a pipeline to check
//! that a converted or quantized file still works.

pub mod error;
pub mod model;
pub mod perplexity;
pub mod sampler;
mod spin;
pub mod weights;

pub use error::{Result, RunError};
pub use model::{Arch, Hparams, Model, Session, Yarn, rope};
pub use sampler::{Sampler, SamplerConfig};
pub use weights::{Accelerator, DeviceMatrix};
