//! Byte-level BPE vocabularies from tokenizer.json ("gpt2" in GGUF), and the choice of
//! `tokenizer.ggml.pre`: llama.cpp's converter tokenizes a fixed check text with the model's own
//! tokenizer and looks sha256 of the id list up in a table. ggufy runs the same text through
//! Hugging Face's `tokenizers` crate and uses the same table (`data/`, extracted from llama.cpp by
//! `scripts/extract_bpe_pre_table.py`).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use super::{TokenType, Vocab, VocabOptions, looks_special};
use crate::checkpoint::read_json_if_present;
use crate::config::Hparams;
use crate::error::{ConvertError, Result};

/// The check text llama.cpp's converter tokenizes.
pub const CHECK_TEXT: &str = include_str!("../../data/bpe-pre-check.txt");
const TABLE: &str = include_str!("../../data/bpe-pre-hashes.tsv");

/// The pre-tokenizer name llama.cpp's table gives a check hash.
pub fn pre_for_hash(hash: &str) -> Option<&'static str> {
    TABLE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, f.next()?))
        })
        .find(|(h, _)| *h == hash)
        .map(|(_, name)| name)
}

/// sha256 of Python's `str(ids)` for the check text's ids.
pub fn check_hash(tok: &Tokenizer) -> Result<String, String> {
    let enc = tok
        .encode(CHECK_TEXT, true)
        .map_err(|e| format!("cannot tokenize the check text: {e}"))?;
    let list = enc
        .get_ids()
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let digest = Sha256::digest(format!("[{list}]").as_bytes());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether tokenizer.json is a SentencePiece-style BPE (byte fallback) rather than byte-level.
pub fn is_llama_hf(dir: &Path) -> Result<bool> {
    let Some(tj) = read_json_if_present(&dir.join("tokenizer.json"))? else {
        return Ok(false);
    };
    let model = tj.get("model");
    Ok(
        model.and_then(|m| m.get("type")).and_then(Json::as_str) == Some("BPE")
            && model
                .and_then(|m| m.get("byte_fallback"))
                .and_then(Json::as_bool)
                == Some(true),
    )
}

/// transformers' `clean_up_tokenization`.
fn clean_up_tokenization(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// Loads tokenizer.json with the `tokenizers` crate.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(ConvertError::File {
            path: path.to_owned(),
            problem:
                "missing: a BPE vocabulary needs tokenizer.json (and there is no tokenizer.model)"
                    .into(),
        });
    }
    Tokenizer::from_file(path).map_err(|e| ConvertError::File {
        path: path.to_owned(),
        problem: format!("not a tokenizer the tokenizers library can load: {e}"),
    })
}

/// `get_vocab_base`: tokens and types by id, and the pre-tokenizer name.
pub fn gpt2_vocab(
    dir: &Path,
    h: &Hparams,
    opts: &VocabOptions,
    warnings: &mut Vec<String>,
) -> Result<(Vocab, String)> {
    let path = dir.join("tokenizer.json");
    let tok = load_tokenizer(&path)?;
    let vocab: HashMap<String, u32> = tok.get_vocab(true);
    let max_id = vocab.values().copied().max().unwrap_or(0) as usize;
    let n = h.u32(&["vocab_size"])?.map_or(vocab.len(), |v| v as usize);
    if vocab.is_empty() || max_id >= n {
        return Err(ConvertError::Field {
            path: h.path().to_owned(),
            field: "vocab_size".into(),
            problem: format!("{n} does not cover tokenizer.json's highest id {max_id}"),
        });
    }
    let hash = check_hash(&tok).map_err(|problem| ConvertError::File {
        path: path.clone(),
        problem,
    })?;
    let pre = match (&opts.pre_override, pre_for_hash(&hash)) {
        (Some(p), Some(found)) if p != found => {
            warnings.push(format!(
                "--vocab-pre {p} overrides '{found}', the pre-tokenizer llama.cpp's table names for this tokenizer"
            ));
            p.clone()
        }
        (Some(p), _) => p.clone(),
        (None, Some(found)) => found.to_owned(),
        (None, None) => return Err(ConvertError::UnknownPreTokenizer { path, hash }),
    };
    let cleanup = read_json_if_present(&dir.join("tokenizer_config.json"))?
        .and_then(|tc| {
            tc.get("clean_up_tokenization_spaces")
                .and_then(Json::as_bool)
        })
        .unwrap_or(false);

    let mut reverse: Vec<Option<&str>> = vec![None; n];
    for (t, &id) in &vocab {
        if let Some(slot) = reverse.get_mut(id as usize) {
            *slot = Some(t.as_str());
        }
    }
    let added = tok.get_added_tokens_decoder();
    let added_contents: HashMap<&str, u32> = added
        .iter()
        .map(|(id, t)| (t.content.as_str(), *id))
        .collect();
    let mut out = Vocab {
        tokens: Vec::with_capacity(n),
        scores: None,
        types: Vec::with_capacity(n),
    };
    for (i, t) in reverse.iter().enumerate() {
        let Some(token) = t else {
            out.tokens.push(format!("[PAD{i}]"));
            out.types.push(TokenType::Unused);
            continue;
        };
        let mut token = (*token).to_owned();
        if added_contents.contains_key(token.as_str()) {
            let info = added.get(&(i as u32));
            if info.is_some_and(|a| !a.normalized) {
                // llama.cpp expects added tokens pre-normalized: round-trip them as the converter does.
                let ids = tok
                    .encode(token.as_str(), false)
                    .map_err(|e| ConvertError::File {
                        path: path.clone(),
                        problem: format!("cannot encode added token {token:?}: {e}"),
                    })?;
                let mut back =
                    tok.decode(ids.get_ids(), false)
                        .map_err(|e| ConvertError::File {
                            path: path.clone(),
                            problem: format!("cannot decode added token {token:?}: {e}"),
                        })?;
                if cleanup {
                    back = clean_up_tokenization(&back);
                }
                token = back;
            }
            if info.is_some_and(|a| a.special) || looks_special(&token) {
                out.types.push(TokenType::Control);
            } else {
                token = token.replace('\u{2581}', " ");
                out.types.push(TokenType::UserDefined);
            }
        } else {
            out.types.push(TokenType::Normal);
        }
        out.tokens.push(token);
    }
    Ok((out, pre))
}
