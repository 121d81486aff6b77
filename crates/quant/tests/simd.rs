//! Every SIMD path must give exactly the scalar reference's bytes. Rows mix ordinary values with
//! the edges quantizers get wrong: zeros and signed zeros, exact rounding ties, one huge value,
//! subnormals, infinities, the f16 range limits. (NaN is excluded: the reference's `max` and the
//! vector `max` order NaNs differently, and a NaN weight has no meaningful quantization.)

use ggufy_gguf::GgmlType;
use ggufy_quant::simd::{Level, level};
use ggufy_quant::{Rounding, dequantize_row, quantize_row_at};
use proptest::prelude::*;

fn edge_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -4.0f32..4.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => (-20i32..20).prop_map(|i| i as f32 * 0.5),         // ties for roundf and truncation
        1 => (-300i32..300).prop_map(|i| i as f32 / 16.0),
        1 => prop_oneof![Just(65504.0f32), Just(-65504.0), Just(1e30), Just(-3e38)],
        1 => (1u32..0x0080_0000).prop_map(f32::from_bits),      // positive subnormals
        1 => (1u32..0x0080_0000).prop_map(|b| -f32::from_bits(b)),
        1 => prop_oneof![Just(f32::INFINITY), Just(f32::NEG_INFINITY)],
        1 => -1e-38f32..1e-38,
        // A NaN changes which element ggml's sequential max keeps; the GPU kernels found that
        // the vector reductions disagreed with the reference here.
        1 => prop_oneof![Just(f32::NAN), Just(-f32::NAN)],
    ]
}

fn row() -> impl Strategy<Value = Vec<f32>> {
    // Whole blocks; sometimes every element shares one tiny or huge scale.
    (
        1usize..5,
        prop_oneof![Just(1.0f32), Just(1e-40), Just(1e-20), Just(1e20)],
    )
        .prop_flat_map(|(blocks, scale)| {
            prop::collection::vec(edge_value(), blocks * 32)
                .prop_map(move |v| v.into_iter().map(|x| x * scale).collect())
        })
}

fn same_bytes(ty: GgmlType, x: &[f32], rounding: Rounding) -> Result<(), TestCaseError> {
    let n = ty.row_bytes(x.len() as u64).unwrap() as usize;
    let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
    quantize_row_at(Level::Scalar, ty, x, &mut a, rounding).unwrap();
    quantize_row_at(level(), ty, x, &mut b, rounding).unwrap();
    prop_assert_eq!(a, b, "{} {:?} on {:?}", ty, rounding, x);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn q8_0_simd_equals_scalar(x in row()) {
        same_bytes(GgmlType::Q8_0, &x, Rounding::Separate)?;
    }

    #[test]
    fn legacy_simd_equals_scalar(x in row()) {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1] {
            same_bytes(ty, &x, Rounding::Separate)?;
            same_bytes(ty, &x, Rounding::Fused)?;
        }
    }

    #[test]
    fn q6_k_simd_equals_scalar(x in row()) {
        // Q6_K needs 256-element rows: repeat the generated values up to the next multiple.
        let n = x.len().div_ceil(256) * 256;
        let x: Vec<f32> = x.iter().cycle().take(n).copied().collect();
        same_bytes(GgmlType::Q6_K, &x, Rounding::Separate)?;
    }

    #[test]
    fn f16_output_simd_equals_scalar(x in row(), nan_at in prop::option::of(0usize..32)) {
        // NaN here is fine: both paths must write ggml's canonical quiet NaN.
        let mut x = x;
        if let Some(i) = nan_at {
            x[i] = f32::from_bits(0x7FA0_0001);
        }
        same_bytes(GgmlType::F16, &x, Rounding::Separate)?;
    }

    #[test]
    fn f16_rows_convert_exactly(bits in prop::collection::vec(any::<u16>(), 0..67)) {
        let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        let mut y = vec![0.0f32; bits.len()];
        dequantize_row(GgmlType::F16, &bytes, &mut y).unwrap();
        for (h, v) in bits.iter().zip(&y) {
            let want = half::f16::from_bits(*h).to_f32();
            prop_assert!(want.to_bits() == v.to_bits() || (want.is_nan() && v.is_nan()), "{h:#06x}");
        }
    }
}

/// Finite values only: one infinity among 128 products makes the whole sum NaN or infinite
/// and hides the order of every other addition.
fn finite_value() -> impl Strategy<Value = f32> {
    edge_value().prop_filter("finite", |v| v.is_finite())
}

/// An f32 through f16 and back, as the `half` crate rounds (nearest, ties to even).
fn via_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

fn same_or_both_nan(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

proptest! {
    /// Flash attention's f16 accumulator steps: the vector paths round exactly as `half`.
    #[test]
    fn f16_accumulator_steps_round_as_half(
        acc in prop::collection::vec(edge_value(), 0..70),
        v in prop::collection::vec(edge_value(), 70),
        s in edge_value(),
    ) {
        let acc: Vec<f32> = acc.into_iter().map(via_f16).collect();
        let v: Vec<f32> = v[..acc.len()].iter().map(|&x| via_f16(x)).collect();
        let mut mad = acc.clone();
        let mut scaled = acc.clone();
        let vector = ggufy_quant::simd::mad_round_f16(&mut mad, &v, s, level());
        prop_assert_eq!(vector, ggufy_quant::simd::scale_round_f16(&mut scaled, s, level()));
        if vector {
            for i in 0..acc.len() {
                let want = via_f16(v[i].mul_add(s, acc[i]));
                prop_assert!(same_or_both_nan(mad[i], want), "mad {}: {} vs {}", i, mad[i], want);
                let want = via_f16(acc[i] * s);
                prop_assert!(same_or_both_nan(scaled[i], want), "scale {}: {} vs {}", i, scaled[i], want);
            }
        }
    }

    /// Scores of f16 values: the vector dot sums in ggml's 64-lane order.
    #[test]
    fn f16_value_dots_sum_in_ggmls_order(
        (steps, a, b) in (1usize..4).prop_flat_map(|n| (
            Just(n),
            prop::collection::vec(finite_value(), 64 * n),
            prop::collection::vec(finite_value(), 64 * n),
        )),
    ) {
        let a: Vec<f32> = a.into_iter().map(via_f16).collect();
        let b: Vec<f32> = b.into_iter().map(via_f16).collect();
        let mut acc = [0f32; 64];
        for (ac, bc) in a.chunks_exact(64).zip(b.chunks_exact(64)) {
            for ((s, x), y) in acc.iter_mut().zip(ac).zip(bc) {
                *s += x * y;
            }
        }
        let want = ggufy_quant::dot::reduce_f16_lanes(&acc);
        match ggufy_quant::simd::dot_f16_values(&a, &b, level()) {
            Some(got) => prop_assert!(same_or_both_nan(got, want), "{} steps: {} vs {}", steps, got, want),
            None => prop_assert!(level() != Level::Avx2 || !cfg!(target_arch = "x86_64")),
        }
        // Not a multiple of 64: no vector path.
        prop_assert!(ggufy_quant::simd::dot_f16_values(&a[1..], &b[1..], level()).is_none());
    }
}

#[test]
fn reports_the_level_in_use() {
    // Not an assertion about the CPU: makes the log say which paths the run above compared.
    eprintln!("SIMD level: {:?}", level());
}
