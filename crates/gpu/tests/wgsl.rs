//! Every WGSL kernel against the CPU reference, on whatever adapter wgpu finds — in CI that is
//! lavapipe (Mesa's Vulkan driver on the CPU; `.ci/run` installs it). Without an adapter the tests
//! say so and pass, unless `GGUFY_REQUIRE_GPU_TESTS=1` (CI sets it) makes that a failure.
//!
//! Dequantization must be bit-identical: random blocks, plus edge scales (zero, ±0, subnormal,
//! largest finite, infinities, NaN) and every code value.
#![cfg(feature = "wgpu")]

use std::sync::OnceLock;

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

// ---------------------------------------------------------------------------------------------
// quantization

/// f32 bit patterns worth hitting: zeros, subnormals, the normal range's ends, infinities, NaN,
/// rounding ties, the int range's edge.
const EDGE_F32: [u32; 22] = [
    0x0000_0000,
    0x8000_0000,
    0x0000_0001,
    0x807f_ffff,
    0x0080_0000,
    0x7f7f_ffff,
    0xff7f_ffff,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0xffc0_0001,
    0x3f00_0000,
    0xbf00_0000,
    0x3fc0_0000,
    0x4020_0000,
    0x4f00_0000,
    0xcf00_0000,
    0x4eff_ffff,
    0x3f80_0000,
    0x3380_0000,
    0x3880_0000,
    0x477f_f000,
];

/// The C semantics of `(int)x` on x86-64 (cvttss2si): NaN and out-of-range give INT_MIN.
fn c_int(v: f32) -> i32 {
    if v.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    }
}

fn same_f32(x: u32, y: u32) -> bool {
    x == y || (f32::from_bits(x).is_nan() && f32::from_bits(y).is_nan())
}

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

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -3.0f32..3.0,
        2 => -1e-3f32..1e-3,
        1 => proptest::sample::select(EDGE_F32.to_vec()).prop_map(f32::from_bits),
        1 => any::<u32>().prop_map(f32::from_bits),
        1 => -1e-38f32..1e-38,
    ]
}

/// Blocks of values, sometimes all tiny or all subnormal (where 1/d overflows).
fn blocks(block: usize) -> impl Strategy<Value = Vec<f32>> {
    (
        1usize..12,
        proptest::collection::vec(value(), block * 12),
        0u8..4,
    )
        .prop_map(move |(n, mut v, mode)| {
            v.truncate(n * block);
            if mode == 0 {
                let first = v.len().min(block);
                for x in &mut v[..first] {
                    *x = f32::from_bits(x.to_bits() & 0x8000_ffff); // subnormals
                }
            }
            v
        })
}

fn check_quantize(gpu: &WgpuBackend, format: Format, x: &[f32]) -> Result<(), String> {
    let g = gpu.quantize(format, x).map_err(|e| e.to_string())?;
    let c = CpuBackend.quantize(format, x).map_err(|e| e.to_string())?;
    if g.data != c.data {
        let i = g
            .data
            .iter()
            .zip(&c.data)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "{format:?}: byte {i} (block {}): GPU {:02x?}, CPU {:02x?}",
            i / (c.data.len() / (x.len() / format.block())).max(1),
            &g.data[i.saturating_sub(4)..(i + 4).min(g.data.len())],
            &c.data[i.saturating_sub(4)..(i + 4).min(c.data.len())]
        ));
    }
    let same_scales = g.absmax.len() == c.absmax.len()
        && g.absmax
            .iter()
            .zip(&c.absmax)
            .all(|(a, b)| same_f32(a.to_bits(), b.to_bits()));
    if !same_scales {
        return Err(format!(
            "{format:?}: absmax {:?} vs {:?}",
            g.absmax, c.absmax
        ));
    }
    Ok(())
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
    let wgsl = ggufy_gpu::QUANTIZE_WGSL;
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

/// The stated tolerance: |GPU − reference| ≤ TOL · Σ_j |W[r][j] · x[t][j]|. The GPU adds in f32:
/// 32 products per block in sequence, one scale multiplication, at most cols/8192 block sums per
/// invocation and an 8-level tree — under 64 roundings of 2^-24 each for rows up to 64k values,
/// so 64 · 2^-24 ≈ 3.8e-6 bounds the error; the reference sums in f64.
const TOL: f64 = 64.0 / 16_777_216.0;

fn check_matmul(
    gpu: &WgpuBackend,
    format: Format,
    rows: usize,
    cols: usize,
    w: &[f32],
    x: &[f32],
) -> Result<(), String> {
    let q = CpuBackend.quantize(format, w).map_err(|e| e.to_string())?;
    let tokens = x.len() / cols;
    let (mut g, mut c) = (vec![0f32; rows * tokens], vec![0f32; rows * tokens]);
    gpu.matmul(q.view(format), rows, cols, x, &mut g)
        .map_err(|e| e.to_string())?;
    CpuBackend
        .matmul(q.view(format), rows, cols, x, &mut c)
        .map_err(|e| e.to_string())?;
    let mut deq = vec![0f32; rows * cols];
    CpuBackend
        .dequantize(q.view(format), &mut deq)
        .map_err(|e| e.to_string())?;
    for t in 0..tokens {
        for r in 0..rows {
            let mag: f64 = deq[r * cols..(r + 1) * cols]
                .iter()
                .zip(&x[t * cols..(t + 1) * cols])
                .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                .sum();
            let (gv, cv) = (f64::from(g[t * rows + r]), f64::from(c[t * rows + r]));
            if (gv - cv).abs() > TOL * mag + 1e-30 {
                return Err(format!(
                    "{format:?} {rows}×{cols}, token {t} row {r}: GPU {gv}, reference {cv}, Σ|w·x| {mag}"
                ));
            }
        }
    }
    Ok(())
}

fn matmul_case() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>)> {
    (1usize..40, 1usize..12, 1usize..5, any::<u64>()).prop_map(|(rows, blocks, tokens, seed)| {
        let cols = blocks * 64;
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        };
        let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let x: Vec<f32> = (0..tokens * cols).map(|_| next()).collect();
        (rows, cols, tokens, w, x)
    })
}

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
