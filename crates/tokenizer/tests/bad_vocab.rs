//! Broken vocabularies (users-and-security.md §2.2 items 30–34) give errors naming the key and
//! index, never a panic or a silently wrong tokenizer.

use ggufy_gguf::{Gguf, MetaArray, MetaValue};
use ggufy_tokenizer::{Tokenizer, TokenizerError};

type Meta = Vec<(String, MetaValue)>;

fn strings(v: &[&str]) -> MetaValue {
    MetaValue::Array(MetaArray::String(v.iter().map(|s| s.to_string()).collect()))
}

/// A small valid SentencePiece-style vocabulary.
fn spm() -> Meta {
    let tokens = [
        "<unk>",
        "<s>",
        "</s>",
        "<0x41>",
        "\u{2581}",
        "a",
        "b",
        "\u{2581}a",
        "ab",
    ];
    vec![
        (
            "tokenizer.ggml.model".into(),
            MetaValue::String("llama".into()),
        ),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        (
            "tokenizer.ggml.scores".into(),
            MetaValue::Array(MetaArray::F32(vec![
                0., 0., 0., 0., -1., -2., -3., -1.5, -2.5,
            ])),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            MetaValue::Array(MetaArray::I32(vec![2, 3, 3, 6, 1, 1, 1, 1, 1])),
        ),
    ]
}

/// A small valid byte-level BPE vocabulary.
fn bpe() -> Meta {
    vec![
        (
            "tokenizer.ggml.model".into(),
            MetaValue::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            MetaValue::String("gpt-2".into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            strings(&["a", "b", "ab", "Ġ", "Ġab"]),
        ),
        ("tokenizer.ggml.merges".into(), strings(&["a b", "Ġ ab"])),
        ("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(0)),
        ("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(0)),
    ]
}

/// GGUF v3 bytes for `meta` and no tensors, written by hand: ggufy's writer refuses the wrongly
/// typed keys these tests need.
fn raw_gguf(meta: &Meta) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    fn value(out: &mut Vec<u8>, v: &MetaValue) {
        match v {
            MetaValue::U8(x) => out.push(*x),
            MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::Bool(x) => out.push(u8::from(*x)),
            MetaValue::String(x) => s(out, x),
            MetaValue::Array(a) => {
                let (ty, n): (u32, usize) = match a {
                    MetaArray::U8(v) => (0, v.len()),
                    MetaArray::U32(v) => (4, v.len()),
                    MetaArray::I32(v) => (5, v.len()),
                    MetaArray::F32(v) => (6, v.len()),
                    MetaArray::String(v) => (8, v.len()),
                    _ => unimplemented!(),
                };
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&(n as u64).to_le_bytes());
                match a {
                    MetaArray::U8(v) => out.extend_from_slice(v),
                    MetaArray::U32(v) => v
                        .iter()
                        .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                    MetaArray::I32(v) => v
                        .iter()
                        .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                    MetaArray::F32(v) => v
                        .iter()
                        .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                    MetaArray::String(v) => v.iter().for_each(|x| s(out, x)),
                    _ => unimplemented!(),
                }
            }
            _ => unimplemented!(),
        }
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        s(&mut out, k);
        out.extend_from_slice(&v.value_type().id().to_le_bytes());
        value(&mut out, v);
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out
}

fn load(meta: Meta) -> Result<Tokenizer, TokenizerError> {
    let file = Gguf::from_bytes(raw_gguf(&meta)).unwrap();
    Tokenizer::from_gguf(&file)
}

fn set(mut meta: Meta, key: &str, v: MetaValue) -> Meta {
    match meta.iter_mut().find(|(k, _)| k == key) {
        Some(e) => e.1 = v,
        None => meta.push((key.into(), v)),
    }
    meta
}

fn without(mut meta: Meta, key: &str) -> Meta {
    meta.retain(|(k, _)| k != key);
    meta
}

fn error(meta: Meta) -> String {
    load(meta).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn the_valid_vocabularies_work() {
    let t = load(spm()).unwrap();
    assert_eq!(t.tokenize("ab", true, false), [1, 7, 6]);
    assert_eq!(t.tokenize("A", false, false), [4, 3]);
    let t = load(bpe()).unwrap();
    assert_eq!(t.tokenize("ab ab", false, false), [2, 4]);
}

#[test]
fn characters_without_tokens_or_byte_tokens_become_unk() {
    // Only `<0x41>` is a byte token: 'Z' has neither a token nor a byte token. Dropping it
    // would lose text silently (llama.cpp throws `out_of_range` here).
    let t = load(spm()).unwrap();
    assert_eq!(t.tokenize("Z", false, false), [4, 0]);
    assert_eq!(t.tokenize("aZb", false, false), [7, 0, 6]);
    assert_eq!(t.tokenize("aA", false, false), [7, 3]);
}

#[test]
fn array_lengths_must_match_the_tokens() {
    let e = error(set(
        spm(),
        "tokenizer.ggml.scores",
        MetaValue::Array(MetaArray::F32(vec![0.; 8])),
    ));
    assert!(
        e.contains("tokenizer.ggml.scores") && e.contains("8 entries for 9 tokens"),
        "{e}"
    );
    let e = error(set(
        spm(),
        "tokenizer.ggml.token_type",
        MetaValue::Array(MetaArray::I32(vec![1; 10])),
    ));
    assert!(
        e.contains("tokenizer.ggml.token_type") && e.contains("10 entries"),
        "{e}"
    );
    let e = error(set(
        spm(),
        "tokenizer.ggml.token_type",
        MetaValue::Array(MetaArray::F32(vec![1.; 9])),
    ));
    assert!(e.contains("expected INT32"), "{e}");
    let e = error(set(
        spm(),
        "tokenizer.ggml.scores",
        MetaValue::Array(MetaArray::U8(vec![0; 9])),
    ));
    assert!(e.contains("FLOAT32 or INT32"), "{e}");
}

#[test]
fn special_ids_must_be_in_the_vocabulary() {
    let e = error(set(spm(), "tokenizer.ggml.bos_token_id", MetaValue::U32(9)));
    assert!(
        e.contains("tokenizer.ggml.bos_token_id") && e.contains("outside"),
        "{e}"
    );
    let e = error(set(
        spm(),
        "tokenizer.ggml.padding_token_id",
        MetaValue::I32(-1),
    ));
    assert!(
        e.contains("tokenizer.ggml.padding_token_id") && e.contains("-1"),
        "{e}"
    );
    let e = error(set(
        spm(),
        "tokenizer.ggml.eos_token_id",
        MetaValue::U64(u64::MAX),
    ));
    assert!(e.contains("tokenizer.ggml.eos_token_id"), "{e}");
    let e = error(set(
        spm(),
        "tokenizer.ggml.eot_token_id",
        MetaValue::String("2".into()),
    ));
    assert!(e.contains("integer"), "{e}");
    // A BPE vocabulary that adds BOS must have one.
    let e = error(set(
        without(
            without(bpe(), "tokenizer.ggml.bos_token_id"),
            "tokenizer.ggml.eos_token_id",
        ),
        "tokenizer.ggml.add_bos_token",
        MetaValue::Bool(true),
    ));
    assert!(e.contains("add_bos_token"), "{e}");
}

#[test]
fn byte_tokens_need_two_hex_digits() {
    for bad in ["<0xG1>", "<0x4>", "<0x041>", "0x41"] {
        let mut m = spm();
        m[1].1 = strings(&[
            "<unk>",
            "<s>",
            "</s>",
            bad,
            "\u{2581}",
            "a",
            "b",
            "\u{2581}a",
            "ab",
        ]);
        let e = error(m);
        assert!(
            e.contains("tokenizer.ggml.tokens[3]") && e.contains("BYTE"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn merges_must_be_two_known_tokens() {
    let e = error(set(bpe(), "tokenizer.ggml.merges", strings(&["a b", "ab"])));
    assert!(
        e.contains("tokenizer.ggml.merges[1]") && e.contains("separated by a space"),
        "{e}"
    );
    let e = error(set(bpe(), "tokenizer.ggml.merges", strings(&["a c"])));
    assert!(
        e.contains("tokenizer.ggml.merges[0]") && e.contains("'c'"),
        "{e}"
    );
    let e = error(set(
        bpe(),
        "tokenizer.ggml.merges",
        MetaValue::Array(MetaArray::U32(vec![1])),
    ));
    assert!(e.contains("array of STRING"), "{e}");
    let e = error(without(bpe(), "tokenizer.ggml.merges"));
    assert!(e.contains("tokenizer.ggml.merges: missing"), "{e}");
}

#[test]
fn unknown_models_pre_tokenizers_and_repeats_are_named() {
    let e = error(set(
        bpe(),
        "tokenizer.ggml.pre",
        MetaValue::String("brand-new".into()),
    ));
    assert!(
        e.contains("'brand-new'") && e.contains("llama-bpe") && e.contains("qwen2"),
        "{e}"
    );
    let e = error(set(
        spm(),
        "tokenizer.ggml.model",
        MetaValue::String("t5".into()),
    ));
    assert!(e.contains("'t5'"), "{e}");
    let e = error(without(spm(), "tokenizer.ggml.model"));
    assert!(e.contains("tokenizer.ggml.model: missing"), "{e}");
    let e = error(without(spm(), "tokenizer.ggml.tokens"));
    assert!(e.contains("tokenizer.ggml.tokens: missing"), "{e}");
    let mut m = spm();
    m[1].1 = strings(&["<unk>", "<s>", "</s>", "<0x41>", "a", "a", "b", "x", "y"]);
    let e = error(m);
    assert!(
        e.contains("tokenizer.ggml.tokens[5]") && e.contains("also token 4"),
        "{e}"
    );
}

#[test]
fn out_of_range_ids_are_errors_when_decoding() {
    let t = load(spm()).unwrap();
    assert!(t.detokenize(&[1, 99], false, false).is_err());
    assert!(t.token_to_piece(u32::MAX, 0, true).is_err());
    assert!(t.stream_decoder(false).push(9).is_err());
}
