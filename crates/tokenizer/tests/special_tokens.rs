//! Special tokens in the input, BOS/EOS and the strip rules, against llama.cpp's `llama-tokenize`
//! (goldens in fixtures/golden/tokenizer, made by fixtures/make_tokenizer_goldens.py) on the real
//! vocabularies in `../shared/vocab` (or `$GGUFY_VOCAB_DIR`). `$GGUFY_TOKENIZER_GOLDENS` points at
//! another golden folder.

use std::path::PathBuf;

use ggufy_gguf::Gguf;
use ggufy_tokenizer::Tokenizer;
use serde_json::Value as Json;

fn vocab_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GGUFY_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vocab"));
    dir.is_dir().then_some(dir)
}

#[test]
fn special_tokens_bos_and_eos_match_llama_tokenize() {
    let Some(vocab) = vocab_dir() else {
        eprintln!("skipped: no ../shared/vocab (set GGUFY_VOCAB_DIR)");
        return;
    };
    let goldens = std::env::var_os("GGUFY_TOKENIZER_GOLDENS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden/tokenizer")
        });
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&goldens)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for g in files {
        let name = g.file_stem().unwrap().to_string_lossy().into_owned();
        let path = vocab.join(format!("ggml-vocab-{name}.gguf"));
        if !path.exists() {
            continue;
        }
        let file = Gguf::open(&path).unwrap();
        let tok = Tokenizer::from_gguf(&file).unwrap();
        let cases: Json = serde_json::from_slice(&std::fs::read(&g).unwrap()).unwrap();
        for c in cases.as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            let (add, parse) = (
                c["add_special"].as_bool().unwrap(),
                c["parse_special"].as_bool().unwrap(),
            );
            let want: Vec<u32> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let got = tok.tokenize(text, add, parse);
            checked += 1;
            if got != want {
                failures.push(format!(
                    "{name} add_special={add} parse_special={parse} {text:?}\n  want {want:?}\n  got  {got:?}"
                ));
            }
        }
    }
    assert!(checked > 0, "no goldens checked in {}", goldens.display());
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
