//! Every WGSL kernel against the CPU reference, on whatever adapter wgpu finds — in CI that is
//! lavapipe (Mesa's Vulkan driver on the CPU; `.ci/run` installs it). Without an adapter the tests
//! say so and pass, unless `GGUFY_REQUIRE_GPU_TESTS=1` (CI sets it) makes that a failure.
//!
//! Dequantization must be bit-identical: random blocks, plus edge scales (zero, ±0, subnormal,
//! largest finite, infinities, NaN) and every code value.
#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

use ggufy_gpu::{Backend, CpuBackend, Quantized, WgpuBackend};
use proptest::prelude::*;

fn gpu() -> Option<&'static WgpuBackend> {
    static GPU: OnceLock<Option<WgpuBackend>> = OnceLock::new();
    GPU.get_or_init(|| match WgpuBackend::new() {
        Ok(b) => {
            eprintln!("GPU tests on {}", b.name());
            Some(b)
        }
        Err(e) => {
            assert!(
                std::env::var_os("GGUFY_REQUIRE_GPU_TESTS").is_none(),
                "GGUFY_REQUIRE_GPU_TESTS is set but {e}"
            );
            eprintln!("SKIPPED: {e} (install mesa-vulkan-drivers for lavapipe)");
            None
        }
    })
    .as_ref()
}

/// f16 bit patterns a scale may hold, the awkward ones first.
const EDGE_F16: [u16; 10] = [
    0x0000, 0x8000, 0x0001, 0x83ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00,
];

/// Same bits, or both NaN (payloads are not data), or — the one freedom WGSL gives a device — a
/// subnormal CPU result flushed to a zero of the same sign. (lavapipe keeps subnormals.)
fn same(a: &[f32], b: &[f32]) -> Result<(), String> {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let flushed = y.is_subnormal() && *x == 0.0 && x.is_sign_negative() == y.is_sign_negative();
        if x.to_bits() != y.to_bits() && !(x.is_nan() && y.is_nan()) && !flushed {
            return Err(format!(
                "value {i}: GPU {x:e} ({:#010x}), CPU {y:e} ({:#010x})",
                x.to_bits(),
                y.to_bits()
            ));
        }
    }
    if a.len() != b.len() {
        return Err(format!("{} values vs {}", a.len(), b.len()));
    }
    Ok(())
}

fn check(gpu: &WgpuBackend, src: Quantized<'_>) -> Result<(), String> {
    let n = src.len().map_err(|e| e.to_string())?;
    let (mut g, mut c) = (vec![0f32; n], vec![0f32; n]);
    gpu.dequantize(src, &mut g).map_err(|e| e.to_string())?;
    CpuBackend
        .dequantize(src, &mut c)
        .map_err(|e| e.to_string())?;
    same(&g, &c)
}

/// Blocks of `block` bytes whose first two bytes are an f16 scale: random bytes, with the
/// scale taken from the edge list for the first blocks.
fn legacy_blocks(block: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), block..block * 64).prop_map(move |mut v| {
        v.truncate(v.len() / block * block);
        for (b, chunk) in v.chunks_exact_mut(block).enumerate() {
            if let Some(&h) = EDGE_F16.get(b) {
                chunk[..2].copy_from_slice(&h.to_le_bytes());
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn q8_0_dequantize_equals_the_cpu(data in legacy_blocks(34)) {
        let Some(gpu) = gpu() else { return Ok(()) };
        prop_assert_eq!(check(gpu, Quantized::Q8_0(&data)), Ok(()));
    }

    #[test]
    fn q4_0_dequantize_equals_the_cpu(data in legacy_blocks(18)) {
        let Some(gpu) = gpu() else { return Ok(()) };
        prop_assert_eq!(check(gpu, Quantized::Q4_0(&data)), Ok(()));
    }

    #[test]
    fn nf4_dequantize_equals_the_cpu(
        codes in proptest::collection::vec(any::<u8>(), 32..32 * 40),
        scales in proptest::collection::vec(
            prop_oneof![
                4 => -1e4f32..1e4,
                1 => Just(0.0f32),
                1 => Just(f32::INFINITY),
                1 => Just(f32::NAN),
                1 => Just(f32::MAX),
                1 => 1e-30f32..1e-20,
                1 => Just(1e-39f32),
            ],
            40,
        ),
    ) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let codes = &codes[..codes.len() / 32 * 32];
        let absmax = &scales[..codes.len() / 32];
        prop_assert_eq!(check(gpu, Quantized::Nf4 { codes, absmax }), Ok(()));
    }
}

#[test]
fn every_code_and_every_f16_scale() {
    let Some(gpu) = gpu() else { return };
    // All 65,536 f16 scales, each with all 256 Q8_0 codes spread over its block's 32 values.
    let mut q8 = Vec::new();
    let mut q4 = Vec::new();
    for h in 0..=u16::MAX {
        let mut block = h.to_le_bytes().to_vec();
        block.extend((0..32u8).map(|i| i.wrapping_mul(8).wrapping_add(h as u8)));
        q8.extend_from_slice(&block);
        q4.extend_from_slice(&block[..18]);
    }
    assert_eq!(check(gpu, Quantized::Q8_0(&q8)), Ok(()));
    assert_eq!(check(gpu, Quantized::Q4_0(&q4)), Ok(()));
    // More than 65,535 workgroups: the 2-D dispatch path.
    assert!(q8.len() / 34 * 32 > 256 * 65_535 / 8);
}

#[test]
fn large_inputs_use_a_two_dimensional_grid() {
    let Some(gpu) = gpu() else { return };
    // 17M values = 66,000+ workgroups of 256, past one dimension's limit.
    let blocks = 256 * 65_536 / 32 + 3;
    let data: Vec<u8> = (0..blocks * 18)
        .map(|i| {
            if i % 18 == 1 {
                0x3c
            } else {
                (i * 37 % 251) as u8
            }
        })
        .collect();
    assert_eq!(check(gpu, Quantized::Q4_0(&data)), Ok(()));
}

#[test]
fn bad_layouts_are_errors() {
    let Some(gpu) = gpu() else { return };
    let mut out = vec![0f32; 32];
    assert!(gpu.dequantize(Quantized::Q8_0(&[0; 33]), &mut out).is_err());
    assert!(
        gpu.dequantize(Quantized::Q8_0(&[0; 34]), &mut out[..31])
            .is_err()
    );
    let absmax = [1.0f32; 2];
    assert!(
        gpu.dequantize(
            Quantized::Nf4 {
                codes: &[0; 32],
                absmax: &absmax
            },
            &mut out
        )
        .is_err()
    );
    assert!(gpu.dequantize(Quantized::Q4_0(&[]), &mut []).is_ok());
}

#[test]
fn the_kernels_codebook_is_the_cpus() {
    let wgsl = ggufy_gpu::DEQUANTIZE_WGSL;
    let start = wgsl.find("array<f32, 16>(").expect("NF4 table") + "array<f32, 16>(".len();
    let end = start + wgsl[start..].find(");").unwrap();
    let table: Vec<f32> = wgsl[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(table, ggufy_quant::nf4::NF4_CODEBOOK);
}
