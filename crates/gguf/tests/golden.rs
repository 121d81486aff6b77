//! ggufy's reader against gguf-py's `GGUFReader`: every fixture (gguf-py- and llama.cpp-made) and
//! every llama.cpp vocab file must read back with exactly the header, metadata values and tensor
//! table that gguf-py reports in `fixtures/golden/` (regenerate with `fixtures/make_fixtures.py`).

mod common;

use std::path::Path;

use ggufy_gguf::{Endian, Gguf, Value, ValueType};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// gguf-py's `ReaderField.types`: the main type, then for arrays the first element's types.
fn types_of(v: &Value<'_>) -> Vec<String> {
    let mut out = vec![v.value_type().name().to_owned()];
    if let Value::Array(a) = v
        && let Some(first) = a.iter().next()
    {
        out.extend(types_of(&first));
    }
    out
}

/// gguf-py's `contents()` flattens nested arrays into one list of leaves.
fn flatten<'a>(v: Value<'a>, out: &mut Vec<Value<'a>>) {
    match v {
        Value::Array(a) => a.iter().for_each(|e| flatten(e, out)),
        leaf => out.push(leaf),
    }
}

/// The golden script's normal form: floats as bit patterns, everything else as JSON.
fn norm(v: &Value<'_>) -> Json {
    match *v {
        Value::F32(x) => json!({ "f32": x.to_bits() }),
        Value::F64(x) => json!({ "f64": x.to_bits().to_string() }),
        Value::Bool(b) => json!(b),
        Value::String(s) => json!(std::str::from_utf8(s).expect("fixture strings are UTF-8")),
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::Array(_) => unreachable!("flattened"),
    }
}

fn digest(leaves: &[Value<'_>]) -> String {
    let mut h = Sha256::new();
    for v in leaves {
        match *v {
            Value::String(s) => {
                h.update(s);
                h.update([0u8]);
            }
            Value::F32(x) => h.update(x.to_le_bytes()),
            Value::F64(x) => h.update(x.to_le_bytes()),
            Value::Bool(b) => h.update(u64::from(b).to_le_bytes()),
            _ => {
                let i = v.as_i64().map(|i| i as u64).or(v.as_u64()).unwrap();
                h.update(i.to_le_bytes());
            }
        }
    }
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check_against_golden(file: &Path, golden: &Path) {
    let g: Json = serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    let f = Gguf::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let l = f.layout();
    let ctx = file.display();
    assert_eq!(json!(l.version), g["version"], "{ctx}: version");
    let endian = if l.endian == Endian::Big {
        "big"
    } else {
        "little"
    };
    assert_eq!(json!(endian), g["endian"], "{ctx}: endian");
    assert_eq!(
        json!(f.tensors().len()),
        g["tensor_count"],
        "{ctx}: tensor count"
    );
    assert_eq!(json!(f.metadata_len()), g["kv_count"], "{ctx}: kv count");
    assert_eq!(json!(l.alignment), g["alignment"], "{ctx}: alignment");
    assert_eq!(json!(l.data_offset), g["data_offset"], "{ctx}: data offset");

    let fields = g["fields"].as_array().unwrap();
    assert_eq!(fields.len(), f.metadata_len(), "{ctx}: field count");
    for ((key, v), gf) in f.metadata().zip(fields) {
        assert_eq!(json!(key), gf["key"], "{ctx}: key order");
        assert_eq!(json!(types_of(&v)), gf["types"], "{ctx}: {key} types");
        if v.value_type() == ValueType::Array {
            let mut leaves = Vec::new();
            flatten(v, &mut leaves);
            assert_eq!(json!(leaves.len()), gf["len"], "{ctx}: {key} length");
            let head: Vec<Json> = leaves.iter().take(8).map(norm).collect();
            assert_eq!(json!(head), gf["head"], "{ctx}: {key} first values");
            assert_eq!(json!(digest(&leaves)), gf["digest"], "{ctx}: {key} digest");
        } else {
            assert_eq!(norm(&v), gf["value"], "{ctx}: {key} value");
        }
    }

    let tensors = g["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), f.tensors().len());
    for (t, gt) in f.tensors().iter().zip(tensors) {
        let name = &t.name;
        assert_eq!(json!(name), gt["name"], "{ctx}: tensor order");
        assert_eq!(json!(t.ty.name()), gt["type"], "{ctx}: {name} type");
        assert_eq!(json!(t.dims), gt["shape"], "{ctx}: {name} shape");
        assert_eq!(
            json!(t.n_elements),
            gt["n_elements"],
            "{ctx}: {name} elements"
        );
        assert_eq!(json!(t.n_bytes), gt["n_bytes"], "{ctx}: {name} bytes");
        assert_eq!(
            json!(l.data_offset + t.offset),
            gt["data_offset"],
            "{ctx}: {name} absolute offset"
        );
        let data = f.tensor_data(t).unwrap();
        assert_eq!(
            json!(hex(&Sha256::digest(data))),
            gt["sha256"],
            "{ctx}: {name} data"
        );
    }
    assert!(
        l.warnings.iter().all(|w| w.contains("big-endian")),
        "{ctx}: {:?}",
        l.warnings
    );
}

#[test]
fn fixtures_read_exactly_as_gguf_py_reads_them() {
    let dir = common::fixtures();
    let files = common::gguf_files(&dir.join("gguf"));
    assert!(files.len() >= 14, "fixtures missing: {files:?}");
    for file in files {
        let golden = dir.join("golden").join(format!(
            "{}.json",
            file.file_name().unwrap().to_string_lossy()
        ));
        check_against_golden(&file, &golden);
    }
}

/// llama.cpp's own vocab files (`../shared/vocab`, or `$GGUFY_VOCAB_DIR`); skipped with a note when
/// that folder is absent.
#[test]
fn llama_cpp_vocab_files_read_exactly_as_gguf_py_reads_them() {
    let Some(vocab) = common::vocab_dir() else {
        eprintln!("skipped: no ../shared/vocab (set GGUFY_VOCAB_DIR)");
        return;
    };
    let goldens = common::fixtures().join("golden/vocab");
    let mut n = 0;
    for file in common::gguf_files(&vocab) {
        let golden = goldens.join(format!(
            "{}.json",
            file.file_name().unwrap().to_string_lossy()
        ));
        if golden.exists() {
            check_against_golden(&file, &golden);
            n += 1;
        }
    }
    assert!(n >= 8, "only {n} vocab goldens checked");
}
