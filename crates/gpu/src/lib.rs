//! `ggufy-gpu`: GPU kernels for ggufy's block formats behind one small trait, [`Backend`].
//!
//! The CPU ([`CpuBackend`], `ggufy-quant`'s reference code) is the default and the reference every
//! GPU kernel is tested against. With the `wgpu` feature, [`WgpuBackend`] runs the WGSL kernels of
//! `kernels/wgsl/` on Vulkan or Metal; without features nothing GPU-related is compiled, so a
//! plain build needs no toolkit or driver.
//!
//! Kernels so far: dequantization of Q8_0, Q4_0 and NF4 to f32, equal to the CPU bit for bit.

#[cfg(feature = "wgpu")]
mod wgpu_backend;

#[cfg(feature = "wgpu")]
pub use wgpu_backend::{DEQUANTIZE_WGSL, WgpuBackend};

use ggufy_quant::nf4::{NF4_BLOCK, dequantize_nf4};

/// Quantized data a kernel reads, in the layout the GGUF file stores it.
#[derive(Clone, Copy, Debug)]
pub enum Quantized<'a> {
    /// ggml Q8_0 blocks (34 bytes per 32 values).
    Q8_0(&'a [u8]),
    /// ggml Q4_0 blocks (18 bytes per 32 values).
    Q4_0(&'a [u8]),
    /// NF4: packed codes (first value in the high nibble) and one absmax per 64 values.
    Nf4 {
        /// Two codes per byte.
        codes: &'a [u8],
        /// Block scales.
        absmax: &'a [f32],
    },
}

impl Quantized<'_> {
    /// The number of values the data holds, or an error if its length is not whole blocks.
    pub fn len(&self) -> Result<usize, GpuError> {
        let whole = |bytes: usize, block: usize, what: &'static str| {
            if bytes.is_multiple_of(block) {
                Ok(bytes / block * 32)
            } else {
                Err(GpuError::Layout(format!(
                    "{what}: {bytes} bytes is not a whole number of {block}-byte blocks"
                )))
            }
        };
        match *self {
            Quantized::Q8_0(b) => whole(b.len(), 34, "Q8_0"),
            Quantized::Q4_0(b) => whole(b.len(), 18, "Q4_0"),
            Quantized::Nf4 { codes, absmax } => {
                let n = codes.len() * 2;
                if !n.is_multiple_of(NF4_BLOCK) || absmax.len() != n / NF4_BLOCK {
                    return Err(GpuError::Layout(format!(
                        "NF4: {} code bytes need {} scales, got {}",
                        codes.len(),
                        n / NF4_BLOCK,
                        absmax.len()
                    )));
                }
                Ok(n)
            }
        }
    }

    /// Whether the data holds no values.
    pub fn is_empty(&self) -> bool {
        self.len().is_ok_and(|n| n == 0)
    }
}

/// What can go wrong on a device.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable device of the requested kind (no driver, no adapter).
    #[error("no GPU device available: {0}")]
    NoDevice(String),
    /// The data does not fit the format.
    #[error("bad data layout: {0}")]
    Layout(String),
    /// The device or its driver failed.
    #[error("GPU error: {0}")]
    Device(String),
}

/// A place kernels run: the CPU reference or a GPU.
pub trait Backend {
    /// A human-readable name of the device (for logs and `--device` messages).
    fn name(&self) -> String;

    /// Decodes `src` into `dst` (exactly `src.len()` values).
    fn dequantize(&self, src: Quantized<'_>, dst: &mut [f32]) -> Result<(), GpuError>;
}

/// The CPU: `ggufy-quant`'s reference code, what every GPU kernel must reproduce.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn dequantize(&self, src: Quantized<'_>, dst: &mut [f32]) -> Result<(), GpuError> {
        let n = src.len()?;
        if dst.len() != n {
            return Err(GpuError::Layout(format!(
                "{n} values need an output of {n}, got {}",
                dst.len()
            )));
        }
        let ggml = |ty, b: &[u8], dst: &mut [f32]| {
            ggufy_quant::dequantize_row(ty, b, dst).map_err(|e| GpuError::Layout(e.to_string()))
        };
        match src {
            Quantized::Q8_0(b) => ggml(ggufy_gguf::GgmlType::Q8_0, b, dst),
            Quantized::Q4_0(b) => ggml(ggufy_gguf::GgmlType::Q4_0, b, dst),
            Quantized::Nf4 { codes, absmax } => {
                dequantize_nf4(codes, absmax, dst);
                Ok(())
            }
        }
    }
}
