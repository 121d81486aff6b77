//! `--device gpu` (or `cuda`) end to end: the files `convert` and `quantize` write with the GPU
//! doing the Q8_0, Q4_0 and NF4 tensors are byte-identical to the CPU's. Needs the `gpu` feature
//! and a wgpu adapter (lavapipe in CI: `cargo test -p ggufy --features gpu --test gpu`), or the
//! `cuda` feature and an NVIDIA GPU (`GGUFY_TEST_DEVICE=cuda` picks it when both are built);
//! without a device the tests say so and pass, unless `GGUFY_REQUIRE_GPU_TESTS=1`.
#![cfg(any(feature = "gpu", feature = "cuda"))]

mod common;

use common::{fixtures, ggufy, stderr};

/// The `--device` these tests exercise: `GGUFY_TEST_DEVICE`, else the one the build has.
fn device() -> String {
    std::env::var("GGUFY_TEST_DEVICE")
        .unwrap_or_else(|_| if cfg!(feature = "gpu") { "gpu" } else { "cuda" }.to_string())
}

/// Whether `--device gpu` works here; panics if it must.
fn gpu_available() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probe.gguf");
    let o = ggufy(&[
        "quantize",
        fixtures()
            .join("gguf/tiny-llama-f16.gguf")
            .to_str()
            .unwrap(),
        out.to_str().unwrap(),
        "q8_0",
        "--device",
        &device(),
        "-q",
    ]);
    if o.status.success() {
        return true;
    }
    assert!(
        std::env::var_os("GGUFY_REQUIRE_GPU_TESTS").is_none(),
        "GGUFY_REQUIRE_GPU_TESTS is set but: {}",
        stderr(&o)
    );
    eprintln!("SKIPPED: {}", stderr(&o).trim());
    false
}

#[test]
fn quantize_on_the_gpu_writes_the_cpus_file() {
    if !gpu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("gguf/tiny-llama-f16.gguf");
    for ty in ["q8_0", "q4_0", "nf4"] {
        for pure in [false, true] {
            let run = |device: &str| {
                let out = dir.path().join(format!("{ty}-{pure}-{device}.gguf"));
                let mut args = vec![
                    "quantize",
                    src.to_str().unwrap(),
                    out.to_str().unwrap(),
                    ty,
                    "--device",
                    device,
                    "-q",
                ];
                if pure {
                    args.push("--pure");
                }
                let o = ggufy(&args);
                assert!(o.status.success(), "{ty} {device}: {}", stderr(&o));
                std::fs::read(out).unwrap()
            };
            assert!(
                run(&device()) == run("cpu"),
                "{ty} (pure: {pure}) differs on the GPU"
            );
        }
    }
}

#[test]
fn convert_on_the_gpu_writes_the_cpus_file() {
    if !gpu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (ckpt, pre) in [
        ("tiny-llama", None),
        ("tiny-qwen2", Some("qwen2")),
        ("tiny-llama-nf4", None),
    ] {
        for ty in ["q8_0", "q4_0", "nf4"] {
            let run = |device: &str| {
                let out = dir.path().join(format!("{ckpt}-{ty}-{device}.gguf"));
                let src = fixtures().join("hf").join(ckpt);
                let mut args = vec![
                    "convert",
                    src.to_str().unwrap(),
                    "-o",
                    out.to_str().unwrap(),
                    "--outtype",
                    ty,
                    "--device",
                    device,
                    "-q",
                ];
                if let Some(p) = pre {
                    args.extend(["--vocab-pre", p]);
                }
                let o = ggufy(&args);
                assert!(o.status.success(), "{ckpt} {ty} {device}: {}", stderr(&o));
                std::fs::read(out).unwrap()
            };
            assert!(
                run(&device()) == run("cpu"),
                "{ckpt} {ty} differs on the GPU"
            );
        }
    }
}

#[test]
fn run_on_the_gpu_generates_with_its_weights_there() {
    if !gpu_available() {
        return;
    }
    for ty in ["q8_0", "q4_0"] {
        let model = fixtures().join(format!("gguf/tiny-llama-{ty}.llamacpp.gguf"));
        let tokens = |device: &str| {
            let o = ggufy(&[
                "run",
                model.to_str().unwrap(),
                "-p",
                "Once upon a time",
                "-n",
                "16",
                "--greedy",
                "--json",
                "--device",
                device,
            ]);
            assert!(o.status.success(), "{ty} {device}: {}", stderr(&o));
            if device != "cpu" {
                assert!(stderr(&o).contains("weight matrices on"), "{}", stderr(&o));
            }
            let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            doc["tokens"].as_array().unwrap().clone()
        };
        let (gpu, cpu) = (tokens(&device()), tokens("cpu"));
        assert_eq!(gpu.len(), 16);
        // The GPU sums in f32 without quantizing activations, so a near-tie may go the other
        // way later on; the first token after the prompt has a clear winner on these models.
        assert_eq!(gpu[0], cpu[0], "{ty}");
        let same = gpu.iter().zip(&cpu).take_while(|(a, b)| a == b).count();
        eprintln!("{ty}: {same} of 16 greedy tokens equal to the CPU's");
    }
}

#[test]
fn perplexity_on_the_gpu_is_close_to_the_cpus() {
    if !gpu_available() {
        return;
    }
    let text = fixtures().join("text/held-out.txt");
    let f16 = fixtures().join("gguf/tiny-llama-f16.gguf");
    let model = fixtures().join("gguf/tiny-llama-q4_0.llamacpp.gguf");
    let ppl = |device: &str| {
        let o = ggufy(&[
            "perplexity",
            model.to_str().unwrap(),
            "-f",
            text.to_str().unwrap(),
            "--ctx",
            "128",
            "--chunks",
            "4",
            "--base",
            f16.to_str().unwrap(),
            "--json",
            "--device",
            device,
        ]);
        assert!(o.status.success(), "{device}: {}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            doc["ppl"].as_f64().unwrap(),
            doc["mean_kl"].as_f64().unwrap(),
        )
    };
    let (gpu, gpu_kl) = ppl(&device());
    let (cpu, cpu_kl) = ppl("cpu");
    // The same model measured two ways: well within 1% (the runner issue's perplexity bar).
    assert!((gpu / cpu - 1.0).abs() < 0.01, "GPU {gpu} vs CPU {cpu}");
    assert!(
        gpu_kl < 10.0 * cpu_kl.max(1e-4),
        "KL GPU {gpu_kl} vs CPU {cpu_kl}"
    );
}
