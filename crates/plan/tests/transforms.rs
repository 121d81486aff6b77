//! Value transforms of the executor against direct implementations of what the converters do:
//! llama.cpp's `permute` (reshape to [heads, 2, hd/2, cols], swap axes 1 and 2) and Gemma's +1.

use ggufy_gguf::{GgmlType, Gguf};
use ggufy_plan::{ExecOptions, PlannedTensor, Source, Target, TensorPlan, Transform, execute};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// numpy's `w.reshape(heads, 2, rows/heads/2, cols).swapaxes(1, 2).reshape(rows, cols)`.
fn reference_permute(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let half = rows / heads / 2;
    let mut out = vec![0.0; rows * cols];
    // Output index [h, i, s] (after the swap) reads input [h, s, i].
    for h in 0..heads {
        for i in 0..half {
            for s in 0..2 {
                let dst = (h * half * 2 + i * 2 + s) * cols;
                let src = (h * 2 * half + s * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

fn run(dims: Vec<u64>, src: &[f32], ty: GgmlType, transform: Transform) -> Vec<f32> {
    let bytes = f32_bytes(src);
    let plan = TensorPlan {
        metadata: vec![],
        tensors: vec![PlannedTensor {
            name: "t".into(),
            dims,
            source: Source::Ggml {
                ty: GgmlType::F32,
                bytes: &bytes,
            },
            out: Target::Ggml(ty),
            transform,
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = execute(
        &plan,
        &dir.path().join("o.gguf"),
        &ExecOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let f = Gguf::open(path).unwrap();
    let t = f.tensor("t").unwrap();
    let data = f.tensor_data(t).unwrap();
    let mut out = vec![0.0f32; t.n_elements as usize];
    ggufy_quant::dequantize_row(t.ty, data, &mut out).unwrap();
    out
}

#[test]
fn permute_matches_the_reshape_swapaxes_reference() {
    for (rows, cols, heads) in [
        (64usize, 32usize, 4usize),
        (32, 64, 2),
        (128, 32, 8),
        (16, 32, 1),
    ] {
        let w: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.25 - 7.0).collect();
        let got = run(
            vec![cols as u64, rows as u64],
            &w,
            GgmlType::F32,
            Transform::PermuteHeads {
                heads: heads as u64,
            },
        );
        assert_eq!(
            got,
            reference_permute(&w, rows, cols, heads),
            "{rows}x{cols}/{heads}"
        );
        // A bias (1-D) is permuted element-wise the same way.
        let b: Vec<f32> = (0..rows).map(|i| i as f32).collect();
        let got = run(
            vec![rows as u64],
            &b,
            GgmlType::F32,
            Transform::PermuteHeads {
                heads: heads as u64,
            },
        );
        assert_eq!(got, reference_permute(&b, rows, 1, heads));
    }
}

#[test]
fn permute_rejects_shapes_that_do_not_split() {
    let w = vec![0.0f32; 6 * 32];
    let bytes = f32_bytes(&w);
    let plan = TensorPlan {
        metadata: vec![],
        tensors: vec![PlannedTensor {
            name: "t".into(),
            dims: vec![32, 6],
            source: Source::Ggml {
                ty: GgmlType::F32,
                bytes: &bytes,
            },
            out: Target::Ggml(GgmlType::F16),
            transform: Transform::PermuteHeads { heads: 4 },
        }],
    };
    let e = plan.validate().unwrap_err().to_string();
    assert!(e.contains("'t'") && e.contains("heads"), "{e}");
}

#[test]
fn add_one_is_exact_in_f32_and_rounded_for_f16_sources() {
    let v = [0.0f32, -1.0, 0.5, 1e-8, -2.5];
    let got = run(vec![5], &v, GgmlType::F32, Transform::AddOne);
    assert_eq!(got, vec![1.0, 0.0, 1.5, 1.0 + 1e-8, -1.5]);

    // torch adds in f16 for an f16 tensor: 1 + 2^-11 is a tie and rounds to even (1.0); 1 + 3·2^-11
    // rounds up to 1 + 2^-9.
    let h: Vec<u8> = [2f32.powi(-11), 3.0 * 2f32.powi(-11)]
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    let plan = TensorPlan {
        metadata: vec![],
        tensors: vec![PlannedTensor {
            name: "t".into(),
            dims: vec![2],
            source: Source::Ggml {
                ty: GgmlType::F16,
                bytes: &h,
            },
            out: Target::Ggml(GgmlType::F32),
            transform: Transform::AddOne,
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = execute(
        &plan,
        &dir.path().join("o.gguf"),
        &ExecOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let f = Gguf::open(path).unwrap();
    let data = f.tensor_data(f.tensor("t").unwrap()).unwrap();
    let got: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(got, vec![1.0, 1.0 + 2f32.powi(-9)]);
}
