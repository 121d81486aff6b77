//! Helpers shared by the end-to-end test files: running the binary, and a generated llama
//! checkpoint (~100 MB) much larger than any of its tensors, for the tests that need a job to
//! take a while or memory to be measured.
#![allow(dead_code)] // each test file uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

pub fn ggufy_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ggufy"));
    c.args(args);
    c
}

pub fn ggufy(args: &[&str]) -> Output {
    ggufy_cmd(args).output().expect("run ggufy")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Hidden temporary outputs (`.NAME.XXXXXX.partial`) in `dir`.
pub fn partials(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect()
}

/// Layers, hidden size and FFN size of the generated checkpoint: about 25 MB of bf16 per layer,
/// so a model of ~100 MB whose largest tensor is under 6 MB.
pub const LAYERS: usize = 4;
pub const HIDDEN: usize = 1024;
pub const FFN: usize = 2816;

/// Writes a llama checkpoint of `LAYERS` layers into `dir` (bf16, deterministic values), with
/// the bundled tiny llama's tokenizer.
pub fn write_checkpoint(dir: &Path) {
    let tiny = fixtures().join("hf/tiny-llama");
    for f in [
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(tiny.join(f), dir.join(f)).unwrap();
    }
    let vocab = 384;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "num_hidden_layers": LAYERS,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "vocab_size": vocab,
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, HIDDEN]),
        ("model.norm.weight".into(), vec![HIDDEN]),
        ("lm_head.weight".into(), vec![vocab, HIDDEN]),
    ];
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        for (n, shape) in [
            ("self_attn.q_proj", vec![HIDDEN, HIDDEN]),
            ("self_attn.k_proj", vec![HIDDEN, HIDDEN]),
            ("self_attn.v_proj", vec![HIDDEN, HIDDEN]),
            ("self_attn.o_proj", vec![HIDDEN, HIDDEN]),
            ("mlp.gate_proj", vec![FFN, HIDDEN]),
            ("mlp.up_proj", vec![FFN, HIDDEN]),
            ("mlp.down_proj", vec![HIDDEN, FFN]),
            ("input_layernorm", vec![HIDDEN]),
            ("post_attention_layernorm", vec![HIDDEN]),
        ] {
            tensors.push((format!("{p}.{n}.weight"), shape));
        }
    }
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        let n = shape.iter().product::<usize>() * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(dir.join("model.safetensors")).unwrap());
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    // Small finite values of many magnitudes: a repeating block is enough for these tests.
    let mut block = Vec::with_capacity(1 << 16);
    let mut s: u32 = 0x9e37_79b9;
    for _ in 0..(1 << 15) {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let v = ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.1;
        block.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
    }
    let mut left = offset;
    while left > 0 {
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

/// The generated checkpoint and its F16 GGUF conversion, made once per test run.
pub struct BigModel {
    _dir: tempfile::TempDir,
    /// The checkpoint directory.
    pub checkpoint: PathBuf,
    /// Its F16 GGUF.
    pub f16: PathBuf,
}

pub fn big_model() -> &'static BigModel {
    static MODEL: OnceLock<BigModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("ckpt");
        std::fs::create_dir(&checkpoint).unwrap();
        write_checkpoint(&checkpoint);
        let f16 = dir.path().join("big-f16.gguf");
        let o = ggufy(&[
            "convert",
            checkpoint.to_str().unwrap(),
            "--outtype",
            "f16",
            "-o",
            f16.to_str().unwrap(),
            "-q",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        BigModel {
            _dir: dir,
            checkpoint,
            f16,
        }
    })
}
