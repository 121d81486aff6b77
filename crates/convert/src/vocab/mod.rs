//! Tokenizer → `tokenizer.ggml.*` metadata, as llama.cpp's converter writes it: SentencePiece
//! (`tokenizer.model`) for llama-style vocabularies, tokenizer.json byte-level BPE ("gpt2") with the
//! pre-tokenizer chosen by llama.cpp's check-text hash, and the special tokens and chat template.

pub mod bpe;
pub mod special;
pub mod spm;

use std::path::Path;

use ggufy_gguf::{MetaArray, MetaValue};
use serde_json::Value as Json;

use crate::checkpoint::read_json_if_present;
use crate::config::Hparams;
use crate::error::{ConvertError, Result};
use crate::meta::Meta;
use special::SpecialVocab;
use spm::PieceType;

/// llama.cpp's token types (`llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum TokenType {
    /// Ordinary token.
    Normal = 1,
    /// The unknown token.
    Unknown = 2,
    /// Control token (BOS, EOS, chat markers).
    Control = 3,
    /// User-defined (added, not special).
    UserDefined = 4,
    /// Unused id.
    Unused = 5,
    /// Byte-fallback token.
    Byte = 6,
}

/// A vocabulary ready for GGUF.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// Token texts by id.
    pub tokens: Vec<String>,
    /// Scores (SentencePiece only).
    pub scores: Option<Vec<f32>>,
    /// Types by id.
    pub types: Vec<TokenType>,
}

impl Vocab {
    fn write(&self, meta: &mut Meta, model: &str, pre: &str) {
        meta.string("tokenizer.ggml.model", model);
        meta.string("tokenizer.ggml.pre", pre);
        meta.set(
            "tokenizer.ggml.tokens",
            MetaValue::Array(MetaArray::String(self.tokens.clone())),
        );
        if let Some(scores) = &self.scores {
            meta.set(
                "tokenizer.ggml.scores",
                MetaValue::Array(MetaArray::F32(scores.clone())),
            );
        }
        meta.set(
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(
                self.types.iter().map(|t| *t as i32).collect(),
            )),
        );
    }
}

/// Which tokenizer files an architecture takes, in llama.cpp's order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabStyle {
    /// Llama/Mistral: `add_prefix_space` from tokenizer_config, then SentencePiece, else BPE.
    Llama,
    /// Qwen2: SentencePiece if present, else BPE.
    Qwen2,
    /// Phi-3: BPE for a GPT2Tokenizer, else its own SentencePiece reading.
    Phi3,
    /// Gemma: SentencePiece, FIM/EOT ids, no space prefix.
    Gemma,
}

/// "Looks special" as llama.cpp's converter decides for added tokens.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Options for the vocabulary step.
#[derive(Clone, Debug, Default)]
pub struct VocabOptions {
    /// Use this `tokenizer.ggml.pre` instead of the check-hash lookup.
    pub pre_override: Option<String>,
}

/// Writes the tokenizer metadata for `style` from the files in `dir`.
pub fn write_vocab(
    dir: &Path,
    h: &Hparams,
    style: VocabStyle,
    opts: &VocabOptions,
    meta: &mut Meta,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let spm_path = dir.join("tokenizer.model");
    match style {
        VocabStyle::Llama => {
            let tc = read_json_if_present(&dir.join("tokenizer_config.json"))?;
            if let Some(Json::Bool(b)) = tc.as_ref().and_then(|t| t.get("add_prefix_space")) {
                meta.bool("tokenizer.ggml.add_space_prefix", *b);
            }
            if spm_path.is_file() {
                sentencepiece_vocab(dir, h, meta, warnings)?;
            } else if bpe::is_llama_hf(dir)? {
                return Err(ConvertError::File {
                    path: dir.join("tokenizer.json"),
                    problem: "SentencePiece-style BPE (byte_fallback) tokenizer.json without tokenizer.model is not supported yet".into(),
                });
            } else {
                gpt2_vocab(dir, h, opts, meta, warnings)?;
            }
        }
        VocabStyle::Qwen2 => {
            if spm_path.is_file() {
                sentencepiece_vocab(dir, h, meta, warnings)?;
            } else {
                gpt2_vocab(dir, h, opts, meta, warnings)?;
            }
        }
        VocabStyle::Phi3 => {
            let tc = read_json_if_present(&dir.join("tokenizer_config.json"))?;
            if tc
                .as_ref()
                .and_then(|t| t.get("tokenizer_class"))
                .and_then(Json::as_str)
                == Some("GPT2Tokenizer")
            {
                gpt2_vocab(dir, h, opts, meta, warnings)?;
            } else {
                phi3_vocab(dir, h, meta, warnings)?;
            }
        }
        VocabStyle::Gemma => {
            sentencepiece_vocab(dir, h, meta, warnings)?;
            let types = ["prefix", "suffix", "middle", "fsep", "eot"];
            let mut sv = SpecialVocab::load(dir, false, Some(&types), None)?;
            for (kind, id) in [
                ("prefix", 67),
                ("suffix", 69),
                ("middle", 68),
                ("fsep", 70),
                ("eot", 107),
            ] {
                sv.set_id(kind, &Json::from(id))?;
            }
            sv.chat_template = None;
            sv.write(meta);
            meta.bool("tokenizer.ggml.add_space_prefix", false);
        }
    }
    Ok(())
}

fn load_spm(path: &Path) -> Result<spm::SpmModel> {
    if !path.is_file() {
        return Err(ConvertError::File {
            path: path.to_owned(),
            problem: "missing".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| ConvertError::Io {
        path: path.to_owned(),
        source,
    })?;
    spm::parse(&bytes).map_err(|problem| ConvertError::File {
        path: path.to_owned(),
        problem: format!("not a SentencePiece model: {problem}"),
    })
}

fn spm_type(k: PieceType) -> TokenType {
    match k {
        PieceType::Unknown => TokenType::Unknown,
        PieceType::Control => TokenType::Control,
        PieceType::Unused => TokenType::Unused,
        PieceType::Byte => TokenType::Byte,
        PieceType::Normal | PieceType::UserDefined => TokenType::Normal,
    }
}

fn vocab_size(h: &Hparams, keys: &[&str], fallback: usize) -> Result<usize> {
    Ok(h.u32(keys)?.map_or(fallback, |v| v as usize))
}

/// `_create_vocab_sentencepiece` + `_set_vocab_sentencepiece`.
fn sentencepiece_vocab(
    dir: &Path,
    h: &Hparams,
    meta: &mut Meta,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let model = load_spm(&dir.join("tokenizer.model"))?;
    let n = vocab_size(
        h,
        &["vocab_size_per_layer_input", "vocab_size"],
        model.pieces.len(),
    )?;
    let mut v = Vocab {
        tokens: (0..n).map(|i| format!("[PAD{i}]")).collect(),
        scores: Some(vec![-10000.0; n]),
        types: vec![TokenType::Unused; n],
    };
    let scores = v.scores.get_or_insert_with(Vec::new);
    for (id, p) in model.pieces.iter().enumerate() {
        if id >= n {
            warnings.push(format!(
                "tokenizer.model has {} pieces but vocab_size is {n}: pieces from {id} on are dropped",
                model.pieces.len()
            ));
            break;
        }
        v.tokens[id] = p.text.clone();
        scores[id] = p.score;
        v.types[id] = spm_type(p.kind);
    }
    if let Some(added) = read_json_if_present(&dir.join("added_tokens.json"))? {
        for (text, id) in added.as_object().into_iter().flatten() {
            let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < n) else {
                continue;
            };
            v.tokens[id] = text.clone();
            scores[id] = -1000.0;
            v.types[id] = TokenType::UserDefined;
        }
    }
    if let Some(tc) = read_json_if_present(&dir.join("tokenizer_config.json"))? {
        for (id, data) in tc
            .get("added_tokens_decoder")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            let Some(id) = id.parse::<usize>().ok().filter(|&i| i < n) else {
                continue;
            };
            let Some(content) = data.get("content").and_then(Json::as_str) else {
                continue;
            };
            let special = data.get("special").and_then(Json::as_bool).unwrap_or(false);
            if special || looks_special(content) {
                v.types[id] = TokenType::Control;
                v.tokens[id] = content.to_owned();
            } else {
                v.types[id] = TokenType::UserDefined;
                v.tokens[id] = content.replace('\u{2581}', " ");
            }
            scores[id] = -1000.0;
        }
    }
    v.write(meta, "llama", "default");
    SpecialVocab::load(dir, false, None, Some(v.tokens.len()))?.write(meta);
    Ok(())
}

/// Phi-3's own SentencePiece reading (added tokens from three files, specials as CONTROL).
fn phi3_vocab(dir: &Path, h: &Hparams, meta: &mut Meta, _warnings: &mut Vec<String>) -> Result<()> {
    let model = load_spm(&dir.join("tokenizer.model"))?;
    let n = vocab_size(h, &["vocab_size"], model.pieces.len())?;
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; n];
    let mut types = vec![TokenType::Unused; n];
    for (id, p) in model.pieces.iter().enumerate() {
        let (Some(t), Some(s), Some(ty)) =
            (tokens.get_mut(id), scores.get_mut(id), types.get_mut(id))
        else {
            return Err(ConvertError::Field {
                path: dir.join("config.json"),
                field: "vocab_size".into(),
                problem: format!(
                    "{n} is smaller than tokenizer.model's {} pieces",
                    model.pieces.len()
                ),
            });
        };
        *t = p.text.clone();
        *s = p.score;
        *ty = spm_type(p.kind);
    }
    if let Some(added) = read_json_if_present(&dir.join("added_tokens.json"))? {
        for (text, id) in added.as_object().into_iter().flatten() {
            let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < n) else {
                continue;
            };
            tokens[id] = text.clone();
            scores[id] = -1000.0;
            types[id] = TokenType::UserDefined;
        }
    }
    let mut apply = |id: usize, data: &Json| -> Result<()> {
        let content = data
            .get("content")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let (Some(t), Some(s), Some(ty)) =
            (tokens.get_mut(id), scores.get_mut(id), types.get_mut(id))
        else {
            return Err(ConvertError::Tensor {
                name: "added token".into(),
                problem: format!("id {id} is outside the vocabulary of {n}"),
            });
        };
        *t = content.to_owned();
        *s = -1000.0;
        *ty = if data.get("special").and_then(Json::as_bool).unwrap_or(false) {
            TokenType::Control
        } else {
            TokenType::UserDefined
        };
        Ok(())
    };
    if let Some(tc) = read_json_if_present(&dir.join("tokenizer_config.json"))? {
        for (id, data) in tc
            .get("added_tokens_decoder")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            if let Ok(id) = id.parse::<usize>() {
                apply(id, data)?;
            }
        }
    }
    if let Some(tj) = read_json_if_present(&dir.join("tokenizer.json"))? {
        for data in tj
            .get("added_tokens")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = data.get("id").and_then(Json::as_u64) {
                apply(id as usize, data)?;
            }
        }
    }
    let v = Vocab {
        tokens,
        scores: Some(scores),
        types,
    };
    v.write(meta, "llama", "default");
    SpecialVocab::load(dir, false, None, Some(v.tokens.len()))?.write(meta);
    Ok(())
}

/// `_set_vocab_gpt2`: tokenizer.json BPE.
fn gpt2_vocab(
    dir: &Path,
    h: &Hparams,
    opts: &VocabOptions,
    meta: &mut Meta,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let (v, pre) = bpe::gpt2_vocab(dir, h, opts, warnings)?;
    v.write(meta, "gpt2", &pre);
    SpecialVocab::load(dir, true, None, None)?.write(meta);
    Ok(())
}
