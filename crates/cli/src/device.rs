//! `--device`: where `convert` and `quantize` quantize. The CPU is the default and the reference;
//! `gpu` runs the WGSL kernels through wgpu (Vulkan, Metal) for the formats they cover (Q8_0,
//! Q4_0, NF4) and gives the same bytes. Other types and steps stay on the CPU.

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
}

/// The offload for `device`, announced on stderr unless `quiet`; a clear error when the asked-for
/// device is absent or this binary was built without GPU support.
pub fn offload(device: Device, quiet: bool) -> Result<Option<Arc<dyn Offload>>> {
    match device {
        Device::Cpu => Ok(None),
        Device::Gpu => gpu(quiet),
    }
}

#[cfg(feature = "gpu")]
fn gpu(quiet: bool) -> Result<Option<Arc<dyn Offload>>> {
    use ggufy_gpu::Backend;
    let backend = ggufy_gpu::WgpuBackend::new()
        .map_err(|e| anyhow::anyhow!("--device gpu: {e}; use --device cpu"))?;
    if !quiet {
        eprintln!("device: {} (Q8_0, Q4_0 and NF4 tensors)", backend.name());
    }
    Ok(Some(Arc::new(ggufy_gpu::Offloaded(backend))))
}

#[cfg(not(feature = "gpu"))]
fn gpu(_quiet: bool) -> Result<Option<Arc<dyn Offload>>> {
    anyhow::bail!(
        "--device gpu: this ggufy was built without GPU support; build it with `cargo build --release -p ggufy --features gpu`, or use --device cpu"
    )
}
