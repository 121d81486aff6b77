//! Checkpoint conversion throughput: a synthetic llama-shaped bf16 safetensors checkpoint
//! (`GGUFY_BENCH_CKPT_MB`, default 1200 MiB, written once to a temp dir) converted to F16 and to
//! Q8_0 through the real converter and executor, beside a memcpy of the same bytes. Set
//! `GGUFY_BENCH_CKPT_DIR` to keep the checkpoint there (e.g. to measure the CLI's peak RSS with
//! `/usr/bin/time -v ggufy convert DIR -o out.gguf`).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ggufy_convert::{ConvertOptions, Converter, OutType};
use ggufy_gguf::GgmlType;
use ggufy_plan::{Encoding, ExecOptions, execute};

/// A deterministic xorshift stream of bf16 weights around N(0, 0.02).
fn bf16_weights(n: usize, seed: u64, out: &mut Vec<u8>) {
    let mut s = seed | 1;
    out.reserve(n * 2);
    for _ in 0..n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let u = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04;
        out.extend_from_slice(&((u.to_bits() >> 16) as u16).to_le_bytes());
    }
}

/// A SentencePiece model of `n` pieces (unk, bos, eos, then plain pieces), as protobuf bytes.
fn spm_model(n: usize) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut m = Vec::new();
    for i in 0..n {
        let text = match i {
            0 => "<unk>".to_owned(),
            1 => "<s>".to_owned(),
            2 => "</s>".to_owned(),
            _ => format!("\u{2581}p{i}"),
        };
        let kind = match i {
            0 => 2,
            1 | 2 => 3,
            _ => 1,
        };
        let mut p = Vec::new();
        varint(1 << 3 | 2, &mut p);
        varint(text.len() as u64, &mut p);
        p.extend_from_slice(text.as_bytes());
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&(-(i as f32)).to_le_bytes());
        varint(3 << 3, &mut p);
        varint(kind, &mut p);
        varint(1 << 3 | 2, &mut m);
        varint(p.len() as u64, &mut m);
        m.extend_from_slice(&p);
    }
    m
}

/// Writes a TinyLlama-shaped bf16 checkpoint of about `mb` MiB (whole layers) into `dir`.
fn write_checkpoint(dir: &Path, mb: usize) {
    let (hidden, ffn, vocab, kv) = (2048usize, 5632usize, 32000usize, 256usize);
    let per_layer = 2 * (hidden * hidden * 2 + hidden * kv * 2 + 3 * hidden * ffn + 2 * hidden);
    let fixed = 2 * (2 * vocab * hidden + hidden);
    let layers = ((mb << 20).saturating_sub(fixed) / per_layer).max(1);
    let config = serde_json::json!({"architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
        "intermediate_size": ffn, "num_attention_heads": 32, "num_key_value_heads": 4,
        "num_hidden_layers": layers, "vocab_size": vocab, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 2048, "torch_dtype": "bfloat16"});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.model"), spm_model(512)).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, hidden]),
        ("model.norm.weight".into(), vec![hidden]),
        ("lm_head.weight".into(), vec![vocab, hidden]),
    ];
    for l in 0..layers {
        let p = format!("model.layers.{l}.");
        for (n, s) in [
            ("input_layernorm.weight", vec![hidden]),
            ("post_attention_layernorm.weight", vec![hidden]),
            ("self_attn.q_proj.weight", vec![hidden, hidden]),
            ("self_attn.k_proj.weight", vec![kv, hidden]),
            ("self_attn.v_proj.weight", vec![kv, hidden]),
            ("self_attn.o_proj.weight", vec![hidden, hidden]),
            ("mlp.gate_proj.weight", vec![ffn, hidden]),
            ("mlp.up_proj.weight", vec![ffn, hidden]),
            ("mlp.down_proj.weight", vec![hidden, ffn]),
        ] {
            shapes.push((format!("{p}{n}"), s));
        }
    }
    shapes.sort();
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (name, shape) in &shapes {
        let n: usize = shape.iter().product::<usize>() * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}),
        );
        off += n;
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    for (i, (_, shape)) in shapes.iter().enumerate() {
        bf16_weights(shape.iter().product(), i as u64 + 1, &mut bytes);
    }
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
}

fn bench_convert(c: &mut Criterion) {
    let mb: usize = std::env::var("GGUFY_BENCH_CKPT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1200);
    let keep = std::env::var_os("GGUFY_BENCH_CKPT_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep
        .as_ref()
        .map_or(tmp.path().to_owned(), std::path::PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    if !dir.join("model.safetensors").is_file() {
        write_checkpoint(&dir, mb);
    }
    let data = std::fs::read(dir.join("model.safetensors")).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("convert");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    let mut copy = vec![0u8; data.len()];
    g.bench_function("memcpy_checkpoint", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&data));
            black_box(&copy);
        })
    });
    drop(copy);
    drop(data);
    for (label, ty) in [("f16", GgmlType::F16), ("q8_0", GgmlType::Q8_0)] {
        let opts = ConvertOptions {
            outtype: OutType::Encoding(Encoding::Ggml(ty)),
            ..ConvertOptions::default()
        };
        g.bench_function(label, |b| {
            b.iter(|| {
                let conv = Converter::open(&dir, &opts).unwrap();
                let (plan, _) = conv.plan().unwrap();
                let dest = out_dir.path().join("out.gguf");
                let _ = std::fs::remove_file(&dest);
                execute(&plan, &dest, &ExecOptions::default(), &mut |_, _| {}).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_convert);
criterion_main!(benches);
