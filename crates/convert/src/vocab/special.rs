//! Special tokens, add-BOS/EOS flags, merges and chat templates from a checkpoint's side files,
//! with the precedence llama.cpp's converter (gguf-py `SpecialVocab`) gives them: tokenizer.json's
//! post-processor, then tokenizer_config.json, then config.json's `*_token_id`.

use std::path::Path;

use ggufy_gguf::{MetaArray, MetaValue};
use serde_json::Value as Json;

use crate::checkpoint::read_json_if_present;
use crate::error::{ConvertError, Result};
use crate::meta::Meta;

/// The default special-token kinds, in the order they are looked up.
pub const DEFAULT_TYPES: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

/// What the side files say about special tokens.
#[derive(Clone, Debug, Default)]
pub struct SpecialVocab {
    /// BPE merges as "a b" strings.
    pub merges: Vec<String>,
    /// Special token ids by kind, in the order found.
    pub ids: Vec<(String, u32)>,
    /// add_{kind}_token flags, in the order found.
    pub add: Vec<(String, bool)>,
    /// The chat template: a string, or a list of {name, template}.
    pub chat_template: Option<Json>,
    /// tokenizer.json's normalizer lowercases.
    pub lowercase: Option<bool>,
    /// tokenizer.json's normalizer strips accents.
    pub strip_accents: Option<bool>,
    types: Vec<String>,
    n_vocab: Option<usize>,
}

fn set_bool(v: &mut Vec<(String, bool)>, k: &str, b: bool) {
    match v.iter_mut().find(|(kk, _)| kk == k) {
        Some(e) => e.1 = b,
        None => v.push((k.to_owned(), b)),
    }
}

fn setdefault_bool(v: &mut Vec<(String, bool)>, k: &str, b: bool) {
    if !v.iter().any(|(kk, _)| kk == k) {
        v.push((k.to_owned(), b));
    }
}

/// Python truthiness of an optional JSON value.
fn truthy(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) => !s.is_empty(),
        Some(Json::Object(o)) => !o.is_empty(),
        Some(Json::Array(a)) => !a.is_empty(),
        Some(Json::Number(n)) => n.as_f64() != Some(0.0),
    }
}

fn special_token_id(v: &Json) -> Option<Json> {
    v.get("SpecialToken")?.get("id").cloned()
}

impl SpecialVocab {
    /// Loads from `dir` like gguf-py's `SpecialVocab(dir, load_merges, types, n_vocab)`.
    pub fn load(
        dir: &Path,
        load_merges: bool,
        types: Option<&[&str]>,
        n_vocab: Option<usize>,
    ) -> Result<SpecialVocab> {
        let mut sv = SpecialVocab {
            types: types
                .unwrap_or(&DEFAULT_TYPES)
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            n_vocab,
            ..SpecialVocab::default()
        };
        sv.load_tokenizer_json(dir, load_merges)?;
        sv.load_config_json(dir)?;
        if load_merges && sv.merges.is_empty() {
            sv.load_merges_txt(dir)?;
        }
        Ok(sv)
    }

    /// Records a special id (first one wins; ids outside the vocabulary are skipped).
    pub fn set_id(&mut self, kind: &str, id: &Json) -> Result<()> {
        let Some(id) = id.as_i64() else {
            return Ok(());
        };
        let id = u32::try_from(id).map_err(|_| ConvertError::Tensor {
            name: format!("{kind}_token_id"),
            problem: format!("invalid special token id {id}"),
        })?;
        if self.n_vocab.is_none_or(|n| (id as usize) < n)
            && !self.ids.iter().any(|(k, _)| k == kind)
        {
            self.ids.push((kind.to_owned(), id));
        }
        Ok(())
    }

    fn load_merges_txt(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join("merges.txt");
        if !path.is_file() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConvertError::Io {
            path: path.clone(),
            source,
        })?;
        let mut lines = text.lines().peekable();
        if lines.peek().is_some_and(|l| l.trim().starts_with('#')) {
            lines.next();
        }
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [a, b] = parts.as_slice() {
                self.merges.push(format!("{a} {b}"));
            }
        }
        Ok(())
    }

    fn parse_normalizer(&mut self, n: &Json) {
        match n.get("type").and_then(Json::as_str) {
            Some("Lowercase") => self.lowercase = Some(true),
            Some("StripAccents") => self.strip_accents = Some(true),
            Some("BertNormalizer") => {
                if let Some(b) = n.get("lowercase") {
                    self.lowercase = b.as_bool();
                }
                if let Some(b) = n.get("strip_accents") {
                    self.strip_accents = b.as_bool();
                }
            }
            Some("Sequence") => {
                for sub in n
                    .get("normalizers")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.parse_normalizer(sub);
                }
            }
            _ => {}
        }
    }

    fn load_tokenizer_json(&mut self, dir: &Path, load_merges: bool) -> Result<()> {
        let tj_path = dir.join("tokenizer.json");
        let tokenizer = read_json_if_present(&tj_path)?;
        let mut added_tokens: Vec<Json> = Vec::new();
        if let Some(tj) = &tokenizer {
            if load_merges {
                self.merges =
                    merges_load_tokenizer_json(tj).map_err(|problem| ConvertError::Field {
                        path: tj_path.clone(),
                        field: "model.merges".into(),
                        problem,
                    })?;
            }
            if let Some(n) = tj.get("normalizer").filter(|n| truthy(Some(n))) {
                self.parse_normalizer(n);
            }
            added_tokens = tj
                .get("added_tokens")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
        }
        let tc_path = dir.join("tokenizer_config.json");
        let mut tc = read_json_if_present(&tc_path)?.filter(|v| v.is_object());
        if let Some(tj) = &tokenizer {
            let get = |tc: &Option<Json>, k: &str| tc.as_ref().and_then(|c| c.get(k)).cloned();
            let mut special_bos = get(&tc, "bos_token");
            let mut special_cls = get(&tc, "cls_token");
            let mut special_eos = get(&tc, "eos_token");
            let mut special_sep = get(&tc, "sep_token");
            let has_tc = truthy(tc.as_ref());
            let set_tc = |tc: &mut Option<Json>, k: &str, v: Json| {
                if let Some(Json::Object(o)) = tc {
                    o.insert(k.to_owned(), v);
                }
            };
            if !truthy(special_bos.as_ref()) && truthy(special_cls.as_ref()) && has_tc {
                special_bos = special_cls.clone();
                set_tc(
                    &mut tc,
                    "bos_token",
                    special_bos.clone().unwrap_or(Json::Null),
                );
            }
            if !truthy(special_eos.as_ref()) && truthy(special_sep.as_ref()) && has_tc {
                special_eos = special_sep.clone();
                set_tc(
                    &mut tc,
                    "eos_token",
                    special_eos.clone().unwrap_or(Json::Null),
                );
            }
            if let Some(pp) = tj.get("post_processor").filter(|p| truthy(Some(p))) {
                let processors: Vec<Json> = match pp.get("processors").and_then(Json::as_array) {
                    Some(list) => list.clone(),
                    None => vec![pp.clone()],
                };
                for processor in &processors {
                    match processor.get("type").and_then(Json::as_str) {
                        Some("ByteLevel") => {
                            setdefault_bool(&mut self.add, "bos", false);
                            setdefault_bool(&mut self.add, "eos", false);
                        }
                        Some("RobertaProcessing") => {
                            set_bool(&mut self.add, "bos", true);
                            set_bool(&mut self.add, "eos", true);
                            set_bool(&mut self.add, "sep", true);
                            if !truthy(special_cls.as_ref()) && truthy(tc.as_ref()) {
                                special_cls = processor
                                    .get("cls")
                                    .and_then(|c| c.get(0))
                                    .cloned()
                                    .or_else(|| special_bos.clone());
                                set_tc(
                                    &mut tc,
                                    "cls_token",
                                    special_cls.clone().unwrap_or(Json::Null),
                                );
                            }
                            if !truthy(special_sep.as_ref()) && truthy(tc.as_ref()) {
                                special_sep = processor
                                    .get("sep")
                                    .and_then(|c| c.get(0))
                                    .cloned()
                                    .or_else(|| special_eos.clone());
                                set_tc(
                                    &mut tc,
                                    "sep_token",
                                    special_sep.clone().unwrap_or(Json::Null),
                                );
                            }
                        }
                        Some("TemplateProcessing") => {
                            let single: Vec<Json> = processor
                                .get("single")
                                .and_then(Json::as_array)
                                .cloned()
                                .unwrap_or_default();
                            if single.len() > 1 {
                                let first = single.first().and_then(special_token_id);
                                if let Some(first) = first.filter(|f| truthy(Some(f))) {
                                    if !truthy(tc.as_ref()) {
                                        special_bos = Some(first.clone());
                                    } else if Some(&first) != special_bos.as_ref()
                                        && Some(&first) != special_cls.as_ref()
                                    {
                                        if !truthy(special_bos.as_ref()) {
                                            special_bos = Some(first.clone());
                                            set_tc(&mut tc, "bos_token", first.clone());
                                        }
                                        if !truthy(special_cls.as_ref()) {
                                            special_cls = Some(first.clone());
                                            set_tc(&mut tc, "cls_token", first.clone());
                                        }
                                    }
                                    let is_bos = Some(&first) == special_bos.as_ref()
                                        || Some(&first) == special_cls.as_ref();
                                    set_bool(&mut self.add, "bos", is_bos);
                                }
                                let last = single.last().and_then(special_token_id);
                                if let Some(last) = last.filter(|l| truthy(Some(l))) {
                                    if !truthy(tc.as_ref()) {
                                        special_eos = Some(last.clone());
                                    } else if Some(&last) != special_eos.as_ref() {
                                        if !self.types.iter().any(|t| t == "eot") {
                                            self.types.push("eot".into());
                                            set_tc(
                                                &mut tc,
                                                "eot_token",
                                                special_eos.clone().unwrap_or(Json::Null),
                                            );
                                        } else if !self.types.iter().any(|t| t == "eom") {
                                            self.types.push("eom".into());
                                            set_tc(
                                                &mut tc,
                                                "eom_token",
                                                special_eos.clone().unwrap_or(Json::Null),
                                            );
                                        }
                                        special_eos = Some(last.clone());
                                        set_tc(&mut tc, "eos_token", last.clone());
                                    }
                                    let is_eos = Some(&last) == special_eos.as_ref();
                                    set_bool(&mut self.add, "eos", is_eos);
                                }
                            }
                            // The pair template only decides add_sep, for encoder models.
                            self.sep_from_pair(
                                processor,
                                &single,
                                special_sep.as_ref(),
                                special_eos.as_ref(),
                                &mut tc,
                            );
                        }
                        _ => {}
                    }
                }
            }
        }
        let Some(tc) = tc.filter(|t| truthy(Some(t))) else {
            return Ok(());
        };
        // Chat template: tokenizer_config's, else chat_template.jinja (+ named extras), else
        // chat_template.json's.
        let jinja = dir.join("chat_template.jinja");
        let json_tpl = dir.join("chat_template.json");
        let mut alt: Option<Json> = None;
        if jinja.is_file() {
            let text = read_text(&jinja)?;
            let mut extra: Vec<std::path::PathBuf> =
                std::fs::read_dir(dir.join("additional_chat_templates"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "jinja"))
                    .collect();
            extra.sort();
            if extra.is_empty() {
                alt = Some(Json::String(text));
            } else {
                let mut list = vec![serde_json::json!({"name": "default", "template": text})];
                for p in extra {
                    let name = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    list.push(serde_json::json!({"name": name, "template": read_text(&p)?}));
                }
                alt = Some(Json::Array(list));
            }
        } else if let Some(j) = read_json_if_present(&json_tpl)? {
            alt = j.get("chat_template").cloned();
        }
        let tpl = match tc.get("chat_template") {
            Some(v) => Some(v.clone()),
            None => alt,
        };
        match tpl {
            Some(Json::Null) | None => self.chat_template = None,
            Some(v @ (Json::String(_) | Json::Array(_))) => self.chat_template = Some(v),
            Some(_) => {} // converter: "bad type for chat_template" — ignored
        }
        let types = self.types.clone();
        for typ in &types {
            if let Some(Json::Bool(b)) = tc.get(format!("add_{typ}_token")) {
                setdefault_bool(&mut self.add, typ, *b);
            }
            let content = match tc.get(format!("{typ}_token")) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Object(o)) => match o.get("content") {
                    Some(Json::String(s)) => s.clone(),
                    _ => continue,
                },
                _ => continue,
            };
            let id = added_tokens
                .iter()
                .find(|t| t.get("content").and_then(Json::as_str) == Some(content.as_str()))
                .and_then(|t| t.get("id").cloned());
            if let Some(id) = id {
                self.set_id(typ, &id)?;
            }
        }
        Ok(())
    }

    fn sep_from_pair(
        &mut self,
        processor: &Json,
        single: &[Json],
        special_sep: Option<&Json>,
        special_eos: Option<&Json>,
        tc: &mut Option<Json>,
    ) {
        let pair: Vec<Json> = processor
            .get("pair")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        if pair.is_empty() {
            return;
        }
        let first = if single.len() > 1 {
            single
                .first()
                .and_then(special_token_id)
                .filter(|f| truthy(Some(f)))
        } else {
            None
        };
        let last = if single.len() > 1 {
            single
                .last()
                .and_then(special_token_id)
                .filter(|f| truthy(Some(f)))
        } else {
            None
        };
        let start =
            usize::from(first.is_some() && pair.first().and_then(special_token_id) == first);
        let stop_trim = last.is_some() && pair.last().and_then(special_token_id) == last;
        let end = if stop_trim {
            pair.len().saturating_sub(1)
        } else {
            pair.len()
        };
        let Some(mid) = pair.get(start..end.max(start)).filter(|m| !m.is_empty()) else {
            return;
        };
        let seq = |v: &Json| {
            v.get("Sequence")
                .and_then(|s| s.get("id"))
                .and_then(Json::as_str)
                .map(str::to_owned)
        };
        let (a, b) = (mid.first().and_then(seq), mid.last().and_then(seq));
        if a.as_deref() != Some("A") || b.as_deref() != Some("B") || mid.len() < 3 {
            return;
        }
        let inner = &mid[1..mid.len() - 1];
        let is_sep = |v: &Json| {
            let id = special_token_id(v);
            id.is_some() && (id.as_ref() == special_sep || id.as_ref() == special_eos)
        };
        let mut add_sep = false;
        if inner.first().is_some_and(is_sep) && last.is_none() {
            add_sep = true;
        }
        if inner.len() == 2 && inner.get(1).is_some_and(is_sep) {
            add_sep = true;
        }
        set_bool(&mut self.add, "sep", add_sep);
        if add_sep
            && !truthy(special_sep)
            && let Some(Json::Object(o)) = tc
        {
            o.insert(
                "sep_token".into(),
                special_eos.cloned().unwrap_or(Json::Null),
            );
        }
    }

    fn load_config_json(&mut self, dir: &Path) -> Result<()> {
        let Some(config) = read_json_if_present(&dir.join("config.json"))? else {
            return Ok(());
        };
        let types = self.types.clone();
        for typ in &types {
            let key = format!("{typ}_token_id");
            let v = config
                .get(&key)
                .filter(|v| !v.is_null())
                .or_else(|| config.get("text_config").and_then(|t| t.get(&key)));
            if let Some(v) = v {
                let v = v.clone();
                self.set_id(typ, &v)?;
            }
        }
        Ok(())
    }

    /// Writes what gguf-py's `SpecialVocab.add_to_gguf` writes.
    pub fn write(&self, meta: &mut Meta) {
        if !self.merges.is_empty() {
            meta.set(
                "tokenizer.ggml.merges",
                MetaValue::Array(MetaArray::String(self.merges.clone())),
            );
        }
        for (kind, id) in &self.ids {
            let key = match kind.as_str() {
                "bos" => "tokenizer.ggml.bos_token_id",
                "eos" => "tokenizer.ggml.eos_token_id",
                "unk" => "tokenizer.ggml.unknown_token_id",
                "sep" => "tokenizer.ggml.seperator_token_id",
                "pad" => "tokenizer.ggml.padding_token_id",
                "mask" => "tokenizer.ggml.mask_token_id",
                "eot" => "tokenizer.ggml.eot_token_id",
                "eom" => "tokenizer.ggml.eom_token_id",
                _ => continue, // gguf-py has no key for cls, prefix, suffix, middle, fsep
            };
            meta.set(key, MetaValue::U32(*id));
        }
        for (kind, b) in &self.add {
            let key = match kind.as_str() {
                "bos" => "tokenizer.ggml.add_bos_token",
                "eos" => "tokenizer.ggml.add_eos_token",
                "sep" => "tokenizer.ggml.add_sep_token",
                _ => continue,
            };
            meta.set(key, MetaValue::Bool(*b));
        }
        if let Some(tpl) = &self.chat_template {
            write_chat_template(tpl, meta);
        }
        if let Some(b) = self.lowercase {
            meta.set("tokenizer.ggml.normalizer.lowercase", MetaValue::Bool(b));
        }
        if let Some(b) = self.strip_accents {
            meta.set(
                "tokenizer.ggml.normalizer.strip_accents",
                MetaValue::Bool(b),
            );
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ConvertError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Chat template(s) as gguf-py's `add_chat_template` stores them. Named templates are listed in
/// sorted order (gguf-py lists a Python set, whose order varies from run to run).
fn write_chat_template(tpl: &Json, meta: &mut Meta) {
    match tpl {
        Json::String(s) => meta.set("tokenizer.chat_template", MetaValue::String(s.clone())),
        Json::Array(list) => {
            let mut default = None;
            let mut names = Vec::new();
            for choice in list {
                let name: String = choice
                    .get("name")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let Some(t) = choice.get("template").and_then(Json::as_str) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                if name == "default" {
                    default = Some(t.to_owned());
                } else {
                    meta.set(
                        format!("tokenizer.chat_template.{name}"),
                        MetaValue::String(t.to_owned()),
                    );
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
            if !names.is_empty() {
                names.sort();
                meta.set(
                    "tokenizer.chat_templates",
                    MetaValue::Array(MetaArray::String(names)),
                );
            }
            if let Some(d) = default {
                meta.set("tokenizer.chat_template", MetaValue::String(d));
            }
        }
        _ => {}
    }
}

/// tokenizer.json's `model.merges` as "a b" strings: the old format as is; the list-of-pairs
/// format joined with a space, spaces inside a part written as U+0120 (as llama.cpp reads them).
pub fn merges_load_tokenizer_json(tj: &Json) -> Result<Vec<String>, String> {
    let Some(merges) = tj
        .get("model")
        .and_then(|m| m.get("merges"))
        .and_then(Json::as_array)
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(merges.len());
    for (i, m) in merges.iter().enumerate() {
        match m {
            Json::String(s) => out.push(s.clone()),
            Json::Array(pair) if pair.len() == 2 => {
                let parts: Option<Vec<String>> = pair
                    .iter()
                    .map(|p| p.as_str().map(|s| s.replace(' ', "\u{120}")))
                    .collect();
                let parts = parts.ok_or_else(|| format!("merges[{i}] is not a pair of strings"))?;
                out.push(parts.join(" "));
            }
            _ => return Err(format!("merges[{i}] is neither \"a b\" nor [a, b]")),
        }
    }
    Ok(out)
}
