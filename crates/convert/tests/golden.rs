//! ggufy's conversions of the fixture checkpoints against llama.cpp's own converter: for each
//! golden in fixtures/golden/convert (made by fixtures/make_convert_goldens.py running
//! convert_hf_to_gguf.py), the same tensor names, shapes, types and data bytes (sha256), and the
//! same metadata keys with the same value types and values. Free-text `general.*` naming
//! (name, basename, …) may differ, as the issue allows.

use std::path::{Path, PathBuf};

use ggufy_convert::{ConvertOptions, Converter, OutType, VocabOptions};
use ggufy_gguf::{Gguf, Value};
use ggufy_plan::{ExecOptions, execute};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The value type names gguf-py uses.
fn type_name(v: &Value<'_>) -> &'static str {
    match v {
        Value::U8(_) => "UINT8",
        Value::I8(_) => "INT8",
        Value::U16(_) => "UINT16",
        Value::I16(_) => "INT16",
        Value::U32(_) => "UINT32",
        Value::I32(_) => "INT32",
        Value::F32(_) => "FLOAT32",
        Value::Bool(_) => "BOOL",
        Value::String(_) => "STRING",
        Value::Array(_) => "ARRAY",
        Value::U64(_) => "UINT64",
        Value::I64(_) => "INT64",
        Value::F64(_) => "FLOAT64",
    }
}

fn scalar_json(v: &Value<'_>) -> Json {
    match v {
        Value::U8(x) => Json::from(*x),
        Value::I8(x) => Json::from(*x),
        Value::U16(x) => Json::from(*x),
        Value::I16(x) => Json::from(*x),
        Value::U32(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::F32(x) => Json::from(f64::from(*x)),
        Value::Bool(x) => Json::from(*x),
        Value::String(s) => Json::from(String::from_utf8_lossy(s).into_owned()),
        Value::U64(x) => Json::from(*x),
        Value::I64(x) => Json::from(*x),
        Value::F64(x) => Json::from(*x),
        Value::Array(_) => Json::Null,
    }
}

/// GGUF encoding of one array element (strings: u64 length + bytes).
fn element_bytes(v: &Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s);
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(_) => {}
    }
}

/// Free-text naming keys the issue lets differ (model card naming); everything else under
/// `general.` — architecture, type, file type, sampling defaults — must match.
fn free_text(key: &str) -> bool {
    const NAMING: &[&str] = &[
        "general.name",
        "general.basename",
        "general.finetune",
        "general.size_label",
        "general.version",
        "general.author",
        "general.organization",
        "general.description",
        "general.quantized_by",
        "general.url",
        "general.doi",
        "general.uuid",
        "general.repo_url",
        "general.license",
        "general.license.name",
        "general.license.link",
        "general.tags",
        "general.languages",
    ];
    NAMING.contains(&key)
        || key.starts_with("general.base_model.")
        || key.starts_with("general.dataset.")
        || key.starts_with("general.source.")
}

fn summarize_meta(path: &Path) -> Vec<Json> {
    let f = Gguf::open(path).unwrap();
    let mut out = Vec::new();
    for (k, v) in f.metadata() {
        let mut e = serde_json::json!({"key": k, "type": type_name(&v)});
        if let Value::Array(a) = &v {
            let items: Vec<Value<'_>> = a.iter().collect();
            let mut bytes = Vec::new();
            for it in &items {
                element_bytes(it, &mut bytes);
            }
            e["elem"] = Json::from(items.first().map_or("?", type_name));
            e["len"] = Json::from(items.len());
            e["sha256"] = Json::from(hex(Sha256::digest(&bytes)));
        } else {
            e["value"] = scalar_json(&v);
        }
        out.push(e);
    }
    out
}

fn summarize_tensors(path: &Path) -> Vec<Json> {
    let f = Gguf::open(path).unwrap();
    f.tensors()
        .iter()
        .map(|t| {
            let data = f.tensor_data(t).unwrap();
            serde_json::json!({"name": t.name, "shape": t.dims, "type": t.ty.name(),
                "bytes": data.len(), "sha256": hex(Sha256::digest(data))})
        })
        .collect()
}

fn check(golden_path: &Path) -> Vec<String> {
    let golden: Json = serde_json::from_slice(&std::fs::read(golden_path).unwrap()).unwrap();
    let ckpt = golden["checkpoint"].as_str().unwrap();
    let outtype = golden["outtype"].as_str().unwrap();
    let opts = ConvertOptions {
        outtype: OutType::parse(outtype).unwrap(),
        vocab: VocabOptions {
            pre_override: golden["pre_override"].as_str().map(str::to_owned),
        },
        model_name: None,
    };
    let dir = root().join("fixtures/hf").join(ckpt);
    let conv = Converter::open(&dir, &opts).unwrap_or_else(|e| panic!("{ckpt}: {e}"));
    let (plan, _) = conv.plan().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (out, _) = execute(
        &plan,
        &tmp.path().join("out.gguf"),
        &ExecOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();

    let mut problems = Vec::new();
    let label = format!("{ckpt} {outtype}");
    let want_t = golden["tensors"].as_array().unwrap();
    let got_t = summarize_tensors(&out);
    let names = |v: &[Json]| {
        v.iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    if names(want_t) != names(&got_t) {
        problems.push(format!(
            "{label}: tensor names/order differ:\n  want {:?}\n  got  {:?}",
            names(want_t),
            names(&got_t)
        ));
    }
    for w in want_t {
        match got_t.iter().find(|g| g["name"] == w["name"]) {
            None => {}
            Some(g) => {
                for field in ["shape", "type", "bytes", "sha256"] {
                    if g[field] != w[field] {
                        problems.push(format!(
                            "{label}: tensor {} {field}: want {} got {}",
                            w["name"], w[field], g[field]
                        ));
                    }
                }
            }
        }
    }
    let want_m: Vec<&Json> = golden["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !free_text(e["key"].as_str().unwrap()))
        .collect();
    let got_all = summarize_meta(&out);
    let got_m: Vec<&Json> = got_all
        .iter()
        .filter(|e| !free_text(e["key"].as_str().unwrap()))
        .collect();
    let keys = |v: &[&Json]| {
        v.iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    if keys(&want_m) != keys(&got_m) {
        problems.push(format!(
            "{label}: metadata keys/order differ:\n  want {:?}\n  got  {:?}",
            keys(&want_m),
            keys(&got_m)
        ));
    }
    for w in &want_m {
        let Some(g) = got_m.iter().find(|g| g["key"] == w["key"]) else {
            continue;
        };
        for field in ["type", "value", "elem", "len", "sha256"] {
            if w.get(field).is_some() && g.get(field) != w.get(field) {
                problems.push(format!(
                    "{label}: key {} {field}: want {} got {}",
                    w["key"],
                    w[field],
                    g.get(field).unwrap_or(&Json::Null)
                ));
            }
        }
    }
    problems
}

#[test]
fn conversions_match_llama_cpp() {
    let dir = root().join("fixtures/golden/convert");
    let mut goldens: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.ends_with(".json") && n.matches('.').count() == 2 && !n.contains(".dequant.")
        })
        .collect();
    goldens.sort();
    assert!(goldens.len() >= 10, "expected goldens in {}", dir.display());
    let problems: Vec<String> = goldens.iter().flat_map(|g| check(g)).collect();
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
