//! Many weight rows against one activation row (and batches of them): the runner's inner loop.
//! x86-64 kernels (AVX2, AVX-512 VNNI) cover Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K,
//! F16 and BF16, AArch64 NEON ones Q4_0, Q8_0, Q4_K, Q6_K, F16 and BF16; every kernel gives
//! exactly the scalar references' results ([`crate::dot`]), which tests check on random and
//! edge rows.

use ggufy_gguf::GgmlType;

use crate::dot::{
    BlockFormat, BlockQ4_0, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockSums, dot_f16,
};
#[cfg(target_arch = "x86_64")]
use crate::simd::Cap;
use crate::simd::Level;

/// Which implementation runs a kernel. All give the same bits; the choice is speed only. A
/// kernel the CPU cannot run is never used: the functions fall back to the best one it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The scalar references of [`crate::dot`].
    Scalar,
    /// x86-64 AVX2 (with FMA and F16C).
    Avx2,
    /// x86-64 AVX2 with AVX-VNNI (256-bit VNNI: CPUs without AVX-512, such as Intel's since
    /// Alder Lake); only the packed kernels use VNNI, the rest run as [`Kernel::Avx2`].
    AvxVnni,
    /// x86-64 AVX-512 with VNNI (plus AVX2, FMA and F16C).
    Avx512Vnni,
    /// AArch64 NEON (Q4_0, Q8_0, Q4_K, Q6_K, F16, BF16 and NF4; others use the references).
    Neon,
}

impl Kernel {
    /// The fastest kernel this CPU runs within `level` (`Level::Scalar` forces the reference).
    pub fn best(level: Level) -> Kernel {
        let k = match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 if x86::has_avx512_vnni() && crate::simd::cap() > Cap::AvxVnni => {
                Kernel::Avx512Vnni
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 if x86::has_avx_vnni() && crate::simd::cap() > Cap::Avx2 => Kernel::AvxVnni,
            Level::Avx2 => Kernel::Avx2,
            Level::Neon => Kernel::Neon,
            Level::Scalar => Kernel::Scalar,
        };
        if k.runs_here() { k } else { Kernel::Scalar }
    }

    /// Every kernel this CPU can run, for tests that compare them.
    pub fn available() -> Vec<Kernel> {
        [
            Kernel::Scalar,
            Kernel::Avx2,
            Kernel::AvxVnni,
            Kernel::Avx512Vnni,
            Kernel::Neon,
        ]
        .into_iter()
        .filter(|k| k.runs_here())
        .collect()
    }

    /// Whether this CPU has the kernel's instructions and [`crate::simd::cap`] allows them.
    pub fn runs_here(self) -> bool {
        static HERE: std::sync::OnceLock<[bool; 5]> = std::sync::OnceLock::new();
        let here = HERE.get_or_init(|| {
            let level = crate::simd::level();
            let cap = crate::simd::cap();
            #[cfg(target_arch = "x86_64")]
            let (vnni, wide) = (
                level == Level::Avx2 && x86::has_avx_vnni() && cap > Cap::Avx2,
                level == Level::Avx2 && x86::has_avx512_vnni() && cap > Cap::AvxVnni,
            );
            #[cfg(not(target_arch = "x86_64"))]
            let (vnni, wide) = (false, false);
            let _ = cap;
            [true, level == Level::Avx2, vnni, wide, level == Level::Neon]
        });
        here[self as usize]
    }

    /// This kernel, or the best one the CPU runs if it lacks this one's instructions.
    pub(crate) fn usable(self) -> Kernel {
        if self.runs_here() {
            self
        } else {
            Kernel::best(crate::simd::level())
        }
    }
}

/// `out[i]` = row `i` of `w` (rows of `row_bytes`) · `act`, a Q8_0 activation row with its
/// [`BlockSums`] `sums`, for Q4_0 and Q8_0 weights. Returns false (and leaves `out` alone) for
/// other types or sums that do not cover the row.
pub fn q8_0_partner_rows(
    ty: GgmlType,
    w: &[u8],
    row_bytes: usize,
    act: &[u8],
    sums: &BlockSums,
    out: &mut [f32],
    kernel: Kernel,
) -> bool {
    let kernel = kernel.usable();
    if !matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0)
        || w.len() < out.len() * row_bytes
        || sums.blocks() < row_bytes / ty.type_size() as usize
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar {
        // The gather's byte offsets are i32.
        let wide =
            kernel == Kernel::Avx512Vnni && row_bytes.checked_mul(8).is_some_and(|b| b < 1 << 31);
        // SAFETY: `Kernel::Avx2`/`Avx512Vnni` are chosen (`Kernel::best`, `available`) only on
        // CPUs with their features, which are the functions' target features; the lengths
        // were checked above.
        unsafe {
            match (ty, wide) {
                (GgmlType::Q4_0, true) => x86::rows_q4_0_vnni(w, row_bytes, act, sums, out),
                (GgmlType::Q4_0, false) => x86::rows_q8_0_partner::<true>(w, row_bytes, act, out),
                (_, true) => x86::rows_q8_0_vnni(w, row_bytes, act, sums, out),
                (_, false) => x86::rows_q8_0_partner::<false>(w, row_bytes, act, out),
            }
        }
        return true;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`).
            *o = unsafe {
                if ty == GgmlType::Q4_0 {
                    arm::dot_q4_0(r, act)
                } else {
                    arm::dot_q8_0(r, act)
                }
            };
        }
        return true;
    }
    let _ = kernel;
    for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = if ty == GgmlType::Q4_0 {
            BlockQ4_0::vec_dot_blocks(r, act)
        } else {
            BlockQ8_0::vec_dot_blocks(r, act)
        };
    }
    true
}

/// The legacy formats' kernels, as const generic parameters.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod legacy {
    /// Q4_1 weights, Q8_1 activations.
    pub const Q4_1: u8 = 0;
    /// Q5_0 weights, Q8_0 activations.
    pub const Q5_0: u8 = 1;
    /// Q5_1 weights, Q8_1 activations.
    pub const Q5_1: u8 = 2;
}

/// `out[i]` = row `i` of `w` (rows of `row_bytes`) · `act` for Q4_1 and Q5_1 weights (`act`
/// a Q8_1 row) and Q5_0 (`act` a Q8_0 row), eight rows at a time on x86-64 with AVX2, one at a
/// time with NEON, each equal to the reference's [`BlockFormat::vec_dot_blocks`]. Returns false
/// (and leaves `out` alone) for other types, where no vector kernel runs, or when `w` is short.
pub fn legacy_rows(
    ty: GgmlType,
    w: &[u8],
    row_bytes: usize,
    act: &[u8],
    out: &mut [f32],
    kernel: Kernel,
) -> bool {
    let kernel = kernel.usable();
    if !matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1)
        || w.len() < out.len() * row_bytes
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar {
        // SAFETY: the x86 kernels are chosen (`Kernel::best`, `available`) only on CPUs with
        // AVX2, FMA and F16C, the function's target features; `w` holds `out.len()` rows.
        unsafe {
            match ty {
                GgmlType::Q4_1 => x86::rows_legacy::<{ legacy::Q4_1 }>(w, row_bytes, act, out),
                GgmlType::Q5_0 => x86::rows_legacy::<{ legacy::Q5_0 }>(w, row_bytes, act, out),
                _ => x86::rows_legacy::<{ legacy::Q5_1 }>(w, row_bytes, act, out),
            }
        }
        return true;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes.max(1))) {
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`); the kernel
            // reads whole blocks of `r` and `act` only.
            *o = unsafe {
                match ty {
                    GgmlType::Q4_1 => arm::dot_legacy::<{ legacy::Q4_1 }>(r, act),
                    GgmlType::Q5_0 => arm::dot_legacy::<{ legacy::Q5_0 }>(r, act),
                    _ => arm::dot_legacy::<{ legacy::Q5_1 }>(r, act),
                }
            };
        }
        return true;
    }
    let _ = (kernel, act);
    false
}

/// `out[i]` = BF16 row `i` of `w` · `x` ([`crate::dot::dot_bf16`]'s order), four rows at a time
/// where a vector kernel runs (each row's eight-lane chain is sequential, so rows side by side
/// are what keeps the adders busy).
pub fn bf16_rows(w: &[u8], x: &[f32], out: &mut [f32], kernel: Kernel) {
    let kernel = kernel.usable();
    let row_bytes = 2 * x.len();
    let n = out.len().min(w.len() / row_bytes.max(1));
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar {
        // SAFETY: the x86 kernels are chosen only on CPUs with AVX2 (and FMA, F16C); `w` holds
        // `n` rows of `x.len()` halves.
        unsafe { x86::rows_bf16(&w[..n * row_bytes], x, &mut out[..n]) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon {
        // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`); `w` holds `n` rows.
        unsafe { arm::rows_bf16(&w[..n * row_bytes], x, &mut out[..n]) };
        return;
    }
    let _ = kernel;
    for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes.max(1))) {
        *o = crate::dot::dot_bf16(r, x);
    }
}

/// [`bf16_rows`] for up to [`MAX_TOKENS`] activation rows at once (a prefill or perplexity
/// batch): each weight vector is widened once for all of them; every result equals the one-row
/// kernel's. False (and `outs` untouched) where no batched kernel runs or the shapes do not fit.
pub fn bf16_rows_multi(w: &[u8], xs: &[&[f32]], outs: &mut [&mut [f32]], kernel: Kernel) -> bool {
    let Some(n) = batch_len(xs.len(), outs) else {
        return false;
    };
    let cols = xs[0].len();
    if xs.iter().any(|x| x.len() != cols) || w.len() < n * 2 * cols {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel.usable() != Kernel::Scalar {
        let w = &w[..n * 2 * cols];
        macro_rules! go {
            ($t:literal) => {{
                let x: &[&[f32]; $t] = xs.try_into().expect("length checked");
                let o: &mut [&mut [f32]; $t] = outs.try_into().expect("length checked");
                // SAFETY: the x86 kernels are chosen only on CPUs with AVX2 (`Avx512Vnni` with
                // AVX-512 F too); `w` holds `n` rows of `cols` bf16 values, every `xs[t]` `cols`
                // values and every `outs[t]` `n` elements (checked above).
                unsafe {
                    if kernel.usable() == Kernel::Avx512Vnni {
                        x86::rows_bf16_multi_512::<$t>(w, x, o);
                    } else {
                        x86::rows_bf16_multi::<$t>(w, x, o);
                    }
                }
            }};
        }
        match xs.len() {
            1 => go!(1),
            2 => go!(2),
            3 => go!(3),
            _ => go!(4),
        }
        return true;
    }
    let _ = kernel;
    false
}

/// A BF16 row's result from its eight lanes: [`crate::dot::dot_bf16`]'s lane sum, then the
/// elements past the last whole eight (`whole` on) one by one.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn bf16_row_sum(lanes: [f32; 8], row: &[u8], x: &[f32], whole: usize) -> f32 {
    let mut s = crate::dot::sum_lanes8(lanes);
    for (b, &xv) in row[2 * whole..].chunks_exact(2).zip(&x[whole..]) {
        s += crate::fp::bf16_to_f32(u16::from_le_bytes([b[0], b[1]])) * xv;
    }
    s
}

/// The most activation rows one call of the batched kernels takes.
pub const MAX_TOKENS: usize = 4;

/// The output length of a batch of `tokens` activations into `outs`: `None` unless there are
/// 1 to [`MAX_TOKENS`] of them, one output each, all of one length (the batched kernels' shape).
pub(crate) fn batch_len(tokens: usize, outs: &[&mut [f32]]) -> Option<usize> {
    let n = outs.first().map_or(0, |o| o.len());
    ((1..=MAX_TOKENS).contains(&tokens)
        && tokens == outs.len()
        && outs.iter().all(|o| o.len() == n))
    .then_some(n)
}

/// [`q8_0_partner_rows`] for up to [`MAX_TOKENS`] activation rows at once (a prefill batch):
/// `outs[t][i]` = row `i` · `acts[t]`. Each weight block is loaded and unpacked once for all of
/// them; every result equals the one-row kernel's. Returns false for other types or when
/// `acts` is empty or longer than [`MAX_TOKENS`].
pub fn q8_0_partner_rows_multi(
    ty: GgmlType,
    w: &[u8],
    row_bytes: usize,
    acts: &[&[u8]],
    sums: &[&BlockSums],
    outs: &mut [&mut [f32]],
    kernel: Kernel,
) -> bool {
    let kernel = kernel.usable();
    let Some(n) = batch_len(acts.len(), outs) else {
        return false;
    };
    if !matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0)
        || sums.len() != acts.len()
        || sums
            .iter()
            .any(|s| s.blocks() < row_bytes / ty.type_size() as usize)
        || w.len() < n * row_bytes
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512Vnni && row_bytes.checked_mul(8).is_some_and(|b| b < 1 << 31) {
        macro_rules! go {
            ($t:literal) => {{
                let a: &[&[u8]; $t] = acts.try_into().expect("length checked");
                let o: &mut [&mut [f32]; $t] = outs.try_into().expect("length checked");
                let s: &[&BlockSums; $t] = sums.try_into().expect("length checked");
                // SAFETY: `Kernel::Avx512Vnni` is chosen only on CPUs with its features, the
                // functions' target features; lengths were checked above.
                unsafe {
                    if ty == GgmlType::Q4_0 {
                        x86::rows_q4_0_vnni_multi::<$t>(w, row_bytes, a, s, o)
                    } else {
                        x86::rows_q8_0_vnni_multi::<$t>(w, row_bytes, a, s, o)
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
        return true;
    }
    for ((a, s), o) in acts.iter().zip(sums).zip(outs.iter_mut()) {
        q8_0_partner_rows(ty, w, row_bytes, a, s, o, kernel);
    }
    true
}

/// [`f16_rows`] for up to [`MAX_TOKENS`] activation rows at once: each weight vector is
/// converted once for all of them; every result equals the one-row kernel's.
pub fn f16_rows_multi(w: &[u8], xs: &[&[f32]], outs: &mut [&mut [f32]], kernel: Kernel) {
    let kernel = kernel.usable();
    #[cfg(target_arch = "x86_64")]
    let cols = xs.first().map_or(0, |x| x.len());
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx512Vnni
        && !xs.is_empty()
        && xs.len() <= MAX_TOKENS
        && xs.len() == outs.len()
        && xs.iter().all(|x| x.len() == cols)
    {
        let n = outs[0].len();
        for r in 0..n {
            let row = &w[2 * cols * r..2 * cols * (r + 1)];
            let mut res = [0f32; MAX_TOKENS];
            // SAFETY: `Kernel::Avx512Vnni` is chosen only on CPUs with its features.
            unsafe { x86::dot_f16_512_multi(row, xs, &mut res) };
            for (o, v) in outs.iter_mut().zip(res) {
                o[r] = v;
            }
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon
        && !xs.is_empty()
        && xs.len() <= MAX_TOKENS
        && xs.len() == outs.len()
        && xs.iter().all(|x| x.len() == xs[0].len())
    {
        let cols = xs[0].len();
        for r in 0..outs[0].len() {
            let mut res = [0f32; MAX_TOKENS];
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`).
            unsafe { arm::dot_f16_multi(&w[2 * cols * r..2 * cols * (r + 1)], xs, &mut res) };
            for (o, v) in outs.iter_mut().zip(res) {
                o[r] = v;
            }
        }
        return;
    }
    for (x, o) in xs.iter().zip(outs.iter_mut()) {
        f16_rows(w, x, o, kernel);
    }
}

/// [`nf4_rows`] for up to [`MAX_TOKENS`] activation rows at once (a prefill or perplexity
/// batch): each weight is looked up and scaled once for all of them; every result equals the
/// one-row kernel's. False (and `outs` untouched) where no vector kernel runs or the shapes do
/// not fit.
pub fn nf4_rows_multi(
    w: &[u8],
    absmax: &[u8],
    xs: &[&[f32]],
    outs: &mut [&mut [f32]],
    kernel: Kernel,
) -> bool {
    let Some(n) = batch_len(xs.len(), outs) else {
        return false;
    };
    let cols = xs[0].len();
    let (row_bytes, scale_bytes) = (cols / 2, cols / crate::nf4::NF4_BLOCK * 4);
    if xs.iter().any(|x| x.len() != cols)
        || !cols.is_multiple_of(crate::nf4::NF4_BLOCK)
        || w.len() < n * row_bytes
        || absmax.len() < n * scale_bytes
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel.usable() != Kernel::Scalar {
        let wide = kernel.usable() == Kernel::Avx512Vnni;
        macro_rules! go {
            ($t:literal) => {{
                let x: &[&[f32]; $t] = xs.try_into().expect("length checked");
                let o: &mut [&mut [f32]; $t] = outs.try_into().expect("length checked");
                // SAFETY: the x86 kernels are chosen only on CPUs with AVX2 (`Avx512Vnni` with
                // AVX-512 F/VL too); `w` and `absmax` hold `n` rows, every `xs[t]` `cols`
                // values (a multiple of 64) and every `outs[t]` `n` elements (checked above).
                unsafe {
                    if wide {
                        x86::rows_nf4_multi_512::<$t>(w, absmax, x, o);
                    } else {
                        x86::rows_nf4_multi::<$t>(w, absmax, x, o);
                    }
                }
            }};
        }
        match xs.len() {
            1 => go!(1),
            2 => go!(2),
            3 => go!(3),
            _ => go!(4),
        }
        return true;
    }
    let _ = kernel;
    false
}

/// `out[i]` = NF4 row `i` of `w` (`cols / 2` code bytes a row) · `x`, with `absmax` the rows'
/// block scales (little-endian f32, `cols / 64` a row); each equals [`crate::nf4::dot_nf4`].
pub fn nf4_rows(w: &[u8], absmax: &[u8], x: &[f32], out: &mut [f32], kernel: Kernel) {
    let kernel = kernel.usable();
    let (row_bytes, scale_bytes) = (x.len() / 2, x.len() / crate::nf4::NF4_BLOCK * 4);
    let rows = w
        .chunks_exact(row_bytes.max(1))
        .zip(absmax.chunks_exact(scale_bytes.max(1)));
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar && x.len().is_multiple_of(crate::nf4::NF4_BLOCK) {
        let n = out
            .len()
            .min(w.len() / row_bytes.max(1))
            .min(absmax.len() / scale_bytes.max(1));
        let (w, absmax, out) = (
            &w[..n * row_bytes],
            &absmax[..n * scale_bytes],
            &mut out[..n],
        );
        // SAFETY: the vector kernels are chosen only on CPUs with their features; `w` and
        // `absmax` hold `n` whole rows of the lengths the functions need.
        unsafe {
            if kernel == Kernel::Avx512Vnni {
                x86::rows_nf4_512(w, absmax, x, out);
            } else {
                x86::rows_nf4(w, absmax, x, out);
            }
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon && x.len().is_multiple_of(crate::nf4::NF4_BLOCK) {
        for (o, (r, a)) in out.iter_mut().zip(rows) {
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`); the rows are
            // whole.
            *o = unsafe { arm::dot_nf4(r, a, x) };
        }
        return;
    }
    let _ = kernel;
    for (o, (r, a)) in out.iter_mut().zip(rows) {
        *o = crate::nf4::dot_nf4(r, a, x);
    }
}

/// `out[i]` = Q6_K row `i` of `w` · `act`, a Q8_K activation row.
pub fn q6_k_rows(w: &[u8], row_bytes: usize, act: &[u8], out: &mut [f32], kernel: Kernel) {
    let kernel = kernel.usable();
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: both vector kernels are chosen only on CPUs with AVX2, FMA and F16C.
            *o = unsafe { x86::dot_q6_k(r, act) };
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`).
            *o = unsafe { arm::dot_q6_k(r, act) };
        }
        return;
    }
    let _ = kernel;
    for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = BlockQ6_K::vec_dot_blocks(r, act);
    }
}

/// A batch's F16 rows (`outs[t][i]` = row `i` · `xs[t]`) in llama.cpp's batched order
/// ([`crate::dot::dot_f16_tiled`]): `w` holds `outs[t].len()` rows, a multiple of 4, and every
/// `xs[t]` holds f16 values. Four rows by up to four tokens share each load.
pub fn f16_rows_tiled(w: &[u8], xs: &[&[f32]], outs: &mut [&mut [f32]], kernel: Kernel) {
    let kernel = kernel.usable();
    let cols = xs.first().map_or(0, |x| x.len());
    #[cfg(target_arch = "x86_64")]
    let n = outs.first().map_or(0, |o| o.len());
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar
        && cols.is_multiple_of(16)
        && n.is_multiple_of(4)
        && !xs.is_empty()
        && xs.len() <= MAX_TOKENS
        && xs.len() == outs.len()
        && xs.iter().all(|x| x.len() == cols)
        && outs.iter().all(|o| o.len() == n)
        && w.len() >= 2 * cols * n
    {
        for r in (0..n).step_by(4) {
            let mut res = [[0f32; MAX_TOKENS]; 4];
            let rows = &w[2 * cols * r..2 * cols * (r + 4)];
            // SAFETY: the vector kernels are chosen only on CPUs with their features (AVX-512
            // for `Avx512Vnni`, AVX2, FMA and F16C for the others); rows r..r+4 are within `w`
            // and every activation has `cols` values, a multiple of 16.
            unsafe {
                if kernel == Kernel::Avx512Vnni {
                    x86::dot_f16_tiled_4rows(rows, xs, &mut res)
                } else {
                    x86::dot_f16_tiled_4rows_avx2(rows, xs, &mut res)
                }
            };
            for (t, o) in outs.iter_mut().enumerate() {
                for k in 0..4 {
                    o[r + k] = res[k][t];
                }
            }
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon
        && cols.is_multiple_of(16)
        && !xs.is_empty()
        && xs.len() <= MAX_TOKENS
        && xs.len() == outs.len()
        && xs.iter().all(|x| x.len() == cols)
    {
        let n = outs.iter().map(|o| o.len()).min().unwrap_or(0);
        for (r, row) in w.chunks_exact(2 * cols).take(n).enumerate() {
            let mut res = [0f32; MAX_TOKENS];
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`); the row holds
            // `cols` halves, a multiple of 16, as every activation holds `cols` values.
            unsafe { arm::dot_f16_tiled_row(row, xs, &mut res) };
            for (o, v) in outs.iter_mut().zip(res) {
                o[r] = v;
            }
        }
        return;
    }
    let _ = kernel;
    for (x, o) in xs.iter().zip(outs.iter_mut()) {
        for (i, v) in o.iter_mut().enumerate() {
            *v = crate::dot::dot_f16_tiled(&w[2 * cols * i..2 * cols * (i + 1)], x);
        }
    }
}

/// `out[i]` = Q5_K row `i` of `w` · `act`, a Q8_K activation row.
pub fn q5_k_rows(w: &[u8], row_bytes: usize, act: &[u8], out: &mut [f32], kernel: Kernel) {
    let kernel = kernel.usable();
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512Vnni) {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: both x86 vector kernels run only on CPUs with AVX2, FMA and F16C.
            *o = unsafe { x86::dot_q5_k(r, act) };
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`).
            *o = unsafe { arm::dot_q5_k(r, act) };
        }
        return;
    }
    let _ = kernel;
    for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = BlockQ5_K::vec_dot_blocks(r, act);
    }
}

/// `out[i]` = Q4_K row `i` of `w` · `act`, a Q8_K activation row.
pub fn q4_k_rows(w: &[u8], row_bytes: usize, act: &[u8], out: &mut [f32], kernel: Kernel) {
    let kernel = kernel.usable();
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: both vector kernels are chosen only on CPUs with AVX2, FMA and F16C.
            *o = unsafe { x86::dot_q4_k(r, act) };
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`).
            *o = unsafe { arm::dot_q4_k(r, act) };
        }
        return;
    }
    let _ = kernel;
    for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = BlockQ4_K::vec_dot_blocks(r, act);
    }
}

/// [`q4_k_rows`] or [`q5_k_rows`] (by `ty`) for up to [`MAX_TOKENS`] Q8_K activation rows at
/// once (a prefill batch): `outs[t][i]` = row `i` · `acts[t]`, each the one-row kernel's
/// result. False (and `outs` untouched) for other types, where no batched kernel runs, or when
/// the shapes do not fit.
pub fn k_quant_rows_multi(
    ty: GgmlType,
    w: &[u8],
    row_bytes: usize,
    acts: &[&[u8]],
    outs: &mut [&mut [f32]],
    kernel: Kernel,
) -> bool {
    let kernel = kernel.usable();
    let Some(n) = batch_len(acts.len(), outs) else {
        return false;
    };
    if !matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K) || row_bytes == 0 || w.len() < n * row_bytes {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar {
        let q5 = ty == GgmlType::Q5_K;
        macro_rules! go {
            ($t:literal) => {{
                let a: &[&[u8]; $t] = acts.try_into().expect("length checked");
                for (i, r) in w.chunks_exact(row_bytes).take(n).enumerate() {
                    // SAFETY: the x86 kernels are chosen only on CPUs with AVX2, FMA and F16C.
                    let res = unsafe {
                        if q5 {
                            x86::dot_k_multi::<true, $t>(r, a)
                        } else {
                            x86::dot_k_multi::<false, $t>(r, a)
                        }
                    };
                    for (o, v) in outs.iter_mut().zip(res) {
                        o[i] = v;
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
        return true;
    }
    let _ = kernel;
    false
}

/// `out[i]` = F16 row `i` of `w` · `x` ([`dot_f16`]'s order). `x` must hold f16 values (each
/// exactly representable as f16), as the runner's converted activations do: the kernels then
/// fuse the multiply-add with the same result.
pub fn f16_rows(w: &[u8], x: &[f32], out: &mut [f32], kernel: Kernel) {
    let kernel = kernel.usable();
    let row_bytes = 2 * x.len();
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: the vector kernels are chosen only on CPUs with their features.
            *o = unsafe {
                if kernel == Kernel::Avx512Vnni {
                    x86::dot_f16_512(r, x)
                } else {
                    x86::dot_f16(r, x)
                }
            };
        }
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::Neon {
        for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            // SAFETY: `Kernel::Neon` runs only where NEON is present (`usable`).
            *o = unsafe { arm::dot_f16(r, x) };
        }
        return;
    }
    let _ = kernel;
    for (o, r) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = dot_f16(r, x);
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    use super::legacy;
    use crate::fp::half_at;

    /// [`super::legacy_rows`]' dot for one row with NEON: each block's integer sum is exact
    /// (codes ≤ 31, less 16 for Q5_0, against the activation's with widening multiplies), then
    /// the reference's float steps: Q5_0 `sum += isum · (dw·dy)`, Q4_1 and Q5_1
    /// `sum += (dw·dy)·isum + m·s`.
    ///
    /// # Safety
    /// The CPU must have NEON. Only whole blocks are read: `w`'s of 20, 22 or 24 bytes (Q4_1,
    /// Q5_0, Q5_1) and as many of `a`'s 36, 34 or 36.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_legacy<const F: u8>(w: &[u8], a: &[u8]) -> f32 {
        let (wb, codes_at, ab) = match F {
            legacy::Q4_1 => (20, 4, 36),
            legacy::Q5_0 => (22, 6, 34),
            _ => (24, 8, 36),
        };
        // Element i of a half takes byte i / 8 of its two `qh` bytes and tests bit i % 8.
        const LOW_BYTES: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        const HIGH_BYTES: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
        const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
        // SAFETY: each table is 16 bytes.
        let (low_bytes, high_bytes, bits) = unsafe {
            (
                vld1q_u8(LOW_BYTES.as_ptr()),
                vld1q_u8(HIGH_BYTES.as_ptr()),
                vld1q_u8(BITS.as_ptr()),
            )
        };
        let (m4, sixteen) = (vdupq_n_u8(0x0F), vdupq_n_u8(16));
        let mut sum = 0f32;
        for (x, y) in w.chunks_exact(wb).zip(a.chunks_exact(ab)) {
            // SAFETY: the weight block holds 16 packed code bytes from `codes_at`, the
            // activation block its 32 codes in its last 32 bytes.
            let (raw, y0, y1) = unsafe {
                (
                    vld1q_u8(x.as_ptr().add(codes_at)),
                    vld1q_s8(y.as_ptr().add(ab - 32).cast()),
                    vld1q_s8(y.as_ptr().add(ab - 16).cast()),
                )
            };
            // Elements 0..16 are the low nibbles, 16..32 the high ones.
            let (mut lo, mut hi) = (vandq_u8(raw, m4), vshrq_n_u8::<4>(raw));
            if F != legacy::Q4_1 {
                let h = codes_at - 4;
                let qh = u32::from_le_bytes([x[h], x[h + 1], x[h + 2], x[h + 3]]);
                let qh = vreinterpretq_u8_u32(vdupq_n_u32(qh));
                let top = |at| vandq_u8(vtstq_u8(vqtbl1q_u8(qh, at), bits), sixteen);
                lo = vorrq_u8(lo, top(low_bytes));
                hi = vorrq_u8(hi, top(high_bytes));
            }
            if F == legacy::Q5_0 {
                lo = vsubq_u8(lo, sixteen);
                hi = vsubq_u8(hi, sixteen);
            }
            let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
            let isum = vaddvq_s32(dot16(dot16(vdupq_n_s32(0), lo, y0), hi, y1));
            let d = half_at(x, 0) * half_at(y, 0);
            sum += if F == legacy::Q5_0 {
                isum as f32 * d
            } else {
                d * isum as f32 + half_at(x, 2) * half_at(y, 2)
            };
        }
        sum
    }

    /// `acc` plus the exact products of 16 signed byte pairs (i16 products, pairwise into i32).
    #[inline]
    #[target_feature(enable = "neon")]
    fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }

    /// [`crate::dot::BlockQ8_0`]'s dot with NEON: the exact block sum, then the reference's
    /// fused multiply-add.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` and `a` hold whole 34-byte blocks.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_q8_0(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0f32;
        for (x, y) in w.chunks_exact(34).zip(a.chunks_exact(34)) {
            // SAFETY: each block holds 32 codes from offset 2.
            let (x0, x1, y0, y1) = unsafe {
                (
                    vld1q_s8(x.as_ptr().add(2).cast()),
                    vld1q_s8(x.as_ptr().add(18).cast()),
                    vld1q_s8(y.as_ptr().add(2).cast()),
                    vld1q_s8(y.as_ptr().add(18).cast()),
                )
            };
            let isum = vaddvq_s32(dot16(dot16(vdupq_n_s32(0), x0, y0), x1, y1));
            sum = (isum as f32).mul_add(half_at(x, 0) * half_at(y, 0), sum);
        }
        sum
    }

    /// [`crate::nf4::dot_nf4`] with NEON: eight codes at a time, each looked up as the four
    /// bytes of its codebook float by one table lookup over the 64-byte codebook, then the
    /// reference's multiplies and eight lane sums (two four-lane vectors), in its order.
    ///
    /// # Safety
    /// The CPU must have NEON; `x.len()` must be a multiple of 64, with `codes` holding
    /// `x.len() / 2` bytes and `absmax` `x.len() / 16`.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_nf4(codes: &[u8], absmax: &[u8], x: &[f32]) -> f32 {
        use crate::nf4::{NF4_BLOCK, NF4_CODEBOOK};
        let blocks = (x.len() / NF4_BLOCK)
            .min(codes.len() / (NF4_BLOCK / 2))
            .min(absmax.len() / 4);
        // The codebook's 64 bytes as they lie in memory: little-endian floats, as the lanes
        // read them back.
        let book = NF4_CODEBOOK.as_ptr().cast::<u8>();
        // Element e of four takes table bytes 4·code + 0..4: `spread` repeats each element's
        // (code · 4) four times, `byte` adds 0..4.
        const SPREAD: [[u8; 16]; 2] = [
            [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3],
            [4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7],
        ];
        const BYTE: [u8; 16] = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3];
        // SAFETY: the loads read the 64-byte table and the 16-byte constants.
        let (table, spread, byte) = unsafe {
            (
                uint8x16x4_t(
                    vld1q_u8(book),
                    vld1q_u8(book.add(16)),
                    vld1q_u8(book.add(32)),
                    vld1q_u8(book.add(48)),
                ),
                [vld1q_u8(SPREAD[0].as_ptr()), vld1q_u8(SPREAD[1].as_ptr())],
                vld1q_u8(BYTE.as_ptr()),
            )
        };
        let mut acc = [vdupq_n_f32(0.0); 2];
        for b in 0..blocks {
            let am = vdupq_n_f32(f32::from_le_bytes([
                absmax[4 * b],
                absmax[4 * b + 1],
                absmax[4 * b + 2],
                absmax[4 * b + 3],
            ]));
            for g in 0..NF4_BLOCK / 8 {
                let at = NF4_BLOCK / 2 * b + 4 * g;
                let four =
                    u32::from_le_bytes([codes[at], codes[at + 1], codes[at + 2], codes[at + 3]]);
                let raw = vcreate_u8(u64::from(four));
                // Byte k holds elements 2k (high nibble) and 2k + 1 (low nibble).
                let idx = vzip1_u8(vshr_n_u8::<4>(raw), vand_u8(raw, vdup_n_u8(0x0F)));
                let idx4 = vshlq_n_u8::<2>(vcombine_u8(idx, idx));
                for (h, a) in acc.iter_mut().enumerate() {
                    let sel = vaddq_u8(vqtbl1q_u8(idx4, spread[h]), byte);
                    let w = vreinterpretq_f32_u8(vqtbl4q_u8(table, sel));
                    // SAFETY: element 64b + 8g + 4h + 4 <= blocks · 64 <= x.len().
                    let xv = unsafe { vld1q_f32(x.as_ptr().add(NF4_BLOCK * b + 8 * g + 4 * h)) };
                    *a = vaddq_f32(*a, vmulq_f32(vmulq_f32(w, am), xv));
                }
            }
        }
        let mut l = [0f32; 8];
        // SAFETY: `l` has eight floats.
        unsafe {
            vst1q_f32(l.as_mut_ptr(), acc[0]);
            vst1q_f32(l.as_mut_ptr().add(4), acc[1]);
        }
        crate::dot::sum_lanes8(l)
    }

    /// [`crate::dot::BlockQ4_0`]'s dot with NEON.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` holds whole 18-byte blocks and `a` as many 34-byte ones.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_q4_0(w: &[u8], a: &[u8]) -> f32 {
        let mut sum = 0f32;
        let eight = vdupq_n_s8(8);
        for (x, y) in w.chunks_exact(18).zip(a.chunks_exact(34)) {
            // SAFETY: the weight block holds 16 packed bytes from offset 2, the activation
            // block 32 codes from offset 2.
            let (raw, y0, y1) = unsafe {
                (
                    vld1q_u8(x.as_ptr().add(2)),
                    vld1q_s8(y.as_ptr().add(2).cast()),
                    vld1q_s8(y.as_ptr().add(18).cast()),
                )
            };
            let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))), eight);
            let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw)), eight);
            let isum = vaddvq_s32(dot16(dot16(vdupq_n_s32(0), lo, y0), hi, y1));
            sum = (isum as f32).mul_add(half_at(x, 0) * half_at(y, 0), sum);
        }
        sum
    }
    /// [`crate::dot::BlockQ6_K`]'s dot with NEON: the exact integer superblock sum (codes
    /// rebuilt from `ql`/`qh` sixteen at a time, one exact dot per sub-block times its scale),
    /// then the reference's `sum += d · isum`.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` holds whole 210-byte blocks and `a` as many 292-byte ones.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_q6_k(w: &[u8], a: &[u8]) -> f32 {
        let (m4, m2, off) = (vdupq_n_u8(0x0F), vdupq_n_u8(3), vdupq_n_s8(32));
        let mut sum = 0f32;
        for (x, y) in w.chunks_exact(210).zip(a.chunks_exact(292)) {
            let mut isum = 0i32;
            for half in 0..2 {
                for l in [0, 16] {
                    // SAFETY: `ql` bytes 64·half + l (+32) and `qh` bytes 128 + 32·half + l,
                    // sixteen each, are within the 210-byte block.
                    let (qa, qb, h) = unsafe {
                        (
                            vld1q_u8(x.as_ptr().add(64 * half + l)),
                            vld1q_u8(x.as_ptr().add(64 * half + l + 32)),
                            vld1q_u8(x.as_ptr().add(128 + 32 * half + l)),
                        )
                    };
                    // Elements l.., l + 32.., l + 64.., l + 96.. of this half.
                    let codes = [
                        vorrq_u8(vandq_u8(qa, m4), vshlq_n_u8::<4>(vandq_u8(h, m2))),
                        vorrq_u8(
                            vandq_u8(qb, m4),
                            vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(h), m2)),
                        ),
                        vorrq_u8(
                            vshrq_n_u8::<4>(qa),
                            vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(h), m2)),
                        ),
                        vorrq_u8(vshrq_n_u8::<4>(qb), vshlq_n_u8::<4>(vshrq_n_u8::<6>(h))),
                    ];
                    for (k, code) in codes.into_iter().enumerate() {
                        let e = 128 * half + 32 * k + l;
                        let q = vsubq_s8(vreinterpretq_s8_u8(code), off);
                        // SAFETY: activation codes e..e + 16 are within the 256 from byte 4.
                        let yv = unsafe { vld1q_s8(y.as_ptr().add(4 + e).cast()) };
                        let dot = vaddvq_s32(dot16(vdupq_n_s32(0), q, yv));
                        isum += i32::from(x[192 + e / 16] as i8) * dot;
                    }
                }
            }
            let d = half_at(x, 208) * f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
            sum += d * isum as f32;
        }
        sum
    }

    /// [`crate::dot::BlockQ4_K`]'s dot with NEON: the exact sum Σ scale·q·y (NEON) and the
    /// reference's Σ min·bsum, then its two float steps per block.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` holds whole 144-byte blocks and `a` as many 292-byte ones.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_q4_k(w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: the caller's contract is `dot_k`'s.
        unsafe { dot_k::<false>(w, a) }
    }

    /// [`crate::dot::BlockQ5_K`]'s dot with NEON: as [`dot_q4_k`], each code's fifth bit from
    /// `qh`.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` holds whole 176-byte blocks and `a` as many 292-byte ones.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_q5_k(w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: the caller's contract is `dot_k`'s.
        unsafe { dot_k::<true>(w, a) }
    }

    /// Q4_K (or, `Q5`, Q5_K) blocks against Q8_K ones: per 64-element chunk `c`, the low
    /// nibbles are sub-block 2c, the high ones 2c + 1; Q5_K's bit 2c (2c + 1) of `qh[l]` tops
    /// element l's code.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` holds whole blocks (144 or 176 bytes) and `a` as many
    /// 292-byte ones.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn dot_k<const Q5: bool>(w: &[u8], a: &[u8]) -> f32 {
        let m4 = vdupq_n_u8(0x0F);
        let sixteen = vdupq_n_u8(16);
        let (block, codes) = if Q5 { (176, 48) } else { (144, 16) };
        let mut sum = 0f32;
        for (x, y) in w.chunks_exact(block).zip(a.chunks_exact(292)) {
            let scales = &x[4..16];
            let qh = if Q5 {
                // SAFETY: Q5_K's 32 `qh` bytes are 16..48 of its block.
                unsafe { [vld1q_u8(x.as_ptr().add(16)), vld1q_u8(x.as_ptr().add(32))] }
            } else {
                [vdupq_n_u8(0); 2]
            };
            let mut isum = 0i32;
            for c in 0..4 {
                let (sc1, _) = crate::kquants::scale_min_k4(2 * c, scales);
                let (sc2, _) = crate::kquants::scale_min_k4(2 * c + 1, scales);
                // SAFETY: codes `codes` + 32c.. (32 bytes) are within the block, activation
                // codes 4 + 64c.. (64 bytes) within the 292.
                let (q0, q1, y0, y1, y2, y3) = unsafe {
                    let (q, yy) = (x.as_ptr().add(codes + 32 * c), y.as_ptr().add(4 + 64 * c));
                    (
                        vld1q_u8(q),
                        vld1q_u8(q.add(16)),
                        vld1q_s8(yy.cast()),
                        vld1q_s8(yy.add(16).cast()),
                        vld1q_s8(yy.add(32).cast()),
                        vld1q_s8(yy.add(48).cast()),
                    )
                };
                // The fifth bit of element l (0..16 from `qh[0]`, 16..32 from `qh[1]`).
                let top = |h: uint8x16_t, bit: u32| {
                    if Q5 {
                        vandq_u8(vtstq_u8(h, vdupq_n_u8(1 << bit)), sixteen)
                    } else {
                        vdupq_n_u8(0)
                    }
                };
                let (b_lo, b_hi) = (2 * c as u32, 2 * c as u32 + 1);
                let lo = |v, h| vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, m4), top(h, b_lo)));
                let hi = |v, h| vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(v), top(h, b_hi)));
                let zero = vdupq_n_s32(0);
                let d1 = vaddvq_s32(dot16(dot16(zero, lo(q0, qh[0]), y0), lo(q1, qh[1]), y1));
                let d2 = vaddvq_s32(dot16(dot16(zero, hi(q0, qh[0]), y2), hi(q1, qh[1]), y3));
                isum += i32::from(sc1) * d1 + i32::from(sc2) * d2;
            }
            let msum = crate::dot::k_mins_sum(scales, y);
            let dy = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
            sum += half_at(x, 0) * dy * isum as f32;
            sum -= half_at(x, 2) * dy * msum as f32;
        }
        sum
    }

    /// [`super::bf16_rows`] with NEON: as the AVX2 kernel, each row's eight lanes as two
    /// vectors of four.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` holds `out.len()` rows of `x.len()` bf16 values.
    #[target_feature(enable = "neon")]
    pub unsafe fn rows_bf16(w: &[u8], x: &[f32], out: &mut [f32]) {
        let n = x.len();
        let whole = n / 8 * 8;
        let mut r0 = 0;
        while r0 < out.len() {
            let rows = (out.len() - r0).min(4);
            let mut acc = [[vdupq_n_f32(0.0); 2]; 4];
            for i in (0..whole).step_by(8) {
                // SAFETY: i + 8 <= n: 8 floats of `x` and 16 bytes of each row from 2i.
                unsafe {
                    let x0 = vld1q_f32(x.as_ptr().add(i));
                    let x1 = vld1q_f32(x.as_ptr().add(i + 4));
                    for (r, a) in acc.iter_mut().enumerate().take(rows) {
                        let h = vld1q_u16(w.as_ptr().add(2 * ((r0 + r) * n + i)).cast());
                        let w0 = vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h)));
                        let w1 = vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_high_u16(h)));
                        a[0] = vaddq_f32(a[0], vmulq_f32(w0, x0));
                        a[1] = vaddq_f32(a[1], vmulq_f32(w1, x1));
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(rows) {
                let mut lanes = [0f32; 8];
                // SAFETY: `lanes` holds eight floats.
                unsafe {
                    vst1q_f32(lanes.as_mut_ptr(), a[0]);
                    vst1q_f32(lanes.as_mut_ptr().add(4), a[1]);
                }
                let row = &w[2 * (r0 + r) * n..2 * (r0 + r + 1) * n];
                out[r0 + r] = super::bf16_row_sum(lanes, row, x, whole);
            }
            r0 += rows;
        }
    }

    /// Eight halves at `p` as two vectors of four floats (exact: every f16 is an f32).
    ///
    /// # Safety
    /// The CPU must have NEON; 16 bytes from `p` must be readable.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn halves8(p: *const u8) -> (float32x4_t, float32x4_t) {
        // SAFETY: the caller guarantees the 16 bytes.
        let h = unsafe { vld1q_u16(p.cast()) };
        (
            vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))),
            vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h))),
        )
    }

    /// [`crate::dot::dot_f16`] with NEON: the reference's 64 lanes as sixteen vectors (the
    /// products of f16 values are exact, so the fused multiply-add rounds as the reference's
    /// separate ones do), its reduction and its f64 tail.
    ///
    /// # Safety
    /// The CPU must have NEON.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
        let mut out = [0f32; 1];
        // SAFETY: the caller's contract is this function's.
        unsafe { dot_f16_multi(w, &[x], &mut out) };
        out[0]
    }

    /// [`dot_f16`] of one row against up to four activations (`out[t]` for `xs[t]`; all of
    /// one length): each weight vector is converted once for all of them.
    ///
    /// # Safety
    /// The CPU must have NEON.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_f16_multi(w: &[u8], xs: &[&[f32]], out: &mut [f32]) {
        let nt = xs.len().min(out.len()).min(4);
        let n = xs[..nt]
            .iter()
            .map(|x| x.len())
            .min()
            .unwrap_or(0)
            .min(w.len() / 2);
        let whole = n / 64 * 64;
        // Lanes 4k..4k + 4 of the reference's 64 in acc[t][k].
        let mut acc = [[vdupq_n_f32(0.0); 16]; 4];
        for i in (0..whole).step_by(64) {
            for k in (0..16).step_by(2) {
                let j = i + 4 * k;
                // SAFETY: j + 8 <= whole <= n: 16 bytes of `w` from 2j and 8 floats of each
                // activation from j are in bounds.
                unsafe {
                    let (w0, w1) = halves8(w.as_ptr().add(2 * j));
                    for t in 0..nt {
                        let x = xs[t].as_ptr().add(j);
                        acc[t][k] = vfmaq_f32(acc[t][k], w0, vld1q_f32(x));
                        acc[t][k + 1] = vfmaq_f32(acc[t][k + 1], w1, vld1q_f32(x.add(4)));
                    }
                }
            }
        }
        for t in 0..nt {
            let mut lanes = [0f32; 64];
            for (k, a) in acc[t].iter().enumerate() {
                // SAFETY: lanes 4k..4k + 4 are in bounds (k < 16).
                unsafe { vst1q_f32(lanes.as_mut_ptr().add(4 * k), *a) };
            }
            let mut sum = f64::from(crate::dot::reduce_f16_lanes(&lanes));
            for (wb, &xv) in w[2 * whole..2 * n].chunks_exact(2).zip(&xs[t][whole..n]) {
                sum += f64::from(crate::fp::f16_to_f32(u16::from_le_bytes([wb[0], wb[1]])) * xv);
            }
            out[t] = sum as f32;
        }
    }

    /// One F16 row against up to four activations in [`crate::dot::dot_f16_tiled`]'s order:
    /// sixteen lanes per activation (four vectors), then [`crate::dot::reduce16`].
    ///
    /// # Safety
    /// The CPU must have NEON; every `xs[t]` has `w.len() / 2` values, a multiple of 16.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_f16_tiled_row(w: &[u8], xs: &[&[f32]], out: &mut [f32]) {
        let nt = xs.len().min(out.len()).min(4);
        let cols = w.len() / 2;
        let mut acc = [[vdupq_n_f32(0.0); 4]; 4];
        for l in (0..cols).step_by(16) {
            // SAFETY: l + 16 <= cols: 32 bytes of `w` from 2l and 16 floats of every
            // activation from l are in bounds.
            unsafe {
                let (w0, w1) = halves8(w.as_ptr().add(2 * l));
                let (w2, w3) = halves8(w.as_ptr().add(2 * l + 16));
                for t in 0..nt {
                    let x = xs[t].as_ptr().add(l);
                    acc[t][0] = vfmaq_f32(acc[t][0], w0, vld1q_f32(x));
                    acc[t][1] = vfmaq_f32(acc[t][1], w1, vld1q_f32(x.add(4)));
                    acc[t][2] = vfmaq_f32(acc[t][2], w2, vld1q_f32(x.add(8)));
                    acc[t][3] = vfmaq_f32(acc[t][3], w3, vld1q_f32(x.add(12)));
                }
            }
        }
        for t in 0..nt {
            let mut lanes = [0f32; 16];
            for (k, a) in acc[t].iter().enumerate() {
                // SAFETY: lanes 4k..4k + 4 are in bounds (k < 4).
                unsafe { vst1q_f32(lanes.as_mut_ptr().add(4 * k), *a) };
            }
            out[t] = crate::dot::reduce16(&lanes);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use crate::dot::{
        BlockFormat, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockSums,
        reduce_f16_lanes,
    };

    /// How far ahead of the weights being read the streaming kernels ask for lines: measured
    /// best on a 2-core AVX-512 VM (1024 bytes left ~5% of decode speed, 4096 no better).
    pub(crate) const PREFETCH_BYTES: usize = 2048;

    /// Asks for the lines [`PREFETCH_BYTES`] ahead of the `len` bytes at `p`. The kernels that
    /// stream rows in the file's layout call it once per block: rows lie back to back, so this
    /// runs ahead into the next row too (Q4_K decode went 34-36 -> 47-51 tokens/s with it: the
    /// hardware prefetcher alone leaves the loads waiting).
    #[inline]
    #[target_feature(enable = "sse")]
    fn prefetch_ahead(p: *const u8, len: usize) {
        for o in (0..len).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES + o).cast());
        }
    }

    /// AVX-VNNI besides AVX2: the 256-bit VNNI packed kernels' requirement.
    pub fn has_avx_vnni() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avxvnni"))
    }

    /// AVX-512 with VNNI (and BW, VL) besides AVX2: the wide kernels' requirements.
    pub fn has_avx512_vnni() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
        })
    }

    /// The eight rows' f16 block scales at byte `off` of each row (rows at the byte offsets in
    /// `rows` from `base`), as f32.
    ///
    /// # Safety
    /// Each row must have at least 4 readable bytes from `off`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,f16c")]
    unsafe fn row_scales(base: *const u8, off: usize, rows: __m256i) -> __m256 {
        // SAFETY: the caller guarantees 4 bytes at `off` in every row; the gather reads 4
        // bytes per row and the low two are the scale.
        let raw = unsafe { _mm256_i32gather_epi32::<1>(base.add(off).cast(), rows) };
        _mm256_cvtph_ps(_mm256_cvtepi32_epi16(raw))
    }

    /// Block `off` (its 16 code bytes) of four rows `row_bytes` apart from `p`, one row per
    /// 128-bit lane.
    ///
    /// # Safety
    /// The four rows' 16 bytes from `off + 2` must be readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn load4_q4(p: *const u8, row_bytes: usize, off: usize) -> __m512i {
        // SAFETY: the caller guarantees the four 16-byte loads are in bounds.
        unsafe {
            let v = _mm512_castsi128_si512(_mm_loadu_si128(p.add(off + 2).cast()));
            let v = _mm512_inserti32x4::<1>(v, _mm_loadu_si128(p.add(row_bytes + off + 2).cast()));
            let v =
                _mm512_inserti32x4::<2>(v, _mm_loadu_si128(p.add(2 * row_bytes + off + 2).cast()));
            _mm512_inserti32x4::<3>(v, _mm_loadu_si128(p.add(3 * row_bytes + off + 2).cast()))
        }
    }

    /// Two rows' 32 Q8_0 codes at `p` and `p + row_bytes`, sign bits flipped (code + 128).
    ///
    /// # Safety
    /// Both 32-byte loads must be in bounds.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn load2_q8(p: *const u8, row_bytes: usize) -> __m512i {
        // SAFETY: the caller guarantees both loads are in bounds.
        unsafe {
            let v = _mm512_castsi256_si512(_mm256_loadu_si256(p.cast()));
            let v = _mm512_inserti64x4::<1>(v, _mm256_loadu_si256(p.add(row_bytes).cast()));
            _mm512_xor_si512(v, _mm512_set1_epi8(-128))
        }
    }

    /// [`rows_q8_0_partner`] for Q4_0 with AVX-512 VNNI: four rows per register (one 16-byte
    /// block each), `vpdpbusd` on the raw nibbles, the offset 8·Σy subtracted from the exact
    /// block sums.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; `w` must hold `out.len()`
    /// rows of `row_bytes`, and `8 · row_bytes < 2³¹`; `sums` are `act`'s (as many blocks).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn rows_q4_0_vnni(
        w: &[u8],
        row_bytes: usize,
        act: &[u8],
        sums: &BlockSums,
        out: &mut [f32],
    ) {
        // The one-token case of the batched kernel: the same operations, so the same bits.
        // SAFETY: the caller upholds the batched kernel's contract for one activation.
        unsafe { rows_q4_0_vnni_multi::<1>(w, row_bytes, &[act], &[sums], &mut [out]) }
    }

    /// [`rows_q4_0_vnni`] for `T` activation rows: each block of the eight weight rows is
    /// loaded and split into nibbles once, then dotted with every activation.
    ///
    /// # Safety
    /// As [`rows_q4_0_vnni`], for every `acts[t]`; all `outs[t]` have the same length.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn rows_q4_0_vnni_multi<const T: usize>(
        w: &[u8],
        row_bytes: usize,
        acts: &[&[u8]; T],
        sums: &[&BlockSums; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let n = outs[0].len();
        let blocks = acts.iter().fold(row_bytes / 18, |m, a| m.min(a.len() / 34));
        let rb = row_bytes as i32;
        let rows = _mm256_setr_epi32(0, rb, 2 * rb, 3 * rb, 4 * rb, 5 * rb, 6 * rb, 7 * rb);
        let m4 = _mm512_set1_epi8(0x0F);
        let pick = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
        let groups = n / 8;
        for g in 0..groups {
            // SAFETY: rows 8g..8g+8 are within `w`.
            let base = unsafe { w.as_ptr().add(g * 8 * row_bytes) };
            let mut acc = [_mm256_setzero_ps(); T];
            let next = base.wrapping_add(8 * row_bytes);
            for b in 0..blocks {
                let off = 18 * b;
                for l in 0..3 {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(144 * b + 64 * l).cast());
                }
                // SAFETY: block b of every activation (34 bytes) and of each of the eight rows
                // (18 bytes) are in bounds: b < blocks.
                unsafe {
                    let (va, vb) = (
                        load4_q4(base, row_bytes, off),
                        load4_q4(base.add(4 * row_bytes), row_bytes, off),
                    );
                    let (alo, ahi) = (
                        _mm512_and_si512(va, m4),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(va), m4),
                    );
                    let (blo, bhi) = (
                        _mm512_and_si512(vb, m4),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(vb), m4),
                    );
                    let dw = row_scales(base, off, rows);
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
                        let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * sums[t].sum(b)));
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(sums[t].scale(b)));
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[t]);
                    }
                }
            }
            for t in 0..T {
                // SAFETY: every `outs[t]` has at least 8g + 8 elements.
                unsafe { _mm256_storeu_ps(outs[t].as_mut_ptr().add(8 * g), acc[t]) };
            }
        }
        for i in groups * 8..n {
            let row = &w[i * row_bytes..(i + 1) * row_bytes];
            for t in 0..T {
                outs[t][i] = BlockQ4_0::vec_dot_blocks(row, acts[t]);
            }
        }
    }

    /// [`rows_q8_0_vnni`] for `T` activation rows: each block of the eight weight rows is
    /// loaded and made unsigned once, then dotted with every activation.
    ///
    /// # Safety
    /// As [`rows_q4_0_vnni_multi`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn rows_q8_0_vnni_multi<const T: usize>(
        w: &[u8],
        row_bytes: usize,
        acts: &[&[u8]; T],
        sums: &[&BlockSums; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let n = outs[0].len();
        let blocks = acts.iter().fold(row_bytes / 34, |m, a| m.min(a.len() / 34));
        let rb = row_bytes as i32;
        let rows = _mm256_setr_epi32(0, 2 * rb, 4 * rb, 6 * rb, rb, 3 * rb, 5 * rb, 7 * rb);
        let unshuffle = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let groups = n / 8;
        for g in 0..groups {
            // SAFETY: rows 8g..8g+8 are within `w`.
            let base = unsafe { w.as_ptr().add(g * 8 * row_bytes) };
            let mut acc = [_mm256_setzero_ps(); T];
            let next = base.wrapping_add(8 * row_bytes);
            for b in 0..blocks {
                let off = 34 * b + 2;
                for l in 0..5 {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(272 * b + 64 * l).cast());
                }
                // SAFETY: block b of every activation and of each of the eight rows are in
                // bounds.
                unsafe {
                    let p = base.add(off);
                    let (z0, z1, z2, z3) = (
                        load2_q8(p, row_bytes),
                        load2_q8(p.add(2 * row_bytes), row_bytes),
                        load2_q8(p.add(4 * row_bytes), row_bytes),
                        load2_q8(p.add(6 * row_bytes), row_bytes),
                    );
                    let dw = row_scales(base, 34 * b, rows);
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
                        let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(128 * sums[t].sum(b)));
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(sums[t].scale(b)));
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[t]);
                    }
                }
            }
            for t in 0..T {
                let a = _mm256_permutevar8x32_ps(acc[t], unshuffle);
                // SAFETY: every `outs[t]` has at least 8g + 8 elements.
                unsafe { _mm256_storeu_ps(outs[t].as_mut_ptr().add(8 * g), a) };
            }
        }
        for i in groups * 8..n {
            let row = &w[i * row_bytes..(i + 1) * row_bytes];
            for t in 0..T {
                outs[t][i] = BlockQ8_0::vec_dot_blocks(row, acts[t]);
            }
        }
    }

    /// [`dot_f16_512`] of one row with up to four activation rows: each weight vector is
    /// converted once; every token keeps its own four accumulators and reduction.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, FMA and F16C; every `xs[t]` has the row's length and
    /// `xs.len() <= 4`.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn dot_f16_512_multi(w: &[u8], xs: &[&[f32]], out: &mut [f32; 4]) {
        let nt = xs.len().min(4);
        let n = xs[0].len().min(w.len() / 2);
        let whole = n / 64 * 64;
        let mut acc = [[_mm512_setzero_ps(); 4]; 4];
        for i in (0..whole).step_by(64) {
            // SAFETY: i + 64 <= whole <= n for the weight row and every activation row.
            unsafe {
                let wv: [__m512; 4] = std::array::from_fn(|k| {
                    _mm512_cvtph_ps(_mm256_loadu_si256(w.as_ptr().add(2 * (i + 16 * k)).cast()))
                });
                for t in 0..nt {
                    let x = xs[t].as_ptr().add(i);
                    for k in 0..4 {
                        acc[t][k] =
                            _mm512_fmadd_ps(wv[k], _mm512_loadu_ps(x.add(16 * k)), acc[t][k]);
                    }
                }
            }
        }
        for t in 0..nt {
            let a = &acc[t];
            let v = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
            let h = _mm256_add_ps(
                _mm512_castps512_ps256(v),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
            );
            let mut sum = f64::from(reduce8(h));
            for (wb, &xv) in w[2 * whole..2 * n].chunks_exact(2).zip(&xs[t][whole..n]) {
                sum += f64::from(crate::fp::f16_to_f32(u16::from_le_bytes([wb[0], wb[1]])) * xv);
            }
            out[t] = sum as f32;
        }
    }

    /// [`rows_q8_0_partner`] for Q8_0 with AVX-512 VNNI: two rows per register, the codes made
    /// unsigned by adding 128 (a sign-bit flip) and 128·Σy subtracted from the exact sums.
    ///
    /// # Safety
    /// As [`rows_q4_0_vnni`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn rows_q8_0_vnni(
        w: &[u8],
        row_bytes: usize,
        act: &[u8],
        sums: &BlockSums,
        out: &mut [f32],
    ) {
        // The one-token case of the batched kernel: the same operations, so the same bits.
        // SAFETY: the caller upholds the batched kernel's contract for one activation.
        unsafe { rows_q8_0_vnni_multi::<1>(w, row_bytes, &[act], &[sums], &mut [out]) }
    }

    /// [`crate::dot::dot_f16`] with AVX-512: ggml's four 16-lane accumulators as they are, and
    /// the same reduction.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, FMA and F16C.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn dot_f16_512(w: &[u8], x: &[f32]) -> f32 {
        let n = x.len().min(w.len() / 2);
        let whole = n / 64 * 64;
        let mut acc = [_mm512_setzero_ps(); 4];
        for i in (0..whole).step_by(64) {
            // Rows lie back to back, so reading ahead past this row's end fetches the next
            // row's start (the hardware prefetcher alone left ~20% of the bandwidth unused).
            let ahead = w.as_ptr().wrapping_add(2 * i + PREFETCH_BYTES);
            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
            for (k, a) in acc.iter_mut().enumerate() {
                let j = i + 16 * k;
                // SAFETY: j + 16 <= whole <= n.
                let (wv, xv) = unsafe {
                    (
                        _mm512_cvtph_ps(_mm256_loadu_si256(w.as_ptr().add(2 * j).cast())),
                        _mm512_loadu_ps(x.as_ptr().add(j)),
                    )
                };
                *a = _mm512_fmadd_ps(wv, xv, *a);
            }
        }
        let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
        let h = _mm256_add_ps(
            _mm512_castps512_ps256(v),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
        );
        let mut sum = f64::from(reduce8(h));
        for (wb, &xv) in w[2 * whole..2 * n].chunks_exact(2).zip(&x[whole..n]) {
            sum += f64::from(crate::fp::f16_to_f32(u16::from_le_bytes([wb[0], wb[1]])) * xv);
        }
        sum as f32
    }

    /// `(h0+h4 + h2+h6) + (h1+h5 + h3+h7)`: the tail of ggml's AVX-512 reduction.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce8(h: __m256) -> f32 {
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)))
    }

    /// [`super::nf4_rows`] with AVX2: four rows at a time, each row's eight-lane chain as
    /// [`crate::nf4::dot_nf4`]'s (one chain alone waits on its adds; four side by side keep the
    /// adder busy). Eight codes at a time are spread into eight lanes by a variable shift of
    /// their four bytes and looked up in the 16-entry codebook (two 8-entry permutes and a
    /// blend on the code's top bit, or one two-table permute with AVX-512 VL), then the
    /// reference's multiplies and lane sums, in its order.
    ///
    /// # Safety
    /// The CPU must have AVX2, and AVX-512 F and VL when `WIDE`; `x.len()` must be a multiple
    /// of 64, with `codes` holding `out.len()` rows of `x.len() / 2` bytes and `absmax`
    /// `out.len()` rows of `x.len() / 16`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn rows_nf4_with<const WIDE: bool>(
        codes: &[u8],
        absmax: &[u8],
        x: &[f32],
        out: &mut [f32],
    ) {
        use crate::nf4::{NF4_BLOCK, NF4_CODEBOOK};
        let blocks = x.len() / NF4_BLOCK;
        let (row_bytes, scale_bytes) = (blocks * NF4_BLOCK / 2, blocks * 4);
        // SAFETY: each 8-float half of the codebook is in bounds.
        let (lo, hi) = unsafe {
            (
                _mm256_loadu_ps(NF4_CODEBOOK.as_ptr()),
                _mm256_loadu_ps(NF4_CODEBOOK.as_ptr().add(8)),
            )
        };
        let mut r0 = 0;
        while r0 < out.len() {
            let rows = (out.len() - r0).min(4);
            let mut acc = [_mm256_setzero_ps(); 4];
            for b in 0..blocks {
                // SAFETY: rows r0..r0 + rows are within `codes` and `absmax` and block b within
                // each row and `x` (the caller's contract).
                unsafe {
                    let xp = x.as_ptr().add(NF4_BLOCK * b);
                    for (r, a) in acc.iter_mut().enumerate().take(rows) {
                        let row = r0 + r;
                        let am = _mm256_broadcastss_ps(_mm_load_ss(
                            absmax.as_ptr().add(scale_bytes * row + 4 * b).cast(),
                        ));
                        let cp = codes.as_ptr().add(row_bytes * row + NF4_BLOCK / 2 * b);
                        prefetch_ahead(cp, NF4_BLOCK / 2);
                        for g in 0..NF4_BLOCK / 8 {
                            let cb = nf4_lookup8::<WIDE>(cp.add(4 * g), lo, hi);
                            let xv = _mm256_loadu_ps(xp.add(8 * g));
                            *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_mul_ps(cb, am), xv));
                        }
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(rows) {
                let mut l = [0f32; 8];
                // SAFETY: `l` has eight floats.
                unsafe { _mm256_storeu_ps(l.as_mut_ptr(), *a) };
                out[r0 + r] = crate::dot::sum_lanes8(l);
            }
            r0 += rows;
        }
    }

    /// [`super::nf4_rows_multi`] with AVX2: one row at a time against `T` activations, each
    /// weight looked up and scaled once (as [`rows_nf4_with`]), then each activation's
    /// eight-lane chain in the reference's order.
    ///
    /// # Safety
    /// The CPU must have AVX2, and AVX-512 F and VL when `WIDE`; every `xs[t]` has the same
    /// length, a multiple of 64; `codes` holds `outs[0].len()` rows of `len / 2` bytes, `absmax`
    /// as many of `len / 16`, and every `outs[t]` `outs[0].len()` elements.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn rows_nf4_multi_with<const WIDE: bool, const T: usize>(
        codes: &[u8],
        absmax: &[u8],
        xs: &[&[f32]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        use crate::nf4::{NF4_BLOCK, NF4_CODEBOOK};
        let blocks = xs[0].len() / NF4_BLOCK;
        let (row_bytes, scale_bytes) = (blocks * NF4_BLOCK / 2, blocks * 4);
        // SAFETY: each 8-float half of the codebook is in bounds.
        let (lo, hi) = unsafe {
            (
                _mm256_loadu_ps(NF4_CODEBOOK.as_ptr()),
                _mm256_loadu_ps(NF4_CODEBOOK.as_ptr().add(8)),
            )
        };
        for row in 0..outs[0].len() {
            let mut acc = [_mm256_setzero_ps(); T];
            for b in 0..blocks {
                // SAFETY: row `row` and its block b are within `codes` and `absmax`, and block
                // b within every activation (the caller's contract).
                unsafe {
                    let am = _mm256_broadcastss_ps(_mm_load_ss(
                        absmax.as_ptr().add(scale_bytes * row + 4 * b).cast(),
                    ));
                    let cp = codes.as_ptr().add(row_bytes * row + NF4_BLOCK / 2 * b);
                    prefetch_ahead(cp, NF4_BLOCK / 2);
                    for g in 0..NF4_BLOCK / 8 {
                        let w = _mm256_mul_ps(nf4_lookup8::<WIDE>(cp.add(4 * g), lo, hi), am);
                        for t in 0..T {
                            let xv = _mm256_loadu_ps(xs[t].as_ptr().add(NF4_BLOCK * b + 8 * g));
                            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(w, xv));
                        }
                    }
                }
            }
            for t in 0..T {
                let mut l = [0f32; 8];
                // SAFETY: `l` has eight floats.
                unsafe { _mm256_storeu_ps(l.as_mut_ptr(), acc[t]) };
                outs[t][row] = crate::dot::sum_lanes8(l);
            }
        }
    }

    /// [`rows_nf4_multi_with`] on AVX2.
    ///
    /// # Safety
    /// As [`rows_nf4_multi_with`]: AVX2, and the lengths it names.
    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_nf4_multi<const T: usize>(
        codes: &[u8],
        absmax: &[u8],
        xs: &[&[f32]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the caller's contract is this function's.
        unsafe { rows_nf4_multi_with::<false, T>(codes, absmax, xs, outs) }
    }

    /// [`rows_nf4_multi_with`] with AVX-512 VL's two-table permute.
    ///
    /// # Safety
    /// As [`rows_nf4_multi_with`]: AVX2 and AVX-512 F/VL, and the lengths it names.
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    pub unsafe fn rows_nf4_multi_512<const T: usize>(
        codes: &[u8],
        absmax: &[u8],
        xs: &[&[f32]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the caller's contract is this function's.
        unsafe { rows_nf4_multi_with::<true, T>(codes, absmax, xs, outs) }
    }

    /// The codebook values of the eight NF4 codes in the four bytes at `cp` (`lo`, `hi`: the
    /// codebook's halves), spread into eight lanes by a variable shift: two 8-entry permutes
    /// and a blend on each code's top bit, or (`WIDE`) one two-table permute.
    ///
    /// # Safety
    /// Four bytes from `cp` must be readable; the CPU must have AVX2 (and AVX-512 F/VL when
    /// `WIDE`), enabled in the function this is inlined into.
    #[inline(always)]
    unsafe fn nf4_lookup8<const WIDE: bool>(cp: *const u8, lo: __m256, hi: __m256) -> __m256 {
        // SAFETY: the caller's contract (the bytes, and the features of the function this is
        // inlined into).
        unsafe {
            // Byte k of four holds elements 2k (high nibble) and 2k + 1 (low nibble).
            let shifts = _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24);
            let four = _mm256_broadcastd_epi32(_mm_loadu_si32(cp.cast()));
            let idx = _mm256_and_si256(_mm256_srlv_epi32(four, shifts), _mm256_set1_epi32(0xF));
            if WIDE {
                wide_lookup(lo, idx, hi)
            } else {
                let top = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx));
                _mm256_blendv_ps(
                    _mm256_permutevar8x32_ps(lo, idx),
                    _mm256_permutevar8x32_ps(hi, idx),
                    top,
                )
            }
        }
    }

    /// The 16-entry lookup `(lo ‖ hi)[idx]` in one two-table permute.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline]
    fn wide_lookup(lo: __m256, idx: __m256i, hi: __m256) -> __m256 {
        _mm256_permutex2var_ps(lo, idx, hi)
    }

    /// [`rows_nf4_with`] on AVX2.
    ///
    /// # Safety
    /// As [`rows_nf4_with`]: AVX2, and the slice lengths it names.
    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_nf4(codes: &[u8], absmax: &[u8], x: &[f32], out: &mut [f32]) {
        // SAFETY: the caller's contract is this function's.
        unsafe { rows_nf4_with::<false>(codes, absmax, x, out) }
    }

    /// [`rows_nf4_with`] with AVX-512 VL's two-table permute.
    ///
    /// # Safety
    /// As [`rows_nf4_with`]: AVX2 and AVX-512 F/VL, and the slice lengths it names.
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    pub unsafe fn rows_nf4_512(codes: &[u8], absmax: &[u8], x: &[f32], out: &mut [f32]) {
        // SAFETY: the caller's contract is this function's.
        unsafe { rows_nf4_with::<true>(codes, absmax, x, out) }
    }

    /// Four F16 rows (contiguous in `w`) against up to four activations in tinyBLAS's order:
    /// one 16-lane accumulator per row and token.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, FMA and F16C; `w` holds four rows of `xs[0].len()` halves,
    /// a multiple of 16, and every `xs[t]` has that length.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub unsafe fn dot_f16_tiled_4rows(w: &[u8], xs: &[&[f32]], out: &mut [[f32; 4]; 4]) {
        let nt = xs.len().min(4);
        let cols = xs[0].len();
        let mut acc = [[_mm512_setzero_ps(); 4]; 4];
        for l in (0..cols).step_by(16) {
            // SAFETY: l + 16 <= cols for each of the four rows and every activation.
            unsafe {
                let wv: [__m512; 4] = std::array::from_fn(|r| {
                    _mm512_cvtph_ps(_mm256_loadu_si256(
                        w.as_ptr().add(2 * (r * cols + l)).cast(),
                    ))
                });
                for t in 0..nt {
                    let xv = _mm512_loadu_ps(xs[t].as_ptr().add(l));
                    for r in 0..4 {
                        acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
                    }
                }
            }
        }
        for r in 0..4 {
            for t in 0..nt {
                out[r][t] = reduce16_512(acc[r][t]);
            }
        }
    }

    /// [`dot_f16_tiled_4rows`] with AVX2: the same sixteen lanes per row and token, kept as
    /// two halves of eight, each half a pass over the rows for two tokens at a time (eight
    /// accumulators, so nothing spills), then [`crate::dot::reduce16`]'s order. The rows are
    /// read again from L1 for every pass.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; otherwise as [`dot_f16_tiled_4rows`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16_tiled_4rows_avx2(w: &[u8], xs: &[&[f32]], out: &mut [[f32; 4]; 4]) {
        let nt = xs.len().min(4);
        let cols = xs[0].len();
        let mut lanes = [[[0f32; 16]; 4]; 4];
        for pair in (0..nt).step_by(2) {
            let two = nt - pair >= 2;
            for h in 0..2 {
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for l in (8 * h..cols).step_by(16) {
                    // SAFETY: l + 8 <= cols (cols is a multiple of 16) for each of the four
                    // rows and every activation.
                    unsafe {
                        let wv: [__m256; 4] = std::array::from_fn(|r| {
                            _mm256_cvtph_ps(_mm_loadu_si128(
                                w.as_ptr().add(2 * (r * cols + l)).cast(),
                            ))
                        });
                        let x0 = _mm256_loadu_ps(xs[pair].as_ptr().add(l));
                        for r in 0..4 {
                            acc[r][0] = _mm256_fmadd_ps(wv[r], x0, acc[r][0]);
                        }
                        if two {
                            let x1 = _mm256_loadu_ps(xs[pair + 1].as_ptr().add(l));
                            for r in 0..4 {
                                acc[r][1] = _mm256_fmadd_ps(wv[r], x1, acc[r][1]);
                            }
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    for (k, v) in a.iter().enumerate().take(if two { 2 } else { 1 }) {
                        // SAFETY: lanes 8h..8h + 8 of a 16-lane array.
                        unsafe { _mm256_storeu_ps(lanes[r][pair + k].as_mut_ptr().add(8 * h), *v) };
                    }
                }
            }
        }
        for r in 0..4 {
            for t in 0..nt {
                out[r][t] = crate::dot::reduce16(&lanes[r][t]);
            }
        }
    }

    /// GCC's `_mm512_reduce_add_ps` order, spelled out (Rust's may differ).
    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    fn reduce16_512(v: __m512) -> f32 {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let t3 = _mm256_add_ps(hi, _mm512_castps512_ps256(v));
        let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
        let t8 = _mm_add_ps(t6, _mm_shuffle_ps::<0b01_00_11_10>(t6, t6));
        _mm_cvtss_f32(_mm_add_ss(t8, _mm_movehdup_ps(t8)))
    }

    /// [`crate::dot::BlockQ5_K`]'s dot with AVX2: the same exact integer sums, then the
    /// reference's float steps.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q5_k(w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: the caller's contract is this function's.
        unsafe { dot_k_multi::<true, 1>(w, &[a])[0] }
    }

    /// [`crate::dot::BlockQ4_K`]'s dot with AVX2: the same exact integer sums, then the
    /// reference's float steps.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4_k(w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: the caller's contract is this function's.
        unsafe { dot_k_multi::<false, 1>(w, &[a])[0] }
    }

    /// [`dot_q4_k`] (or with `Q5`, [`dot_q5_k`]) of one row against `T` activations (a
    /// prefill batch): each block's scales are decoded and its codes unpacked once for all of
    /// them; every result is the one-token kernel's.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_k_multi<const Q5: bool, const T: usize>(
        w: &[u8],
        acts: &[&[u8]; T],
    ) -> [f32; T] {
        let (block, codes) = if Q5 { (176, 48) } else { (144, 16) };
        let m4 = _mm256_set1_epi8(0x0F);
        let one = _mm256_set1_epi8(1);
        let mut sum = [0f32; T];
        let blocks = acts
            .iter()
            .map(|a| a.len() / 292)
            .fold(w.len() / block, usize::min);
        for (b, x) in w.chunks_exact(block).take(blocks).enumerate() {
            prefetch_ahead(x.as_ptr(), block);
            let scales = &x[4..16];
            let mut sc = [0i16; 8];
            let mut mn = [0i16; 16];
            for j in 0..8 {
                let (s, m) = crate::kquants::scale_min_k4(j, scales);
                sc[j] = i16::from(s);
                // Each minimum covers two of the sixteen 16-element bsums.
                mn[2 * j] = i16::from(m);
                mn[2 * j + 1] = i16::from(m);
            }
            let mut acc = [_mm256_setzero_si256(); T];
            // SAFETY: `x` is one block and every activation has block b (292 bytes); every
            // load below stays within them; `mn` is 32 bytes.
            let msum: [i32; T] = unsafe {
                // Q5_K: bit 2c of each qh byte tops chunk c's low nibbles, bit 2c + 1 its high
                // ones; `qh` is shifted right by two per chunk.
                let mut qh = _mm256_loadu_si256(x.as_ptr().add(16).cast());
                for c in 0..4 {
                    let q = _mm256_loadu_si256(x.as_ptr().add(codes + 32 * c).cast());
                    let mut lo = _mm256_and_si256(q, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    if Q5 {
                        let b1 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, one));
                        let b2 = _mm256_slli_epi16::<3>(_mm256_and_si256(qh, _mm256_set1_epi8(2)));
                        qh = _mm256_srli_epi16::<2>(qh);
                        lo = _mm256_or_si256(lo, b1);
                        hi = _mm256_or_si256(hi, b2);
                    }
                    let (s_lo, s_hi) = (
                        _mm256_set1_epi16(sc[2 * c]),
                        _mm256_set1_epi16(sc[2 * c + 1]),
                    );
                    for (t, a) in acc.iter_mut().enumerate() {
                        let y = acts[t].as_ptr().add(292 * b);
                        let ylo = _mm256_loadu_si256(y.add(4 + 64 * c).cast());
                        let yhi = _mm256_loadu_si256(y.add(36 + 64 * c).cast());
                        let plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), s_lo);
                        let phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), s_hi);
                        *a = _mm256_add_epi32(*a, _mm256_add_epi32(plo, phi));
                    }
                }
                let mins = _mm256_loadu_si256(mn.as_ptr().cast());
                let mut msum = [0i32; T];
                for (m, a) in msum.iter_mut().zip(acts) {
                    let bsums = _mm256_loadu_si256(a.as_ptr().add(292 * b + 260).cast());
                    *m = hsum_i32(_mm256_madd_epi16(bsums, mins));
                }
                msum
            };
            let (dw, mw) = (crate::fp::half_at(x, 0), crate::fp::half_at(x, 2));
            for t in 0..T {
                let y = &acts[t][292 * b..];
                let dy = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
                sum[t] += dw * dy * hsum_i32(acc[t]) as f32;
                sum[t] -= mw * dy * msum[t] as f32;
            }
        }
        sum
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// [`crate::dot::BlockQ6_K`]'s dot with AVX2: exact integer block sums (6-bit codes taken
    /// unsigned, 32·Σ(scale·bsum) subtracted), then the reference's `sum += d · isum`.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q6_k(w: &[u8], a: &[u8]) -> f32 {
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(3);
        let mut sum = 0f32;
        for (x, y) in w.chunks_exact(210).zip(a.chunks_exact(292)) {
            prefetch_ahead(x.as_ptr(), 210);
            let mut isum = _mm256_setzero_si256();
            // SAFETY: `x` is one 210-byte block, `y` one 292-byte block; every load below
            // stays within them.
            unsafe {
                let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.as_ptr().add(192).cast()));
                let bsums = _mm256_loadu_si256(y.as_ptr().add(260).cast());
                let comp = _mm256_madd_epi16(sc16, bsums);
                for half in 0..2 {
                    let ql = x.as_ptr().add(64 * half);
                    let qa = _mm256_loadu_si256(ql.cast());
                    let qb = _mm256_loadu_si256(ql.add(32).cast());
                    let qh = _mm256_loadu_si256(x.as_ptr().add(128 + 32 * half).cast());
                    let hi = |shift: i32| {
                        let h = match shift {
                            0 => qh,
                            2 => _mm256_srli_epi16::<2>(qh),
                            4 => _mm256_srli_epi16::<4>(qh),
                            _ => _mm256_srli_epi16::<6>(qh),
                        };
                        _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2))
                    };
                    let codes = [
                        _mm256_or_si256(_mm256_and_si256(qa, m4), hi(0)),
                        _mm256_or_si256(_mm256_and_si256(qb, m4), hi(2)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(qa), m4), hi(4)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(qb), m4), hi(6)),
                    ];
                    for (k, q) in codes.iter().enumerate() {
                        // Elements 128·half + 32k.., scales 8·half + 2k and + 1.
                        let e = 128 * half + 32 * k;
                        let yv = _mm256_loadu_si256(y.as_ptr().add(4 + e).cast());
                        let p = _mm256_maddubs_epi16(*q, yv);
                        let s0 = i16::from(x[192 + 8 * half + 2 * k] as i8);
                        let s1 = i16::from(x[192 + 8 * half + 2 * k + 1] as i8);
                        let sc = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, sc));
                    }
                }
                isum = _mm256_sub_epi32(isum, _mm256_slli_epi32::<5>(comp));
            }
            let s = _mm_add_epi32(
                _mm256_castsi256_si128(isum),
                _mm256_extracti128_si256::<1>(isum),
            );
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            let d = crate::fp::half_at(x, 208) * f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
            sum += d * _mm_cvtsi128_si32(s) as f32;
        }
        sum
    }

    /// [`super::bf16_rows`] with AVX2: four rows' eight-lane chains side by side, each a
    /// product then a sum as the reference (not fused: a product of two bf16 values can
    /// underflow, and then one rounding differs from two).
    ///
    /// # Safety
    /// The CPU must have AVX2; `w` holds `out.len()` rows of `x.len()` bf16 values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_bf16(w: &[u8], x: &[f32], out: &mut [f32]) {
        let n = x.len();
        let whole = n / 8 * 8;
        let mut r0 = 0;
        while r0 < out.len() {
            let rows = (out.len() - r0).min(4);
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in (0..whole).step_by(8) {
                // SAFETY: i + 8 <= n: 8 floats of `x` and 16 bytes of each row from 2i.
                unsafe {
                    let xv = _mm256_loadu_ps(x.as_ptr().add(i));
                    for (r, a) in acc.iter_mut().enumerate().take(rows) {
                        let p = w.as_ptr().add(2 * ((r0 + r) * n + i));
                        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
                        let wv = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h));
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, xv));
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(rows) {
                let mut lanes = [0f32; 8];
                // SAFETY: `lanes` holds eight floats.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *a) };
                let row = &w[2 * (r0 + r) * n..2 * (r0 + r + 1) * n];
                out[r0 + r] = super::bf16_row_sum(lanes, row, x, whole);
            }
            r0 += rows;
        }
    }

    /// [`super::bf16_rows_multi`] with AVX2: two rows at a time against `T` activations (up to
    /// eight chains in flight: one waits on its adds), each weight vector widened once, each
    /// activation's eight-lane chain as [`rows_bf16`]'s.
    ///
    /// # Safety
    /// The CPU must have AVX2; every `xs[t]` has the same length, `w` holds `outs[0].len()`
    /// rows of that many bf16 values and every `outs[t]` `outs[0].len()` elements.
    #[target_feature(enable = "avx2")]
    pub unsafe fn rows_bf16_multi<const T: usize>(
        w: &[u8],
        xs: &[&[f32]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let n = xs[0].len();
        let whole = n / 8 * 8;
        let mut r0 = 0;
        while r0 < outs[0].len() {
            let rows = (outs[0].len() - r0).min(2);
            let mut acc = [[_mm256_setzero_ps(); T]; 2];
            for i in (0..whole).step_by(8) {
                for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                    // SAFETY: i + 8 <= n: 16 bytes of row r0 + r from 2i (within `w`) and 8
                    // floats of every activation from i.
                    unsafe {
                        let p = w.as_ptr().add(2 * ((r0 + r) * n + i));
                        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
                        let wv = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h));
                        for t in 0..T {
                            let xv = _mm256_loadu_ps(xs[t].as_ptr().add(i));
                            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(wv, xv));
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate().take(rows) {
                let row = &w[2 * (r0 + r) * n..2 * (r0 + r + 1) * n];
                for t in 0..T {
                    let mut lanes = [0f32; 8];
                    // SAFETY: `lanes` holds eight floats.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[t]) };
                    outs[t][r0 + r] = super::bf16_row_sum(lanes, row, xs[t], whole);
                }
            }
            r0 += rows;
        }
    }

    /// [`rows_bf16_multi`] with 512-bit vectors: each register holds two rows' eight-lane
    /// chains (rows `a` and `b` in its halves, the activation in both), four rows at a time,
    /// twice the multiplies and adds per instruction of the AVX2 kernel, the same chains.
    ///
    /// # Safety
    /// The CPU must have AVX2 and AVX-512 F; otherwise as [`rows_bf16_multi`].
    #[target_feature(enable = "avx2,avx512f")]
    pub unsafe fn rows_bf16_multi_512<const T: usize>(
        w: &[u8],
        xs: &[&[f32]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let n = xs[0].len();
        let whole = n / 8 * 8;
        let total = outs[0].len();
        let mut r0 = 0;
        while r0 < total {
            let rows = (total - r0).min(4);
            // Pairs of rows, one per register; an odd last row is paired with itself.
            let pair = |p: usize| (r0 + 2 * p, (r0 + 2 * p + 1).min(r0 + rows - 1));
            let pairs = rows.div_ceil(2);
            let mut acc = [[_mm512_setzero_ps(); T]; 2];
            for i in (0..whole).step_by(8) {
                // SAFETY: i + 8 <= n: 8 floats of every activation from i.
                let x: [__m512; T] = std::array::from_fn(|t| unsafe {
                    let v = _mm512_castps256_ps512(_mm256_loadu_ps(xs[t].as_ptr().add(i)));
                    _mm512_shuffle_f32x4::<0b01_00_01_00>(v, v)
                });
                for (p, acc) in acc.iter_mut().enumerate().take(pairs) {
                    let (a, b) = pair(p);
                    // SAFETY: rows a and b are below `total`, so 16 bytes of each from 2i are
                    // within `w`.
                    let wv = unsafe {
                        let lo = _mm_loadu_si128(w.as_ptr().add(2 * (a * n + i)).cast());
                        let hi = _mm_loadu_si128(w.as_ptr().add(2 * (b * n + i)).cast());
                        let h = _mm512_cvtepu16_epi32(_mm256_set_m128i(hi, lo));
                        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h))
                    };
                    for t in 0..T {
                        acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(wv, x[t]));
                    }
                }
            }
            for (p, acc) in acc.iter().enumerate().take(pairs) {
                let (a, b) = pair(p);
                for t in 0..T {
                    let mut lanes = [0f32; 16];
                    // SAFETY: `lanes` holds sixteen floats.
                    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc[t]) };
                    for (half, r) in [(0, a), (8, b)] {
                        let row = &w[2 * r * n..2 * (r + 1) * n];
                        let l: [f32; 8] = lanes[half..half + 8].try_into().expect("eight");
                        outs[t][r] = super::bf16_row_sum(l, row, xs[t], whole);
                    }
                }
            }
            r0 += rows;
        }
    }

    /// The legacy formats [`rows_legacy`] takes, as its const parameter (one build each).
    use super::legacy;

    /// The 32 fifth bits of a Q5 block (`qh`, bit i for element i) as 0x10 in byte i.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn fifth_bits(qh: u32) -> __m256i {
        // Byte i takes byte i / 8 of qh, then tests its bit i % 8.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh as i32),
            _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                3, 3, 3, 3,
            ),
        );
        let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi8(-1));
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    /// Rows of Q4_1, Q5_0 or Q5_1 weights against a Q8_1 (Q8_0 for Q5_0) activation, eight
    /// rows at a time: each block's integer sum is exact (unsigned codes ≤ 31 against the
    /// activation with `vpmaddubsw`, Q5_0's offset of 16 taken off as 16·Σy), then each row's
    /// float steps are the reference's, lane by lane: Q5_0 `sum += isum · (dw·dy)`, Q4_1 and
    /// Q5_1 `sum += (dw·dy)·isum + m·s`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `w` must hold `out.len()` rows of `row_bytes`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_legacy<const F: u8>(
        w: &[u8],
        row_bytes: usize,
        act: &[u8],
        out: &mut [f32],
    ) {
        // Weight block bytes, where its codes start, and the activation block's bytes.
        let (wb, codes_at, ab) = match F {
            legacy::Q4_1 => (20, 4, 36),
            legacy::Q5_0 => (22, 6, 34),
            _ => (24, 8, 36),
        };
        let blocks = (row_bytes / wb).min(act.len() / ab);
        let ones = _mm256_set1_epi16(1);
        let low4 = _mm256_set1_epi8(0x0F);
        // 16·Σy per activation block: Q5_0's offset.
        let offsets: Vec<i32> = if F == legacy::Q5_0 {
            act.chunks_exact(ab)
                .map(|y| {
                    16 * y[ab - 32..]
                        .iter()
                        .map(|&q| i32::from(q as i8))
                        .sum::<i32>()
                })
                .collect()
        } else {
            Vec::new()
        };
        let groups = out.len() / 8;
        for g in 0..groups {
            let base = g * 8 * row_bytes;
            let mut acc = _mm256_setzero_ps();
            for b in 0..blocks {
                let y = &act[ab * b..ab * (b + 1)];
                // SAFETY: `y` holds `ab` bytes, the last 32 of them codes.
                let qy = unsafe { _mm256_loadu_si256(y.as_ptr().add(ab - 32).cast()) };
                let mut p = [_mm256_setzero_si256(); 8];
                let (mut dw, mut mw) = ([0u16; 8], [0u16; 8]);
                for (r, pr) in p.iter_mut().enumerate() {
                    let at = base + r * row_bytes + wb * b;
                    let x = &w[at..at + wb];
                    prefetch_ahead(x.as_ptr(), wb);
                    dw[r] = u16::from_le_bytes([x[0], x[1]]);
                    mw[r] = u16::from_le_bytes([x[2], x[3]]);
                    // SAFETY: `x` holds the block: 16 packed code bytes from `codes_at`.
                    let raw = unsafe { _mm_loadu_si128(x.as_ptr().add(codes_at).cast()) };
                    // Elements 0..16 are the low nibbles, 16..32 the high ones.
                    let mut code =
                        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(raw), raw), low4);
                    if F != legacy::Q4_1 {
                        let h = codes_at - 4;
                        let qh = u32::from_le_bytes([x[h], x[h + 1], x[h + 2], x[h + 3]]);
                        code = _mm256_or_si256(code, fifth_bits(qh));
                    }
                    *pr = _mm256_madd_epi16(_mm256_maddubs_epi16(code, qy), ones);
                }
                let mut isum = totals(&p);
                if F == legacy::Q5_0 {
                    isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offsets[b]));
                }
                // SAFETY: `dw` and `mw` are 16 bytes each.
                let (dwv, mwv) = unsafe {
                    (
                        _mm256_cvtph_ps(_mm_loadu_si128(dw.as_ptr().cast())),
                        _mm256_cvtph_ps(_mm_loadu_si128(mw.as_ptr().cast())),
                    )
                };
                let d = _mm256_mul_ps(dwv, _mm256_set1_ps(crate::fp::half_at(y, 0)));
                let fsum = _mm256_cvtepi32_ps(isum);
                acc = if F == legacy::Q5_0 {
                    _mm256_add_ps(acc, _mm256_mul_ps(fsum, d))
                } else {
                    let m = _mm256_mul_ps(mwv, _mm256_set1_ps(crate::fp::half_at(y, 2)));
                    _mm256_add_ps(acc, _mm256_add_ps(_mm256_mul_ps(d, fsum), m))
                };
            }
            // SAFETY: `out` has at least 8g + 8 elements (g < out.len() / 8).
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * g), acc) };
        }
        for (i, o) in out.iter_mut().enumerate().skip(groups * 8) {
            let r = &w[i * row_bytes..(i + 1) * row_bytes];
            *o = match F {
                legacy::Q4_1 => BlockQ4_1::vec_dot_blocks(r, act),
                legacy::Q5_0 => BlockQ5_0::vec_dot_blocks(r, act),
                _ => BlockQ5_1::vec_dot_blocks(r, act),
            };
        }
    }

    /// Eight vectors of eight partial sums to one vector of eight totals (integers: exact).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn totals(p: &[__m256i; 8]) -> __m256i {
        let h01 = _mm256_hadd_epi32(p[0], p[1]);
        let h23 = _mm256_hadd_epi32(p[2], p[3]);
        let h45 = _mm256_hadd_epi32(p[4], p[5]);
        let h67 = _mm256_hadd_epi32(p[6], p[7]);
        let h0123 = _mm256_hadd_epi32(h01, h23);
        let h4567 = _mm256_hadd_epi32(h45, h67);
        let lo = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
        let hi = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
        _mm256_add_epi32(lo, hi)
    }

    /// Rows of Q4_0 (`Q4`) or Q8_0 weights against a Q8_0 activation, eight rows at a time:
    /// each block's integer sum is exact, then `acc = fma(isum, dw·da, acc)` per row, block by
    /// block, as the scalar reference does.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `w` must hold `out.len()` rows of `row_bytes`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_q8_0_partner<const Q4: bool>(
        w: &[u8],
        row_bytes: usize,
        act: &[u8],
        out: &mut [f32],
    ) {
        let wb = if Q4 { 18 } else { 34 };
        let blocks = (row_bytes / wb).min(act.len() / 34);
        let ones = _mm256_set1_epi16(1);
        let low4 = _mm256_set1_epi8(0x0F);
        let groups = out.len() / 8;
        // 8·Σy per activation block, the Q4_0 offset's share.
        let offsets: Vec<i32> = if Q4 {
            act.chunks_exact(34)
                .map(|y| 8 * y[2..].iter().map(|&q| i32::from(q as i8)).sum::<i32>())
                .collect()
        } else {
            Vec::new()
        };
        let saturating: Vec<bool> = act
            .chunks_exact(34)
            .map(|y| !Q4 && y[2..].contains(&0x80))
            .collect();
        for g in 0..groups {
            let base = g * 8 * row_bytes;
            let mut acc = _mm256_setzero_ps();
            for b in 0..blocks {
                let y = &act[34 * b..34 * b + 34];
                // SAFETY: `y` holds 34 bytes, 32 of them codes from offset 2.
                let qy = unsafe { _mm256_loadu_si256(y.as_ptr().add(2).cast()) };
                let dy = crate::fp::half_at(y, 0);
                let mut p = [_mm256_setzero_si256(); 8];
                let mut dw = [0u16; 8];
                // Q4_0 codes are nibbles minus 8: dot the raw nibbles (unsigned, as maddubs
                // wants) and subtract 8·Σy once for all eight rows.
                for (r, pr) in p.iter_mut().enumerate() {
                    let x = &w[base + r * row_bytes + wb * b..base + r * row_bytes + wb * (b + 1)];
                    prefetch_ahead(x.as_ptr(), wb);
                    dw[r] = u16::from_le_bytes([x[0], x[1]]);
                    *pr = if Q4 {
                        // SAFETY: `x` holds 18 bytes, 16 of them packed codes from offset 2.
                        let raw = unsafe { _mm_loadu_si128(x.as_ptr().add(2).cast()) };
                        let both = _mm256_set_m128i(_mm_srli_epi16::<4>(raw), raw);
                        let nib = _mm256_and_si256(both, low4);
                        _mm256_madd_epi16(_mm256_maddubs_epi16(nib, qy), ones)
                    } else {
                        // SAFETY: `x` holds 34 bytes, 32 of them codes from offset 2.
                        let qx = unsafe { _mm256_loadu_si256(x.as_ptr().add(2).cast()) };
                        // |x|·sign(y, x): unsigned times signed, exact because activation codes
                        // stay within ±127.
                        let ax = _mm256_sign_epi8(qx, qx);
                        let sy = _mm256_sign_epi8(qy, qx);
                        _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones)
                    };
                }
                let mut isum = totals(&p);
                if Q4 {
                    isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offsets[b]));
                } else if saturating[b] {
                    // An activation code of -128 (from a NaN or an all-subnormal block) breaks
                    // the sign trick: sum these eight rows exactly instead.
                    let mut exact = [0i32; 8];
                    for (r, e) in exact.iter_mut().enumerate() {
                        let x = &w[base + r * row_bytes + wb * b + 2
                            ..base + r * row_bytes + wb * (b + 1)];
                        *e = x
                            .iter()
                            .zip(&y[2..])
                            .map(|(&p, &q)| i32::from(p as i8) * i32::from(q as i8))
                            .sum();
                    }
                    // SAFETY: `exact` is 32 bytes.
                    isum = unsafe { _mm256_loadu_si256(exact.as_ptr().cast()) };
                }
                // SAFETY: `dw` is 16 bytes.
                let dwv = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(dw.as_ptr().cast()) });
                let d = _mm256_mul_ps(dwv, _mm256_set1_ps(dy));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc);
            }
            // SAFETY: `out` has at least 8g + 8 elements (g < out.len() / 8).
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * g), acc) };
        }
        for (i, o) in out.iter_mut().enumerate().skip(groups * 8) {
            let r = &w[i * row_bytes..(i + 1) * row_bytes];
            // Compiled here with FMA, so `mul_add` is one instruction.
            *o = if Q4 {
                BlockQ4_0::vec_dot_blocks(r, act)
            } else {
                BlockQ8_0::vec_dot_blocks(r, act)
            };
        }
    }

    /// [`crate::dot::dot_f16`] with F16C: the same 64 lanes (the products are exact, so the
    /// fused multiply-add rounds as the reference's separate ones do).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
        let n = x.len().min(w.len() / 2);
        let whole = n / 64 * 64;
        let mut acc = [_mm256_setzero_ps(); 8];
        for i in (0..whole).step_by(64) {
            prefetch_ahead(w.as_ptr().wrapping_add(2 * i), 128);
            for (k, a) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                // SAFETY: j + 8 <= whole <= n: 16 bytes of `w` from 2j and 8 floats of `x`
                // from j are in bounds.
                let (wv, xv) = unsafe {
                    (
                        _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(2 * j).cast())),
                        _mm256_loadu_ps(x.as_ptr().add(j)),
                    )
                };
                *a = _mm256_fmadd_ps(wv, xv, *a);
            }
        }
        let mut lanes = [0f32; 64];
        for (k, a) in acc.iter().enumerate() {
            // SAFETY: lanes 8k..8k+8 are in bounds (k < 8).
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * k), *a) };
        }
        let mut sum = f64::from(reduce_f16_lanes(&lanes));
        for (wb, &xv) in w[2 * whole..2 * n].chunks_exact(2).zip(&x[whole..n]) {
            sum += f64::from(crate::fp::f16_to_f32(u16::from_le_bytes([wb[0], wb[1]])) * xv);
        }
        sum as f32
    }
}
