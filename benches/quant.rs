//! Quantizer throughput, always beside a `memcpy` of the same input bytes so the result reads as
//! a ratio that survives a noisy machine.
//!
//! - `quantize/<TYPE>` and `dequantize/<TYPE>`: one thread, 1 Mi elements (4 MiB of f32 in).
//! - `file/<TYPE>`: a whole synthetic F16 GGUF (llama-shaped, `GGUFY_BENCH_FILE_MB`, default
//!   1024 MiB) quantized through the real plan executor on 2 threads, output to a temp dir.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ggufy_gguf::{GgmlType, Gguf, GgufWriter, MetaValue, TensorSpec, WritePlan, WriterOptions};
use ggufy_plan::{ExecOptions, QuantizePolicy, execute, quantize_plan};
use ggufy_quant::{Rounding, dequantize_row, quantize_row};

/// Weight-like values: a deterministic xorshift stream shaped roughly like N(0, 0.02).
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 + (s & 0xFFFF) as f32 / 65536.0 - 1.0;
            u * 0.02
        })
        .collect()
}

const N: usize = 1 << 20;
const TYPES: [GgmlType; 8] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q6_K,
    GgmlType::F16,
    GgmlType::BF16,
];

fn bench_rows(c: &mut Criterion) {
    let x = weights(N, 1);
    let input_bytes = (N * 4) as u64;
    let mut g = c.benchmark_group("quantize");
    g.throughput(Throughput::Bytes(input_bytes));
    let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut dst = vec![0u8; src.len()];
    g.bench_function("memcpy_f32_input", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    for ty in TYPES {
        let mut out = vec![0u8; ty.row_bytes(N as u64).expect("whole blocks") as usize];
        g.bench_function(BenchmarkId::from_parameter(ty.name()), |b| {
            b.iter(|| {
                quantize_row(ty, black_box(&x), &mut out, Rounding::Separate).expect("quantize")
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("dequantize");
    for ty in TYPES {
        let mut q = vec![0u8; ty.row_bytes(N as u64).expect("whole blocks") as usize];
        quantize_row(ty, &x, &mut q, Rounding::Separate).expect("quantize");
        let mut y = vec![0.0f32; N];
        g.throughput(Throughput::Bytes(q.len() as u64));
        let mut copy = vec![0u8; q.len()];
        g.bench_function(BenchmarkId::new("memcpy_input", ty.name()), |b| {
            b.iter(|| {
                copy.copy_from_slice(black_box(&q));
                black_box(&copy);
            })
        });
        g.bench_function(BenchmarkId::from_parameter(ty.name()), |b| {
            b.iter(|| dequantize_row(ty, black_box(&q), &mut y).expect("dequantize"))
        });
    }
    g.finish();
}

/// Writes a llama-shaped F16 model of about `mb` MiB.
fn synthetic_model(path: &std::path::Path, mb: u64) {
    let (e, f) = (2048u64, 5632u64);
    let per_layer = 2 * (2 * e * e + 2 * 256 * e + 3 * e * f);
    let layers = ((mb << 20) / per_layer).max(1);
    let mut tensors = Vec::new();
    for i in 0..layers {
        for (name, rows, cols) in [
            ("attn_q", e, e),
            ("attn_k", 256, e),
            ("attn_v", 256, e),
            ("attn_output", e, e),
            ("ffn_gate", f, e),
            ("ffn_up", f, e),
            ("ffn_down", e, f),
        ] {
            tensors.push(TensorSpec {
                name: format!("blk.{i}.{name}.weight"),
                dims: vec![cols, rows],
                ty: GgmlType::F16,
            });
        }
    }
    let meta = vec![("general.architecture".to_owned(), MetaValue::from("llama"))];
    let plan = WritePlan::new(meta, tensors.clone()).expect("plan");
    let mut w = GgufWriter::create(path, plan, &WriterOptions::default()).expect("create");
    for t in &tensors {
        let n = (t.dims[0] * t.dims[1]) as usize;
        let x = weights(n, n as u64);
        let bytes: Vec<u8> = x
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        w.write_tensor(&bytes).expect("write");
    }
    w.finish().expect("finish");
}

fn bench_file(c: &mut Criterion) {
    let mb: u64 = std::env::var("GGUFY_BENCH_FILE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("f16.gguf");
    synthetic_model(&src, mb);
    let model = Gguf::open(&src).expect("open");
    let size = model.layout().file_len;
    let mut g = c.benchmark_group("file");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(size));
    let mut copy = vec![0u8; size as usize];
    g.bench_function("memcpy_input", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(model.bytes()));
            black_box(&copy);
        })
    });
    drop(copy);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
        let policy = QuantizePolicy {
            target: ggufy_plan::Encoding::Ggml(ty),
            pure: false,
            keep: vec![],
        };
        let (plan, _) = quantize_plan(&model, &policy).expect("plan");
        let out = dir.path().join("out.gguf");
        let opts = ExecOptions {
            threads: 2,
            writer: WriterOptions {
                overwrite: true,
                inputs: vec![src.clone()],
            },
            ..ExecOptions::default()
        };
        g.bench_function(BenchmarkId::from_parameter(ty.name()), |b| {
            b.iter(|| execute(&plan, &out, &opts, &mut |_, _| {}).expect("execute"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_rows, bench_file);
criterion_main!(benches);
