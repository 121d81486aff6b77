//! `ggufy-quant`: ggml's block formats without I/O. Reference quantizers reproduce ggml's
//! `quantize_row_*_ref` byte for byte (what llama-quantize runs without an imatrix); dequantizers
//! follow ggml's arithmetic order so their f32 output is bit-identical too.
//!
//! Quantize: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q6_K.
//! Dequantize: those plus Q2_K, Q3_K, Q4_K, Q5_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4, I8–I32, F64.
//! Not yet dequantized: the grid codebook types (IQ1_S, IQ1_M, IQ2_*, IQ3_*), NVFP4, Q1_0, Q2_0.
//!
//! ```
//! use ggufy_gguf::GgmlType;
//! use ggufy_quant::{Rounding, dequantize_row, quantize_row};
//!
//! let x: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 8.0).collect();
//! let mut q = vec![0u8; 2 * 34]; // two Q8_0 blocks
//! quantize_row(GgmlType::Q8_0, &x, &mut q, Rounding::default()).unwrap();
//! let mut y = vec![0.0f32; 64];
//! dequantize_row(GgmlType::Q8_0, &q, &mut y).unwrap();
//! // Q8_0's error is at most half a step of amax/127 per element (plus f16 scale rounding).
//! assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 3.94 / 127.0));
//! ```

pub mod dot;
pub mod fp;
pub mod kquants;
pub mod legacy;
pub mod matvec;
pub mod nf4;
pub mod packed;
pub mod simd;

use ggufy_gguf::GgmlType;

/// How `x * id + bias` is rounded in the Q4_0/Q4_1/Q5_0/Q5_1 reference quantizers.
///
/// ggml writes it as two float operations; whether the C compiler fuses them into one FMA
/// depends on the build. x86-64 llama.cpp builds (whose reference quantizers live in ggml-base,
/// compiled without FMA) and gguf-py's `quants.py` round twice: that is the default. AArch64
/// builds fuse (FMA is baseline there and GCC contracts by default): choose [`Rounding::Fused`]
/// to reproduce those files. The two differ in rare blocks only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rounding {
    /// Round the product, then the sum (x86-64 llama.cpp, gguf-py).
    #[default]
    Separate,
    /// One rounding of the fused multiply-add (AArch64 llama.cpp builds).
    Fused,
}

/// Why a row cannot be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    /// ggufy cannot produce this type.
    #[error("quantizing to {0} is not supported (supported: {supported})", supported = QUANTIZE_TARGETS.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "))]
    CannotQuantize(GgmlType),
    /// ggufy cannot decode this type yet.
    #[error("dequantizing {0} is not supported yet")]
    CannotDequantize(GgmlType),
    /// The row is not a whole number of blocks, or the buffers do not match it.
    #[error("{ty}: {n} elements do not fill whole {block}-element blocks into {bytes} bytes")]
    BadLength {
        /// Target or source type.
        ty: GgmlType,
        /// Elements in the row.
        n: usize,
        /// The type's block size.
        block: u64,
        /// Bytes supplied.
        bytes: usize,
    },
    /// A device that quantizes on the CPU's behalf (a GPU) failed.
    #[error("quantizing on the device failed: {0}")]
    Offload(String),
}

/// Types [`quantize_row`] can produce.
pub const QUANTIZE_TARGETS: [GgmlType; 9] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q6_K,
];

/// Whether [`dequantize_row`] can decode `ty`.
pub fn can_dequantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | F64
            | I8
            | I16
            | I32
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | IQ4_NL
            | IQ4_XS
            | TQ1_0
            | TQ2_0
            | MXFP4
    )
}

/// `Ok` when `bytes` is exactly the size of a row of `n` elements of `ty`.
pub(crate) fn check(ty: GgmlType, n: usize, bytes: usize) -> Result<(), QuantError> {
    let ok = ty.row_bytes(n as u64).is_some_and(|b| b == bytes as u64);
    if ok {
        Ok(())
    } else {
        Err(QuantError::BadLength {
            ty,
            n,
            block: ty.block_size(),
            bytes,
        })
    }
}

/// Quantizes one row (any whole number of blocks) of `src` into `dst`, which must be exactly the
/// row's size in `ty`. Uses the fastest path this CPU has; every path gives the same bytes.
pub fn quantize_row(
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
    rounding: Rounding,
) -> Result<(), QuantError> {
    quantize_row_at(simd::level(), ty, src, dst, rounding)
}

/// [`quantize_row`] at a chosen [`simd::Level`] (which must not exceed [`simd::level`]): lets
/// tests compare each vector path with the scalar reference.
pub fn quantize_row_at(
    level: simd::Level,
    ty: GgmlType,
    src: &[f32],
    dst: &mut [u8],
    rounding: Rounding,
) -> Result<(), QuantError> {
    if !QUANTIZE_TARGETS.contains(&ty) {
        return Err(QuantError::CannotQuantize(ty));
    }
    check(ty, src.len(), dst.len())?;
    let level = if level == simd::level() {
        level
    } else {
        simd::Level::Scalar
    };
    let done = match ty {
        GgmlType::F16 => {
            simd::f32_row_to_f16(src, dst, level);
            true
        }
        GgmlType::Q8_0 => simd::quantize_q8_0(src, dst, level),
        GgmlType::Q4_0 => simd::quantize_legacy(simd::Legacy::Q4_0, src, dst, rounding, level),
        GgmlType::Q4_1 => simd::quantize_legacy(simd::Legacy::Q4_1, src, dst, rounding, level),
        GgmlType::Q5_0 => simd::quantize_legacy(simd::Legacy::Q5_0, src, dst, rounding, level),
        GgmlType::Q5_1 => simd::quantize_legacy(simd::Legacy::Q5_1, src, dst, rounding, level),
        _ => false,
    };
    if done {
        return Ok(());
    }
    let bs = ty.block_size() as usize;
    let ts = ty.type_size() as usize;
    let blocks = src.chunks_exact(bs).zip(dst.chunks_exact_mut(ts));
    match ty {
        GgmlType::F32 => blocks.for_each(|(x, o)| o.copy_from_slice(&x[0].to_le_bytes())),
        GgmlType::BF16 => {
            blocks.for_each(|(x, o)| o.copy_from_slice(&fp::f32_to_bf16(x[0]).to_le_bytes()))
        }
        GgmlType::Q4_0 => blocks.for_each(|(x, o)| legacy::quantize_block_q4_0(x, o, rounding)),
        GgmlType::Q4_1 => blocks.for_each(|(x, o)| legacy::quantize_block_q4_1(x, o, rounding)),
        GgmlType::Q5_0 => blocks.for_each(|(x, o)| legacy::quantize_block_q5_0(x, o, rounding)),
        GgmlType::Q5_1 => blocks.for_each(|(x, o)| legacy::quantize_block_q5_1(x, o, rounding)),
        GgmlType::Q8_0 => blocks.for_each(|(x, o)| legacy::quantize_block_q8_0(x, o)),
        GgmlType::Q6_K => blocks.for_each(|(x, o)| kquants::quantize_block_q6_k(x, o, level)),
        _ => return Err(QuantError::CannotQuantize(ty)),
    }
    Ok(())
}

/// Decodes one row of `ty` from `src` into `dst` (whose length is the row's element count).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    if !can_dequantize(ty) {
        return Err(QuantError::CannotDequantize(ty));
    }
    check(ty, dst.len(), src.len())?;
    // Element-wise types convert whole rows at once (a call per element would dominate).
    match ty {
        GgmlType::F16 => {
            simd::f16_row_to_f32(src, dst, simd::level());
            return Ok(());
        }
        GgmlType::BF16 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = fp::bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
            return Ok(());
        }
        GgmlType::F32 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            return Ok(());
        }
        _ => {}
    }
    let bs = ty.block_size() as usize;
    let ts = ty.type_size() as usize;
    let blocks = src.chunks_exact(ts).zip(dst.chunks_exact_mut(bs));
    let f: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F64 => {
            |b, y| y[0] = f64::from_le_bytes(b[..8].try_into().unwrap_or_default()) as f32
        }
        GgmlType::I8 => |b, y| y[0] = b[0] as i8 as f32,
        GgmlType::I16 => |b, y| y[0] = fp::le16(b, 0) as i16 as f32,
        GgmlType::I32 => |b, y| y[0] = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
        GgmlType::Q4_0 => legacy::dequantize_block_q4_0,
        GgmlType::Q4_1 => legacy::dequantize_block_q4_1,
        GgmlType::Q5_0 => legacy::dequantize_block_q5_0,
        GgmlType::Q5_1 => legacy::dequantize_block_q5_1,
        GgmlType::Q8_0 => legacy::dequantize_block_q8_0,
        GgmlType::Q2_K => kquants::dequantize_block_q2_k,
        GgmlType::Q3_K => kquants::dequantize_block_q3_k,
        GgmlType::Q4_K => kquants::dequantize_block_q4_k,
        GgmlType::Q5_K => kquants::dequantize_block_q5_k,
        GgmlType::Q6_K => kquants::dequantize_block_q6_k,
        GgmlType::IQ4_NL => kquants::dequantize_block_iq4_nl,
        GgmlType::IQ4_XS => kquants::dequantize_block_iq4_xs,
        GgmlType::TQ1_0 => kquants::dequantize_block_tq1_0,
        GgmlType::TQ2_0 => kquants::dequantize_block_tq2_0,
        GgmlType::MXFP4 => kquants::dequantize_block_mxfp4,
        _ => return Err(QuantError::CannotDequantize(ty)),
    };
    blocks.for_each(|(b, y)| f(b, y));
    Ok(())
}
