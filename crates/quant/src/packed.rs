//! Q4_0 and Q8_0 matrices regrouped eight rows at a time for the decode loop.
//!
//! In a file, a matrix's rows follow each other, so a kernel that works on eight rows at once
//! (to keep each row's sum in its own vector lane, in ggml's order) reads eight streams a row
//! apart: short runs that the hardware prefetcher follows poorly, plus a gather for the scales
//! and four to eight inserts per block to put the rows side by side. [`PackedRows`] stores the
//! same bytes so that one group of eight rows is one contiguous run, block by block, laid out
//! the way the vector registers want them: decode then streams memory the way a `memcpy` does.
//! Results are bit-identical to the row-major kernels (the same integer sums, the same
//! per-block multiply-add chain per row); tests check them against the scalar references.

use ggufy_gguf::GgmlType;

use crate::dot::{BlockFormat, BlockQ4_0, BlockQ8_0};
use crate::matvec::{Kernel, MAX_TOKENS};

/// Rows per group.
pub const GROUP: usize = 8;

/// Where row `r` of a group sits among the group's Q8_0 code slots: rows `r` and `r + 4` share
/// one 64-byte register, which makes the kernel's reduction come out in row order.
const Q8_0_SLOT: [usize; GROUP] = [0, 2, 4, 6, 1, 3, 5, 7];

/// The whole groups of a Q4_0 or Q8_0 matrix, each laid out as: the eight rows' f16 scales
/// for every block (16 bytes per block, row order), then the eight rows' codes for every block
/// (Q4_0: 16 bytes per row in row order; Q8_0: 32 bytes per row, rows in [`Q8_0_SLOT`] order).
/// A group holds exactly the bytes of its eight rows. Rows past the last whole group are not
/// here: the caller keeps them in the file's layout.
#[derive(Debug)]
pub struct PackedRows {
    ty: GgmlType,
    groups: usize,
    blocks: usize,
    buf: Vec<u8>,
    /// Offset of the first group in `buf`, chosen so that groups start on a cache line.
    start: usize,
}

impl PackedRows {
    /// Packs the whole groups of `rows` rows of `row_bytes` in `w`; `None` for types other
    /// than Q4_0 and Q8_0, for rows that are not whole blocks, or when `w` is too short.
    pub fn new(ty: GgmlType, w: &[u8], row_bytes: usize, rows: usize) -> Option<PackedRows> {
        let (block_bytes, code_bytes) = match ty {
            GgmlType::Q4_0 => (18, 16),
            GgmlType::Q8_0 => (34, 32),
            _ => return None,
        };
        if row_bytes == 0
            || !row_bytes.is_multiple_of(block_bytes)
            || w.len() < rows.checked_mul(row_bytes)?
        {
            return None;
        }
        let blocks = row_bytes / block_bytes;
        let groups = rows / GROUP;
        let group_bytes = GROUP * row_bytes;
        let mut buf = vec![0u8; groups * group_bytes + 63];
        let start = buf.as_ptr().align_offset(64).min(63);
        let codes_at = 16 * blocks;
        for (g, dst) in buf[start..start + groups * group_bytes]
            .chunks_exact_mut(group_bytes)
            .enumerate()
        {
            let src = &w[g * group_bytes..(g + 1) * group_bytes];
            let (scales, codes) = dst.split_at_mut(codes_at);
            for r in 0..GROUP {
                let row = &src[r * row_bytes..(r + 1) * row_bytes];
                let slot = if ty == GgmlType::Q8_0 {
                    Q8_0_SLOT[r]
                } else {
                    r
                };
                for (b, blk) in row.chunks_exact(block_bytes).enumerate() {
                    scales[16 * b + 2 * r..16 * b + 2 * r + 2].copy_from_slice(&blk[..2]);
                    let at = GROUP * code_bytes * b + code_bytes * slot;
                    codes[at..at + code_bytes].copy_from_slice(&blk[2..]);
                }
            }
        }
        Some(PackedRows {
            ty,
            groups,
            blocks,
            buf,
            start,
        })
    }

    /// The weight type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// How many rows are packed (a multiple of [`GROUP`]).
    pub fn rows(&self) -> usize {
        self.groups * GROUP
    }

    /// Bytes held (the packed rows' size in the file).
    pub fn len(&self) -> usize {
        self.buf.len() - 63
    }

    /// Whether no row is packed.
    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }

    fn block_bytes(&self) -> usize {
        if self.ty == GgmlType::Q4_0 { 18 } else { 34 }
    }

    fn group_bytes(&self) -> usize {
        GROUP * self.blocks * self.block_bytes()
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.groups * self.group_bytes()]
    }

    /// Row `r` in the file's layout (the scalar path, and tests).
    pub fn row(&self, r: usize) -> Vec<u8> {
        let (bb, cb) = (self.block_bytes(), self.block_bytes() - 2);
        let group = &self.data()[r / GROUP * self.group_bytes()..][..self.group_bytes()];
        let (scales, codes) = group.split_at(16 * self.blocks);
        let i = r % GROUP;
        let slot = if self.ty == GgmlType::Q8_0 {
            Q8_0_SLOT[i]
        } else {
            i
        };
        let mut out = vec![0u8; self.blocks * bb];
        for (b, blk) in out.chunks_exact_mut(bb).enumerate() {
            blk[..2].copy_from_slice(&scales[16 * b + 2 * i..16 * b + 2 * i + 2]);
            blk[2..].copy_from_slice(&codes[GROUP * cb * b + cb * slot..][..cb]);
        }
        out
    }

    /// `outs[t][i]` = packed row `first + i` · `acts[t]` (Q8_0 activation rows), for up to
    /// [`MAX_TOKENS`] activations; each equals the file-layout kernels' result. False (and
    /// `outs` untouched) when the rows are out of range, `first` is not a group boundary, or
    /// the activations do not fit.
    pub fn rows_dot(
        &self,
        first: usize,
        acts: &[&[u8]],
        outs: &mut [&mut [f32]],
        kernel: Kernel,
    ) -> bool {
        let n = outs.first().map_or(0, |o| o.len());
        if !first.is_multiple_of(GROUP)
            || first + n > self.rows()
            || acts.is_empty()
            || acts.len() > MAX_TOKENS
            || acts.len() != outs.len()
            || outs.iter().any(|o| o.len() != n)
            || acts.iter().any(|a| a.len() < 34 * self.blocks)
        {
            return false;
        }
        let whole = n / GROUP;
        #[cfg(target_arch = "x86_64")]
        if kernel.usable() == Kernel::Avx512Vnni {
            let w = &self.data()[first / GROUP * self.group_bytes()..];
            macro_rules! go {
                ($t:literal) => {{
                    let a: &[&[u8]; $t] = acts.try_into().expect("length checked");
                    let o: &mut [&mut [f32]; $t] = outs.try_into().expect("length checked");
                    // SAFETY: `Kernel::Avx512Vnni` runs only on CPUs with its features (the
                    // functions' target features); `w` holds `whole` groups of `blocks` blocks
                    // and every activation `blocks` blocks (checked above).
                    unsafe {
                        if self.ty == GgmlType::Q4_0 {
                            x86::q4_0_groups::<$t>(w, whole, self.blocks, a, o)
                        } else {
                            x86::q8_0_groups::<$t>(w, whole, self.blocks, a, o)
                        }
                    }
                }};
            }
            match acts.len() {
                1 => go!(1),
                2 => go!(2),
                3 => go!(3),
                _ => go!(4),
            }
            self.scalar_rows(first + whole * GROUP, acts, outs, whole * GROUP);
            return true;
        }
        let _ = (kernel, whole);
        self.scalar_rows(first, acts, outs, 0);
        true
    }

    /// Rows from `first` through the scalar references, into `outs[t][skip..]`.
    fn scalar_rows(&self, first: usize, acts: &[&[u8]], outs: &mut [&mut [f32]], skip: usize) {
        let n = outs.first().map_or(0, |o| o.len());
        for i in skip..n {
            let row = self.row(first + i - skip);
            for (a, o) in acts.iter().zip(outs.iter_mut()) {
                o[i] = if self.ty == GgmlType::Q4_0 {
                    BlockQ4_0::vec_dot_blocks(&row, a)
                } else {
                    BlockQ8_0::vec_dot_blocks(&row, a)
                };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// How far ahead of the current block the kernels prefetch, in bytes of the stream.
    const PREFETCH: usize = 1024;

    /// Each activation block's scale and the offset its codes' sum makes (`k · Σy`).
    fn activation_terms<const T: usize>(
        acts: &[&[u8]; T],
        blocks: usize,
        k: i32,
    ) -> ([Vec<i32>; T], [Vec<f32>; T]) {
        let offsets = std::array::from_fn(|t| {
            acts[t][..34 * blocks]
                .chunks_exact(34)
                .map(|y| k * y[2..].iter().map(|&q| i32::from(q as i8)).sum::<i32>())
                .collect()
        });
        let scales = std::array::from_fn(|t| {
            acts[t][..34 * blocks]
                .chunks_exact(34)
                .map(|y| crate::fp::half_at(y, 0))
                .collect()
        });
        (offsets, scales)
    }

    /// Q4_0 groups against `T` Q8_0 activations: per block, the eight rows' codes are two
    /// 64-byte loads (one row per 128-bit lane), `vpdpbusd` on the raw nibbles, 8·Σy
    /// subtracted, then each row's `sum = fma(isum, dw·dy, sum)` — the reference's chain.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; `w` must hold `groups`
    /// packed groups of `blocks` blocks, every `acts[t]` `blocks` Q8_0 blocks, and every
    /// `outs[t]` at least `8 · groups` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn q4_0_groups<const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let (offsets, scales) = activation_terms(acts, blocks, 8);
        let m4 = _mm512_set1_epi8(0x0F);
        let pick = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
        let group_bytes = 144 * blocks;
        for g in 0..groups {
            // SAFETY: group g is within `w` (the caller's contract).
            let (sp, cp) = unsafe {
                let base = w.as_ptr().add(g * group_bytes);
                (base, base.add(16 * blocks))
            };
            let mut acc = [_mm256_setzero_ps(); T];
            for b in 0..blocks {
                _mm_prefetch::<_MM_HINT_T0>(cp.wrapping_add(128 * b + PREFETCH).cast());
                _mm_prefetch::<_MM_HINT_T0>(cp.wrapping_add(128 * b + PREFETCH + 64).cast());
                // SAFETY: block b's 16 scale bytes and 128 code bytes are in the group, and
                // every activation has block b (34 bytes).
                unsafe {
                    let va = _mm512_loadu_si512(cp.add(128 * b).cast());
                    let vb = _mm512_loadu_si512(cp.add(128 * b + 64).cast());
                    let (alo, ahi) = (
                        _mm512_and_si512(va, m4),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(va), m4),
                    );
                    let (blo, bhi) = (
                        _mm512_and_si512(vb, m4),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(vb), m4),
                    );
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128(sp.add(16 * b).cast()));
                    for t in 0..T {
                        let y = acts[t].as_ptr().add(34 * b);
                        let ylo = _mm512_broadcast_i32x4(_mm_loadu_si128(y.add(2).cast()));
                        let yhi = _mm512_broadcast_i32x4(_mm_loadu_si128(y.add(18).cast()));
                        let z = _mm512_setzero_si512();
                        let sa = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, alo, ylo), ahi, yhi);
                        let sb = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, blo, ylo), bhi, yhi);
                        let r = _mm512_add_epi32(
                            _mm512_unpacklo_epi32(sa, sb),
                            _mm512_unpackhi_epi32(sa, sb),
                        );
                        let r = _mm512_add_epi32(r, _mm512_shuffle_epi32::<0b01_00_11_10>(r));
                        let isum = _mm512_castsi512_si256(_mm512_permutexvar_epi32(pick, r));
                        let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offsets[t][b]));
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(scales[t][b]));
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[t]);
                    }
                }
            }
            for t in 0..T {
                // SAFETY: every `outs[t]` has at least 8g + 8 elements.
                unsafe { _mm256_storeu_ps(outs[t].as_mut_ptr().add(8 * g), acc[t]) };
            }
        }
    }

    /// Q8_0 groups against `T` Q8_0 activations: per block, four 64-byte loads (rows r and
    /// r + 4 per register), made unsigned (+128) for `vpdpbusd`, 128·Σy subtracted, then the
    /// reference's per-row multiply-add chain.
    ///
    /// # Safety
    /// As [`q4_0_groups`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn q8_0_groups<const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let (offsets, scales) = activation_terms(acts, blocks, 128);
        let flip = _mm512_set1_epi8(-128);
        let group_bytes = 272 * blocks;
        for g in 0..groups {
            // SAFETY: group g is within `w` (the caller's contract).
            let (sp, cp) = unsafe {
                let base = w.as_ptr().add(g * group_bytes);
                (base, base.add(16 * blocks))
            };
            let mut acc = [_mm256_setzero_ps(); T];
            for b in 0..blocks {
                for l in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(
                        cp.wrapping_add(256 * b + PREFETCH + 64 * l).cast(),
                    );
                }
                // SAFETY: block b's 16 scale bytes and 256 code bytes are in the group, and
                // every activation has block b (34 bytes).
                unsafe {
                    let p = cp.add(256 * b);
                    let z0 = _mm512_xor_si512(_mm512_loadu_si512(p.cast()), flip);
                    let z1 = _mm512_xor_si512(_mm512_loadu_si512(p.add(64).cast()), flip);
                    let z2 = _mm512_xor_si512(_mm512_loadu_si512(p.add(128).cast()), flip);
                    let z3 = _mm512_xor_si512(_mm512_loadu_si512(p.add(192).cast()), flip);
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128(sp.add(16 * b).cast()));
                    for t in 0..T {
                        let y = acts[t].as_ptr().add(34 * b);
                        let yv = _mm512_broadcast_i64x4(_mm256_loadu_si256(y.add(2).cast()));
                        let z = _mm512_setzero_si512();
                        let (s0, s1, s2, s3) = (
                            _mm512_dpbusd_epi32(z, z0, yv),
                            _mm512_dpbusd_epi32(z, z1, yv),
                            _mm512_dpbusd_epi32(z, z2, yv),
                            _mm512_dpbusd_epi32(z, z3, yv),
                        );
                        let a = _mm512_add_epi32(
                            _mm512_unpacklo_epi32(s0, s1),
                            _mm512_unpackhi_epi32(s0, s1),
                        );
                        let c = _mm512_add_epi32(
                            _mm512_unpacklo_epi32(s2, s3),
                            _mm512_unpackhi_epi32(s2, s3),
                        );
                        let e = _mm512_add_epi32(
                            _mm512_unpacklo_epi64(a, c),
                            _mm512_unpackhi_epi64(a, c),
                        );
                        let f = _mm512_add_epi32(e, _mm512_shuffle_i32x4::<0b10_11_00_01>(e, e));
                        let isum = _mm256_set_m128i(
                            _mm512_extracti32x4_epi32::<2>(f),
                            _mm512_castsi512_si128(f),
                        );
                        let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offsets[t][b]));
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(scales[t][b]));
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[t]);
                    }
                }
            }
            for t in 0..T {
                // SAFETY: every `outs[t]` has at least 8g + 8 elements.
                unsafe { _mm256_storeu_ps(outs[t].as_mut_ptr().add(8 * g), acc[t]) };
            }
        }
    }
}
