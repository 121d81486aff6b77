//! The vector mat-vec kernels against the scalar references, bit for bit: Q4_0 and Q8_0 weights
//! against a Q8_0 activation (eight-row groups and the leftover rows), and F16 rows, on random
//! rows mixed with edge values (zeros, ties, huge and subnormal scales, infinities).

use ggufy_gguf::GgmlType;
use ggufy_quant::dot::{ActQ8_0, ActivationFormat, BlockSums, dot_f16, quantize_q8_0_activation};
use ggufy_quant::dot::{ActQ8_1, ActQ8_K, BlockFormat, BlockQ4_K, BlockQ5_K, BlockQ6_K};
use ggufy_quant::dot::{BlockQ4_1, BlockQ5_0, BlockQ5_1, dot_bf16, dot_f16_tiled};
use ggufy_quant::matvec::{
    Kernel, MAX_TOKENS, bf16_rows, bf16_rows_multi, f16_rows, f16_rows_multi, f16_rows_tiled,
    k_quant_rows_multi, legacy_rows, nf4_rows, nf4_rows_multi, q4_k_rows, q5_k_rows, q6_k_rows,
    q8_0_partner_rows, q8_0_partner_rows_multi,
};
use ggufy_quant::nf4::{dequantize_nf4, dot_nf4};
use ggufy_quant::simd::Level;
use ggufy_quant::{Rounding, quantize_row};
use proptest::prelude::*;

fn finite_edge_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        12 => -4.0f32..4.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => (-20i32..20).prop_map(|i| i as f32 * 0.5),
        1 => prop_oneof![Just(65504.0f32), Just(-65504.0), Just(1e30), Just(-3e38)],
        1 => (1u32..0x0080_0000).prop_map(f32::from_bits),
        1 => -1e-38f32..1e-38,
    ]
}

/// Mostly finite values; one draw in 200 is infinite, so that a 256-element block is often
/// all finite (an infinity makes the whole block's result NaN and hides everything else).
fn edge_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        199 => finite_edge_value(),
        1 => prop_oneof![Just(f32::INFINITY), Just(f32::NEG_INFINITY)],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// The vectorized Q8_0 activation quantizer gives the scalar one's bytes, NaNs, infinities,
    /// subnormal maxima and ties included.
    #[test]
    fn q8_0_activation_levels_agree(
        x in (1usize..8).prop_flat_map(|blocks| prop::collection::vec(
            // 127 as a block's maximum makes the scale 1, so the half-integer edge values are
            // rounding ties.
            prop_oneof![50 => edge_value(), 1 => Just(f32::NAN), 2 => Just(127.0f32)],
            blocks * 32,
        )),
    ) {
        let mut want = vec![0u8; x.len() / 32 * 34];
        quantize_q8_0_activation(&x, &mut want, Level::Scalar).unwrap();
        for level in [Level::Avx2, Level::Neon] {
            let mut got = vec![0u8; want.len()];
            quantize_q8_0_activation(&x, &mut got, level).unwrap();
            prop_assert_eq!(&got, &want, "{:?}", level);
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `rows` weight rows and one activation of `blocks` blocks of 32.
fn case() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>)> {
    (1usize..20, 1usize..6).prop_flat_map(|(rows, blocks)| {
        (
            Just(rows),
            prop::collection::vec(edge_value(), rows * blocks * 32),
            prop::collection::vec(edge_value(), blocks * 32),
        )
    })
}

fn check_quantized(ty: GgmlType, rows: usize, w: &[f32], x: &[f32]) -> Result<(), TestCaseError> {
    let cols = x.len();
    let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut wq = vec![0u8; rows * row_bytes];
    for (src, dst) in w.chunks_exact(cols).zip(wq.chunks_exact_mut(row_bytes)) {
        quantize_row(ty, src, dst, Rounding::Separate).unwrap();
    }
    let mut act = vec![0u8; cols / 32 * 34];
    ActQ8_0::quantize_row(x, &mut act).unwrap();
    let sums = BlockSums::of_q8_0(&act);
    let mut plain = vec![0f32; rows];
    prop_assert!(q8_0_partner_rows(
        ty,
        &wq,
        row_bytes,
        &act,
        &sums,
        &mut plain,
        Kernel::Scalar
    ));
    for k in Kernel::available() {
        let mut fast = vec![0f32; rows];
        prop_assert!(q8_0_partner_rows(
            ty, &wq, row_bytes, &act, &sums, &mut fast, k
        ));
        prop_assert_eq!(bits(&fast), bits(&plain), "{} {:?}", ty, k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn q4_0_and_q8_0_kernels_equal_the_reference((rows, w, x) in case()) {
        check_quantized(GgmlType::Q4_0, rows, &w, &x)?;
        check_quantized(GgmlType::Q8_0, rows, &w, &x)?;
    }

    #[test]
    fn q8_0_kernel_takes_any_weight_byte(
        (rows, blocks) in (1usize..12, 1usize..4),
        seed in any::<u64>(),
        x in prop::collection::vec(edge_value(), 96),
        nan_at in prop::option::of(0usize..96),
        tiny in any::<bool>(),
    ) {
        // Hand-made blocks with every code, -128 included, and arbitrary (even inf/NaN-free
        // extreme) f16 scales: a file need not come from ggml's quantizer.
        let mut state = seed | 1;
        let mut next = || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state };
        let cols = blocks * 32;
        let row_bytes = blocks * 34;
        let mut wq = vec![0u8; rows * row_bytes];
        for blk in wq.chunks_exact_mut(34) {
            for b in blk.iter_mut() { *b = next() as u8; }
            let d = half::f16::from_f32((next() % 2000) as f32 / 100.0 - 10.0);
            blk[..2].copy_from_slice(&d.to_le_bytes());
        }
        // Activation codes of -128 too: from a NaN, or from a block of subnormals.
        let mut x = x;
        if let Some(i) = nan_at {
            x[i] = f32::NAN;
        }
        if tiny {
            x[..32].iter_mut().for_each(|v| *v = v.signum() * 1e-41);
        }
        let mut act = vec![0u8; blocks * 34];
        ActQ8_0::quantize_row(&x[..cols], &mut act).unwrap();
        let sums = BlockSums::of_q8_0(&act);
        let mut plain = vec![0f32; rows];
        q8_0_partner_rows(GgmlType::Q8_0, &wq, row_bytes, &act, &sums, &mut plain, Kernel::Scalar);
        for k in Kernel::available() {
            let mut fast = vec![0f32; rows];
            q8_0_partner_rows(GgmlType::Q8_0, &wq, row_bytes, &act, &sums, &mut fast, k);
            prop_assert_eq!(bits(&fast), bits(&plain), "{:?}", k);
        }
    }

    #[test]
    fn f16_kernel_equals_the_reference(
        (rows, cols) in (1usize..10, 1usize..300),
        w in prop::collection::vec(edge_value(), 3000),
        x in prop::collection::vec(edge_value(), 300),
    ) {
        let wh: Vec<u8> = w[..rows * cols]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        // The activations are f16 values, as the runner makes them.
        let x: Vec<f32> = x[..cols].iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let mut plain = vec![0f32; rows];
        f16_rows(&wh, &x, &mut plain, Kernel::Scalar);
        for k in Kernel::available() {
            let mut fast = vec![0f32; rows];
            f16_rows(&wh, &x, &mut fast, k);
            prop_assert_eq!(bits(&fast), bits(&plain), "{:?}", k);
        }
        for (r, got) in plain.iter().enumerate() {
            prop_assert_eq!(got.to_bits(), dot_f16(&wh[2 * r * cols..2 * (r + 1) * cols], &x).to_bits());
        }
    }

    #[test]
    fn q6_k_kernel_equals_the_reference(
        (rows, blocks) in (1usize..5, 1usize..4),
        w in prop::collection::vec(edge_value(), 4 * 3 * 256),
        x in prop::collection::vec(edge_value(), 3 * 256),
    ) {
        let cols = blocks * 256;
        let row_bytes = blocks * 210;
        let mut wq = vec![0u8; rows * row_bytes];
        for (src, dst) in w.chunks_exact(cols).zip(wq.chunks_exact_mut(row_bytes)) {
            quantize_row(GgmlType::Q6_K, src, dst, Rounding::Separate).unwrap();
        }
        let mut act = vec![0u8; blocks * 292];
        ActQ8_K::quantize_row(&x[..cols], &mut act).unwrap();
        let mut plain = vec![0f32; rows];
        q6_k_rows(&wq, row_bytes, &act, &mut plain, Kernel::Scalar);
        for (r, got) in plain.iter().enumerate() {
            let want = BlockQ6_K::vec_dot_blocks(&wq[r * row_bytes..(r + 1) * row_bytes], &act);
            prop_assert_eq!(got.to_bits(), want.to_bits());
        }
        for k in Kernel::available() {
            let mut fast = vec![0f32; rows];
            q6_k_rows(&wq, row_bytes, &act, &mut fast, k);
            prop_assert_eq!(bits(&fast), bits(&plain), "{:?}", k);
        }
    }
}

/// The NF4 dot's definition: the row decoded to f32, then products summed in eight lanes.
fn nf4_decoded_dot(codes: &[u8], absmax: &[u8], x: &[f32]) -> f32 {
    let am: Vec<f32> = absmax
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut w = vec![0f32; x.len()];
    dequantize_nf4(codes, &am, &mut w);
    let mut acc = [0f32; 8];
    for (wc, xc) in w.chunks_exact(8).zip(x.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += wc[k] * xc[k];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

proptest! {
    #[test]
    fn nf4_kernels_equal_the_reference(
        (rows, blocks) in (1usize..6, 1usize..5),
        codes in prop::collection::vec(any::<u8>(), 5 * 4 * 32),
        absmax in prop::collection::vec(edge_value(), 5 * 4),
        x in prop::collection::vec(edge_value(), 4 * 64),
    ) {
        let cols = blocks * 64;
        let codes = &codes[..rows * cols / 2];
        let am: Vec<u8> = absmax[..rows * blocks].iter().flat_map(|a| a.to_le_bytes()).collect();
        let x = &x[..cols];
        let mut plain = vec![0f32; rows];
        nf4_rows(codes, &am, x, &mut plain, Kernel::Scalar);
        for r in 0..rows {
            let (c, a) = (&codes[r * cols / 2..(r + 1) * cols / 2], &am[r * blocks * 4..(r + 1) * blocks * 4]);
            let want = nf4_decoded_dot(c, a, x);
            prop_assert_eq!(dot_nf4(c, a, x).to_bits(), want.to_bits());
            prop_assert!(plain[r].to_bits() == want.to_bits() || (plain[r].is_nan() && want.is_nan()));
        }
        for k in Kernel::available() {
            let mut fast = vec![0f32; rows];
            nf4_rows(codes, &am, x, &mut fast, k);
            for (f, p) in fast.iter().zip(&plain) {
                // NaN payloads aside (an infinite absmax times a zero code), bit for bit.
                prop_assert!(f.to_bits() == p.to_bits() || (f.is_nan() && p.is_nan()), "{:?}: {} vs {}", k, f, p);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn batched_kernels_equal_the_one_row_kernels(
        (rows, blocks, tokens) in (1usize..20, 1usize..5, 1usize..=MAX_TOKENS),
        w in prop::collection::vec(edge_value(), 20 * 4 * 64),
        x in prop::collection::vec(edge_value(), MAX_TOKENS * 4 * 64),
    ) {
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
            let cols = blocks * 32;
            let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
            let mut wq = vec![0u8; rows * row_bytes];
            for (src, dst) in w.chunks_exact(cols).zip(wq.chunks_exact_mut(row_bytes)) {
                quantize_row(ty, src, dst, Rounding::Separate).unwrap();
            }
            let acts: Vec<Vec<u8>> = x
                .chunks_exact(cols)
                .take(tokens)
                .map(|xt| {
                    let mut a = vec![0u8; cols / 32 * 34];
                    ActQ8_0::quantize_row(xt, &mut a).unwrap();
                    a
                })
                .collect();
            let act_refs: Vec<&[u8]> = acts.iter().map(Vec::as_slice).collect();
            let sums: Vec<BlockSums> = acts.iter().map(|a| BlockSums::of_q8_0(a)).collect();
            let sum_refs: Vec<&BlockSums> = sums.iter().collect();
            for k in Kernel::available() {
                let mut outs = vec![vec![0f32; rows]; tokens];
                let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
                prop_assert!(q8_0_partner_rows_multi(
                    ty, &wq, row_bytes, &act_refs, &sum_refs, &mut out_refs, k
                ));
                for ((a, s), got) in acts.iter().zip(&sums).zip(&outs) {
                    let mut want = vec![0f32; rows];
                    q8_0_partner_rows(ty, &wq, row_bytes, a, s, &mut want, Kernel::Scalar);
                    prop_assert_eq!(bits(got), bits(&want), "{} {:?}", ty, k);
                }
            }
        }
        // F16, over whole steps of 64 and a tail.
        let cols = blocks * 32 + 7;
        let wh: Vec<u8> = w[..rows * cols]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let xs: Vec<Vec<f32>> = x
            .chunks_exact(cols)
            .take(tokens)
            .map(|c| c.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect())
            .collect();
        let x_refs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        for k in Kernel::available() {
            let mut outs = vec![vec![0f32; rows]; tokens];
            let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            f16_rows_multi(&wh, &x_refs, &mut out_refs, k);
            for (xt, got) in xs.iter().zip(&outs) {
                let mut want = vec![0f32; rows];
                f16_rows(&wh, xt, &mut want, Kernel::Scalar);
                prop_assert_eq!(bits(got), bits(&want), "F16 {:?}", k);
            }
        }
        // BF16 weights and bf16-valued activations (as the runner rounds them), odd lengths.
        let bf = |v: f32| half::bf16::from_f32(v);
        let cols = blocks * 32 + 7;
        let wb: Vec<u8> = w[..rows * cols].iter().flat_map(|&v| bf(v).to_le_bytes()).collect();
        let xs: Vec<Vec<f32>> = x
            .chunks_exact(cols)
            .take(tokens)
            .map(|c| c.iter().map(|&v| bf(v).to_f32()).collect())
            .collect();
        let x_refs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        for k in Kernel::available() {
            let mut outs = vec![vec![0f32; rows]; tokens];
            let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            if !bf16_rows_multi(&wb, &x_refs, &mut out_refs, k) {
                prop_assert!(k == Kernel::Scalar || !cfg!(target_arch = "x86_64"));
                continue;
            }
            for (xt, got) in xs.iter().zip(&outs) {
                let mut want = vec![0f32; rows];
                bf16_rows(&wb, xt, &mut want, Kernel::Scalar);
                for (g, w) in got.iter().zip(&want) {
                    prop_assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "BF16 {:?}: {} vs {}", k, g, w);
                }
            }
        }
        // NF4: arbitrary codes (from the weights' bits) and edge-value block scales.
        let cols = blocks * 64;
        let codes: Vec<u8> = w[..rows * cols / 2]
            .iter()
            .map(|v| (v.to_bits() ^ (v.to_bits() >> 13)) as u8)
            .collect();
        let am: Vec<u8> = w[rows * cols / 2..rows * cols / 2 + rows * blocks]
            .iter()
            .flat_map(|a| a.to_le_bytes())
            .collect();
        let x_refs: Vec<&[f32]> = x.chunks_exact(cols).take(tokens).collect();
        for k in Kernel::available() {
            let mut outs = vec![vec![0f32; rows]; tokens];
            let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            if !nf4_rows_multi(&codes, &am, &x_refs, &mut out_refs, k) {
                // Only where no batched NF4 kernel runs (scalar, and NEON so far).
                prop_assert!(k == Kernel::Scalar || !cfg!(target_arch = "x86_64"));
                continue;
            }
            for (xt, got) in x_refs.iter().zip(&outs) {
                let mut want = vec![0f32; rows];
                nf4_rows(&codes, &am, xt, &mut want, Kernel::Scalar);
                for (g, w) in got.iter().zip(&want) {
                    // NaN payloads aside (an infinite absmax times a zero code), bit for bit.
                    prop_assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "NF4 {:?}: {} vs {}", k, g, w);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn q4_k_and_q5_k_kernels_equal_the_reference(
        (rows, blocks) in (1usize..5, 1usize..4),
        seed in any::<u64>(),
        x in prop::collection::vec(edge_value(), 3 * 256),
    ) {
        // Arbitrary Q4_K blocks (every code, scale and minimum byte), finite f16 d and dmin.
        let mut state = seed | 1;
        let mut next = || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state };
        let cols = blocks * 256;
        let row_bytes = blocks * 144;
        let mut wq = vec![0u8; rows * row_bytes];
        for blk in wq.chunks_exact_mut(144) {
            for b in blk.iter_mut() { *b = next() as u8; }
            for at in [0, 2] {
                let d = half::f16::from_f32((next() % 2000) as f32 / 1000.0 - 1.0);
                blk[at..at + 2].copy_from_slice(&d.to_le_bytes());
            }
        }
        let mut act = vec![0u8; blocks * 292];
        ActQ8_K::quantize_row(&x[..cols], &mut act).unwrap();
        // Q5_K: the same kind of arbitrary blocks, 176 bytes each.
        let row5 = blocks * 176;
        let mut w5 = vec![0u8; rows * row5];
        for blk in w5.chunks_exact_mut(176) {
            for b in blk.iter_mut() { *b = next() as u8; }
            for at in [0, 2] {
                let d = half::f16::from_f32((next() % 2000) as f32 / 1000.0 - 1.0);
                blk[at..at + 2].copy_from_slice(&d.to_le_bytes());
            }
        }
        let mut plain5 = vec![0f32; rows];
        q5_k_rows(&w5, row5, &act, &mut plain5, Kernel::Scalar);
        for (r, got) in plain5.iter().enumerate() {
            let want = BlockQ5_K::vec_dot_blocks(&w5[r * row5..(r + 1) * row5], &act);
            prop_assert_eq!(got.to_bits(), want.to_bits());
        }
        for k in Kernel::available() {
            let mut fast = vec![0f32; rows];
            q5_k_rows(&w5, row5, &act, &mut fast, k);
            prop_assert_eq!(bits(&fast), bits(&plain5), "Q5_K {:?}", k);
        }
        let mut plain = vec![0f32; rows];
        q4_k_rows(&wq, row_bytes, &act, &mut plain, Kernel::Scalar);
        for (r, got) in plain.iter().enumerate() {
            let want = BlockQ4_K::vec_dot_blocks(&wq[r * row_bytes..(r + 1) * row_bytes], &act);
            prop_assert_eq!(got.to_bits(), want.to_bits());
        }
        for k in Kernel::available() {
            let mut fast = vec![0f32; rows];
            q4_k_rows(&wq, row_bytes, &act, &mut fast, k);
            prop_assert_eq!(bits(&fast), bits(&plain), "{:?}", k);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn tiled_f16_kernel_equals_the_reference(
        (quads, steps, tokens) in (1usize..5, 1usize..12, 1usize..=MAX_TOKENS),
        w in prop::collection::vec(edge_value(), 16 * 11 * 16),
        x in prop::collection::vec(edge_value(), MAX_TOKENS * 11 * 16),
    ) {
        let (rows, cols) = (4 * quads, 16 * steps);
        let wh: Vec<u8> = w[..rows * cols]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let xs: Vec<Vec<f32>> = x
            .chunks_exact(cols)
            .take(tokens)
            .map(|c| c.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect())
            .collect();
        let x_refs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        for k in Kernel::available() {
            let mut outs = vec![vec![0f32; rows]; tokens];
            let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            f16_rows_tiled(&wh, &x_refs, &mut out_refs, k);
            for (xt, got) in xs.iter().zip(&outs) {
                for (r, g) in got.iter().enumerate() {
                    let want = dot_f16_tiled(&wh[2 * cols * r..2 * cols * (r + 1)], xt);
                    prop_assert_eq!(g.to_bits(), want.to_bits(), "{:?} row {}", k, r);
                }
            }
        }
    }
}

#[test]
fn other_types_are_left_to_the_caller() {
    let mut out = [0f32; 1];
    let sums = BlockSums::of_q8_0(&[0; 34]);
    assert!(!q8_0_partner_rows(
        GgmlType::Q5_0,
        &[0; 22],
        22,
        &[0; 34],
        &sums,
        &mut out,
        Kernel::Scalar
    ));
    // Sums that do not cover the row.
    assert!(!q8_0_partner_rows(
        GgmlType::Q8_0,
        &[0; 68],
        68,
        &[0; 68],
        &sums,
        &mut out,
        Kernel::Scalar
    ));
}

#[test]
fn activation_rounds_half_to_even_like_ggml_cpu() {
    // amax 127 makes id exactly 1: 2.5 → 2, 3.5 → 4, -2.5 → -2 (the _ref quantizer gives 3, 4, -3).
    let mut x = vec![0f32; 32];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = 3.5;
    x[3] = -2.5;
    x[4] = f32::NAN;
    let mut q = [0u8; 34];
    ActQ8_0::quantize_row(&x, &mut q).unwrap();
    // NaN becomes -128, as cvtps2dq and packs make it.
    assert_eq!(&q[2..7], &[127, 2, 4, (-2i8) as u8, 0x80]);
}

#[test]
fn long_rows_agree() {
    // On x86-64 CI this must exercise a vector kernel (unless forced off).
    assert!(
        Kernel::available().len() > 1
            || !cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
            || std::env::var_os("GGUFY_FORCE_SCALAR").is_some(),
        "no vector kernel ran"
    );
    let (rows, cols) = (37, 4096);
    let mut state = 7u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
    };
    let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
    let x: Vec<f32> = (0..cols).map(|_| next()).collect();
    for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
        check_quantized(ty, rows, &w, &x).unwrap();
    }
}

/// `legacy_rows` (Q4_1, Q5_0, Q5_1) against each row's reference dot, on every kernel this CPU
/// runs: quantized rows, or arbitrary bytes with finite f16 scales and minima (a file need not
/// come from ggml's quantizer), against quantized activations or arbitrary codes (-128 too).
fn check_legacy(
    ty: GgmlType,
    rows: usize,
    w: &[f32],
    x: &[f32],
    seed: Option<u64>,
) -> Result<(), TestCaseError> {
    let cols = x.len();
    let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut wq = vec![0u8; rows * row_bytes];
    let mut s = seed.unwrap_or(0) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    if seed.is_some() {
        for blk in wq.chunks_exact_mut(row_bytes / (cols / 32)) {
            blk.iter_mut().for_each(|b| *b = next() as u8);
            for at in [0, 2] {
                let v = half::f16::from_f32((next() % 4000) as f32 / 50.0 - 40.0);
                blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
    } else {
        for (src, dst) in w.chunks_exact(cols).zip(wq.chunks_exact_mut(row_bytes)) {
            quantize_row(ty, src, dst, Rounding::Separate).unwrap();
        }
    }
    let (ab, q8_1) = if ty == GgmlType::Q5_0 {
        (34, false)
    } else {
        (36, true)
    };
    let mut act = vec![0u8; cols / 32 * ab];
    if q8_1 {
        ActQ8_1::quantize_row(x, &mut act).unwrap();
    } else {
        ActQ8_0::quantize_row(x, &mut act).unwrap();
    }
    if seed.is_some_and(|s| s % 2 == 0) {
        for blk in act.chunks_exact_mut(ab) {
            for c in &mut blk[ab - 32..] {
                let r = next();
                *c = if r % 7 == 0 { 0x80 } else { r as u8 };
            }
        }
    }
    let want: Vec<f32> = wq
        .chunks_exact(row_bytes)
        .map(|r| match ty {
            GgmlType::Q4_1 => BlockQ4_1::vec_dot_blocks(r, &act),
            GgmlType::Q5_0 => BlockQ5_0::vec_dot_blocks(r, &act),
            _ => BlockQ5_1::vec_dot_blocks(r, &act),
        })
        .collect();
    for k in Kernel::available() {
        let mut got = vec![0f32; rows];
        if legacy_rows(ty, &wq, row_bytes, &act, &mut got, k) {
            prop_assert_eq!(bits(&got), bits(&want), "{} {:?}", ty, k);
        } else {
            // Only where no vector kernel runs.
            prop_assert!(k == Kernel::Scalar, "{:?}", k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn legacy_kernels_equal_the_reference(
        (rows, w, x) in case(),
        seed in prop::option::of(any::<u64>()),
    ) {
        for ty in [GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1] {
            check_legacy(ty, rows, &w, &x, seed)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// BF16 rows against the reference on every kernel: tails shorter than eight, subnormal
    /// weights and activations (products that underflow, where a fused multiply-add would
    /// round differently) and infinities.
    #[test]
    fn bf16_kernel_equals_the_reference(
        (rows, cols) in (1usize..11, 1usize..80),
        w in prop::collection::vec(edge_value(), 10 * 80),
        x in prop::collection::vec(edge_value(), 80),
    ) {
        use ggufy_quant::fp::{bf16_to_f32, f32_to_bf16};
        let wb: Vec<u8> = w[..rows * cols]
            .iter()
            .flat_map(|&v| f32_to_bf16(v).to_le_bytes())
            .collect();
        let x: Vec<f32> = x[..cols].iter().map(|&v| bf16_to_f32(f32_to_bf16(v))).collect();
        let want: Vec<f32> = wb.chunks_exact(2 * cols).map(|r| dot_bf16(r, &x)).collect();
        for k in Kernel::available() {
            let mut got = vec![0f32; rows];
            bf16_rows(&wb, &x, &mut got, k);
            prop_assert_eq!(bits(&got), bits(&want), "{:?}", k);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// Q4_K and Q5_K rows against one to four Q8_K activations at once equal the reference
    /// per token: quantized activations, arbitrary weight bytes (every scale, minimum and high
    /// bit) with finite f16 factors.
    #[test]
    fn batched_k_quant_kernels_equal_the_reference(
        (rows, blocks, tokens) in (1usize..12, 1usize..3, 1usize..=MAX_TOKENS),
        // Plain values: an infinity turns a whole 256-value block's result into NaN, and one
        // huge value leaves a single nonzero code per block; either hides the rest (the edge
        // values are the one-token test's; this one is about the batching).
        x in prop::collection::vec(-4.0f32..4.0, MAX_TOKENS * 2 * 256),
        seed in any::<u64>(),
        q5 in any::<bool>(),
    ) {
        let (ty, block) = if q5 { (GgmlType::Q5_K, 176) } else { (GgmlType::Q4_K, 144) };
        let row_bytes = blocks * block;
        let mut s = seed | 1;
        let mut wq = vec![0u8; rows * row_bytes];
        for blk in wq.chunks_exact_mut(block) {
            for b in blk.iter_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *b = s as u8;
            }
            for at in [0, 2] {
                let v = half::f16::from_f32((s >> (8 * at)) as u16 as f32 / 1000.0 - 30.0);
                blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        let acts: Vec<Vec<u8>> = x
            .chunks_exact(blocks * 256)
            .take(tokens)
            .map(|xt| {
                let mut a = vec![0u8; blocks * 292];
                ActQ8_K::quantize_row(xt, &mut a).unwrap();
                a
            })
            .collect();
        let act_refs: Vec<&[u8]> = acts.iter().map(Vec::as_slice).collect();
        for k in Kernel::available() {
            let mut outs = vec![vec![0f32; rows]; tokens];
            let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
            if !k_quant_rows_multi(ty, &wq, row_bytes, &act_refs, &mut out_refs, k) {
                prop_assert!(k == Kernel::Scalar || !cfg!(target_arch = "x86_64"), "{:?}", k);
                continue;
            }
            for (a, got) in acts.iter().zip(&outs) {
                let want: Vec<f32> = wq
                    .chunks_exact(row_bytes)
                    .map(|r| if q5 {
                        BlockQ5_K::vec_dot_blocks(r, a)
                    } else {
                        BlockQ4_K::vec_dot_blocks(r, a)
                    })
                    .collect();
                prop_assert_eq!(bits(got), bits(&want), "{:?}", k);
            }
        }
    }
}
