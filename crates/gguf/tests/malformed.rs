//! The malformed corpus (`fixtures/malformed/`, built by `fixtures/make_fixtures.py`): each file
//! must be rejected with an error containing the expected text, or accepted (with the expected
//! warning, when one is listed), exactly as `expected.tsv` says.

mod common;

use ggufy_gguf::{Gguf, GgufError, Limits};

#[test]
fn every_malformed_file_gets_its_error() {
    let dir = common::fixtures().join("malformed");
    let table = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, outcome, text] = cols[..] else {
            panic!("bad row {line:?}")
        };
        let result = Gguf::open(dir.join(file));
        match (outcome, &result) {
            ("error", Err(e)) => {
                let msg = e.to_string();
                if !msg.contains(text) || msg.contains('\n') {
                    failures.push(format!("{file}: error {msg:?} lacks {text:?}"));
                }
            }
            ("ok", Ok(f)) => {
                if !text.is_empty() && !f.layout().warnings.iter().any(|w| w.contains(text)) {
                    failures.push(format!(
                        "{file}: warnings {:?} lack {text:?}",
                        f.layout().warnings
                    ));
                }
            }
            _ => failures.push(format!(
                "{file}: expected {outcome}, got {:?}",
                result.map(|_| ())
            )),
        }
        checked += 1;
    }
    assert!(checked >= 70, "only {checked} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_say_where() {
    let dir = common::fixtures().join("malformed");
    match Gguf::open(dir.join("duplicate-key.gguf")) {
        Err(GgufError::Malformed { field, offset, .. }) => {
            assert_eq!(field, "metadata key 'a.b'");
            assert!(offset > 24);
        }
        other => panic!("{other:?}"),
    }
}

/// The KV budget holds even when the file is big enough to back the count.
#[test]
fn metadata_count_budget() {
    let limits = Limits {
        max_kv: 10,
        ..Limits::default()
    };
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&11u64.to_le_bytes());
    b.resize(4096, 0);
    let e = Gguf::from_bytes_with(&b[..], limits).unwrap_err();
    assert!(
        e.to_string().contains("11 entries exceeds the limit of 10"),
        "{e}"
    );
}
