//! Batched evaluation against token-by-token evaluation at every fixture architecture and
//! weight type. For quantized weights the batch only changes how often each weight is read, so
//! the logits are identical; F16 batches follow llama.cpp's batched (tinyBLAS) summation order,
//! which differs from its one-token order in rounding only.

mod common;

use common::{convert, fixtures};
use ggufy_gguf::Gguf;
use ggufy_run::{Model, Session};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn batched_and_stepwise_evaluation_agree() {
    let root = fixtures().join("hf");
    let tmp = tempfile::tempdir().unwrap();
    let tokens: Vec<u32> = (0..70u32).map(|i| 1 + (i * 37) % 250).collect();
    for arch in ["tiny-llama", "tiny-qwen2", "tiny-phi3", "tiny-gemma"] {
        for t in ["f16", "q8_0", "q4_0"] {
            // The fixture's BPE tokenizer is too small for llama.cpp's check text to identify it.
            let pre = (arch == "tiny-qwen2").then_some("qwen2");
            let path = convert(&root.join(arch), t, pre, tmp.path());
            let file = Gguf::open(&path).unwrap();
            let model = Model::load(&file).unwrap();
            let n_vocab = model.hp.n_vocab;
            // 70 tokens: more than one batch, so the second batch reads the first's cache.
            let mut batched = Session::new(&model, 128);
            let all = batched.eval_all(&tokens).unwrap();
            let mut stepwise = Session::new(&model, 128);
            for (i, &tok) in tokens.iter().enumerate() {
                let logits = stepwise.step(tok).unwrap();
                let batch = &all[i * n_vocab..(i + 1) * n_vocab];
                if t == "f16" {
                    let worst = logits
                        .iter()
                        .zip(batch)
                        .map(|(a, b)| (a - b).abs() / (1.0 + a.abs()))
                        .fold(0f32, f32::max);
                    assert!(worst < 1e-3, "{arch} {t}: token {i} differs by {worst}");
                } else {
                    assert!(bits(&logits) == bits(batch), "{arch} {t}: token {i}");
                }
            }
            // eval keeps only the last row for the output matrix, a one-row product (as
            // llama.cpp computes only the logits it is asked for).
            let mut last = Session::new(&model, 128);
            let got = last.eval(&tokens).unwrap();
            let want = &all[(tokens.len() - 1) * n_vocab..];
            if t == "f16" {
                let worst = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs() / (1.0 + a.abs()))
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-3,
                    "{arch} {t}: eval's last logits differ by {worst}"
                );
            } else {
                assert!(bits(&got) == bits(want), "{arch} {t}: eval's last logits");
            }
        }
    }
}
