//! What every device's kernels are checked with: the CPU reference, edge values and random
//! inputs, and the comparisons (bit-identical dequantization, byte-identical quantization, a
//! stated tolerance for mat-mul). Shared by the WGSL tests and the CUDA emulation harness.
#![allow(dead_code)] // each test file uses a different subset

use ggufy_gpu::{Backend, CpuBackend, Format, Quantized};
use proptest::prelude::*;

/// f16 bit patterns a scale may hold, the awkward ones first.
pub const EDGE_F16: [u16; 10] = [
    0x0000, 0x8000, 0x0001, 0x83ff, 0x0400, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00,
];

/// Same bits, or both NaN (payloads are not data), or — the one freedom WGSL gives a device — a
/// subnormal CPU result flushed to a zero of the same sign. (lavapipe keeps subnormals.)
pub fn same(a: &[f32], b: &[f32]) -> Result<(), String> {
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

pub fn check(gpu: &dyn Backend, src: Quantized<'_>) -> Result<(), String> {
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
pub fn legacy_blocks(block: usize) -> impl Strategy<Value = Vec<u8>> {
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

/// f32 bit patterns worth hitting: zeros, subnormals, the normal range's ends, infinities, NaN,
/// rounding ties, the int range's edge.
pub const EDGE_F32: [u32; 22] = [
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
pub fn c_int(v: f32) -> i32 {
    if v.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    }
}

pub fn same_f32(x: u32, y: u32) -> bool {
    x == y || (f32::from_bits(x).is_nan() && f32::from_bits(y).is_nan())
}

pub fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -3.0f32..3.0,
        2 => -1e-3f32..1e-3,
        1 => proptest::sample::select(EDGE_F32.to_vec()).prop_map(f32::from_bits),
        1 => any::<u32>().prop_map(f32::from_bits),
        1 => -1e-38f32..1e-38,
    ]
}

/// Blocks of values, sometimes all tiny or all subnormal (where 1/d overflows).
pub fn blocks(block: usize) -> impl Strategy<Value = Vec<f32>> {
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

pub fn check_quantize(gpu: &dyn Backend, format: Format, x: &[f32]) -> Result<(), String> {
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

/// The stated tolerance: |GPU − reference| ≤ TOL · Σ_j |W[r][j] · x[t][j]|. The GPU adds in f32:
/// 32 products per block in sequence, one scale multiplication, at most cols/8192 block sums per
/// invocation and an 8-level tree — under 64 roundings of 2^-24 each for rows up to 64k values,
/// so 64 · 2^-24 ≈ 3.8e-6 bounds the error; the reference sums in f64.
pub const TOL: f64 = 64.0 / 16_777_216.0;

pub fn check_matmul(
    gpu: &dyn Backend,
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
    // The same matrix kept on the device gives the same bits.
    let mut resident = vec![0f32; rows * tokens];
    gpu.upload(q.view(format), rows, cols)
        .and_then(|m| m.matmul(x, &mut resident))
        .map_err(|e| e.to_string())?;
    if resident
        .iter()
        .zip(&g)
        .any(|(a, b)| a.to_bits() != b.to_bits())
    {
        return Err(format!(
            "{format:?}: the uploaded matrix multiplies differently"
        ));
    }
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

pub fn matmul_case() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>)> {
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
