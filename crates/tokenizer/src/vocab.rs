//! The vocabulary as llama.cpp loads it from `tokenizer.ggml.*`: tokens, scores, attributes,
//! merges, special ids and flags — validated, so a bad file gives an error naming the key and
//! index instead of a crash or a silent misreading.

use std::collections::BTreeSet;

// Seeded per process: vocabulary files are untrusted input, so no fixed-seed hash.
use foldhash::HashMap;
use foldhash::HashMapExt as _;

use ggufy_gguf::{Gguf, Value};

use crate::error::{Result, TokenizerError};
use crate::pretok::{KNOWN_PRE, PreTokenizer};

/// Token attribute bits (llama.cpp's `llama_token_attr`).
pub mod attr {
    /// Unknown-token marker.
    pub const UNKNOWN: u32 = 1 << 0;
    /// Unused slot.
    pub const UNUSED: u32 = 1 << 1;
    /// Ordinary text.
    pub const NORMAL: u32 = 1 << 2;
    /// Control token (BOS, EOS, chat markers): not text.
    pub const CONTROL: u32 = 1 << 3;
    /// Added token matched verbatim in the input.
    pub const USER_DEFINED: u32 = 1 << 4;
    /// Byte-fallback token `<0xXX>`.
    pub const BYTE: u32 = 1 << 5;
    /// Strip whitespace to the token's left when matching it in the input.
    pub const LSTRIP: u32 = 1 << 7;
    /// Strip whitespace to the token's right when matching it in the input.
    pub const RSTRIP: u32 = 1 << 8;
}

/// Which algorithm the vocabulary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// `tokenizer.ggml.model = "llama"`: SentencePiece-style, score-driven merges, byte fallback.
    Spm,
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with ranked merges and a pre-tokenizer.
    Bpe,
}

/// Special token ids (llama.cpp's defaults, then the file's).
#[derive(Clone, Debug, Default)]
pub struct SpecialIds {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn.
    pub eot: Option<u32>,
    /// End of message.
    pub eom: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
    /// Separator.
    pub sep: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// Mask.
    pub mask: Option<u32>,
    /// Fill-in-the-middle prefix, suffix, middle, pad, repo, file separator.
    pub fim: [Option<u32>; 6],
}

/// A loaded vocabulary.
#[derive(Debug)]
pub struct Vocab {
    pub(crate) kind: VocabKind,
    pub(crate) tokens: Vec<Box<[u8]>>,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<u32>,
    pub(crate) ids: HashMap<Box<[u8]>, u32>,
    /// BPE merge ranks keyed by (left id, right id): validation guarantees both sides are tokens.
    pub(crate) ranks: HashMap<(u32, u32), u32>,
    pub(crate) pre: Option<PreTokenizer>,
    pub(crate) special: SpecialIds,
    pub(crate) eog: BTreeSet<u32>,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) clean_spaces: bool,
    pub(crate) ignore_merges: bool,
    /// Characters that occur in some token of two or more characters (the others never merge).
    pub(crate) joinable: foldhash::HashSet<char>,
    /// Special tokens matched in the input before tokenizing, longest first.
    pub(crate) special_cache: Vec<u32>,
    /// Each token's text as `token_to_piece(special = true)` renders it.
    pub(crate) pieces: Vec<Box<[u8]>>,
}

const K_MODEL: &str = "tokenizer.ggml.model";
const K_PRE: &str = "tokenizer.ggml.pre";
const K_TOKENS: &str = "tokenizer.ggml.tokens";
const K_SCORES: &str = "tokenizer.ggml.scores";
const K_TYPES: &str = "tokenizer.ggml.token_type";
const K_MERGES: &str = "tokenizer.ggml.merges";

/// GGUF token types → attribute bits.
fn attr_of_type(t: i64) -> u32 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0,
    }
}

/// Token texts llama.cpp takes as end-of-turn, end-of-message and end-of-generation markers.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_TEXTS: [&[&str]; 6] = [
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
    &["<|file_sep|>"],
];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Parses a byte-fallback token `<0xXX>`: exactly two hex digits.
pub(crate) fn parse_byte_token(text: &[u8]) -> Option<u8> {
    match text {
        [b'<', b'0', b'x', h, l, b'>'] => {
            let hex = |c: u8| (c as char).to_digit(16);
            Some((hex(*h)? * 16 + hex(*l)?) as u8)
        }
        _ => None,
    }
}

/// A metadata value as an i64 token type or id, whatever integer type stores it.
fn int_of(v: &Value<'_>) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_u64().and_then(|u| i64::try_from(u).ok()))
}

impl Vocab {
    /// Loads and validates the vocabulary in a GGUF file's metadata.
    pub fn from_gguf<B: AsRef<[u8]>>(f: &Gguf<B>) -> Result<Vocab> {
        let model = f
            .get_str(K_MODEL)?
            .ok_or(TokenizerError::Missing { key: K_MODEL })?;
        let kind = match model {
            "llama" => VocabKind::Spm,
            "gpt2" => VocabKind::Bpe,
            other => {
                return Err(TokenizerError::Invalid {
                    key: K_MODEL,
                    problem: format!(
                        "tokenizer model '{other}' is not supported (ggufy reads \"llama\" and \"gpt2\" vocabularies)"
                    ),
                });
            }
        };
        let pre_name = f.get_str(K_PRE)?;

        // Tokens.
        let arr = f
            .get_array(K_TOKENS)?
            .ok_or(TokenizerError::Missing { key: K_TOKENS })?;
        if arr.elem_type() != ggufy_gguf::ValueType::String {
            return Err(TokenizerError::Invalid {
                key: K_TOKENS,
                problem: format!("expected an array of STRING, found {}", arr.elem_type()),
            });
        }
        let n = arr.len() as usize;
        if n == 0 {
            return Err(TokenizerError::Invalid {
                key: K_TOKENS,
                problem: "the vocabulary is empty".into(),
            });
        }
        if n > i32::MAX as usize {
            return Err(TokenizerError::Invalid {
                key: K_TOKENS,
                problem: format!("{n} tokens do not fit llama.cpp's 32-bit token ids"),
            });
        }
        let mut tokens: Vec<Box<[u8]>> = Vec::with_capacity(n);
        let mut ids: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(n);
        for (i, v) in arr.iter().enumerate() {
            let Value::String(s) = v else {
                return Err(TokenizerError::Element {
                    key: K_TOKENS,
                    index: i,
                    problem: "not a string".into(),
                });
            };
            // llama.cpp renames empty tokens rather than failing; so do we.
            let text: Box<[u8]> = if s.is_empty() {
                format!("[EMPTY_{i}]").into_bytes().into()
            } else {
                s.into()
            };
            if let Some(prev) = ids.insert(text.clone(), i as u32) {
                return Err(TokenizerError::Element {
                    key: K_TOKENS,
                    index: i,
                    problem: format!(
                        "'{}' is also token {prev}: a vocabulary must not repeat a token",
                        String::from_utf8_lossy(&text)
                    ),
                });
            }
            tokens.push(text);
        }

        // Scores and types: optional, but when present exactly one per token.
        let mut scores = vec![0.0f32; n];
        if let Some(a) = f.get_array(K_SCORES)? {
            check_len(K_SCORES, a.len(), n)?;
            for (i, v) in a.iter().enumerate() {
                scores[i] = match v {
                    Value::F32(x) => x,
                    Value::I32(x) => x as f32,
                    other => {
                        return Err(TokenizerError::Invalid {
                            key: K_SCORES,
                            problem: format!(
                                "expected FLOAT32 or INT32 elements, found {}",
                                other.value_type()
                            ),
                        });
                    }
                };
            }
        }
        let mut attrs = vec![attr::NORMAL; n];
        if let Some(a) = f.get_array(K_TYPES)? {
            check_len(K_TYPES, a.len(), n)?;
            for (i, v) in a.iter().enumerate() {
                let t = match v {
                    Value::I32(x) => i64::from(x),
                    other => {
                        return Err(TokenizerError::Invalid {
                            key: K_TYPES,
                            problem: format!(
                                "expected INT32 elements, found {}",
                                other.value_type()
                            ),
                        });
                    }
                };
                attrs[i] = attr_of_type(t);
            }
        }
        for (i, (t, &a)) in tokens.iter().zip(&attrs).enumerate() {
            if a & attr::BYTE != 0 && parse_byte_token(t).is_none() {
                return Err(TokenizerError::Element {
                    key: K_TOKENS,
                    index: i,
                    problem: format!(
                        "'{}' is typed BYTE but is not <0xXX> with two hex digits",
                        String::from_utf8_lossy(t)
                    ),
                });
            }
        }

        // Flags, as llama.cpp sets them per model and pre-tokenizer.
        let mut special = SpecialIds::default();
        let (mut add_bos, mut add_eos, mut add_space_prefix, clean_spaces, ignore_merges);
        let mut pre = None;
        let mut ranks = HashMap::new();
        match kind {
            VocabKind::Spm => {
                special.bos = Some(1);
                special.eos = Some(2);
                special.unk = Some(0);
                add_bos = true;
                add_eos = false;
                add_space_prefix = true;
                clean_spaces = false;
                ignore_merges = false;
            }
            VocabKind::Bpe => {
                special.bos = Some(11);
                special.eos = Some(11);
                let name = pre_name.unwrap_or("default");
                let (p, flags) =
                    PreTokenizer::for_name(name).ok_or_else(|| TokenizerError::Invalid {
                        key: K_PRE,
                        problem: format!(
                            "pre-tokenizer '{name}' is not known to ggufy (known: {})",
                            KNOWN_PRE.join(", ")
                        ),
                    })?;
                pre = Some(p);
                add_bos = flags.add_bos;
                add_eos = false;
                add_space_prefix = false;
                clean_spaces = flags.clean_spaces;
                ignore_merges = flags.ignore_merges;
                if name == "chatglm-bpe" {
                    special.bos = None;
                }
                ranks = read_merges(f, &ids)?;
            }
        }
        if let Some(b) = f.get_bool("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = b;
        }

        // Special ids: defaults that do not fit are dropped; ids the file gives must fit.
        for slot in [&mut special.bos, &mut special.eos, &mut special.unk] {
            if slot.is_some_and(|id| id as usize >= n) {
                *slot = None;
            }
        }
        const ID_KEYS: [&str; 17] = [
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
            "tokenizer.ggml.unknown_token_id",
            "tokenizer.ggml.seperator_token_id",
            "tokenizer.ggml.padding_token_id",
            "tokenizer.ggml.mask_token_id",
            "tokenizer.ggml.fim_pre_token_id",
            "tokenizer.ggml.fim_suf_token_id",
            "tokenizer.ggml.fim_mid_token_id",
            "tokenizer.ggml.fim_pad_token_id",
            "tokenizer.ggml.fim_rep_token_id",
            "tokenizer.ggml.fim_sep_token_id",
            // Deprecated spellings of the first three FIM ids; read last, so they win as in llama.cpp.
            "tokenizer.ggml.prefix_token_id",
            "tokenizer.ggml.suffix_token_id",
            "tokenizer.ggml.middle_token_id",
        ];
        let mut given: [Option<u32>; 17] = [None; 17];
        for (key, slot) in ID_KEYS.iter().zip(given.iter_mut()) {
            let Some(v) = f.get(key) else { continue };
            let id = int_of(&v).ok_or_else(|| TokenizerError::Invalid {
                key,
                problem: format!("expected an integer token id, found {}", v.value_type()),
            })?;
            if id < 0 || id as u64 >= n as u64 {
                return Err(TokenizerError::Invalid {
                    key,
                    problem: format!("token id {id} is outside the vocabulary of {n} tokens"),
                });
            }
            *slot = Some(id as u32);
        }
        {
            let s = &mut special;
            let slots: [&mut Option<u32>; 14] = {
                let [f0, f1, f2, f3, f4, f5] = &mut s.fim;
                [
                    &mut s.bos,
                    &mut s.eos,
                    &mut s.eot,
                    &mut s.eom,
                    &mut s.unk,
                    &mut s.sep,
                    &mut s.pad,
                    &mut s.mask,
                    f0,
                    f1,
                    f2,
                    f3,
                    f4,
                    f5,
                ]
            };
            for (slot, v) in slots.into_iter().zip(given) {
                if v.is_some() {
                    *slot = v;
                }
            }
            for (k, v) in given[14..].iter().enumerate() {
                if v.is_some() {
                    s.fim[k] = *v;
                }
            }
        }
        if let Some(b) = f.get_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = b;
        }
        if let Some(b) = f.get_bool("tokenizer.ggml.add_eos_token")? {
            add_eos = b;
        }
        if add_bos && special.bos.is_none() {
            return Err(TokenizerError::Invalid {
                key: "tokenizer.ggml.add_bos_token",
                problem: "BOS is to be added but the vocabulary has no BOS token".into(),
            });
        }
        if add_eos && special.eos.is_none() {
            return Err(TokenizerError::Invalid {
                key: "tokenizer.ggml.add_eos_token",
                problem: "EOS is to be added but the vocabulary has no EOS token".into(),
            });
        }

        let mut v = Vocab {
            kind,
            tokens,
            scores,
            attrs,
            ids,
            ranks,
            pre,
            special,
            eog: BTreeSet::new(),
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            ignore_merges,
            special_cache: Vec::new(),
            pieces: Vec::new(),
            joinable: foldhash::HashSet::default(),
        };
        for t in &v.tokens {
            if let Ok(t) = std::str::from_utf8(t)
                && t.chars().nth(1).is_some()
            {
                v.joinable.extend(t.chars());
            }
        }
        v.detect_special_by_text();
        v.special_cache = (0..n as u32)
            .filter(|&id| {
                v.attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        // Longest first; ties by id so the order does not depend on the sort.
        v.special_cache
            .sort_by_key(|&id| (std::cmp::Reverse(v.tokens[id as usize].len()), id));
        v.pieces = (0..n as u32).map(|id| v.render(id).into()).collect();

        // Per-model strip rules llama.cpp applies by name.
        let model_name = f
            .get_str("general.name")
            .ok()
            .flatten()
            .unwrap_or("")
            .to_ascii_lowercase();
        if model_name.contains("phi-3") || model_name.contains("phi3") {
            for &id in &v.special_cache {
                v.attrs[id as usize] |= attr::RSTRIP;
            }
            v.set_attr_by_text("</s>", attr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                v.set_attr_by_text(t, attr::RSTRIP, false);
            }
        } else if pre_name.is_some_and(|p| p.contains("jina-v2-")) {
            v.set_attr_by_text("<mask>", attr::LSTRIP, true);
        }
        Ok(v)
    }

    fn set_attr_by_text(&mut self, text: &str, bit: u32, on: bool) {
        if let Some(&id) = self.ids.get(text.as_bytes()) {
            let a = &mut self.attrs[id as usize];
            *a = if on { *a | bit } else { *a & !bit };
        }
    }

    /// llama.cpp finds end-of-turn, fill-in-the-middle and end-of-generation tokens by their
    /// text (converters do not always record them) and makes them control tokens.
    fn detect_special_by_text(&mut self) {
        let find =
            |v: &Vocab, texts: &[&str]| texts.iter().find_map(|t| v.ids.get(t.as_bytes()).copied());
        let mark = |v: &mut Vocab, id: u32| v.attrs[id as usize] |= attr::CONTROL;
        if self.special.eot.is_none()
            && let Some(id) = find(self, EOT_TEXTS)
        {
            self.special.eot = Some(id);
            mark(self, id);
        }
        if self.special.eom.is_none()
            && let Some(id) = find(self, EOM_TEXTS)
        {
            self.special.eom = Some(id);
            mark(self, id);
        }
        for (k, texts) in FIM_TEXTS.iter().enumerate() {
            if self.special.fim[k].is_none()
                && let Some(id) = find(self, texts)
            {
                self.special.fim[k] = Some(id);
                mark(self, id);
            }
        }
        // Control tokens named "unused…" are unused.
        for (t, a) in self.tokens.iter().zip(self.attrs.iter_mut()) {
            if *a & attr::CONTROL != 0 && t.windows(6).any(|w| w == b"unused") {
                *a |= attr::UNUSED;
            }
        }
        let mut eog = BTreeSet::new();
        for id in self.special.fim[3..].iter().flatten() {
            eog.insert(*id);
        }
        for t in EOG_TEXTS {
            if let Some(&id) = self.ids.get(t.as_bytes()) {
                eog.insert(id);
                mark(self, id);
            }
        }
        for id in [self.special.eos, self.special.eot, self.special.eom]
            .into_iter()
            .flatten()
        {
            eog.insert(id);
        }
        // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
        let has = |t: &str| {
            self.ids
                .get(t.as_bytes())
                .is_some_and(|id| eog.contains(id))
        };
        let harmony_end =
            has("<|return|>") && has("<|call|>") || has("<|calls|>") && has("<|flush|>");
        let plain_s = has("<|tool_response>") || has("<|plamo:eos|>");
        if harmony_end
            && let Some(&end) = self.ids.get(b"<|end|>".as_slice())
            && eog.remove(&end)
        {
            self.attrs[end as usize] = attr::USER_DEFINED;
        }
        if plain_s
            && let Some(&s) = self.ids.get(b"</s>".as_slice())
            && eog.remove(&s)
        {
            self.attrs[s as usize] = attr::NORMAL;
        }
        self.eog = eog;
    }

    /// A token's text as llama.cpp's `token_to_piece` renders it with special tokens shown.
    fn render(&self, id: u32) -> Vec<u8> {
        let text = &self.tokens[id as usize];
        let a = self.attrs[id as usize];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match self.kind {
                VocabKind::Spm => replace_spm_space(text),
                VocabKind::Bpe => byte_level_decode(text),
            };
        }
        if a & attr::BYTE != 0 {
            return parse_byte_token(text).map(|b| vec![b]).unwrap_or_default();
        }
        Vec::new()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Which algorithm the vocabulary uses.
    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    /// Special token ids.
    pub fn special(&self) -> &SpecialIds {
        &self.special
    }

    /// Tokens that end generation (EOS, EOT, EOM and their look-alikes).
    pub fn eog(&self) -> &BTreeSet<u32> {
        &self.eog
    }

    /// Whether tokenizing adds BOS / EOS.
    pub fn adds_bos_eos(&self) -> (bool, bool) {
        (self.add_bos, self.add_eos)
    }

    /// Whether SentencePiece's leading space is added (and removed again when detokenizing).
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Whether detokenizing applies HF's `clean_up_tokenization_spaces`.
    pub fn clean_spaces(&self) -> bool {
        self.clean_spaces
    }

    /// A token's raw text as stored in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(|t| &t[..])
    }

    /// A token's attribute bits ([`attr`]).
    pub fn token_attr(&self, id: u32) -> Option<u32> {
        self.attrs.get(id as usize).copied()
    }

    /// A token's score.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// The byte-fallback token for `b`: `<0xXX>`, else the one-byte token (llama.cpp's order).
    pub fn byte_token(&self, b: u8) -> Option<u32> {
        self.id_of(format!("<0x{b:02X}>").as_bytes())
            .or_else(|| self.id_of(&[b]))
    }

    /// The id of a token text.
    pub fn id_of(&self, text: &[u8]) -> Option<u32> {
        self.ids.get(text).copied()
    }
}

fn check_len(key: &'static str, got: u64, want: usize) -> Result<()> {
    if got != want as u64 {
        return Err(TokenizerError::Invalid {
            key,
            problem: format!("{got} entries for {want} tokens (one per token is required)"),
        });
    }
    Ok(())
}

/// Reads `tokenizer.ggml.merges`: each entry "left right" (split at the first space after the
/// first byte, as llama.cpp does), both sides tokens; the first occurrence of a pair keeps its rank.
fn read_merges(
    f: &Gguf<impl AsRef<[u8]>>,
    ids: &HashMap<Box<[u8]>, u32>,
) -> Result<HashMap<(u32, u32), u32>> {
    let arr = f
        .get_array(K_MERGES)?
        .ok_or(TokenizerError::Missing { key: K_MERGES })?;
    if arr.elem_type() != ggufy_gguf::ValueType::String {
        return Err(TokenizerError::Invalid {
            key: K_MERGES,
            problem: format!("expected an array of STRING, found {}", arr.elem_type()),
        });
    }
    let mut ranks = HashMap::with_capacity(arr.len() as usize);
    for (i, v) in arr.iter().enumerate() {
        let Value::String(s) = v else {
            return Err(TokenizerError::Element {
                key: K_MERGES,
                index: i,
                problem: "not a string".into(),
            });
        };
        let bad = |problem: String| TokenizerError::Element {
            key: K_MERGES,
            index: i,
            problem,
        };
        let split = s
            .iter()
            .skip(1)
            .position(|&b| b == b' ')
            .map(|p| p + 1)
            .ok_or_else(|| {
                bad(format!(
                    "'{}' is not two tokens separated by a space",
                    String::from_utf8_lossy(s)
                ))
            })?;
        let (l, r) = (&s[..split], &s[split + 1..]);
        let lookup = |part: &[u8]| {
            ids.get(part).copied().ok_or_else(|| {
                bad(format!(
                    "'{}' names '{}', which is not a token",
                    String::from_utf8_lossy(s),
                    String::from_utf8_lossy(part)
                ))
            })
        };
        let key = (lookup(l)?, lookup(r)?);
        ranks.entry(key).or_insert(i as u32);
    }
    Ok(ranks)
}

/// SentencePiece's `▁` back to a space.
pub(crate) fn replace_spm_space(text: &[u8]) -> Vec<u8> {
    const SPM_SPACE: &[u8] = "\u{2581}".as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(SPM_SPACE) {
            out.push(b' ');
            i += SPM_SPACE.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Byte-level BPE text back to bytes; a code point outside GPT-2's table is written as llama.cpp
/// does (`[UNK_BYTE_0x…<token>]`).
pub(crate) fn byte_level_decode(text: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(text);
    let mut out = Vec::with_capacity(text.len());
    for c in s.chars() {
        match crate::unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(s.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}
