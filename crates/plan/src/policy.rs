//! Which type each tensor gets when a file is quantized: llama-quantize's default policy
//! (src/llama-quant.cpp) for the types ggufy writes, `--pure`, and tensors kept as they are.

use std::collections::BTreeSet;

use ggufy_gguf::keys::{canonical, normalize};
use ggufy_gguf::{GgmlType, GgufFile, MetaArray, MetaValue, TensorInfo};
use ggufy_quant::nf4::{NF4_BLOCK, NF4_CODEBOOK};

use crate::{Encoding, PlanError, PlannedTensor, Source, Target, TensorPlan};

/// Metadata key listing the NF4-coded tensors of a file (see `docs/nf4.md`).
pub const NF4_TENSORS_KEY: &str = "ggufy.nf4.tensors";
/// Suffix of the tensor holding an NF4 tensor's block scales.
pub const NF4_ABSMAX_SUFFIX: &str = ".absmax";

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct QuantizePolicy {
    /// The file's main encoding.
    pub target: Encoding,
    /// One type for every quantizable tensor: no Q6_K output rule.
    pub pure: bool,
    /// Name patterns (`*` matches any run of characters) of tensors to copy unchanged.
    pub keep: Vec<String>,
}

/// `general.file_type` (llama_ftype) for a file whose main encoding is `e` (none for NF4).
pub fn file_type_for(e: Encoding) -> Option<u32> {
    let Encoding::Ggml(ty) = e else {
        return None;
    };
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
    if ne0.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let next = match ty {
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if ne0.is_multiple_of(next.block_size()) {
        next
    } else {
        GgmlType::F16
    }
}

/// The output encoding of tensor `t` (`t.ty` is what it is stored as, F32 for NF4 sources).
fn choose(policy: &QuantizePolicy, t: &TensorInfo, arch: &str, tied_embeddings: bool) -> Encoding {
    if policy.keep.iter().any(|p| glob(p, &t.name)) || !allows_quantization(t) {
        return Encoding::Ggml(t.ty);
    }
    let is_output = t.name == "output.weight" || (tied_embeddings && t.name == "token_embd.weight");
    let target = match policy.target {
        // QLoRA leaves embeddings and the output head unquantized; so does ggufy.
        Encoding::Nf4 if is_output || t.name == "token_embd.weight" => return Encoding::Ggml(t.ty),
        Encoding::Nf4 if !t.row_len().is_multiple_of(NF4_BLOCK as u64) => {
            return Encoding::Ggml(t.ty);
        }
        Encoding::Nf4 => return Encoding::Nf4,
        Encoding::Ggml(ty) => ty,
    };
    if !target.is_quantized() {
        return Encoding::Ggml(target);
    }
    let mut ty = target;
    if is_output && !policy.pure {
        ty = if arch == "falcon" || !t.row_len().is_multiple_of(target.block_size()) {
            GgmlType::Q8_0
        } else if target != GgmlType::Q8_0 {
            GgmlType::Q6_K
        } else {
            GgmlType::Q8_0
        };
    }
    Encoding::Ggml(fallback(ty, t.row_len()))
}

/// llama-quantize's choice for one tensor described by name, ggml dims and stored type, for plan
/// builders that have no GGUF input (the converter). `tied_embeddings`: the file has no
/// `output.weight`, so `token_embd.weight` doubles as the output head.
pub fn choose_encoding(
    policy: &QuantizePolicy,
    name: &str,
    dims: &[u64],
    ty: GgmlType,
    arch: &str,
    tied_embeddings: bool,
) -> Encoding {
    let info = TensorInfo {
        name: name.to_owned(),
        dims: dims.to_vec(),
        ty,
        offset: 0,
        n_elements: dims.iter().product(),
        n_bytes: 0,
    };
    choose(policy, &info, arch, tied_embeddings)
}

/// The NF4 tensors of `file`: name → (codes, absmax) tensor infos, checked against each other.
fn nf4_tensors(
    file: &GgufFile,
) -> Result<std::collections::HashMap<&str, (&TensorInfo, &TensorInfo)>, PlanError> {
    let mut out = std::collections::HashMap::new();
    let Some(list) = file.get_array(NF4_TENSORS_KEY)? else {
        return Ok(out);
    };
    let bad = |name: &str, problem: String| PlanError::Tensor {
        name: name.to_owned(),
        problem,
    };
    if file.get_u32("ggufy.nf4.block_size")? != Some(NF4_BLOCK as u32) {
        return Err(bad(
            NF4_TENSORS_KEY,
            "ggufy.nf4.block_size must be 64".into(),
        ));
    }
    for v in list.iter() {
        let name = v
            .as_str()
            .ok_or_else(|| bad(NF4_TENSORS_KEY, "entries must be UTF-8 strings".into()))?;
        let codes = file
            .tensor(name)
            .ok_or_else(|| bad(name, "listed as NF4 but not in the file".into()))?;
        let absmax_name = format!("{name}{NF4_ABSMAX_SUFFIX}");
        let absmax = file.tensor(&absmax_name).ok_or_else(|| {
            bad(
                name,
                format!("NF4 tensor without its scales '{absmax_name}'"),
            )
        })?;
        let ne0 = codes.row_len() * 2;
        let ok = codes.ty == GgmlType::I8
            && absmax.ty == GgmlType::F32
            && ne0 % NF4_BLOCK as u64 == 0
            && absmax.row_len() == ne0 / NF4_BLOCK as u64
            && absmax.dims.get(1..) == codes.dims.get(1..);
        if !ok {
            return Err(bad(
                name,
                format!(
                    "NF4 codes {} {:?} and scales {} {:?} do not match",
                    codes.ty, codes.dims, absmax.ty, absmax.dims
                ),
            ));
        }
        out.insert(name, (codes, absmax));
    }
    Ok(out)
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
    let file_type = file_type_for(policy.target);
    if file_type.is_none() && policy.target != Encoding::Nf4 {
        return Err(meta_err(
            "(target)",
            format!("{} is not a type ggufy quantizes files to", policy.target),
        ));
    }
    let nf4_in = nf4_tensors(file)?;
    let arch = file.architecture()?.unwrap_or("").to_owned();
    let tied = file.tensor("output.weight").is_none();
    let mut warnings = Vec::new();

    let mut metadata: Vec<(String, MetaValue)> = Vec::with_capacity(file.metadata_len() + 2);
    for (key, value) in file.metadata() {
        // The output is one file, whatever the input was part of; NF4 bookkeeping is redone below.
        if key.starts_with("split.") || key.starts_with("ggufy.nf4.") {
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
    match file_type {
        Some(file_type) => {
            for (key, v) in [
                ("general.quantization_version", 2u32),
                ("general.file_type", file_type),
            ] {
                match metadata.iter_mut().find(|(k, _)| k == key) {
                    Some(entry) => entry.1 = MetaValue::U32(v),
                    None => metadata.push((key.to_owned(), MetaValue::U32(v))),
                }
            }
        }
        // No llama_ftype describes NF4, and claiming one would mislead other tools.
        None => metadata
            .retain(|(k, _)| k != "general.file_type" && k != "general.quantization_version"),
    }

    let absmax_names: BTreeSet<String> = nf4_in
        .keys()
        .map(|n| format!("{n}{NF4_ABSMAX_SUFFIX}"))
        .collect();
    let data = |t: &TensorInfo| {
        file.tensor_data(t)
            .ok_or_else(|| meta_err(&t.name, "data outside the file".into()))
    };
    let mut requantized = Vec::new();
    let mut nf4_out = Vec::new();
    let mut tensors = Vec::with_capacity(file.tensors().len());
    for t in file.tensors() {
        if absmax_names.contains(&t.name) {
            continue; // travels with its codes
        }
        let (source, logical) = match nf4_in.get(t.name.as_str()) {
            Some((codes, absmax)) => {
                let mut dims = codes.dims.clone();
                if let Some(d) = dims.first_mut() {
                    *d *= 2;
                }
                let logical = TensorInfo {
                    dims,
                    ty: GgmlType::F32,
                    ..(*codes).clone()
                };
                (
                    Source::Nf4 {
                        codes: data(codes)?,
                        absmax: data(absmax)?,
                    },
                    logical,
                )
            }
            None => (
                Source::Ggml {
                    ty: t.ty,
                    bytes: data(t)?,
                },
                t.clone(),
            ),
        };
        let mut out = choose(policy, &logical, &arch, tied);
        if source.encoding() == Encoding::Nf4 && policy.target == Encoding::Nf4 {
            out = Encoding::Nf4; // NF4 in, NF4 out: nothing to redo
        }
        let lossy_source = match source {
            Source::Ggml { ty, .. } => ty.is_quantized(),
            Source::Nf4 { .. } | Source::Nf4Nested { .. } => true,
        };
        if out != source.encoding() && lossy_source {
            requantized.push(format!("{} ({})", t.name, source.encoding()));
        }
        let planned = |out: Target, name: String| PlannedTensor {
            name,
            dims: logical.dims.clone(),
            source,
            out,
            transform: crate::Transform::None,
        };
        match out {
            Encoding::Ggml(ty) => tensors.push(planned(Target::Ggml(ty), t.name.clone())),
            Encoding::Nf4 => {
                nf4_out.push(t.name.clone());
                tensors.push(planned(Target::Nf4Codes, t.name.clone()));
                tensors.push(planned(
                    Target::Nf4Absmax,
                    format!("{}{NF4_ABSMAX_SUFFIX}", t.name),
                ));
            }
        }
    }
    if !nf4_out.is_empty() {
        metadata.push(("ggufy.nf4.version".into(), MetaValue::U32(1)));
        metadata.push((
            "ggufy.nf4.block_size".into(),
            MetaValue::U32(NF4_BLOCK as u32),
        ));
        metadata.push((
            "ggufy.nf4.codebook".into(),
            MetaValue::Array(MetaArray::F32(NF4_CODEBOOK.to_vec())),
        ));
        metadata.push((
            NF4_TENSORS_KEY.into(),
            MetaValue::Array(MetaArray::String(nf4_out)),
        ));
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
