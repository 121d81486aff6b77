//! Packed Q4_0/Q8_0/Q4_1/Q4_K/Q5_K/Q6_K rows against the file-layout scalar references, bit for
//! bit: quantized rows and hand-made blocks with every code byte and extreme scales, one to four activations,
//! whole matrices and group-aligned slices of them; the AMX tile kernels (Q4_0, Q8_0) likewise.

use ggufy_gguf::GgmlType;
use ggufy_quant::dot::{
    ActQ8_0, ActQ8_1, ActQ8_K, ActivationFormat, BlockFormat, BlockQ4_1, BlockSums,
};
use ggufy_quant::matvec::{Kernel, MAX_TOKENS, q4_k_rows, q5_k_rows, q6_k_rows, q8_0_partner_rows};
use ggufy_quant::packed::{ActTile, GROUP, PackedRows, TILE_TOKENS, tiles_ready};
use ggufy_quant::{Rounding, quantize_row};
use proptest::prelude::*;

/// One xorshift step: the tests' cheap stream of arbitrary bytes.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Arbitrary Q8_0 codes, -128 a fifth of the time (a NaN quantizes to it): the kernels'
/// integer sums must stay exact for every byte.
fn arbitrary_codes(codes: &mut [u8], s: &mut u64) {
    for c in codes {
        let r = next(s);
        *c = if r.is_multiple_of(5) { 0x80 } else { r as u8 };
    }
}

/// `tokens` rows of `x` (`blocks` blocks each) quantized to Q8_0, each block's 32 codes then
/// handed to `codes`, which may overwrite them.
fn q8_0_acts(
    x: &[f32],
    blocks: usize,
    tokens: usize,
    mut codes: impl FnMut(&mut [u8]),
) -> Vec<Vec<u8>> {
    x.chunks_exact(blocks * 32)
        .take(tokens)
        .map(|xt| {
            let mut a = vec![0u8; blocks * 34];
            ActQ8_0::quantize_row(xt, &mut a).unwrap();
            for blk in a.chunks_exact_mut(34) {
                codes(&mut blk[2..]);
            }
            a
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        12 => -4.0f32..4.0,
        1 => Just(0.0f32),
        1 => (-20i32..20).prop_map(|i| i as f32 * 0.5),
        1 => prop_oneof![Just(65504.0f32), Just(-65504.0), Just(1e30)],
        1 => (1u32..0x0080_0000).prop_map(f32::from_bits),
    ]
}

/// `rows` rows of `ty`: quantized from values, or arbitrary bytes with an arbitrary finite
/// f16 scale per block (a file need not come from ggml's quantizer).
fn weights(ty: GgmlType, rows: usize, cols: usize, w: &[f32], seed: Option<u64>) -> Vec<u8> {
    let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut out = vec![0u8; rows * row_bytes];
    match seed {
        None => {
            for (src, dst) in w.chunks_exact(cols).zip(out.chunks_exact_mut(row_bytes)) {
                quantize_row(ty, src, dst, Rounding::Separate).unwrap();
            }
        }
        Some(seed) => {
            let mut s = seed | 1;
            let block = row_bytes / (cols / 32);
            for blk in out.chunks_exact_mut(block) {
                for b in blk.iter_mut() {
                    next(&mut s);
                    *b = s as u8;
                }
                let d = half::f16::from_f32((s % 4000) as f32 / 50.0 - 40.0);
                blk[..2].copy_from_slice(&d.to_le_bytes());
            }
        }
    }
    out
}

/// Packs `wq` (`rows` rows of `ty`), checks that every packed row unpacks to the file's bytes,
/// then that the packed dots from group `start_group` on equal `reference`'s, bit for bit, on
/// every kernel this CPU runs.
fn check_packed(
    ty: GgmlType,
    wq: &[u8],
    rows: usize,
    acts: &[Vec<u8>],
    start_group: usize,
    reference: impl Fn(&[u8], usize, &[u8], &mut [f32]),
) -> Result<(), TestCaseError> {
    let row_bytes = wq.len() / rows;
    let p = PackedRows::new(ty, wq, row_bytes, rows).unwrap();
    prop_assert_eq!(p.rows(), rows / GROUP * GROUP);
    prop_assert_eq!(p.len(), p.rows() * row_bytes);
    for r in 0..p.rows() {
        prop_assert_eq!(&p.row(r)[..], &wq[r * row_bytes..(r + 1) * row_bytes]);
    }
    let act_refs: Vec<&[u8]> = acts.iter().map(Vec::as_slice).collect();
    // Q8_1 and Q8_K activations carry their own sums.
    let sums: Vec<BlockSums> = match ty {
        GgmlType::Q4_0 | GgmlType::Q8_0 => acts.iter().map(|a| BlockSums::of_q8_0(a)).collect(),
        _ => Vec::new(),
    };
    let sum_refs: Vec<&BlockSums> = sums.iter().collect();
    let first = (start_group * GROUP).min(p.rows());
    let n = p.rows() - first;
    for k in Kernel::available() {
        let mut outs = vec![vec![0f32; n]; acts.len()];
        let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        if n > 0 {
            prop_assert!(p.rows_dot(first, &act_refs, &sum_refs, &mut out_refs, k));
        }
        for (a, got) in acts.iter().zip(&outs) {
            let mut want = vec![0f32; n];
            reference(&wq[first * row_bytes..], row_bytes, a, &mut want);
            prop_assert_eq!(bits(got), bits(&want), "{} {:?}", ty, k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn packed_rows_equal_the_reference(
        (rows, blocks, tokens) in (1usize..40, 1usize..6, 1usize..=MAX_TOKENS),
        w in prop::collection::vec(value(), 40 * 5 * 32),
        x in prop::collection::vec(value(), MAX_TOKENS * 5 * 32),
        seed in prop::option::of(any::<u64>()),
        start_group in 0usize..4,
        act_seed in prop::option::of(any::<u64>()),
    ) {
        let cols = blocks * 32;
        // Arbitrary codes too (every block of every token, when drawn).
        let mut s = act_seed.map(|seed| seed | 1);
        let acts = q8_0_acts(&x, blocks, tokens, |codes| {
            if let Some(s) = s.as_mut() {
                arbitrary_codes(codes, s);
            }
        });
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
            let wq = weights(ty, rows, cols, &w, seed);
            check_packed(ty, &wq, rows, &acts, start_group, |w, rb, a, out| {
                q8_0_partner_rows(ty, w, rb, a, &BlockSums::of_q8_0(a), out, Kernel::Scalar);
            })?;
        }
        // Q4_1 against Q8_1 activations (their own sums), arbitrary minimums too.
        let acts: Vec<Vec<u8>> = x
            .chunks_exact(cols)
            .take(tokens)
            .map(|xt| {
                let mut a = vec![0u8; blocks * 36];
                ActQ8_1::quantize_row(xt, &mut a).unwrap();
                a
            })
            .collect();
        let mut wq = weights(GgmlType::Q4_1, rows, cols, &w, seed);
        if seed.is_some() {
            // `weights` makes only `d` finite; the minimum must be too.
            for (i, blk) in wq.chunks_exact_mut(20).enumerate() {
                let m = half::f16::from_f32((i % 97) as f32 / 8.0 - 6.0);
                blk[2..4].copy_from_slice(&m.to_le_bytes());
            }
        }
        check_packed(GgmlType::Q4_1, &wq, rows, &acts, start_group, |w, rb, a, out| {
            for (o, row) in out.iter_mut().zip(w.chunks_exact(rb)) {
                *o = BlockQ4_1::vec_dot_blocks(row, a);
            }
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The AMX tile kernels against the scalar reference, bit for bit: spans of blocks cut
    /// anywhere (past 16, odd and even), one to three tiles of up to 16 tokens (a short last
    /// one), every activation byte, quantized and arbitrary weights, group-aligned slices.
    /// Where AMX does not run here, the call must refuse and leave the outputs alone.
    #[test]
    fn tile_rows_equal_the_reference(
        (groups, blocks, tokens) in (1usize..4, 1usize..40, 1usize..=40),
        seed in prop::option::of(any::<u64>()),
        start_group in 0usize..3,
        act_seed in any::<u64>(),
    ) {
        let (rows, cols) = (groups * GROUP, blocks * 32);
        let mut s = act_seed | 1;
        // Drawn here rather than by proptest: a few thousand values a case, not a vector of
        // the largest shape.
        let mut floats = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    next(&mut s);
                    match s % 64 {
                        0 => 0.0,
                        1 => 65504.0,
                        2 => f32::from_bits((s >> 40) as u32 & 0x007f_ffff),
                        _ => (s >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0,
                    }
                })
                .collect()
        };
        let w = floats(rows * cols);
        let x = floats(tokens * cols);
        // Every code byte in some blocks, -128 included.
        let acts = q8_0_acts(&x, blocks, tokens, |codes| {
            if next(&mut s).is_multiple_of(3) {
                arbitrary_codes(codes, &mut s);
            }
        });
        let sums: Vec<BlockSums> = acts.iter().map(|a| BlockSums::of_q8_0(a)).collect();
        let tiles: Vec<ActTile> = acts
            .chunks(TILE_TOKENS)
            .zip(sums.chunks(TILE_TOKENS))
            .map(|(a, s)| {
                let a: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
                let s: Vec<&BlockSums> = s.iter().collect();
                ActTile::new(&a, &s, blocks).unwrap()
            })
            .collect();
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
            let wq = weights(ty, rows, cols, &w, seed);
            let rb = wq.len() / rows;
            let p = PackedRows::new(ty, &wq, rb, rows).unwrap();
            let first = (start_group * GROUP).min(rows - GROUP);
            let n = rows - first;
            let mut outs = vec![vec![f32::NAN; n]; tokens];
            let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            let ran = p.rows_dot_tiles(first, &tiles, &mut out_refs);
            prop_assert_eq!(ran, tiles_ready());
            for (t, (a, got)) in acts.iter().zip(&outs).enumerate() {
                let mut want = vec![f32::NAN; n];
                if ran {
                    let s = BlockSums::of_q8_0(a);
                    q8_0_partner_rows(ty, &wq[first * rb..], rb, a, &s, &mut want, Kernel::Scalar);
                }
                prop_assert_eq!(bits(got), bits(&want), "{} token {}", ty, t);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// Q4_K and Q5_K rows on AMX tiles against the scalar reference, bit for bit: arbitrary
    /// superblocks (every 6-bit scale and minimum, every fifth bit), one to three superblocks (passes of two and a last
    /// odd one), one to three tiles of Q8_K tokens with arbitrary codes in some parts.
    #[test]
    fn k_quant_tile_rows_equal_the_reference(
        (groups, blocks, tokens) in (1usize..4, 1usize..4, 1usize..=40),
        start_group in 0usize..3,
        seed in any::<u64>(),
    ) {
        let (rows, cols) = (groups * GROUP, blocks * 256);
        let mut s = seed | 1;
        let x: Vec<f32> = (0..tokens * cols)
            .map(|_| (next(&mut s) >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0)
            .collect();
        let acts: Vec<Vec<u8>> = x
            .chunks_exact(cols)
            .map(|xt| {
                let mut a = vec![0u8; blocks * 292];
                ActQ8_K::quantize_row(xt, &mut a).unwrap();
                for sb in a.chunks_exact_mut(292) {
                    for part in sb[4..260].chunks_exact_mut(32) {
                        if next(&mut s).is_multiple_of(4) {
                            arbitrary_codes(part, &mut s);
                        }
                    }
                }
                a
            })
            .collect();
        for ty in [GgmlType::Q4_K, GgmlType::Q5_K] {
        let block = ty.row_bytes(256).unwrap() as usize;
        let mut wq = vec![0u8; rows * blocks * block];
        for blk in wq.chunks_exact_mut(block) {
            for b in blk.iter_mut() {
                *b = next(&mut s) as u8;
            }
            let d = |v: u64| half::f16::from_f32((v % 4000) as f32 / 50.0 - 40.0);
            let (d, dmin) = (d(s).to_le_bytes(), d(s >> 20).to_le_bytes());
            blk[..4].copy_from_slice(&[d[0], d[1], dmin[0], dmin[1]]);
        }
        let rb = blocks * block;
        let p = PackedRows::new(ty, &wq, rb, rows).unwrap();
        let tiles: Vec<ActTile> = acts
            .chunks(TILE_TOKENS)
            .map(|a| {
                let a: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
                ActTile::from_q8_k(&a, blocks).unwrap()
            })
            .collect();
        let first = (start_group * GROUP).min(rows - GROUP);
        let n = rows - first;
        let mut outs = vec![vec![f32::NAN; n]; tokens];
        let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        let ran = p.rows_dot_tiles(first, &tiles, &mut out_refs);
        prop_assert_eq!(ran, tiles_ready());
        for (t, (a, got)) in acts.iter().zip(&outs).enumerate() {
            let mut want = vec![f32::NAN; n];
            if ran {
                if ty == GgmlType::Q4_K {
                    q4_k_rows(&wq[first * rb..], rb, a, &mut want, Kernel::Scalar);
                } else {
                    q5_k_rows(&wq[first * rb..], rb, a, &mut want, Kernel::Scalar);
                }
            }
            prop_assert_eq!(bits(got), bits(&want), "{} token {}", ty, t);
        }
        // Q8_0 tiles do not fit Q4_K rows, nor Q8_K tiles Q8_0 rows.
        let q8 = vec![0u8; 34 * 8 * blocks];
        let q8_tile = ActTile::new(&[&q8], &[&BlockSums::of_q8_0(&q8)], 8 * blocks).unwrap();
        let mut one = vec![0f32; n];
        prop_assert!(!p.rows_dot_tiles(first, &[q8_tile], &mut [&mut one]));
        let rb8 = 34 * 8 * blocks;
        let q8_0 = PackedRows::new(GgmlType::Q8_0, &vec![0u8; 16 * rb8], rb8, 16).unwrap();
        let mut some: Vec<Vec<f32>> = vec![vec![0f32; 16]; tiles[0].tokens()];
        let mut some_refs: Vec<&mut [f32]> = some.iter_mut().map(Vec::as_mut_slice).collect();
        prop_assert!(!q8_0.rows_dot_tiles(0, &tiles[..1], &mut some_refs));
        }
    }
}

#[test]
fn bad_tile_calls_are_refused() {
    let wq = vec![0u8; 32 * 34];
    let p = PackedRows::new(GgmlType::Q8_0, &wq, 34, 32).unwrap();
    let act = vec![0u8; 34];
    let sums = BlockSums::of_q8_0(&act);
    let tile = ActTile::new(&[&act], &[&sums], 1).unwrap();
    let mut out = vec![0f32; 16];
    let one = std::slice::from_ref(&tile);
    assert_eq!(p.rows_dot_tiles(0, one, &mut [&mut out]), tiles_ready());
    // Not a group boundary, not whole groups, past the end, outputs and tokens that differ.
    assert!(!p.rows_dot_tiles(3, one, &mut [&mut out]));
    assert!(!p.rows_dot_tiles(0, one, &mut [&mut out[..8]]));
    assert!(!p.rows_dot_tiles(32, one, &mut [&mut out]));
    let mut two = vec![0f32; 16];
    assert!(!p.rows_dot_tiles(0, one, &mut [&mut out, &mut two]));
    // A tile of other rows, and one of another type's matrix.
    let wide = ActTile::new(&[&[0u8; 68][..]], &[&BlockSums::of_q8_0(&[0u8; 68])], 2).unwrap();
    assert!(!p.rows_dot_tiles(0, &[wide], &mut [&mut out]));
    let q6 = PackedRows::new(GgmlType::Q6_K, &vec![0u8; 16 * 210], 210, 16).unwrap();
    assert!(!q6.rows_dot_tiles(0, one, &mut [&mut vec![0f32; 16][..]]));
    // No tokens, too many, short rows, short or missing sums.
    let seventeen = vec![&act[..]; 17];
    let sums17 = vec![&sums; 17];
    assert!(ActTile::new(&[], &[], 1).is_none());
    assert!(ActTile::new(&seventeen, &sums17, 1).is_none());
    assert!(ActTile::new(&[&act], &[&sums], 2).is_none());
    assert!(ActTile::new(&[&act], &[], 1).is_none());
    assert!(ActTile::new(&[&act], &[&BlockSums::of_q8_0(&[])], 1).is_none());
}

#[test]
fn bad_calls_are_refused() {
    let wq = vec![0u8; 16 * 34];
    let p = PackedRows::new(GgmlType::Q8_0, &wq, 34, 16).unwrap();
    let act = vec![0u8; 34];
    let sums = BlockSums::of_q8_0(&act);
    let mut out = vec![0f32; 8];
    assert!(p.rows_dot(0, &[&act], &[&sums], &mut [&mut out], Kernel::Scalar));
    // Not a group boundary, past the end, no activation, no sums or too few of them.
    assert!(!p.rows_dot(3, &[&act], &[&sums], &mut [&mut out], Kernel::Scalar));
    assert!(!p.rows_dot(16, &[&act], &[&sums], &mut [&mut out], Kernel::Scalar));
    assert!(!p.rows_dot(0, &[], &[], &mut [], Kernel::Scalar));
    assert!(!p.rows_dot(0, &[&act], &[], &mut [&mut out], Kernel::Scalar));
    let short = BlockSums::of_q8_0(&[]);
    assert!(!p.rows_dot(0, &[&act], &[&short], &mut [&mut out], Kernel::Scalar));
    assert!(PackedRows::new(GgmlType::Q8_0, &wq[..100], 34, 16).is_none());
    assert!(PackedRows::new(GgmlType::Q5_0, &wq, 22, 16).is_none());
    assert!(PackedRows::new(GgmlType::Q8_0, &wq, 33, 16).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn packed_k_quant_rows_equal_the_reference(
        (rows, blocks, tokens) in (1usize..40, 1usize..3, 1usize..=MAX_TOKENS),
        w in prop::collection::vec(value(), 40 * 2 * 256),
        x in prop::collection::vec(value(), MAX_TOKENS * 2 * 256),
        seed in prop::option::of(any::<u64>()),
        start_group in 0usize..3,
    ) {
        let cols = blocks * 256;
        let acts: Vec<Vec<u8>> = x
            .chunks_exact(cols)
            .take(tokens)
            .map(|xt| {
                let mut a = vec![0u8; blocks * 292];
                ActQ8_K::quantize_row(xt, &mut a).unwrap();
                a
            })
            .collect();
        for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let block = ty.row_bytes(256).unwrap() as usize;
            let row_bytes = blocks * block;
            let mut wq = vec![0u8; rows * row_bytes];
            // ggufy has no Q4_K or Q5_K quantizer: those rows are always arbitrary bytes.
            let seed = match ty {
                GgmlType::Q6_K => seed,
                _ => Some(seed.unwrap_or(u64::from(w[0].to_bits()))),
            };
            match seed {
                None => {
                    for (src, dst) in w.chunks_exact(cols).zip(wq.chunks_exact_mut(row_bytes)) {
                        quantize_row(ty, src, dst, Rounding::Separate).unwrap();
                    }
                }
                // Every byte arbitrary (Q6_K sub-block scales of -128, every 6-bit scale and
                // minimum included), finite f16 scales.
                Some(seed) => {
                    let mut s = seed | 1;
                    for blk in wq.chunks_exact_mut(block) {
                        for b in blk.iter_mut() {
                            next(&mut s);
                            *b = s as u8;
                        }
                        let d = |v: u64| half::f16::from_f32((v % 4000) as f32 / 50.0 - 40.0);
                        let (d, dmin) = (d(s).to_le_bytes(), d(s >> 20).to_le_bytes());
                        match ty {
                            GgmlType::Q6_K => blk[208..].copy_from_slice(&d),
                            _ => blk[..4].copy_from_slice(&[d[0], d[1], dmin[0], dmin[1]]),
                        }
                    }
                }
            }
            check_packed(ty, &wq, rows, &acts, start_group, |w, rb, a, out| match ty {
                GgmlType::Q4_K => q4_k_rows(w, rb, a, out, Kernel::Scalar),
                GgmlType::Q5_K => q5_k_rows(w, rb, a, out, Kernel::Scalar),
                _ => q6_k_rows(w, rb, a, out, Kernel::Scalar),
            })?;
        }
    }
}
