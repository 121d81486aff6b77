//! The BPE pre-tokenizer choice against llama.cpp's own results: for real vocabularies (llama.cpp's
//! vocab GGUFs, whose `tokenizer.ggml.pre` its converter chose from the model's tokenizer.json),
//! rebuild the tokenizer.json that model ships (same tokens, merges and published pre-tokenizer
//! settings), hash the check text through the `tokenizers` crate as ggufy does, and require the
//! table to give the same name. Reads `$GGUFY_VOCAB_DIR`, else `../shared/vocab` beside the repo.

use std::path::PathBuf;

use ggufy_convert::vocab::bpe::{check_hash, pre_for_hash};
use ggufy_gguf::{Gguf, Value};
use serde_json::{Value as Json, json};

fn vocab_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GGUFY_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vocab"));
    dir.is_dir().then_some(dir)
}

fn strings(f: &ggufy_gguf::GgufFile, key: &str) -> Vec<String> {
    match f.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => String::from_utf8(s.to_vec()).unwrap(),
                _ => panic!("{key} is not a string array"),
            })
            .collect(),
        _ => panic!("{key} missing"),
    }
}

/// tokenizer.json for a byte-level BPE vocabulary with the given pre-tokenizer and BOS handling.
fn tokenizer_json(
    file: &str,
    pre_tokenizer: Json,
    normalizer: Json,
    ignore_merges: bool,
    add_bos: bool,
) -> (String, String) {
    let path = vocab_dir().unwrap().join(file);
    let f = Gguf::open(&path).unwrap();
    let tokens = strings(&f, "tokenizer.ggml.tokens");
    let merges = strings(&f, "tokenizer.ggml.merges");
    let types: Vec<i32> = match f.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| if let Value::I32(t) = v { t } else { 0 })
            .collect(),
        _ => vec![],
    };
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if types.get(i) == Some(&3) {
            added.push(json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
        } else {
            vocab.insert(t.clone(), json!(i));
        }
    }
    let bos = f
        .get_u32("tokenizer.ggml.bos_token_id")
        .unwrap()
        .unwrap_or(0);
    let bos_text = tokens[bos as usize].clone();
    let post = if add_bos {
        json!({"type": "TemplateProcessing",
               "single": [{"SpecialToken": {"id": bos_text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
               "pair": [{"SpecialToken": {"id": bos_text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": bos_text, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
               "special_tokens": {bos_text.clone(): {"id": bos_text, "ids": [bos], "tokens": [bos_text]}}})
    } else {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false})
    };
    let tj = json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges}});
    let pre = f.get_str("tokenizer.ggml.pre").unwrap().unwrap().to_owned();
    (tj.to_string(), pre)
}

fn split_then_bytelevel(regex: &str, trim_offsets: bool) -> Json {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim_offsets, "use_regex": false}]})
}

fn assert_table_agrees(tj: &str, expected: &str) {
    let tok = tokenizers::Tokenizer::from_bytes(tj.as_bytes()).unwrap();
    let hash = check_hash(&tok).unwrap();
    assert_eq!(pre_for_hash(&hash), Some(expected), "hash {hash}");
}

#[test]
fn real_vocabularies_hash_to_their_pre_tokenizer() {
    if vocab_dir().is_none() {
        eprintln!("skipped: no ../shared/vocab (set GGUFY_VOCAB_DIR)");
        return;
    }
    // Qwen2: NFC, its digit-by-digit regex, no BOS.
    let qwen = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let (tj, pre) = tokenizer_json(
        "ggml-vocab-qwen2.gguf",
        split_then_bytelevel(qwen, false),
        json!({"type": "NFC"}),
        false,
        false,
    );
    assert_eq!(pre, "qwen2");
    assert_table_agrees(&tj, "qwen2");

    // Llama 3: digits in threes, whole-word vocabulary hits first (ignore_merges), BOS added.
    let llama3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let (tj, pre) = tokenizer_json(
        "ggml-vocab-llama-bpe.gguf",
        split_then_bytelevel(llama3, true),
        Json::Null,
        true,
        true,
    );
    assert_eq!(pre, "llama-bpe");
    assert_table_agrees(&tj, "llama-bpe");

    // GPT-2: the ByteLevel pre-tokenizer's own regex.
    let gpt2 = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let (tj, pre) = tokenizer_json("ggml-vocab-gpt-2.gguf", gpt2, Json::Null, false, false);
    assert_eq!(pre, "gpt-2");
    assert_table_agrees(&tj, "gpt-2");
}
