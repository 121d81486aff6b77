//! `ggufy inspect`: everything a GGUF header says, as a readable report or one JSON document.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use ggufy_gguf::{Endian, GgmlType, GgufFile, Value};
use serde_json::{Value as Json, json};

use crate::InspectArgs;
use crate::open_gguf;
use crate::report::{
    file_type_name, human_bytes, quote, thousands, type_text, value_json, value_text,
};

/// Tensors, elements and bytes of one ggml type.
#[derive(Default)]
struct Totals {
    tensors: u64,
    elements: u64,
    bytes: u64,
}

/// Special-token keys shown in the tokenizer summary, with their short names.
const SPECIAL_IDS: [(&str, &str); 13] = [
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("cls", "tokenizer.ggml.cls_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
    ("eot", "tokenizer.ggml.eot_token_id"),
    ("eom", "tokenizer.ggml.eom_token_id"),
    ("fim_pre", "tokenizer.ggml.fim_pre_token_id"),
    ("fim_suf", "tokenizer.ggml.fim_suf_token_id"),
    ("fim_mid", "tokenizer.ggml.fim_mid_token_id"),
    ("fim_pad", "tokenizer.ggml.fim_pad_token_id"),
];

/// Runs the command and returns what goes to stdout.
pub fn run(args: &InspectArgs) -> Result<String> {
    let path = &args.file;
    let file = open_gguf(path)?;
    let mut warnings = file.layout().warnings.clone();
    let tokenizer = tokenizer_summary(&file, &mut warnings);
    let nf4 = nf4_summary(&file, &mut warnings);
    split_checks(&file, path, &mut warnings);
    if args.strict
        && let Some(first) = warnings.first()
    {
        anyhow::bail!(
            "{}: {first}{}",
            path.display(),
            match warnings.len() {
                1 => String::new(),
                n => format!(" (and {} more warnings)", n - 1),
            }
        );
    }
    if args.json {
        let mut doc = json_report(&file, path, args.array_limit, tokenizer, &warnings);
        doc["nf4"] = nf4.map_or(
            Json::Null,
            |n| json!({"tensors": n.tensors, "n_elements": n.elements, "n_bytes": n.bytes}),
        );
        let mut s = serde_json::to_string_pretty(&doc)?;
        s.push('\n');
        Ok(s)
    } else {
        let mut text = text_report(&file, path, args, tokenizer, &warnings);
        if let Some(n) = nf4 {
            let section = format!(
                "\nnf4 (ggufy convention, docs/nf4.md)\n  {} tensors, {} elements in {} (codes and scales), {:.2} bits/weight\n",
                n.tensors,
                thousands(n.elements),
                human_bytes(n.bytes),
                n.bytes as f64 * 8.0 / n.elements.max(1) as f64
            );
            // Before the warnings, after everything else.
            match text.find("\nwarnings\n") {
                Some(i) => text.insert_str(i, &section),
                None => text.push_str(&section),
            }
        }
        Ok(text)
    }
}

fn totals(file: &GgufFile) -> BTreeMap<GgmlType, Totals> {
    let mut by_type: BTreeMap<GgmlType, Totals> = BTreeMap::new();
    for t in file.tensors() {
        let e = by_type.entry(t.ty).or_default();
        e.tensors += 1;
        e.elements += t.n_elements;
        e.bytes += t.n_bytes;
    }
    by_type
}

/// The tokenizer as the file describes it, plus warnings for the inconsistencies that crash
/// other loaders (short parallel arrays, out-of-range special ids).
fn tokenizer_summary(file: &GgufFile, warnings: &mut Vec<String>) -> Option<Json> {
    let model = file.get("tokenizer.ggml.model")?;
    let model = String::from_utf8_lossy(match model {
        Value::String(s) => s,
        _ => b"?",
    })
    .into_owned();
    let tokens = file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array());
    let n_tokens = tokens.map_or(0, |a| a.len());
    let mut doc = serde_json::Map::new();
    doc.insert("model".into(), json!(model));
    if let Some(pre) = file.get("tokenizer.ggml.pre") {
        doc.insert("pre".into(), value_json(&pre, None));
    }
    doc.insert("tokens".into(), json!(n_tokens));
    for (name, key) in [
        ("scores", "tokenizer.ggml.scores"),
        ("token_types", "tokenizer.ggml.token_type"),
        ("merges", "tokenizer.ggml.merges"),
    ] {
        if let Some(v) = file.get(key) {
            match v.as_array() {
                Some(a) => {
                    doc.insert(name.into(), json!(a.len()));
                    if name != "merges" && a.len() != n_tokens {
                        warnings.push(format!(
                            "{key} has {} entries but there are {n_tokens} tokens",
                            a.len()
                        ));
                    }
                }
                None => warnings.push(format!("{key} is {}, not an array", v.value_type())),
            }
        }
    }
    let mut special = serde_json::Map::new();
    for (name, key) in SPECIAL_IDS {
        let Some(v) = file.get(key) else { continue };
        let Some(id) = v.as_i64() else {
            warnings.push(format!("{key} is {}, not an integer", v.value_type()));
            continue;
        };
        let text = u64::try_from(id)
            .ok()
            .and_then(|i| tokens.and_then(|t| t.get(i)))
            .and_then(|v| match v {
                Value::String(s) => Some(String::from_utf8_lossy(s).into_owned()),
                _ => None,
            });
        if text.is_none() {
            warnings.push(format!(
                "{key} = {id} is not a token id (the vocabulary has {n_tokens})"
            ));
        }
        special.insert(name.into(), json!({ "id": id, "text": text }));
    }
    doc.insert("special".into(), Json::Object(special));
    for (name, key) in [
        ("add_bos", "tokenizer.ggml.add_bos_token"),
        ("add_eos", "tokenizer.ggml.add_eos_token"),
        ("add_space_prefix", "tokenizer.ggml.add_space_prefix"),
    ] {
        if let Some(b) = file.get(key).and_then(|v| v.as_bool()) {
            doc.insert(name.into(), json!(b));
        }
    }
    let templates: Vec<Json> = file
        .metadata()
        .filter(|(k, _)| {
            *k == "tokenizer.chat_template" || k.starts_with("tokenizer.chat_template.")
        })
        .map(|(k, v)| {
            let len = match v {
                Value::String(s) => s.len(),
                _ => 0,
            };
            json!({ "key": k, "bytes": len })
        })
        .collect();
    doc.insert("chat_templates".into(), Json::Array(templates));
    Some(Json::Object(doc))
}

/// NF4 weights stored under ggufy's convention: a count of tensors, values and bytes.
fn nf4_summary(file: &GgufFile, warnings: &mut Vec<String>) -> Option<Totals> {
    let names = file.get("ggufy.nf4.tensors")?.as_array()?;
    let mut t = Totals::default();
    for v in names.iter() {
        let name = v.as_str().unwrap_or("");
        let absmax = format!("{name}.absmax");
        match (file.tensor(name), file.tensor(&absmax)) {
            (Some(codes), Some(scales)) => {
                t.tensors += 1;
                t.elements += codes.n_elements * 2;
                t.bytes += codes.n_bytes + scales.n_bytes;
            }
            _ => warnings.push(format!(
                "ggufy.nf4.tensors lists '{name}', but it or '{absmax}' is missing"
            )),
        }
    }
    Some(t)
}

/// Checks a shard's own split keys and file name (`name-00002-of-00005.gguf`).
fn split_checks(file: &GgufFile, path: &std::path::Path, warnings: &mut Vec<String>) {
    let (Some(no), Some(count)) = (
        file.get("split.no").and_then(|v| v.as_u64()),
        file.get("split.count").and_then(|v| v.as_u64()),
    ) else {
        return;
    };
    if count == 0 || no >= count {
        warnings.push(format!(
            "split.no = {no} is not a shard index of split.count = {count} (split.no counts from 0)"
        ));
    }
    if let Some(total) = file.get("split.tensors.count").and_then(|v| v.as_u64())
        && total < file.tensors().len() as u64
    {
        warnings.push(format!(
            "split.tensors.count = {total} is less than this shard's {} tensors",
            file.tensors().len()
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some((i, n)) = shard_numbers(&name)
        && (i != no + 1 || n != count)
    {
        warnings.push(format!(
            "file name says shard {i} of {n}, but split.no = {no} and split.count = {count}"
        ));
    }
}

/// `(i, n)` from a name ending in `-%05d-of-%05d.gguf`.
fn shard_numbers(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".gguf")?;
    let (rest, n) = stem.rsplit_once("-of-")?;
    let (_, i) = rest.rsplit_once('-')?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

fn json_report(
    file: &GgufFile,
    path: &std::path::Path,
    array_limit: Option<usize>,
    tokenizer: Option<Json>,
    warnings: &[String],
) -> Json {
    let l = file.layout();
    let metadata: Vec<Json> = file
        .metadata()
        .zip(file.metadata_offsets())
        .map(|((key, v), offset)| {
            let mut m = serde_json::Map::new();
            m.insert("key".into(), json!(key));
            m.insert("type".into(), json!(v.value_type().name()));
            if let Value::Array(a) = v {
                m.insert("element_type".into(), json!(a.elem_type().name()));
                m.insert("count".into(), json!(a.len()));
                if array_limit.is_some_and(|n| (n as u64) < a.len()) {
                    m.insert("truncated".into(), json!(true));
                }
            }
            m.insert("value".into(), value_json(&v, array_limit));
            m.insert("offset".into(), json!(offset));
            Json::Object(m)
        })
        .collect();
    let tensors: Vec<Json> = file
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "type_id": t.ty.id(),
                "shape": t.dims,
                "n_elements": t.n_elements,
                "n_bytes": t.n_bytes,
                "offset": t.offset,
                "data_offset": l.data_offset + t.offset,
            })
        })
        .collect();
    let totals: Vec<Json> = totals(file)
        .iter()
        .map(|(ty, t)| {
            json!({"type": ty.name(), "tensors": t.tensors, "n_elements": t.elements, "n_bytes": t.bytes})
        })
        .collect();
    json!({
        "file": path.display().to_string(),
        "file_size": l.file_len,
        "version": l.version,
        "endian": if l.endian == Endian::Big { "big" } else { "little" },
        "alignment": l.alignment,
        "kv_count": file.metadata_len(),
        "tensor_count": file.tensors().len(),
        "header_len": l.header_len,
        "data_offset": l.data_offset,
        "trailing_bytes": l.trailing_bytes(),
        "metadata": metadata,
        "tensors": tensors,
        "totals": totals,
        "tokenizer": tokenizer,
        "warnings": warnings,
    })
}

fn text_report(
    file: &GgufFile,
    path: &std::path::Path,
    args: &InspectArgs,
    tokenizer: Option<Json>,
    warnings: &[String],
) -> String {
    let l = file.layout();
    let limit = args.array_limit.unwrap_or(8);
    let mut o = String::new();
    let endian = if l.endian == Endian::Big {
        "big-endian"
    } else {
        "little-endian"
    };
    let _ = writeln!(o, "{}", path.display());
    let _ = writeln!(
        o,
        "  GGUF v{}, {endian}, {} ({} bytes), alignment {}",
        l.version,
        human_bytes(l.file_len),
        thousands(l.file_len),
        l.alignment
    );
    let _ = writeln!(
        o,
        "  {} metadata keys, {} tensors; header {} bytes, data from byte {}, {} trailing bytes",
        file.metadata_len(),
        file.tensors().len(),
        l.header_len,
        l.data_offset,
        l.trailing_bytes()
    );

    let _ = writeln!(o, "\nmetadata");
    let key_w = file
        .metadata()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0)
        .min(48);
    for (k, v) in file.metadata() {
        let mut text = value_text(&v, limit);
        if k == "general.file_type"
            && let Some(name) = v.as_u64().and_then(file_type_name)
        {
            text.push_str(&format!(" ({name})"));
        }
        let _ = writeln!(o, "  {k:<key_w$}  {:<16} {text}", type_text(&v));
    }

    if !args.no_tensors && !file.tensors().is_empty() {
        let _ = writeln!(o, "\ntensors");
        let name_w = file
            .tensors()
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(4)
            .min(48);
        let _ = writeln!(
            o,
            "  {:>5}  {:<name_w$}  {:<7} {:<22} {:>14} {:>14}",
            "#", "name", "type", "shape", "bytes", "offset"
        );
        for (i, t) in file.tensors().iter().enumerate() {
            let shape = t
                .dims
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" x ");
            let _ = writeln!(
                o,
                "  {i:>5}  {:<name_w$}  {:<7} {:<22} {:>14} {:>14}",
                t.name,
                t.ty.name(),
                shape,
                thousands(t.n_bytes),
                thousands(t.offset)
            );
        }
    }

    let by_type = totals(file);
    if !by_type.is_empty() {
        let _ = writeln!(o, "\ntotals");
        let mut all = Totals::default();
        for (ty, t) in &by_type {
            let _ = writeln!(o, "  {:<8} {}", ty.name(), totals_line(t));
            all.tensors += t.tensors;
            all.elements += t.elements;
            all.bytes += t.bytes;
        }
        let _ = writeln!(o, "  {:<8} {}", "all", totals_line(&all));
    }

    if let Some(tok) = tokenizer {
        let _ = writeln!(o, "\ntokenizer");
        let _ = writeln!(
            o,
            "  {} (pre-tokenizer {}), {} tokens{}",
            tok["model"].as_str().unwrap_or("?"),
            tok.get("pre").and_then(|p| p.as_str()).unwrap_or("none"),
            thousands(tok["tokens"].as_u64().unwrap_or(0)),
            tok.get("merges")
                .and_then(|m| m.as_u64())
                .map(|m| format!(", {} merges", thousands(m)))
                .unwrap_or_default()
        );
        if let Some(special) = tok["special"].as_object().filter(|s| !s.is_empty()) {
            let parts: Vec<String> = special
                .iter()
                .map(|(name, s)| {
                    let text = s["text"]
                        .as_str()
                        .map(|t| quote(t.as_bytes(), 24))
                        .unwrap_or_else(|| "(not in vocabulary)".into());
                    format!("{name} {} {text}", s["id"])
                })
                .collect();
            let _ = writeln!(o, "  special: {}", parts.join(", "));
        }
        let flags: Vec<String> = ["add_bos", "add_eos", "add_space_prefix"]
            .iter()
            .filter_map(|k| tok.get(*k).map(|v| format!("{k} {v}")))
            .collect();
        if !flags.is_empty() {
            let _ = writeln!(o, "  {}", flags.join(", "));
        }
        for t in tok["chat_templates"].as_array().into_iter().flatten() {
            let _ = writeln!(
                o,
                "  chat template: {} ({} bytes)",
                t["key"].as_str().unwrap_or(""),
                t["bytes"]
            );
        }
    }

    if !warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings");
        for w in warnings {
            let _ = writeln!(o, "  {w}");
        }
    }
    o
}

fn totals_line(t: &Totals) -> String {
    let bpw = if t.elements > 0 {
        format!(
            ", {:.2} bits/weight",
            t.bytes as f64 * 8.0 / t.elements as f64
        )
    } else {
        String::new()
    };
    format!(
        "{:>5} tensors {:>16} elements {:>11}{bpw}",
        t.tensors,
        thousands(t.elements),
        human_bytes(t.bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::shard_numbers;

    #[test]
    fn parses_shard_names() {
        assert_eq!(shard_numbers("m-00002-of-00005.gguf"), Some((2, 5)));
        assert_eq!(shard_numbers("model.gguf"), None);
    }
}
