//! Batched evaluation must give exactly what token-by-token evaluation gives, at every fixture
//! architecture and weight type, with the vector kernels and without: the batch only changes
//! how often each weight is read.

use std::path::{Path, PathBuf};

use ggufy_convert::{ConvertOptions, Converter, OutType};
use ggufy_gguf::Gguf;
use ggufy_plan::{ExecOptions, execute};
use ggufy_run::{Model, Session};

fn convert(src: &Path, outtype: &str, dir: &Path) -> PathBuf {
    let mut opts = ConvertOptions {
        outtype: OutType::parse(outtype).unwrap(),
        ..ConvertOptions::default()
    };
    // The fixture's BPE tokenizer is too small for llama.cpp's check text to identify it.
    if src.ends_with("tiny-qwen2") {
        opts.vocab.pre_override = Some("qwen2".into());
    }
    let conv = Converter::open(src, &opts).unwrap();
    let (plan, _) = conv.plan().unwrap();
    let name = format!(
        "{}-{outtype}.gguf",
        src.file_name().unwrap().to_string_lossy()
    );
    execute(
        &plan,
        &dir.join(name),
        &ExecOptions::default(),
        &mut |_, _| {},
    )
    .unwrap()
    .0
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn batched_and_stepwise_evaluation_agree_bit_for_bit() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf");
    let tmp = tempfile::tempdir().unwrap();
    let tokens: Vec<u32> = (0..70u32).map(|i| 1 + (i * 37) % 250).collect();
    for arch in ["tiny-llama", "tiny-qwen2", "tiny-phi3", "tiny-gemma"] {
        for t in ["f16", "q8_0", "q4_0"] {
            let path = convert(&root.join(arch), t, tmp.path());
            let file = Gguf::open(&path).unwrap();
            let model = Model::load(&file).unwrap();
            let n_vocab = model.hp.n_vocab;
            // 70 tokens: more than one batch, so the second batch reads the first's cache.
            let mut batched = Session::new(&model, 128);
            let all = batched.eval_all(&tokens).unwrap();
            let mut stepwise = Session::new(&model, 128);
            for (i, &tok) in tokens.iter().enumerate() {
                let logits = stepwise.step(tok).unwrap();
                assert_eq!(
                    bits(&logits),
                    bits(&all[i * n_vocab..(i + 1) * n_vocab]),
                    "{arch} {t}: token {i}"
                );
            }
            let mut last = Session::new(&model, 128);
            assert_eq!(
                bits(&last.eval(&tokens).unwrap()),
                bits(&all[(tokens.len() - 1) * n_vocab..]),
                "{arch} {t}: eval's last logits"
            );
        }
    }
}
