//! `ggufy-gpu`: GPU kernels for ggufy's block formats behind one small trait, [`Backend`].
//!
//! The CPU ([`CpuBackend`], `ggufy-quant`'s reference code) is the default and the reference every
//! GPU kernel is tested against. With the `wgpu` feature, [`WgpuBackend`] runs the WGSL kernels of
//! `kernels/wgsl/` on Vulkan or Metal; with `cuda`, [`CudaBackend`] runs `kernels/cuda/` on an
//! NVIDIA GPU. Without features nothing GPU-related is compiled, so a plain build needs no
//! toolkit or driver.
//!
//! Kernels for Q8_0, Q4_0 and NF4: dequantization (bit-identical to the CPU), quantization
//! (byte-identical) and quantized mat-vec / batched mat-mul (within a stated tolerance of an f64
//! reference). [`Offloaded`] plugs a backend into the quantize/convert executor and
//! [`Accelerated`] into the runner.

#[cfg(feature = "cuda")]
mod cuda_backend;
#[cfg(feature = "wgpu")]
mod wgpu_backend;

#[cfg(feature = "cuda")]
pub use cuda_backend::{CudaBackend, compile_kernels, cuda_source};

#[cfg(feature = "wgpu")]
pub use wgpu_backend::WgpuBackend;

use ggufy_quant::nf4::{NF4_BLOCK, dequantize_nf4, quantize_nf4};

/// The WGSL kernel sources as wgpu compiles them: `kernels/wgsl/common.wgsl` followed by each
/// kernel file (WGSL has no includes). Always compiled in, so tools and tests can read them.
pub mod wgsl {
    /// Helpers shared by every kernel file.
    pub const COMMON: &str = include_str!("../../../kernels/wgsl/common.wgsl");
    /// Dequantization kernels.
    pub const DEQUANTIZE: &str = concat!(
        include_str!("../../../kernels/wgsl/common.wgsl"),
        include_str!("../../../kernels/wgsl/dequantize.wgsl")
    );
    /// Quantization kernels.
    pub const QUANTIZE: &str = concat!(
        include_str!("../../../kernels/wgsl/common.wgsl"),
        include_str!("../../../kernels/wgsl/quantize.wgsl")
    );
    /// Quantized mat-vec / mat-mul kernels.
    pub const MATMUL: &str = concat!(
        include_str!("../../../kernels/wgsl/common.wgsl"),
        include_str!("../../../kernels/wgsl/matmul.wgsl")
    );
    /// Every kernel file's name (without `.wgsl`) and its composed source.
    pub const ALL: [(&str, &str); 3] = [
        ("dequantize", DEQUANTIZE),
        ("quantize", QUANTIZE),
        ("matmul", MATMUL),
    ];
}

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

/// The formats the kernels produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ggml Q8_0.
    Q8_0,
    /// ggml Q4_0 (x86-64 rounding, as llama-quantize and gguf-py compute it).
    Q4_0,
    /// NF4 (bitsandbytes' codebook, blocks of 64).
    Nf4,
}

impl Format {
    /// Values per block.
    pub fn block(self) -> usize {
        match self {
            Format::Q8_0 | Format::Q4_0 => 32,
            Format::Nf4 => NF4_BLOCK,
        }
    }
}

/// Quantized output: the data bytes and, for NF4, the block scales.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizedBuf {
    /// Q8_0/Q4_0 blocks, or NF4 codes.
    pub data: Vec<u8>,
    /// NF4 absmax per block (empty for the ggml formats).
    pub absmax: Vec<f32>,
}

impl QuantizedBuf {
    /// An owned copy of `w`.
    pub fn copy_of(w: Quantized<'_>) -> QuantizedBuf {
        match w {
            Quantized::Q8_0(b) | Quantized::Q4_0(b) => QuantizedBuf {
                data: b.to_vec(),
                absmax: Vec::new(),
            },
            Quantized::Nf4 { codes, absmax } => QuantizedBuf {
                data: codes.to_vec(),
                absmax: absmax.to_vec(),
            },
        }
    }

    /// The buffer as the kernels' input view.
    pub fn view(&self, format: Format) -> Quantized<'_> {
        match format {
            Format::Q8_0 => Quantized::Q8_0(&self.data),
            Format::Q4_0 => Quantized::Q4_0(&self.data),
            Format::Nf4 => Quantized::Nf4 {
                codes: &self.data,
                absmax: &self.absmax,
            },
        }
    }
}

/// The number of blocks in `n` values, or an error if they are not whole blocks.
pub(crate) fn whole_blocks(format: Format, n: usize) -> Result<usize, GpuError> {
    let b = format.block();
    if n.is_multiple_of(b) {
        Ok(n / b)
    } else {
        Err(GpuError::Layout(format!(
            "{format:?}: {n} values is not a whole number of {b}-value blocks"
        )))
    }
}

/// The number of values in `src`, checked against an output of `out` values.
pub(crate) fn check_output(src: Quantized<'_>, out: usize) -> Result<usize, GpuError> {
    let n = src.len()?;
    if out != n {
        return Err(GpuError::Layout(format!(
            "{n} values need an output of {n}, got {out}"
        )));
    }
    Ok(n)
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

    /// Encodes `x` (whole blocks) in `format`, byte for byte as the CPU reference does.
    fn quantize(&self, format: Format, x: &[f32]) -> Result<QuantizedBuf, GpuError>;

    /// `y[t·rows + r] = Σ_j W[r][j] · x[t·cols + j]`: a `rows × cols` quantized matrix times
    /// `x.len() / cols` activation rows (one for decode, a batch for prefill). Sums are f32 on a
    /// GPU and f64 on the CPU reference; see the tests for the tolerance.
    fn matmul(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), GpuError>;

    /// Copies a `rows × cols` matrix to the device once, for [`Resident::matmul`].
    fn upload(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Box<dyn Resident>, GpuError>;
}

impl<'a> Quantized<'a> {
    /// Blocks `from .. to` of the data (for NF4, the codes and scales of those blocks).
    pub fn blocks(&self, from: usize, to: usize) -> Quantized<'a> {
        match *self {
            Quantized::Q8_0(b) => Quantized::Q8_0(&b[from * 34..to * 34]),
            Quantized::Q4_0(b) => Quantized::Q4_0(&b[from * 18..to * 18]),
            Quantized::Nf4 { codes, absmax } => Quantized::Nf4 {
                codes: &codes[from * 32..to * 32],
                absmax: &absmax[from..to],
            },
        }
    }

    /// The format of the data.
    pub fn format(&self) -> Format {
        match self {
            Quantized::Q8_0(_) => Format::Q8_0,
            Quantized::Q4_0(_) => Format::Q4_0,
            Quantized::Nf4 { .. } => Format::Nf4,
        }
    }
}

/// The CPU's "resident" matrix: its own copy, multiplied by the reference.
struct CpuResident {
    format: Format,
    data: QuantizedBuf,
    rows: usize,
    cols: usize,
}

impl Resident for CpuResident {
    fn matmul(&self, x: &[f32], y: &mut [f32]) -> Result<(), GpuError> {
        CpuBackend.matmul(self.data.view(self.format), self.rows, self.cols, x, y)
    }
}

/// A matrix kept on a device for repeated products (a model's weights during generation), so
/// only activations travel per product.
pub trait Resident: Send + Sync {
    /// `y = W · x` for `x.len() / cols` activation rows, as [`Backend::matmul`] computes it.
    fn matmul(&self, x: &[f32], y: &mut [f32]) -> Result<(), GpuError>;
}

/// Checks a resident product's shapes: whole rows of `cols` in, `rows` outputs per input row.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) fn check_resident(rows: usize, cols: usize, x: usize, y: usize) -> Result<(), GpuError> {
    if cols == 0 || !x.is_multiple_of(cols) || y != x / cols * rows {
        return Err(GpuError::Layout(format!(
            "{x} activations and {y} outputs do not fit a {rows} × {cols} matrix"
        )));
    }
    Ok(())
}

/// Little-endian f32s from `bytes` into `out` (as many as both hold).
#[cfg(feature = "wgpu")]
pub(crate) fn copy_f32s(bytes: &[u8], out: &mut [f32]) {
    for (d, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Checks a mat-mul's shapes; returns the number of activation rows (tokens).
pub(crate) fn check_matmul(
    w: Quantized<'_>,
    rows: usize,
    cols: usize,
    x: usize,
    y: usize,
) -> Result<usize, GpuError> {
    let n = w.len()?;
    let block = match w {
        Quantized::Nf4 { .. } => NF4_BLOCK,
        _ => 32,
    };
    if cols == 0 || !cols.is_multiple_of(block) || rows.checked_mul(cols) != Some(n) {
        return Err(GpuError::Layout(format!(
            "a {rows} × {cols} matrix of {block}-value blocks does not hold {n} values"
        )));
    }
    if !x.is_multiple_of(cols) || y != x / cols * rows {
        return Err(GpuError::Layout(format!(
            "{x} activations are not whole rows of {cols}, or {y} outputs are not {rows} per row"
        )));
    }
    Ok(x / cols)
}

/// The CPU: `ggufy-quant`'s reference code, what every GPU kernel must reproduce.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn dequantize(&self, src: Quantized<'_>, dst: &mut [f32]) -> Result<(), GpuError> {
        check_output(src, dst.len())?;
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

    fn matmul(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), GpuError> {
        let tokens = check_matmul(w, rows, cols, x.len(), y.len())?;
        let mut row = vec![0f32; cols];
        let row_bytes = |bytes: usize| bytes / rows.max(1);
        for r in 0..rows {
            let one = match w {
                Quantized::Q8_0(b) => {
                    let n = row_bytes(b.len());
                    Quantized::Q8_0(&b[r * n..(r + 1) * n])
                }
                Quantized::Q4_0(b) => {
                    let n = row_bytes(b.len());
                    Quantized::Q4_0(&b[r * n..(r + 1) * n])
                }
                Quantized::Nf4 { codes, absmax } => {
                    let (n, m) = (cols / 2, cols / NF4_BLOCK);
                    Quantized::Nf4 {
                        codes: &codes[r * n..(r + 1) * n],
                        absmax: &absmax[r * m..(r + 1) * m],
                    }
                }
            };
            self.dequantize(one, &mut row)?;
            for t in 0..tokens {
                let xt = &x[t * cols..(t + 1) * cols];
                let s: f64 = row
                    .iter()
                    .zip(xt)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                y[t * rows + r] = s as f32;
            }
        }
        Ok(())
    }

    fn upload(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Box<dyn Resident>, GpuError> {
        check_matmul(w, rows, cols, 0, 0)?;
        Ok(Box::new(CpuResident {
            format: w.format(),
            data: QuantizedBuf::copy_of(w),
            rows,
            cols,
        }))
    }

    fn quantize(&self, format: Format, x: &[f32]) -> Result<QuantizedBuf, GpuError> {
        let blocks = whole_blocks(format, x.len())?;
        let ggml = |ty: ggufy_gguf::GgmlType, bytes: usize| {
            let mut data = vec![0u8; blocks * bytes];
            ggufy_quant::quantize_row(ty, x, &mut data, ggufy_quant::Rounding::Separate)
                .map_err(|e| GpuError::Layout(e.to_string()))?;
            Ok(QuantizedBuf {
                data,
                absmax: Vec::new(),
            })
        };
        match format {
            Format::Q8_0 => ggml(ggufy_gguf::GgmlType::Q8_0, 34),
            Format::Q4_0 => ggml(ggufy_gguf::GgmlType::Q4_0, 18),
            Format::Nf4 => {
                let mut out = QuantizedBuf {
                    data: vec![0u8; x.len() / 2],
                    absmax: vec![0f32; blocks],
                };
                quantize_nf4(x, &mut out.data, &mut out.absmax);
                Ok(out)
            }
        }
    }
}

/// A backend as the plan executor's [`ggufy_plan::Offload`]: whole tensors whose target it
/// produces (Q8_0, Q4_0 with x86 rounding, NF4) are quantized there; the file is the same.
#[derive(Debug)]
pub struct Offloaded<B>(pub B);

impl<B: Backend + Send + Sync> Offloaded<B> {
    fn format(target: ggufy_plan::Target, rounding: ggufy_quant::Rounding) -> Option<Format> {
        use ggufy_gguf::GgmlType;
        use ggufy_plan::Target;
        match target {
            Target::Ggml(GgmlType::Q8_0) => Some(Format::Q8_0),
            Target::Ggml(GgmlType::Q4_0) if rounding == ggufy_quant::Rounding::Separate => {
                Some(Format::Q4_0)
            }
            Target::Nf4Codes => Some(Format::Nf4),
            _ => None,
        }
    }
}

impl<B: Backend + Send + Sync> ggufy_plan::Offload for Offloaded<B> {
    fn supports(&self, target: ggufy_plan::Target, rounding: ggufy_quant::Rounding) -> bool {
        Self::format(target, rounding).is_some()
    }

    fn quantize(
        &self,
        target: ggufy_plan::Target,
        x: &[f32],
        out: &mut [u8],
        scales: &mut [u8],
    ) -> Result<(), String> {
        let format = Self::format(target, ggufy_quant::Rounding::Separate)
            .ok_or_else(|| format!("{} cannot produce {target:?}", self.0.name()))?;
        let q = self.0.quantize(format, x).map_err(|e| e.to_string())?;
        if q.data.len() != out.len() || q.absmax.len() * 4 != scales.len() {
            return Err(format!(
                "{} returned {} bytes and {} scales for a {}-byte tensor with {} scale bytes",
                self.0.name(),
                q.data.len(),
                q.absmax.len(),
                out.len(),
                scales.len()
            ));
        }
        out.copy_from_slice(&q.data);
        for (dst, v) in scales.chunks_exact_mut(4).zip(&q.absmax) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }
}

/// A backend as the runner's [`ggufy_run::Accelerator`]: Q8_0, Q4_0 and NF4 weight matrices are
/// kept on the device and multiplied there; other formats stay on the CPU.
#[derive(Debug)]
pub struct Accelerated<B>(pub B);

/// A [`Resident`] as the runner's device matrix.
struct RunMatrix(Box<dyn Resident>);

impl ggufy_run::DeviceMatrix for RunMatrix {
    fn matmul(&self, x: &[f32], out: &mut [f32]) -> Result<(), String> {
        self.0.matmul(x, out).map_err(|e| e.to_string())
    }
}

impl<B: Backend + Send + Sync> ggufy_run::Accelerator for Accelerated<B> {
    fn name(&self) -> String {
        self.0.name()
    }

    fn upload(
        &self,
        m: &ggufy_run::weights::Matrix<'_>,
    ) -> Result<Option<Box<dyn ggufy_run::DeviceMatrix>>, String> {
        use ggufy_gguf::GgmlType;
        use ggufy_run::weights::Storage;
        let absmax: Vec<f32>;
        let w = match m.storage {
            Storage::Ggml(GgmlType::Q8_0) => Quantized::Q8_0(m.data),
            Storage::Ggml(GgmlType::Q4_0) => Quantized::Q4_0(m.data),
            Storage::Nf4 { absmax: bytes } => {
                absmax = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Quantized::Nf4 {
                    codes: m.data,
                    absmax: &absmax,
                }
            }
            _ => return Ok(None),
        };
        let resident = self
            .0
            .upload(w, m.rows, m.cols)
            .map_err(|e| e.to_string())?;
        Ok(Some(Box::new(RunMatrix(resident))))
    }
}
