//! The CUDA backend (feature `cuda`). NVRTC must compile the kernels wherever libnvrtc is present
//! (no GPU needed; CI installs it from PyPI and sets `GGUFY_REQUIRE_NVRTC=1`); without a driver the
//! backend must say what is missing instead of panicking; on a machine with an NVIDIA GPU the
//! kernels are checked exactly as the WGSL and emulated ones are.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use ggufy_gpu::{Backend, CudaBackend, Format, GpuError, Quantized};

#[test]
fn nvrtc_compiles_the_kernels() {
    match ggufy_gpu::compile_kernels() {
        Ok(ptx) => {
            for k in [
                "dequantize_q8_0",
                "dequantize_q4_0",
                "dequantize_nf4",
                "quantize_q8_0",
                "quantize_q4_0",
                "quantize_nf4",
                "matmul_q8_0",
                "matmul_q4_0",
                "matmul_nf4",
            ] {
                assert!(
                    ptx.contains(&format!(".entry {k}(")),
                    "{k} missing from the PTX"
                );
            }
        }
        Err(e) => {
            assert!(
                std::env::var_os("GGUFY_REQUIRE_NVRTC").is_none(),
                "GGUFY_REQUIRE_NVRTC is set but: {e}"
            );
            eprintln!("SKIPPED: {e}");
        }
    }
}

#[test]
fn kernels_on_a_real_gpu_or_a_clear_error() {
    let gpu = match CudaBackend::new() {
        Ok(g) => g,
        Err(e) => {
            // No panic (cudarc's context constructor panics without a driver; we check first),
            // and a message a user can act on.
            assert!(
                matches!(e, GpuError::NoDevice(_) | GpuError::Device(_)),
                "{e}"
            );
            eprintln!("SKIPPED (no GPU): {e}");
            return;
        }
    };
    eprintln!("CUDA tests on {}", gpu.name());
    let mut q8 = Vec::new();
    for h in 0..=u16::MAX {
        q8.extend_from_slice(&h.to_le_bytes());
        q8.extend((0..32u8).map(|i| i.wrapping_mul(8).wrapping_add(h as u8)));
    }
    assert_eq!(check(&gpu, Quantized::Q8_0(&q8)), Ok(()));
    let x: Vec<f32> = (0..64 * 4096)
        .map(|i| {
            let b = EDGE_F32[i % EDGE_F32.len()];
            if i % 7 == 0 {
                f32::from_bits(b)
            } else {
                ((i as f32) * 0.618).sin() * 3.0
            }
        })
        .collect();
    for format in [Format::Q8_0, Format::Q4_0, Format::Nf4] {
        assert_eq!(check_quantize(&gpu, format, &x), Ok(()));
    }
    let (rows, cols) = (300, 32 * 600);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    let xs: Vec<f32> = (0..3 * cols).map(|i| ((i as f32) * 0.11).cos()).collect();
    for format in [Format::Q8_0, Format::Q4_0, Format::Nf4] {
        assert_eq!(check_matmul(&gpu, format, rows, cols, &w, &xs), Ok(()));
    }
}
