//! Opening a GGUF file must cost the same whatever its tensor data weighs: the reader maps the
//! file and parses only the header. Files of 1 MiB to 16 GiB (sparse, so the bench needs no real
//! disk) share one header shape; each is opened and its metadata walked. The baseline is a
//! `memcpy` of the header bytes, so the figure reads as "open costs N header copies".

use std::hint::black_box;
use std::io::Write;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ggufy_gguf::{GgmlType, Gguf, MetaArray, MetaValue, TensorSpec, WritePlan};

/// A llama-like header: 200 tensors and a 32k-token vocabulary, with `data_bytes` of F16 data.
fn plan(data_bytes: u64) -> WritePlan {
    let tokens: Vec<String> = (0..32_000).map(|i| format!("tok{i}")).collect();
    let meta = vec![
        ("general.architecture".to_owned(), MetaValue::from("llama")),
        (
            "tokenizer.ggml.tokens".to_owned(),
            MetaValue::Array(MetaArray::String(tokens)),
        ),
        (
            "tokenizer.ggml.scores".to_owned(),
            MetaValue::Array(MetaArray::F32(vec![0.0; 32_000])),
        ),
    ];
    let n = 200u64;
    let per_tensor = data_bytes / n / 2 / 256 * 256;
    let tensors = (0..n)
        .map(|i| TensorSpec {
            name: format!("blk.{i}.weight"),
            dims: vec![256, per_tensor / 256],
            ty: GgmlType::F16,
        })
        .collect();
    WritePlan::new(meta, tensors).expect("valid plan")
}

fn bench_open(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("open");
    let mut header_len = 0;
    for (label, bytes) in [
        ("1MiB", 1u64 << 20),
        ("64MiB", 64 << 20),
        ("1GiB", 1 << 30),
        ("16GiB", 16 << 30),
    ] {
        let p = plan(bytes);
        header_len = p.header_len();
        let path = dir.path().join(format!("{label}.gguf"));
        let mut f = std::fs::File::create(&path).expect("create");
        // The header is real; the data is a hole, which the reader never touches.
        f.write_all(p.header_bytes()).expect("write");
        f.set_len(p.file_len()).expect("set_len");
        drop(f);
        group.bench_with_input(BenchmarkId::new("open+walk", label), &path, |b, path| {
            b.iter(|| {
                let g = Gguf::open(path).expect("open");
                let n: u64 = g
                    .metadata()
                    .map(|(_, v)| v.as_array().map_or(1, |a| a.len()))
                    .sum();
                black_box((n, g.tensors().len()))
            })
        });
    }
    let src = vec![7u8; header_len as usize];
    let mut dst = vec![0u8; header_len as usize];
    group.throughput(Throughput::Bytes(header_len));
    group.bench_function(BenchmarkId::new("memcpy_header", header_len), |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_open);
criterion_main!(benches);
