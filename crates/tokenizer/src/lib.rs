//! Tokenizer and detokenizer built from a GGUF file's `tokenizer.ggml.*` metadata, giving the
//! same ids and the same text as llama.cpp on real vocabularies: SentencePiece-style ("llama")
//! and byte-level BPE ("gpt2") with llama.cpp's pre-tokenizers, special-token matching, BOS/EOS,
//! and a streaming decoder that never splits a UTF-8 character.
//!
//! ```no_run
//! let file = ggufy_gguf::Gguf::open("model.gguf").unwrap();
//! let tok = ggufy_tokenizer::Tokenizer::from_gguf(&file).unwrap();
//! let ids = tok.tokenize("Hello world", true, false);
//! let text = tok.detokenize(&ids, true, false).unwrap();
//! ```

mod bpe;
pub mod error;
pub mod pretok;
mod spm;
pub mod unicode;
pub mod vocab;

use ggufy_gguf::Gguf;

pub use error::{Result, TokenizerError};
pub use vocab::{SpecialIds, Vocab, VocabKind, attr};

/// A piece of input: text still to tokenize, or a special token already matched.
#[derive(Clone, Copy, Debug)]
enum Fragment {
    Text { start: usize, end: usize },
    Token(u32),
}

/// C's `isspace` in the "C" locale, which llama.cpp's strip rules use.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Tokenizes and detokenizes with one vocabulary.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf<B: AsRef<[u8]>>(f: &Gguf<B>) -> Result<Tokenizer> {
        Ok(Tokenizer {
            vocab: Vocab::from_gguf(f)?,
        })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Splits `text` at special tokens: user-defined tokens always, control and unknown tokens
    /// only when `parse_special` (llama.cpp's `tokenizer_st_partition`).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let bytes = text.as_bytes();
        let mut frags = vec![Fragment::Text {
            start: 0,
            end: bytes.len(),
        }];
        if bytes.is_empty() {
            return Vec::new();
        }
        let v = &self.vocab;
        for &id in &v.special_cache {
            let a = v.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let needle = &v.tokens[id as usize][..];
            let finder = memchr::memmem::Finder::new(needle);
            let mut next = Vec::with_capacity(frags.len());
            for f in frags {
                let Fragment::Text { start, end } = f else {
                    next.push(f);
                    continue;
                };
                let (mut s, e) = (start, end);
                while let Some(pos) = finder.find(&bytes[s..e]) {
                    let m = s + pos;
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > s && is_c_space(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > s {
                        next.push(Fragment::Text {
                            start: s,
                            end: left_end,
                        });
                    }
                    next.push(Fragment::Token(id));
                    s = m + needle.len();
                    if a & attr::RSTRIP != 0 {
                        while s < e && is_c_space(bytes[s]) {
                            s += 1;
                        }
                    }
                }
                if s < e {
                    next.push(Fragment::Text { start: s, end: e });
                }
            }
            frags = next;
        }
        frags
    }

    /// Token ids for `text`. `add_special` adds BOS/EOS as the vocabulary asks; `parse_special`
    /// turns control-token texts in the input (`<s>`, `<|im_end|>`) into those tokens instead
    /// of tokenizing them as plain text.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.vocab;
        let frags = self.partition(text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special
            && v.add_bos
            && let Some(bos) = v.special.bos
        {
            out.push(bos);
        }
        match v.kind {
            VocabKind::Spm => {
                // A space goes before the first text and before text that follows a special
                // token, as SentencePiece's dummy prefix does.
                let mut prev_special = true;
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Fragment::Text { start, end } => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[start..end].chars() {
                                if c == ' ' {
                                    buf.push('\u{2581}');
                                } else {
                                    buf.push(c);
                                }
                            }
                            spm::tokenize(v, &buf, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            VocabKind::Bpe => {
                for f in frags {
                    match f {
                        Fragment::Text { start, end } => {
                            bpe::tokenize(v, &text[start..end], &mut out)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special
            && v.add_eos
            && let Some(eos) = v.special.eos
        {
            out.push(eos);
        }
        out
    }

    fn check(&self, id: u32) -> Result<()> {
        if (id as usize) < self.vocab.len() {
            Ok(())
        } else {
            Err(TokenizerError::OutOfRange {
                id: i64::from(id),
                n_vocab: self.vocab.len(),
            })
        }
    }

    /// The bytes of one token (llama.cpp's `token_to_piece`): control and unknown tokens render
    /// as nothing unless `special`; up to `lstrip` leading spaces are dropped.
    pub fn token_to_piece(&self, id: u32, lstrip: usize, special: bool) -> Result<&[u8]> {
        self.check(id)?;
        let a = self.vocab.attrs[id as usize];
        if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Ok(&[]);
        }
        let mut p = &self.vocab.pieces[id as usize][..];
        for _ in 0..lstrip {
            match p.split_first() {
                Some((b' ', rest)) => p = rest,
                _ => break,
            }
        }
        Ok(p)
    }

    /// The text of a sequence of ids (llama.cpp's `detokenize`), as bytes: a sequence may end in
    /// the middle of a UTF-8 character. `remove_special` drops the BOS/EOS the vocabulary adds;
    /// `unparse_special` renders control tokens as their text.
    pub fn detokenize(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>> {
        let v = &self.vocab;
        let mut ids = ids;
        let mut remove_space = v.add_space_prefix;
        if remove_special && v.add_bos && ids.first().is_some_and(|&t| Some(t) == v.special.bos) {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && v.add_eos && ids.last().is_some_and(|&t| Some(t) == v.special.eos) {
            ids = &ids[..ids.len() - 1];
        }
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_to_piece(
                id,
                usize::from(remove_space),
                unparse_special,
            )?);
            remove_space = false;
        }
        if v.clean_spaces {
            out = clean_up_spaces(&out);
        }
        Ok(out)
    }

    /// A streaming decoder for generated ids.
    pub fn stream_decoder(&self, special: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            special,
            pending: Vec::new(),
        }
    }
}

/// HF's `clean_up_tokenization_spaces`, in llama.cpp's three passes: no space before `?!.,`, none
/// around a lone `'`, and none before `'s`, `'m`, `'re`, `'ve`.
fn clean_up_spaces(t: &[u8]) -> Vec<u8> {
    // Pass 1: " ?", " !", " .", " ,".
    let mut a: Vec<u8> = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(x);
    }
    // Pass 2: " ' " → "'".
    let mut b: Vec<u8> = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        let x = a[i];
        if i > 0 && x == b'\'' && i + 1 < a.len() && a[i - 1] == b' ' && a[i + 1] == b' ' {
            b.pop();
            b.push(x);
            i += 2;
            // The skipped space no longer counts as the next character's left neighbour.
            if i < a.len() {
                b.push(a[i]);
                i += 1;
            }
            continue;
        }
        b.push(x);
        i += 1;
    }
    // Pass 3: " 's", " 'm", " 're", " 've".
    let mut c: Vec<u8> = Vec::with_capacity(b.len());
    for (i, &x) in b.iter().enumerate() {
        if i > 0 && b[i - 1] == b' ' && x == b'\'' && i + 1 < b.len() {
            let x1 = b[i + 1];
            let x2 = b.get(i + 2).copied();
            if matches!(x1, b's' | b'm')
                || matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e')))
            {
                c.pop();
            }
        }
        c.push(x);
    }
    c
}

/// Turns generated ids into text as they arrive, holding back an incomplete UTF-8 character
/// until the bytes that finish it come.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    special: bool,
    pending: Vec<u8>,
}

impl StreamDecoder<'_> {
    /// Adds one id; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let piece = self.tok.token_to_piece(id, 0, self.special)?;
        self.pending.extend_from_slice(piece);
        Ok(self.take_complete())
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // Safe: from_utf8 just said these bytes are valid.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..good]));
                    match e.error_len() {
                        // Invalid bytes: they can never become a character.
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..good + bad);
                        }
                        // An unfinished character at the end: wait for more.
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: whatever is still held back, with U+FFFD for an unfinished character.
    pub fn finish(mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::clean_up_spaces;

    fn clean(s: &str) -> String {
        String::from_utf8(clean_up_spaces(s.as_bytes())).unwrap()
    }

    #[test]
    fn clean_up_follows_llama_cpp() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a  ."), "a .");
        assert_eq!(clean("he ' s"), "he's");
        assert_eq!(
            clean("I 'm you 're they 've it 's"),
            "I'm you're they've it's"
        );
        // 't, 'd and 'll keep their space, as in llama.cpp.
        assert_eq!(clean("don 't I 'd we 'll"), "don 't I 'd we 'll");
        assert_eq!(clean(" ?"), "?"); // the first character can lose its space too
        assert_eq!(clean("x ' ' y"), "x'' y");
        assert_eq!(clean(""), "");
    }
}
