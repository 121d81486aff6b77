//! SentencePiece-style tokenization as llama.cpp does it: start from UTF-8 characters, repeatedly
//! merge the adjacent pair whose merged text is the highest-scoring token; characters that are
//! not tokens become byte-fallback tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first; between equal scores, the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Queues the pair (`left`, `right`) if their text together is a token.
fn try_add(
    vocab: &Vocab,
    bytes: &[u8],
    symbols: &[Symbol],
    queue: &mut BinaryHeap<Bigram>,
    left: Option<usize>,
    right: Option<usize>,
) {
    let (Some(l), Some(r)) = (left, right) else {
        return;
    };
    let s = symbols[l].start;
    let piece = &bytes[s..s + symbols[l].len + symbols[r].len];
    let Some(id) = vocab.id_of(piece) else { return };
    queue.push(Bigram {
        left: l,
        right: r,
        score: vocab.scores[id as usize],
        size: piece.len(),
    });
}

/// Tokenizes one fragment (spaces already escaped to `▁`), appending ids to `out`.
///
/// A character that occurs in no multi-character token can never be merged with a neighbour,
/// so the text is cut there into regions that are merged independently — the same result as
/// one pass over the whole text, but with small queues that stay in cache (one queue over a
/// megabyte of text spends its time in cache misses).
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if !vocab.joinable.contains(&c) {
            if i > start {
                tokenize_region(vocab, &text[start..i], out);
            }
            let end = i + c.len_utf8();
            tokenize_region(vocab, &text[i..end], out);
            start = end;
        }
    }
    if start < text.len() {
        tokenize_region(vocab, &text[start..], out);
    }
}

/// The merge loop over one region.
fn tokenize_region(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let bytes = text.as_bytes();
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let n_chars = text.chars().count();
    for (i, (start, c)) in text.char_indices().enumerate() {
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: (i + 1 < n_chars).then_some(i + 1),
        });
    }
    let mut queue = BinaryHeap::new();
    for i in 1..symbols.len() {
        try_add(vocab, bytes, &symbols, &mut queue, Some(i - 1), Some(i));
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        // Stale: one side was merged since this pair was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(b.left);
        }
        let prev = symbols[b.left].prev;
        let next = symbols[b.left].next;
        try_add(vocab, bytes, &symbols, &mut queue, prev, Some(b.left));
        try_add(vocab, bytes, &symbols, &mut queue, Some(b.left), next);
    }

    // Emit each final piece. Every merge made a token, so a piece is a token unless it is a
    // single character the vocabulary lacks, which falls back to byte tokens (or, without them,
    // the unknown token). (llama.cpp also keeps a map to split non-token pieces back along their
    // merges; by the same argument it is never used, so it is left out.)
    let mut cur = if symbols.is_empty() { None } else { Some(0) };
    while let Some(i) = cur {
        let s = symbols[i];
        let piece = &bytes[s.start..s.start + s.len];
        if let Some(id) = vocab.id_of(piece) {
            out.push(id);
        } else {
            let bytes: Option<Vec<u32>> = piece.iter().map(|&b| vocab.byte_token(b)).collect();
            match (bytes, vocab.special.unk) {
                (Some(ids), _) => out.extend(ids),
                // A vocabulary without byte tokens: the unknown token stands for the character
                // (llama.cpp throws `out_of_range` here; dropping it would lose text silently).
                (None, Some(unk)) => out.push(unk),
                (None, None) => {}
            }
        }
        cur = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn llama_spm() -> Option<&'static Vocab> {
        static V: std::sync::OnceLock<Option<Vocab>> = std::sync::OnceLock::new();
        V.get_or_init(load).as_ref()
    }

    fn load() -> Option<Vocab> {
        let dir = std::env::var_os("GGUFY_VOCAB_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vocab")
            });
        let f = ggufy_gguf::Gguf::open(dir.join("ggml-vocab-llama-spm.gguf")).ok()?;
        Some(Vocab::from_gguf(&f).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Cutting at characters no multi-character token contains changes nothing.
        #[test]
        fn regions_give_the_same_tokens_as_one_pass(s in "[a-z\u{2581}\n.,'€語]{0,60}") {
            if let Some(v) = llama_spm() {
                let (mut split, mut whole) = (Vec::new(), Vec::new());
                tokenize(v, &s, &mut split);
                tokenize_region(v, &s, &mut whole);
                prop_assert_eq!(split, whole);
            }
        }
    }
}
