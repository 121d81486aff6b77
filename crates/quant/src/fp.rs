//! Float conversions with ggml's exact rounding, so F16/BF16 outputs are bit-identical to ggml's.

/// f32 → IEEE half, round-to-nearest-even, overflow to infinity, subnormals kept; every NaN
/// becomes the quiet NaN 0x7E00 with its sign, as ggml's `GGML_FP32_TO_FP16` does.
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    if x.is_nan() {
        return ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7E00;
    }
    half::f16::from_f32(x).to_bits()
}

/// IEEE half → f32 (exact).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// f32 → bfloat16 as ggml does it: round-to-nearest-even on the top 16 bits, subnormals kept,
/// NaN made quiet (bit 6 of the result set).
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u as u64 + 0x7fff + ((u >> 16) & 1) as u64) >> 16) as u16
}

/// bfloat16 → f32 (exact).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Reads a little-endian u16 at `at`.
#[inline]
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Reads a little-endian f16 at `at` as f32.
#[inline]
pub(crate) fn half_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(le16(b, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_edges() {
        assert_eq!(f32_to_f16(0.0), 0);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        assert_eq!(f32_to_f16(65504.0), 0x7BFF);
        assert_eq!(f32_to_f16(65520.0), 0x7C00); // rounds to +inf
        assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xFC00);
        assert_eq!(f32_to_f16(f32::NAN), 0x7E00);
        assert_eq!(f32_to_f16(-f32::NAN), 0xFE00);
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001); // smallest subnormal
        assert_eq!(f32_to_f16(2.980_232_2e-8), 0x0000); // tie to even: down to zero
        assert_eq!(f16_to_f32(0x3C00), 1.0);
    }

    #[test]
    fn bf16_edges() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80); // tie to even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80); // overflows to inf, as ggml does
        assert_eq!(f32_to_bf16(f32::from_bits(1)), 0x0000); // subnormal rounds, not flushed
        assert_eq!(bf16_to_f32(0xC000), -2.0);
    }
}
