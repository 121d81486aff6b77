//! Q4_0, Q8_0 and K-quant (Q4_K, Q5_K, Q6_K) matrices regrouped sixteen rows at a time for the
//! decode and prefill loops.
//!
//! In a file, a matrix's rows follow each other. A kernel that keeps each row's sum in its own
//! vector lane (ggml's order: one multiply-add per block and row) then reads sixteen streams a
//! row apart, gathers the scales and shuffles every block into place. [`PackedRows`] stores the
//! same bytes so that a group of sixteen rows is one contiguous run, block by block, already in
//! the layout `vpdpbusd` consumes (each 64-byte line: four consecutive codes of each of the 16
//! rows), with the sixteen scales in one line: a block of 16 rows is a few loads and
//! multiply-adds, no shuffles, and memory is read front to back. Results are bit-identical to
//! the row-major kernels (the same exact integer block sums, the same per-row multiply-add
//! chain); tests check them against the scalar references. The AVX-512 kernels take a line at
//! a time, the AVX2 and AVX-VNNI ones (CPUs without AVX-512) each line as two 32-byte halves of
//! eight rows. F16 rows are only copied as they are ([`PlainCopy`]): what they gain is the huge
//! pages every copy here lives in.

use ggufy_gguf::GgmlType;

use crate::dot::{
    BlockFormat, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockSums,
};
use crate::matvec::{Kernel, batch_len};

/// Rows per group (one 512-bit register of f32 sums).
pub const GROUP: usize = 16;

/// A weight matrix copied for the decode kernels. Q4_0 and Q8_0: its whole groups of 16 rows,
/// each laid out as: the sixteen rows' f16 scales
/// for every block (32 bytes per block, row order), then for every block its codes as 64-byte
/// lines, line `j` holding bytes `4j..4j + 4` of each row's codes in row order (Q4_0: 4 lines
/// of raw nibble bytes; Q8_0: 8 lines with the sign bit flipped, i.e. code + 128, the unsigned
/// operand `vpdpbusd` wants). K-quant groups go superblock by superblock instead (see
/// [`k_offset`] and [`q6_k_offset`]). A group holds exactly the bytes of its rows.
/// Rows past the last whole group are not here: the caller keeps them in the file's layout.
#[derive(Debug)]
pub struct PackedRows {
    ty: GgmlType,
    groups: usize,
    blocks: usize,
    /// Anonymous memory rather than a `Vec`, so that it can ask for huge pages: streaming a
    /// matrix through 4 KiB pages costs a TLB miss every 4 KiB (decode measured 10–15% faster
    /// with 2 MiB pages). Page-aligned, so every line is a cache line.
    buf: memmap2::MmapMut,
}

/// `len` bytes of zeroed anonymous memory that asks for huge pages (Linux).
fn huge_pages(len: usize) -> Option<memmap2::MmapMut> {
    // An empty map is an error on some systems; keep one byte.
    let buf = memmap2::MmapMut::map_anon(len.max(1)).ok()?;
    #[cfg(target_os = "linux")]
    let _ = buf.advise(memmap2::Advice::HugePage);
    Some(buf)
}

/// Bytes copied as they are into huge pages: F16 weights, whose kernel wants the file's row
/// order and gains only from the pages (measured 19 → 23 GB/s against the file's mapping).
#[derive(Debug)]
pub struct PlainCopy {
    buf: memmap2::MmapMut,
    len: usize,
}

impl PlainCopy {
    /// A copy of `bytes`; `None` when the memory cannot be had.
    pub fn new(bytes: &[u8]) -> Option<PlainCopy> {
        let mut buf = huge_pages(bytes.len())?;
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(PlainCopy {
            buf,
            len: bytes.len(),
        })
    }

    /// The copied bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Bytes of a Q6_K superblock in the file.
const Q6_K_BYTES: usize = 210;

/// Bytes of a Q4_K superblock in the file.
const Q4_K_BYTES: usize = 144;

/// Bytes of a Q5_K superblock in the file.
const Q5_K_BYTES: usize = 176;

/// Where byte `o` of row `r`'s Q4_K (or, `q5`, Q5_K) superblock goes in the group's packed
/// superblock (16 × 144 or 16 × 176 bytes): the 16 f16 scales `d` then the 16 f16 minimum
/// scales `dmin` (one 64-byte line), the 12 bytes of 6-bit sub-block scales and minimums as 3
/// lines of four bytes per row (192), Q5_K's fifth bits `qh` as 8 such lines (512), then the
/// nibbles `qs` as 32 such lines (2048). Line `8c + j` of `qs` holds codes `4j..4j + 4` of
/// sub-block `2c` (low nibbles) and of sub-block `2c + 1` (high nibbles) of every row, so one
/// broadcast of four activation codes serves sixteen rows.
fn k_offset(q5: bool, r: usize, o: usize) -> usize {
    let (qh, qs) = (16, if q5 { 48 } else { 16 });
    let quad = |base: usize, at: usize| base + 64 * (at / 4) + 4 * r + at % 4;
    match o {
        0..2 => 2 * r + o,
        2..4 => 32 + 2 * r + (o - 2),
        4..16 => quad(64, o - 4),
        _ if o < qs => quad(256, o - qh),
        _ => quad(if q5 { 768 } else { 256 }, o - qs),
    }
}

/// Where byte `o` of row `r`'s Q6_K superblock goes in the group's packed superblock (16 × 210
/// bytes): the 16 f16 scales `d` (32 bytes), the 16 sub-block scales as 16 lines of one byte per
/// row (256), then the low-nibble bytes `ql` and the high-bit bytes `qh` as 64-byte lines of
/// four bytes per row (2048 and 1024) — four consecutive `ql` or `qh` bytes of a row carry
/// four consecutive elements of several sub-blocks, which the kernel takes apart with shifts.
fn q6_k_offset(r: usize, o: usize) -> usize {
    match o {
        0..128 => 288 + 64 * (o / 4) + 4 * r + o % 4,
        128..192 => 2336 + 64 * ((o - 128) / 4) + 4 * r + o % 4,
        192..208 => 32 + 16 * (o - 192) + r,
        _ => 2 * r + (o - 208),
    }
}

/// Bytes of a superblock of the K-quant types packed superblock by superblock.
fn superblock_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::Q4_K => Some(Q4_K_BYTES),
        GgmlType::Q5_K => Some(Q5_K_BYTES),
        GgmlType::Q6_K => Some(Q6_K_BYTES),
        _ => None,
    }
}

/// Where byte `o` of row `r`'s superblock goes in its group's packed superblock.
fn superblock_offset(ty: GgmlType, r: usize, o: usize) -> usize {
    match ty {
        GgmlType::Q6_K => q6_k_offset(r, o),
        _ => k_offset(ty == GgmlType::Q5_K, r, o),
    }
}

/// Code bytes per block, the XOR that makes them unsigned and the bytes of f16 scales before
/// them (`d`, and Q4_1's minimum `m`), by type.
fn code_layout(ty: GgmlType) -> (usize, u8, usize) {
    match ty {
        GgmlType::Q4_0 => (16, 0, 2),
        GgmlType::Q4_1 => (16, 0, 4),
        _ => (32, 0x80, 2),
    }
}

/// Where scale byte `o` (of `head`) of row `r`'s block `b` goes in its group's scale lines:
/// per block, the sixteen rows' `d` (32 bytes), then for Q4_1 their `m` (32 more).
fn scale_offset(head: usize, r: usize, b: usize, o: usize) -> usize {
    GROUP * head * b + 32 * (o / 2) + 2 * r + o % 2
}

impl PackedRows {
    /// Packs the whole groups of `rows` rows of `row_bytes` in `w`; `None` for types other
    /// than Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K, for rows that are not whole blocks, when
    /// `w` is too short, or when the memory cannot be had.
    pub fn new(ty: GgmlType, w: &[u8], row_bytes: usize, rows: usize) -> Option<PackedRows> {
        if let Some(sb) = superblock_bytes(ty) {
            // Each row's superblock moves as runs of bytes that stay together (mostly four),
            // worked out once: placing byte by byte made loading a Q4_K model 3x slower.
            let runs: Vec<Vec<(usize, usize, usize)>> = (0..GROUP)
                .map(|r| {
                    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
                    for o in 0..sb {
                        let to = superblock_offset(ty, r, o);
                        match runs.last_mut() {
                            Some((from, at, len)) if *from + *len == o && *at + *len == to => {
                                *len += 1;
                            }
                            _ => runs.push((o, to, 1)),
                        }
                    }
                    runs
                })
                .collect();
            return Self::regroup(ty, w, row_bytes, rows, sb, |group, r, b, blk| {
                let out = &mut group[GROUP * sb * b..][..GROUP * sb];
                for &(from, to, len) in &runs[r] {
                    out[to..to + len].copy_from_slice(&blk[from..from + len]);
                }
            });
        }
        if !matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0) {
            return None;
        }
        let (code_bytes, flip, head) = code_layout(ty);
        let flip = u32::from_le_bytes([flip; 4]);
        Self::regroup(
            ty,
            w,
            row_bytes,
            rows,
            code_bytes + head,
            |group, r, b, blk| {
                let blocks = row_bytes / (code_bytes + head);
                let (scales, codes) = group.split_at_mut(head * GROUP * blocks);
                for o in (0..head).step_by(2) {
                    let at = scale_offset(head, r, b, o);
                    scales[at..at + 2].copy_from_slice(&blk[o..o + 2]);
                }
                for (j, quad) in blk[head..].chunks_exact(4).enumerate() {
                    let at = GROUP * code_bytes * b + 64 * j + 4 * r;
                    let q = u32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]) ^ flip;
                    codes[at..at + 4].copy_from_slice(&q.to_le_bytes());
                }
            },
        )
    }

    /// The whole groups of `rows` rows of `row_bytes` (blocks of `block_bytes`) from `w`, each
    /// block of each row placed into its group by `place(group, row in group, block, bytes)`.
    fn regroup(
        ty: GgmlType,
        w: &[u8],
        row_bytes: usize,
        rows: usize,
        block_bytes: usize,
        place: impl Fn(&mut [u8], usize, usize, &[u8]),
    ) -> Option<PackedRows> {
        if row_bytes == 0
            || !row_bytes.is_multiple_of(block_bytes)
            || w.len() < rows.checked_mul(row_bytes)?
        {
            return None;
        }
        let groups = rows / GROUP;
        let group_bytes = GROUP * row_bytes;
        let mut buf = huge_pages(groups * group_bytes)?;
        for (g, dst) in buf[..groups * group_bytes]
            .chunks_exact_mut(group_bytes)
            .enumerate()
        {
            let src = &w[g * group_bytes..(g + 1) * group_bytes];
            for (r, row) in src.chunks_exact(row_bytes).enumerate() {
                for (b, blk) in row.chunks_exact(block_bytes).enumerate() {
                    place(dst, r, b, blk);
                }
            }
        }
        Some(PackedRows {
            ty,
            groups,
            blocks: row_bytes / block_bytes,
            buf,
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
        self.groups * self.group_bytes()
    }

    /// Whether no row is packed.
    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }

    fn block_bytes(&self) -> usize {
        match self.ty {
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            ty => superblock_bytes(ty).unwrap_or(34),
        }
    }

    /// Bytes of one block of the activation format the type pairs with (Q8_0, Q8_1 or Q8_K).
    fn act_block_bytes(&self) -> usize {
        match self.ty {
            GgmlType::Q4_1 => 36,
            ty if superblock_bytes(ty).is_some() => 292,
            _ => 34,
        }
    }

    fn group_bytes(&self) -> usize {
        GROUP * self.blocks * self.block_bytes()
    }

    fn data(&self) -> &[u8] {
        &self.buf[..self.len()]
    }

    /// Row `r` in the file's layout (the scalar path, and tests).
    pub fn row(&self, r: usize) -> Vec<u8> {
        if let Some(sb) = superblock_bytes(self.ty) {
            let group = &self.data()[r / GROUP * self.group_bytes()..][..self.group_bytes()];
            let i = r % GROUP;
            let mut out = vec![0u8; self.blocks * sb];
            for (blk, packed) in out.chunks_exact_mut(sb).zip(group.chunks_exact(GROUP * sb)) {
                for (o, byte) in blk.iter_mut().enumerate() {
                    *byte = packed[superblock_offset(self.ty, i, o)];
                }
            }
            return out;
        }
        let (code_bytes, flip, head) = code_layout(self.ty);
        let bb = code_bytes + head;
        let group = &self.data()[r / GROUP * self.group_bytes()..][..self.group_bytes()];
        let (scales, codes) = group.split_at(head * GROUP * self.blocks);
        let i = r % GROUP;
        let mut out = vec![0u8; self.blocks * bb];
        for (b, blk) in out.chunks_exact_mut(bb).enumerate() {
            for o in (0..head).step_by(2) {
                let at = scale_offset(head, i, b, o);
                blk[o..o + 2].copy_from_slice(&scales[at..at + 2]);
            }
            for (j, quad) in blk[head..].chunks_exact_mut(4).enumerate() {
                let at = GROUP * code_bytes * b + 64 * j + 4 * i;
                for (d, &c) in quad.iter_mut().zip(&codes[at..at + 4]) {
                    *d = c ^ flip;
                }
            }
        }
        out
    }

    /// `outs[t][i]` = packed row `first + i` · `acts[t]` (Q8_0 activation rows, with their
    /// [`BlockSums`] in `sums[t]`; Q8_K for the K-quants, whose `sums` are not used), for up to
    /// [`MAX_TOKENS`](crate::matvec::MAX_TOKENS) activations; each equals the file-layout
    /// kernels' result. False (and `outs` untouched) when the rows are out of range, `first` is
    /// not a group boundary, or the activations or their sums do not fit.
    pub fn rows_dot(
        &self,
        first: usize,
        acts: &[&[u8]],
        sums: &[&BlockSums],
        outs: &mut [&mut [f32]],
        kernel: Kernel,
    ) -> bool {
        let Some(n) = batch_len(acts.len(), outs) else {
            return false;
        };
        let needs_sums = matches!(self.ty, GgmlType::Q4_0 | GgmlType::Q8_0);
        if !first.is_multiple_of(GROUP)
            || first + n > self.rows()
            || acts
                .iter()
                .any(|a| a.len() < self.act_block_bytes() * self.blocks)
            || (needs_sums
                && (sums.len() != acts.len() || sums.iter().any(|s| s.blocks() < self.blocks)))
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
                    let s = || -> &[&BlockSums; $t] { sums.try_into().expect("length checked") };
                    // Q4_1's Q8_1 activations carry their sums; its kernels read none.
                    let none = BlockSums::default();
                    let no_sums = [&none; $t];
                    // SAFETY: `Kernel::Avx512Vnni` runs only on CPUs with its features (the
                    // functions' target features); `w` holds `whole` groups of `blocks` blocks
                    // and every activation and its sums `blocks` blocks (checked above).
                    unsafe {
                        match self.ty {
                            GgmlType::Q4_0 => {
                                x86::groups::<true, false, $t>(w, whole, self.blocks, a, s(), o)
                            }
                            GgmlType::Q6_K => x86::q6_k_groups::<$t>(w, whole, self.blocks, a, o),
                            GgmlType::Q4_K => {
                                x86::k_groups::<false, $t>(w, whole, self.blocks, a, o)
                            }
                            GgmlType::Q5_K => {
                                x86::k_groups::<true, $t>(w, whole, self.blocks, a, o)
                            }
                            GgmlType::Q4_1 => {
                                x86::groups::<true, true, $t>(w, whole, self.blocks, a, &no_sums, o)
                            }
                            _ => x86::groups::<false, false, $t>(w, whole, self.blocks, a, s(), o),
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
        let k = kernel.usable();
        #[cfg(target_arch = "x86_64")]
        if matches!(k, Kernel::Avx2 | Kernel::AvxVnni) {
            let w = &self.data()[first / GROUP * self.group_bytes()..];
            let vnni = k == Kernel::AvxVnni;
            macro_rules! go {
                ($t:literal, $split:literal) => {{
                    let a: &[&[u8]; $t] = acts.try_into().expect("length checked");
                    let o: &mut [&mut [f32]; $t] = outs.try_into().expect("length checked");
                    let s = || -> &[&BlockSums; $t] { sums.try_into().expect("length checked") };
                    // Q4_1's Q8_1 activations carry their sums; its kernels read none.
                    let none = BlockSums::default();
                    let no_sums = [&none; $t];
                    let b = self.blocks;
                    // SAFETY: `Kernel::Avx2` runs only on CPUs with AVX2, FMA and F16C,
                    // `Kernel::AvxVnni` only on those with AVX-VNNI too (the functions' target
                    // features); the lengths are as for the AVX-512 kernels (checked above).
                    unsafe {
                        match (self.ty, vnni) {
                            (GgmlType::Q6_K, false) => {
                                x86::q6_k_groups_avx2::<$t>(w, whole, b, a, o)
                            }
                            (GgmlType::Q6_K, true) => {
                                x86::q6_k_groups_avx_vnni::<$t>(w, whole, b, a, o)
                            }
                            (GgmlType::Q4_K, false) => {
                                x86::k_groups_avx2::<false, $t>(w, whole, b, a, o)
                            }
                            (GgmlType::Q4_K, true) => {
                                x86::k_groups_avx_vnni::<false, $t>(w, whole, b, a, o)
                            }
                            (GgmlType::Q5_K, false) => {
                                x86::k_groups_avx2::<true, $t>(w, whole, b, a, o)
                            }
                            (GgmlType::Q5_K, true) => {
                                x86::k_groups_avx_vnni::<true, $t>(w, whole, b, a, o)
                            }
                            (GgmlType::Q4_0, false) => {
                                x86::groups_avx2::<true, false, $t, $split>(w, whole, b, a, s(), o)
                            }
                            (GgmlType::Q4_0, true) => {
                                x86::groups_avx_vnni::<true, false, $t, $split>(
                                    w,
                                    whole,
                                    b,
                                    a,
                                    s(),
                                    o,
                                )
                            }
                            (GgmlType::Q4_1, false) => x86::groups_avx2::<true, true, $t, $split>(
                                w, whole, b, a, &no_sums, o,
                            ),
                            (GgmlType::Q4_1, true) => {
                                x86::groups_avx_vnni::<true, true, $t, $split>(
                                    w, whole, b, a, &no_sums, o,
                                )
                            }
                            (_, false) => {
                                x86::groups_avx2::<false, false, $t, $split>(w, whole, b, a, s(), o)
                            }
                            (_, true) => x86::groups_avx_vnni::<false, false, $t, $split>(
                                w,
                                whole,
                                b,
                                a,
                                s(),
                                o,
                            ),
                        }
                    }
                }};
            }
            match acts.len() {
                1 => go!(1, false),
                2 => go!(2, false),
                3 => go!(3, true),
                _ => go!(4, true),
            }
            self.scalar_rows(first + whole * GROUP, acts, outs, whole * GROUP);
            return true;
        }
        let _ = (k, whole);
        self.scalar_rows(first, acts, outs, 0);
        true
    }

    /// Rows from `first` through the scalar references, into `outs[t][skip..]`.
    fn scalar_rows(&self, first: usize, acts: &[&[u8]], outs: &mut [&mut [f32]], skip: usize) {
        let n = outs.first().map_or(0, |o| o.len());
        for i in skip..n {
            let row = self.row(first + i - skip);
            for (a, o) in acts.iter().zip(outs.iter_mut()) {
                o[i] = match self.ty {
                    GgmlType::Q4_0 => BlockQ4_0::vec_dot_blocks(&row, a),
                    GgmlType::Q4_1 => BlockQ4_1::vec_dot_blocks(&row, a),
                    GgmlType::Q6_K => BlockQ6_K::vec_dot_blocks(&row, a),
                    GgmlType::Q4_K => BlockQ4_K::vec_dot_blocks(&row, a),
                    GgmlType::Q5_K => BlockQ5_K::vec_dot_blocks(&row, a),
                    _ => BlockQ8_0::vec_dot_blocks(&row, a),
                };
            }
        }
    }

    /// `outs[t][i]` = packed row `first + i` · token `t` of `tiles` (their tokens in order), for
    /// Q4_0 and Q8_0 rows ([`ActTile::new`]) and Q4_K and Q5_K rows ([`ActTile::from_q8_k`]) on
    /// AMX tiles ([`tiles_ready`]); each equals [`PackedRows::rows_dot`]'s result (the same
    /// integer block sums, the same multiply-add chain). False (and `outs`
    /// untouched) when the tiles do not run here, for other types, when `first` is not a group
    /// boundary, the rows are not whole groups within range, or the tiles or `outs` do not fit.
    pub fn rows_dot_tiles(&self, first: usize, tiles: &[ActTile], outs: &mut [&mut [f32]]) -> bool {
        let n = outs.first().map_or(0, |o| o.len());
        if outs.len() != tiles.iter().map(|t| t.tokens).sum::<usize>()
            || outs.iter().any(|o| o.len() != n)
            || !tiles_ready()
            || !matches!(
                self.ty,
                GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q4_K | GgmlType::Q5_K
            )
            || !first.is_multiple_of(GROUP)
            || !n.is_multiple_of(GROUP)
            || first + n > self.rows()
        {
            return false;
        }
        let k_quant = matches!(self.ty, GgmlType::Q4_K | GgmlType::Q5_K);
        let parts = if k_quant { 8 } else { 1 };
        if tiles
            .iter()
            .any(|t| t.q8_k != k_quant || t.blocks != parts * self.blocks)
        {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let w = &self.data()[first / GROUP * self.group_bytes()..];
            // SAFETY: `tiles_ready` holds only on CPUs with AMX-INT8 and AVX-512 F/BW/VL/VNNI
            // (and AVX2, FMA, F16C) whose OS granted this process the tile registers; `w`
            // holds `n / GROUP` groups of `blocks` blocks, every tile `blocks` blocks, and
            // `outs` a row of `n` elements per token (checked above).
            unsafe {
                match self.ty {
                    GgmlType::Q4_K => {
                        x86::tile_k_groups::<false>(w, n / GROUP, self.blocks, tiles, outs)
                    }
                    GgmlType::Q5_K => {
                        x86::tile_k_groups::<true>(w, n / GROUP, self.blocks, tiles, outs)
                    }
                    GgmlType::Q4_0 => {
                        x86::tile_groups::<true>(w, n / GROUP, self.blocks, tiles, outs)
                    }
                    _ => x86::tile_groups::<false>(w, n / GROUP, self.blocks, tiles, outs),
                }
            }
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

/// Tokens per AMX tile (its rows).
pub const TILE_TOKENS: usize = 16;

/// Up to [`TILE_TOKENS`] Q8_0 activation rows laid out for the AMX kernels: block by block, the
/// tokens' 32 codes one after another (one 16 × 32-byte tile per block, rows past the last token
/// zero), with each block's scales and the offsets the unsigned weight codes add beside them,
/// token by token.
#[derive(Clone, Debug)]
// Only the x86-64 kernels read a tile; elsewhere `rows_dot_tiles` refuses before looking.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct ActTile {
    tokens: usize,
    blocks: usize,
    codes: Vec<u8>,
    scales: Vec<f32>,
    /// `8·Σy` (Q4_0, codes 0..16) and `128·Σy` (Q8_0, codes + 128) per block and token, in
    /// memory so that the kernels broadcast them straight from it (Q8_0 tiles).
    offsets: [Vec<i32>; 2],
    /// Q8_K tiles: per superblock and token, its eight pairs of 16-code sums as the i32s
    /// `vpdpwssd` takes (empty for Q8_0 tiles).
    pair_sums: Vec<i32>,
    /// Whether the codes come from Q8_K superblocks (`blocks` counts their 32-code parts, and
    /// `scales` holds one per superblock).
    q8_k: bool,
}

impl ActTile {
    /// The tile of `acts` (Q8_0 rows of at least `blocks` blocks) with their [`BlockSums`];
    /// `None` for no tokens or more than [`TILE_TOKENS`], or when a row or its sums are short.
    pub fn new(acts: &[&[u8]], sums: &[&BlockSums], blocks: usize) -> Option<ActTile> {
        let tokens = acts.len();
        if tokens == 0
            || tokens > TILE_TOKENS
            || sums.len() != tokens
            || acts.iter().any(|a| a.len() < 34 * blocks)
            || sums.iter().any(|s| s.blocks() < blocks)
        {
            return None;
        }
        let mut codes = vec![0u8; blocks * TILE_TOKENS * 32];
        let mut scales = vec![0f32; blocks * TILE_TOKENS];
        let mut offsets = [
            vec![0i32; blocks * TILE_TOKENS],
            vec![0i32; blocks * TILE_TOKENS],
        ];
        for (t, (a, s)) in acts.iter().zip(sums).enumerate() {
            for (b, blk) in a.chunks_exact(34).take(blocks).enumerate() {
                codes[(b * TILE_TOKENS + t) * 32..][..32].copy_from_slice(&blk[2..]);
                scales[b * TILE_TOKENS + t] = s.scale(b);
                offsets[0][b * TILE_TOKENS + t] = 8 * s.sum(b);
                offsets[1][b * TILE_TOKENS + t] = 128 * s.sum(b);
            }
        }
        Some(ActTile {
            tokens,
            blocks,
            codes,
            scales,
            offsets,
            pair_sums: Vec::new(),
            q8_k: false,
        })
    }

    /// The tile of `acts`, Q8_K rows of at least `superblocks` superblocks (for Q4_K and Q5_K
    /// weights); `None` for no tokens or more than [`TILE_TOKENS`], or when a row is short.
    pub fn from_q8_k(acts: &[&[u8]], superblocks: usize) -> Option<ActTile> {
        let tokens = acts.len();
        if tokens == 0 || tokens > TILE_TOKENS || acts.iter().any(|a| a.len() < 292 * superblocks) {
            return None;
        }
        let blocks = 8 * superblocks;
        let mut codes = vec![0u8; blocks * TILE_TOKENS * 32];
        let mut scales = vec![0f32; superblocks * TILE_TOKENS];
        let mut pair_sums = vec![0i32; superblocks * TILE_TOKENS * 8];
        for (t, a) in acts.iter().enumerate() {
            for (s, sb) in a.chunks_exact(292).take(superblocks).enumerate() {
                for (k, part) in sb[4..260].chunks_exact(32).enumerate() {
                    codes[((8 * s + k) * TILE_TOKENS + t) * 32..][..32].copy_from_slice(part);
                }
                scales[s * TILE_TOKENS + t] = f32::from_le_bytes([sb[0], sb[1], sb[2], sb[3]]);
                for (j, pair) in sb[260..292].chunks_exact(4).enumerate() {
                    pair_sums[(s * TILE_TOKENS + t) * 8 + j] =
                        i32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
                }
            }
        }
        Some(ActTile {
            tokens,
            blocks,
            codes,
            scales,
            offsets: [Vec::new(), Vec::new()],
            pair_sums,
            q8_k: true,
        })
    }

    /// How many tokens.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

/// Whether [`PackedRows::rows_dot_tiles`] runs here: an x86-64 Linux CPU with AMX-INT8 and
/// AVX-512 VNNI, an OS that grants this process the tile registers, and `GGUFY_SIMD` allowing
/// everything ([`Cap::Native`](crate::simd::Cap::Native)). Asked once per process.
pub fn tiles_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            crate::simd::cap() == crate::simd::Cap::Native
                && crate::matvec::x86::has_avx512_vnni()
                && x86::amx_int8_cpu()
                && x86::request_tile_registers()
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        false
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::arch::x86_64::*;

    use super::GROUP;
    use crate::dot::BlockSums;
    use crate::matvec::x86::PREFETCH_BYTES as PREFETCH;

    /// A Q8_1 activation block's scale `d` and `s = d·Σq` (its first four bytes, two f16).
    ///
    /// # Safety
    /// `y .. y + 4` must be readable; the CPU must have F16C.
    #[inline]
    #[target_feature(enable = "f16c")]
    unsafe fn q8_1_scales(y: *const u8) -> (f32, f32) {
        // SAFETY: the caller guarantees the four bytes.
        let both = unsafe { y.cast::<i32>().read_unaligned() };
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(both));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// Four activation codes from byte `at` of `y`, in every lane.
    ///
    /// # Safety
    /// `y + at .. y + at + 4` must be readable.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn quad(y: *const u8, at: usize) -> __m512i {
        // SAFETY: the caller guarantees the four bytes.
        _mm512_set1_epi32(unsafe { y.add(at).cast::<i32>().read_unaligned() })
    }

    /// The packed groups against `T` Q8_0 activations. Per block and group: the integer sums
    /// of all sixteen rows build up lane by lane with `vpdpbusd` (unsigned weights against four
    /// broadcast activation codes per line), the offset `k · Σy` is subtracted, and each row's
    /// `sum = fma(isum, dw·dy, sum)` — the reference's chain. Q4_1 (`MIN`, against Q8_1
    /// activations) has no offset but a minimum: `sum += (dw·dy)·isum + mw·sy`, as its
    /// reference.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; `w` must hold `groups`
    /// packed groups of `blocks` blocks of type `Q4` (Q4_0, or with `MIN` Q4_1) or not (Q8_0),
    /// every `acts[t]` `blocks` Q8_0 (Q8_1 with `MIN`) blocks, every `sums[t]` at least
    /// `blocks` blocks (`acts[t]`'s; not read with `MIN`), and every `outs[t]` at least
    /// `16 · groups` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn groups<const Q4: bool, const MIN: bool, const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        sums: &[&BlockSums; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let k = if Q4 { 8 } else { 128 };
        let m4 = _mm512_set1_epi8(0x0F);
        let code_bytes = if Q4 { 16 } else { 32 };
        let head = if MIN { 4 } else { 2 };
        let (act, at) = if MIN { (36, 4) } else { (34, 2) };
        let block_codes = GROUP * code_bytes;
        let group_bytes = GROUP * (code_bytes + head) * blocks;
        for g in 0..groups {
            // SAFETY: group g is within `w` (the caller's contract).
            let (sp, cp) = unsafe {
                let base = w.as_ptr().add(g * group_bytes);
                (base, base.add(head * GROUP * blocks))
            };
            let mut acc = [_mm512_setzero_ps(); T];
            for b in 0..blocks {
                let mut isum = [_mm512_setzero_si512(); T];
                // SAFETY: block b's scale line and code lines are in the group, and every
                // activation has block b (34 bytes, codes from byte 2).
                unsafe {
                    let lines = cp.add(block_codes * b);
                    for j in 0..code_bytes / 4 {
                        _mm_prefetch::<_MM_HINT_T0>(lines.wrapping_add(64 * j + PREFETCH).cast());
                        let v = _mm512_loadu_si512(lines.add(64 * j).cast());
                        if Q4 {
                            // Low nibbles are codes 4j..4j+4 of each row, high ones 16 later.
                            let lo = _mm512_and_si512(v, m4);
                            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                            for t in 0..T {
                                let y = acts[t].as_ptr().add(act * b + at);
                                isum[t] = _mm512_dpbusd_epi32(isum[t], lo, quad(y, 4 * j));
                                isum[t] = _mm512_dpbusd_epi32(isum[t], hi, quad(y, 16 + 4 * j));
                            }
                        } else {
                            for t in 0..T {
                                let y = acts[t].as_ptr().add(34 * b + 2);
                                isum[t] = _mm512_dpbusd_epi32(isum[t], v, quad(y, 4 * j));
                            }
                        }
                    }
                    let dw = _mm512_cvtph_ps(_mm256_loadu_si256(sp.add(16 * head * b).cast()));
                    if MIN {
                        let mw = _mm512_cvtph_ps(_mm256_loadu_si256(sp.add(64 * b + 32).cast()));
                        for t in 0..T {
                            let (dy, sy) = q8_1_scales(acts[t].as_ptr().add(36 * b));
                            let d = _mm512_mul_ps(dw, _mm512_set1_ps(dy));
                            let dot = _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[t]));
                            let m = _mm512_mul_ps(mw, _mm512_set1_ps(sy));
                            acc[t] = _mm512_add_ps(acc[t], _mm512_add_ps(dot, m));
                        }
                        continue;
                    }
                    for t in 0..T {
                        let i = _mm512_sub_epi32(isum[t], _mm512_set1_epi32(k * sums[t].sum(b)));
                        let d = _mm512_mul_ps(dw, _mm512_set1_ps(sums[t].scale(b)));
                        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), d, acc[t]);
                    }
                }
            }
            for t in 0..T {
                // SAFETY: every `outs[t]` has at least 16g + 16 elements.
                unsafe { _mm512_storeu_ps(outs[t].as_mut_ptr().add(GROUP * g), acc[t]) };
            }
        }
    }
    /// The packed groups against `T` Q8_0 activations with AVX2 (no VNNI): as [`groups_256`].
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; otherwise as [`groups`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn groups_avx2<
        const Q4: bool,
        const MIN: bool,
        const T: usize,
        const SPLIT: bool,
    >(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        sums: &[&BlockSums; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the caller's contract is `groups_256`'s, and the features are enabled here.
        unsafe { groups_256::<Q4, MIN, T, SPLIT, false>(w, groups, blocks, acts, sums, outs) }
    }

    /// The packed groups against `T` Q8_0 activations with AVX-VNNI (256-bit `vpdpbusd`, on
    /// CPUs without AVX-512: Intel's since Alder Lake, AMD's Zen 5): as [`groups_256`].
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-VNNI; otherwise as [`groups`].
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub unsafe fn groups_avx_vnni<
        const Q4: bool,
        const MIN: bool,
        const T: usize,
        const SPLIT: bool,
    >(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        sums: &[&BlockSums; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the caller's contract is `groups_256`'s, and the features are enabled here.
        unsafe { groups_256::<Q4, MIN, T, SPLIT, true>(w, groups, blocks, acts, sums, outs) }
    }

    /// [`groups`] with 256-bit vectors: each 64-byte line is two, rows 0–7 and 8–15, and
    /// `SPLIT` runs the halves as two passes over each group (fewer live registers for three or
    /// four activations; the second pass reads the group from cache). The integer sums are the
    /// same exact ones: with `VNNI` from `vpdpbusd`; without, from `vpmaddubsw` on nibbles so
    /// that nothing saturates whatever the bytes (a Q8_0 weight byte u = 16h + l with both
    /// halves ≤ 15, so each i16 pair sum stays within 2·15·128 and eight of them within i16).
    /// Then the same offset correction and the same per-row multiply-add chain.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C, and AVX-VNNI if `VNNI`, enabled in the function
    /// this is inlined into; otherwise as [`groups`].
    #[inline(always)]
    unsafe fn groups_256<
        const Q4: bool,
        const MIN: bool,
        const T: usize,
        const SPLIT: bool,
        const VNNI: bool,
    >(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        sums: &[&BlockSums; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let code_bytes = if Q4 { 16 } else { 32 };
        let head = if MIN { 4 } else { 2 };
        let group_bytes = GROUP * (code_bytes + head) * blocks;
        for g in 0..groups {
            let group = &w[g * group_bytes..(g + 1) * group_bytes];
            // SAFETY: as this function's (the group is whole, and every `outs[t]` has at least
            // 16g + 16 elements).
            unsafe {
                if SPLIT {
                    half_pass::<Q4, MIN, T, VNNI, 0, 1>(group, blocks, acts, sums, outs, GROUP * g);
                    half_pass::<Q4, MIN, T, VNNI, 1, 1>(group, blocks, acts, sums, outs, GROUP * g);
                } else {
                    half_pass::<Q4, MIN, T, VNNI, 0, 2>(group, blocks, acts, sums, outs, GROUP * g);
                }
            }
        }
    }

    /// Rows `8·H0 .. 8·(H0 + NH)` of one packed group against `T` activations, into
    /// `outs[t][at..]` (see [`groups_256`]). The halves are constants so that every
    /// accumulator stays in a register.
    ///
    /// # Safety
    /// As [`groups_256`]; `group` is one whole group of `blocks` blocks and every `outs[t]` has
    /// at least `at + 16` elements.
    #[inline(always)]
    unsafe fn half_pass<
        const Q4: bool,
        const MIN: bool,
        const T: usize,
        const VNNI: bool,
        const H0: usize,
        const NH: usize,
    >(
        group: &[u8],
        blocks: usize,
        acts: &[&[u8]; T],
        sums: &[&BlockSums; T],
        outs: &mut [&mut [f32]; T],
        at: usize,
    ) {
        // SAFETY: the features are the caller's (this is inlined into a function that enables
        // them); block b's scale and code lines are within `group`, every activation has all
        // `blocks` blocks (34 bytes, codes from byte 2) and every `outs[t]` `at + 16`
        // elements, by the caller's contract.
        unsafe {
            let k = if Q4 { 8 } else { 128 };
            let m4 = _mm256_set1_epi8(0x0F);
            let ones = _mm256_set1_epi16(1);
            let sixteens = _mm256_set1_epi16(16);
            let code_bytes = if Q4 { 16 } else { 32 };
            let head = if MIN { 4 } else { 2 };
            let (act, at_codes) = if MIN { (36, 4) } else { (34, 2) };
            let block_codes = GROUP * code_bytes;
            let sp = group.as_ptr();
            let cp = sp.add(head * GROUP * blocks);
            // acc[t][i]: rows 8(H0 + i) .. 8(H0 + i) + 8 of activation t.
            let mut acc = [[_mm256_setzero_ps(); NH]; T];
            for b in 0..blocks {
                // Per activation and half, i16 pair sums (without VNNI: Q4_0's low and high
                // nibbles, both of weight 1, or Q8_0's low and high halves, of weights 1 and
                // 16), or with VNNI the i32 sums in `lo`.
                let mut lo = [[_mm256_setzero_si256(); NH]; T];
                let mut hi = [[_mm256_setzero_si256(); NH]; T];
                let lines = cp.add(block_codes * b);
                for j in 0..code_bytes / 4 {
                    if H0 == 0 {
                        _mm_prefetch::<_MM_HINT_T0>(lines.wrapping_add(64 * j + PREFETCH).cast());
                    }
                    for i in 0..NH {
                        let v = _mm256_loadu_si256(lines.add(64 * j + 32 * (H0 + i)).cast());
                        let l4 = _mm256_and_si256(v, m4);
                        let h4 = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                        for t in 0..T {
                            let y = acts[t].as_ptr().add(act * b + at_codes);
                            let ya = _mm256_set1_epi32(y.add(4 * j).cast::<i32>().read_unaligned());
                            // Q4_0's high nibbles are codes 16 later; Q8_0's are the same
                            // codes' upper halves.
                            let yb = if Q4 {
                                _mm256_set1_epi32(y.add(16 + 4 * j).cast::<i32>().read_unaligned())
                            } else {
                                ya
                            };
                            if VNNI && !Q4 {
                                lo[t][i] = _mm256_dpbusd_avx_epi32(lo[t][i], v, ya);
                            } else if VNNI {
                                lo[t][i] = _mm256_dpbusd_avx_epi32(lo[t][i], l4, ya);
                                lo[t][i] = _mm256_dpbusd_avx_epi32(lo[t][i], h4, yb);
                            } else {
                                let pl = _mm256_maddubs_epi16(l4, ya);
                                let ph = _mm256_maddubs_epi16(h4, yb);
                                lo[t][i] = _mm256_add_epi16(lo[t][i], pl);
                                hi[t][i] = _mm256_add_epi16(hi[t][i], ph);
                            }
                        }
                    }
                }
                for i in 0..NH {
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128(
                        sp.add(16 * head * b + 16 * (H0 + i)).cast(),
                    ));
                    for t in 0..T {
                        let isum = if VNNI {
                            lo[t][i]
                        } else {
                            let weight = if Q4 { ones } else { sixteens };
                            _mm256_add_epi32(
                                _mm256_madd_epi16(lo[t][i], ones),
                                _mm256_madd_epi16(hi[t][i], weight),
                            )
                        };
                        if MIN {
                            let mw = _mm256_cvtph_ps(_mm_loadu_si128(
                                sp.add(64 * b + 32 + 16 * (H0 + i)).cast(),
                            ));
                            let (dy, sy) = q8_1_scales(acts[t].as_ptr().add(36 * b));
                            let d = _mm256_mul_ps(dw, _mm256_set1_ps(dy));
                            let dot = _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum));
                            let m = _mm256_mul_ps(mw, _mm256_set1_ps(sy));
                            acc[t][i] = _mm256_add_ps(acc[t][i], _mm256_add_ps(dot, m));
                            continue;
                        }
                        let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(k * sums[t].sum(b)));
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(sums[t].scale(b)));
                        acc[t][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[t][i]);
                    }
                }
            }
            for (o, a) in outs.iter_mut().zip(&acc) {
                for (i, v) in a.iter().enumerate() {
                    _mm256_storeu_ps(o.as_mut_ptr().add(at + 8 * (H0 + i)), *v);
                }
            }
        }
    }

    /// [`q6_k_groups`] with AVX2 (no VNNI).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; otherwise as [`q6_k_groups`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q6_k_groups_avx2<const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the caller's contract is `q6_k_groups_256`'s, and the features are enabled.
        unsafe { q6_k_groups_256::<T, false>(w, groups, blocks, acts, outs) }
    }

    /// [`q6_k_groups`] with AVX-VNNI.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-VNNI; otherwise as [`q6_k_groups`].
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub unsafe fn q6_k_groups_avx_vnni<const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the caller's contract is `q6_k_groups_256`'s, and the features are enabled.
        unsafe { q6_k_groups_256::<T, true>(w, groups, blocks, acts, outs) }
    }

    /// [`q6_k_groups`] with 256-bit vectors, rows 0–7 and 8–15 of each line as two halves (in
    /// one pass for one activation, two passes otherwise, so that nothing spills). The sums
    /// are the same exact integers: with `VNNI` from `vpdpbusd`; without, two `vpmaddubsw`
    /// (codes ≤ 63, so two pair sums stay within i16) widened by `vpmaddwd`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C, and AVX-VNNI if `VNNI`, enabled in the function
    /// this is inlined into; otherwise as [`q6_k_groups`].
    #[inline(always)]
    unsafe fn q6_k_groups_256<const T: usize, const VNNI: bool>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let block_bytes = GROUP * super::Q6_K_BYTES;
        for g in 0..groups {
            let group = &w[g * blocks * block_bytes..(g + 1) * blocks * block_bytes];
            // SAFETY: as this function's (the group is whole, and every `outs[t]` has at least
            // 16g + 16 elements).
            unsafe {
                if T == 1 {
                    q6_k_half_pass::<T, VNNI, 0, 2>(group, blocks, acts, outs, GROUP * g);
                } else {
                    q6_k_half_pass::<T, VNNI, 0, 1>(group, blocks, acts, outs, GROUP * g);
                    q6_k_half_pass::<T, VNNI, 1, 1>(group, blocks, acts, outs, GROUP * g);
                }
            }
        }
    }

    /// Rows `8·H0 .. 8·(H0 + NH)` of one packed Q6_K group against `T` activations, into
    /// `outs[t][at..]` (see [`q6_k_groups_256`]).
    ///
    /// # Safety
    /// As [`q6_k_groups_256`]; `group` is one whole group of `blocks` superblocks and every
    /// `outs[t]` has at least `at + 16` elements.
    #[inline(always)]
    unsafe fn q6_k_half_pass<const T: usize, const VNNI: bool, const H0: usize, const NH: usize>(
        group: &[u8],
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
        at: usize,
    ) {
        // SAFETY: the features are the caller's (this is inlined into a function that enables
        // them); superblock s's lines are within `group`, every activation has all `blocks`
        // Q8_K blocks (292 bytes: f32 scale, 256 codes, 16 i16 sums) and every `outs[t]`
        // `at + 16` elements, by the caller's contract.
        unsafe {
            let m4 = _mm256_set1_epi8(0x0F);
            let m2 = _mm256_set1_epi8(0x03);
            let ones = _mm256_set1_epi16(1);
            let block_bytes = GROUP * super::Q6_K_BYTES;
            let mut acc = [[_mm256_setzero_ps(); NH]; T];
            for s in 0..blocks {
                let base = group.as_ptr().add(s * block_bytes);
                if H0 == 0 {
                    for l in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(block_bytes + 64 * l).cast());
                    }
                }
                let mut isum = [[_mm256_setzero_si256(); NH]; T];
                for j in 0..16 {
                    // Sub-block j: superblock half sh, code plane k (which nibble and which qh
                    // bits), elements 16·(j % 2).. of the 32 a plane holds.
                    let (sh, k, lo) = (j / 8, (j % 8) / 2, 16 * (j % 2));
                    let shift = _mm_cvtsi32_si128(2 * k as i32);
                    for (i, h) in (H0..H0 + NH).enumerate() {
                        let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                            base.add(32 + 16 * j + 8 * h).cast(),
                        ));
                        let mut c = [_mm256_setzero_si256(); T];
                        let mut pairs = [_mm256_setzero_si256(); T];
                        for q in 0..4 {
                            let l = lo + 4 * q;
                            let ql_at = 64 * sh + if k % 2 == 1 { l + 32 } else { l };
                            let qlv =
                                _mm256_loadu_si256(base.add(288 + 16 * ql_at + 32 * h).cast());
                            let qhv = _mm256_loadu_si256(
                                base.add(2336 + 16 * (32 * sh + l) + 32 * h).cast(),
                            );
                            let nib = if k >= 2 {
                                _mm256_and_si256(_mm256_srli_epi16::<4>(qlv), m4)
                            } else {
                                _mm256_and_si256(qlv, m4)
                            };
                            let high = _mm256_and_si256(_mm256_srl_epi16(qhv, shift), m2);
                            let code = _mm256_or_si256(nib, _mm256_slli_epi16::<4>(high));
                            for t in 0..T {
                                let y = acts[t].as_ptr().add(292 * s + 4 + 16 * j + 4 * q);
                                let yv = _mm256_set1_epi32(y.cast::<i32>().read_unaligned());
                                if VNNI {
                                    c[t] = _mm256_dpbusd_avx_epi32(c[t], code, yv);
                                } else {
                                    let p = _mm256_maddubs_epi16(code, yv);
                                    if q % 2 == 0 {
                                        pairs[t] = p;
                                    } else {
                                        let both = _mm256_add_epi16(pairs[t], p);
                                        c[t] =
                                            _mm256_add_epi32(c[t], _mm256_madd_epi16(both, ones));
                                    }
                                }
                            }
                        }
                        for t in 0..T {
                            let bsum = acts[t].as_ptr().add(292 * s + 260 + 2 * j);
                            let bsum = i32::from(bsum.cast::<i16>().read_unaligned());
                            let dot = _mm256_sub_epi32(c[t], _mm256_set1_epi32(32 * bsum));
                            isum[t][i] = _mm256_add_epi32(isum[t][i], _mm256_mullo_epi32(sc, dot));
                        }
                    }
                }
                for i in 0..NH {
                    let dw = _mm256_cvtph_ps(_mm_loadu_si128(base.add(16 * (H0 + i)).cast()));
                    for t in 0..T {
                        let dy = acts[t].as_ptr().add(292 * s).cast::<f32>().read_unaligned();
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(dy));
                        acc[t][i] = _mm256_add_ps(
                            acc[t][i],
                            _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t][i])),
                        );
                    }
                }
            }
            for (o, a) in outs.iter_mut().zip(&acc) {
                for (i, v) in a.iter().enumerate() {
                    _mm256_storeu_ps(o.as_mut_ptr().add(at + 8 * (H0 + i)), *v);
                }
            }
        }
    }

    /// Q6_K groups against `T` Q8_K activations. Per superblock and group, for each of the 16
    /// sub-blocks: the sixteen rows' 6-bit codes rebuilt from their `ql`/`qh` lines (unsigned,
    /// 0..63), summed against the activation with `vpdpbusd`, corrected by 32·Σy (the codes'
    /// offset) and multiplied by each row's sub-block scale; then each row's
    /// `sum += (dw·dy) · isum` — the reference's order, a product then a sum.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; `w` must hold `groups`
    /// packed Q6_K groups of `blocks` superblocks, every `acts[t]` `blocks` Q8_K blocks, and
    /// every `outs[t]` at least `16 · groups` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn q6_k_groups<const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let m4 = _mm512_set1_epi8(0x0F);
        let m2 = _mm512_set1_epi8(0x03);
        let block_bytes = GROUP * super::Q6_K_BYTES;
        for g in 0..groups {
            let mut acc = [_mm512_setzero_ps(); T];
            for s in 0..blocks {
                // SAFETY: superblock s of group g is within `w`, and every activation has
                // block s (292 bytes: f32 scale, 256 codes, 16 i16 sums); the loads below
                // stay within them.
                unsafe {
                    let base = w.as_ptr().add((g * blocks + s) * block_bytes);
                    for l in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(block_bytes + 64 * l).cast());
                    }
                    let mut isum = [_mm512_setzero_si512(); T];
                    for j in 0..16 {
                        // Sub-block j: half h, code plane k (which nibble and which qh bits),
                        // elements 16·(j % 2).. of the 32 a plane holds.
                        let (h, k, lo) = (j / 8, (j % 8) / 2, 16 * (j % 2));
                        let sc =
                            _mm512_cvtepi8_epi32(_mm_loadu_si128(base.add(32 + 16 * j).cast()));
                        let shift = _mm_cvtsi32_si128(2 * k as i32);
                        let mut c = [_mm512_setzero_si512(); T];
                        for q in 0..4 {
                            let l = lo + 4 * q;
                            let ql_at = 64 * h + if k % 2 == 1 { l + 32 } else { l };
                            let qlv = _mm512_loadu_si512(base.add(288 + 16 * ql_at).cast());
                            let qhv = _mm512_loadu_si512(base.add(2336 + 16 * (32 * h + l)).cast());
                            let nib = if k >= 2 {
                                _mm512_and_si512(_mm512_srli_epi16::<4>(qlv), m4)
                            } else {
                                _mm512_and_si512(qlv, m4)
                            };
                            let high = _mm512_and_si512(_mm512_srl_epi16(qhv, shift), m2);
                            let code = _mm512_or_si512(nib, _mm512_slli_epi16::<4>(high));
                            for t in 0..T {
                                let y = acts[t].as_ptr().add(292 * s + 4 + 16 * j + 4 * q);
                                let yv = _mm512_set1_epi32(y.cast::<i32>().read_unaligned());
                                c[t] = _mm512_dpbusd_epi32(c[t], code, yv);
                            }
                        }
                        for t in 0..T {
                            let bsum = acts[t].as_ptr().add(292 * s + 260 + 2 * j);
                            let bsum = i32::from(bsum.cast::<i16>().read_unaligned());
                            let dot = _mm512_sub_epi32(c[t], _mm512_set1_epi32(32 * bsum));
                            isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(sc, dot));
                        }
                    }
                    let dw = _mm512_cvtph_ps(_mm256_loadu_si256(base.cast()));
                    for t in 0..T {
                        let dy = acts[t].as_ptr().add(292 * s).cast::<f32>().read_unaligned();
                        let d = _mm512_mul_ps(dw, _mm512_set1_ps(dy));
                        acc[t] =
                            _mm512_add_ps(acc[t], _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[t])));
                    }
                }
            }
            for t in 0..T {
                // SAFETY: every `outs[t]` has at least 16g + 16 elements.
                unsafe { _mm512_storeu_ps(outs[t].as_mut_ptr().add(GROUP * g), acc[t]) };
            }
        }
    }

    /// Sub-block `j`'s 6-bit scale (`MIN` false) or minimum (`MIN` true) of the sixteen rows
    /// whose packed scale lines are `l` (bytes 4i..4i + 4 of each row's 12 in line i), as
    /// i32 lanes: ggml's `get_scale_min_k4` on sixteen rows at once.
    #[inline(always)]
    fn k_scale_512<const MIN: bool>(l: &[__m512i; 3], j: usize) -> __m512i {
        // SAFETY: plain AVX-512F arithmetic; this is inlined into functions that enable it.
        unsafe {
            let shr = |v: __m512i, n: usize| _mm512_srl_epi32(v, _mm_cvtsi32_si128(n as i32));
            let low = if MIN { l[1] } else { l[0] };
            if j < 4 {
                _mm512_and_si512(shr(low, 8 * j), _mm512_set1_epi32(63))
            } else {
                let nib = shr(l[2], 8 * (j - 4) + if MIN { 4 } else { 0 });
                let top = _mm512_and_si512(shr(low, 8 * (j - 4) + 6), _mm512_set1_epi32(3));
                _mm512_or_si512(
                    _mm512_and_si512(nib, _mm512_set1_epi32(15)),
                    _mm512_slli_epi32::<4>(top),
                )
            }
        }
    }

    /// Q5_K's fifth bits on top of a code line's sub-blocks `2p` (`lo`) and `2p + 1` (`hi`):
    /// bits 2p and 2p + 1 of each byte of the matching `qh` line `h`.
    #[inline(always)]
    fn q5_k_top(lo: __m512i, hi: __m512i, h: __m512i, p: usize) -> (__m512i, __m512i) {
        // SAFETY: plain AVX-512 F/BW arithmetic; this is inlined into functions that enable it.
        unsafe {
            let h = _mm512_srl_epi16(h, _mm_cvtsi32_si128(2 * p as i32));
            let bit = |b: i8| _mm512_and_si512(h, _mm512_set1_epi8(b));
            (
                _mm512_or_si512(lo, _mm512_slli_epi16::<4>(bit(1))),
                _mm512_or_si512(hi, _mm512_slli_epi16::<3>(bit(2))),
            )
        }
    }

    /// Q4_K (or, `Q5`, Q5_K) groups against `T` Q8_K activations. Per superblock and group,
    /// for each of the 8 sub-blocks: the sixteen rows' codes (unsigned, 0..15 or 0..31) summed
    /// against the activation with `vpdpbusd` and multiplied by each row's sub-block scale;
    /// the minimums against the activation's 16-element sums with `vpdpwssd`; then each row's
    /// `sum += (d·dy)·isum` and `sum -= (dmin·dy)·msum` — the reference's order.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; `w` must hold `groups`
    /// packed Q4_K or Q5_K (`Q5`) groups of `blocks` superblocks, every `acts[t]` `blocks`
    /// Q8_K blocks, and every `outs[t]` at least `16 · groups` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn k_groups<const Q5: bool, const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        let m4 = _mm512_set1_epi8(0x0F);
        let block_bytes = GROUP
            * if Q5 {
                super::Q5_K_BYTES
            } else {
                super::Q4_K_BYTES
            };
        let qs = if Q5 { 768 } else { 256 };
        for g in 0..groups {
            let mut acc = [_mm512_setzero_ps(); T];
            for s in 0..blocks {
                // SAFETY: superblock s of group g is within `w`, and every activation has
                // block s (292 bytes: f32 scale, 256 codes, 16 i16 sums); the loads below
                // stay within them.
                unsafe {
                    let base = w.as_ptr().add((g * blocks + s) * block_bytes);
                    for l in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(PREFETCH + 64 * l).cast());
                    }
                    let lines = [1, 2, 3].map(|i| _mm512_loadu_si512(base.add(64 * i).cast()));
                    let mut isum = [_mm512_setzero_si512(); T];
                    for c in 0..4 {
                        let mut lo_sum = [_mm512_setzero_si512(); T];
                        let mut hi_sum = [_mm512_setzero_si512(); T];
                        for j in 0..8 {
                            let line = base.add(qs + 64 * (8 * c + j));
                            _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(PREFETCH).cast());
                            let v = _mm512_loadu_si512(line.cast());
                            let mut lo = _mm512_and_si512(v, m4);
                            let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                            if Q5 {
                                let h = _mm512_loadu_si512(base.add(256 + 64 * j).cast());
                                (lo, hi) = q5_k_top(lo, hi, h, c);
                            }
                            for t in 0..T {
                                let y = acts[t].as_ptr().add(292 * s + 4 + 64 * c + 4 * j);
                                let ylo = _mm512_set1_epi32(y.cast::<i32>().read_unaligned());
                                let yhi =
                                    _mm512_set1_epi32(y.add(32).cast::<i32>().read_unaligned());
                                lo_sum[t] = _mm512_dpbusd_epi32(lo_sum[t], lo, ylo);
                                hi_sum[t] = _mm512_dpbusd_epi32(hi_sum[t], hi, yhi);
                            }
                        }
                        let (s_lo, s_hi) = (
                            k_scale_512::<false>(&lines, 2 * c),
                            k_scale_512::<false>(&lines, 2 * c + 1),
                        );
                        for t in 0..T {
                            let both = _mm512_add_epi32(
                                _mm512_mullo_epi32(lo_sum[t], s_lo),
                                _mm512_mullo_epi32(hi_sum[t], s_hi),
                            );
                            isum[t] = _mm512_add_epi32(isum[t], both);
                        }
                    }
                    // Each minimum covers two 16-element activation sums: the same value in
                    // both i16 halves of a lane meets the two sums of one broadcast i32.
                    let mut msum = [_mm512_setzero_si512(); T];
                    for j in 0..8 {
                        let m = k_scale_512::<true>(&lines, j);
                        let m = _mm512_or_si512(m, _mm512_slli_epi32::<16>(m));
                        for t in 0..T {
                            let bs = acts[t].as_ptr().add(292 * s + 260 + 4 * j);
                            let bs = _mm512_set1_epi32(bs.cast::<i32>().read_unaligned());
                            msum[t] = _mm512_dpwssd_epi32(msum[t], m, bs);
                        }
                    }
                    let dw = _mm512_cvtph_ps(_mm256_loadu_si256(base.cast()));
                    let mw = _mm512_cvtph_ps(_mm256_loadu_si256(base.add(32).cast()));
                    for t in 0..T {
                        let dy = _mm512_set1_ps(
                            acts[t].as_ptr().add(292 * s).cast::<f32>().read_unaligned(),
                        );
                        let d = _mm512_mul_ps(dw, dy);
                        acc[t] =
                            _mm512_add_ps(acc[t], _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[t])));
                        let m = _mm512_mul_ps(mw, dy);
                        acc[t] =
                            _mm512_sub_ps(acc[t], _mm512_mul_ps(m, _mm512_cvtepi32_ps(msum[t])));
                    }
                }
            }
            for t in 0..T {
                // SAFETY: every `outs[t]` has at least 16g + 16 elements.
                unsafe { _mm512_storeu_ps(outs[t].as_mut_ptr().add(GROUP * g), acc[t]) };
            }
        }
    }

    /// [`k_scale_512`] for eight rows (one 32-byte half of each scale line).
    #[inline(always)]
    fn k_scale_256<const MIN: bool>(l: &[__m256i; 3], j: usize) -> __m256i {
        // SAFETY: plain AVX2 arithmetic; this is inlined into functions that enable it.
        unsafe {
            let shr = |v: __m256i, n: usize| _mm256_srl_epi32(v, _mm_cvtsi32_si128(n as i32));
            let low = if MIN { l[1] } else { l[0] };
            if j < 4 {
                _mm256_and_si256(shr(low, 8 * j), _mm256_set1_epi32(63))
            } else {
                let nib = shr(l[2], 8 * (j - 4) + if MIN { 4 } else { 0 });
                let top = _mm256_and_si256(shr(low, 8 * (j - 4) + 6), _mm256_set1_epi32(3));
                _mm256_or_si256(
                    _mm256_and_si256(nib, _mm256_set1_epi32(15)),
                    _mm256_slli_epi32::<4>(top),
                )
            }
        }
    }

    /// [`k_groups`] with AVX2 (no VNNI).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; otherwise as [`k_groups`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn k_groups_avx2<const Q5: bool, const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the caller's contract is `k_groups_256`'s, and the features are enabled.
        unsafe { k_groups_256::<Q5, T, false>(w, groups, blocks, acts, outs) }
    }

    /// [`k_groups`] with AVX-VNNI.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA, F16C and AVX-VNNI; otherwise as [`k_groups`].
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub unsafe fn k_groups_avx_vnni<const Q5: bool, const T: usize>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the caller's contract is `k_groups_256`'s, and the features are enabled.
        unsafe { k_groups_256::<Q5, T, true>(w, groups, blocks, acts, outs) }
    }

    /// [`k_groups`] with 256-bit vectors: each superblock's lines as two halves of eight rows,
    /// one after the other (the second reads them from cache). The sums are the same exact
    /// integers: with `VNNI` from `vpdpbusd`; without, `vpmaddubsw` (codes ≤ 31, so two lines'
    /// pair sums stay within i16) widened by `vpmaddwd`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C, and AVX-VNNI if `VNNI`, enabled in the function
    /// this is inlined into; otherwise as [`k_groups`].
    #[inline(always)]
    unsafe fn k_groups_256<const Q5: bool, const T: usize, const VNNI: bool>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        acts: &[&[u8]; T],
        outs: &mut [&mut [f32]; T],
    ) {
        // SAFETY: the features are the caller's (this is inlined into a function that enables
        // them); every superblock of every group is within `w`, every activation has all
        // `blocks` Q8_K blocks (292 bytes) and every `outs[t]` `16 · groups` elements, by the
        // caller's contract; the loads and stores below stay within them.
        unsafe {
            let m4 = _mm256_set1_epi8(0x0F);
            let (bit0, bit1) = (_mm256_set1_epi8(1), _mm256_set1_epi8(2));
            let ones = _mm256_set1_epi16(1);
            let block_bytes = GROUP
                * if Q5 {
                    super::Q5_K_BYTES
                } else {
                    super::Q4_K_BYTES
                };
            let qs = if Q5 { 768 } else { 256 };
            for g in 0..groups {
                let mut acc = [[_mm256_setzero_ps(); T]; 2];
                for s in 0..blocks {
                    {
                        let base = w.as_ptr().add((g * blocks + s) * block_bytes);
                        for l in 0..4 {
                            _mm_prefetch::<_MM_HINT_T0>(
                                base.wrapping_add(PREFETCH + 64 * l).cast(),
                            );
                        }
                        for (h, acc) in acc.iter_mut().enumerate() {
                            let lines = [1, 2, 3]
                                .map(|i| _mm256_loadu_si256(base.add(64 * i + 32 * h).cast()));
                            let mut isum = [_mm256_setzero_si256(); T];
                            for c in 0..4 {
                                let mut lo_sum = [_mm256_setzero_si256(); T];
                                let mut hi_sum = [_mm256_setzero_si256(); T];
                                let mut lo_pair = [_mm256_setzero_si256(); T];
                                let mut hi_pair = [_mm256_setzero_si256(); T];
                                for j in 0..8 {
                                    let line = base.add(qs + 64 * (8 * c + j));
                                    if h == 0 {
                                        _mm_prefetch::<_MM_HINT_T0>(
                                            line.wrapping_add(PREFETCH).cast(),
                                        );
                                    }
                                    let v = _mm256_loadu_si256(line.add(32 * h).cast());
                                    let mut lo = _mm256_and_si256(v, m4);
                                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                                    if Q5 {
                                        let q = _mm256_loadu_si256(
                                            base.add(256 + 64 * j + 32 * h).cast(),
                                        );
                                        let q =
                                            _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * c as i32));
                                        lo = _mm256_or_si256(
                                            lo,
                                            _mm256_slli_epi16::<4>(_mm256_and_si256(q, bit0)),
                                        );
                                        hi = _mm256_or_si256(
                                            hi,
                                            _mm256_slli_epi16::<3>(_mm256_and_si256(q, bit1)),
                                        );
                                    }
                                    for t in 0..T {
                                        let y = acts[t].as_ptr().add(292 * s + 4 + 64 * c + 4 * j);
                                        let ylo =
                                            _mm256_set1_epi32(y.cast::<i32>().read_unaligned());
                                        let yhi = _mm256_set1_epi32(
                                            y.add(32).cast::<i32>().read_unaligned(),
                                        );
                                        if VNNI {
                                            lo_sum[t] = _mm256_dpbusd_avx_epi32(lo_sum[t], lo, ylo);
                                            hi_sum[t] = _mm256_dpbusd_avx_epi32(hi_sum[t], hi, yhi);
                                        } else {
                                            let pl = _mm256_maddubs_epi16(lo, ylo);
                                            let ph = _mm256_maddubs_epi16(hi, yhi);
                                            if j % 2 == 0 {
                                                (lo_pair[t], hi_pair[t]) = (pl, ph);
                                            } else {
                                                let pl = _mm256_add_epi16(lo_pair[t], pl);
                                                let ph = _mm256_add_epi16(hi_pair[t], ph);
                                                lo_sum[t] = _mm256_add_epi32(
                                                    lo_sum[t],
                                                    _mm256_madd_epi16(pl, ones),
                                                );
                                                hi_sum[t] = _mm256_add_epi32(
                                                    hi_sum[t],
                                                    _mm256_madd_epi16(ph, ones),
                                                );
                                            }
                                        }
                                    }
                                }
                                let s_lo = k_scale_256::<false>(&lines, 2 * c);
                                let s_hi = k_scale_256::<false>(&lines, 2 * c + 1);
                                for t in 0..T {
                                    let both = _mm256_add_epi32(
                                        _mm256_mullo_epi32(lo_sum[t], s_lo),
                                        _mm256_mullo_epi32(hi_sum[t], s_hi),
                                    );
                                    isum[t] = _mm256_add_epi32(isum[t], both);
                                }
                            }
                            let mut msum = [_mm256_setzero_si256(); T];
                            for j in 0..8 {
                                let m = k_scale_256::<true>(&lines, j);
                                let m = _mm256_or_si256(m, _mm256_slli_epi32::<16>(m));
                                for t in 0..T {
                                    let bs = acts[t].as_ptr().add(292 * s + 260 + 4 * j);
                                    let bs = _mm256_set1_epi32(bs.cast::<i32>().read_unaligned());
                                    msum[t] = _mm256_add_epi32(msum[t], _mm256_madd_epi16(m, bs));
                                }
                            }
                            let dw = _mm256_cvtph_ps(_mm_loadu_si128(base.add(16 * h).cast()));
                            let mw = _mm256_cvtph_ps(_mm_loadu_si128(base.add(32 + 16 * h).cast()));
                            for t in 0..T {
                                let dy =
                                    acts[t].as_ptr().add(292 * s).cast::<f32>().read_unaligned();
                                let dy = _mm256_set1_ps(dy);
                                let d = _mm256_mul_ps(dw, dy);
                                let a = _mm256_add_ps(
                                    acc[t],
                                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t])),
                                );
                                let m = _mm256_mul_ps(mw, dy);
                                acc[t] =
                                    _mm256_sub_ps(a, _mm256_mul_ps(m, _mm256_cvtepi32_ps(msum[t])));
                            }
                        }
                    }
                }
                for (h, a) in acc.iter().enumerate() {
                    for (o, v) in outs.iter_mut().zip(a) {
                        _mm256_storeu_ps(o.as_mut_ptr().add(GROUP * g + 8 * h), *v);
                    }
                }
            }
        }
    }

    /// Whether the CPU reports AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24 and 25). The
    /// OS must still grant the registers ([`request_tile_registers`]).
    pub fn amx_int8_cpu() -> bool {
        let max_leaf = __cpuid(0).eax;
        max_leaf >= 7 && {
            let edx = __cpuid_count(7, 0).edx;
            edx & (1 << 24) != 0 && edx & (1 << 25) != 0
        }
    }

    /// Asks Linux for this process's permission to use the AMX tile data registers (their
    /// state is too large for the default signal frame, so the kernel hands them out on
    /// request); true when granted.
    #[cfg(target_os = "linux")]
    pub fn request_tile_registers() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` takes two integers,
        // touches no memory of ours and only widens what the process may execute; it fails
        // (non-zero) where the kernel or CPU lacks AMX.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        rc == 0
    }

    /// Blocks per tile pass: their integer sums (one 16 × 16 i32 tile per block) stay in L1
    /// for the float pass that follows.
    const SPAN: usize = 16;

    /// A 64-byte-aligned buffer (the tile configuration; the unpacked Q4_0 lines).
    #[repr(C, align(64))]
    struct Aligned<T>(T);

    /// The integer block sums of `blocks` consecutive blocks: for block `i`, tile C (at
    /// `c + 1024·i`, 16 i32 per token row) = A (`a + 512·i`: the tokens' 32 codes, 32 bytes a
    /// row) times B (`b + 512·i`: 8 lines of 64 bytes, four unsigned weight codes of each of
    /// the 16 rows per line — the layout `tdpbsud` consumes). Two blocks at a time on separate
    /// tiles so that the second's multiply overlaps the first's store.
    ///
    /// # Safety
    /// The CPU must have AMX-TILE and AMX-INT8 and the OS must have granted the tile data
    /// registers; `cfg` must be a valid palette-1 configuration with tiles 0 and 3 `tokens` ×
    /// 64 bytes, 1 and 4 `tokens` × 32 bytes, 2 and 5 8 × 64 bytes; `a`, `b` and `c` must
    /// hold `blocks` blocks as above.
    #[inline]
    unsafe fn tile_sums(
        cfg: &Aligned<[u8; 64]>,
        a: *const u8,
        b: *const u8,
        c: *mut i32,
        blocks: usize,
    ) {
        // Every tile register is loaded before it is read and the configuration is released
        // at the end, so nothing of the tile state lives outside this one block.
        // SAFETY: the caller guarantees the CPU, the permission, the configuration and the
        // memory the loads and stores touch.
        unsafe {
            asm!(
                "ldtilecfg [{cfg}]",
                "test {pairs}, {pairs}",
                "jz 3f",
                "2:",
                "tileloadd tmm1, [{a} + {s32}*1]",
                "tileloadd tmm2, [{b} + {s64}*1]",
                "tileloadd tmm4, [{a} + {s32}*1 + 512]",
                "tileloadd tmm5, [{b} + {s64}*1 + 512]",
                "tilezero tmm0",
                "tilezero tmm3",
                "tdpbsud tmm0, tmm1, tmm2",
                "tdpbsud tmm3, tmm4, tmm5",
                "tilestored [{c} + {s64}*1], tmm0",
                "tilestored [{c} + {s64}*1 + 1024], tmm3",
                "add {a}, 1024",
                "add {b}, 1024",
                "add {c}, 2048",
                "dec {pairs}",
                "jnz 2b",
                "3:",
                "test {odd}, {odd}",
                "jz 4f",
                "tileloadd tmm1, [{a} + {s32}*1]",
                "tileloadd tmm2, [{b} + {s64}*1]",
                "tilezero tmm0",
                "tdpbsud tmm0, tmm1, tmm2",
                "tilestored [{c} + {s64}*1], tmm0",
                "4:",
                "tilerelease",
                cfg = in(reg) cfg.0.as_ptr(),
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                c = inout(reg) c => _,
                pairs = inout(reg) blocks / 2 => _,
                odd = in(reg) blocks % 2,
                s32 = in(reg) 32usize,
                s64 = in(reg) 64usize,
                options(nostack),
            );
        }
    }

    /// The configuration [`tile_sums`] wants for `tile`'s tokens.
    fn tile_config(tile: &super::ActTile) -> Aligned<[u8; 64]> {
        let mut cfg = Aligned([0u8; 64]);
        cfg.0[0] = 1;
        let tokens = tile.tokens as u8;
        for (t, rows, colsb) in [(0, tokens, 64u16), (1, tokens, 32), (2, 8, 64)] {
            for t in [t, t + 3] {
                cfg.0[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
                cfg.0[48 + t] = rows;
            }
        }
        cfg
    }

    /// Packed Q4_K (or, `Q5`, Q5_K) groups against tiles of Q8_K tokens on AMX. Per group,
    /// every superblock's 32 code lines are first spread into its eight sub-blocks' B tiles
    /// (low nibbles: the even sub-block, high: the odd one; Q5_K's fifth bits from its `qh`
    /// lines on top); per tile, [`tile_sums`] gives each sub-block's
    /// integer sums, which are multiplied by the rows' 6-bit scales and added, the minimums
    /// meet the activation's pair sums with `vpdpwssd`, and each row's
    /// `sum += (d·dy)·isum; sum -= (dmin·dy)·msum` — [`k_groups`]' integers (exact, so in any
    /// order) and float chain: the results are bit-identical to it.
    ///
    /// # Safety
    /// As [`tile_sums`] for the CPU and OS, plus AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `w`
    /// must hold `groups` packed Q4_K (`Q5`: Q5_K) groups of `blocks` superblocks, every tile
    /// `8 · blocks`
    /// Q8_K parts, and `outs` one row per token of the tiles in order, each of at least
    /// `16 · groups` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn tile_k_groups<const Q5: bool>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        tiles: &[super::ActTile],
        outs: &mut [&mut [f32]],
    ) {
        const T: usize = super::TILE_TOKENS;
        // Superblocks per tile pass: their 16 sub-blocks' sums fill `c`.
        const SUPER_SPAN: usize = SPAN / 8;
        let block_bytes = GROUP
            * if Q5 {
                super::Q5_K_BYTES
            } else {
                super::Q4_K_BYTES
            };
        let qs = if Q5 { 768 } else { 256 };
        let configs: Vec<Aligned<[u8; 64]>> = tiles.iter().map(tile_config).collect();
        let mut lines: Vec<Aligned<[u8; 512]>> = Vec::new();
        lines.resize_with(8 * blocks, || Aligned([0; 512]));
        let mut c = Aligned([0i32; SPAN * 256]);
        let m4 = _mm512_set1_epi8(0x0F);
        for g in 0..groups {
            for s in 0..blocks {
                // SAFETY: superblock s of group g is within `w` (its 32 code lines from byte
                // `qs`, Q5_K's 8 `qh` lines from 256); sub-blocks 8s..8s + 8 of `lines` exist
                // and are 64-aligned.
                unsafe {
                    let base = w.as_ptr().add((g * blocks + s) * block_bytes);
                    for p in 0..4 {
                        for j in 0..8 {
                            let v = _mm512_loadu_si512(base.add(qs + 64 * (8 * p + j)).cast());
                            let mut lo = _mm512_and_si512(v, m4);
                            let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                            if Q5 {
                                let h = _mm512_loadu_si512(base.add(256 + 64 * j).cast());
                                (lo, hi) = q5_k_top(lo, hi, h, p);
                            }
                            let even = lines[8 * s + 2 * p].0.as_mut_ptr().add(64 * j);
                            _mm512_store_si512(even.cast(), lo);
                            let odd = lines[8 * s + 2 * p + 1].0.as_mut_ptr().add(64 * j);
                            _mm512_store_si512(odd.cast(), hi);
                        }
                    }
                }
            }
            let mut first_token = 0;
            for (tile, cfg) in tiles.iter().zip(&configs) {
                let mut acc = [_mm512_setzero_ps(); T];
                for s0 in (0..blocks).step_by(SUPER_SPAN) {
                    let span = SUPER_SPAN.min(blocks - s0);
                    // SAFETY: superblocks s0..s0 + span of the group, of `lines` and of the
                    // tile (8 parts each), and their sums in `c` (8·span ≤ SPAN), are in
                    // bounds; the CPU and OS are as the caller guarantees.
                    unsafe {
                        let a = tile.codes.as_ptr().add(8 * s0 * T * 32);
                        let b = lines.as_ptr().add(8 * s0).cast::<u8>();
                        tile_sums(cfg, a, b, c.0.as_mut_ptr(), 8 * span);
                        for si in 0..span {
                            let s = s0 + si;
                            let base = w.as_ptr().add((g * blocks + s) * block_bytes);
                            let sl = [1, 2, 3].map(|i| _mm512_loadu_si512(base.add(64 * i).cast()));
                            let scales: [__m512i; 8] =
                                std::array::from_fn(|k| k_scale_512::<false>(&sl, k));
                            let mins: [__m512i; 8] = std::array::from_fn(|j| {
                                let m = k_scale_512::<true>(&sl, j);
                                _mm512_or_si512(m, _mm512_slli_epi32::<16>(m))
                            });
                            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(base.cast()));
                            let mw = _mm512_cvtph_ps(_mm256_loadu_si256(base.add(32).cast()));
                            for (t, acc) in acc.iter_mut().enumerate() {
                                let mut isum = _mm512_setzero_si512();
                                for (k, scale) in scales.iter().enumerate() {
                                    let part = c.0.as_ptr().add(256 * (8 * si + k) + 16 * t);
                                    let part = _mm512_load_si512(part.cast());
                                    isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(part, *scale));
                                }
                                let pairs = tile.pair_sums.as_ptr().add((s * T + t) * 8);
                                let mut msum = _mm512_setzero_si512();
                                for (j, m) in mins.iter().enumerate() {
                                    let bs = _mm512_set1_epi32(*pairs.add(j));
                                    msum = _mm512_dpwssd_epi32(msum, *m, bs);
                                }
                                let dy = _mm512_set1_ps(*tile.scales.as_ptr().add(s * T + t));
                                let d = _mm512_mul_ps(dw, dy);
                                *acc =
                                    _mm512_add_ps(*acc, _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum)));
                                let m = _mm512_mul_ps(mw, dy);
                                *acc =
                                    _mm512_sub_ps(*acc, _mm512_mul_ps(m, _mm512_cvtepi32_ps(msum)));
                            }
                        }
                    }
                }
                for (out, acc) in outs[first_token..first_token + tile.tokens]
                    .iter_mut()
                    .zip(acc)
                {
                    // SAFETY: every `outs[t]` has at least 16g + 16 elements.
                    unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(GROUP * g), acc) };
                }
                first_token += tile.tokens;
            }
        }
    }

    /// The packed Q4_0 (`Q4`) or Q8_0 groups against tiles of tokens on AMX. Per group, Q4_0's
    /// nibbles are first spread to one (still unsigned) code per byte for all blocks, once for
    /// every tile; then per tile and span of blocks, [`tile_sums`] gives every block's integer
    /// sums of all its tokens and rows, and per block and token the offset `k · Σy` is
    /// subtracted and `sum = fma(isum, dw·dy, sum)` — exactly [`groups`]' integers and chain,
    /// so the results are bit-identical to it.
    ///
    /// # Safety
    /// As [`tile_sums`] for the CPU and OS, plus AVX-512 F/BW/VL, AVX2, FMA and F16C; `w` must
    /// hold `groups` packed groups of `blocks` blocks, every tile `blocks` blocks, and `outs`
    /// one row per token of the tiles in order, each of at least `16 · groups` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn tile_groups<const Q4: bool>(
        w: &[u8],
        groups: usize,
        blocks: usize,
        tiles: &[super::ActTile],
        outs: &mut [&mut [f32]],
    ) {
        const T: usize = super::TILE_TOKENS;
        let code_bytes = if Q4 { 16 } else { 32 };
        let group_bytes = GROUP * (code_bytes + 2) * blocks;
        let configs: Vec<Aligned<[u8; 64]>> = tiles.iter().map(tile_config).collect();
        // One block's 8 lines of 64 bytes, aligned so that each line is a cache line.
        let mut lines: Vec<Aligned<[u8; 512]>> = Vec::new();
        if Q4 {
            lines.resize_with(blocks, || Aligned([0; 512]));
        }
        let mut c = Aligned([0i32; SPAN * 256]);
        let m4 = _mm512_set1_epi8(0x0F);
        for g in 0..groups {
            // SAFETY: group g is within `w` (the caller's contract).
            let (sp, cp) = unsafe {
                let base = w.as_ptr().add(g * group_bytes);
                (base, base.add(2 * GROUP * blocks))
            };
            if Q4 {
                // Line j's low nibbles are codes 4j..4j+4 of each row, its high ones 16 later:
                // B's lines j and 4 + j.
                for (b, dst) in lines.iter_mut().enumerate() {
                    // SAFETY: block b's four code lines are in the group; `dst` is 512 bytes,
                    // 64-aligned.
                    unsafe {
                        let src = cp.add(GROUP * code_bytes * b);
                        let dst = dst.0.as_mut_ptr();
                        for j in 0..4 {
                            let v = _mm512_loadu_si512(src.add(64 * j).cast());
                            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                            _mm512_store_si512(dst.add(64 * j).cast(), _mm512_and_si512(v, m4));
                            _mm512_store_si512(dst.add(64 * (4 + j)).cast(), hi);
                        }
                    }
                }
            }
            let mut first_token = 0;
            for (tile, cfg) in tiles.iter().zip(&configs) {
                let mut acc = [_mm512_setzero_ps(); T];
                for b0 in (0..blocks).step_by(SPAN) {
                    let span = SPAN.min(blocks - b0);
                    // SAFETY: blocks b0..b0 + span of the group's code lines (or of `lines`),
                    // of the tile's codes, scales and sums, and of `c` (span ≤ SPAN) are in
                    // bounds; the CPU and OS are as the caller guarantees.
                    unsafe {
                        let weights = if Q4 {
                            lines.as_ptr().add(b0).cast::<u8>()
                        } else {
                            cp.add(GROUP * code_bytes * b0)
                        };
                        let a = tile.codes.as_ptr().add(b0 * T * 32);
                        tile_sums(cfg, a, weights, c.0.as_mut_ptr(), span);
                        for i in 0..span {
                            let b = b0 + i;
                            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(sp.add(32 * b).cast()));
                            let offsets = tile.offsets[usize::from(!Q4)].as_ptr().add(b * T);
                            let scales = tile.scales.as_ptr().add(b * T);
                            for (t, acc) in acc.iter_mut().enumerate() {
                                let isum = c.0.as_ptr().add(256 * i + 16 * t);
                                let isum = _mm512_load_si512(isum.cast());
                                let i = _mm512_sub_epi32(isum, _mm512_set1_epi32(*offsets.add(t)));
                                let d = _mm512_mul_ps(dw, _mm512_set1_ps(*scales.add(t)));
                                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), d, *acc);
                            }
                        }
                    }
                }
                for (out, acc) in outs[first_token..first_token + tile.tokens]
                    .iter_mut()
                    .zip(acc)
                {
                    // SAFETY: every `outs[t]` has at least 16g + 16 elements.
                    unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(GROUP * g), acc) };
                }
                first_token += tile.tokens;
            }
        }
    }
}
