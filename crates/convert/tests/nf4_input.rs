//! bitsandbytes NF4 checkpoints as input (llama.cpp's converter refuses them): the dequantized
//! weights must equal bitsandbytes' own dequantization, recorded by fixtures/make_checkpoints.py in
//! fixtures/golden/convert/tiny-llama-nf4.dequant.json (f32 values and their bf16 rounding), for
//! every output type, and NF4 output must keep bitsandbytes' codes rather than requantize.

use std::path::{Path, PathBuf};

use ggufy_convert::{ConvertOptions, Converter, OutType};
use ggufy_gguf::{GgmlType, Gguf, GgufFile};
use ggufy_plan::{ExecOptions, execute};
use ggufy_quant::{Rounding, nf4::dequantize_nf4, quantize_row};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn f32_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn golden() -> Json {
    let p = root().join("fixtures/golden/convert/tiny-llama-nf4.dequant.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The golden entry for one checkpoint tensor.
fn entry<'a>(g: &'a Json, hf_name: &str) -> &'a Json {
    g["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == hf_name)
        .unwrap()
}

fn convert(outtype: &str) -> (tempfile::TempDir, PathBuf) {
    let opts = ConvertOptions {
        outtype: OutType::parse(outtype).unwrap(),
        ..ConvertOptions::default()
    };
    let conv = Converter::open(root().join("fixtures/hf/tiny-llama-nf4"), &opts).unwrap();
    let (plan, _) = conv.plan().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (out, _) = execute(
        &plan,
        &tmp.path().join("out.gguf"),
        &ExecOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    (tmp, out)
}

/// Undoes llama.cpp's Q/K row permutation (rows grouped per head as (2, d/2) → (d/2, 2)) so a
/// converted `attn_k` can be compared with the checkpoint's row order.
fn unpermute_rows(v: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = v.len() / cols;
    let d = rows / heads;
    let mut out = vec![0.0; v.len()];
    for h in 0..heads {
        for j in 0..d / 2 {
            for t in 0..2 {
                let dst = h * d + j * 2 + t; // row in the converted file
                let src = h * d + t * (d / 2) + j; // row in the checkpoint
                out[src * cols..][..cols].copy_from_slice(&v[dst * cols..][..cols]);
            }
        }
    }
    out
}

fn tensor_f32(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensors().iter().find(|t| t.name == name).unwrap();
    assert_eq!(t.ty, GgmlType::F32, "{name}");
    f.tensor_data(t)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn tensor_bytes<'a>(f: &'a GgufFile, name: &str) -> (&'a [u8], GgmlType) {
    let t = f.tensors().iter().find(|t| t.name == name).unwrap();
    (f.tensor_data(t).unwrap(), t.ty)
}

/// The two golden tensors in checkpoint row order, dequantized from the f32 conversion.
fn dequantized_f32() -> (Vec<f32>, Vec<f32>) {
    let (_tmp, out) = convert("f32");
    let f = Gguf::open(&out).unwrap();
    let down = tensor_f32(&f, "blk.1.ffn_down.weight");
    // tiny-llama: 2 KV heads, k_proj is [64, 128].
    let k = unpermute_rows(&tensor_f32(&f, "blk.0.attn_k.weight"), 2, 128);
    (down, k)
}

#[test]
fn f32_output_is_bitsandbytes_dequantization() {
    let g = golden();
    let (down, k) = dequantized_f32();
    for (hf, v) in [
        ("model.layers.1.mlp.down_proj.weight", &down),
        ("model.layers.0.self_attn.k_proj.weight", &k),
    ] {
        let e = entry(&g, hf);
        let head: Vec<f32> = e["head"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(&v[..8], &head[..], "{hf}: first values");
        assert_eq!(hex(Sha256::digest(f32_le(v))), e["sha256"], "{hf}");
    }
}

#[test]
fn bf16_and_auto_outputs_round_the_dequantization() {
    let g = golden();
    let want = &entry(&g, "model.layers.1.mlp.down_proj.weight")["bf16_sha256"];
    for outtype in ["bf16", "auto"] {
        let (_tmp, out) = convert(outtype);
        let f = Gguf::open(&out).unwrap();
        let (data, ty) = tensor_bytes(&f, "blk.1.ffn_down.weight");
        assert_eq!(ty, GgmlType::BF16, "{outtype}");
        assert_eq!(&hex(Sha256::digest(data)), want, "{outtype}");
    }
}

#[test]
fn quantized_outputs_quantize_the_dequantization() {
    let (down, _) = dequantized_f32();
    for (outtype, ty) in [("q8_0", GgmlType::Q8_0), ("f16", GgmlType::F16)] {
        let (_tmp, out) = convert(outtype);
        let f = Gguf::open(&out).unwrap();
        let (data, got_ty) = tensor_bytes(&f, "blk.1.ffn_down.weight");
        assert_eq!(got_ty, ty, "{outtype}");
        let mut want = vec![0u8; data.len()];
        let row = down.len() / 128;
        let row_bytes = want.len() / 128;
        for (src, dst) in down.chunks_exact(row).zip(want.chunks_exact_mut(row_bytes)) {
            quantize_row(ty, src, dst, Rounding::Separate).unwrap();
        }
        assert_eq!(data, &want[..], "{outtype}");
    }
}

#[test]
fn nf4_output_keeps_the_checkpoint_codes() {
    let g = golden();
    let (_tmp, out) = convert("nf4");
    let f = Gguf::open(&out).unwrap();
    let (codes, ty) = tensor_bytes(&f, "blk.1.ffn_down.weight");
    assert_eq!(ty, GgmlType::I8);
    let absmax: Vec<f32> = tensor_f32(&f, "blk.1.ffn_down.weight.absmax");
    let mut v = vec![0.0; codes.len() * 2];
    dequantize_nf4(codes, &absmax, &mut v);
    let e = entry(&g, "model.layers.1.mlp.down_proj.weight");
    assert_eq!(hex(Sha256::digest(f32_le(&v))), e["sha256"]);

    // The checkpoint's own packed codes, byte for byte (down_proj is not permuted).
    let ckpt =
        ggufy_convert::checkpoint::Checkpoint::open(root().join("fixtures/hf/tiny-llama-nf4"))
            .unwrap();
    let src = ckpt.data(ckpt.tensor("model.layers.1.mlp.down_proj.weight").unwrap());
    assert_eq!(codes, src);
}
