//! `ggufy-convert`: Hugging Face safetensors checkpoints → GGUF [`TensorPlan`]s that
//! `ggufy_plan::execute` writes. Tensor names, shapes, types, data and metadata follow llama.cpp's
//! `convert_hf_to_gguf.py` for the architectures in [`arch::ARCHITECTURES`]; tensors stream from
//! the memory-mapped shards, so memory stays near one tensor whatever the model's size.
//!
//! ```no_run
//! use ggufy_convert::{ConvertOptions, Converter, OutType};
//! use ggufy_plan::{ExecOptions, execute};
//!
//! let conv = Converter::open("path/to/checkpoint", &ConvertOptions::default()).unwrap();
//! let (plan, _warnings) = conv.plan().unwrap();
//! execute(&plan, "model-f16.gguf".as_ref(), &ExecOptions::default(), &mut |_, _| {}).unwrap();
//! ```

pub mod arch;
pub mod checkpoint;
pub mod config;
mod error;
#[cfg(feature = "hub")]
pub mod hub;
pub mod meta;
pub mod vocab;

use std::path::Path;

use ggufy_gguf::{GgmlType, MetaValue};
use ggufy_plan::{
    Encoding, PlannedTensor, QuantizePolicy, Source, Target, TensorPlan, Transform,
    choose_encoding, file_type_for,
};

pub use arch::Architecture;
pub use checkpoint::{Checkpoint, CheckpointTensor, Dtype};
pub use config::Hparams;
pub use error::{ConvertError, Result};
use meta::Meta;
pub use vocab::VocabOptions;

/// The output type asked for (`--outtype`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutType {
    /// BF16 if the first matrix is bf16, else F16 (llama.cpp's `auto`).
    Auto,
    /// F16 (the converter's default).
    #[default]
    F16,
    /// Any encoding: F32/F16/BF16/Q8_0 follow llama.cpp's converter; other types (Q4_0, NF4, …)
    /// follow llama-quantize's per-tensor policy, applied straight to the checkpoint's values.
    Encoding(Encoding),
}

impl OutType {
    /// Parses `auto`, `f32`, `f16`, `bf16`, `q8_0`, `q4_0`, …, `nf4`.
    pub fn parse(s: &str) -> Option<OutType> {
        let s = s.to_ascii_lowercase();
        if s == "auto" {
            return Some(OutType::Auto);
        }
        if s == "nf4" {
            return Some(OutType::Encoding(Encoding::Nf4));
        }
        let ty = GgmlType::from_name(&s.to_ascii_uppercase())?;
        file_type_for(Encoding::Ggml(ty))?;
        Some(OutType::Encoding(Encoding::Ggml(ty)))
    }
}

/// Options for a conversion.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// Output type.
    pub outtype: OutType,
    /// Tokenizer options (pre-tokenizer override).
    pub vocab: VocabOptions,
    /// `general.name` (default: the checkpoint directory's name).
    pub model_name: Option<String>,
}

/// Where a planned tensor's bytes come from.
#[derive(Clone, Debug)]
enum Origin {
    Checkpoint(usize),
    Generated(Vec<u8>),
    /// A bitsandbytes NF4 weight: codes, scales (f32, or u8 with the nested code), by index.
    Nf4 {
        codes: usize,
        absmax: usize,
        nested: Option<Nested>,
    },
}

/// bitsandbytes' double quantization of the NF4 scales.
#[derive(Clone, Copy, Debug)]
struct Nested {
    map2: usize,
    absmax2: usize,
    block2: u32,
    offset: f32,
}

/// Suffixes of the tensors bitsandbytes stores beside an NF4 weight.
const BNB_PARTS: [&str; 5] = [
    ".absmax",
    ".quant_map",
    ".nested_absmax",
    ".nested_quant_map",
    ".quant_state.bitsandbytes__nf4",
];

/// One output tensor before it is tied to a source slice.
#[derive(Clone, Debug)]
struct Item {
    name: String,
    /// ggml order.
    dims: Vec<u64>,
    /// PyTorch dimension count (the converter's `n_dims`).
    torch_ndims: usize,
    ty: GgmlType,
    origin: Origin,
    transform: Transform,
}

/// A checkpoint ready to be planned: everything is read and checked; only tensor data is left.
#[derive(Debug)]
pub struct Converter {
    ckpt: Checkpoint,
    arch: &'static Architecture,
    hf_arch: String,
    meta_head: Meta,
    meta_tail: Meta,
    items: Vec<Item>,
    main: Encoding,
    warnings: Vec<String>,
}

fn ggml_of(t: &CheckpointTensor) -> Result<GgmlType> {
    match t.dtype {
        Dtype::F32 => Ok(GgmlType::F32),
        Dtype::F16 => Ok(GgmlType::F16),
        Dtype::BF16 => Ok(GgmlType::BF16),
        ref other => Err(ConvertError::Tensor {
            name: t.name.clone(),
            problem: format!("dtype {other} is not converted (F32, F16 and BF16 are)"),
        }),
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// gguf-py's `model_weight_count_rounded_notation` (e.g. 1234567 → "1.2M").
fn size_label(n: u64) -> String {
    let nf = n as f64;
    let (scaled, suffix) = if nf > 1e12 {
        (nf * 1e-12, "T")
    } else if nf > 1e9 {
        (nf * 1e-9, "B")
    } else if nf > 1e6 {
        (nf * 1e-6, "M")
    } else {
        (nf * 1e-3, "K")
    };
    let rounded = scaled.round_ties_even() as u64;
    let digits = if rounded == 0 {
        0
    } else {
        rounded.to_string().len()
    };
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

impl Converter {
    /// Reads the checkpoint in `dir`: config, shards, tokenizer. Fails at once on an unknown
    /// architecture, a missing or extra tensor, or a tokenizer it cannot reproduce.
    pub fn open(dir: impl AsRef<Path>, opts: &ConvertOptions) -> Result<Converter> {
        let dir = dir.as_ref();
        let mut h = Hparams::load(dir)?;
        let hf_arch = h.architecture()?.to_owned();
        let arch =
            Architecture::find(&hf_arch).ok_or_else(|| ConvertError::UnknownArchitecture {
                path: h.path().to_owned(),
                arch: hf_arch.clone(),
                supported: Architecture::supported(),
            })?;
        let bnb = match h.get("quantization_config") {
            None => false,
            Some(q) => {
                let method = q
                    .get("quant_method")
                    .and_then(|m| m.as_str())
                    .unwrap_or("unknown");
                let four_bit = q.get("load_in_4bit").and_then(|v| v.as_bool()) == Some(true);
                let kind = q
                    .get("bnb_4bit_quant_type")
                    .and_then(|v| v.as_str())
                    .unwrap_or("fp4");
                if method != "bitsandbytes" || !four_bit || kind != "nf4" {
                    return Err(h.field_error(
                        "quantization_config",
                        format!(
                            "{method} checkpoints are not converted (of pre-quantized checkpoints, ggufy reads bitsandbytes 4-bit NF4)"
                        ),
                    ));
                }
                true
            }
        };
        config::fill_transformers_defaults(&mut h, &hf_arch);
        let ckpt = Checkpoint::open(dir)?;
        let mut warnings = Vec::new();
        let block_count = h.require_u32(arch::BLOCK_KEYS)?;

        // Tensors: generated ones first, then the checkpoint's, as llama.cpp orders them.
        let mut items = Vec::new();
        let mut meta_head = Meta::default();
        meta_head.string("general.architecture", arch.gguf);
        let rp = arch::rope_parameters(&h)?;
        let rope_type = rp
            .get("rope_type")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_lowercase();
        if arch.gguf == "llama" && rope_type == "llama3" {
            let f = arch::llama3_rope_freqs(&h, &rp)?;
            items.push(Item {
                name: "rope_freqs.weight".into(),
                dims: vec![f.len() as u64],
                torch_ndims: 1,
                ty: GgmlType::F32,
                origin: Origin::Generated(f32_bytes(&f)),
                transform: Transform::None,
            });
        }
        if arch.gguf == "phi3"
            && let Some(lr) = arch::phi3_rope_factors(&h)?
        {
            meta_head.f32("phi3.rope.scaling.attn_factor", lr.attn_factor);
            {
                for (name, f) in [
                    ("rope_factors_long.weight", lr.long),
                    ("rope_factors_short.weight", lr.short),
                ] {
                    items.push(Item {
                        name: name.into(),
                        dims: vec![f.len() as u64],
                        torch_ndims: 1,
                        ty: GgmlType::F32,
                        origin: Origin::Generated(f32_bytes(&f)),
                        transform: Transform::None,
                    });
                }
            }
        }
        let n_head = u64::from(h.u32(&["n_heads", "num_attention_heads"])?.unwrap_or(0));
        let n_head_kv = u64::from(
            h.u32(&["n_kv_heads", "num_key_value_heads"])?
                .unwrap_or(n_head as u32),
        );
        let index_of = |name: &str| ckpt.tensors().iter().position(|t| t.name == name);
        for (i, t) in ckpt.tensors().iter().enumerate() {
            let name = t.name.replace("language_model.", "");
            if bnb && BNB_PARTS.iter().any(|p| t.name.ends_with(p)) {
                continue; // read with their weight
            }
            if name.ends_with(".attention.masked_bias")
                || name.ends_with(".attention.bias")
                || name.ends_with(".rotary_emb.inv_freq")
                || (arch.drop_lm_head && name == "lm_head.weight")
            {
                continue;
            }
            let mapped = arch.map_name(&name, block_count).ok_or_else(|| ConvertError::Tensor {
                name: t.name.clone(),
                problem: format!(
                    "not a tensor of a {} model with {block_count} layers (llama.cpp's converter would refuse it too)",
                    arch.gguf
                ),
            })?;
            let state_name = format!("{}.quant_state.bitsandbytes__nf4", t.name);
            let (ty, dims, torch_ndims, origin) = match index_of(&state_name) {
                Some(state) if bnb => {
                    let (ty, shape, origin) = bnb_nf4(&ckpt, i, state)?;
                    let dims: Vec<u64> = shape.iter().rev().copied().collect();
                    (ty, dims, shape.len(), origin)
                }
                _ => {
                    let dims = if t.shape.is_empty() {
                        vec![1]
                    } else {
                        t.shape.iter().rev().copied().collect()
                    };
                    (ggml_of(t)?, dims, t.shape.len(), Origin::Checkpoint(i))
                }
            };
            let mut transform = Transform::None;
            if arch.permute_qk {
                if name.ends_with("q_proj.weight") || name.ends_with("q_proj.bias") {
                    transform = Transform::PermuteHeads { heads: n_head };
                } else if name.ends_with("k_proj.weight") || name.ends_with("k_proj.bias") {
                    transform = Transform::PermuteHeads {
                        heads: if n_head_kv != n_head {
                            n_head_kv
                        } else {
                            n_head
                        },
                    };
                }
            }
            if arch.norm_plus_one && name.ends_with("norm.weight") {
                transform = Transform::AddOne;
            }
            if t.shape.len() > 4 || t.shape.is_empty() && t.n_elements() == 0 {
                return Err(ConvertError::Tensor {
                    name: t.name.clone(),
                    problem: format!("shape {:?} cannot be stored in GGUF", t.shape),
                });
            }
            items.push(Item {
                name: mapped,
                dims,
                torch_ndims,
                ty,
                origin,
                transform,
            });
        }
        check_against_config(&h, &items, block_count)?;
        let mut names = std::collections::HashSet::new();
        for it in &items {
            if !names.insert(it.name.as_str()) {
                return Err(ConvertError::Tensor {
                    name: it.name.clone(),
                    problem: "two checkpoint tensors map to this GGUF name".into(),
                });
            }
        }

        // Output type: auto looks at the first matrix, as the converter does.
        let main = match opts.outtype {
            OutType::Auto => Encoding::Ggml(
                items
                    .iter()
                    .filter(|it| {
                        it.torch_ndims >= 2 && matches!(it.ty, GgmlType::F16 | GgmlType::BF16)
                    })
                    .map(|it| it.ty)
                    .next()
                    .unwrap_or(GgmlType::F16),
            ),
            OutType::F16 => Encoding::Ggml(GgmlType::F16),
            OutType::Encoding(e) => e,
        };
        let file_type = file_type_for(main).unwrap_or(u32::MAX);

        // Metadata: general.*, hyperparameters, quantization version, then the tokenizer.
        let mut meta_tail = Meta::default();
        meta_tail.string("general.type", "model");
        write_sampling_defaults(dir, &mut meta_tail, &mut warnings);
        let name = opts.model_name.clone().unwrap_or_else(|| {
            dir.canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "model".into())
        });
        meta_tail.string("general.name", name);
        let total: u64 = items.iter().map(|it| it.dims.iter().product::<u64>()).sum();
        if total > 0 {
            meta_tail.string("general.size_label", size_label(total));
        }
        let mut params = meta_head.clone();
        arch.write_params(&h, &mut params, file_type)?;
        // write_params sees the head (for general.architecture) — keep only what it added.
        for (k, v) in params.into_entries() {
            if meta_head.get(&k).is_none() {
                meta_tail.set(k, v);
            }
        }
        if file_type != u32::MAX {
            meta_tail.u32("general.quantization_version", 2);
        }
        vocab::write_vocab(
            dir,
            &h,
            arch.vocab,
            &opts.vocab,
            &mut meta_tail,
            &mut warnings,
        )?;
        Ok(Converter {
            ckpt,
            arch,
            hf_arch,
            meta_head,
            meta_tail,
            items,
            main,
            warnings,
        })
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.ckpt
    }

    /// The GGUF architecture.
    pub fn architecture(&self) -> &'static Architecture {
        self.arch
    }

    /// The checkpoint's Hugging Face class name.
    pub fn hf_architecture(&self) -> &str {
        &self.hf_arch
    }

    /// The file's main encoding (what `auto` resolved to).
    pub fn encoding(&self) -> Encoding {
        self.main
    }

    /// Releases the mapped input pages behind output tensor `name` once it is written (call it
    /// from `execute`'s progress callback). Only memory accounting changes; data stays readable.
    pub fn release(&self, name: &str) {
        let base = name
            .strip_suffix(ggufy_plan::NF4_ABSMAX_SUFFIX)
            .unwrap_or(name);
        let Some(it) = self.items.iter().find(|it| it.name == base) else {
            return;
        };
        let t = |i: usize| &self.ckpt.tensors()[i];
        match &it.origin {
            Origin::Checkpoint(i) => self.ckpt.release(t(*i)),
            Origin::Generated(_) => {}
            Origin::Nf4 {
                codes,
                absmax,
                nested,
            } => {
                self.ckpt.release(t(*codes));
                self.ckpt.release(t(*absmax));
                if let Some(n) = nested {
                    self.ckpt.release(t(n.absmax2));
                }
            }
        }
    }

    /// The output type of one tensor.
    fn choose(&self, it: &Item, tied: bool) -> Encoding {
        let converter_native = matches!(
            self.main,
            Encoding::Ggml(GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0)
        );
        if it.torch_ndims <= 1 || it.name.ends_with("_norm.weight") || !it.name.ends_with(".weight")
        {
            return Encoding::Ggml(GgmlType::F32);
        }
        if converter_native {
            let Encoding::Ggml(ty) = self.main else {
                return self.main;
            };
            // gguf-py refuses rows that do not fill Q8_0 blocks; the converter falls back to F16.
            if ty == GgmlType::Q8_0 && !it.dims[0].is_multiple_of(32) {
                return Encoding::Ggml(GgmlType::F16);
            }
            return Encoding::Ggml(ty);
        }
        let policy = QuantizePolicy {
            target: self.main,
            pure: false,
            keep: Vec::new(),
        };
        // As if converted to F16 and then quantized: what llama-quantize keeps stays F16.
        choose_encoding(
            &policy,
            &it.name,
            &it.dims,
            GgmlType::F16,
            self.arch.gguf,
            tied,
        )
    }

    /// The plan: metadata and every tensor with its source slice, transform and output type,
    /// plus warnings for the user.
    pub fn plan(&self) -> Result<(TensorPlan<'_>, Vec<String>)> {
        let tied = !self.items.iter().any(|it| it.name == "output.weight");
        let mut metadata = self.meta_head.clone();
        for (k, v) in self.meta_tail.clone().into_entries() {
            metadata.set(k, v);
        }
        let mut tensors = Vec::with_capacity(self.items.len());
        let mut nf4 = Vec::new();
        let data = |i: usize| self.ckpt.data(&self.ckpt.tensors()[i]);
        for it in &self.items {
            let source = match &it.origin {
                Origin::Checkpoint(i) => Source::Ggml {
                    ty: it.ty,
                    bytes: data(*i),
                },
                Origin::Generated(b) => Source::Ggml {
                    ty: it.ty,
                    bytes: b,
                },
                Origin::Nf4 {
                    codes,
                    absmax,
                    nested: None,
                } => Source::Nf4 {
                    codes: data(*codes),
                    absmax: data(*absmax),
                },
                Origin::Nf4 {
                    codes,
                    absmax,
                    nested: Some(n),
                } => Source::Nf4Nested {
                    codes: data(*codes),
                    scales_q: data(*absmax),
                    map2: data(n.map2),
                    absmax2: data(n.absmax2),
                    block2: n.block2,
                    offset: n.offset,
                },
            };
            let out = self.choose(it, tied);
            let planned = |out: Target, name: String| PlannedTensor {
                name,
                dims: it.dims.clone(),
                source,
                out,
                transform: it.transform,
            };
            match out {
                Encoding::Ggml(ty) => tensors.push(planned(Target::Ggml(ty), it.name.clone())),
                Encoding::Nf4 => {
                    nf4.push(it.name.clone());
                    tensors.push(planned(Target::Nf4Codes, it.name.clone()));
                    tensors.push(planned(
                        Target::Nf4Absmax,
                        format!("{}{}", it.name, ggufy_plan::NF4_ABSMAX_SUFFIX),
                    ));
                }
            }
        }
        if !nf4.is_empty() {
            metadata.set("ggufy.nf4.version", MetaValue::U32(1));
            metadata.set("ggufy.nf4.block_size", MetaValue::U32(64));
            metadata.set(
                "ggufy.nf4.codebook",
                MetaValue::Array(ggufy_gguf::MetaArray::F32(
                    ggufy_quant::nf4::NF4_CODEBOOK.to_vec(),
                )),
            );
            metadata.set(
                ggufy_plan::NF4_TENSORS_KEY,
                MetaValue::Array(ggufy_gguf::MetaArray::String(nf4)),
            );
        }
        Ok((
            TensorPlan {
                metadata: metadata.into_entries(),
                tensors,
            },
            self.warnings.clone(),
        ))
    }
}

/// Reads one bitsandbytes NF4 weight: its quant-state JSON, codes and scales, all checked.
/// Returns the original dtype, the logical PyTorch shape and where the data is.
/// Catches a config.json that disagrees with its weights, which would otherwise give a file
/// llama.cpp refuses at load time (or worse, misreads): the embedding width must be
/// `hidden_size`, and every one of `num_hidden_layers` layers must have tensors.
fn check_against_config(h: &Hparams, items: &[Item], block_count: u32) -> Result<()> {
    if let (Some(embd), Some((key, _))) = (
        items.iter().find(|it| it.name == "token_embd.weight"),
        h.find(&["hidden_size", "n_embd", "dim"]),
    ) {
        let want = h.require_u32(&[key])?;
        if embd.dims.first() != Some(&u64::from(want)) {
            return Err(h.field_error(
                key,
                format!(
                    "is {want}, but the token embedding is {} wide",
                    embd.dims.first().copied().unwrap_or(0)
                ),
            ));
        }
    }
    for layer in 0..block_count {
        let prefix = format!("blk.{layer}.");
        if !items.iter().any(|it| it.name.starts_with(&prefix)) {
            return Err(h.field_error(
                "num_hidden_layers",
                format!("is {block_count}, but the checkpoint has no tensors for layer {layer}"),
            ));
        }
    }
    Ok(())
}

/// How one `generation_config.json` field is stored under `general.sampling.*`.
enum SamplingKind {
    Text,
    Int,
    Float,
}

/// The generation defaults llama.cpp's converter carries into `general.sampling.*`, in its order:
/// (GGUF key suffix, generation_config fields tried in turn, value kind).
const SAMPLING_FIELDS: &[(&str, &[&str], SamplingKind)] = &[
    ("sequence", &["sequence"], SamplingKind::Text),
    ("top_k", &["top_k"], SamplingKind::Int),
    ("top_p", &["top_p"], SamplingKind::Float),
    ("min_p", &["min_p"], SamplingKind::Float),
    ("xtc_probability", &["xtc_probability"], SamplingKind::Float),
    ("xtc_threshold", &["xtc_threshold"], SamplingKind::Float),
    ("temp", &["temperature"], SamplingKind::Float),
    ("penalty_last_n", &["penalty_last_n"], SamplingKind::Int),
    (
        "penalty_repeat",
        &["penalty_repeat", "repetition_penalty"],
        SamplingKind::Float,
    ),
    ("mirostat", &["mirostat"], SamplingKind::Int),
    ("mirostat_tau", &["mirostat_tau"], SamplingKind::Float),
    ("mirostat_eta", &["mirostat_eta"], SamplingKind::Float),
];

/// Carries the model's recommended sampling settings from `generation_config.json` so runners
/// start from the author's defaults. Like llama.cpp, an unreadable file is skipped (with a
/// warning here), and so is a field of the wrong type rather than failing the conversion.
fn write_sampling_defaults(dir: &Path, meta: &mut Meta, warnings: &mut Vec<String>) {
    let path = dir.join("generation_config.json");
    let Ok(text) = std::fs::read(&path) else {
        return;
    };
    let config: serde_json::Value = match serde_json::from_slice(&text) {
        Ok(serde_json::Value::Object(m)) => serde_json::Value::Object(m),
        _ => {
            warnings.push(format!(
                "{}: not a JSON object; sampling defaults not carried over",
                path.display()
            ));
            return;
        }
    };
    for (suffix, fields, kind) in SAMPLING_FIELDS {
        let Some((field, v)) = fields.iter().find_map(|f| config.get(*f).map(|v| (*f, v))) else {
            continue;
        };
        // A present-but-null field means "unset" (and hides the fallback field), as in Python.
        if v.is_null() {
            continue;
        }
        let key = format!("general.sampling.{suffix}");
        let value = match kind {
            SamplingKind::Text => v.as_str().map(|s| MetaValue::String(s.to_owned())),
            SamplingKind::Int => v
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .map(MetaValue::I32),
            SamplingKind::Float => v.as_f64().map(|f| MetaValue::F32(f as f32)),
        };
        match value {
            Some(value) => meta.set(key, value),
            None => warnings.push(format!(
                "{}: field {field} = {v} has the wrong type; {key} not written",
                path.display()
            )),
        }
    }
}

fn bnb_nf4(ckpt: &Checkpoint, codes: usize, state: usize) -> Result<(GgmlType, Vec<u64>, Origin)> {
    let t = &ckpt.tensors()[codes];
    let fail = |problem: String| ConvertError::Tensor {
        name: t.name.clone(),
        problem,
    };
    let blob: serde_json::Value = serde_json::from_slice(ckpt.data(&ckpt.tensors()[state]))
        .map_err(|e| fail(format!("bitsandbytes quant state is not JSON: {e}")))?;
    let field = |k: &str| blob.get(k).filter(|v| !v.is_null());
    if field("quant_type").and_then(|v| v.as_str()) != Some("nf4") {
        return Err(fail(
            "bitsandbytes quant state: quant_type is not nf4".into(),
        ));
    }
    if field("blocksize").and_then(|v| v.as_u64()) != Some(64) {
        return Err(fail(format!(
            "bitsandbytes blocksize {} is not supported (64 is)",
            field("blocksize").map_or("missing".into(), |v| v.to_string())
        )));
    }
    let shape: Vec<u64> = field("shape")
        .and_then(|v| v.as_array())
        .and_then(|a| a.iter().map(|d| d.as_u64()).collect::<Option<Vec<u64>>>())
        .filter(|s| !s.is_empty() && s.len() <= 4)
        .ok_or_else(|| fail("bitsandbytes quant state: shape missing or invalid".into()))?;
    let ty = match field("dtype").and_then(|v| v.as_str()) {
        Some("bfloat16") => GgmlType::BF16,
        Some("float16") => GgmlType::F16,
        Some("float32") => GgmlType::F32,
        other => {
            return Err(fail(format!(
                "bitsandbytes quant state: dtype {other:?} is not supported"
            )));
        }
    };
    let n = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| fail("shape overflows".into()))?;
    let ne0 = shape.last().copied().unwrap_or(0);
    if ne0 % 64 != 0 {
        return Err(fail(format!(
            "rows of {ne0} values do not fill 64-value NF4 blocks"
        )));
    }
    let part = |suffix: &str| {
        let name = format!("{}{suffix}", t.name);
        ckpt.tensors()
            .iter()
            .position(|x| x.name == name)
            .ok_or_else(|| fail(format!("bitsandbytes tensor '{name}' is missing")))
    };
    if ckpt.data(t).len() as u64 != n / 2 {
        return Err(fail(format!(
            "{} code bytes do not hold {n} values",
            ckpt.data(t).len()
        )));
    }
    let quant_map = part(".quant_map")?;
    let qm: Vec<f32> = ckpt
        .data(&ckpt.tensors()[quant_map])
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if qm != ggufy_quant::nf4::NF4_CODEBOOK {
        return Err(fail("quant_map is not the NF4 codebook".into()));
    }
    let absmax = part(".absmax")?;
    let blocks = n / 64;
    let absmax_t = &ckpt.tensors()[absmax];
    let nested = match ckpt
        .tensors()
        .iter()
        .position(|x| x.name == format!("{}.nested_absmax", t.name))
    {
        None => {
            if absmax_t.dtype != Dtype::F32 || absmax_t.n_elements() != blocks {
                return Err(fail(format!("absmax must be {blocks} F32 values")));
            }
            None
        }
        Some(absmax2) => {
            let map2 = part(".nested_quant_map")?;
            let block2 = field("nested_blocksize")
                .and_then(|v| v.as_u64())
                .unwrap_or(256);
            let offset = field("nested_offset")
                .and_then(|v| v.as_f64())
                .ok_or_else(|| fail("bitsandbytes quant state: nested_offset missing".into()))?;
            let a2 = &ckpt.tensors()[absmax2];
            let m2 = &ckpt.tensors()[map2];
            if absmax_t.dtype != Dtype::U8
                || absmax_t.n_elements() != blocks
                || a2.dtype != Dtype::F32
                || m2.dtype != Dtype::F32
                || m2.n_elements() != 256
                || block2 == 0
                || block2 > u64::from(u32::MAX)
                || a2.n_elements() != blocks.div_ceil(block2)
            {
                return Err(fail(format!(
                    "nested NF4 scales do not fit: absmax {} {:?}, nested_absmax {} {:?}, nested_quant_map {} {:?}",
                    absmax_t.dtype, absmax_t.shape, a2.dtype, a2.shape, m2.dtype, m2.shape
                )));
            }
            Some(Nested {
                map2,
                absmax2,
                block2: block2 as u32,
                offset: offset as f32,
            })
        }
    };
    Ok((
        ty,
        shape,
        Origin::Nf4 {
            codes,
            absmax,
            nested,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::{Meta, MetaValue, size_label, write_sampling_defaults};

    fn sampling(json: &str) -> (Meta, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("generation_config.json"), json).unwrap();
        let (mut meta, mut warnings) = (Meta::default(), Vec::new());
        write_sampling_defaults(dir.path(), &mut meta, &mut warnings);
        (meta, warnings)
    }

    #[test]
    fn sampling_defaults_follow_llama_cpp() {
        let (m, w) = sampling(
            r#"{"top_k": 40, "temperature": 0.5, "repetition_penalty": 1.1, "min_p": null,
                "mirostat": 2, "sequence": "top_k;temp"}"#,
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(m.get("general.sampling.top_k"), Some(&MetaValue::I32(40)));
        assert_eq!(m.get("general.sampling.temp"), Some(&MetaValue::F32(0.5)));
        assert_eq!(
            m.get("general.sampling.penalty_repeat"),
            Some(&MetaValue::F32(1.1))
        );
        assert_eq!(m.get("general.sampling.min_p"), None);
        assert_eq!(m.get("general.sampling.mirostat"), Some(&MetaValue::I32(2)));
        // llama.cpp's order, not the file's.
        let keys: Vec<String> = m.into_entries().into_iter().map(|(k, _)| k).collect();
        let want = ["sequence", "top_k", "temp", "penalty_repeat", "mirostat"]
            .map(|k| format!("general.sampling.{k}"));
        assert_eq!(keys, want);
    }

    #[test]
    fn sampling_defaults_skip_bad_values_with_a_warning() {
        let (m, w) = sampling(
            r#"{"top_k": 0.5, "top_p": "high", "penalty_repeat": null, "repetition_penalty": 1.2}"#,
        );
        assert_eq!(m.into_entries().len(), 0);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("top_k"), "{w:?}");
        let (m, w) = sampling("[1, 2]");
        assert_eq!((m.into_entries().len(), w.len()), (0, 1));
    }

    #[test]
    fn size_labels_match_gguf_py() {
        assert_eq!(size_label(1_234_567), "1.2M");
        assert_eq!(size_label(7_241_732_096), "7.2B");
        assert_eq!(size_label(124_000), "124K");
        assert_eq!(size_label(12_345_678), "12M");
        assert_eq!(size_label(500), "0.50K"); // gguf-py prints 0.50K too
    }
}
