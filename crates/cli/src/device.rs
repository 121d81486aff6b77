//! `--device`: where `convert` and `quantize` quantize and where `run` multiplies. The CPU is
//! the default and the reference; `gpu` runs the WGSL kernels through wgpu (Vulkan, Metal),
//! `cuda` the CUDA kernels through cudarc, for the formats they cover (Q8_0, Q4_0, NF4). Files
//! come out byte-identical on every device; `run` on a device sums in f32 on the GPU, so its
//! logits differ slightly from the CPU's llama.cpp-exact ones. `auto` takes the first device that
//! works and says so.

use std::sync::Arc;

use anyhow::Result;
use ggufy_plan::Offload;
use ggufy_run::Accelerator;

/// The `--device` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// The CPU (default).
    #[default]
    Cpu,
    /// The first GPU wgpu finds (Vulkan or Metal); an error if there is none.
    Gpu,
    /// NVIDIA GPU 0 through CUDA; an error if there is none.
    Cuda,
    /// CUDA, else another GPU, else the CPU — saying on stderr which, and why not the others.
    Auto,
}

/// An opened device of one of the kinds this binary was built with.
enum Opened {
    #[cfg(feature = "gpu")]
    Gpu(Box<ggufy_gpu::WgpuBackend>),
    #[cfg(feature = "cuda")]
    Cuda(Box<ggufy_gpu::CudaBackend>),
}

/// The offload for `convert`/`quantize`, or `None` for the CPU.
pub fn offload(device: Device, quiet: bool) -> Result<Option<Arc<dyn Offload>>> {
    Ok(open(device, quiet)?.map(|o| -> Arc<dyn Offload> {
        match o {
            #[cfg(feature = "gpu")]
            Opened::Gpu(b) => Arc::new(ggufy_gpu::Offloaded(*b)),
            #[cfg(feature = "cuda")]
            Opened::Cuda(b) => Arc::new(ggufy_gpu::Offloaded(*b)),
        }
    }))
}

/// The accelerator for `run`, or `None` for the CPU.
pub fn accelerator(device: Device, quiet: bool) -> Result<Option<Box<dyn Accelerator>>> {
    Ok(open(device, quiet)?.map(|o| -> Box<dyn Accelerator> {
        match o {
            #[cfg(feature = "gpu")]
            Opened::Gpu(b) => Box::new(ggufy_gpu::Accelerated(*b)),
            #[cfg(feature = "cuda")]
            Opened::Cuda(b) => Box::new(ggufy_gpu::Accelerated(*b)),
        }
    }))
}

/// Opens `device`, announcing it on stderr unless `quiet`; a clear error when the asked-for device
/// is absent or this binary was built without it.
fn open(device: Device, quiet: bool) -> Result<Option<Opened>> {
    let say = |msg: String| {
        if !quiet {
            eprintln!("{msg}");
        }
    };
    let (name, opened) = match device {
        Device::Cpu => return Ok(None),
        Device::Gpu => gpu().map_err(|e| anyhow::anyhow!("--device gpu: {e}; use --device cpu"))?,
        Device::Cuda => {
            cuda().map_err(|e| anyhow::anyhow!("--device cuda: {e}; use --device cpu"))?
        }
        Device::Auto => match cuda() {
            Ok(c) => c,
            Err(why_not_cuda) => match gpu() {
                Ok(g) => {
                    say(format!("device: not CUDA ({why_not_cuda})"));
                    g
                }
                Err(why_not_gpu) => {
                    say(format!(
                        "device: falling back to the CPU (CUDA: {why_not_cuda}; GPU: {why_not_gpu})"
                    ));
                    return Ok(None);
                }
            },
        },
    };
    say(format!("device: {name} (Q8_0, Q4_0 and NF4)"));
    Ok(Some(opened))
}

#[cfg(feature = "gpu")]
fn gpu() -> Result<(String, Opened), String> {
    use ggufy_gpu::Backend;
    let b = ggufy_gpu::WgpuBackend::new().map_err(|e| e.to_string())?;
    Ok((b.name(), Opened::Gpu(Box::new(b))))
}

#[cfg(not(feature = "gpu"))]
fn gpu() -> Result<(String, Opened), String> {
    Err("this ggufy was built without GPU support (build it with `cargo build --release -p ggufy --features gpu`)".into())
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<(String, Opened), String> {
    use ggufy_gpu::Backend;
    let b = ggufy_gpu::CudaBackend::new().map_err(|e| e.to_string())?;
    Ok((b.name(), Opened::Cuda(Box::new(b))))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<(String, Opened), String> {
    Err("this ggufy was built without CUDA support (build it with `cargo build --release -p ggufy --features cuda`)".into())
}
