//! SentencePiece-style tokenization as llama.cpp does it: start from UTF-8 characters, repeatedly
//! merge the adjacent pair whose merged text is the highest-scoring token, then split any piece
//! that is not a token back along the merges that built it, down to byte-fallback tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

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
fn try_add<'t>(
    vocab: &Vocab,
    bytes: &'t [u8],
    symbols: &[Symbol],
    queue: &mut BinaryHeap<Bigram>,
    rev: &mut HashMap<&'t [u8], (usize, usize)>,
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
    rev.insert(piece, (l, r));
}

/// Tokenizes one fragment (spaces already escaped to `▁`), appending ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
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
    // Which pair last produced each merged text: used to split pieces that are not tokens.
    let mut rev_merge: HashMap<&[u8], (usize, usize)> = HashMap::new();
    for i in 1..symbols.len() {
        try_add(
            vocab,
            bytes,
            &symbols,
            &mut queue,
            &mut rev_merge,
            Some(i - 1),
            Some(i),
        );
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
        try_add(
            vocab,
            bytes,
            &symbols,
            &mut queue,
            &mut rev_merge,
            prev,
            Some(b.left),
        );
        try_add(
            vocab,
            bytes,
            &symbols,
            &mut queue,
            &mut rev_merge,
            Some(b.left),
            next,
        );
    }

    // Emit each final piece; an explicit stack instead of recursion keeps a hostile vocabulary
    // from exhausting the call stack.
    let mut cur = if symbols.is_empty() { None } else { Some(0) };
    let mut stack = Vec::new();
    while let Some(i) = cur {
        stack.push(i);
        while let Some(j) = stack.pop() {
            let s = symbols[j];
            let piece = &bytes[s.start..s.start + s.len];
            if let Some(id) = vocab.id_of(piece) {
                out.push(id);
            } else if let Some(&(a, b)) = rev_merge.get(piece) {
                stack.push(b);
                stack.push(a);
            } else {
                for &byte in piece {
                    if let Some(id) = vocab.byte_token(byte) {
                        out.push(id);
                    }
                }
            }
        }
        cur = symbols[i].next;
    }
}
