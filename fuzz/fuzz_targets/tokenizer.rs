//! Any bytes as a GGUF file whose vocabulary is loaded, then the tail of the input tokenized
//! (with and without special-token parsing) and every produced id detokenized: must never
//! panic. Seed with the vocabulary files of `../shared/vocab` and `fixtures/gguf`.
//!
//!     cargo +nightly fuzz run tokenizer fixtures/gguf -- -rss_limit_mb=2048
#![no_main]

use ggufy_gguf::Gguf;
use ggufy_tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The last 256 bytes (at most) double as the text, so mutations reach both.
    let split = data.len().saturating_sub(256);
    let (file, text) = data.split_at(split);
    let Ok(f) = Gguf::from_bytes(file) else {
        return;
    };
    let Ok(tok) = Tokenizer::from_gguf(&f) else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    for parse_special in [false, true] {
        let ids = tok.tokenize(&text, true, parse_special);
        let _ = tok.detokenize(&ids, true, parse_special);
        let mut dec = tok.stream_decoder(true);
        for &id in &ids {
            let _ = dec.push(id);
        }
        let _ = dec.finish();
    }
    let _ = tok.detokenize(&[0, 1, 2, u32::MAX], false, true);
});
