//! `--device`: where `convert` and `quantize` quantize. The CPU is the default and the reference;
//! `gpu` runs the WGSL kernels through wgpu (Vulkan, Metal), `cuda` the CUDA kernels through
//! cudarc, for the formats they cover (Q8_0, Q4_0, NF4), with the same bytes as the CPU. Other
//! types and all decoding stay on the CPU. `auto` takes the first that works and says so.

use std::sync::Arc;

use anyhow::Result;
use ggufy_plan::Offload;

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

/// The offload for `device`, announced on stderr unless `quiet`; a clear error when the asked-for
/// device is absent or this binary was built without it.
pub fn offload(device: Device, quiet: bool) -> Result<Option<Arc<dyn Offload>>> {
    let say = |msg: String| {
        if !quiet {
            eprintln!("{msg}");
        }
    };
    let chosen = match device {
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
    say(format!("device: {} (Q8_0, Q4_0 and NF4 tensors)", chosen.0));
    Ok(Some(chosen.1))
}

#[cfg(feature = "gpu")]
fn gpu() -> Result<(String, Arc<dyn Offload>), String> {
    use ggufy_gpu::Backend;
    let b = ggufy_gpu::WgpuBackend::new().map_err(|e| e.to_string())?;
    Ok((b.name(), Arc::new(ggufy_gpu::Offloaded(b))))
}

#[cfg(not(feature = "gpu"))]
fn gpu() -> Result<(String, Arc<dyn Offload>), String> {
    Err("this ggufy was built without GPU support (build it with `cargo build --release -p ggufy --features gpu`)".into())
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<(String, Arc<dyn Offload>), String> {
    use ggufy_gpu::Backend;
    let b = ggufy_gpu::CudaBackend::new().map_err(|e| e.to_string())?;
    Ok((b.name(), Arc::new(ggufy_gpu::Offloaded(b))))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<(String, Arc<dyn Offload>), String> {
    Err("this ggufy was built without CUDA support (build it with `cargo build --release -p ggufy --features cuda`)".into())
}
