//! Every WGSL kernel against the CPU reference, on whatever adapter wgpu finds — in CI that is
//! lavapipe (Mesa's Vulkan driver on the CPU; `.ci/run` installs it). Without an adapter the tests
//! say so and pass, unless `GGUFY_REQUIRE_GPU_TESTS=1` (CI sets it) makes that a failure.
//!
//! Dequantization must be bit-identical: random blocks, plus edge scales (zero, ±0, subnormal,
//! largest finite, infinities, NaN) and every code value.
#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

mod common;

use common::*;
use ggufy_gpu::{Backend, CpuBackend, Format, Quantized, WgpuBackend};
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
    let wgsl = ggufy_gpu::wgsl::DEQUANTIZE;
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

// ---------------------------------------------------------------------------------------------
// quantization

#[test]
fn integer_float_arithmetic_is_ieee() {
    let Some(gpu) = gpu() else { return };
    // Every edge pattern against every other, then random patterns: uniform bits (all classes),
    // and values of nearby exponents (where the quotients and products stay finite and normal).
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for &a in &EDGE_F32 {
        for &b in &EDGE_F32 {
            pairs.push((a, b));
        }
    }
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for i in 0..400_000u32 {
        let r = next();
        let (a, b) = (r as u32, (r >> 32) as u32);
        let pair = match i % 4 {
            0 => (a, b),
            1 => (a & 0x807f_ffff | 0x3f00_0000, b & 0x807f_ffff | 0x3f80_0000),
            2 => (a & 0x80ff_ffff, b & 0x80ff_ffff | 0x4000_0000), // subnormal-ish ÷ and ×
            _ => (a & 0x8fff_ffff | 0x4000_0000, b & 0x83ff_ffff | 0x0800_0000),
        };
        pairs.push(pair);
    }
    let out = gpu.check_arithmetic(&pairs).unwrap();
    let mut bad = Vec::new();
    for (&(a, b), got) in pairs.iter().zip(&out) {
        let (x, y) = (f32::from_bits(a), f32::from_bits(b));
        let want = [
            (x * y).to_bits(),
            (x / y).to_bits(),
            u32::from(ggufy_quant::fp::f32_to_f16(x)),
            c_int(x.round()) as u32,
            c_int(y.trunc()) as u32,
        ];
        let ok = same_f32(got[0], want[0]) && same_f32(got[1], want[1]) && got[2..] == want[2..];
        if !ok && bad.len() < 8 {
            bad.push(format!(
                "a={a:#010x} b={b:#010x}: GPU {got:08x?}, CPU {want:08x?}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn q8_0_quantize_is_byte_identical(x in blocks(32)) {
        let Some(gpu) = gpu() else { return Ok(()) };
        prop_assert_eq!(check_quantize(gpu, Format::Q8_0, &x), Ok(()));
    }

    #[test]
    fn q4_0_quantize_is_byte_identical(x in blocks(32)) {
        let Some(gpu) = gpu() else { return Ok(()) };
        prop_assert_eq!(check_quantize(gpu, Format::Q4_0, &x), Ok(()));
    }

    #[test]
    fn nf4_quantize_is_byte_identical(x in blocks(64)) {
        let Some(gpu) = gpu() else { return Ok(()) };
        prop_assert_eq!(check_quantize(gpu, Format::Nf4, &x), Ok(()));
    }
}

#[test]
fn quantize_a_real_sized_tensor_and_round_trip() {
    let Some(gpu) = gpu() else { return };
    // 2048 × 1024 values of a smooth distribution, odd block counts included by the size.
    let n = 2048 * 1024 + 32;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i as f32) * 0.618).sin() * (1.0 + (i % 97) as f32))
        .collect();
    for format in [Format::Q8_0, Format::Q4_0] {
        assert_eq!(check_quantize(gpu, format, &x), Ok(()));
    }
    assert_eq!(check_quantize(gpu, Format::Nf4, &x[..n - 32]), Ok(()));
    // And the GPU's own dequantization of its output is the CPU's.
    let q = gpu.quantize(Format::Q8_0, &x).unwrap();
    assert_eq!(check(gpu, q.view(Format::Q8_0)), Ok(()));
    assert!(gpu.quantize(Format::Q8_0, &x[..33]).is_err());
}

#[test]
fn the_kernels_nf4_thresholds_are_the_cpus() {
    let wgsl = ggufy_gpu::wgsl::QUANTIZE;
    let start = wgsl.find("array<u32, 15>(").expect("NF4 thresholds") + "array<u32, 15>(".len();
    let end = start + wgsl[start..].find(");").unwrap();
    let table: Vec<f32> = wgsl[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            f32::from_bits(
                u32::from_str_radix(s.trim_start_matches("0x").trim_end_matches('u'), 16).unwrap(),
            )
        })
        .collect();
    assert_eq!(table, ggufy_quant::nf4::NF4_THRESHOLDS);
}

// ---------------------------------------------------------------------------------------------
// mat-vec and mat-mul

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn matmul_agrees_with_the_reference((rows, cols, tokens, w, x) in matmul_case()) {
        let Some(gpu) = gpu() else { return Ok(()) };
        let _ = tokens;
        for format in [Format::Q8_0, Format::Q4_0, Format::Nf4] {
            prop_assert_eq!(check_matmul(gpu, format, rows, cols, &w, &x), Ok(()));
        }
    }
}

#[test]
fn matmul_on_long_rows_and_many_rows() {
    let Some(gpu) = gpu() else { return };
    // A 32,768-wide row (more blocks than invocations, for every format) and a matrix of
    // 70,000 rows (more workgroups than one grid dimension holds).
    let (rows, cols) = (3, 32 * 1024);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    let x: Vec<f32> = (0..2 * cols).map(|i| ((i as f32) * 0.11).cos()).collect();
    for format in [Format::Q8_0, Format::Q4_0, Format::Nf4] {
        assert_eq!(check_matmul(gpu, format, rows, cols, &w, &x), Ok(()));
    }
    let (rows, cols) = (70_000, 64);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.013).sin())
        .collect();
    let x: Vec<f32> = (0..cols).map(|i| i as f32 / 64.0 - 0.5).collect();
    assert_eq!(check_matmul(gpu, Format::Q4_0, rows, cols, &w, &x), Ok(()));
}

#[test]
fn matmul_shape_errors() {
    let Some(gpu) = gpu() else { return };
    let q = CpuBackend.quantize(Format::Q8_0, &[0.5; 64]).unwrap();
    let mut y = [0f32; 2];
    assert!(
        gpu.matmul(q.view(Format::Q8_0), 2, 32, &[1.0; 32], &mut y)
            .is_ok()
    );
    assert!(
        gpu.matmul(q.view(Format::Q8_0), 1, 64, &[1.0; 32], &mut y[..1])
            .is_err()
    );
    assert!(
        gpu.matmul(q.view(Format::Q8_0), 2, 32, &[1.0; 33], &mut y)
            .is_err()
    );
    assert!(
        gpu.matmul(q.view(Format::Q8_0), 3, 32, &[1.0; 32], &mut y)
            .is_err()
    );
    assert!(
        gpu.matmul(q.view(Format::Q8_0), 2, 32, &[1.0; 64], &mut y)
            .is_err()
    );
}

#[test]
fn data_larger_than_a_binding_runs_in_chunks() {
    if gpu().is_none() {
        return;
    }
    // A second device that pretends a binding holds 4 KiB: every kernel then runs in many
    // chunks (odd counts of blocks, rows split across buffers) and must give the same results.
    let small = WgpuBackend::new().unwrap().with_binding_cap(4096);
    let x: Vec<f32> = (0..32 * 301)
        .map(|i| ((i as f32) * 0.37).sin() * 2.0)
        .collect();
    for format in [Format::Q8_0, Format::Q4_0] {
        assert_eq!(check_quantize(&small, format, &x), Ok(()));
        let q = CpuBackend.quantize(format, &x).unwrap();
        assert_eq!(check(&small, q.view(format)), Ok(()));
    }
    assert_eq!(check_quantize(&small, Format::Nf4, &x[..64 * 150]), Ok(()));
    let (rows, cols) = (301, 64 * 40);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.013).cos())
        .collect();
    let xs: Vec<f32> = (0..3 * cols).map(|i| (i % 17) as f32 / 8.0 - 1.0).collect();
    for format in [Format::Q8_0, Format::Q4_0, Format::Nf4] {
        assert_eq!(check_matmul(&small, format, rows, cols, &w, &xs), Ok(()));
    }
}
