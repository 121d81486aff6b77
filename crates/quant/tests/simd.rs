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

#[test]
fn reports_the_level_in_use() {
    // Not an assertion about the CPU: makes the log say which paths the run above compared.
    eprintln!("SIMD level: {:?}", level());
}
