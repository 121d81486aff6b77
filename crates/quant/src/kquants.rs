//! 256-element super-block formats: Q6_K quantization (ggml's `quantize_row_q6_K_ref`, which
//! llama-quantize uses without an imatrix), and dequantization of Q2_K..Q6_K, IQ4_NL, IQ4_XS,
//! TQ1_0, TQ2_0 and MXFP4, each following ggml's arithmetic order so results are bit-identical.

use crate::fp::{f32_to_f16, half_at};

/// Elements per super-block.
pub const QK_K: usize = 256;
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round half to even through the 1.5·2^23 trick (exact for |x| < 2^22).
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007F_FFFF) as i32 - 0x0040_0000
}

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights: a symmetric scale
/// chosen by weighted least squares over 19 trial scales. `l` receives values in 0..2·nmax.
fn make_qx_quants_rmse1(x: &[f32], nmax: i32, l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (li, &v) in l.iter_mut().zip(x) {
        let q = quant(iscale, v);
        *li = (q + nmax) as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let q = quant(iscale, v);
            let w = v * v;
            sumlx += w * v * q as f32;
            suml2 += w * q as f32 * q as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// One Q6_K block (210 bytes): ql[128], qh[64], scales[16] (i8), f16 d last.
pub fn quantize_block_q6_k(x: &[f32], out: &mut [u8], level: crate::simd::Level) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    if !crate::simd::q6_k_subblocks(x, &mut l, &mut scales, level) {
        for ib in 0..QK_K / 16 {
            scales[ib] =
                make_qx_quants_rmse1(&x[16 * ib..16 * ib + 16], 32, &mut l[16 * ib..16 * ib + 16]);
        }
    }
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for &s in &scales {
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    out.fill(0);
    if max_abs_scale < GROUP_MAX_EPS {
        return; // all-zero block, d = +0
    }
    let iscale = -128.0 / max_scale;
    let d16 = f32_to_f16(1.0 / iscale);
    out[208..210].copy_from_slice(&d16.to_le_bytes());
    let d_all = crate::fp::f16_to_f32(d16);
    let (ql, rest) = out.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
    let sc = &mut rest[..16];
    for ib in 0..QK_K / 16 {
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    for j in 0..QK_K / 16 {
        let d = d_all * sc[j] as i8 as f32;
        if d == 0.0 {
            continue; // keeps make_qx_quants' values, as ggml does
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
            l[16 * j + ii] = (q + 32) as i8;
        }
    }
    for half in 0..2 {
        let (l, ql, qh) = (&l[128 * half..], &mut ql[64 * half..], &mut qh[32 * half..]);
        for i in 0..32 {
            let q = [
                l[i] as u8,
                l[i + 32] as u8,
                l[i + 64] as u8,
                l[i + 96] as u8,
            ];
            ql[i] = (q[0] & 0xF) | ((q[2] & 0xF) << 4);
            ql[i + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4);
            qh[i] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
}

/// Dequantizes one Q6_K block.
pub fn dequantize_block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..];
        let qh = &b[128 + 32 * half..];
        let sc = &b[192 + 8 * half..];
        let y = &mut y[128 * half..];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * sc[is] as i8 as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}

/// Dequantizes one Q2_K block (scales[16], qs[64], d, dmin).
pub fn dequantize_block_q2_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (half_at(b, 80), half_at(b, 82));
    let mut out = 0;
    let mut is = 0;
    for n in 0..2 {
        let q = &b[16 + 32 * n..];
        for shift in [0, 2, 4, 6] {
            for off in [0, 16] {
                let sc = b[is];
                is += 1;
                let dl = d * (sc & 0xF) as f32;
                let ml = min * (sc >> 4) as f32;
                for l in 0..16 {
                    y[out] = dl * ((q[l + off] >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// Dequantizes one Q3_K block (hmask[32], qs[64], scales[12], d).
pub fn dequantize_block_q3_k(b: &[u8], y: &mut [f32]) {
    let d_all = half_at(b, 108);
    let hm = &b[..32];
    let raw = &b[96..108];
    let aux =
        |i: usize| u32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]);
    let (a0, a1, tmp) = (aux(0), aux(1), aux(2));
    let (k1, k2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let words = [
        (a0 & k2) | ((tmp & k1) << 4),
        (a1 & k2) | (((tmp >> 2) & k1) << 4),
        ((a0 >> 4) & k2) | (((tmp >> 4) & k1) << 4),
        ((a1 >> 4) & k2) | (((tmp >> 6) & k1) << 4),
    ];
    let mut scales = [0i8; 16];
    for (i, w) in words.iter().enumerate() {
        for (k, byte) in w.to_le_bytes().iter().enumerate() {
            scales[4 * i + k] = *byte as i8;
        }
    }
    let mut out = 0;
    let mut is = 0;
    let mut m = 1u8;
    for n in 0..2 {
        let q = &b[32 + 32 * n..];
        for shift in [0, 2, 4, 6] {
            for off in [0, 16] {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 0..16 {
                    let low = ((q[l + off] >> shift) & 3) as i32;
                    let sub = if hm[l + off] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - sub) as f32;
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// The 6-bit scale and minimum of sub-block `j` in Q4_K/Q5_K's packed 12 bytes.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Scale and offset of the two 32-element sub-blocks of 64-element chunk `c` (Q4_K, Q5_K).
#[inline(always)]
fn chunk_scales(c: usize, scales: &[u8], d: f32, min: f32) -> [(f32, f32); 2] {
    [2 * c, 2 * c + 1].map(|j| {
        let (sc, m) = scale_min_k4(j, scales);
        (d * sc as f32, min * m as f32)
    })
}

/// Dequantizes one Q4_K block (d, dmin, scales[12], qs[128]).
pub fn dequantize_block_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    for c in 0..4 {
        let q = &b[16 + 32 * c..];
        let [(d1, m1), (d2, m2)] = chunk_scales(c, scales, d, min);
        let y = &mut y[64 * c..];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0xF) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Dequantizes one Q5_K block (d, dmin, scales[12], qh[32], qs[128]).
pub fn dequantize_block_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    for c in 0..4 {
        let ql = &b[48 + 32 * c..];
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let [(d1, m1), (d2, m2)] = chunk_scales(c, scales, d, min);
        let y = &mut y[64 * c..];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((ql[l] & 0xF) + h1) as f32 - m1;
            y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// IQ4_NL's non-linear codebook (ggml `kvalues_iq4nl`).
const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Dequantizes one IQ4_NL block (32 elements: f16 d, 16 bytes of codebook indices).
pub fn dequantize_block_iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for j in 0..16 {
        y[j] = d * KVALUES_IQ4NL[(b[2 + j] & 0xF) as usize] as f32;
        y[j + 16] = d * KVALUES_IQ4NL[(b[2 + j] >> 4) as usize] as f32;
    }
}

/// Dequantizes one IQ4_XS block (d, scales_h u16, scales_l[4], qs[128]).
pub fn dequantize_block_iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let scales_h = crate::fp::le16(b, 2);
    for ib in 0..8 {
        let ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) as i32
            | ((((scales_h >> (2 * ib)) & 3) as i32) << 4);
        let dl = d * (ls - 32) as f32;
        let qs = &b[8 + 16 * ib..];
        let y = &mut y[32 * ib..];
        for j in 0..16 {
            y[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as f32;
            y[j + 16] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
        }
    }
}

/// Dequantizes one TQ2_0 block (qs[64] of 2-bit ternaries, f16 d last).
pub fn dequantize_block_tq2_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 64);
    let mut out = 0;
    for j in (0..64).step_by(32) {
        for l in 0..4 {
            for m in 0..32 {
                let q = ((b[j + m] >> (2 * l)) & 3) as i32;
                y[out] = (q - 1) as f32 * d;
                out += 1;
            }
        }
    }
}

/// Dequantizes one TQ1_0 block (qs[48] and qh[4] of base-3 packed ternaries, f16 d last).
pub fn dequantize_block_tq1_0(b: &[u8], y: &mut [f32]) {
    const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
    let d = half_at(b, 52);
    let trit =
        |byte: u8, n: usize| ((((byte.wrapping_mul(POW3[n])) as u16 * 3) >> 8) as i32 - 1) as f32;
    // Five trits per byte of qs (first 32 bytes, then 16), four per byte of qh, in that order.
    let groups = (0..5)
        .flat_map(|n| b[..32].iter().map(move |&q| (q, n)))
        .chain((0..5).flat_map(|n| b[32..48].iter().map(move |&q| (q, n))))
        .chain((0..4).flat_map(|n| b[48..52].iter().map(move |&q| (q, n))));
    for (yi, (q, n)) in y.iter_mut().zip(groups) {
        *yi = trit(q, n) * d;
    }
}

/// Dequantizes one MXFP4 block (32 elements: E8M0 exponent, 16 bytes of E2M1 nibbles).
pub fn dequantize_block_mxfp4(b: &[u8], y: &mut [f32]) {
    const VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];
    let e = b[0];
    // Half the E8M0 scale, because the table holds doubled E2M1 values.
    let d = f32::from_bits(if e < 2 {
        0x0020_0000 << e
    } else {
        ((e - 1) as u32) << 23
    });
    for j in 0..16 {
        y[j] = VALUES[(b[1 + j] & 0xF) as usize] as f32 * d;
        y[j + 16] = VALUES[(b[1 + j] >> 4) as usize] as f32 * d;
    }
}
