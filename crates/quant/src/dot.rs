//! The block-format trait and the dot products a CPU matmul needs: weights stay in their format,
//! the activation row is quantized to the partner format ggml pairs with it (Q8_0 for Q4_0, Q5_0
//! and Q8_0; Q8_1 for Q4_1 and Q5_1; Q8_K for the K-quants), and the dot runs on integers per
//! block. These are the scalar references that define ggufy's results; the vector kernels in
//! [`crate::matvec`] are tested bit-identical to them.
//!
//! The order of the float operations follows what llama.cpp runs on x86-64, so that greedy
//! decoding agrees with it even at near-ties: activations are quantized as ggml-cpu's x86 code
//! does; Q8_0 and Q4_0 sum each block exactly in integers and accumulate `isum · (dw·da)` block
//! after block with one fused multiply-add (ggml's AMX/VNNI and repacked-Q4_0 kernels); F16 rows
//! accumulate in ggml's 4 × 16 lanes and reduce as its AVX-512 `ggml_vec_dot_f16` does.

use ggufy_gguf::GgmlType;

use crate::fp::{f32_to_f16, half_at};
use crate::{QuantError, Rounding, check, dequantize_row, quantize_row};

/// An activation format: what the other operand of a dot product is quantized to.
pub trait ActivationFormat {
    /// The ggml type (Q8_0, Q8_1 or Q8_K).
    const TYPE: GgmlType;
    /// Quantizes one row (whole blocks) into `out` (exactly the row's size), bit-identical to
    /// ggml's `quantize_row_*_ref`.
    fn quantize_row(x: &[f32], out: &mut [u8]) -> Result<(), QuantError>;
}

/// A weight format: layout, conversion both ways, and the dot product with its activation format.
pub trait BlockFormat {
    /// The ggml type.
    const TYPE: GgmlType;
    /// The activation format ggml pairs with it (its `vec_dot_type`).
    type Activation: ActivationFormat;

    /// Quantizes one row (whole blocks) into `out` (exactly the row's size).
    fn quantize_row(x: &[f32], out: &mut [u8], rounding: Rounding) -> Result<(), QuantError> {
        quantize_row(Self::TYPE, x, out, rounding)
    }

    /// Decodes one row.
    fn dequantize_row(b: &[u8], y: &mut [f32]) -> Result<(), QuantError> {
        dequantize_row(Self::TYPE, b, y)
    }

    /// Dot product of a weight row and an activation row of `n` elements each.
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> Result<f32, QuantError> {
        check(Self::TYPE, n, w.len())?;
        check(Self::Activation::TYPE, n, a.len())?;
        Ok(Self::vec_dot_blocks(w, a))
    }

    /// The dot product over whole, size-checked blocks.
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32;
}

/// Q8_0 as an activation format.
#[derive(Debug)]
pub struct ActQ8_0;
/// Q8_1: Q8_0 plus `s = d·Σq`, the partner of the formats with a minimum.
#[derive(Debug)]
pub struct ActQ8_1;
/// Q8_K: f32 scale, 256 codes and 16 partial sums, the partner of the K-quants.
#[derive(Debug)]
#[allow(non_camel_case_types)] // ggml's type name
pub struct ActQ8_K;

impl ActivationFormat for ActQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    fn quantize_row(x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
        quantize_q8_0_activation(x, out, crate::simd::level())
    }
}

/// [`ActQ8_0::quantize_row`] at a given vector level; every level gives the same bytes (the
/// tests compare them).
pub fn quantize_q8_0_activation(
    x: &[f32],
    out: &mut [u8],
    level: crate::simd::Level,
) -> Result<(), QuantError> {
    check(GgmlType::Q8_0, x.len(), out.len())?;
    #[cfg(target_arch = "x86_64")]
    if level == crate::simd::Level::Avx2 && crate::simd::level() == crate::simd::Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen on CPUs with AVX2 (and so SSE4.1).
        unsafe { q8_0_activation_avx2(x, out) };
        return Ok(());
    }
    let _ = level;
    q8_0_activation::<false>(x, out);
    Ok(())
}

/// Q8_0 activation blocks, rounding with the CPU's rounding instruction (`ROUND`) or without.
#[inline(always)]
fn q8_0_activation<const ROUND: bool>(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(34)) {
        let (d, _) = quantize_activation_block::<ROUND>(xb, &mut ob[2..]);
        ob[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    }
}

/// [`q8_0_activation`] compiled for AVX2, where rounding is one instruction and the blocks
/// vectorize: the activation of every product is quantized on one thread, and the scalar code
/// took ~3 ns a value (9 µs of every 2048-wide product). The bytes are the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,sse4.1")]
unsafe fn q8_0_activation_avx2(x: &[f32], out: &mut [u8]) {
    q8_0_activation::<true>(x, out);
}

/// Each block's code sum and scale (as f32) of a Q8_0 activation row: what the VNNI kernels
/// need from every activation block besides its codes (unsigned weight codes make `vpdpbusd`
/// add `k·Σy`, which they subtract). Worked out once per product rather than in every chunk
/// of rows: at 16 threads a product is cut into dozens of chunks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockSums {
    sums: Vec<i32>,
    scales: Vec<f32>,
}

impl BlockSums {
    /// The sums and scales of the whole Q8_0 blocks in `a`.
    pub fn of_q8_0(a: &[u8]) -> BlockSums {
        let blocks = a.chunks_exact(34);
        BlockSums {
            sums: blocks
                .clone()
                .map(|y| y[2..].iter().map(|&q| i32::from(q as i8)).sum())
                .collect(),
            scales: blocks.map(|y| half_at(y, 0)).collect(),
        }
    }

    /// How many blocks.
    pub fn blocks(&self) -> usize {
        self.sums.len()
    }

    /// Block `b`'s code sum.
    #[inline(always)]
    pub fn sum(&self, b: usize) -> i32 {
        self.sums[b]
    }

    /// Block `b`'s scale.
    #[inline(always)]
    pub fn scale(&self, b: usize) -> f32 {
        self.scales[b]
    }
}

impl ActivationFormat for ActQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    fn quantize_row(x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
        check(Self::TYPE, x.len(), out.len())?;
        for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(36)) {
            let (d, sum) = quantize_activation_block::<false>(xb, &mut ob[4..]);
            ob[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            ob[2..4].copy_from_slice(&f32_to_f16(sum as f32 * d).to_le_bytes());
        }
        Ok(())
    }
}

/// One block of 32 activations to signed bytes the way ggml's CPU backend does it on x86-64
/// (`quantize_row_q8_0`/`_q8_1` in ggml-cpu's x86 code, what llama.cpp actually runs): multiply
/// by 127/amax and round half to even. The `_ref` functions divide by d = amax/127 and round half
/// away from zero instead, which moves a few codes per row by one, enough to flip a near-tie in
/// greedy decoding. Edge cases follow the vector code too: amax is found with `maxps`'s NaN rule
/// in its lane order, and a product that is NaN or out of range (a subnormal amax makes 127/amax
/// infinite) becomes -128. Returns d and the sum of the codes. `ROUND`: round with
/// `round_ties_even` throughout (one instruction where SSE4.1 is enabled; a library call
/// without), else through the float's mantissa bits where the value is small; the same codes.
#[inline(always)]
fn quantize_activation_block<const ROUND: bool>(xb: &[f32], qs: &mut [u8]) -> (f32, i32) {
    // `maxps(a, b)`: a if a > b, else b (so b when either is NaN).
    let maxps = |a: f32, b: f32| if a > b { a } else { b };
    let mut m = [0f32; 8];
    for (l, ml) in m.iter_mut().enumerate() {
        let mut v = xb[l].abs();
        for k in 1..4 {
            v = maxps(v, xb[8 * k + l].abs());
        }
        *ml = v;
    }
    let h = [
        maxps(m[4], m[0]),
        maxps(m[5], m[1]),
        maxps(m[6], m[2]),
        maxps(m[7], m[3]),
    ];
    let q = [maxps(h[0], h[2]), maxps(h[1], h[3])];
    let amax = maxps(q[0], q[1]);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (o, &v) in qs.iter_mut().zip(xb) {
        let p = v * id;
        // cvtps2dq with round-half-even gives i32::MIN for NaN and out-of-range values; packs
        // then saturate. Q8_1's sum is taken (wrapping) over the unsaturated integers, as
        // ggml's is. The common case rounds through the float's mantissa bits: no libm call
        // (x86-64's baseline has no rounding instruction).
        let wide = if ROUND {
            let r = p.round_ties_even();
            if (-2147483648.0..2147483648.0).contains(&r) {
                r as i32
            } else {
                i32::MIN
            }
        } else if p.abs() < 4_194_304.0 {
            crate::kquants::nearest_int(p)
        } else {
            let r = p.round_ties_even();
            if r.is_nan() || !(-2147483648.0..2147483648.0).contains(&r) {
                i32::MIN
            } else {
                r as i32
            }
        };
        *o = wide.clamp(-128, 127) as i8 as u8;
        sum = sum.wrapping_add(wide);
    }
    (d, sum)
}

impl ActivationFormat for ActQ8_K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    fn quantize_row(x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
        check(Self::TYPE, x.len(), out.len())?;
        for (xb, ob) in x.chunks_exact(256).zip(out.chunks_exact_mut(292)) {
            let (mut max, mut amax) = (0.0f32, 0.0f32);
            for &v in xb {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            ob.fill(0);
            if amax == 0.0 {
                continue;
            }
            let iscale = -127.0 / max;
            for (o, &v) in ob[4..260].iter_mut().zip(xb) {
                *o = crate::kquants::nearest_int(iscale * v).min(127) as i8 as u8;
            }
            for j in 0..16 {
                let sum: i32 = ob[4 + 16 * j..4 + 16 * j + 16]
                    .iter()
                    .map(|&q| i32::from(q as i8))
                    .sum();
                ob[260 + 2 * j..262 + 2 * j].copy_from_slice(&(sum as i16).to_le_bytes());
            }
            ob[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        }
        Ok(())
    }
}

/// Q8_0 weights.
#[derive(Debug)]
pub struct BlockQ8_0;
/// Q4_0 weights.
#[derive(Debug)]
pub struct BlockQ4_0;
/// Q4_1 weights.
#[derive(Debug)]
pub struct BlockQ4_1;
/// Q5_0 weights.
#[derive(Debug)]
pub struct BlockQ5_0;
/// Q5_1 weights.
#[derive(Debug)]
pub struct BlockQ5_1;
/// Q6_K weights.
#[derive(Debug)]
#[allow(non_camel_case_types)] // ggml's type name
pub struct BlockQ6_K;
/// Q4_K weights.
#[derive(Debug)]
#[allow(non_camel_case_types)] // ggml's type name
pub struct BlockQ4_K;
/// Q5_K weights.
#[derive(Debug)]
#[allow(non_camel_case_types)] // ggml's type name
pub struct BlockQ5_K;

#[inline(always)]
fn i8s(b: &[u8]) -> impl Iterator<Item = i32> + '_ {
    b.iter().map(|&q| i32::from(q as i8))
}

/// 4- or 5-bit codes of a legacy block, in element order (low nibbles then high nibbles).
#[inline(always)]
fn codes(qs: &[u8], qh: Option<u32>) -> [i32; 32] {
    let mut q = [0i32; 32];
    for j in 0..16 {
        q[j] = i32::from(qs[j] & 0xF);
        q[j + 16] = i32::from(qs[j] >> 4);
        if let Some(h) = qh {
            q[j] |= (((h >> j) & 1) << 4) as i32;
            q[j + 16] |= (((h >> (j + 16)) & 1) << 4) as i32;
        }
    }
    q
}

#[inline(always)]
fn idot(q: &[i32; 32], offset: i32, y: &[u8]) -> i32 {
    q.iter().zip(i8s(y)).map(|(&a, b)| (a - offset) * b).sum()
}

impl BlockFormat for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    type Activation = ActQ8_0;
    #[inline]
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (x, y) in w.chunks_exact(34).zip(a.chunks_exact(34)) {
            let sumi: i32 = i8s(&x[2..]).zip(i8s(&y[2..])).map(|(p, q)| p * q).sum();
            sum = (sumi as f32).mul_add(half_at(x, 0) * half_at(y, 0), sum);
        }
        sum
    }
}

impl BlockFormat for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    type Activation = ActQ8_0;
    #[inline]
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (x, y) in w.chunks_exact(18).zip(a.chunks_exact(34)) {
            let sumi = idot(&codes(&x[2..18], None), 8, &y[2..]);
            sum = (sumi as f32).mul_add(half_at(x, 0) * half_at(y, 0), sum);
        }
        sum
    }
}

impl BlockFormat for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    type Activation = ActQ8_0;
    #[inline]
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (x, y) in w.chunks_exact(22).zip(a.chunks_exact(34)) {
            let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
            let sumi = idot(&codes(&x[6..22], Some(qh)), 16, &y[2..]);
            sum += sumi as f32 * (half_at(x, 0) * half_at(y, 0));
        }
        sum
    }
}

impl BlockFormat for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    type Activation = ActQ8_1;
    #[inline]
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (x, y) in w.chunks_exact(20).zip(a.chunks_exact(36)) {
            let sumi = idot(&codes(&x[4..20], None), 0, &y[4..]);
            sum += (half_at(x, 0) * half_at(y, 0)) * sumi as f32 + half_at(x, 2) * half_at(y, 2);
        }
        sum
    }
}

impl BlockFormat for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    type Activation = ActQ8_1;
    #[inline]
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (x, y) in w.chunks_exact(24).zip(a.chunks_exact(36)) {
            let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
            let sumi = idot(&codes(&x[8..24], Some(qh)), 0, &y[4..]);
            sum += (half_at(x, 0) * half_at(y, 0)) * sumi as f32 + half_at(x, 2) * half_at(y, 2);
        }
        sum
    }
}

impl BlockFormat for BlockQ6_K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    type Activation = ActQ8_K;
    #[inline]
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (x, y) in w.chunks_exact(210).zip(a.chunks_exact(292)) {
            // Unpack the 6-bit codes in element order, then one integer dot per 16-element scale.
            let mut q = [0i32; 256];
            for half in 0..2 {
                let (ql, qh) = (&x[64 * half..], &x[128 + 32 * half..]);
                let q = &mut q[128 * half..];
                for l in 0..32 {
                    q[l] = i32::from((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                    q[l + 32] = i32::from((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    q[l + 64] = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    q[l + 96] = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                }
            }
            let d = half_at(x, 208) * f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
            let mut isum = 0i32;
            for (j, qs) in q.chunks_exact(16).enumerate() {
                let sc = i32::from(x[192 + j] as i8);
                let dot: i32 = qs
                    .iter()
                    .zip(i8s(&y[4 + 16 * j..4 + 16 * j + 16]))
                    .map(|(&a, b)| a * b)
                    .sum();
                isum += sc * dot;
            }
            sum += d * isum as f32;
        }
        sum
    }
}

impl BlockFormat for BlockQ4_K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    type Activation = ActQ8_K;
    /// Per block, the exact integer sums Σ scale·q·y and Σ min·bsum, then
    /// `sum += d·dy·isum` and `sum -= dmin·dy·msum` (ggml sums in eight float lanes instead;
    /// the difference is rounding only).
    #[inline]
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (x, y) in w.chunks_exact(144).zip(a.chunks_exact(292)) {
            let (isum, msum) = q4_k_block_sums(x, y);
            let dy = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
            sum += half_at(x, 0) * dy * isum as f32;
            sum -= half_at(x, 2) * dy * msum as f32;
        }
        sum
    }
}

impl BlockFormat for BlockQ5_K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    type Activation = ActQ8_K;
    /// As [`BlockQ4_K`]'s, with the fifth bit of each code from `qh`.
    #[inline]
    fn vec_dot_blocks(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (x, y) in w.chunks_exact(176).zip(a.chunks_exact(292)) {
            let (isum, msum) = q5_k_block_sums(x, y);
            let dy = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
            sum += half_at(x, 0) * dy * isum as f32;
            sum -= half_at(x, 2) * dy * msum as f32;
        }
        sum
    }
}

/// One Q5_K block against one Q8_K block: Σ_j scale_j·Σ q·y and Σ_j min_j·bsum (exact).
#[inline]
pub(crate) fn q5_k_block_sums(x: &[u8], y: &[u8]) -> (i32, i32) {
    let scales = &x[4..16];
    let qh = &x[16..48];
    let mut isum = 0i32;
    for c in 0..4 {
        let q = &x[48 + 32 * c..80 + 32 * c];
        let (sc1, _) = crate::kquants::scale_min_k4(2 * c, scales);
        let (sc2, _) = crate::kquants::scale_min_k4(2 * c + 1, scales);
        let (lo, hi) = (&y[4 + 64 * c..36 + 64 * c], &y[36 + 64 * c..68 + 64 * c]);
        let code = |l: usize, high: bool| {
            let (nib, bit) = if high {
                (q[l] >> 4, (qh[l] >> (2 * c + 1)) & 1)
            } else {
                (q[l] & 0xF, (qh[l] >> (2 * c)) & 1)
            };
            i32::from(nib | (bit << 4))
        };
        let d1: i32 = i8s(lo).enumerate().map(|(l, b)| code(l, false) * b).sum();
        let d2: i32 = i8s(hi).enumerate().map(|(l, b)| code(l, true) * b).sum();
        isum += i32::from(sc1) * d1 + i32::from(sc2) * d2;
    }
    (isum, k_mins_sum(scales, y))
}

/// Σ_j min_j·bsum_j of a Q4_K/Q5_K block (its 12 packed scale bytes) against a Q8_K block:
/// each of the eight minimums covers two of the activation's sixteen 16-element sums (exact).
pub(crate) fn k_mins_sum(scales: &[u8], y: &[u8]) -> i32 {
    let bs = |k: usize| i32::from(i16::from_le_bytes([y[260 + 2 * k], y[261 + 2 * k]]));
    (0..8)
        .map(|j| i32::from(crate::kquants::scale_min_k4(j, scales).1) * (bs(2 * j) + bs(2 * j + 1)))
        .sum()
}

/// One Q4_K block against one Q8_K block: Σ_j scale_j·Σ q·y and Σ_j min_j·bsum (exact).
#[inline]
pub(crate) fn q4_k_block_sums(x: &[u8], y: &[u8]) -> (i32, i32) {
    let scales = &x[4..16];
    let mut isum = 0i32;
    for c in 0..4 {
        let q = &x[16 + 32 * c..48 + 32 * c];
        let (sc1, _) = crate::kquants::scale_min_k4(2 * c, scales);
        let (sc2, _) = crate::kquants::scale_min_k4(2 * c + 1, scales);
        let (lo, hi) = (&y[4 + 64 * c..36 + 64 * c], &y[36 + 64 * c..68 + 64 * c]);
        let d1: i32 = q
            .iter()
            .zip(i8s(lo))
            .map(|(&v, b)| i32::from(v & 0xF) * b)
            .sum();
        let d2: i32 = q
            .iter()
            .zip(i8s(hi))
            .map(|(&v, b)| i32::from(v >> 4) * b)
            .sum();
        isum += i32::from(sc1) * d1 + i32::from(sc2) * d2;
    }
    (isum, k_mins_sum(scales, y))
}

/// Eight lane sums combined as `((l0+l4) + (l1+l5)) + ((l2+l6) + (l3+l7))`: the fixed order of
/// the eight-lane float dots (the runner's f32 dot, NF4's), which every vector kernel keeps.
#[inline(always)]
pub fn sum_lanes8(l: [f32; 8]) -> f32 {
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// Dot product of a BF16 weight row (little-endian) with activations: eight lanes over the
/// whole steps of eight (each a product, then a sum), combined by [`sum_lanes8`], then the tail
/// added in order. The runner's BF16 order; the vector kernels keep it.
pub fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(w.len() / 2);
    let whole = n / 8 * 8;
    let weight = |i: usize| crate::fp::bf16_to_f32(u16::from_le_bytes([w[2 * i], w[2 * i + 1]]));
    let mut acc = [0f32; 8];
    for i in (0..whole).step_by(8) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += weight(i + k) * x[i + k];
        }
    }
    let mut s = sum_lanes8(acc);
    for (i, &xv) in x.iter().enumerate().take(n).skip(whole) {
        s += weight(i) * xv;
    }
    s
}

/// Dot product of an F16 weight row (little-endian halves) with activations that are already
/// f16 values (rounded through f16, as ggml converts them), in ggml's `ggml_vec_dot_f16` order for
/// AVX-512 builds: 4 accumulators of 16 lanes over steps of 64, reduced pairwise; a tail shorter
/// than 64 is added in f64 after the reduction. Each product of two f16 values is exact in f32,
/// so a fused and an unfused multiply-add give the same sums.
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(w.len() / 2);
    let whole = n / 64 * 64;
    let mut acc = [0f32; 64];
    for (wc, xc) in w[..2 * whole]
        .chunks_exact(128)
        .zip(x[..whole].chunks_exact(64))
    {
        for ((a, wb), &xv) in acc.iter_mut().zip(wc.chunks_exact(2)).zip(xc) {
            *a += crate::fp::f16_to_f32(u16::from_le_bytes([wb[0], wb[1]])) * xv;
        }
    }
    let mut sum = f64::from(reduce_f16_lanes(&acc));
    for (wb, &xv) in w[2 * whole..2 * n].chunks_exact(2).zip(&x[whole..n]) {
        sum += f64::from(crate::fp::f16_to_f32(u16::from_le_bytes([wb[0], wb[1]])) * xv);
    }
    sum as f32
}

/// ggml's reduction of its four 16-lane accumulators: `x0 += x2; x1 += x3; x0 += x1`, then the
/// 16 lanes halved three times and the last two added (GCC's `_mm512_reduce_add_ps`).
#[inline]
pub fn reduce_f16_lanes(acc: &[f32; 64]) -> f32 {
    let mut v = [0f32; 16];
    for (l, o) in v.iter_mut().enumerate() {
        *o = (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l]);
    }
    reduce16(&v)
}

/// Dot product of an F16 weight row with f16-valued activations in the order of llama.cpp's
/// batched F16 matmul (llamafile's tinyBLAS, used for two or more tokens when the row length is
/// a multiple of 16): one 16-lane accumulator over steps of 16, then GCC's
/// `_mm512_reduce_add_ps` tree. Rows not a multiple of 16 use [`dot_f16`], as llama.cpp does.
pub fn dot_f16_tiled(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(w.len() / 2);
    if !n.is_multiple_of(16) {
        return dot_f16(w, x);
    }
    let mut acc = [0f32; 16];
    for (wc, xc) in w[..2 * n].chunks_exact(32).zip(x[..n].chunks_exact(16)) {
        for ((a, wb), &xv) in acc.iter_mut().zip(wc.chunks_exact(2)).zip(xc) {
            *a += crate::fp::f16_to_f32(u16::from_le_bytes([wb[0], wb[1]])) * xv;
        }
    }
    reduce16(&acc)
}

/// GCC's `_mm512_reduce_add_ps`: halves added three times, then the last two lanes.
#[inline]
pub fn reduce16(a: &[f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for l in 0..8 {
        h[l] = a[l + 8] + a[l];
    }
    let q = [h[4] + h[0], h[5] + h[1], h[6] + h[2], h[7] + h[3]];
    (q[0] + q[2]) + (q[1] + q[3])
}
