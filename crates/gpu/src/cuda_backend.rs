//! The CUDA kernels (`kernels/cuda/*.cu`) on an NVIDIA GPU through cudarc.
//!
//! The driver (libcuda) and NVRTC are loaded at run time: a binary built with the `cuda` feature
//! starts anywhere and [`CudaBackend::new`] says plainly what is missing. The sources are compiled
//! by NVRTC when the backend opens, for the GPU that is there, with `-ftz=false -prec-div=true
//! -fmad=false` (the flags exactness needs). NVRTC rather than PTX from nvcc at build time: PTX is
//! forward-compatible only, and nvcc from CUDA 13 emits a PTX ISA that drivers older than 13
//! refuse, so shipped PTX would pin users to the newest drivers; NVRTC produces PTX the local
//! driver accepts, and building ggufy needs no CUDA toolkit. The cost: the user needs libnvrtc
//! (part of the CUDA toolkit and of most CUDA container images) and the first open compiles for
//! about a second.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

use crate::{Backend, Format, GpuError, Quantized, QuantizedBuf, Resident};

const COMMON: &str = include_str!("../../../kernels/cuda/common.cuh");
const DEQUANTIZE: &str = include_str!("../../../kernels/cuda/dequantize.cu");
const QUANTIZE: &str = include_str!("../../../kernels/cuda/quantize.cu");
const MATMUL: &str = include_str!("../../../kernels/cuda/matmul.cu");

/// All kernels as one translation unit, the shared header inlined (NVRTC has no file system).
pub fn cuda_source() -> String {
    let mut src = String::new();
    for file in [COMMON, DEQUANTIZE, QUANTIZE, MATMUL] {
        for line in file.lines() {
            let t = line.trim();
            if t != "#include \"common.cuh\"" && t != "#pragma once" {
                src.push_str(line);
                src.push('\n');
            }
        }
    }
    src
}

/// The options exactness needs: IEEE division and square root, subnormals kept, no contraction.
fn compile_options() -> CompileOptions {
    CompileOptions {
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(false),
        ..Default::default()
    }
}

/// Compiles the kernels to PTX with NVRTC (no GPU needed), to check a machine's NVRTC.
pub fn compile_kernels() -> Result<String, GpuError> {
    // SAFETY: only tries to load the shared library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(GpuError::NoDevice(
            "CUDA's runtime compiler (libnvrtc) is not installed; it ships with the CUDA toolkit"
                .into(),
        ));
    }
    compile_ptx_with_opts(cuda_source(), compile_options())
        .map(|ptx| ptx.to_src())
        .map_err(|e| GpuError::Device(format!("compiling the CUDA kernels: {e}")))
}

/// An NVIDIA GPU with the kernels compiled for it.
pub struct CudaBackend {
    name: String,
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("name", &self.name)
            .finish()
    }
}

fn device_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> GpuError + '_ {
    move |e| GpuError::Device(format!("{what}: {e}"))
}

impl CudaBackend {
    /// Opens GPU 0 and compiles the kernels for it, or says what is missing.
    pub fn new() -> Result<CudaBackend, GpuError> {
        // SAFETY: only tries to load the shared library (no CUDA call is made).
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(GpuError::NoDevice(
                "the NVIDIA driver (libcuda) is not installed".into(),
            ));
        }
        // SAFETY: as above, for NVRTC.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(GpuError::NoDevice(
                "CUDA's runtime compiler (libnvrtc) is not installed; it ships with the CUDA toolkit".into(),
            ));
        }
        let ctx = CudaContext::new(0).map_err(device_err("opening GPU 0"))?;
        let name = ctx.name().map_err(device_err("naming GPU 0"))?;
        let ptx = compile_ptx_with_opts(cuda_source(), compile_options())
            .map_err(|e| GpuError::Device(format!("compiling the CUDA kernels: {e}")))?;
        let module = ctx
            .load_module(ptx)
            .map_err(device_err("loading the CUDA kernels"))?;
        Ok(CudaBackend {
            name,
            stream: ctx.default_stream(),
            module,
        })
    }

    fn function(&self, name: &str) -> Result<CudaFunction, GpuError> {
        self.module
            .load_function(name)
            .map_err(|e| GpuError::Device(format!("kernel {name}: {e}")))
    }
}

fn u32_of(n: usize) -> Result<u32, GpuError> {
    u32::try_from(n).map_err(|_| GpuError::Layout(format!("{n} is more than one launch holds")))
}

fn grid(items: usize, block: u32) -> Result<LaunchConfig, GpuError> {
    Ok(LaunchConfig {
        grid_dim: (u32_of(items.div_ceil(block as usize).max(1))?, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    })
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("{} (CUDA)", self.name)
    }

    fn dequantize(&self, src: Quantized<'_>, dst: &mut [f32]) -> Result<(), GpuError> {
        let n = crate::check_output(src, dst.len())?;
        if n == 0 {
            return Ok(());
        }
        let s = &self.stream;
        let n32 = u32_of(n)?;
        let mut out = s.alloc_zeros::<f32>(n).map_err(device_err("allocating"))?;
        let copy = device_err("copying to the GPU");
        match src {
            Quantized::Q8_0(b) | Quantized::Q4_0(b) => {
                let name = if matches!(src, Quantized::Q8_0(_)) {
                    "dequantize_q8_0"
                } else {
                    "dequantize_q4_0"
                };
                let f = self.function(name)?;
                let data = s.clone_htod(b).map_err(&copy)?;
                // SAFETY: the kernel takes (const u8*, float*, u32) and reads n values' blocks
                // from `data`, writing n floats to `out`, both allocated to those sizes.
                unsafe {
                    s.launch_builder(&f)
                        .arg(&data)
                        .arg(&mut out)
                        .arg(&n32)
                        .launch(grid(n, 256)?)
                }
                .map_err(device_err(name))?;
            }
            Quantized::Nf4 { codes, absmax } => {
                let f = self.function("dequantize_nf4")?;
                let c = s.clone_htod(codes).map_err(&copy)?;
                let a = s.clone_htod(absmax).map_err(&copy)?;
                // SAFETY: (const u8*, const float*, float*, u32), sizes checked by check_output.
                unsafe {
                    s.launch_builder(&f)
                        .arg(&c)
                        .arg(&a)
                        .arg(&mut out)
                        .arg(&n32)
                        .launch(grid(n, 256)?)
                }
                .map_err(device_err("dequantize_nf4"))?;
            }
        }
        let host = s
            .clone_dtoh(&out)
            .map_err(device_err("copying from the GPU"))?;
        dst.copy_from_slice(&host);
        Ok(())
    }

    fn quantize(&self, format: Format, x: &[f32]) -> Result<QuantizedBuf, GpuError> {
        let blocks = crate::whole_blocks(format, x.len())?;
        if blocks == 0 {
            return Ok(QuantizedBuf::default());
        }
        let s = &self.stream;
        let nb = u32_of(blocks)?;
        let xs = s.clone_htod(x).map_err(device_err("copying to the GPU"))?;
        let cfg = grid(blocks, 64)?;
        let (name, bytes) = match format {
            Format::Q8_0 => ("quantize_q8_0", blocks * 34),
            Format::Q4_0 => ("quantize_q4_0", blocks * 18),
            Format::Nf4 => ("quantize_nf4", blocks * 32),
        };
        let f = self.function(name)?;
        let mut data = s
            .alloc_zeros::<u8>(bytes)
            .map_err(device_err("allocating"))?;
        let mut absmax = s
            .alloc_zeros::<f32>(blocks)
            .map_err(device_err("allocating"))?;
        // SAFETY: quantize_q8_0/q4_0 take (const float*, u8*, u32) and quantize_nf4 (const
        // float*, u8*, float*, u32); `xs` holds nb whole blocks, `data` and `absmax` their output.
        unsafe {
            let mut b = s.launch_builder(&f);
            b.arg(&xs).arg(&mut data);
            if format == Format::Nf4 {
                b.arg(&mut absmax);
            }
            b.arg(&nb).launch(cfg)
        }
        .map_err(device_err(name))?;
        let data = s
            .clone_dtoh(&data)
            .map_err(device_err("copying from the GPU"))?;
        let absmax = if format == Format::Nf4 {
            s.clone_dtoh(&absmax)
                .map_err(device_err("copying from the GPU"))?
        } else {
            Vec::new()
        };
        Ok(QuantizedBuf { data, absmax })
    }

    fn matmul(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), GpuError> {
        crate::check_matmul(w, rows, cols, x.len(), y.len())?;
        self.upload(w, rows, cols)?.matmul(x, y)
    }

    fn upload(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Box<dyn Resident>, GpuError> {
        crate::check_matmul(w, rows, cols, 0, 0)?;
        let s = &self.stream;
        let copy = device_err("copying to the GPU");
        let (name, data, absmax) = match w {
            Quantized::Q8_0(b) => ("matmul_q8_0", b, None),
            Quantized::Q4_0(b) => ("matmul_q4_0", b, None),
            Quantized::Nf4 { codes, absmax } => (
                "matmul_nf4",
                codes,
                Some(s.clone_htod(absmax).map_err(&copy)?),
            ),
        };
        Ok(Box::new(CudaResident {
            function: self.function(name)?,
            weights: s.clone_htod(data).map_err(&copy)?,
            absmax,
            stream: s.clone(),
            rows: u32_of(rows)?,
            cols: u32_of(cols)?,
        }))
    }
}

/// A weight matrix in GPU memory with the mat-mul kernel for its format.
struct CudaResident {
    stream: Arc<CudaStream>,
    function: CudaFunction,
    weights: CudaSlice<u8>,
    absmax: Option<CudaSlice<f32>>,
    rows: u32,
    cols: u32,
}

impl Resident for CudaResident {
    fn matmul(&self, x: &[f32], y: &mut [f32]) -> Result<(), GpuError> {
        let (rows, cols) = (self.rows as usize, self.cols as usize);
        crate::check_resident(rows, cols, x.len(), y.len())?;
        if y.is_empty() {
            return Ok(());
        }
        let s = &self.stream;
        let xs = s.clone_htod(x).map_err(device_err("copying to the GPU"))?;
        let mut out = s
            .alloc_zeros::<f32>(y.len())
            .map_err(device_err("allocating"))?;
        let cfg = LaunchConfig {
            grid_dim: (u32_of(y.len())?, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernels take (const u8* w, [const float* absmax,] const float* x, float* y,
        // u32 rows, u32 cols); the buffers were sized for this matrix and these activations.
        unsafe {
            let mut b = s.launch_builder(&self.function);
            b.arg(&self.weights);
            if let Some(a) = &self.absmax {
                b.arg(a);
            }
            b.arg(&xs)
                .arg(&mut out)
                .arg(&self.rows)
                .arg(&self.cols)
                .launch(cfg)
        }
        .map_err(device_err("matmul"))?;
        let host = s
            .clone_dtoh(&out)
            .map_err(device_err("copying from the GPU"))?;
        y.copy_from_slice(&host);
        Ok(())
    }
}
