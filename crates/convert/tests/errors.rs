//! Bad checkpoints fail with one clear error naming the file and the field or tensor — never a
//! panic. Each test builds a minimal llama checkpoint in a temporary directory and breaks one thing.

use std::path::Path;

use ggufy_convert::{ConvertOptions, Converter};
use serde_json::json;

/// Writes a safetensors file of F32 tensors (name, shape), contents zero.
fn write_safetensors(path: &Path, tensors: &[(&str, Vec<u64>)]) {
    let mut header = serde_json::Map::new();
    let mut off = 0u64;
    for (name, shape) in tensors {
        let n: u64 = shape.iter().product::<u64>() * 4;
        header.insert(
            (*name).into(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}),
        );
        off += n;
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.resize(bytes.len() + off as usize, 0);
    std::fs::write(path, bytes).unwrap();
}

fn llama_tensors() -> Vec<(&'static str, Vec<u64>)> {
    vec![
        ("model.embed_tokens.weight", vec![8, 64]),
        ("model.norm.weight", vec![64]),
        ("lm_head.weight", vec![8, 64]),
        ("model.layers.0.input_layernorm.weight", vec![64]),
        ("model.layers.0.post_attention_layernorm.weight", vec![64]),
        ("model.layers.0.self_attn.q_proj.weight", vec![64, 64]),
        ("model.layers.0.self_attn.k_proj.weight", vec![64, 64]),
        ("model.layers.0.self_attn.v_proj.weight", vec![64, 64]),
        ("model.layers.0.self_attn.o_proj.weight", vec![64, 64]),
        ("model.layers.0.mlp.gate_proj.weight", vec![64, 64]),
        ("model.layers.0.mlp.up_proj.weight", vec![64, 64]),
        ("model.layers.0.mlp.down_proj.weight", vec![64, 64]),
    ]
}

fn config() -> serde_json::Value {
    json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 64,
           "num_attention_heads": 4, "num_hidden_layers": 1, "vocab_size": 8})
}

/// A byte-level BPE tokenizer.json small enough to write inline.
fn tokenizer_json() -> serde_json::Value {
    json!({"version": "1.0", "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": {"a": 0, "b": 1, "c": 2, "d": 3, "ab": 4, "cd": 5, "Ġ": 6, "e": 7}, "merges": ["a b", "c d"]}})
}

fn checkpoint(dir: &Path) {
    std::fs::write(dir.join("config.json"), config().to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json().to_string()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), &llama_tensors());
}

fn error_of(dir: &Path) -> String {
    match Converter::open(dir, &ConvertOptions::default()) {
        Ok(c) => match c.plan() {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unknown_bpe_pre_tokenizer_names_its_hash() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    let e = error_of(d.path());
    assert!(
        e.contains("tokenizer.json") && e.contains("check hash") && e.contains("--vocab-pre"),
        "{e}"
    );
}

#[test]
fn a_named_pre_tokenizer_converts() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    let opts = ConvertOptions {
        vocab: ggufy_convert::VocabOptions {
            pre_override: Some("gpt-2".into()),
        },
        ..ConvertOptions::default()
    };
    let c = Converter::open(d.path(), &opts).unwrap();
    let (plan, _) = c.plan().unwrap();
    assert_eq!(plan.tensors.len(), 12);
    let pre = plan
        .metadata
        .iter()
        .find(|(k, _)| k == "tokenizer.ggml.pre")
        .unwrap();
    assert_eq!(pre.1, ggufy_gguf::MetaValue::String("gpt-2".into()));
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    let mut c = config();
    c["architectures"] = json!(["MambaForCausalLM"]);
    std::fs::write(d.path().join("config.json"), c.to_string()).unwrap();
    let e = error_of(d.path());
    assert!(
        e.contains("config.json")
            && e.contains("MambaForCausalLM")
            && e.contains("Qwen2ForCausalLM"),
        "{e}"
    );
}

#[test]
fn missing_config_and_bad_fields_are_named() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    assert!(error_of(d.path()).contains("config.json: missing"));
    let mut c = config();
    c["num_hidden_layers"] = json!("two");
    std::fs::write(d.path().join("config.json"), c.to_string()).unwrap();
    let e = error_of(d.path());
    assert!(
        e.contains("num_hidden_layers") && e.contains("integer"),
        "{e}"
    );
    std::fs::write(d.path().join("config.json"), "{not json").unwrap();
    assert!(error_of(d.path()).contains("not valid JSON"));
}

#[test]
fn broken_safetensors_headers_are_refused() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    let p = d.path().join("model.safetensors");
    let good = std::fs::read(&p).unwrap();
    // Truncated data, a lying header length, garbage, empty.
    for bad in [
        &good[..good.len() - 4],
        &[0xff; 16][..],
        b"{\"a\":1}",
        &[][..],
    ] {
        std::fs::write(&p, bad).unwrap();
        let e = error_of(d.path());
        assert!(
            e.contains("model.safetensors") && e.contains("safetensors"),
            "{e}"
        );
    }
}

#[test]
fn tensors_outside_the_architecture_are_refused() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    let mut t = llama_tensors();
    t.push(("model.layers.1.mlp.up_proj.weight", vec![64, 64])); // only 1 layer configured
    write_safetensors(&d.path().join("model.safetensors"), &t);
    let e = error_of(d.path());
    assert!(
        e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("1 layers"),
        "{e}"
    );
}

#[test]
fn shard_index_must_match_the_shards() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    let t = llama_tensors();
    let (a, b) = t.split_at(6);
    write_safetensors(&d.path().join("model-00001-of-00002.safetensors"), a);
    write_safetensors(&d.path().join("model-00002-of-00002.safetensors"), b);
    let mut map = serde_json::Map::new();
    for (n, _) in a {
        map.insert((*n).into(), json!("model-00001-of-00002.safetensors"));
    }
    for (n, _) in b {
        map.insert((*n).into(), json!("model-00002-of-00002.safetensors"));
    }
    map.insert(
        "model.layers.0.extra.weight".into(),
        json!("model-00002-of-00002.safetensors"),
    );
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let e = error_of(d.path());
    assert!(
        e.contains("index") && e.contains("missing tensors model.layers.0.extra.weight"),
        "{e}"
    );

    // A shard named outside the directory is refused before anything is opened.
    map.remove("model.layers.0.extra.weight");
    map.insert("model.norm.weight".into(), json!("../../etc/passwd"));
    let index = json!({"weight_map": map});
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let e = error_of(d.path());
    assert!(e.contains("weight_map.model.norm.weight"), "{e}");
}

#[test]
fn pickles_are_not_loaded() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), config().to_string()).unwrap();
    std::fs::write(d.path().join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
    let e = error_of(d.path());
    assert!(e.contains("pickle"), "{e}");
}

#[test]
fn unsupported_dtypes_are_named() {
    let d = tempfile::tempdir().unwrap();
    checkpoint(d.path());
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let text = String::from_utf8_lossy(&bytes).replacen(
        "\"dtype\":\"F32\",\"shape\":[64]",
        "\"dtype\":\"I32\",\"shape\":[64]",
        1,
    );
    std::fs::write(&p, text.as_bytes()).unwrap();
    let e = error_of(d.path());
    assert!(e.contains("I32"), "{e}");
}
