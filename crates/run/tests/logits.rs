//! The logits after a prompt against llama.cpp's (`fixtures/golden/run/logits.json`, made by
//! `fixtures/make_logits_goldens.py` with `fixtures/llama_logits_ref.c`, llama.cpp's plain CPU
//! kernels) on every fixture architecture at F16, Q8_0 and Q4_0: the prompt's first token alone,
//! and the whole prompt in one batch.
//!
//! ggufy follows llama.cpp's arithmetic operation for operation — activations quantized as
//! ggml-cpu does, exact block sums accumulated with one FMA, F16 products in ggml's lane orders
//! (tinyBLAS's for batches), flash attention's online softmax with its f16 V accumulator — so
//! what is left is libm's exp/sin/cos and the odd reordering: the logits must agree to 10⁻⁵ of
//! their scale (measured: about 2·10⁻⁷). The prompt's token ids must be identical, and the
//! logits with packed weights (`Model::pack`) identical to the file layout's.

mod common;

use common::{convert, fixtures};
use ggufy_gguf::Gguf;
use ggufy_quant::matvec::Kernel;
use ggufy_quant::simd;
use ggufy_run::{Model, Session};
use ggufy_tokenizer::Tokenizer;

#[test]
fn logits_match_llama_cpp() {
    let text = std::fs::read_to_string(fixtures().join("golden/run/logits.json")).unwrap();
    let goldens: serde_json::Value = serde_json::from_str(&text).unwrap();
    let goldens = goldens.as_array().unwrap();
    assert!(goldens.len() >= 18);
    let tmp = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for g in goldens {
        let ckpt = g["checkpoint"].as_str().unwrap();
        let ty = g["type"].as_str().unwrap();
        let path = convert(
            &fixtures().join("hf").join(ckpt),
            ty,
            g["vocab_pre"].as_str(),
            tmp.path(),
        );
        let file = Gguf::open(&path).unwrap();
        let tok = Tokenizer::from_gguf(&file).unwrap();
        let tokens = tok.tokenize(g["prompt"].as_str().unwrap(), true, true);
        let want_tokens: Vec<u32> = g["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        // The one-token goldens keep the prompt's first token.
        assert!(
            tokens.starts_with(&want_tokens)
                && (want_tokens.len() == 1 || tokens.len() == want_tokens.len()),
            "{ckpt} {ty}: prompt tokens {tokens:?} vs llama.cpp's {want_tokens:?}"
        );
        let tokens = want_tokens;
        let model = Model::load(&file).unwrap();
        let mut s = Session::new(&model, 64);
        let got = s.eval(&tokens).unwrap();
        let want: Vec<f32> = g["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), want.len(), "{ckpt} {ty}: vocabulary size");
        // The regrouped weights (on x86-64 CPUs with AVX2) give the same bits.
        let mut packed = Model::load(&file).unwrap();
        let copied = packed.pack(&|_| {});
        let vnni = Kernel::best(simd::level()) == Kernel::Avx512Vnni;
        // Where the packed kernels run, every F16/Q8_0/Q4_0/K-quant matrix is packed (all but
        // rows past a multiple of 16).
        assert!(
            !vnni || copied * 10 >= packed.weight_bytes() * 9,
            "{ckpt} {ty}: only {copied} of {} weight bytes packed",
            packed.weight_bytes()
        );
        let again = Session::new(&packed, 64).eval(&tokens).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&again), bits(&got), "{ckpt} {ty}: packed weights");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let n = tokens.len();
        let bound = 1e-5;
        report.push(format!(
            "{ckpt} {ty} ({n} tokens): {:.2e} of scale",
            worst / scale
        ));
        assert!(
            worst <= bound * scale,
            "{ckpt} {ty} ({n} tokens): logits differ by {worst} (scale {scale})"
        );
    }
    eprintln!("{}", report.join("\n"));
}
