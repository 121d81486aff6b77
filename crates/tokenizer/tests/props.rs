//! Property tests on real vocabularies (`../shared/vocab`, or `$GGUFY_VOCAB_DIR`; skipped without):
//! arbitrary text never panics and its pieces give it back; arbitrary ids never panic; the
//! streaming decoder emits exactly the lossy UTF-8 of the whole byte stream, never half a
//! character.

use std::path::PathBuf;
use std::sync::OnceLock;

use ggufy_gguf::Gguf;
use ggufy_tokenizer::Tokenizer;
use proptest::prelude::*;

fn load(name: &str) -> Option<Tokenizer> {
    let dir = std::env::var_os("GGUFY_VOCAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vocab"));
    let f = Gguf::open(dir.join(format!("ggml-vocab-{name}.gguf"))).ok()?;
    Some(Tokenizer::from_gguf(&f).unwrap())
}

fn vocabs() -> &'static [Tokenizer] {
    static V: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    V.get_or_init(|| {
        ["llama-spm", "llama-bpe", "qwen2", "falcon"]
            .iter()
            .filter_map(|n| load(n))
            .collect()
    })
}

/// Whether every byte has a token of its own (byte fallback or byte-level alphabet).
fn covers_all_bytes(tok: &Tokenizer) -> bool {
    let v = tok.vocab();
    (0..=255u8).all(|b| match v.kind() {
        ggufy_tokenizer::VocabKind::Spm => v.byte_token(b).is_some(),
        ggufy_tokenizer::VocabKind::Bpe => v
            .id_of(
                ggufy_tokenizer::unicode::byte_to_char(b)
                    .to_string()
                    .as_bytes(),
            )
            .is_some(),
    })
}

/// Text biased towards what breaks tokenizers: whitespace runs, digits, marks, emoji, CJK,
/// special-token look-alikes and arbitrary code points.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(" ".to_string()),
        Just("  \n\t\r\u{3000}\u{a0}".to_string()),
        Just("<s></s><|endoftext|><|im_start|><unk>".to_string()),
        Just("'s 're 'LL".to_string()),
        "[0-9]{1,7}",
        "[a-zA-Z]{1,8}",
        "[\u{300}-\u{36f}\u{1f600}-\u{1f64f}\u{4e00}-\u{4e20}\u{e00}-\u{e7f}]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tokenizing_never_panics_and_pieces_give_the_text_back(s in text(), special: bool) {
        for tok in vocabs() {
            let ids = tok.tokenize(&s, special, special);
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab().len()));
            // A vocabulary that lacks some byte's token (falcon has no "ò") drops that byte, as
            // llama.cpp does; the others give the text back exactly.
            if !special && covers_all_bytes(tok) {
                let mut pieces = Vec::new();
                for (i, &id) in ids.iter().enumerate() {
                    let lstrip = usize::from(i == 0 && tok.vocab().add_space_prefix());
                    pieces.extend_from_slice(tok.token_to_piece(id, lstrip, false).unwrap());
                }
                prop_assert_eq!(String::from_utf8_lossy(&pieces), s.as_str());
            }
        }
    }

    #[test]
    fn arbitrary_ids_decode_without_panicking(ids in prop::collection::vec(any::<u32>(), 0..40)) {
        for tok in vocabs() {
            let n = tok.vocab().len() as u32;
            let in_range: Vec<u32> = ids.iter().map(|&i| i % n).collect();
            for special in [false, true] {
                let bytes = tok.detokenize(&in_range, special, special).unwrap();
                let _ = bytes;
                // Streaming: the text emitted, piece by piece, is the lossy UTF-8 of all bytes.
                let mut all = Vec::new();
                let mut dec = tok.stream_decoder(special);
                let mut streamed = String::new();
                for &id in &in_range {
                    all.extend_from_slice(tok.token_to_piece(id, 0, special).unwrap());
                    streamed.push_str(&dec.push(id).unwrap());
                }
                streamed.push_str(&dec.finish());
                prop_assert_eq!(streamed, String::from_utf8_lossy(&all));
            }
            prop_assert_eq!(tok.detokenize(&ids, false, false).is_ok(), ids.iter().all(|&i| i < n));
        }
    }
}

#[test]
fn the_stream_decoder_holds_back_half_characters() {
    let Some(tok) = vocabs()
        .iter()
        .find(|t| t.vocab().kind() == ggufy_tokenizer::VocabKind::Spm)
    else {
        return;
    };
    // "€" is E2 82 AC: three byte tokens.
    let ids: Vec<u32> = [0xE2u8, 0x82, 0xAC]
        .iter()
        .map(|&b| tok.vocab().byte_token(b).unwrap())
        .collect();
    let mut dec = tok.stream_decoder(false);
    assert_eq!(dec.push(ids[0]).unwrap(), "");
    assert_eq!(dec.push(ids[1]).unwrap(), "");
    assert_eq!(dec.push(ids[2]).unwrap(), "€");
    assert_eq!(dec.finish(), "");
}

#[test]
fn the_round_trip_property_is_not_vacuous() {
    if !vocabs().is_empty() {
        assert!(vocabs().iter().filter(|t| covers_all_bytes(t)).count() >= 3);
    }
}
