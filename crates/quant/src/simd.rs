//! SIMD paths chosen at run time. Each one produces exactly the scalar reference's bytes (tests
//! check this on random and edge rows); `GGUFY_FORCE_SCALAR=1` (or `GGUFY_SIMD=scalar`) turns
//! them all off for debugging, and `GGUFY_SIMD=avx2` (or `avxvnni`, `avx512`) keeps a CPU to what
//! one without AVX-512 (or AVX-VNNI, AMX) runs, so that a report or a benchmark from such a
//! machine can be reproduced on another.
//!
//! x86-64: F16C for f16 ↔ f32 rows, AVX2 (+FMA for the fused mode) for Q8_0, Q4_0, Q4_1, Q5_0,
//! Q5_1 and Q6_K. AArch64: NEON for the same (tested under qemu). Everything else uses the scalar
//! reference.

use std::sync::OnceLock;

use crate::Rounding;

/// Which vector instructions this process may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The scalar reference only.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// AArch64 with NEON.
    Neon,
}

/// The widest instructions the user allows (`GGUFY_SIMD`, `GGUFY_FORCE_SCALAR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cap {
    /// The scalar references only.
    Scalar,
    /// Nothing wider than AVX2 (with FMA, F16C) on x86-64; no effect elsewhere.
    Avx2,
    /// AVX2 and AVX-VNNI, no AVX-512, on x86-64; no effect elsewhere.
    AvxVnni,
    /// Everything but AMX's tile registers (AVX-512 at most) on x86-64; no effect elsewhere.
    Avx512,
    /// Whatever the CPU has.
    Native,
}

impl Cap {
    /// The cap a `GGUFY_SIMD` value names (`scalar`, `avx2`, `avxvnni`, `avx512`, `native` or
    /// empty), `None` for anything else, which the CLI refuses rather than guess.
    pub fn parse(value: &str) -> Option<Cap> {
        match value.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Cap::Scalar),
            "avx2" => Some(Cap::Avx2),
            "avxvnni" | "avx-vnni" => Some(Cap::AvxVnni),
            "avx512" | "avx-512" => Some(Cap::Avx512),
            "" | "native" => Some(Cap::Native),
            _ => None,
        }
    }
}

/// The cap from the environment, read once per process: `GGUFY_FORCE_SCALAR` set to anything
/// but `0` wins; an unknown `GGUFY_SIMD` value allows everything (the CLI rejects it first).
pub fn cap() -> Cap {
    static CAP: OnceLock<Cap> = OnceLock::new();
    *CAP.get_or_init(|| {
        if std::env::var_os("GGUFY_FORCE_SCALAR").is_some_and(|v| !v.is_empty() && v != "0") {
            return Cap::Scalar;
        }
        std::env::var("GGUFY_SIMD")
            .ok()
            .and_then(|v| Cap::parse(&v))
            .unwrap_or(Cap::Native)
    })
}

/// The level chosen once per process from the CPU and [`cap`].
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if cap() == Cap::Scalar {
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

#[cfg(target_arch = "aarch64")]
fn detect() -> Level {
    if std::arch::is_aarch64_feature_detected!("neon") {
        Level::Neon
    } else {
        Level::Scalar
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
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
    #[cfg(target_arch = "aarch64")]
    if level == Level::Neon {
        // SAFETY: Level::Neon is only chosen when the CPU reports NEON.
        unsafe { neon::f16_row_to_f32(src, dst) };
        return;
    }
    let _ = level;
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = crate::fp::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// f32 row → f16 row (little-endian halves), with ggml's rounding and NaN handling.
pub fn f32_row_to_f16(src: &[f32], dst: &mut [u8], level: Level) {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports F16C and AVX2.
        unsafe { x86::f32_row_to_f16(src, dst) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if level == Level::Neon {
        // SAFETY: Level::Neon is only chosen when the CPU reports NEON.
        unsafe { neon::f32_row_to_f16(src, dst) };
        return;
    }
    let _ = level;
    for (o, &v) in dst.chunks_exact_mut(2).zip(src) {
        o.copy_from_slice(&crate::fp::f32_to_f16(v).to_le_bytes());
    }
}

/// `acc[i] = f16(fma(v[i], s, acc[i]))`, values held as f32: ggml's `ggml_vec_mad_f16` on an
/// f16 accumulator (flash attention's running V sum), one rounding in the multiply-add and one
/// to f16, with the CPU's conversion instructions. False (and `acc` untouched) where `level`
/// has none: the caller rounds another way.
pub fn mad_round_f16(acc: &mut [f32], v: &[f32], s: f32, level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2, FMA and F16C.
        unsafe { x86::mad_round_f16(acc, v, s) };
        return true;
    }
    let _ = (acc, v, s, level);
    false
}

/// `acc[i] = f16(acc[i] · s)` as [`mad_round_f16`] (rescaling the accumulator when the
/// softmax maximum moves).
pub fn scale_round_f16(acc: &mut [f32], s: f32, level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2, FMA and F16C.
        unsafe { x86::scale_round_f16(acc, s) };
        return true;
    }
    let _ = (acc, s, level);
    false
}

/// `ggml_vec_dot_f16` of two rows of f16 values held as f32, whose length is a multiple of 64:
/// ggml's 4 × 16 lanes over steps of 64 (the products are exact, so a fused multiply-add
/// rounds as its multiply then add), combined as [`crate::dot::reduce_f16_lanes`]. `None`
/// where `level` has no vector path or the length is not a multiple of 64.
pub fn dot_f16_values(a: &[f32], b: &[f32], level: Level) -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 && a.len() == b.len() && a.len().is_multiple_of(64) {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2 and FMA; the lengths
        // are equal multiples of 64.
        return Some(unsafe { x86::dot_f16_values(a, b) });
    }
    let _ = (a, b, level);
    None
}

/// Whether any value is NaN (branch-free, so the check vectorizes).
fn has_nan(x: &[f32]) -> bool {
    x.iter().fold(false, |any, v| any | v.is_nan())
}

/// Q8_0 blocks of `x` into `out`; returns false when no SIMD path applies.
pub fn quantize_q8_0(x: &[f32], out: &mut [u8], level: Level) -> bool {
    // The vector reductions find a block's extremes in another order than ggml's sequential
    // scan, which only matters when a NaN is in the block: leave such rows to the reference.
    if has_nan(x) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2 and FMA.
        unsafe { x86::quantize_q8_0(x, out) };
        return true;
    }
    #[cfg(target_arch = "aarch64")]
    if level == Level::Neon {
        // SAFETY: Level::Neon is only chosen when the CPU reports NEON.
        unsafe { neon::quantize_q8_0(x, out) };
        return true;
    }
    let _ = (x, out, level);
    false
}

/// The 32-element formats that share one vector quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legacy {
    /// Symmetric 4-bit.
    Q4_0,
    /// Asymmetric 4-bit (scale and minimum).
    Q4_1,
    /// Symmetric 5-bit.
    Q5_0,
    /// Asymmetric 5-bit.
    Q5_1,
}

impl Legacy {
    /// Bytes per 32-element block.
    #[allow(dead_code)] // unused on targets without a vector path
    fn block_bytes(self) -> usize {
        match self {
            Legacy::Q4_0 => 18,
            Legacy::Q4_1 => 20,
            Legacy::Q5_0 => 22,
            Legacy::Q5_1 => 24,
        }
    }

    /// Packs 32 computed codes into the block's nibbles (and fifth bits), after the header.
    #[allow(dead_code)] // unused on targets without a vector path
    fn pack(self, q: &[i32; 32], block: &mut [u8]) {
        let n = self.block_bytes();
        match self {
            Legacy::Q4_0 | Legacy::Q4_1 => {
                let qs = &mut block[n - 16..n];
                for j in 0..16 {
                    qs[j] = (q[j] as u8) | ((q[j + 16] as u8) << 4);
                }
            }
            Legacy::Q5_0 | Legacy::Q5_1 => {
                let bytes: [u8; 32] = q.map(|v| v as u8);
                let (qh, qs) = block[n - 20..n].split_at_mut(4);
                crate::legacy::pack5(&bytes, qh, qs);
            }
        }
    }
}

/// Q4_0/Q4_1/Q5_0/Q5_1 blocks of `x` into `out`; returns false when no SIMD path applies.
pub fn quantize_legacy(
    kind: Legacy,
    x: &[f32],
    out: &mut [u8],
    rounding: Rounding,
    level: Level,
) -> bool {
    // The vector reductions find a block's extremes in another order than ggml's sequential
    // scan, which only matters when a NaN is in the block: leave such rows to the reference.
    if has_nan(x) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2 and FMA.
        unsafe { x86::quantize_legacy(kind, x, out, rounding) };
        return true;
    }
    #[cfg(target_arch = "aarch64")]
    if level == Level::Neon {
        // SAFETY: Level::Neon is only chosen when the CPU reports NEON.
        unsafe { neon::quantize_legacy(kind, x, out, rounding) };
        return true;
    }
    let _ = (kind, x, out, rounding, level);
    false
}

/// Q6_K's per-sub-block search (`make_qx_quants`, nmax 32, rmse 1) for one 256-element
/// super-block: fills `scales` and the codes `l`; returns false when no SIMD path applies.
pub fn q6_k_subblocks(x: &[f32], l: &mut [i8; 256], scales: &mut [f32; 16], level: Level) -> bool {
    // The vector reductions find a block's extremes in another order than ggml's sequential
    // scan, which only matters when a NaN is in the block: leave such rows to the reference.
    if has_nan(x) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx2 {
        // SAFETY: Level::Avx2 is only chosen when the CPU reports AVX2.
        unsafe { x86::q6_k_subblocks(x, l, scales) };
        return true;
    }
    #[cfg(target_arch = "aarch64")]
    if level == Level::Neon {
        // SAFETY: Level::Neon is only chosen when the CPU reports NEON.
        unsafe { neon::q6_k_subblocks(x, l, scales) };
        return true;
    }
    let _ = (x, l, scales, level);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::Rounding;
    use crate::fp::f32_to_f16;

    const QK: usize = 32;

    /// Eight values through f16 and back: IEEE round to nearest even, overflow to infinity,
    /// subnormals kept (MXCSR's defaults, which Rust leaves alone), NaN quieted.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    fn round8(v: __m256) -> __m256 {
        _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
    }

    /// [`super::dot_f16_values`]: `a.len() == b.len()`, a multiple of 64.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_f16_values(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 8];
        for c in (0..a.len().min(b.len()) / 64 * 64).step_by(64) {
            for (j, s) in acc.iter_mut().enumerate() {
                // SAFETY: c + 64 <= both lengths: eight floats of each from c + 8j.
                unsafe {
                    let x = _mm256_loadu_ps(a.as_ptr().add(c + 8 * j));
                    let y = _mm256_loadu_ps(b.as_ptr().add(c + 8 * j));
                    *s = _mm256_fmadd_ps(x, y, *s);
                }
            }
        }
        // Lanes 0–15 of ggml's four 16-lane accumulators are acc[0..2], lanes 16–31 acc[2..4],
        // and so on: x0 + x2, x1 + x3, then their sum, lane by lane.
        let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
        // `reduce16`: the 16 lanes halved three times, then the last two added.
        let h = _mm256_add_ps(hi, lo);
        let q = _mm_add_ps(_mm256_extractf128_ps::<1>(h), _mm256_castps256_ps128(h));
        let r = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn mad_round_f16(acc: &mut [f32], v: &[f32], s: f32) {
        let n = acc.len().min(v.len());
        let sv = _mm256_set1_ps(s);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n: eight floats of `acc` and `v` from i.
            unsafe {
                let a = _mm256_loadu_ps(acc.as_ptr().add(i));
                let b = _mm256_loadu_ps(v.as_ptr().add(i));
                _mm256_storeu_ps(acc.as_mut_ptr().add(i), round8(_mm256_fmadd_ps(b, sv, a)));
            }
            i += 8;
        }
        for j in i..n {
            acc[j] = crate::fp::f16_to_f32(f32_to_f16(v[j].mul_add(s, acc[j])));
        }
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn scale_round_f16(acc: &mut [f32], s: f32) {
        let sv = _mm256_set1_ps(s);
        let mut i = 0;
        while i + 8 <= acc.len() {
            // SAFETY: i + 8 <= acc.len(): eight floats from i.
            unsafe {
                let a = _mm256_loadu_ps(acc.as_ptr().add(i));
                _mm256_storeu_ps(acc.as_mut_ptr().add(i), round8(_mm256_mul_ps(a, sv)));
            }
            i += 8;
        }
        for a in &mut acc[i..] {
            *a = crate::fp::f16_to_f32(f32_to_f16(*a * s));
        }
    }

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

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn f32_row_to_f16(src: &[f32], dst: &mut [u8]) {
        let n = src.len().min(dst.len() / 2);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, so 8 floats of src from i and 16 bytes of dst from 2i are in
            // bounds; both accesses are unaligned.
            let (v, h) = unsafe {
                let v = _mm256_loadu_ps(src.as_ptr().add(i));
                (v, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT))
            };
            // vcvtps2ph keeps NaN payloads; ggml writes the canonical quiet NaN, so redo those.
            if _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0 {
                for j in i..i + 8 {
                    dst[2 * j..2 * j + 2].copy_from_slice(&f32_to_f16(src[j]).to_le_bytes());
                }
            } else {
                // SAFETY: as above, 16 bytes from 2i are in bounds.
                unsafe { _mm_storeu_si128(dst.as_mut_ptr().add(2 * i) as *mut __m128i, h) };
            }
            i += 8;
        }
        for j in i..n {
            dst[2 * j..2 * j + 2].copy_from_slice(&f32_to_f16(src[j]).to_le_bytes());
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

    /// The first element of the block equal to `target` (ggml's scans keep the first extreme,
    /// which matters for -0.0 against +0.0).
    #[target_feature(enable = "avx2")]
    fn first_equal(v: &[__m256; 4], xb: &[f32], target: f32, magnitude: bool) -> f32 {
        let t = _mm256_set1_ps(target);
        let mut mask = 0u32;
        for (k, vk) in v.iter().enumerate() {
            let lane = if magnitude { abs(*vk) } else { *vk };
            mask |= (_mm256_movemask_ps(_mm256_cmp_ps(lane, t, _CMP_EQ_OQ)) as u32) << (8 * k);
        }
        xb.get(mask.trailing_zeros() as usize)
            .copied()
            .unwrap_or(0.0)
    }

    /// Minimum and maximum of the block as ggml's scalar loop finds them (first extreme wins).
    #[target_feature(enable = "avx2")]
    fn min_max(v: &[__m256; 4], xb: &[f32]) -> (f32, f32) {
        let reduce = |m: __m256, f: fn(__m128, __m128) -> __m128| {
            let m4 = f(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m2 = f(m4, _mm_movehl_ps(m4, m4));
            _mm_cvtss_f32(f(m2, _mm_shuffle_ps(m2, m2, 1)))
        };
        let lo = _mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3]));
        let hi = _mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3]));
        let (lo, hi) = (
            reduce(lo, |a, b| _mm_min_ps(a, b)),
            reduce(hi, |a, b| _mm_max_ps(a, b)),
        );
        (first_equal(v, xb, lo, false), first_equal(v, xb, hi, false))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantize_legacy(
        kind: super::Legacy,
        x: &[f32],
        out: &mut [u8],
        rounding: Rounding,
    ) {
        use super::Legacy::*;
        let block_bytes = kind.block_bytes();
        let mut q = [0i32; QK];
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(block_bytes)) {
            let v = load_block(xb);
            // Scale, offset subtracted before scaling, bias added after, largest code.
            let (d, min, bias, top) = match kind {
                Q4_0 | Q5_0 => {
                    let amax = abs_max(&v);
                    let max = if amax == 0.0 {
                        0.0
                    } else {
                        first_equal(&v, xb, amax, true)
                    };
                    let (levels, bias, top) = if kind == Q4_0 {
                        (-8.0, 8.5, 15)
                    } else {
                        (-16.0, 16.5, 31)
                    };
                    (max / levels, None, bias, top)
                }
                Q4_1 | Q5_1 => {
                    let (min, max) = min_max(&v, xb);
                    let (levels, top) = if kind == Q4_1 {
                        (15.0, 15)
                    } else {
                        (31.0, i32::MAX)
                    };
                    ((max - min) / levels, Some(min), 0.5, top)
                }
            };
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            ob[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            if let Some(m) = min {
                ob[2..4].copy_from_slice(&f32_to_f16(m).to_le_bytes());
            }
            let (vid, vbias, vtop) = (
                _mm256_set1_ps(id),
                _mm256_set1_ps(bias),
                _mm256_set1_epi32(top),
            );
            let vmin = _mm256_set1_ps(min.unwrap_or(0.0));
            for (k, vk) in v.iter().enumerate() {
                let centred = if min.is_some() {
                    _mm256_sub_ps(*vk, vmin)
                } else {
                    *vk
                };
                let s = match rounding {
                    Rounding::Separate => _mm256_add_ps(_mm256_mul_ps(centred, vid), vbias),
                    Rounding::Fused => _mm256_fmadd_ps(centred, vid, vbias),
                };
                store_i32(_mm256_min_epi32(c_to_i8(s), vtop), &mut q[8 * k..8 * k + 8]);
            }
            kind.pack(&q, ob);
        }
    }

    /// ggml's `nearest_int` on 8 lanes: add 1.5·2^23 (separately rounded, as ggml-base does)
    /// and read the low mantissa bits.
    #[target_feature(enable = "avx2")]
    fn nearest_int(v: __m256) -> __m256i {
        let bits = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12_582_912.0)));
        _mm256_sub_epi32(
            _mm256_and_si256(bits, _mm256_set1_epi32(0x007F_FFFF)),
            _mm256_set1_epi32(0x0040_0000),
        )
    }

    /// One lane per sub-block, each doing the reference's sequential float arithmetic, so the
    /// result is bit-identical while 8 sub-blocks progress at once.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn q6_k_subblocks(x: &[f32], l: &mut [i8; 256], scales: &mut [f32; 16]) {
        const NMAX: i32 = 32;
        let x: &[f32; 256] = x.try_into().expect("super-block of 256");
        let (lo, hi) = (_mm256_set1_epi32(-NMAX), _mm256_set1_epi32(NMAX - 1));
        for group in 0..2 {
            // xt[ii] lane k = x[16 * (8 * group + k) + ii]: sub-blocks side by side.
            let mut xt = [_mm256_setzero_ps(); 16];
            for (ii, v) in xt.iter_mut().enumerate() {
                let mut col = [0.0f32; 8];
                for (k, c) in col.iter_mut().enumerate() {
                    *c = x[16 * (8 * group + k) + ii];
                }
                // SAFETY: `col` is 8 floats.
                *v = unsafe { _mm256_loadu_ps(col.as_ptr()) };
            }
            let (mut amax, mut max) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for v in &xt {
                let a = abs(*v);
                let gt = _mm256_cmp_ps(a, amax, _CMP_GT_OQ);
                amax = _mm256_blendv_ps(amax, a, gt);
                max = _mm256_blendv_ps(max, *v, gt);
            }
            // One pass at a trial scale: codes and the two weighted sums.
            let pass = |iscale: __m256, codes: &mut [__m256i; 16]| {
                let (mut sumlx, mut suml2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for (v, c) in xt.iter().zip(codes.iter_mut()) {
                    let q = _mm256_max_epi32(
                        _mm256_min_epi32(nearest_int(_mm256_mul_ps(iscale, *v)), hi),
                        lo,
                    );
                    *c = q;
                    let qf = _mm256_cvtepi32_ps(q);
                    let w = _mm256_mul_ps(*v, *v);
                    sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, *v), qf));
                    suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, qf), qf));
                }
                (sumlx, suml2)
            };
            let mut best_codes = [_mm256_setzero_si256(); 16];
            let (sumlx, suml2) = pass(
                _mm256_div_ps(_mm256_set1_ps(-(NMAX as f32)), max),
                &mut best_codes,
            );
            let nonzero = _mm256_cmp_ps(suml2, _mm256_setzero_ps(), _CMP_NEQ_UQ);
            let mut scale = _mm256_and_ps(_mm256_div_ps(sumlx, suml2), nonzero);
            let mut best = _mm256_mul_ps(scale, sumlx);
            let mut codes = [_mm256_setzero_si256(); 16];
            for is in (-9..=9).filter(|&i| i != 0) {
                let iscale = _mm256_div_ps(_mm256_set1_ps(-(NMAX as f32 + 0.1 * is as f32)), max);
                let (sumlx, suml2) = pass(iscale, &mut codes);
                let better = _mm256_and_ps(
                    _mm256_cmp_ps(suml2, _mm256_setzero_ps(), _CMP_GT_OQ),
                    _mm256_cmp_ps(
                        _mm256_mul_ps(sumlx, sumlx),
                        _mm256_mul_ps(best, suml2),
                        _CMP_GT_OQ,
                    ),
                );
                let better_i = _mm256_castps_si256(better);
                for (b, c) in best_codes.iter_mut().zip(&codes) {
                    *b = _mm256_blendv_epi8(*b, *c, better_i);
                }
                scale = _mm256_blendv_ps(scale, _mm256_div_ps(sumlx, suml2), better);
                best = _mm256_blendv_ps(best, _mm256_mul_ps(scale, sumlx), better);
            }
            // Sub-blocks below GROUP_MAX_EPS are all-zero: scale 0, codes 0.
            let tiny = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15), _CMP_LT_OQ);
            scale = _mm256_andnot_ps(tiny, scale);
            let tiny_i = _mm256_castps_si256(tiny);
            let mut out = [0.0f32; 8];
            // SAFETY: `out` is 8 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), scale) };
            scales[8 * group..8 * group + 8].copy_from_slice(&out);
            for (ii, c) in best_codes.iter().enumerate() {
                let stored =
                    _mm256_andnot_si256(tiny_i, _mm256_add_epi32(*c, _mm256_set1_epi32(NMAX)));
                let mut lanes = [0i32; 8];
                store_i32(stored, &mut lanes);
                for (k, v) in lanes.iter().enumerate() {
                    l[16 * (8 * group + k) + ii] = *v as i8;
                }
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use crate::Rounding;
    use crate::fp::f32_to_f16;

    const QK: usize = 32;

    #[target_feature(enable = "neon")]
    fn load_block(x: &[f32]) -> [float32x4_t; 8] {
        let b: &[f32; QK] = x.try_into().expect("block of 32");
        // SAFETY: `b` is exactly 32 floats, so each 4-float load from 4k is in bounds.
        std::array::from_fn(|k| unsafe { vld1q_f32(b.as_ptr().add(4 * k)) })
    }

    /// C's `(int8_t)f` as x86 runs it (the reference ggufy matches everywhere): truncate to i32,
    /// 0x80000000 for NaN and out-of-range values, then the low byte, sign-extended. NEON's own
    /// conversion saturates instead, hence the range mask.
    #[target_feature(enable = "neon")]
    fn c_to_i8(v: float32x4_t) -> int32x4_t {
        let in_range = vcaltq_f32(v, vdupq_n_f32(2_147_483_648.0));
        let i = vbslq_s32(in_range, vcvtq_s32_f32(v), vdupq_n_s32(i32::MIN));
        vshrq_n_s32::<24>(vshlq_n_s32::<24>(i))
    }

    #[target_feature(enable = "neon")]
    fn store(v: int32x4_t, out: &mut [i32]) {
        let out: &mut [i32; 4] = out.try_into().expect("4 lanes");
        // SAFETY: `out` is exactly 4 i32s.
        unsafe { vst1q_s32(out.as_mut_ptr(), v) }
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
        let mut q = [0i32; QK];
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
            let v = load_block(xb);
            let amax = v
                .iter()
                .fold(vdupq_n_f32(0.0), |m, vk| vmaxq_f32(m, vabsq_f32(*vk)));
            let d = vmaxvq_f32(amax) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            ob[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            for (k, vk) in v.iter().enumerate() {
                // vrndaq rounds half away from zero: exactly C's roundf.
                let r = vrndaq_f32(vmulq_f32(*vk, vdupq_n_f32(id)));
                store(c_to_i8(r), &mut q[4 * k..4 * k + 4]);
            }
            for (o, qi) in ob[2..].iter_mut().zip(q) {
                *o = qi as u8;
            }
        }
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn quantize_legacy(
        kind: super::Legacy,
        x: &[f32],
        out: &mut [u8],
        rounding: Rounding,
    ) {
        use super::Legacy::*;
        let block_bytes = kind.block_bytes();
        // The first element equal to `t` (by value or magnitude), as ggml's scans keep it.
        let first = |xb: &[f32], t: f32, magnitude: bool| {
            xb.iter()
                .copied()
                .find(|v| if magnitude { v.abs() == t } else { *v == t })
                .unwrap_or(0.0)
        };
        let mut q = [0i32; QK];
        for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(block_bytes)) {
            let v = load_block(xb);
            let (d, min, bias, top) = match kind {
                Q4_0 | Q5_0 => {
                    let amax = vmaxvq_f32(
                        v.iter()
                            .fold(vdupq_n_f32(0.0), |m, vk| vmaxq_f32(m, vabsq_f32(*vk))),
                    );
                    let max = if amax == 0.0 {
                        0.0
                    } else {
                        first(xb, amax, true)
                    };
                    let (levels, bias, top) = if kind == Q4_0 {
                        (-8.0, 8.5, 15)
                    } else {
                        (-16.0, 16.5, 31)
                    };
                    (max / levels, None, bias, top)
                }
                Q4_1 | Q5_1 => {
                    let lo = vminvq_f32(v[1..].iter().fold(v[0], |m, vk| vminq_f32(m, *vk)));
                    let hi = vmaxvq_f32(v[1..].iter().fold(v[0], |m, vk| vmaxq_f32(m, *vk)));
                    let (min, max) = (first(xb, lo, false), first(xb, hi, false));
                    let (levels, top) = if kind == Q4_1 {
                        (15.0, 15)
                    } else {
                        (31.0, i32::MAX)
                    };
                    ((max - min) / levels, Some(min), 0.5, top)
                }
            };
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            ob[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            if let Some(m) = min {
                ob[2..4].copy_from_slice(&f32_to_f16(m).to_le_bytes());
            }
            let (vid, vbias, vtop, vmin) = (
                vdupq_n_f32(id),
                vdupq_n_f32(bias),
                vdupq_n_s32(top),
                vdupq_n_f32(min.unwrap_or(0.0)),
            );
            for (k, vk) in v.iter().enumerate() {
                let centred = if min.is_some() {
                    vsubq_f32(*vk, vmin)
                } else {
                    *vk
                };
                let s = match rounding {
                    Rounding::Separate => vaddq_f32(vmulq_f32(centred, vid), vbias),
                    Rounding::Fused => vfmaq_f32(vbias, centred, vid),
                };
                store(vminq_s32(c_to_i8(s), vtop), &mut q[4 * k..4 * k + 4]);
            }
            kind.pack(&q, ob);
        }
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn f16_row_to_f32(src: &[u8], dst: &mut [f32]) {
        let n = dst.len().min(src.len() / 2);
        let mut i = 0;
        while i + 4 <= n {
            // SAFETY: i + 4 <= n, so 8 bytes of src from 2i and 4 floats of dst from i are in
            // bounds; byte loads need no alignment.
            unsafe {
                let h = vreinterpret_f16_u8(vld1_u8(src.as_ptr().add(2 * i)));
                vst1q_f32(dst.as_mut_ptr().add(i), vcvt_f32_f16(h));
            }
            i += 4;
        }
        for j in i..n {
            dst[j] = crate::fp::f16_to_f32(u16::from_le_bytes([src[2 * j], src[2 * j + 1]]));
        }
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn f32_row_to_f16(src: &[f32], dst: &mut [u8]) {
        let n = src.len().min(dst.len() / 2);
        let mut i = 0;
        while i + 4 <= n {
            // SAFETY: i + 4 <= n, so 4 floats of src from i are in bounds.
            let v = unsafe { vld1q_f32(src.as_ptr().add(i)) };
            // fcvtn rounds to nearest even like ggml, but keeps NaN payloads: redo NaN groups.
            if vminvq_u32(vceqq_f32(v, v)) == 0 {
                for j in i..i + 4 {
                    dst[2 * j..2 * j + 2].copy_from_slice(&f32_to_f16(src[j]).to_le_bytes());
                }
            } else {
                // SAFETY: 8 bytes of dst from 2i are in bounds; byte stores need no alignment.
                unsafe {
                    vst1_u8(
                        dst.as_mut_ptr().add(2 * i),
                        vreinterpret_u8_f16(vcvt_f16_f32(v)),
                    )
                };
            }
            i += 4;
        }
        for j in i..n {
            dst[2 * j..2 * j + 2].copy_from_slice(&f32_to_f16(src[j]).to_le_bytes());
        }
    }

    /// Q6_K's sub-block search with one sub-block per lane, four at a time, each lane doing the
    /// reference's sequential float arithmetic (see the AVX2 version).
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn q6_k_subblocks(x: &[f32], l: &mut [i8; 256], scales: &mut [f32; 16]) {
        const NMAX: i32 = 32;
        let x: &[f32; 256] = x.try_into().expect("super-block of 256");
        let (lo, hi) = (vdupq_n_s32(-NMAX), vdupq_n_s32(NMAX - 1));
        let nearest = |v: float32x4_t| {
            let bits = vreinterpretq_s32_f32(vaddq_f32(v, vdupq_n_f32(12_582_912.0)));
            vsubq_s32(
                vandq_s32(bits, vdupq_n_s32(0x007F_FFFF)),
                vdupq_n_s32(0x0040_0000),
            )
        };
        let zero = vdupq_n_f32(0.0);
        for group in 0..4 {
            let xt: [float32x4_t; 16] = std::array::from_fn(|ii| {
                let col: [f32; 4] = std::array::from_fn(|k| x[16 * (4 * group + k) + ii]);
                // SAFETY: `col` is 4 floats.
                unsafe { vld1q_f32(col.as_ptr()) }
            });
            let (mut amax, mut max) = (zero, zero);
            for v in &xt {
                let a = vabsq_f32(*v);
                let gt = vcgtq_f32(a, amax);
                amax = vbslq_f32(gt, a, amax);
                max = vbslq_f32(gt, *v, max);
            }
            let pass = |iscale: float32x4_t, codes: &mut [int32x4_t; 16]| {
                let (mut sumlx, mut suml2) = (zero, zero);
                for (v, c) in xt.iter().zip(codes.iter_mut()) {
                    let q = vmaxq_s32(vminq_s32(nearest(vmulq_f32(iscale, *v)), hi), lo);
                    *c = q;
                    let qf = vcvtq_f32_s32(q);
                    let w = vmulq_f32(*v, *v);
                    sumlx = vaddq_f32(sumlx, vmulq_f32(vmulq_f32(w, *v), qf));
                    suml2 = vaddq_f32(suml2, vmulq_f32(vmulq_f32(w, qf), qf));
                }
                (sumlx, suml2)
            };
            let mut best_codes = [vdupq_n_s32(0); 16];
            let (sumlx, suml2) = pass(vdivq_f32(vdupq_n_f32(-(NMAX as f32)), max), &mut best_codes);
            // suml2 != 0, true for NaN as in C.
            let nonzero = vmvnq_u32(vceqq_f32(suml2, zero));
            let mut scale = vbslq_f32(nonzero, vdivq_f32(sumlx, suml2), zero);
            let mut best = vmulq_f32(scale, sumlx);
            let mut codes = [vdupq_n_s32(0); 16];
            for is in (-9..=9).filter(|&i| i != 0) {
                let iscale = vdivq_f32(vdupq_n_f32(-(NMAX as f32 + 0.1 * is as f32)), max);
                let (sumlx, suml2) = pass(iscale, &mut codes);
                let better = vandq_u32(
                    vcgtq_f32(suml2, zero),
                    vcgtq_f32(vmulq_f32(sumlx, sumlx), vmulq_f32(best, suml2)),
                );
                for (b, c) in best_codes.iter_mut().zip(&codes) {
                    *b = vbslq_s32(better, *c, *b);
                }
                scale = vbslq_f32(better, vdivq_f32(sumlx, suml2), scale);
                best = vbslq_f32(better, vmulq_f32(scale, sumlx), best);
            }
            let tiny = vcltq_f32(amax, vdupq_n_f32(1e-15));
            scale = vbslq_f32(tiny, zero, scale);
            let mut out = [0.0f32; 4];
            // SAFETY: `out` is 4 floats.
            unsafe { vst1q_f32(out.as_mut_ptr(), scale) };
            scales[4 * group..4 * group + 4].copy_from_slice(&out);
            for (ii, c) in best_codes.iter().enumerate() {
                let stored = vbslq_s32(tiny, vdupq_n_s32(0), vaddq_s32(*c, vdupq_n_s32(NMAX)));
                let mut lanes = [0i32; 4];
                store(stored, &mut lanes);
                for (k, v) in lanes.iter().enumerate() {
                    l[16 * (4 * group + k) + ii] = *v as i8;
                }
            }
        }
    }
}
