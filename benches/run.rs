//! Runner throughput: prefill and decode tokens/s at F16, Q8_0, Q4_0 and NF4, and the bandwidth
//! ratio (weight bytes read per second during decode ÷ memcpy bandwidth of the same bytes).
//! Models: the bundled tiny llama converted at each type, plus `$GGUFY_BENCH_MODEL` (any GGUF
//! with a vocabulary, e.g. a converted TinyLlama) when set.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use ggufy_convert::{ConvertOptions, Converter, OutType};
use ggufy_gguf::Gguf;
use ggufy_plan::{ExecOptions, execute};
use ggufy_run::{Model, Session};

fn convert(src: &Path, outtype: &str, dir: &Path) -> PathBuf {
    let opts = ConvertOptions {
        outtype: OutType::parse(outtype).unwrap(),
        ..ConvertOptions::default()
    };
    let conv = Converter::open(src, &opts).unwrap();
    let (plan, _) = conv.plan().unwrap();
    let (out, _) = execute(
        &plan,
        &dir.join(format!("{outtype}.gguf")),
        &ExecOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    out
}

/// `packed`: with `Model::pack` (what `ggufy run` does by default on AVX-512 VNNI CPUs), or
/// reading the file's layout in place (`--no-repack`).
fn bench_model(c: &mut Criterion, label: &str, path: &Path, packed: bool) {
    let file = Gguf::open(path).unwrap();
    let mut model = Model::load(&file).unwrap();
    let label = if packed {
        let copied = model.pack(&|_| {});
        format!("{label}/packed-{}MB", copied / 1_000_000)
    } else {
        format!("{label}/in-place")
    };
    let bytes = model.weight_bytes();
    let prompt: Vec<u32> = (0..32u32).map(|i| 1 + (i * 7) % 200).collect();
    let mut g = c.benchmark_group(format!("run/{label}"));
    g.sample_size(10);
    g.bench_function("prefill_32", |b| {
        let mut s = Session::new(&model, 128);
        b.iter(|| {
            s.reset();
            black_box(s.eval(&prompt).unwrap())
        })
    });
    g.bench_function("decode_1_at_32", |b| {
        let mut s = Session::new(&model, 128);
        s.eval(&prompt).unwrap();
        b.iter(|| {
            // Always the 33rd position: the same work every iteration.
            s.truncate(32);
            black_box(s.step(5).unwrap())
        })
    });
    g.finish();
    // Plain measurements for the notes: a 64-token prefill (llama-bench's pp64), then decode
    // and the bandwidth ratio. They run on a pool thread, as `ggufy run` does: from outside
    // the pool, the calling thread would be one more thread than cores beside the spinning
    // workers (`RAYON_NUM_THREADS` sets the pool's size).
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    let (prefill, per_token) = pool.install(|| {
        let long: Vec<u32> = (0..64u32).map(|i| 1 + (i * 7) % 200).collect();
        let mut s = Session::new(&model, 128);
        // The best of three: the first run pays for page faults and first allocations.
        let mut prefill = 0f64;
        for _ in 0..3 {
            s.reset();
            let t0 = Instant::now();
            black_box(s.eval(&long).unwrap());
            prefill = prefill.max(64.0 / t0.elapsed().as_secs_f64());
        }
        s.reset();
        s.eval(&prompt[..8]).unwrap();
        let t0 = Instant::now();
        let n = 32;
        for i in 0..n {
            black_box(s.step(1 + i).unwrap());
        }
        (prefill, t0.elapsed().as_secs_f64() / f64::from(n))
    });
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    // Warm copies (the first pays for page faults); the best of three.
    let mut memcpy = f64::INFINITY;
    for _ in 0..3 {
        let t1 = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
        memcpy = memcpy.min(t1.elapsed().as_secs_f64());
    }
    eprintln!(
        "{label}: {prefill:.1} prefill tokens/s (64), {:.1} decode tokens/s, {:.2} GB/s of \
         weights = {:.3} of memcpy ({:.2} GB/s)",
        1.0 / per_token,
        bytes as f64 / per_token / 1e9,
        memcpy / per_token,
        bytes as f64 / memcpy / 1e9
    );
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let llama = root.join("fixtures/hf/tiny-llama");
    for t in ["f16", "q8_0", "q4_0"] {
        let p = convert(&llama, t, tmp.path());
        for packed in [false, true] {
            bench_model(c, &format!("tiny-llama/{t}"), &p, packed);
        }
    }
    let nf4 = convert(&root.join("fixtures/hf/tiny-llama-nf4"), "nf4", tmp.path());
    bench_model(c, "tiny-llama/nf4", &nf4, false);
    if let Some(p) = std::env::var_os("GGUFY_BENCH_MODEL") {
        let p = PathBuf::from(p);
        let label = p.file_stem().unwrap().to_string_lossy().into_owned();
        for packed in [false, true] {
            bench_model(c, &label, &p, packed);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
