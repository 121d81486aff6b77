//! Byte-level BPE as llama.cpp does it: pre-tokenize into words, write each word's bytes in
//! GPT-2's byte alphabet, then repeatedly merge the adjacent pair with the lowest merge rank.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::unicode::byte_encode_into;
use crate::vocab::Vocab;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    id: Option<u32>,
    next: Option<usize>,
    prev: Option<usize>,
}

#[derive(PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    left_len: usize,
    right_len: usize,
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Lowest rank first; between equal ranks, the leftmost pair (a max-heap, so reversed).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes one fragment, appending ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
    let Some(pre) = &vocab.pre else { return };
    let mut word = String::new();
    let mut symbols: Vec<Symbol> = Vec::new();
    let mut queue = BinaryHeap::new();
    for range in pre.split(text) {
        word.clear();
        byte_encode_into(&text.as_bytes()[range], &mut word);
        let w = word.as_bytes();
        if vocab.ignore_merges
            && let Some(id) = vocab.id_of(w)
        {
            out.push(id);
            continue;
        }
        symbols.clear();
        queue.clear();
        let n = word.chars().count();
        for (i, (start, c)) in word.char_indices().enumerate() {
            let len = c.len_utf8();
            symbols.push(Symbol {
                start,
                len,
                id: vocab.id_of(&w[start..start + len]),
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
            });
        }
        let add = |symbols: &[Symbol],
                   queue: &mut BinaryHeap<Bigram>,
                   l: Option<usize>,
                   r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let (Some(a), Some(b)) = (symbols[l].id, symbols[r].id) else {
                return;
            };
            if let Some(&rank) = vocab.ranks.get(&(a, b)) {
                queue.push(Bigram {
                    rank,
                    left: l,
                    right: r,
                    left_len: symbols[l].len,
                    right_len: symbols[r].len,
                });
            }
        };
        for i in 1..symbols.len() {
            add(&symbols, &mut queue, Some(i - 1), Some(i));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            if l.len == 0 || r.len == 0 || l.len != b.left_len || r.len != b.right_len {
                continue; // outdated
            }
            let merged = &w[l.start..l.start + l.len + r.len];
            symbols[b.left].len += r.len;
            symbols[b.left].id = vocab.id_of(merged);
            symbols[b.left].next = r.next;
            symbols[b.right].len = 0;
            if let Some(nx) = r.next {
                symbols[nx].prev = Some(b.left);
            }
            let (prev, next) = (symbols[b.left].prev, symbols[b.left].next);
            add(&symbols, &mut queue, prev, Some(b.left));
            add(&symbols, &mut queue, Some(b.left), next);
        }
        for s in symbols.iter().filter(|s| s.len > 0) {
            match s.id {
                Some(id) => out.push(id),
                // Not a token: llama.cpp looks up each byte of the encoded text on its own and
                // keeps those that are tokens.
                None => {
                    for &byte in &w[s.start..s.start + s.len] {
                        if let Some(id) = vocab.id_of(&[byte]) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}
