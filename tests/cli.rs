//! End-to-end tests of the `ggufy` binary: exit codes, one-line errors, and `inspect --json`
//! reporting exactly what gguf-py's GGUFReader reads (goldens in `fixtures/golden/`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn ggufy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ggufy"))
        .args(args)
        .output()
        .expect("run ggufy")
}

fn gguf_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    v.sort();
    v
}

/// Our JSON value against the golden's normal form (floats as bit patterns).
fn same_value(ours: &Json, golden: &Json, ty: &str) -> bool {
    match (ty, golden) {
        ("FLOAT32", Json::Object(g)) => {
            let bits = g["f32"].as_u64().unwrap() as u32;
            match ours {
                Json::Number(n) => (n.as_f64().unwrap() as f32).to_bits() == bits,
                Json::String(s) => {
                    let x = f32::from_bits(bits);
                    (s == "NaN" && x.is_nan())
                        || (s == "inf" && x == f32::INFINITY)
                        || (s == "-inf" && x == f32::NEG_INFINITY)
                }
                _ => false,
            }
        }
        ("FLOAT64", Json::Object(g)) => {
            let bits: u64 = g["f64"].as_str().unwrap().parse().unwrap();
            ours.as_f64().is_some_and(|x| x.to_bits() == bits)
        }
        _ => ours == golden,
    }
}

fn flatten(v: &Json, out: &mut Vec<Json>) {
    match v {
        Json::Array(a) => a.iter().for_each(|e| flatten(e, out)),
        leaf => out.push(leaf.clone()),
    }
}

#[test]
fn inspect_json_matches_gguf_py_on_every_fixture() {
    for file in gguf_files(&fixtures().join("gguf")) {
        let out = ggufy(&["inspect", "--json", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let ours: Json = serde_json::from_slice(&out.stdout).unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        let golden: Json = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("golden/{name}.json"))).unwrap(),
        )
        .unwrap();
        for k in [
            "version",
            "endian",
            "tensor_count",
            "kv_count",
            "alignment",
            "data_offset",
        ] {
            assert_eq!(ours[k], golden[k], "{name}: {k}");
        }
        let (om, gm) = (
            ours["metadata"].as_array().unwrap(),
            golden["fields"].as_array().unwrap(),
        );
        assert_eq!(om.len(), gm.len());
        for (o, g) in om.iter().zip(gm) {
            let key = &g["key"];
            assert_eq!(&o["key"], key);
            let types = g["types"].as_array().unwrap();
            assert_eq!(o["type"], types[0], "{name}: {key}");
            let leaf_ty = types.last().unwrap().as_str().unwrap();
            if types[0] == "ARRAY" {
                let mut leaves = Vec::new();
                flatten(&o["value"], &mut leaves);
                assert_eq!(
                    leaves.len() as u64,
                    g["len"].as_u64().unwrap(),
                    "{name}: {key}"
                );
                for (a, b) in leaves.iter().zip(g["head"].as_array().unwrap()) {
                    assert!(same_value(a, b, leaf_ty), "{name}: {key}: {a} vs {b}");
                }
            } else {
                assert!(
                    same_value(&o["value"], &g["value"], leaf_ty),
                    "{name}: {key}"
                );
            }
        }
        let (ot, gt) = (
            ours["tensors"].as_array().unwrap(),
            golden["tensors"].as_array().unwrap(),
        );
        assert_eq!(ot.len(), gt.len());
        for (o, g) in ot.iter().zip(gt) {
            for k in [
                "name",
                "type",
                "shape",
                "n_elements",
                "n_bytes",
                "data_offset",
            ] {
                assert_eq!(o[k], g[k], "{name}: tensor {} {k}", g["name"]);
            }
        }
    }
}

#[test]
fn inspect_text_report_on_the_bundled_model() {
    let out = ggufy(&[
        "inspect",
        fixtures()
            .join("gguf/tiny-llama-f16.gguf")
            .to_str()
            .unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "GGUF v3, little-endian",
        "llama.block_count",
        "token_embd.weight",
        "F16",
        "MOSTLY_F16",
        "bos 1 \"<s>\"",
        "288 tokens",
        "bits/weight",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("warnings"), "{text}");
}

#[test]
fn malformed_files_exit_1_with_one_clear_line() {
    let dir = fixtures().join("malformed");
    let table = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let path = dir.join(cols[0]);
        let out = ggufy(&["inspect", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if cols[1] == "error" {
            assert_eq!(out.status.code(), Some(1), "{}: {stderr}", cols[0]);
            assert_eq!(stderr.lines().count(), 1, "{}: {stderr}", cols[0]);
            assert!(
                stderr.starts_with("error: ") && stderr.contains(cols[2]),
                "{}: {stderr}",
                cols[0]
            );
            assert!(
                stderr.contains(cols[0]),
                "error must name the file: {stderr}"
            );
            assert!(out.stdout.is_empty());
        } else {
            assert_eq!(out.status.code(), Some(0), "{}: {stderr}", cols[0]);
            let json = ggufy(&["inspect", "--json", path.to_str().unwrap()]);
            let doc: Json = serde_json::from_slice(&json.stdout).unwrap();
            if !cols[2].is_empty() {
                assert!(
                    doc["warnings"].to_string().contains(cols[2]),
                    "{}: {}",
                    cols[0],
                    doc["warnings"]
                );
                // Every warning is something llama.cpp refuses: --strict turns it into a failure.
                let strict = ggufy(&["inspect", "--strict", path.to_str().unwrap()]);
                assert_eq!(strict.status.code(), Some(1), "{}", cols[0]);
                assert!(String::from_utf8_lossy(&strict.stderr).contains(cols[2]));
            }
        }
    }
}

#[test]
fn exit_codes() {
    let missing = ggufy(&["inspect", "/nonexistent/model.gguf"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        stderr.matches("/nonexistent/model.gguf").count(),
        1,
        "{stderr}"
    );
    assert_eq!(ggufy(&["inspect"]).status.code(), Some(2));
    assert_eq!(ggufy(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(ggufy(&["inspect", "--bogus", "x"]).status.code(), Some(2));
    assert_eq!(ggufy(&["--version"]).status.code(), Some(0));
    let dir = ggufy(&["inspect", fixtures().to_str().unwrap()]);
    assert_eq!(dir.status.code(), Some(1));
    // A SIMD cap that names nothing is refused, not ignored.
    let model = fixtures().join("gguf/tiny-llama-f16.gguf");
    let model = model.to_str().unwrap();
    let capped = |v: &str| {
        Command::new(env!("CARGO_BIN_EXE_ggufy"))
            .args(["inspect", model])
            .env("GGUFY_SIMD", v)
            .output()
            .unwrap()
    };
    let bad = capped("avx9");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("GGUFY_SIMD"));
    for ok in ["avx2", "AVXVNNI", "avx512", "scalar", "native", ""] {
        assert_eq!(capped(ok).status.code(), Some(0), "GGUFY_SIMD={ok}");
    }
}

#[test]
fn array_limit_truncates_json_on_request() {
    let f = fixtures().join("gguf/all-types.gguf");
    let out = ggufy(&[
        "inspect",
        "--json",
        "--array-limit",
        "3",
        f.to_str().unwrap(),
    ]);
    let doc: Json = serde_json::from_slice(&out.stdout).unwrap();
    let long = doc["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "test.long_array")
        .unwrap();
    assert_eq!(long["value"].as_array().unwrap().len(), 3);
    assert_eq!(long["count"], 100);
    assert_eq!(long["truncated"], true);
}

// ---------------------------------------------------------------------------------------------
// ggufy quantize

use ggufy_gguf::{GgmlType, Gguf};

/// Quantizes `src` to `ty` in a fresh temp dir; returns the dir (kept alive) and output path.
fn quantize(src: &Path, ty: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let mut args = vec!["quantize", src.to_str().unwrap(), out.to_str().unwrap(), ty];
    args.extend_from_slice(extra);
    let o = ggufy(&args);
    (dir, out, o)
}

/// The tensors of two files must have the same names, types, shapes and bytes.
fn same_tensors(a: &Path, b: &Path) {
    let (fa, fb) = (Gguf::open(a).unwrap(), Gguf::open(b).unwrap());
    assert_eq!(fa.tensors().len(), fb.tensors().len());
    for t in fa.tensors() {
        let u = fb
            .tensor(&t.name)
            .unwrap_or_else(|| panic!("{} missing", t.name));
        assert_eq!((t.ty, &t.dims), (u.ty, &u.dims), "{}", t.name);
        assert!(
            fa.tensor_data(t) == fb.tensor_data(u),
            "{} ({}) data differs",
            t.name,
            t.ty
        );
    }
}

#[test]
fn quantize_matches_llama_quantize_tensor_for_tensor() {
    let src = fixtures().join("gguf/tiny-llama-f16.gguf");
    for ty in ["q4_0", "q8_0"] {
        let (_d, out, o) = quantize(&src, ty, &["--quiet"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        same_tensors(
            &out,
            &fixtures().join(format!("gguf/tiny-llama-{ty}.llamacpp.gguf")),
        );
        let f = Gguf::open(&out).unwrap();
        let want_ftype = if ty == "q4_0" { 2 } else { 7 };
        assert_eq!(f.get_u32("general.file_type").unwrap(), Some(want_ftype));
        assert_eq!(f.get_u32("general.quantization_version").unwrap(), Some(2));
        assert!(f.layout().warnings.is_empty());
        // Every other key survives, in order.
        let src_keys: Vec<String> = Gguf::open(&src)
            .unwrap()
            .metadata()
            .map(|(k, _)| k.to_owned())
            .collect();
        let out_keys: Vec<String> = f.metadata().map(|(k, _)| k.to_owned()).collect();
        assert_eq!(src_keys, out_keys);
    }
}

#[test]
fn quantize_pure_keep_and_json() {
    let src = fixtures().join("gguf/tiny-llama-f16.gguf");
    let (_d, out, o) = quantize(
        &src,
        "q8_0",
        &["--pure", "--keep", "blk.*.ffn_down.weight", "--json", "-q"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stderr.is_empty(), "--quiet prints nothing");
    let doc: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["type"], "Q8_0");
    assert_eq!(doc["tensors"].as_array().unwrap().len(), 21);
    let f = Gguf::open(&out).unwrap();
    assert_eq!(f.tensor("output.weight").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(f.tensor("blk.1.ffn_down.weight").unwrap().ty, GgmlType::F16);
    assert_eq!(f.tensor("blk.1.ffn_up.weight").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(f.tensor("output_norm.weight").unwrap().ty, GgmlType::F32);
    assert_eq!(
        doc["bytes_out"].as_u64().unwrap(),
        f.tensors().iter().map(|t| t.n_bytes).sum::<u64>()
    );
}

#[test]
fn quantize_requantizes_with_a_warning_and_refuses_what_it_cannot_decode() {
    let (_d, out, o) = quantize(
        &fixtures().join("gguf/tiny-llama-q4_k_m.llamacpp.gguf"),
        "q8_0",
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("losing accuracy twice"));
    assert!(
        Gguf::open(&out)
            .unwrap()
            .tensors()
            .iter()
            .any(|t| t.ty == GgmlType::Q8_0)
    );

    let (d, out, o) = quantize(
        &fixtures().join("gguf/tiny-llama-iq3_s.llamacpp.gguf"),
        "q4_0",
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot convert from IQ3_S") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "no partial file left"
    );
}

#[test]
fn quantize_refuses_bad_input_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    // A model whose last tensor's data is cut off.
    let full = std::fs::read(fixtures().join("gguf/tiny-llama-f16.gguf")).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &full[..full.len() - 1000]).unwrap();
    let out = dir.path().join("o.gguf");
    let o = ggufy(&[
        "quantize",
        cut.to_str().unwrap(),
        out.to_str().unwrap(),
        "q4_0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"));
    assert!(!out.exists());
    // Output onto its own input, an existing file, a bad type.
    let src = dir.path().join("m.gguf");
    std::fs::copy(fixtures().join("gguf/tiny-llama-f16.gguf"), &src).unwrap();
    let s = src.to_str().unwrap();
    let same = ggufy(&["quantize", s, s, "q4_0", "--force"]);
    assert_eq!(same.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&same.stderr).contains("same file as input"));
    assert_eq!(
        std::fs::read(&src).unwrap(),
        std::fs::read(fixtures().join("gguf/tiny-llama-f16.gguf")).unwrap()
    );
    let exists = ggufy(&["quantize", s, s, "q4_0"]);
    assert!(String::from_utf8_lossy(&exists.stderr).contains("--force"));
    assert_eq!(
        ggufy(&["quantize", s, "x.gguf", "q9_9"]).status.code(),
        Some(2)
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "nothing else written"
    );
}

// ---------------------------------------------------------------------------------------------
// NF4

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn nf4_layout_error_bound_and_round_trips() {
    let src_path = fixtures().join("gguf/tiny-llama-f16.gguf");
    let (_d, out, o) = quantize(&src_path, "nf4", &["-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (src, f) = (Gguf::open(&src_path).unwrap(), Gguf::open(&out).unwrap());
    assert!(f.layout().warnings.is_empty());
    assert_eq!(
        f.get("general.file_type"),
        None,
        "no llama_ftype claims NF4"
    );
    assert_eq!(f.get_u32("ggufy.nf4.block_size").unwrap(), Some(64));
    let listed: Vec<String> = f
        .get_array("ggufy.nf4.tensors")
        .unwrap()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed.len(),
        14,
        "every 2-D weight but the embeddings and output head"
    );
    assert_eq!(f.tensor("token_embd.weight").unwrap().ty, GgmlType::F16);
    for name in &listed {
        let (codes, scales, orig) = (
            f.tensor(name).unwrap(),
            f.tensor(&format!("{name}.absmax")).unwrap(),
            src.tensor(name).unwrap(),
        );
        assert_eq!(codes.ty, GgmlType::I8);
        assert_eq!(codes.dims, [orig.dims[0] / 2, orig.dims[1]]);
        assert_eq!(
            (scales.ty, scales.dims.clone()),
            (GgmlType::F32, vec![orig.dims[0] / 64, orig.dims[1]])
        );
        // Every value lands within half the widest codebook gap (0.304) of its block's absmax.
        let x: Vec<f32> = src
            .tensor_data(orig)
            .unwrap()
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        let am = f32s(f.tensor_data(scales).unwrap());
        let c = f.tensor_data(codes).unwrap();
        for (i, v) in x.iter().enumerate() {
            let q = if i % 2 == 0 {
                c[i / 2] >> 4
            } else {
                c[i / 2] & 0xF
            };
            let y = ggufy_quant::nf4::NF4_CODEBOOK[q as usize] * am[i / 64];
            assert!(
                (v - y).abs() <= 0.153 * am[i / 64] + 1e-6,
                "{name}[{i}]: {v} -> {y}"
            );
        }
    }
    let shown = ggufy(&["inspect", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("14 tensors, 1,179,648 elements"));
    // NF4 in, NF4 out: unchanged. NF4 in, Q8_0 out: decoded, warned, NF4 bookkeeping gone.
    let (_d2, again, o) = quantize(&out, "nf4", &["-q"]);
    assert!(o.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    let (_d3, q8, o) = quantize(&out, "q8_0", &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("(NF4)"));
    let g = Gguf::open(&q8).unwrap();
    assert!(g.metadata().all(|(k, _)| !k.starts_with("ggufy.nf4")));
    assert_eq!(g.tensor("blk.0.attn_q.weight").unwrap().dims, [256, 256]);
    assert!(g.tensor("blk.0.attn_q.weight.absmax").is_none());
}

// ---------------------------------------------------------------------------------------------
// convert

/// A copy of a bundled checkpoint in a fresh directory, to break.
fn checkpoint_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixtures().join("hf").join(name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

/// Runs `ggufy convert` into an empty directory; returns the output and what the directory holds
/// afterwards.
fn convert_into_empty_dir(src: &Path, extra: &[&str]) -> (Output, Vec<String>) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.gguf");
    let mut args = vec![
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = ggufy(&args);
    let left: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (o, left)
}

#[test]
fn convert_bundled_checkpoint_to_q4_0_then_inspect() {
    // README's main command.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-q4_0.gguf");
    let src = fixtures().join("hf/tiny-llama");
    let o = ggufy(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--outtype",
        "q4_0",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let i = ggufy(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(i.status.success());
    let j: Json = serde_json::from_slice(&i.stdout).unwrap();
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 21);
    let ty = |name: &str| {
        tensors.iter().find(|t| t["name"] == name).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // llama-quantize's Q4_0 recipe: Q6_K output (Q8_0 here: 128-wide rows are not whole
    // 256-element K blocks, and Q8_0 is llama.cpp's fallback), Q4_0 matrices, F32 norms.
    assert_eq!(ty("output.weight"), "Q8_0");
    assert_eq!(ty("blk.0.attn_q.weight"), "Q4_0");
    assert_eq!(ty("blk.0.attn_norm.weight"), "F32");
}

#[test]
fn convert_dry_run_reports_the_plan_and_writes_nothing() {
    let src = fixtures().join("hf/tiny-phi3");
    let (o, left) = convert_into_empty_dir(&src, &["--dry-run", "--json", "--outtype", "q8_0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(left.is_empty(), "{left:?}");
    let j: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["architecture"], "phi3");
    let t = j["tensors"].as_array().unwrap();
    let qkv = t
        .iter()
        .find(|t| t["name"] == "blk.0.attn_qkv.weight")
        .unwrap();
    assert_eq!(
        (&qkv["from"], &qkv["to"]),
        (&Json::from("BF16"), &Json::from("Q8_0"))
    );
    assert!(t.iter().any(|t| t["name"] == "rope_factors_long.weight"));
}

#[test]
fn convert_refuses_broken_checkpoints_cleanly() {
    // Each breakage of the two-shard bf16 llama: exit 1, one message naming the file and the
    // problem, and nothing left in the output directory (no file, no partial).
    type Break = fn(&Path);
    let cases: &[(&str, Break, &[&str])] = &[
        (
            "missing shard",
            |d| std::fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap(),
            &["model-00002-of-00002.safetensors", "missing"],
        ),
        (
            "truncated shard",
            |d| {
                let p = d.join("model-00001-of-00002.safetensors");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 100]).unwrap();
            },
            &["model-00001-of-00002.safetensors", "safetensors"],
        ),
        (
            "header lies about offsets",
            |d| {
                // Same-length header whose first tensor claims to end past the data.
                let p = d.join("model-00002-of-00002.safetensors");
                let mut b = std::fs::read(&p).unwrap();
                let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
                let header = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
                let at = header.find("\"data_offsets\":[").unwrap() + 16;
                let end = at + header[at..].find(']').unwrap();
                let (start, stop) = header[at..end].split_once(',').unwrap();
                let lie = format!("{start},{}", stop.parse::<u64>().unwrap() + 4096);
                let mut h = format!("{}{lie}{}", &header[..at], &header[end..]);
                h = h.trim_end().to_owned();
                assert!(h.len() <= n);
                h.push_str(&" ".repeat(n - h.len()));
                b[8..8 + n].copy_from_slice(h.as_bytes());
                std::fs::write(&p, b).unwrap();
            },
            &["model-00002-of-00002.safetensors", "safetensors"],
        ),
        (
            "config without required fields",
            |d| {
                let p = d.join("config.json");
                let mut c: Json = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                c.as_object_mut().unwrap().remove("hidden_size");
                std::fs::write(&p, c.to_string()).unwrap();
            },
            &["config.json", "hidden_size"],
        ),
        (
            "LFS pointer instead of weights",
            |d| {
                std::fs::write(
                    d.join("model-00001-of-00002.safetensors"),
                    "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 401408\n",
                )
                .unwrap();
            },
            &["model-00001-of-00002.safetensors", "LFS pointer"],
        ),
        (
            "unknown architecture",
            |d| {
                let p = d.join("config.json");
                let mut c: Json = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                c["architectures"] = serde_json::json!(["FalconForCausalLM"]);
                std::fs::write(&p, c.to_string()).unwrap();
            },
            &["FalconForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM"],
        ),
    ];
    for (what, break_it, expect) in cases {
        let ckpt = checkpoint_copy("tiny-llama");
        break_it(ckpt.path());
        let (o, left) = convert_into_empty_dir(ckpt.path(), &["--outtype", "q8_0"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        for e in *expect {
            assert!(err.contains(e), "{what}: want {e:?} in {err}");
        }
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(left.is_empty(), "{what}: left {left:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// tokenize / detokenize

#[test]
fn tokenize_and_detokenize_round_trip_on_the_bundled_model() {
    let model = fixtures().join("gguf/tiny-llama-f16.gguf");
    let m = model.to_str().unwrap();
    let text = "Hello world, once upon a time";
    let o = ggufy(&["tokenize", m, text, "--json", "--show-pieces"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Json = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<String> = j["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap().to_string())
        .collect();
    assert_eq!(j["count"].as_u64().unwrap() as usize, ids.len());
    assert_eq!(j["pieces"].as_array().unwrap().len(), ids.len());
    // BOS first, as the vocabulary asks; the plain form prints the same ids.
    assert_eq!(ids[0], "1");
    let plain = ggufy(&["tokenize", m, text]);
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), ids.join(" "));
    let mut args = vec!["detokenize", m];
    args.extend(ids.iter().map(String::as_str));
    let d = ggufy(&args);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    // llama.cpp keeps SentencePiece's leading space when it drops the BOS.
    assert_eq!(String::from_utf8_lossy(&d.stdout), format!(" {text}\n"));
    let no_bos = ggufy(&["tokenize", m, text, "--no-special"]);
    assert_eq!(
        String::from_utf8_lossy(&no_bos.stdout).trim(),
        ids[1..].join(" ")
    );
}

#[test]
fn detokenize_refuses_ids_outside_the_vocabulary() {
    let model = fixtures().join("gguf/tiny-llama-f16.gguf");
    let m = model.to_str().unwrap();
    for bad in ["100000", "-1"] {
        let o = ggufy(&["detokenize", m, "1", bad]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(bad) && err.contains("out of range"), "{err}");
    }
    assert_eq!(ggufy(&["detokenize", m]).status.code(), Some(2));
    assert_eq!(ggufy(&["tokenize", m]).status.code(), Some(1));
    let not_gguf = ggufy(&["tokenize", "/nonexistent.gguf", "x"]);
    assert_eq!(not_gguf.status.code(), Some(1));
}

// ---------------------------------------------------------------------------------------------
// run

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn greedy_generation_matches_llama_cpp_on_every_fixture_architecture() {
    // fixtures/golden/run/greedy.json: llama-simple's stdout (prompt pieces, generated pieces,
    // a newline) on F16, Q8_0 and Q4_0 files of each fixture checkpoint.
    let golden: Json =
        serde_json::from_slice(&std::fs::read(fixtures().join("golden/run/greedy.json")).unwrap())
            .unwrap();
    // ggufy follows llama.cpp's arithmetic (activation quantization, block sums, F16 lane orders,
    // flash attention's f16 accumulator), so every generation must agree in full (18 of them,
    // 64 tokens each), near-ties of these random-weight models included.
    const MIN_AGREE: usize = 64;
    const MIN_FULL: usize = 18;
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    let mut full = 0;
    let cases = golden.as_array().unwrap();
    assert!(cases.len() >= 18);
    for c in cases {
        let ckpt = c["checkpoint"].as_str().unwrap();
        let ty = c["type"].as_str().unwrap();
        let src = fixtures().join("hf").join(ckpt);
        let f16 = dir.path().join(format!("{ckpt}.f16.gguf"));
        let file = dir.path().join(format!("{ckpt}.{ty}.gguf"));
        let mut convert = vec![
            "convert".to_string(),
            src.to_str().unwrap().into(),
            "-o".into(),
            f16.to_str().unwrap().into(),
            "--force".into(),
            "--quiet".into(),
        ];
        if let Some(pre) = c["vocab_pre"].as_str() {
            convert.extend(["--vocab-pre".into(), pre.into()]);
        }
        let args: Vec<&str> = convert.iter().map(String::as_str).collect();
        assert!(ggufy(&args).status.success(), "{ckpt}");
        let made = match ty {
            "f16" => true,
            "q8_0" => {
                let mut a = args.clone();
                a[3] = file.to_str().unwrap();
                a.extend(["--outtype", "q8_0"]);
                ggufy(&a).status.success()
            }
            _ => ggufy(&[
                "quantize",
                f16.to_str().unwrap(),
                file.to_str().unwrap(),
                ty,
                "--force",
                "--quiet",
            ])
            .status
            .success(),
        };
        assert!(made, "{ckpt} {ty}");
        let path = if ty == "f16" { &f16 } else { &file };
        let n = c["n_predict"].as_u64().unwrap().to_string();
        let o = ggufy(&[
            "run",
            path.to_str().unwrap(),
            "-p",
            c["prompt"].as_str().unwrap(),
            "-n",
            &n,
            "--greedy",
            "--json",
        ]);
        assert!(
            o.status.success(),
            "{ckpt} {ty}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let j: Json = serde_json::from_slice(&o.stdout).unwrap();
        let gguf = ggufy_gguf::Gguf::open(path).unwrap();
        let tok = ggufy_tokenizer::Tokenizer::from_gguf(&gguf).unwrap();
        let piece = |id: &Json| {
            tok.token_to_piece(id.as_u64().unwrap() as u32, 0, true)
                .unwrap()
                .to_vec()
        };
        let want = unhex(c["stdout_hex"].as_str().unwrap());
        let prompt: Vec<u8> = j["prompt_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(piece)
            .collect();
        assert!(
            want.starts_with(&prompt),
            "{ckpt} {ty}: prompt rendered differently"
        );
        // How many generated tokens agree with llama.cpp's text, piece by piece.
        let mut rest = &want[prompt.len()..want.len() - 1];
        let generated = j["tokens"].as_array().unwrap();
        let mut agree = 0;
        for id in generated {
            let p = piece(id);
            if !rest.starts_with(&p) {
                break;
            }
            rest = &rest[p.len()..];
            agree += 1;
        }
        let all = agree == generated.len() && rest.is_empty();
        full += usize::from(all);
        summary.push(format!(
            "{ckpt} {ty}: {agree}/{}{}",
            generated.len(),
            if all { "" } else { " (diverges)" }
        ));
        if agree < MIN_AGREE && !all {
            failures.push(format!(
                "{ckpt} {ty}: only {agree} tokens agree\n  llama.cpp {:?}\n  ggufy     {:?}",
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&generated.iter().flat_map(piece).collect::<Vec<u8>>())
            ));
        }
    }
    eprintln!("{}", summary.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        full >= MIN_FULL,
        "only {full} of {} generations agree in full",
        cases.len()
    );
}

#[test]
fn nf4_files_run_and_agree_with_their_f32_dequantization() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("hf/tiny-llama-nf4");
    let mut tokens = Vec::new();
    for ty in ["nf4", "f32"] {
        let out = dir.path().join(format!("m.{ty}.gguf"));
        let c = ggufy(&[
            "convert",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--outtype",
            ty,
            "--quiet",
        ]);
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
        let r = ggufy(&[
            "run",
            out.to_str().unwrap(),
            "-p",
            "Hello",
            "-n",
            "16",
            "--greedy",
            "--json",
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let j: Json = serde_json::from_slice(&r.stdout).unwrap();
        tokens.push(j["tokens"].clone());
    }
    assert_eq!(tokens[0].as_array().unwrap().len(), 16);
    assert_eq!(tokens[0], tokens[1]);
}

#[test]
fn run_refuses_what_it_cannot_run() {
    // A vocab-only file has no weights; a bad prompt file path; an unknown architecture.
    let vocab_only = fixtures().join("gguf/all-types.gguf");
    let o = ggufy(&["run", vocab_only.to_str().unwrap(), "-p", "x"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// F16 (converted), Q8_0 (converted) and Q4_0 (quantized from the F16) files of a fixture
/// checkpoint, as fixtures/make_run_goldens.py makes them for llama.cpp.
fn fixture_models(dir: &Path, ckpt: &str, vocab_pre: Option<&str>) -> [(String, PathBuf); 3] {
    let src = fixtures().join("hf").join(ckpt);
    let path = |t: &str| dir.join(format!("{ckpt}.{t}.gguf"));
    for t in ["f16", "q8_0"] {
        let out = path(t);
        let mut a = vec![
            "convert",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--outtype",
            t,
            "--quiet",
            "--force",
        ];
        if let Some(p) = vocab_pre {
            a.extend(["--vocab-pre", p]);
        }
        assert!(ggufy(&a).status.success(), "{ckpt} {t}");
    }
    let q = ggufy(&[
        "quantize",
        path("f16").to_str().unwrap(),
        path("q4_0").to_str().unwrap(),
        "q4_0",
        "--force",
        "--quiet",
    ]);
    assert!(q.status.success(), "{ckpt} q4_0");
    ["f16", "q8_0", "q4_0"].map(|t| (t.to_string(), path(t)))
}

#[test]
fn perplexity_and_kl_divergence_match_llama_perplexity() {
    // fixtures/golden/run/perplexity.json: llama-perplexity -c 64 -b 64 --chunks 8 on
    // fixtures/text/held-out.txt, and its KL divergence of the Q8_0 and Q4_0 files from the F16.
    let golden: Json = serde_json::from_slice(
        &std::fs::read(fixtures().join("golden/run/perplexity.json")).unwrap(),
    )
    .unwrap();
    let text = fixtures().join("text/held-out.txt");
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let mut models = std::collections::HashMap::new();
    for c in golden.as_array().unwrap() {
        let ckpt = c["checkpoint"].as_str().unwrap();
        let ty = c["type"].as_str().unwrap();
        let files = models
            .entry(ckpt.to_string())
            .or_insert_with(|| fixture_models(dir.path(), ckpt, c["vocab_pre"].as_str()));
        let file = &files.iter().find(|(t, _)| t == ty).unwrap().1;
        let base = &files[0].1;
        let mut args = vec![
            "perplexity",
            file.to_str().unwrap(),
            "-f",
            text.to_str().unwrap(),
            "--ctx",
            "64",
            "--chunks",
            "8",
            "--json",
        ];
        if ty != "f16" {
            args.extend(["--base", base.to_str().unwrap()]);
        }
        let o = ggufy(&args);
        assert!(
            o.status.success(),
            "{ckpt} {ty}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let j: Json = serde_json::from_slice(&o.stdout).unwrap();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
        let (got, want) = (j["ppl"].as_f64().unwrap(), c["ppl"].as_f64().unwrap());
        // The issue asks for 1%; the arithmetic follows llama.cpp's closely enough for 0.1%.
        if rel(got, want) > 1e-3 {
            problems.push(format!("{ckpt} {ty}: PPL {got} vs llama.cpp {want}"));
        }
        if ty != "f16" {
            let (kl, want_kl) = (
                j["mean_kl"].as_f64().unwrap(),
                c["mean_kl"].as_f64().unwrap(),
            );
            // llama.cpp prints six decimals and stores log-probabilities as 16-bit steps.
            if (kl - want_kl).abs() > (0.05 * want_kl).max(2e-6) {
                problems.push(format!("{ckpt} {ty}: mean KL {kl} vs llama.cpp {want_kl}"));
            }
            let top = 100.0 * j["top1_agreement"].as_f64().unwrap();
            let want_top = c["same_top_pct"].as_f64().unwrap();
            if (top - want_top).abs() > 2.5 {
                problems.push(format!(
                    "{ckpt} {ty}: same top {top:.3}% vs llama.cpp {want_top}%"
                ));
            }
            let base_ppl = j["base_ppl"].as_f64().unwrap();
            if rel(base_ppl, c["base_ppl"].as_f64().unwrap()) > 1e-3 {
                problems.push(format!("{ckpt} {ty}: base PPL {base_ppl}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn perplexity_gate_fails_the_run_when_quality_drops() {
    let dir = tempfile::tempdir().unwrap();
    let files = fixture_models(dir.path(), "tiny-llama", None);
    let text = fixtures().join("text/held-out.txt");
    let args = |max_kl: &'static str| {
        vec![
            "perplexity".to_string(),
            files[2].1.to_str().unwrap().into(),
            "-f".into(),
            text.to_str().unwrap().into(),
            "--ctx".into(),
            "64".into(),
            "--chunks".into(),
            "2".into(),
            "--base".into(),
            files[0].1.to_str().unwrap().into(),
            "--max-kl".into(),
            max_kl.into(),
        ]
    };
    let run = |a: Vec<String>| ggufy(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let pass = run(args("0.1"));
    assert!(
        pass.status.success(),
        "{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    let fail = run(args("0.00001"));
    assert_eq!(fail.status.code(), Some(1));
    let err = String::from_utf8_lossy(&fail.stderr);
    assert!(
        err.contains("quality gate failed") && err.contains("--max-kl"),
        "{err}"
    );
    // The report is still printed.
    assert!(String::from_utf8_lossy(&fail.stdout).contains("Mean KLD"));
    // Too little text for the context is an error, not a panic.
    let short = ggufy(&[
        "perplexity",
        files[0].1.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "--ctx",
        "4096",
    ]);
    assert_eq!(short.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least"));
}

#[test]
fn run_chat_renders_the_files_template_around_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("qwen2.gguf");
    let src = fixtures().join("hf/tiny-qwen2");
    let o = ggufy(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
        "--vocab-pre",
        "qwen2",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = model.to_str().unwrap();
    let o = ggufy(&[
        "run",
        m,
        "--chat",
        "--system",
        "Be brief.",
        "-p",
        "Hi there",
        "-n",
        "4",
        "--greedy",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Qwen2's ChatML template, as transformers renders it.
    assert_eq!(
        doc["prompt"],
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
    // The markers are parsed as special tokens: tokenizing the same text with special parsing
    // gives the same ids.
    let t = ggufy(&[
        "tokenize",
        m,
        doc["prompt"].as_str().unwrap(),
        "--parse-special",
        "--json",
    ]);
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let ids: serde_json::Value = serde_json::from_slice(&t.stdout).unwrap();
    assert_eq!(doc["prompt_tokens"], ids["ids"], "{ids}");

    // A template that raises, or a missing file, is a clear error.
    let bad = dir.path().join("bad.jinja");
    std::fs::write(&bad, "{{ raise_exception('only user messages') }}").unwrap();
    let o = ggufy(&[
        "run",
        m,
        "--chat",
        "-p",
        "x",
        "--chat-template",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("only user messages"), "{err}");
    let o = ggufy(&[
        "run",
        m,
        "--chat",
        "-p",
        "x",
        "--chat-template",
        "/nonexistent.jinja",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.jinja"));
}

// ---------------------------------------------------------------------------------------------
// release conveniences

#[test]
fn version_names_the_git_revision_and_target() {
    let o = ggufy(&["--version"]);
    assert!(o.status.success());
    let v = String::from_utf8_lossy(&o.stdout);
    // "ggufy 0.1.0 (git 0123456789ab, x86_64-unknown-linux-gnu)"
    let rev = v
        .split("(git ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("");
    assert!(
        rev == "unknown" || (rev.len() == 12 && rev.chars().all(|c| c.is_ascii_hexdigit())),
        "{v}"
    );
    assert!(
        v.starts_with(&format!("ggufy {} ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(
        v.contains("-linux-") || v.contains("-apple-") || v.contains("-windows-"),
        "{v}"
    );
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    let commands = [
        "inspect",
        "convert",
        "quantize",
        "run",
        "perplexity",
        "tokenize",
        "detokenize",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = ggufy(&["completions", shell]);
        assert!(o.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&o.stdout);
        for c in commands {
            assert!(script.contains(c), "{shell} completions lack {c}");
        }
        assert!(script.contains("outtype"), "{shell}: options too");
    }
    // The bash script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("ggufy.bash");
    std::fs::write(&bash, ggufy(&["completions", "bash"]).stdout).unwrap();
    let o = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!ggufy(&["completions", "tcsh"]).status.success());

    let o = ggufy(&["man"]);
    assert!(o.status.success());
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.contains(".TH ggufy 1"), "{page}");
    for c in commands {
        assert!(page.contains(c), "man page lacks {c}");
    }
    let pages = dir.path().join("man1");
    let o = ggufy(&["man", "--out-dir", pages.to_str().unwrap()]);
    assert!(o.status.success());
    for c in commands {
        let p = std::fs::read_to_string(pages.join(format!("ggufy-{c}.1"))).unwrap();
        assert!(p.contains(&format!(".TH ggufy-{c} 1")), "{c}");
    }
    let convert = std::fs::read_to_string(pages.join("ggufy-convert.1")).unwrap();
    assert!(convert.contains("outtype"));
}

#[cfg(not(feature = "gpu"))]
#[test]
fn device_gpu_without_gpu_support_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    let src = fixtures().join("gguf/tiny-llama-f16.gguf");
    let o = ggufy(&[
        "quantize",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "q8_0",
        "--device",
        "gpu",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("built without GPU support") && err.contains("--features gpu"),
        "{err}"
    );
    assert!(!out.exists());
}

#[cfg(not(any(feature = "gpu", feature = "cuda")))]
#[test]
fn device_auto_falls_back_to_the_cpu_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("gguf/tiny-llama-f16.gguf");
    let (auto, cpu) = (dir.path().join("auto.gguf"), dir.path().join("cpu.gguf"));
    let src = src.to_str().unwrap();
    let o = ggufy(&[
        "quantize",
        src,
        auto.to_str().unwrap(),
        "q4_0",
        "--device",
        "auto",
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("falling back to the CPU") && err.contains("without CUDA support"),
        "{err}"
    );
    let o = ggufy(&["quantize", src, cpu.to_str().unwrap(), "q4_0", "-q"]);
    assert!(o.status.success());
    assert_eq!(std::fs::read(auto).unwrap(), std::fs::read(&cpu).unwrap());
    let o = ggufy(&[
        "quantize",
        src,
        cpu.to_str().unwrap(),
        "q4_0",
        "--device",
        "cuda",
        "-f",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--features cuda"));
}
