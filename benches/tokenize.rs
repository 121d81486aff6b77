//! Tokenizer throughput: 1 MiB of English (this repository's Markdown, repeated) tokenized with
//! llama.cpp's llama-spm (Llama 2) and llama-bpe (Llama 3) vocabularies from `../shared/vocab`
//! (`$GGUFY_VOCAB_DIR`), beside a memcpy of the same bytes; plus detokenizing the result.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ggufy_gguf::Gguf;
use ggufy_tokenizer::Tokenizer;

/// About 1 MiB of English prose and code from the repository's documentation.
fn english() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut docs = String::new();
    for p in [
        "README.md",
        "fixtures/README.md",
        "docs/nf4.md",
        "docs/rounding.md",
    ] {
        docs.push_str(&std::fs::read_to_string(root.join(p)).unwrap_or_default());
        docs.push('\n');
    }
    assert!(!docs.is_empty());
    let mut text = String::with_capacity(1 << 20);
    while text.len() < 1 << 20 {
        text.push_str(&docs);
    }
    let mut end = 1 << 20;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

fn bench(c: &mut Criterion) {
    let dir = std::env::var_os("GGUFY_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vocab"));
    let text = english();
    let mut g = c.benchmark_group("tokenize_1MiB");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.bench_function("memcpy", |b| {
        let mut dst = vec![0u8; text.len()];
        b.iter(|| dst.copy_from_slice(black_box(text.as_bytes())))
    });
    for name in ["llama-spm", "llama-bpe"] {
        let Ok(file) = Gguf::open(dir.join(format!("ggml-vocab-{name}.gguf"))) else {
            eprintln!("skipped {name}: no vocabulary in {}", dir.display());
            continue;
        };
        let tok = Tokenizer::from_gguf(&file).unwrap();
        let ids = tok.tokenize(&text, false, false);
        eprintln!("{name}: {} tokens for {} bytes", ids.len(), text.len());
        g.bench_function(format!("{name}/tokenize"), |b| {
            b.iter(|| black_box(tok.tokenize(black_box(&text), false, false)))
        });
        g.bench_function(format!("{name}/detokenize"), |b| {
            b.iter(|| black_box(tok.detokenize(black_box(&ids), false, false).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
