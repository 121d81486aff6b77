//! The 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: reference quantizers that
//! reproduce ggml's `quantize_row_*_ref` byte for byte, and their dequantizers.

use crate::Rounding;
use crate::fp::{f32_to_f16, half_at};

/// Elements per block of every legacy format.
pub const QK: usize = 32;

/// `x * id + bias` rounded the way the chosen reference build rounds it.
#[inline(always)]
fn scaled(x: f32, id: f32, bias: f32, rounding: Rounding) -> f32 {
    match rounding {
        Rounding::Separate => x * id + bias,
        Rounding::Fused => x.mul_add(id, bias),
    }
}

/// The signed value of largest magnitude (first one wins ties), as the symmetric formats need.
#[inline(always)]
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// C's float → small-integer conversion as x86-64 ggml builds execute it: `cvttss2si` truncates
/// to 32 bits, giving 0x80000000 for NaN and out-of-range values, and the result is then cut to
/// 8 bits. Only reachable when `1/d` overflows (a block of subnormals); Rust's saturating `as`
/// would differ there, and bit-exactness with llama.cpp and gguf-py needs these bytes too.
#[inline(always)]
pub(crate) fn c_to_i8(v: f32) -> i8 {
    let wide = if v.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    };
    wide as i8
}

#[inline(always)]
fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// One Q4_0 block (18 bytes): f16 scale, 16 bytes of nibbles pairing element j with j+16.
pub fn quantize_block_q4_0(x: &[f32], out: &mut [u8], rounding: Rounding) {
    let d = signed_absmax(x) / -8.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for j in 0..QK / 2 {
        let lo = c_to_i8(scaled(x[j], id, 8.5, rounding)).min(15) as u8;
        let hi = c_to_i8(scaled(x[j + QK / 2], id, 8.5, rounding)).min(15) as u8;
        out[2 + j] = lo | (hi << 4);
    }
}

/// Dequantizes one Q4_0 block.
pub fn dequantize_block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for j in 0..QK / 2 {
        y[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + QK / 2] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// One Q4_1 block (20 bytes): f16 scale and minimum, 16 bytes of nibbles.
pub fn quantize_block_q4_1(x: &[f32], out: &mut [u8], rounding: Rounding) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    out[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
    for j in 0..QK / 2 {
        let lo = c_to_i8(scaled(x[j] - min, id, 0.5, rounding)).min(15) as u8;
        let hi = c_to_i8(scaled(x[j + QK / 2] - min, id, 0.5, rounding)).min(15) as u8;
        out[4 + j] = lo | (hi << 4);
    }
}

/// Dequantizes one Q4_1 block.
pub fn dequantize_block_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for j in 0..QK / 2 {
        y[j] = (b[4 + j] & 0x0F) as f32 * d + m;
        y[j + QK / 2] = (b[4 + j] >> 4) as f32 * d + m;
    }
}

/// Packs 32 five-bit values: low nibbles like Q4, fifth bits as a little-endian u32 (bit i ↔ element i).
#[inline(always)]
pub(crate) fn pack5(q: &[u8; QK], qh_out: &mut [u8], qs_out: &mut [u8]) {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (q[j], q[j + QK / 2]);
        qs_out[j] = (a & 0x0F) | ((b & 0x0F) << 4);
        qh |= (((a & 0x10) >> 4) as u32) << j;
        qh |= (((b & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    qh_out.copy_from_slice(&qh.to_le_bytes());
}

/// One Q5_0 block (22 bytes): f16 scale, 4 bytes of fifth bits, 16 bytes of nibbles.
pub fn quantize_block_q5_0(x: &[f32], out: &mut [u8], rounding: Rounding) {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    let mut q = [0u8; QK];
    for (qj, &xj) in q.iter_mut().zip(x) {
        *qj = c_to_i8(scaled(xj, id, 16.5, rounding)).min(31) as u8;
    }
    let (qh, qs) = out[2..].split_at_mut(4);
    pack5(&q, qh, qs);
}

/// Dequantizes one Q5_0 block.
pub fn dequantize_block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..QK / 2 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((b[6 + j] & 0x0F) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + QK / 2] = (((b[6 + j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

/// One Q5_1 block (24 bytes): f16 scale and minimum, fifth bits, nibbles.
pub fn quantize_block_q5_1(x: &[f32], out: &mut [u8], rounding: Rounding) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    out[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
    let mut q = [0u8; QK];
    for (qj, &xj) in q.iter_mut().zip(x) {
        // ggml does not clamp here; the value cannot exceed 31.5 before truncation.
        *qj = c_to_i8(scaled(xj - min, id, 0.5, rounding)) as u8;
    }
    let (qh, qs) = out[4..].split_at_mut(4);
    pack5(&q, qh, qs);
}

/// Dequantizes one Q5_1 block.
pub fn dequantize_block_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..QK / 2 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((b[8 + j] & 0x0F) as u32 | h0) as f32 * d + m;
        y[j + QK / 2] = ((b[8 + j] >> 4) as u32 | h1) as f32 * d + m;
    }
}

/// One Q8_0 block (34 bytes): f16 scale, 32 signed bytes rounded half away from zero.
pub fn quantize_block_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x
        .iter()
        .fold(0.0f32, |a, &v| if a > v.abs() { a } else { v.abs() });
    let d = amax / 127.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (o, &v) in out[2..2 + QK].iter_mut().zip(x) {
        *o = c_to_i8((v * id).round()) as u8;
    }
}

/// Dequantizes one Q8_0 block.
pub fn dequantize_block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (yj, &q) in y.iter_mut().zip(&b[2..2 + QK]) {
        *yj = q as i8 as f32 * d;
    }
}
