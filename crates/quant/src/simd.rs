//! SIMD paths chosen at run time. Each one produces exactly the scalar reference's bytes (tests
//! check this on random and edge rows); `GGUFY_FORCE_SCALAR=1` turns them all off for debugging.
//!
//! x86-64: F16C for f16 → f32 rows, AVX2 (+FMA for the fused mode) for Q8_0 and Q4_0. Other
//! formats and architectures use the scalar reference, which the compiler auto-vectorizes in part.

use std::sync::OnceLock;

use crate::Rounding;

/// Which vector instructions this process may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The scalar reference only.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
}

/// The level chosen once per process from the CPU and `GGUFY_FORCE_SCALAR`.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::env::var_os("GGUFY_FORCE_SCALAR").is_some_and(|v| !v.is_empty() && v != "0") {
            return Level::Scalar;
        }
        detect()
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        Level::Avx2
    } else {
        Level::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Scalar
}

/// f16 row → f32 row (`src` holds `dst.len()` little-endian halves).
pub fn f16_row_to_f32(src: &[u8], dst: &mut [f32], level: Level) {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports F16C and AVX2.
        unsafe { x86::f16_row_to_f32(src, dst) };
        return;
    }
    let _ = level;
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = crate::fp::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// Q8_0 blocks of `x` into `out`; returns false when no SIMD path applies.
pub fn quantize_q8_0(x: &[f32], out: &mut [u8], level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2 and FMA.
        unsafe { x86::quantize_q8_0(x, out) };
        return true;
    }
    let _ = (x, out, level);
    false
}

/// Q4_0 blocks of `x` into `out`; returns false when no SIMD path applies.
pub fn quantize_q4_0(x: &[f32], out: &mut [u8], rounding: Rounding, level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2 and FMA.
        unsafe { x86::quantize_q4_0(x, out, rounding) };
        return true;
    }
    let _ = (x, out, rounding, level);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::Rounding;
    use crate::fp::f32_to_f16;

    const QK: usize = 32;

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn f16_row_to_f32(src: &[u8], dst: &mut [f32]) {
        let n = dst.len().min(src.len() / 2);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, so 16 bytes of src from 2i and 8 floats of dst from i are in
            // bounds; both accesses are unaligned loads/stores.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(2 * i) as *const __m128i);
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = crate::fp::f16_to_f32(u16::from_le_bytes([src[2 * j], src[2 * j + 1]]));
        }
    }

    /// Four vectors holding one 32-element block.
    #[target_feature(enable = "avx2")]
    fn load_block(x: &[f32]) -> [__m256; 4] {
        let b: &[f32; QK] = x.try_into().expect("block of 32");
        // SAFETY: `b` is exactly 32 floats, so each 8-float unaligned load is in bounds.
        unsafe { [0, 8, 16, 24].map(|o| _mm256_loadu_ps(b.as_ptr().add(o))) }
    }

    #[target_feature(enable = "avx2")]
    fn abs(v: __m256) -> __m256 {
        _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
    }

    /// Largest |x| of the block (x not NaN), as the scalar reduction finds it.
    #[target_feature(enable = "avx2")]
    fn abs_max(v: &[__m256; 4]) -> f32 {
        let m = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1));
        _mm_cvtss_f32(m1)
    }

    /// C's `(int8_t)f` as x86 runs it: truncate to i32 (0x80000000 for NaN/out of range), keep
    /// the low byte, sign-extended.
    #[target_feature(enable = "avx2")]
    fn c_to_i8(v: __m256) -> __m256i {
        let i = _mm256_cvttps_epi32(v);
        _mm256_srai_epi32(_mm256_slli_epi32(i, 24), 24)
    }

    #[target_feature(enable = "avx2")]
    fn store_i32(v: __m256i, out: &mut [i32]) {
        let out: &mut [i32; 8] = out.try_into().expect("8 lanes");
        // SAFETY: `out` is exactly 8 i32s.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
        let sign = _mm256_set1_ps(-0.0);
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        let mut q = [0i32; QK];
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
            let v = load_block(xb);
            let d = abs_max(&v) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            ob[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            let vid = _mm256_set1_ps(id);
            for (k, vk) in v.iter().enumerate() {
                let p = _mm256_mul_ps(*vk, vid);
                // roundf: truncate, then step away from zero when the dropped part is >= 1/2.
                let t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                let frac = abs(_mm256_sub_ps(p, t));
                let up = _mm256_cmp_ps(frac, half, _CMP_GE_OQ);
                let step = _mm256_or_ps(_mm256_and_ps(p, sign), one);
                let r = _mm256_add_ps(t, _mm256_and_ps(up, step));
                store_i32(c_to_i8(r), &mut q[8 * k..8 * k + 8]);
            }
            for (o, qi) in ob[2..].iter_mut().zip(q) {
                *o = qi as u8;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_q4_0(x: &[f32], out: &mut [u8], rounding: Rounding) {
        let bias = _mm256_set1_ps(8.5);
        let fifteen = _mm256_set1_epi32(15);
        let mut q = [0i32; QK];
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(18)) {
            let v = load_block(xb);
            let amax = abs_max(&v);
            // The first element whose magnitude is the maximum, as the scalar scan keeps it.
            let max = if amax == 0.0 {
                0.0
            } else {
                let target = _mm256_set1_ps(amax);
                let mut mask = 0u32;
                for (k, vk) in v.iter().enumerate() {
                    let eq = _mm256_cmp_ps(abs(*vk), target, _CMP_EQ_OQ);
                    mask |= (_mm256_movemask_ps(eq) as u32) << (8 * k);
                }
                xb[mask.trailing_zeros() as usize]
            };
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            ob[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            let vid = _mm256_set1_ps(id);
            for (k, vk) in v.iter().enumerate() {
                let s = match rounding {
                    Rounding::Separate => _mm256_add_ps(_mm256_mul_ps(*vk, vid), bias),
                    Rounding::Fused => _mm256_fmadd_ps(*vk, vid, bias),
                };
                store_i32(
                    _mm256_min_epi32(c_to_i8(s), fifteen),
                    &mut q[8 * k..8 * k + 8],
                );
            }
            for j in 0..QK / 2 {
                ob[2 + j] = (q[j] as u8) | ((q[j + QK / 2] as u8) << 4);
            }
        }
    }
}
