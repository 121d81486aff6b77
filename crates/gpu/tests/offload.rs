//! The plan executor with an offload: whole tensors decoded on the CPU and quantized by a
//! [`Backend`] give the same file as the executor's own row loop. Runs everywhere with the CPU
//! backend (the offload path itself), and on a GPU when the `wgpu` feature finds one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ggufy_gguf::{GgmlType, Gguf};
use ggufy_gpu::{CpuBackend, Offloaded};
use ggufy_plan::{Encoding, ExecOptions, Offload, QuantizePolicy, execute, quantize_plan};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gguf/tiny-llama-f16.gguf")
}

fn quantize(out: &Path, target: Encoding, offload: Option<Arc<dyn Offload>>) -> Vec<u8> {
    let file = Gguf::open(fixture()).unwrap();
    let policy = QuantizePolicy {
        target,
        pure: false,
        keep: Vec::new(),
    };
    let (plan, _) = quantize_plan(&file, &policy).unwrap();
    let opts = ExecOptions {
        threads: 2,
        offload,
        ..Default::default()
    };
    let _ = std::fs::remove_file(out);
    execute(&plan, out, &opts, &mut |_, _| {}).unwrap();
    std::fs::read(out).unwrap()
}

fn offloads() -> Vec<(String, Arc<dyn Offload>)> {
    // Only the GPU features add to the list.
    #[allow(unused_mut)]
    let mut v: Vec<(String, Arc<dyn Offload>)> =
        vec![("cpu".into(), Arc::new(Offloaded(CpuBackend)))];
    #[cfg(feature = "wgpu")]
    match ggufy_gpu::WgpuBackend::new() {
        Ok(b) => v.push(("wgpu".into(), Arc::new(Offloaded(b)))),
        Err(e) => eprintln!("no wgpu adapter, no wgpu offload: {e}"),
    }
    #[cfg(feature = "cuda")]
    match ggufy_gpu::CudaBackend::new() {
        Ok(b) => v.push(("cuda".into(), Arc::new(Offloaded(b)))),
        Err(e) => eprintln!("no CUDA device, no CUDA offload: {e}"),
    }
    v
}

#[test]
fn offloaded_quantization_writes_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    for target in [
        Encoding::Ggml(GgmlType::Q8_0),
        Encoding::Ggml(GgmlType::Q4_0),
        Encoding::Nf4,
    ] {
        let want = quantize(&dir.path().join("plain.gguf"), target, None);
        for (name, o) in offloads() {
            let got = quantize(&dir.path().join(format!("{name}.gguf")), target, Some(o));
            assert!(got == want, "{target} through the {name} offload differs");
        }
    }
}

#[test]
fn an_offload_is_asked_only_for_what_it_supports() {
    let o = Offloaded(CpuBackend);
    use ggufy_plan::Target;
    use ggufy_quant::Rounding;
    assert!(o.supports(Target::Ggml(GgmlType::Q8_0), Rounding::Separate));
    assert!(o.supports(Target::Ggml(GgmlType::Q4_0), Rounding::Separate));
    assert!(!o.supports(Target::Ggml(GgmlType::Q4_0), Rounding::Fused));
    assert!(!o.supports(Target::Ggml(GgmlType::Q6_K), Rounding::Separate));
    assert!(o.supports(Target::Nf4Codes, Rounding::Separate));
    assert!(!o.supports(Target::Nf4Absmax, Rounding::Separate));
}
