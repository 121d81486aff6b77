//! Weight matrices read in place from the mapped file, in their stored format, and the
//! matrix-vector product with the activation quantized the way ggml pairs it with each format.

use ggufy_gguf::GgmlType;
use ggufy_quant::dequantize_row;
use ggufy_quant::dot::{ActQ8_0, ActQ8_1, ActQ8_K, ActivationFormat, BlockFormat, BlockSums};
use ggufy_quant::dot::{
    BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
};
use ggufy_quant::fp::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
use ggufy_quant::matvec::{self, Kernel};
use ggufy_quant::nf4::{NF4_BLOCK, dequantize_nf4, dot_nf4};
use ggufy_quant::packed::{self, ActTile, PackedRows, PlainCopy, TILE_TOKENS};
use ggufy_quant::simd::{self, Level};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Result, RunError};

/// Most weight rows per batched task: small enough to stay in L2 while every token of a batch
/// passes over them.
const MATMUL_ROWS: usize = 128;

/// Batched tasks per thread that a product is cut into, at least (down to one packed group
/// per task). With one 128-row task per thread, a k or v projection (256 rows) kept 2 of 16
/// threads busy, and a 5632-row gate (44 tasks) left a quarter of them idle in its last
/// round: 64-token prefill at 16 threads went 940–1100 → 1140–1300 tokens/s (Q4_0) with
/// this and the copy below.
const MATMUL_TASKS_PER_THREAD: usize = 8;

/// Mat-vec chunks are whole packed groups, so every chunk starts on a group boundary.
const CHUNK_ROWS: usize = ggufy_quant::packed::GROUP;

/// The least weight bytes in a mat-vec chunk: each chunk pays fixed costs (a claim, the
/// kernels' per-activation block sums), and at 8–16 threads chunks of one group made those
/// costs a tenth of a product (measured on a 16-core Xeon: 5–10% faster decode with this floor).
const CHUNK_MIN_BYTES: usize = 32 * 1024;

/// Activation values per task when a long activation is quantized on the pool (a down
/// projection's input; a multiple of every activation block size).
const PREPARE_TASK: usize = 2048;

/// Rows below this many multiply-adds in all stay on one thread (the fork costs more).
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// How a matrix's rows are stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Storage<'a> {
    /// A ggml type.
    Ggml(GgmlType),
    /// ggufy's NF4: packed 4-bit codes here, one f32 absmax per 64 weights in `absmax`.
    Nf4 {
        /// `<name>.absmax` bytes (little-endian f32, `cols / 64` per row).
        absmax: &'a [u8],
    },
}

/// A 2-D weight (`rows` outputs × `cols` inputs) as stored in the file.
#[derive(Clone, Debug)]
pub struct Matrix<'a> {
    /// Tensor name, for errors.
    pub name: &'a str,
    /// Storage format.
    pub storage: Storage<'a>,
    /// Output size (ggml ne1).
    pub rows: usize,
    /// Input size (ggml ne0).
    pub cols: usize,
    /// The row-major bytes.
    pub data: &'a [u8],
    /// The same rows copied for the vector kernels ([`Matrix::pack`]), if they are.
    copy: Option<Arc<WeightCopy>>,
}

/// A matrix's rows copied at load for the decode kernels.
#[derive(Debug)]
enum WeightCopy {
    /// Regrouped sixteen rows at a time (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K).
    Packed(PackedRows),
    /// As they are, in huge pages (F16).
    Plain(PlainCopy),
}

/// A device that can hold weight matrices and multiply by them (a GPU); see [`crate::Model::offload`].
pub trait Accelerator: Send + Sync {
    /// The device, for messages.
    fn name(&self) -> String;

    /// Copies `m` to the device; `Ok(None)` when the device does not handle its format (the
    /// matrix then stays on the CPU).
    fn upload(&self, m: &Matrix<'_>) -> std::result::Result<Option<Box<dyn DeviceMatrix>>, String>;
}

/// A weight matrix held by an [`Accelerator`].
pub trait DeviceMatrix: Send + Sync {
    /// `out = X · Wᵀ` for `x.len() / cols` input rows, laid out as [`Matrix::matmul`]'s.
    fn matmul(&self, x: &[f32], out: &mut [f32]) -> std::result::Result<(), String>;
}

/// The formats an activation is converted to, one per [`Activation`] variant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ActivationKind {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q8_1,
    Q8K,
}

/// The activation vector converted once per product to the format the weight's dot wants.
pub(crate) enum Activation {
    F32(Vec<f32>),
    /// Values rounded through f16 (ggml's F16 matmul converts the activation to F16).
    F16(Vec<f32>),
    /// Values rounded through bf16.
    Bf16(Vec<f32>),
    /// The blocks and their sums (for the packed kernels).
    Q8_0(Vec<u8>, BlockSums),
    Q8_1(Vec<u8>),
    Q8K(Vec<u8>),
}

#[inline(always)]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums: vectorizes, and the order is fixed (deterministic at any thread
    // count).
    let mut acc = [0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = ggufy_quant::dot::sum_lanes8(acc);
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

impl<'a> Matrix<'a> {
    /// Checks that `data` holds exactly `rows` rows of `cols` in `storage`.
    pub fn new(
        name: &'a str,
        storage: Storage<'a>,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Matrix<'a>> {
        let bad = |problem: String| RunError::Tensor {
            name: name.to_owned(),
            problem,
        };
        let row_bytes = match storage {
            Storage::Ggml(ty) => {
                if !cols.is_multiple_of(ty.block_size() as usize) {
                    return Err(bad(format!(
                        "{cols} columns are not whole {ty} blocks of {}",
                        ty.block_size()
                    )));
                }
                if !ggufy_quant::can_dequantize(ty) {
                    return Err(bad(format!("type {ty} cannot be computed with yet")));
                }
                cols / ty.block_size() as usize * ty.type_size() as usize
            }
            Storage::Nf4 { absmax } => {
                if !cols.is_multiple_of(64) {
                    return Err(bad(format!(
                        "{cols} columns are not whole NF4 blocks of 64"
                    )));
                }
                if absmax.len() != rows * cols / 64 * 4 {
                    return Err(bad("its .absmax tensor does not match".into()));
                }
                cols / 2
            }
        };
        if data.len() != rows * row_bytes {
            return Err(bad(format!(
                "{} bytes, expected {rows} rows of {row_bytes}",
                data.len()
            )));
        }
        Ok(Matrix {
            name,
            storage,
            rows,
            cols,
            data,
            copy: None,
        })
    }

    /// Whether [`Matrix::pack`] would regroup this matrix on this CPU: Q4_0, Q4_1, Q8_0, the
    /// K-quants Q4_K, Q5_K and Q6_K, and F16 (copied as it is, into huge pages) where the x86-64 vector kernels run (elsewhere
    /// the file layout is what the kernels read best).
    pub fn packable(&self) -> bool {
        let Storage::Ggml(ty) = self.storage else {
            return false;
        };
        let kernel = Kernel::best(simd::level());
        let packed_kernel =
            matches!(
                ty,
                GgmlType::Q4_0
                    | GgmlType::Q4_1
                    | GgmlType::Q8_0
                    | GgmlType::Q4_K
                    | GgmlType::Q5_K
                    | GgmlType::Q6_K
                    | GgmlType::F16
            ) && matches!(kernel, Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512Vnni);
        packed_kernel && self.rows >= ggufy_quant::packed::GROUP
    }

    /// Copies the rows into the layout the decode kernels stream fastest (sixteen rows
    /// interleaved block by block; F16 as it is; all in huge pages; see
    /// `ggufy_quant::packed`), which then serves every product; results do not change. Returns the bytes copied (0 when not
    /// [`Matrix::packable`]). The file's bytes stay in use for the last rows of a matrix whose
    /// row count is not a multiple of sixteen, and for embedding lookups.
    pub fn pack(&mut self) -> usize {
        if !self.packable() {
            return 0;
        }
        self.pack_anywhere()
    }

    /// [`Matrix::pack`] whatever the CPU (the tests' way to reach the packed paths anywhere).
    fn pack_anywhere(&mut self) -> usize {
        let Storage::Ggml(ty) = self.storage else {
            return 0;
        };
        if self.copy.is_some() {
            return 0;
        }
        let copy = if ty == GgmlType::F16 {
            PlainCopy::new(self.data).map(WeightCopy::Plain)
        } else {
            PackedRows::new(ty, self.data, self.row_bytes(), self.rows).map(WeightCopy::Packed)
        };
        let bytes = match &copy {
            Some(WeightCopy::Packed(p)) => p.len(),
            Some(WeightCopy::Plain(c)) => c.bytes().len(),
            None => 0,
        };
        self.copy = copy.map(Arc::new);
        bytes
    }

    /// Whether [`Matrix::pack`] regrouped this matrix.
    pub fn is_packed(&self) -> bool {
        self.copy.is_some()
    }

    fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// Row `r` decoded to f32 (an embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        let bytes = &self.data[r * rb..(r + 1) * rb];
        match self.storage {
            Storage::Ggml(ty) => {
                // Checked in `new`: whole blocks of a type we decode.
                let _ = dequantize_row(ty, bytes, out);
            }
            Storage::Nf4 { absmax } => {
                let am = nf4_absmax(absmax, r, self.cols);
                dequantize_nf4(bytes, &am, out);
            }
        }
    }

    /// Which activation format this storage's dot wants: matrices with the same one can share
    /// one [`Matrix::prepare`]d activation.
    fn activation_kind(&self) -> ActivationKind {
        match self.storage {
            Storage::Ggml(GgmlType::F16) => ActivationKind::F16,
            Storage::Ggml(GgmlType::BF16) => ActivationKind::Bf16,
            Storage::Ggml(GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0) => ActivationKind::Q8_0,
            Storage::Ggml(GgmlType::Q4_1 | GgmlType::Q5_1) => ActivationKind::Q8_1,
            Storage::Ggml(GgmlType::Q6_K | GgmlType::Q4_K | GgmlType::Q5_K) => ActivationKind::Q8K,
            _ => ActivationKind::F32,
        }
    }

    pub(crate) fn prepare(&self, x: &[f32]) -> Activation {
        let quant = |act: fn(&[f32], &mut [u8]) -> Result<(), ggufy_quant::QuantError>,
                     ty: GgmlType| {
            let (bs, ts) = (ty.block_size() as usize, ty.type_size() as usize);
            let mut out = vec![0u8; x.len() / bs * ts];
            if x.len() < 2 * PREPARE_TASK {
                let _ = act(x, &mut out);
            } else {
                // Blocks are independent: the same bytes at any split.
                x.par_chunks(PREPARE_TASK)
                    .zip(out.par_chunks_mut(PREPARE_TASK / bs * ts))
                    .for_each(|(x, o)| {
                        let _ = act(x, o);
                    });
            }
            out
        };
        match self.activation_kind() {
            ActivationKind::F16 => {
                Activation::F16(x.iter().map(|&v| f16_to_f32(f32_to_f16(v))).collect())
            }
            ActivationKind::Bf16 => {
                Activation::Bf16(x.iter().map(|&v| bf16_to_f32(f32_to_bf16(v))).collect())
            }
            ActivationKind::Q8_0 => {
                let blocks = quant(ActQ8_0::quantize_row, GgmlType::Q8_0);
                let sums = BlockSums::of_q8_0(&blocks);
                Activation::Q8_0(blocks, sums)
            }
            ActivationKind::Q8_1 => Activation::Q8_1(quant(ActQ8_1::quantize_row, GgmlType::Q8_1)),
            ActivationKind::Q8K => Activation::Q8K(quant(ActQ8_K::quantize_row, GgmlType::Q8_K)),
            ActivationKind::F32 => Activation::F32(x.to_vec()),
        }
    }

    #[inline(always)]
    fn row_dot(&self, r: usize, act: &Activation, scratch: &mut Vec<f32>) -> f32 {
        let rb = self.row_bytes();
        let w = &self.bytes()[r * rb..(r + 1) * rb];
        match (self.storage, act) {
            (Storage::Ggml(GgmlType::F16), Activation::F16(x)) => ggufy_quant::dot::dot_f16(w, x),
            (Storage::Ggml(GgmlType::BF16), Activation::Bf16(x)) => {
                ggufy_quant::dot::dot_bf16(w, x)
            }
            (Storage::Ggml(GgmlType::F32), Activation::F32(x)) => {
                scratch.clear();
                scratch.extend(
                    w.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
                dot_f32(scratch, x)
            }
            (Storage::Ggml(GgmlType::Q8_0), Activation::Q8_0(a, _)) => {
                BlockQ8_0::vec_dot_blocks(w, a)
            }
            (Storage::Ggml(GgmlType::Q4_0), Activation::Q8_0(a, _)) => {
                BlockQ4_0::vec_dot_blocks(w, a)
            }
            (Storage::Ggml(GgmlType::Q5_0), Activation::Q8_0(a, _)) => {
                BlockQ5_0::vec_dot_blocks(w, a)
            }
            (Storage::Ggml(GgmlType::Q4_1), Activation::Q8_1(a)) => BlockQ4_1::vec_dot_blocks(w, a),
            (Storage::Ggml(GgmlType::Q5_1), Activation::Q8_1(a)) => BlockQ5_1::vec_dot_blocks(w, a),
            (Storage::Ggml(GgmlType::Q6_K), Activation::Q8K(a)) => BlockQ6_K::vec_dot_blocks(w, a),
            (Storage::Ggml(GgmlType::Q4_K), Activation::Q8K(a)) => BlockQ4_K::vec_dot_blocks(w, a),
            (Storage::Ggml(GgmlType::Q5_K), Activation::Q8K(a)) => BlockQ5_K::vec_dot_blocks(w, a),
            (Storage::Nf4 { absmax }, Activation::F32(x)) => {
                let per_row = self.cols / NF4_BLOCK * 4;
                dot_nf4(w, &absmax[r * per_row..(r + 1) * per_row], x)
            }
            (_, Activation::F32(x)) => {
                scratch.resize(self.cols, 0.0);
                self.row_f32(r, scratch);
                dot_f32(scratch, x)
            }
            // `prepare` picks the activation from the storage, so no other pairing occurs.
            _ => 0.0,
        }
    }

    /// The row-major bytes products read: the copy in huge pages for F16 ([`Matrix::pack`]),
    /// otherwise the file's.
    fn bytes(&self) -> &[u8] {
        match self.copy.as_deref() {
            Some(WeightCopy::Plain(c)) => c.bytes(),
            _ => self.data,
        }
    }

    /// How many of rows `first..first + len` the packed copy serves (a prefix of them).
    fn packed_prefix(&self, first: usize, len: usize) -> Option<(&PackedRows, usize)> {
        let Some(WeightCopy::Packed(p)) = self.copy.as_deref() else {
            return None;
        };
        let end = (first + len).min(p.rows());
        // `then`, not `then_some`: the count must not be computed when there is none.
        (first < end).then(|| (p, end - first))
    }

    /// Rows `first..first + out.len()`: the packed rows where there are, the vector kernels of
    /// `ggufy_quant::matvec` on the file's rows where there is one, otherwise one reference
    /// dot per row.
    #[inline(always)]
    fn rows(
        &self,
        first: usize,
        act: &Activation,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
        level: Level,
    ) {
        if let Some((p, n)) = self.packed_prefix(first, out.len())
            && let Some((a, sums)) = match act {
                Activation::Q8_0(a, s) => Some((a, Some(s))),
                Activation::Q8_1(a) | Activation::Q8K(a) => Some((a, None)),
                _ => None,
            }
        {
            let (head, tail) = out.split_at_mut(n);
            if p.rows_dot(
                first,
                &[a],
                sums.as_slice(),
                &mut [head],
                Kernel::best(level),
            ) {
                if !tail.is_empty() {
                    self.file_rows(first + n, act, tail, scratch, level);
                }
                return;
            }
        }
        self.file_rows(first, act, out, scratch, level);
    }

    /// [`Matrix::rows`] from the file's layout.
    #[inline(always)]
    fn file_rows(
        &self,
        first: usize,
        act: &Activation,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
        level: Level,
    ) {
        let rb = self.row_bytes();
        let w = &self.bytes()[first * rb..];
        let kernel = Kernel::best(level);
        match (self.storage, act) {
            (Storage::Ggml(ty @ (GgmlType::Q4_0 | GgmlType::Q8_0)), Activation::Q8_0(a, sums))
                if matvec::q8_0_partner_rows(ty, w, rb, a, sums, out, kernel) =>
            {
                return;
            }
            (Storage::Ggml(ty @ GgmlType::Q5_0), Activation::Q8_0(a, _))
            | (Storage::Ggml(ty @ (GgmlType::Q4_1 | GgmlType::Q5_1)), Activation::Q8_1(a))
                if matvec::legacy_rows(ty, w, rb, a, out, kernel) =>
            {
                return;
            }
            (Storage::Ggml(GgmlType::Q6_K), Activation::Q8K(a)) => {
                matvec::q6_k_rows(w, rb, a, out, kernel);
                return;
            }
            (Storage::Ggml(GgmlType::Q4_K), Activation::Q8K(a)) => {
                matvec::q4_k_rows(w, rb, a, out, kernel);
                return;
            }
            (Storage::Ggml(GgmlType::Q5_K), Activation::Q8K(a)) => {
                matvec::q5_k_rows(w, rb, a, out, kernel);
                return;
            }
            (Storage::Ggml(GgmlType::F16), Activation::F16(x)) => {
                matvec::f16_rows(w, x, out, kernel);
                return;
            }
            (Storage::Ggml(GgmlType::BF16), Activation::Bf16(x)) => {
                matvec::bf16_rows(w, x, out, kernel);
                return;
            }
            (Storage::Nf4 { absmax }, Activation::F32(x)) => {
                let per_row = self.cols / NF4_BLOCK * 4;
                matvec::nf4_rows(w, &absmax[first * per_row..], x, out, kernel);
                return;
            }
            _ => {}
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.row_dot(first + i, act, scratch);
        }
    }

    /// Rows `first..first + len` against several activations at once (`out` holds one run of
    /// `len` per activation), where a batched kernel exists; false otherwise.
    fn rows_multi(&self, first: usize, acts: &[Activation], out: &mut [f32], level: Level) -> bool {
        let len = out.len() / acts.len().max(1);
        if let Some((p, n)) = self.packed_prefix(first, len) {
            // The codes, and the block sums where the activations are Q8_0 (Q8_K has its own).
            let mut sums: Vec<&BlockSums> = Vec::new();
            let a: Option<Vec<&[u8]>> = acts
                .iter()
                .map(|a| match a {
                    Activation::Q8_0(v, s) => {
                        sums.push(s);
                        Some(v.as_slice())
                    }
                    Activation::Q8_1(v) | Activation::Q8K(v) => Some(v.as_slice()),
                    _ => None,
                })
                .collect();
            if let Some(a) = a {
                let mut heads: Vec<&mut [f32]> =
                    out.chunks_exact_mut(len).map(|o| &mut o[..n]).collect();
                if p.rows_dot(first, &a, &sums, &mut heads, Kernel::best(level)) {
                    if n < len {
                        // The rows past the packed ones (fewer than a group) one at a time.
                        for (act, o) in acts.iter().zip(out.chunks_exact_mut(len)) {
                            self.file_rows(first + n, act, &mut o[n..], &mut Vec::new(), level);
                        }
                    }
                    return true;
                }
            }
        }
        let rb = self.row_bytes();
        let w = &self.bytes()[first * rb..];
        let kernel = Kernel::best(level);
        let mut outs: Vec<&mut [f32]> = out.chunks_exact_mut(len).collect();
        match self.storage {
            Storage::Ggml(ty @ (GgmlType::Q4_0 | GgmlType::Q8_0)) => {
                let a: Option<(Vec<&[u8]>, Vec<&BlockSums>)> = acts
                    .iter()
                    .map(|a| match a {
                        Activation::Q8_0(v, s) => Some((v.as_slice(), s)),
                        _ => None,
                    })
                    .collect();
                a.is_some_and(|(a, s)| {
                    matvec::q8_0_partner_rows_multi(ty, w, rb, &a, &s, &mut outs, kernel)
                })
            }
            Storage::Ggml(ty @ (GgmlType::Q4_K | GgmlType::Q5_K)) => {
                let a: Option<Vec<&[u8]>> = acts
                    .iter()
                    .map(|a| match a {
                        Activation::Q8K(v) => Some(v.as_slice()),
                        _ => None,
                    })
                    .collect();
                a.is_some_and(|a| matvec::k_quant_rows_multi(ty, w, rb, &a, &mut outs, kernel))
            }
            Storage::Ggml(GgmlType::F16) => {
                let x: Option<Vec<&[f32]>> = acts
                    .iter()
                    .map(|a| match a {
                        Activation::F16(v) => Some(v.as_slice()),
                        _ => None,
                    })
                    .collect();
                match x {
                    // llama.cpp multiplies batches of F16 rows with tinyBLAS (rows a multiple of
                    // 4, columns of 16), whose order differs from its one-token dot.
                    Some(x) if self.rows.is_multiple_of(4) && self.cols.is_multiple_of(16) => {
                        matvec::f16_rows_tiled(w, &x, &mut outs, kernel);
                        true
                    }
                    Some(x) => {
                        matvec::f16_rows_multi(w, &x, &mut outs, kernel);
                        true
                    }
                    None => false,
                }
            }
            Storage::Ggml(GgmlType::BF16) => {
                let x: Option<Vec<&[f32]>> = acts
                    .iter()
                    .map(|a| match a {
                        Activation::Bf16(v) => Some(v.as_slice()),
                        _ => None,
                    })
                    .collect();
                x.is_some_and(|x| matvec::bf16_rows_multi(w, &x, &mut outs, kernel))
            }
            Storage::Nf4 { absmax } => {
                let x: Option<Vec<&[f32]>> = acts
                    .iter()
                    .map(|a| match a {
                        Activation::F32(v) => Some(v.as_slice()),
                        _ => None,
                    })
                    .collect();
                let per_row = self.cols / NF4_BLOCK * 4;
                x.is_some_and(|x| {
                    matvec::nf4_rows_multi(w, &absmax[first * per_row..], &x, &mut outs, kernel)
                })
            }
            _ => false,
        }
    }

    /// [`Matrix::rows`] compiled for AVX2 so that its loops vectorize. The arithmetic is the same
    /// (no fused multiply-add, no reordering), so the results are bit-identical.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn rows_avx2(
        &self,
        first: usize,
        act: &Activation,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
        level: Level,
    ) {
        self.rows(first, act, out, scratch, level);
    }

    fn rows_dispatch(
        &self,
        first: usize,
        act: &Activation,
        out: &mut [f32],
        scratch: &mut Vec<f32>,
        level: Level,
    ) {
        #[cfg(target_arch = "x86_64")]
        if level == Level::Avx2 {
            // SAFETY: `Level::Avx2` is chosen only on CPUs with AVX2, the one requirement of a
            // `target_feature(enable = "avx2")` function.
            unsafe { self.rows_avx2(first, act, out, scratch, level) };
            return;
        }
        self.rows(first, act, out, scratch, level);
    }

    /// `out = W · x` (`out.len() == rows`, `x.len() == cols`), rows split across threads;
    /// the result does not depend on the thread count or on the CPU's vector instructions.
    pub fn matvec(&self, x: &[f32], out: &mut [f32]) {
        self.matvec_with(x, out, simd::level());
    }

    /// `out = X · Wᵀ` for a batch: `x` holds `n` input rows of `cols`, `out` the `n` output rows
    /// of `rows`. Each weight row chunk is read once for the whole batch; every output equals
    /// what [`Matrix::matvec`] gives for its input row.
    pub fn matmul(&self, x: &[f32], out: &mut [f32]) {
        self.matmul_with(x, out, simd::level());
    }

    /// [`Matrix::matmul`] at a given vector level.
    pub fn matmul_with(&self, x: &[f32], out: &mut [f32], level: Level) {
        Self::matmul_shared_with(&[self], x, &mut [out], level);
    }

    /// `outs[i] = X · mats[i]ᵀ` for several matrices that read the same batch (q, k and v;
    /// gate and up): the batch is quantized (and tiled) once per activation format, and the
    /// matrices' row tasks share one parallel pass. Each result equals [`Matrix::matmul`]'s.
    pub fn matmul_shared(mats: &[&Matrix<'_>], x: &[f32], outs: &mut [&mut [f32]]) {
        Self::matmul_shared_with(mats, x, outs, simd::level());
    }

    /// [`Matrix::matmul_shared`] at a given vector level.
    pub fn matmul_shared_with(
        mats: &[&Matrix<'_>],
        x: &[f32],
        outs: &mut [&mut [f32]],
        level: Level,
    ) {
        let Some(m0) = mats.first() else {
            return;
        };
        let n = x.len() / m0.cols.max(1);
        if n <= 1 {
            match (mats, outs) {
                ([m], [out]) => m.matvec_with(x, out, level),
                (mats, outs) => Self::matvec_shared_with(mats, x, outs, level),
            }
            return;
        }
        // One conversion per activation format, and its AMX tiles where a matrix of that
        // format runs on tiles, shared by the matrices that read it.
        let (firsts, input_of) = Self::activation_groups(mats);
        let inputs: Vec<(Vec<Activation>, Vec<ActTile>)> = firsts
            .iter()
            .enumerate()
            .map(|(g, &f)| {
                let acts: Vec<Activation> = x
                    .par_chunks_exact(mats[f].cols)
                    .map(|r| mats[f].prepare(r))
                    .collect();
                let tiles = (f..mats.len())
                    .filter(|&i| input_of[i] == g)
                    .map(|i| mats[i].act_tiles(&acts, level))
                    .find(|t| !t.is_empty())
                    .unwrap_or_default();
                (acts, tiles)
            })
            .collect();
        // Whole packed groups, so that every task starts on a group boundary.
        let threads = rayon::current_num_threads().max(1);
        let mut tasks = Vec::new();
        for (i, m) in mats.iter().enumerate() {
            let chunk = (m.rows / (MATMUL_TASKS_PER_THREAD * threads) / CHUNK_ROWS * CHUNK_ROWS)
                .clamp(CHUNK_ROWS, MATMUL_ROWS);
            tasks.extend(
                (0..m.rows)
                    .step_by(chunk)
                    .map(|first| (i, first, chunk.min(m.rows - first))),
            );
        }
        let parts: Vec<Vec<f32>> = tasks
            .par_iter()
            .map_init(Vec::new, |scratch, &(i, first, len)| {
                let (acts, tiles) = &inputs[input_of[i]];
                mats[i].batch_rows(first, len, acts, tiles, scratch, level)
            })
            .collect();
        // Token rows on the pool: one thread copying a 64-token gate projection's 1.4 MB was a
        // serial stretch of every batched product.
        let mut rows: Vec<(usize, usize, &mut [f32])> = Vec::new();
        for (i, (m, out)) in mats.iter().zip(outs.iter_mut()).enumerate() {
            rows.extend(
                out.chunks_exact_mut(m.rows)
                    .enumerate()
                    .map(|(t, o)| (i, t, o)),
            );
        }
        rows.par_iter_mut().for_each(|(i, t, o)| {
            for (&(m, first, len), part) in tasks.iter().zip(&parts) {
                if m == *i {
                    o[first..first + len].copy_from_slice(&part[*t * len..(*t + 1) * len]);
                }
            }
        });
    }

    /// Rows `first..first + len` against every token of a batch (`tiles` are AMX tiles of
    /// the leading tokens, or none): `acts.len() × len` outputs, token-major.
    fn batch_rows(
        &self,
        first: usize,
        len: usize,
        acts: &[Activation],
        tiles: &[ActTile],
        scratch: &mut Vec<f32>,
        level: Level,
    ) -> Vec<f32> {
        let mut part = vec![0f32; acts.len() * len];
        let mut done = 0;
        if !tiles.is_empty()
            && let Some((p, m)) = self.packed_prefix(first, len)
        {
            let tiled: usize = tiles.iter().map(ActTile::tokens).sum();
            let o = &mut part[..tiled * len];
            let mut heads: Vec<&mut [f32]> = o.chunks_exact_mut(len).map(|o| &mut o[..m]).collect();
            if p.rows_dot_tiles(first, tiles, &mut heads) {
                if m < len {
                    // The rows past the packed ones (fewer than a group).
                    for (act, o) in acts.iter().zip(o.chunks_exact_mut(len)) {
                        self.file_rows(first + m, act, &mut o[m..], scratch, level);
                    }
                }
                done = tiled;
            }
        }
        // Tokens no tile took (all of them where there are no tiles).
        for (acts, o) in acts[done..]
            .chunks(matvec::MAX_TOKENS)
            .zip(part[done * len..].chunks_mut(len * matvec::MAX_TOKENS))
        {
            if !self.rows_multi(first, acts, o, level) {
                for (act, o) in acts.iter().zip(o.chunks_exact_mut(len)) {
                    self.rows_dispatch(first, act, o, scratch, level);
                }
            }
        }
        part
    }

    /// The batch's activations (Q8_0; Q8_K for Q4_K and Q5_K) as AMX tiles of [`TILE_TOKENS`] tokens
    /// (the last one shorter), when this matrix's packed rows run on tiles here; empty
    /// otherwise. A last tile of fewer than [`matvec::MAX_TOKENS`] tokens is left to the vector
    /// kernels.
    fn act_tiles(&self, acts: &[Activation], level: Level) -> Vec<ActTile> {
        let ty = match self.copy.as_deref() {
            Some(WeightCopy::Packed(p)) => p.ty(),
            _ => return Vec::new(),
        };
        let k_quant = matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K);
        if !(k_quant || matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0))
            || Kernel::best(level) != Kernel::Avx512Vnni
            || !packed::tiles_ready()
            || acts.len() < matvec::MAX_TOKENS
        {
            return Vec::new();
        }
        let mut tiles = Vec::new();
        for batch in acts.chunks(TILE_TOKENS) {
            if batch.len() < matvec::MAX_TOKENS {
                break;
            }
            let tile = if k_quant {
                let a: Option<Vec<&[u8]>> = batch
                    .iter()
                    .map(|a| match a {
                        Activation::Q8K(v) => Some(v.as_slice()),
                        _ => None,
                    })
                    .collect();
                a.and_then(|a| ActTile::from_q8_k(&a, self.cols / 256))
            } else {
                let a: Option<(Vec<&[u8]>, Vec<&BlockSums>)> = batch
                    .iter()
                    .map(|a| match a {
                        Activation::Q8_0(v, s) => Some((v.as_slice(), s)),
                        _ => None,
                    })
                    .collect();
                a.and_then(|(a, s)| ActTile::new(&a, &s, self.cols / 32))
            };
            match tile {
                Some(t) => tiles.push(t),
                None => break,
            }
        }
        tiles
    }

    /// `outs[i] = mats[i] · x` for several matrices that read the same input (q, k and v; gate
    /// and up), in one parallel pass: the worker threads wake once instead of once per matrix.
    /// Each result equals [`Matrix::matvec`]'s.
    pub fn matvec_shared(mats: &[&Matrix<'_>], x: &[f32], outs: &mut [&mut [f32]]) {
        Self::matvec_shared_with(mats, x, outs, simd::level());
    }

    /// [`Matrix::matvec_shared`] at a given vector level.
    fn matvec_shared_with(mats: &[&Matrix<'_>], x: &[f32], outs: &mut [&mut [f32]], level: Level) {
        // One conversion per activation format, shared by the matrices that read it (q, k and
        // v of one type quantize x once, not three times).
        let (firsts, act_of) = Self::activation_groups(mats);
        let acts: Vec<Activation> = firsts.iter().map(|&f| mats[f].prepare(x)).collect();
        Self::share_rows(mats, &acts, &act_of, outs, level);
    }

    /// The matrices grouped by activation format: each format's first matrix, and each
    /// matrix's group (an input is converted once per group).
    fn activation_groups(mats: &[&Matrix<'_>]) -> (Vec<usize>, Vec<usize>) {
        let (mut firsts, mut group_of) = (Vec::new(), Vec::with_capacity(mats.len()));
        for (i, m) in mats.iter().enumerate() {
            let kind = m.activation_kind();
            match firsts
                .iter()
                .position(|&f: &usize| mats[f].activation_kind() == kind)
            {
                Some(g) => group_of.push(g),
                None => {
                    group_of.push(firsts.len());
                    firsts.push(i);
                }
            }
        }
        (firsts, group_of)
    }

    /// [`Matrix::matvec`] at a given vector level; the tests compare the levels.
    pub fn matvec_with(&self, x: &[f32], out: &mut [f32], level: Level) {
        let act = self.prepare(x);
        if self.rows * self.cols < PARALLEL_MIN_WORK {
            self.rows_dispatch(0, &act, out, &mut Vec::new(), level);
            return;
        }
        Self::share_rows(&[self], &[act], &[0], &mut [out], level);
    }

    /// `outs[i] = mats[i] · acts[act_of[i]]` on every thread of the pool. The rows are cut into
    /// chunks that shrink as the work left shrinks (each about 1/(2n) of what remains for n
    /// threads, down to [`CHUNK_MIN_BYTES`]), and whichever thread is free claims the next one:
    /// the big early chunks keep the claiming cheap, the small late ones leave no thread
    /// waiting long for the last. (Rayon's even split left one thread idle for half a
    /// 256-row chunk at the end of every product — a down projection's chunk takes ~0.1 ms.)
    fn share_rows(
        mats: &[&Matrix<'_>],
        acts: &[Activation],
        act_of: &[usize],
        outs: &mut [&mut [f32]],
        level: Level,
    ) {
        let threads = rayon::current_num_threads().max(1);
        let mut remaining: usize = mats.iter().map(|m| m.rows * m.row_bytes()).sum();
        let mut chunks = Vec::new();
        for (i, (m, out)) in mats.iter().zip(outs.iter_mut()).enumerate() {
            let rb = m.row_bytes().max(1);
            let min_rows = CHUNK_MIN_BYTES.div_ceil(rb).next_multiple_of(CHUNK_ROWS);
            let mut rest: &mut [f32] = out;
            let mut first = 0;
            while !rest.is_empty() {
                let want = (remaining / (2 * threads) / rb) / CHUNK_ROWS * CHUNK_ROWS;
                let mut len = want.max(min_rows).min(rest.len());
                if rest.len() - len < min_rows {
                    len = rest.len();
                }
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
                chunks.push((i, first, Mutex::new(head)));
                rest = tail;
                first += len;
                remaining = remaining.saturating_sub(len * rb);
            }
        }
        let next = AtomicUsize::new(0);
        let work = || {
            let mut scratch = Vec::new();
            while let Some((i, first, out)) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                // Each chunk is claimed once, so its lock is never contended.
                let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
                mats[*i].rows_dispatch(*first, &acts[act_of[*i]], &mut out, &mut scratch, level);
            }
        };
        if threads == 1 || chunks.len() == 1 {
            work();
            return;
        }
        // One copy of the work for every thread, each taken from that thread's own queue:
        // spawned jobs sat in this thread's deque, where 15 spinning helpers stole them one at
        // a time (~17 µs before the last one started, at 16 threads). Copies that find no
        // chunk left return at once.
        rayon::scope(|s| {
            s.spawn_broadcast(|_, _| work());
            work();
        });
    }
}

/// One row's NF4 block scales.
fn nf4_absmax(absmax: &[u8], r: usize, cols: usize) -> Vec<f32> {
    let per_row = cols / 64;
    absmax[r * per_row * 4..(r + 1) * per_row * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A value rounded through f16 (nearest, ties to even; overflow to infinity; NaN stays NaN), as
/// llama.cpp's F16 KV cache and F16 operands hold it. Plain integer and float operations with no
/// table or branch the compiler cannot turn into selects, so loops over slices vectorize — the
/// attention inner loop rounds every element of its accumulator per cached token. Equal to a
/// conversion through `half::f16` for every f32 but NaN payloads (tests check all 2³² inputs in
/// release builds).
#[inline(always)]
pub(crate) fn round_f16(x: f32) -> f32 {
    let bits = x.to_bits();
    let abs = bits & 0x7fff_ffff;
    // Normal f16 range: keep 10 mantissa bits, rounding the 13 dropped ones to nearest even.
    let normal = (abs + 0x0fff + ((abs >> 13) & 1)) & 0xffff_e000;
    // Below f16's smallest normal (2^-14) the quantum is 2^-24: adding 0.5 leaves exactly that
    // quantum as the ulp, so the f32 addition does the rounding; subtracting 0.5 is exact.
    let tiny = ((f32::from_bits(abs) + 0.5) - 0.5).to_bits();
    let r = if abs < 0x3880_0000 {
        tiny
    } else if abs > 0x7f80_0000 {
        (abs | 0x0040_0000) & 0xffff_e000 // NaN: quieted, payload cut to f16's 10 bits
    } else if abs >= 0x477f_f000 {
        0x7f80_0000 // 65520 and above round to infinity
    } else {
        normal
    };
    f32::from_bits((bits & 0x8000_0000) | r)
}

/// `half`'s conversion, the reference [`round_f16`] is tested against.
#[cfg(test)]
fn round_f16_reference(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_round_f16(bits: u32) {
        let x = f32::from_bits(bits);
        let (got, want) = (round_f16(x), round_f16_reference(x));
        // NaN payloads are nobody's data; NaN must stay NaN.
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{x:e} ({bits:#010x}): {got:e} ({:#010x}), half says {want:e} ({:#010x})",
            got.to_bits(),
            want.to_bits()
        );
    }

    #[test]
    fn round_f16_equals_half_on_every_input() {
        // Every f32 in an optimized build (seconds); in a debug build every 251st bit pattern
        // plus every pattern near the range boundaries and ties.
        let step = if cfg!(debug_assertions) { 251 } else { 1 };
        for bits in (0..=u32::MAX).step_by(step) {
            check_round_f16(bits);
        }
        for edge in [
            0x3880_0000u32,
            0x477f_e000,
            0x477f_f000,
            0x7f80_0000,
            0x3300_0000,
            0,
        ] {
            for d in 0..=0x4000u32 {
                for sign in [0, 0x8000_0000] {
                    check_round_f16(sign | edge.wrapping_add(d));
                    check_round_f16(sign | edge.wrapping_sub(d));
                }
            }
        }
    }

    #[test]
    fn packed_matrices_give_the_same_bits() {
        // 300 rows: 18 packed groups of 16 and 12 rows left in the file's layout. 22 tokens:
        // where AMX runs, a whole tile and a short one (Q4_0, Q8_0); 18: a tile, then two
        // tokens through the vector kernels.
        let (rows, cols, tokens) = (300, 256, 22);
        let mut state = 7u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        };
        let x: Vec<f32> = (0..tokens * cols).map(|_| next()).collect();
        let w32: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q6_K,
            GgmlType::F16,
        ] {
            let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
            let mut data = vec![0u8; rows * row_bytes];
            for (src, dst) in w32.chunks_exact(cols).zip(data.chunks_exact_mut(row_bytes)) {
                ggufy_quant::quantize_row(ty, src, dst, ggufy_quant::Rounding::Separate).unwrap();
            }
            let plain = Matrix::new("w", Storage::Ggml(ty), rows, cols, &data).unwrap();
            let mut packed = plain.clone();
            // F16 is copied whole; the others keep the last 12 rows in the file's layout.
            let copied = if ty == GgmlType::F16 { rows } else { 288 };
            assert_eq!(packed.pack_anywhere(), copied * row_bytes);
            assert!(packed.is_packed());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for level in [simd::level(), Level::Scalar] {
                let (mut a, mut b) = (vec![0f32; rows], vec![0f32; rows]);
                plain.matvec_with(&x[..cols], &mut a, level);
                packed.matvec_with(&x[..cols], &mut b, level);
                assert_eq!(bits(&a), bits(&b), "{ty} matvec {level:?}");
                for n in [6, 18, tokens] {
                    let (mut a, mut b) = (vec![0f32; rows * n], vec![0f32; rows * n]);
                    plain.matmul_with(&x[..n * cols], &mut a, level);
                    packed.matmul_with(&x[..n * cols], &mut b, level);
                    assert_eq!(bits(&a), bits(&b), "{ty} matmul {level:?} of {n}");
                }
            }
            let mut outs = [vec![0f32; rows], vec![0f32; rows]];
            let [o1, o2] = &mut outs;
            Matrix::matvec_shared(&[&packed, &plain], &x[..cols], &mut [o1, o2]);
            assert_eq!(bits(&outs[0]), bits(&outs[1]), "{ty} shared");
        }
    }

    /// An activation row and one weight matrix quantized to each of `types` (fixed values).
    fn mixed_weights(rows: usize, cols: usize, types: &[GgmlType]) -> (Vec<f32>, Vec<Vec<u8>>) {
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let w32: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
            .collect();
        let data = types
            .iter()
            .map(|&ty| {
                let rb = ty.row_bytes(cols as u64).unwrap() as usize;
                let mut d = vec![0u8; rows * rb];
                for (src, dst) in w32.chunks_exact(cols).zip(d.chunks_exact_mut(rb)) {
                    ggufy_quant::quantize_row(ty, src, dst, ggufy_quant::Rounding::Separate)
                        .unwrap();
                }
                d
            })
            .collect();
        (x, data)
    }

    /// [`Matrix`]es over [`mixed_weights`]' bytes.
    fn matrices<'a>(
        rows: usize,
        cols: usize,
        types: &[GgmlType],
        data: &'a [Vec<u8>],
    ) -> Vec<Matrix<'a>> {
        types
            .iter()
            .zip(data)
            .map(|(&ty, d)| Matrix::new("w", Storage::Ggml(ty), rows, cols, d).unwrap())
            .collect()
    }

    #[test]
    fn products_are_the_same_at_any_thread_count() {
        // Big enough to be cut into many chunks; 1000 rows leave 8 past the last packed group.
        let (rows, cols) = (1000, 512);
        let types = [
            GgmlType::Q8_0,
            GgmlType::F16,
            GgmlType::Q6_K,
            GgmlType::Q5_0,
        ];
        let (x, data) = mixed_weights(rows, cols, &types);
        let mut mats = matrices(rows, cols, &types, &data);
        mats[0].pack_anywhere();
        let level = simd::level();
        // Each row on its own: no chunking at all.
        let want: Vec<Vec<f32>> = mats
            .iter()
            .map(|m| {
                let act = m.prepare(&x);
                (0..rows)
                    .map(|r| {
                        let mut one = [0f32];
                        m.rows_dispatch(r, &act, &mut one, &mut Vec::new(), level);
                        one[0]
                    })
                    .collect()
            })
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for threads in [1, 2, 3, 7] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for (m, want) in mats.iter().zip(&want) {
                    let mut got = vec![0f32; rows];
                    m.matvec(&x, &mut got);
                    assert_eq!(bits(&got), bits(want), "{:?} at {threads}", m.storage);
                }
                let refs: Vec<&Matrix<'_>> = mats.iter().collect();
                let mut outs = vec![vec![0f32; rows]; mats.len()];
                let mut out_refs: Vec<&mut [f32]> =
                    outs.iter_mut().map(Vec::as_mut_slice).collect();
                Matrix::matvec_shared(&refs, &x, &mut out_refs);
                for ((m, got), want) in mats.iter().zip(&outs).zip(&want) {
                    assert_eq!(bits(got), bits(want), "shared {:?} at {threads}", m.storage);
                }
            });
        }
    }

    #[test]
    fn shared_matvec_of_mixed_types_equals_each_matvec() {
        // The activation is converted once per format and shared; every result must still be
        // what the matrix's own matvec gives.
        let (rows, cols) = (40, 256);
        let types = [
            GgmlType::Q4_0,
            GgmlType::F16,
            GgmlType::Q8_0,
            GgmlType::Q6_K,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
        ];
        let (x, data) = mixed_weights(rows, cols, &types);
        let mats = matrices(rows, cols, &types, &data);
        let refs: Vec<&Matrix<'_>> = mats.iter().collect();
        let mut outs = vec![vec![0f32; rows]; mats.len()];
        let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        Matrix::matvec_shared(&refs, &x, &mut out_refs);
        for (m, got) in mats.iter().zip(&outs) {
            let mut want = vec![0f32; rows];
            m.matvec(&x, &mut want);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(got), bits(&want), "{:?}", m.storage);
        }
    }

    #[test]
    fn shared_matmul_is_each_tokens_product_at_any_thread_count() {
        // q/k/v-like sets read one batch: the batch is quantized and tiled once per format
        // (Q4_0 and Q8_0 share Q8_0 activations and tiles; Q4_K and Q6_K share Q8_K), and
        // the rows are cut into tasks by thread count. 300 rows: 18 packed groups and 12 rows
        // in the file's layout. Every output must be the token's own matvec, bit for bit (F16:
        // see below).
        let (rows, cols) = (300, 256);
        let types = [
            GgmlType::Q4_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::F16,
            GgmlType::Q5_0,
        ];
        // ggufy does not quantize to Q4_K: arbitrary superblocks (every scale, minimum and
        // nibble) with finite d and dmin.
        let q4_k: Vec<u8> = (0..rows * 144)
            .map(|i| match i % 144 {
                0 | 2 => 0x4f,
                1 | 3 => 0x1e,
                j => (i * 131 + j * 7 % 251) as u8,
            })
            .collect();
        let (_, mut data) = mixed_weights(rows, cols, &[types[0], types[1]]);
        data.push(q4_k);
        data.extend(mixed_weights(rows, cols, &types[3..]).1);
        let mut mats = matrices(rows, cols, &types, &data);
        for m in &mut mats[..4] {
            m.pack_anywhere();
        }
        let tokens = 33;
        let x: Vec<f32> = (0..tokens * cols)
            .map(|i| ((i * 29 % 89) as f32 - 44.0) / 20.0)
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // Batched F16 follows tinyBLAS's order (as llama.cpp does), not the one-token dot's:
        // its reference is the whole matrix as one task.
        let want = |m: &Matrix<'_>, n: usize| -> Vec<f32> {
            if matches!(m.storage, Storage::Ggml(GgmlType::F16)) {
                let acts: Vec<Activation> = x[..n * cols]
                    .chunks_exact(cols)
                    .map(|r| m.prepare(r))
                    .collect();
                return m.batch_rows(0, rows, &acts, &[], &mut Vec::new(), simd::level());
            }
            let mut w = vec![0f32; n * rows];
            for (xr, o) in x[..n * cols]
                .chunks_exact(cols)
                .zip(w.chunks_exact_mut(rows))
            {
                m.matvec(xr, o);
            }
            w
        };
        let want: Vec<Vec<Vec<f32>>> = [2, 5, 17, 22, tokens]
            .iter()
            .map(|&n| mats.iter().map(|m| want(m, n)).collect())
            .collect();
        for threads in [1, 2, 5] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for (&n, want) in [2, 5, 17, 22, tokens].iter().zip(&want) {
                    for set in [&[0, 1, 2, 3, 4, 5][..], &[2, 3], &[1]] {
                        let refs: Vec<&Matrix<'_>> = set.iter().map(|&i| &mats[i]).collect();
                        let mut outs = vec![vec![0f32; n * rows]; set.len()];
                        let mut out_refs: Vec<&mut [f32]> =
                            outs.iter_mut().map(Vec::as_mut_slice).collect();
                        Matrix::matmul_shared(&refs, &x[..n * cols], &mut out_refs);
                        for (&i, got) in set.iter().zip(&outs) {
                            assert_eq!(
                                bits(got),
                                bits(&want[i]),
                                "{} of {n} tokens among {set:?} at {threads} threads",
                                types[i]
                            );
                        }
                    }
                }
            });
        }
    }

    #[test]
    fn vector_and_plain_matvec_agree_bit_for_bit() {
        let (rows, cols) = (300, 256);
        let mut state = 1u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        };
        let x: Vec<f32> = (0..cols).map(|_| next()).collect();
        let w32: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q6_K,
        ] {
            let row_bytes = cols / ty.block_size() as usize * ty.type_size() as usize;
            let mut data = vec![0u8; rows * row_bytes];
            for (src, dst) in w32.chunks_exact(cols).zip(data.chunks_exact_mut(row_bytes)) {
                ggufy_quant::quantize_row(ty, src, dst, ggufy_quant::Rounding::Separate).unwrap();
            }
            let m = Matrix::new("w", Storage::Ggml(ty), rows, cols, &data).unwrap();
            let (mut a, mut b) = (vec![0f32; rows], vec![0f32; rows]);
            m.matvec_with(&x, &mut a, simd::level());
            m.matvec_with(&x, &mut b, Level::Scalar);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{ty}");
            // And close to the exact product of the decoded weights.
            let mut row = vec![0f32; cols];
            for (r, got) in a.iter().enumerate() {
                m.row_f32(r, &mut row);
                let exact: f32 = row.iter().zip(&x).map(|(w, x)| w * x).sum();
                assert!(
                    (got - exact).abs() <= 0.05 * (1.0 + exact.abs()),
                    "{ty} row {r}"
                );
            }
        }
    }
}
