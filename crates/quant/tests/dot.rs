//! The activation quantizers against ggml's CPU backend (`fixtures/quant/ggml/act_Q8_0.bin`,
//! `act_Q8_1.bin`, `Q8_K.bin`), and every dot product against an f64 dot of the same dequantized rows.

mod common;

use common::{fixtures, rows};
use ggufy_gguf::GgmlType;
use ggufy_quant::dot::{
    ActQ8_0, ActQ8_1, ActQ8_K, ActivationFormat, BlockFormat, BlockQ4_0, BlockQ4_1, BlockQ4_K,
    BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
};
use ggufy_quant::{Rounding, dequantize_row};
use proptest::prelude::*;

#[test]
fn activation_quantizers_match_ggml() {
    let x = rows();
    let check = |name: &str,
                 quantize: fn(&[f32], &mut [u8]) -> Result<(), ggufy_quant::QuantError>,
                 ty: GgmlType| {
        let want = std::fs::read(fixtures().join(format!("quant/ggml/{name}.bin"))).unwrap();
        let mut got = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
        quantize(&x, &mut got).unwrap();
        if ty == GgmlType::Q8_K {
            // For an all-zero block ggml clears d and the codes but leaves bsums uninitialized.
            for (g, w) in got.chunks_exact_mut(292).zip(want.chunks_exact(292)) {
                if g[..4] == [0; 4] {
                    g[260..].copy_from_slice(&w[260..]);
                }
            }
        }
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first, None, "{name} differs from ggml at byte {first:?}");
    };
    // Q8_0 and Q8_1 as ggml-cpu's x86 from_float makes them (what llama.cpp runs); Q8_K's
    // from_float is the reference function.
    check("act_Q8_0", ActQ8_0::quantize_row, GgmlType::Q8_0);
    check("act_Q8_1", ActQ8_1::quantize_row, GgmlType::Q8_1);
    check("Q8_K", ActQ8_K::quantize_row, GgmlType::Q8_K);
}

/// Values of an activation row, decoded from its bytes (Q8_1/Q8_K have no storage dequantizer).
fn activation_values(ty: GgmlType, a: &[u8], n: usize) -> Vec<f32> {
    match ty {
        GgmlType::Q8_1 => a
            .chunks_exact(36)
            .flat_map(|b| {
                let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                b[4..].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        GgmlType::Q8_K => a
            .chunks_exact(292)
            .flat_map(|b| {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                b[4..260].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        _ => {
            let mut y = vec![0.0; n];
            dequantize_row(ty, a, &mut y).unwrap();
            y
        }
    }
}

fn dot_is_close<F: BlockFormat>(w_x: &[f32], a_x: &[f32]) -> Result<(), TestCaseError> {
    let n = w_x.len();
    let mut w = vec![0u8; F::TYPE.row_bytes(n as u64).unwrap() as usize];
    F::quantize_row(w_x, &mut w, Rounding::Separate).unwrap();
    let mut a = vec![0u8; F::Activation::TYPE.row_bytes(n as u64).unwrap() as usize];
    F::Activation::quantize_row(a_x, &mut a).unwrap();
    let mut wv = vec![0.0f32; n];
    F::dequantize_row(&w, &mut wv).unwrap();
    let av = activation_values(F::Activation::TYPE, &a, n);
    let (mut exact, scale): (f64, f64) = wv
        .iter()
        .zip(&av)
        .map(|(p, q)| {
            (
                f64::from(*p) * f64::from(*q),
                (f64::from(*p) * f64::from(*q)).abs(),
            )
        })
        .fold((0.0, 0.0), |(s, m), (t, a)| (s + t, m + a));
    if F::Activation::TYPE == GgmlType::Q8_1 {
        // ggml's Q8_1 stores s = d·Σq rounded to f16 and the dot uses m·s for the minimum's
        // share: the reference follows that definition.
        let wb = F::TYPE.type_size() as usize;
        for (b, (wblk, ablk)) in w.chunks_exact(wb).zip(a.chunks_exact(36)).enumerate() {
            let m = f64::from(half::f16::from_le_bytes([wblk[2], wblk[3]]).to_f32());
            let s = f64::from(half::f16::from_le_bytes([ablk[2], ablk[3]]).to_f32());
            let sum_a: f64 = av[32 * b..32 * b + 32].iter().map(|&v| f64::from(v)).sum();
            exact += m * (s - sum_a);
        }
    }
    let got = F::vec_dot(n, &w, &a).unwrap();
    let tol = 1e-5 * scale + 1e-30;
    prop_assert!(
        (f64::from(got) - exact).abs() <= tol,
        "{}: {got} vs {exact} (tol {tol})",
        F::TYPE
    );
    Ok(())
}

/// ggml's own CPU `vec_dot` on ggml's reference-quantized rows (weight row i against activation
/// row i+1; `fixtures/ggml_quant_ref.c`). ggml's vector code sums in another order, so the match
/// is to 1e-5 of the summed magnitudes. Where a block scale overflowed, ggml's vector code yields
/// NaN (infinite scale times a zero partial sum) where the generic order yields ±inf: both sides
/// must then be non-finite.
fn matches_ggml_dots<F: BlockFormat>() {
    let read = |name: &str| std::fs::read(fixtures().join(format!("quant/ggml/{name}"))).unwrap();
    let w = read(&format!("{}.bin", F::TYPE.name()));
    let a = read(&format!("{}.bin", F::Activation::TYPE.name()));
    let want: Vec<f32> = read(&format!("dot_{}.f32", F::TYPE.name()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let (wrow, arow) = (
        F::TYPE.row_bytes(256).unwrap() as usize,
        F::Activation::TYPE.row_bytes(256).unwrap() as usize,
    );
    let rows = want.len();
    assert_eq!(rows, w.len() / wrow);
    for (r, &theirs) in want.iter().enumerate() {
        let wr = &w[r * wrow..(r + 1) * wrow];
        let ar = &a[(r + 1) % rows * arow..((r + 1) % rows + 1) * arow];
        let ours = F::vec_dot(256, wr, ar).unwrap();
        let ctx = format!("{} row {r}: ours {ours}, ggml {theirs}", F::TYPE);
        if !theirs.is_finite() || !ours.is_finite() {
            assert!(!theirs.is_finite() && !ours.is_finite(), "{ctx}");
            continue;
        }
        let mut wv = vec![0.0f32; 256];
        F::dequantize_row(wr, &mut wv).unwrap();
        let av = activation_values(F::Activation::TYPE, ar, 256);
        let scale: f64 = wv
            .iter()
            .zip(&av)
            .map(|(p, q)| (f64::from(*p) * f64::from(*q)).abs())
            .sum();
        let tol = 1e-5 * scale + 1e-5 * f64::from(theirs.abs()) + 1e-30;
        assert!(
            (f64::from(ours) - f64::from(theirs)).abs() <= tol,
            "{ctx} (tolerance {tol})"
        );
    }
}

#[test]
fn dots_match_ggml_vec_dot() {
    matches_ggml_dots::<BlockQ8_0>();
    matches_ggml_dots::<BlockQ4_0>();
    matches_ggml_dots::<BlockQ4_1>();
    matches_ggml_dots::<BlockQ5_0>();
    matches_ggml_dots::<BlockQ5_1>();
    matches_ggml_dots::<BlockQ6_K>();
    matches_ggml_dots::<BlockQ4_K>();
    matches_ggml_dots::<BlockQ5_K>();
}

fn finite_row(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-4.0f32..4.0, n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn dots_match_f64_reference(w in finite_row(512), a in finite_row(512)) {
        dot_is_close::<BlockQ8_0>(&w, &a)?;
        dot_is_close::<BlockQ4_0>(&w, &a)?;
        dot_is_close::<BlockQ4_1>(&w, &a)?;
        dot_is_close::<BlockQ5_0>(&w, &a)?;
        dot_is_close::<BlockQ5_1>(&w, &a)?;
        dot_is_close::<BlockQ6_K>(&w, &a)?;
    }
}

#[test]
fn dots_check_lengths() {
    let e = BlockQ4_0::vec_dot(64, &[0u8; 36], &[0u8; 34]).unwrap_err();
    assert!(e.to_string().contains("Q8_0"), "{e}");
}
