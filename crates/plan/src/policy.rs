//! Which type each tensor gets when a file is quantized: llama-quantize's default policy
//! (src/llama-quant.cpp) for the types ggufy writes, `--pure`, and tensors kept as they are.

use ggufy_gguf::keys::{canonical, normalize};
use ggufy_gguf::{GgmlType, GgufFile, MetaValue, TensorInfo};

use crate::{PlanError, PlannedTensor, Source, TensorPlan};

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct QuantizePolicy {
    /// The file's main type.
    pub target: GgmlType,
    /// One type for every quantizable tensor: no Q6_K output rule.
    pub pure: bool,
    /// Name patterns (`*` matches any run of characters) of tensors to copy unchanged.
    pub keep: Vec<String>,
}

/// `general.file_type` (llama_ftype) for a file whose main type is `ty`.
pub fn file_type_for(ty: GgmlType) -> Option<u32> {
    Some(match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q6_K => 18,
        GgmlType::BF16 => 32,
        _ => return None,
    })
}

/// `*`-glob match of a whole name.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == name;
    };
    if parts.len() == 1 {
        return pattern == name;
    }
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// ggml's `ggml_n_dims`: dimensions up to the last one above 1.
fn n_dims(t: &TensorInfo) -> usize {
    t.dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// llama-quantize's `tensor_allows_quantization` for the architectures ggufy knows.
fn allows_quantization(t: &TensorInfo) -> bool {
    let name = t.name.as_str();
    const NEVER: [&str; 9] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "attn_rel_b.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "time_mix_",
    ];
    n_dims(t) >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !NEVER.iter().any(|p| name.contains(p))
}

/// Demotes a type whose blocks do not fit the row, as llama-quantize does.
fn fallback(ty: GgmlType, ne0: u64) -> GgmlType {
    if ne0 % ty.block_size() == 0 {
        return ty;
    }
    let next = match ty {
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if ne0 % next.block_size() == 0 {
        next
    } else {
        GgmlType::F16
    }
}

/// The output type of tensor `t`.
fn choose(policy: &QuantizePolicy, t: &TensorInfo, arch: &str, tied_embeddings: bool) -> GgmlType {
    if policy.keep.iter().any(|p| glob(p, &t.name)) || !allows_quantization(t) {
        return t.ty;
    }
    let target = policy.target;
    if !target.is_quantized() {
        return target;
    }
    let mut ty = target;
    let is_output = t.name == "output.weight" || (tied_embeddings && t.name == "token_embd.weight");
    if is_output && !policy.pure {
        ty = if arch == "falcon" || t.row_len() % target.block_size() != 0 {
            GgmlType::Q8_0
        } else if target != GgmlType::Q8_0 {
            GgmlType::Q6_K
        } else {
            GgmlType::Q8_0
        };
    }
    fallback(ty, t.row_len())
}

/// A plan that quantizes `file` under `policy`, and the warnings the user should see.
pub fn quantize_plan<'a>(
    file: &'a GgufFile,
    policy: &QuantizePolicy,
) -> Result<(TensorPlan<'a>, Vec<String>), PlanError> {
    let meta_err = |key: &str, problem: String| PlanError::Tensor {
        name: key.to_owned(),
        problem,
    };
    if file.layout().endian != ggufy_gguf::Endian::Little {
        return Err(meta_err(
            "(file)",
            "big-endian input: ggufy converts little-endian files only".into(),
        ));
    }
    let file_type = file_type_for(policy.target).ok_or_else(|| {
        meta_err(
            "(target)",
            format!("{} is not a type ggufy quantizes files to", policy.target),
        )
    })?;
    let arch = file.architecture()?.unwrap_or("").to_owned();
    let tied = file.tensor("output.weight").is_none();
    let mut warnings = Vec::new();

    let mut metadata: Vec<(String, MetaValue)> = Vec::with_capacity(file.metadata_len() + 2);
    for (key, value) in file.metadata() {
        // The output is one file, whatever the input was part of.
        if key.starts_with("split.") {
            continue;
        }
        let owned = value
            .to_owned_value()
            .map_err(|e| meta_err(key, format!("string is not UTF-8 ({e})")))?;
        let owned = match canonical(key, Some(&arch)) {
            Some(c) => normalize(&owned, c).ok_or_else(|| {
                meta_err(
                    key,
                    format!(
                        "value of type {} cannot be stored as llama.cpp expects ({c:?})",
                        owned.value_type()
                    ),
                )
            })?,
            None => owned,
        };
        metadata.push((key.to_owned(), owned));
    }
    for (key, v) in [
        ("general.quantization_version", 2u32),
        ("general.file_type", file_type),
    ] {
        match metadata.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = MetaValue::U32(v),
            None => metadata.push((key.to_owned(), MetaValue::U32(v))),
        }
    }

    let mut requantized = Vec::new();
    let mut tensors = Vec::with_capacity(file.tensors().len());
    for t in file.tensors() {
        let out = choose(policy, t, &arch, tied);
        if out != t.ty && t.ty.is_quantized() {
            requantized.push(format!("{} ({})", t.name, t.ty));
        }
        let bytes = file
            .tensor_data(t)
            .ok_or_else(|| meta_err(&t.name, "data outside the file".into()))?;
        tensors.push(PlannedTensor {
            name: t.name.clone(),
            dims: t.dims.clone(),
            source: Source { ty: t.ty, bytes },
            out,
        });
    }
    if !requantized.is_empty() {
        warnings.push(format!(
            "{} already-quantized tensors are dequantized and quantized again, losing accuracy twice: {}{}",
            requantized.len(),
            requantized.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if requantized.len() > 3 { ", …" } else { "" }
        ));
    }
    Ok((TensorPlan { metadata, tensors }, warnings))
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("blk.*.ffn_down.weight", "blk.12.ffn_down.weight"));
        assert!(glob("*", "anything"));
        assert!(glob("token_embd.weight", "token_embd.weight"));
        assert!(!glob("token_embd.weight", "token_embd.weightx"));
        assert!(glob("*.attn_*", "blk.0.attn_q.weight"));
        assert!(!glob("blk.*.attn_q.weight", "blk.0.attn_k.weight"));
        assert!(!glob("a*a", "a"));
    }
}
