//! NF4, QLoRA's 4-bit NormalFloat (bitsandbytes `quant_type="nf4"`): 16 normal-distribution
//! quantiles on [-1, 1], one f32 absmax per block of 64, codes packed two per byte with the
//! first element in the high nibble (bitsandbytes' order, the opposite of ggml's).
//!
//! NF4 is not a ggml type. How ggufy stores it in GGUF files is in `docs/nf4.md`.

/// Elements per block (bitsandbytes' default `blocksize`).
pub const NF4_BLOCK: usize = 64;

/// The codebook (bitsandbytes `get_4bit_type("nf4")`), ascending; code 7 is exactly zero.
// Transcribed digit for digit from bitsandbytes; it stores them as f32 too.
#[allow(clippy::excessive_precision)]
pub const NF4_CODEBOOK: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_430_228_233_34,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

/// Midpoints between consecutive codes, as bitsandbytes' `dQuantizeNF4` compares them: a value
/// exactly on a midpoint takes the lower code. (Public so GPU kernels can be checked against it.)
#[allow(clippy::excessive_precision)]
pub const NF4_THRESHOLDS: [f32; 15] = [
    -0.848_096_4,
    -0.610_632_9,
    -0.459_995_27,
    -0.339_679_43,
    -0.234_607_4,
    -0.137_911_73,
    -0.045_525_018,
    0.039_790_15,
    0.120_255_25,
    0.203_521_25,
    0.292_013_77,
    0.389_312_54,
    0.501_663_4,
    0.642_786_9,
    0.861_478_4,
];

/// The code of a value already scaled into [-1, 1].
#[inline(always)]
fn code(s: f32) -> u8 {
    NF4_THRESHOLDS.iter().filter(|&&t| s > t).count() as u8
}

/// Quantizes `x` (a multiple of [`NF4_BLOCK`] elements) into `codes` (`x.len() / 2` bytes) and
/// one absmax per block.
pub fn quantize_nf4(x: &[f32], codes: &mut [u8], absmax: &mut [f32]) {
    for ((xb, cb), am) in x
        .chunks_exact(NF4_BLOCK)
        .zip(codes.chunks_exact_mut(NF4_BLOCK / 2))
        .zip(absmax.iter_mut())
    {
        let m = xb.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        *am = m;
        // bitsandbytes' default backend clamps the divisor so an all-zero block codes to zero.
        let inv = 1.0 / m.max(1e-38);
        for (c, pair) in cb.iter_mut().zip(xb.chunks_exact(2)) {
            let s0 = (pair[0] * inv).clamp(-1.0, 1.0);
            let s1 = (pair[1] * inv).clamp(-1.0, 1.0);
            *c = (code(s0) << 4) | code(s1);
        }
    }
}

/// Decodes NF4 codes and per-block absmax back to f32 (`code · absmax`, computed in f32).
pub fn dequantize_nf4(codes: &[u8], absmax: &[f32], y: &mut [f32]) {
    for ((yb, cb), &am) in y
        .chunks_exact_mut(NF4_BLOCK)
        .zip(codes.chunks_exact(NF4_BLOCK / 2))
        .zip(absmax)
    {
        for (pair, &c) in yb.chunks_exact_mut(2).zip(cb) {
            pair[0] = NF4_CODEBOOK[(c >> 4) as usize] * am;
            pair[1] = NF4_CODEBOOK[(c & 0xF) as usize] * am;
        }
    }
}

/// One NF4 row (`codes`, and its blocks' absmax as little-endian f32 bytes) · `x`: each weight
/// decoded as `codebook[code] · absmax`, the products summed in eight lanes (element `i` into
/// lane `i mod 8`, a multiply then an add) and the lanes combined as
/// `((l0+l4) + (l1+l5)) + ((l2+l6) + (l3+l7))`. The reference every NF4 kernel equals bit for
/// bit: the runner's result for NF4 weights (decoding the row, then an eight-lane dot).
pub fn dot_nf4(codes: &[u8], absmax: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for ((cb, am), xb) in codes
        .chunks_exact(NF4_BLOCK / 2)
        .zip(absmax.chunks_exact(4))
        .zip(x.chunks_exact(NF4_BLOCK))
    {
        let am = f32::from_le_bytes([am[0], am[1], am[2], am[3]]);
        for (c4, x8) in cb.chunks_exact(4).zip(xb.chunks_exact(8)) {
            for (k, &c) in c4.iter().enumerate() {
                acc[2 * k] += (NF4_CODEBOOK[(c >> 4) as usize] * am) * x8[2 * k];
                acc[2 * k + 1] += (NF4_CODEBOOK[(c & 0xF) as usize] * am) * x8[2 * k + 1];
            }
        }
    }
    crate::dot::sum_lanes8(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_the_codebook_midpoints() {
        for (i, t) in NF4_THRESHOLDS.iter().enumerate() {
            let mid = (f64::from(NF4_CODEBOOK[i]) + f64::from(NF4_CODEBOOK[i + 1])) / 2.0;
            assert!((f64::from(*t) - mid).abs() < 1e-7, "{i}: {t} vs {mid}");
        }
    }

    #[test]
    fn codes_round_trip_and_ties_go_down() {
        // Each codebook value at absmax 1 encodes to itself.
        let mut x = [0.0f32; NF4_BLOCK];
        for (i, v) in x.iter_mut().enumerate() {
            *v = NF4_CODEBOOK[i % 16];
        }
        let (mut c, mut a) = ([0u8; 32], [0.0f32; 1]);
        quantize_nf4(&x, &mut c, &mut a);
        assert_eq!(a[0], 1.0);
        for i in 0..NF4_BLOCK {
            let q = if i % 2 == 0 {
                c[i / 2] >> 4
            } else {
                c[i / 2] & 0xF
            };
            assert_eq!(q as usize, i % 16);
        }
        let mut y = [0.0f32; NF4_BLOCK];
        dequantize_nf4(&c, &a, &mut y);
        assert_eq!(x, y);
        // A value exactly on a threshold takes the lower code.
        x.fill(0.0);
        x[0] = 1.0;
        x[1] = NF4_THRESHOLDS[7];
        x[2] = f32::from_bits(NF4_THRESHOLDS[7].to_bits() + 1);
        quantize_nf4(&x, &mut c, &mut a);
        assert_eq!((c[0] >> 4, c[0] & 0xF, c[1] >> 4), (15, 7, 8));
    }

    #[test]
    fn zero_block_is_zero() {
        let x = [0.0f32; NF4_BLOCK];
        let (mut c, mut a) = ([0xFFu8; 32], [1.0f32; 1]);
        quantize_nf4(&x, &mut c, &mut a);
        assert_eq!(a[0], 0.0);
        assert!(c.iter().all(|&b| b == 0x77), "code 7 is zero");
    }
}
