//! Same input and flags, same bytes: `convert` and `quantize` outputs, and `run`'s tokens and
//! `perplexity`'s numbers, are identical at 1, 2 and 7 threads and with every SIMD path turned
//! off (`GGUFY_FORCE_SCALAR=1`, the scalar references); `run` and `perplexity` also with the
//! kernels of CPUs without AVX-512 (`GGUFY_SIMD=avx2`, `avxvnni`) or AMX (`avx512`). Users pin SHA-256 sums of
//! quantized files; a thread count or a CPU must not change them.

mod common;

use std::path::Path;
use std::process::Output;

use common::{big_model, fixtures, ggufy_cmd, stderr};
use serde_json::Value as Json;

/// The settings every output must be identical under: (threads, SIMD forced off).
const SETTINGS: [(&str, bool); 4] = [("1", false), ("2", false), ("7", false), ("2", true)];

/// More settings for the runner, whose kernels (unlike the quantizers') differ by CPU:
/// (threads, `GGUFY_SIMD`). On CPUs without the instructions the cap changes nothing.
/// `avx512` turns off AMX's tiles alone (the batched Q4_0/Q8_0 products).
const RUNNER_CAPS: [(&str, &str); 3] = [("2", "avx2"), ("3", "avxvnni"), ("2", "avx512")];

fn run_with(args: &[&str], threads: &str, scalar: bool) -> Output {
    run_capped(args, threads, if scalar { "scalar" } else { "native" })
}

/// `args` at `threads` threads with `GGUFY_SIMD=simd` (`scalar` through `GGUFY_FORCE_SCALAR`,
/// the documented switch).
fn run_capped(args: &[&str], threads: &str, simd: &str) -> Output {
    let mut c = ggufy_cmd(args);
    c.args(["--threads", threads]);
    c.env_remove("GGUFY_SIMD");
    if simd == "scalar" {
        c.env("GGUFY_FORCE_SCALAR", "1");
    } else {
        c.env_remove("GGUFY_FORCE_SCALAR");
        c.env("GGUFY_SIMD", simd);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

/// Runs a job that writes `out` under every setting and checks the files are byte-identical.
fn same_file_under_every_setting(label: &str, out: &Path, args: &[&str]) {
    let mut first: Option<Vec<u8>> = None;
    for (threads, scalar) in SETTINGS {
        let _ = std::fs::remove_file(out);
        run_with(args, threads, scalar);
        let bytes = std::fs::read(out).unwrap();
        match &first {
            None => first = Some(bytes),
            Some(f) => assert!(
                *f == bytes,
                "{label}: output differs at {threads} threads (scalar: {scalar})"
            ),
        }
    }
}

#[test]
fn convert_output_is_identical_at_any_thread_count_and_without_simd() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let out_s = out.to_str().unwrap();
    let vocab_pre = [("tiny-qwen2", "qwen2"), ("tiny-llama3", "llama-bpe")];
    for ckpt in [
        "tiny-llama",
        "tiny-qwen2",
        "tiny-gemma",
        "tiny-phi3",
        "tiny-llama3",
        "tiny-mistral",
        "tiny-llama-nf4",
    ] {
        let src = fixtures().join("hf").join(ckpt);
        for ty in ["f16", "bf16", "q8_0", "q4_0", "q5_1", "nf4"] {
            let mut args = vec![
                "convert",
                src.to_str().unwrap(),
                "-o",
                out_s,
                "--outtype",
                ty,
                "-q",
            ];
            if let Some((_, pre)) = vocab_pre.iter().find(|(c, _)| *c == ckpt) {
                args.extend(["--vocab-pre", pre]);
            }
            same_file_under_every_setting(&format!("{ckpt} {ty}"), &out, &args);
        }
    }
    // Rows long enough for every SIMD path and many row blocks per thread.
    let m = big_model();
    for ty in ["q8_0", "q4_0"] {
        let args = [
            "convert",
            m.checkpoint.to_str().unwrap(),
            "-o",
            out_s,
            "--outtype",
            ty,
            "-q",
        ];
        same_file_under_every_setting(&format!("generated {ty}"), &out, &args);
    }
}

#[test]
fn quantize_output_is_identical_at_any_thread_count_and_without_simd() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let tiny = fixtures().join("gguf/tiny-llama-f16.gguf");
    let big = &big_model().f16;
    for (src, types) in [
        (
            tiny.as_path(),
            &[
                "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q6_k", "nf4", "bf16", "f32",
            ][..],
        ),
        (big.as_path(), &["q8_0", "q4_0", "q6_k", "nf4"][..]),
    ] {
        for ty in types {
            let args = [
                "quantize",
                src.to_str().unwrap(),
                out.to_str().unwrap(),
                ty,
                "-q",
            ];
            same_file_under_every_setting(&format!("{} {ty}", src.display()), &out, &args);
        }
    }
}

/// `doc` without the fields that are measurements of time.
fn without_timings(mut doc: Json) -> Json {
    if let Json::Object(m) = &mut doc {
        m.retain(|k, _| !k.contains("seconds") && !k.contains("per_second") && !k.contains("_s"));
        for v in m.values_mut() {
            *v = without_timings(std::mem::take(v));
        }
    }
    doc
}

#[test]
fn run_and_perplexity_results_are_identical_at_any_thread_count_and_without_simd() {
    let dir = tempfile::tempdir().unwrap();
    let f16 = fixtures().join("gguf/tiny-llama-f16.gguf");
    let text = fixtures().join("text/held-out.txt");
    let mut models = vec![f16.clone()];
    for ty in ["q8_0", "q4_0", "nf4", "q4_1", "q5_0", "q5_1", "bf16"] {
        let out = dir.path().join(format!("{ty}.gguf"));
        run_with(
            &[
                "quantize",
                f16.to_str().unwrap(),
                out.to_str().unwrap(),
                ty,
                "-q",
            ],
            "2",
            false,
        );
        models.push(out);
    }
    // K-quant files from llama.cpp's quantizer (ggufy does not write K-quants).
    for name in ["q4_k_m", "q5_k_s"] {
        models.push(fixtures().join(format!("gguf/tiny-llama-{name}.llamacpp.gguf")));
    }
    for model in &models {
        let m = model.to_str().unwrap();
        let jobs: [Vec<&str>; 3] = [
            vec![
                "run",
                m,
                "-p",
                "Once upon a time",
                "-n",
                "24",
                "--greedy",
                "--json",
            ],
            vec![
                "run", m, "-p", "The", "-n", "24", "--seed", "7", "--temp", "0.9", "--json",
            ],
            vec![
                "perplexity",
                m,
                "-f",
                text.to_str().unwrap(),
                "--ctx",
                "128",
                "--chunks",
                "3",
                "--base",
                f16.to_str().unwrap(),
                "--json",
            ],
        ];
        let settings = SETTINGS
            .iter()
            .map(|&(t, scalar)| (t, if scalar { "scalar" } else { "native" }))
            .chain(RUNNER_CAPS);
        for args in &jobs {
            let mut first: Option<Json> = None;
            for (threads, simd) in settings.clone() {
                let o = run_capped(args, threads, simd);
                let doc = without_timings(serde_json::from_slice(&o.stdout).unwrap());
                match &first {
                    None => first = Some(doc),
                    Some(f) => assert_eq!(
                        *f, doc,
                        "{args:?}: differs at {threads} threads (GGUFY_SIMD={simd})"
                    ),
                }
            }
        }
    }
}
