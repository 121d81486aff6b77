//! The runner with its weight matrices on a device (`Model::offload`): the CPU reference backend
//! everywhere, and the wgpu GPU when the feature finds one. Device products sum exact weights in
//! f32 (GPU) or f64 (reference) instead of llama.cpp's CPU kernels with quantized activations,
//! so logits are compared with a tolerance: against the CPU path within 5% of the logits' range
//! (activation quantization), and between the reference and the GPU within 1e-3 of it.

use std::path::{Path, PathBuf};

use ggufy_gguf::{GgmlType, Gguf};
use ggufy_gpu::{Accelerated, CpuBackend};
use ggufy_plan::{Encoding, ExecOptions, QuantizePolicy, execute, quantize_plan};
use ggufy_run::{Accelerator, Model, Session};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gguf/tiny-llama-f16.gguf")
}

fn quantized(dir: &Path, target: Encoding) -> PathBuf {
    let out = dir.join(format!("{target}.gguf"));
    let file = Gguf::open(fixture()).unwrap();
    let policy = QuantizePolicy {
        target,
        pure: true,
        keep: Vec::new(),
    };
    let (plan, _) = quantize_plan(&file, &policy).unwrap();
    execute(&plan, &out, &ExecOptions::default(), &mut |_, _| {}).unwrap();
    out
}

/// Logits after a short prompt, then after three more tokens one at a time (decode).
fn logits(path: &Path, acc: Option<&dyn Accelerator>) -> (usize, Vec<f32>) {
    let file = Gguf::open(path).unwrap();
    let mut model = Model::load(&file).unwrap();
    let moved = match acc {
        Some(a) => model.offload(a).unwrap(),
        None => 0,
    };
    let mut s = Session::new(&model, 64);
    let mut all = s.eval(&[1, 15, 27, 280, 42, 7]).unwrap();
    for t in [5, 99, 200] {
        all.extend(s.step(t).unwrap());
    }
    (moved, all)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn range(a: &[f32]) -> f32 {
    let (lo, hi) = a
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    hi - lo
}

#[test]
fn offloaded_models_compute_the_same_logits_within_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    // The GPUs the build's features find (none without them).
    #[allow(unused_mut)]
    let mut gpus: Vec<(&str, Box<dyn Accelerator>)> = Vec::new();
    #[cfg(feature = "wgpu")]
    if let Ok(b) = ggufy_gpu::WgpuBackend::new() {
        gpus.push(("wgpu", Box::new(Accelerated(b))));
    }
    #[cfg(feature = "cuda")]
    if let Ok(b) = ggufy_gpu::CudaBackend::new() {
        gpus.push(("CUDA", Box::new(Accelerated(b))));
    }
    for target in [
        Encoding::Ggml(GgmlType::Q8_0),
        Encoding::Ggml(GgmlType::Q4_0),
        Encoding::Nf4,
    ] {
        let path = quantized(dir.path(), target);
        let (_, cpu) = logits(&path, None);
        let (moved, reference) = logits(&path, Some(&Accelerated(CpuBackend)));
        // 2 layers × 7 matrices, and the output where its type is one the device handles.
        assert!(moved >= 14, "{target}: {moved} matrices moved");
        let r = range(&cpu);
        let d = max_abs_diff(&cpu, &reference);
        assert!(
            d <= 0.05 * r,
            "{target}: CPU path vs device reference: {d} (range {r})"
        );
        assert!(
            d > 0.0,
            "{target}: the offload did not change the arithmetic; was it used?"
        );
        for (name, g) in &gpus {
            let (moved_gpu, on_gpu) = logits(&path, Some(g.as_ref()));
            assert_eq!(moved_gpu, moved, "{name}");
            let d = max_abs_diff(&reference, &on_gpu);
            assert!(
                d <= 1e-3 * r,
                "{target}: {name} vs reference: {d} (range {r})"
            );
        }
    }
}

#[test]
fn unsupported_formats_stay_on_the_cpu() {
    let (moved, a) = logits(&fixture(), Some(&Accelerated(CpuBackend)));
    assert_eq!(moved, 0, "F16 matrices are not offloaded");
    let (_, b) = logits(&fixture(), None);
    assert_eq!(a, b);
}
