//! The architectures ggufy converts, as data: Hugging Face class names, the GGUF architecture,
//! which transforms apply, which tokenizer route, and the hyperparameter keys each writes — in
//! the order llama.cpp's converter writes them.

use serde_json::Value as Json;

use crate::config::Hparams;
use crate::error::Result;
use crate::meta::Meta;
use crate::vocab::VocabStyle;

/// One supported architecture.
#[derive(Debug)]
pub struct Architecture {
    /// Hugging Face `architectures[0]` names.
    pub hf_names: &'static [&'static str],
    /// `general.architecture`.
    pub gguf: &'static str,
    /// Q/K rows are reordered for ggml's adjacent-pair RoPE (llama's NORM mode).
    pub permute_qk: bool,
    /// Norm weights are stored as `w - 1` (written `w + 1`).
    pub norm_plus_one: bool,
    /// `lm_head.weight` is ignored (the output head is always the embeddings).
    pub drop_lm_head: bool,
    /// Fused `qkv_proj` / `gate_up_proj` tensors are expected.
    pub fused: bool,
    /// How the tokenizer is read.
    pub vocab: VocabStyle,
    params: fn(&Hparams, &mut Meta, u32) -> Result<()>,
}

/// Every architecture ggufy converts.
pub const ARCHITECTURES: &[Architecture] = &[
    Architecture {
        hf_names: &["LlamaForCausalLM", "MistralForCausalLM"],
        gguf: "llama",
        permute_qk: true,
        norm_plus_one: false,
        drop_lm_head: false,
        fused: false,
        vocab: VocabStyle::Llama,
        params: llama_params,
    },
    Architecture {
        hf_names: &["Qwen2ForCausalLM"],
        gguf: "qwen2",
        permute_qk: false,
        norm_plus_one: false,
        drop_lm_head: false,
        fused: false,
        vocab: VocabStyle::Qwen2,
        params: text_params,
    },
    Architecture {
        hf_names: &["Phi3ForCausalLM"],
        gguf: "phi3",
        permute_qk: false,
        norm_plus_one: false,
        drop_lm_head: false,
        fused: true,
        vocab: VocabStyle::Phi3,
        params: phi3_params,
    },
    Architecture {
        hf_names: &["GemmaForCausalLM"],
        gguf: "gemma",
        permute_qk: false,
        norm_plus_one: true,
        drop_lm_head: true,
        fused: false,
        vocab: VocabStyle::Gemma,
        params: gemma_params,
    },
];

impl Architecture {
    /// The architecture for a Hugging Face class name.
    pub fn find(hf: &str) -> Option<&'static Architecture> {
        ARCHITECTURES.iter().find(|a| a.hf_names.contains(&hf))
    }

    /// All supported Hugging Face class names, for error messages.
    pub fn supported() -> String {
        ARCHITECTURES
            .iter()
            .flat_map(|a| a.hf_names.iter().copied())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Writes the hyperparameter keys (`file_type` is the llama_ftype, or `u32::MAX` for none).
    pub fn write_params(&self, h: &Hparams, meta: &mut Meta, file_type: u32) -> Result<()> {
        (self.params)(h, meta, file_type)
    }

    /// The GGUF name of a checkpoint tensor, or None when the architecture has no such tensor.
    pub fn map_name(&self, hf: &str, block_count: u32) -> Option<String> {
        let (base, suffix) = match hf.rsplit_once('.') {
            Some((b, s @ ("weight" | "bias"))) => (b, s),
            _ => return None,
        };
        let global = match base {
            "model.embed_tokens" => Some("token_embd"),
            "model.norm" => Some("output_norm"),
            "lm_head" => Some("output"),
            _ => None,
        };
        if let Some(g) = global {
            return Some(format!("{g}.{suffix}"));
        }
        let rest = base.strip_prefix("model.layers.")?;
        let (bid, part) = rest.split_once('.')?;
        let bid: u32 = bid.parse().ok().filter(|b| *b < block_count)?;
        let mapped = match part {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            "self_attn.o_proj" => "attn_output",
            "mlp.down_proj" => "ffn_down",
            "self_attn.q_proj" if !self.fused => "attn_q",
            "self_attn.k_proj" if !self.fused => "attn_k",
            "self_attn.v_proj" if !self.fused => "attn_v",
            "mlp.gate_proj" if !self.fused => "ffn_gate",
            "mlp.up_proj" if !self.fused => "ffn_up",
            "self_attn.qkv_proj" if self.fused => "attn_qkv",
            "mlp.gate_up_proj" if self.fused => "ffn_up",
            _ => return None,
        };
        Some(format!("blk.{bid}.{mapped}.{suffix}"))
    }
}

const CTX_KEYS: &[&str] = &[
    "max_position_embeddings",
    "n_ctx",
    "n_positions",
    "max_length",
    "max_sequence_length",
    "model_max_length",
];
/// Block-count keys, in the converter's order.
pub const BLOCK_KEYS: &[&str] = &["n_layers", "num_hidden_layers", "n_layer", "num_layers"];

/// The RoPE parameters object, normalized as the converter does (`rope_scaling` with the
/// top-level `rope_theta`, `type` → `rope_type`, …).
pub fn rope_parameters(h: &Hparams) -> Result<serde_json::Map<String, Json>> {
    let mut rp = match h.get("rope_parameters").or_else(|| h.get("rope_scaling")) {
        Some(Json::Object(o)) => o.clone(),
        Some(other) => {
            return Err(h.field_error("rope_scaling", format!("expected an object, found {other}")));
        }
        None => serde_json::Map::new(),
    };
    if let Some(Json::Object(full)) = rp.get("full_attention").cloned() {
        rp = full;
    }
    let theta = h
        .find(&[
            "global_rope_theta",
            "rope_global_theta",
            "rope_theta_global",
            "rope_theta",
            "rotary_emb_base",
        ])
        .map(|(_, v)| v.clone());
    if let (false, Some(t)) = (rp.contains_key("rope_theta"), theta) {
        rp.insert("rope_theta".into(), t);
    }
    if let (false, Some(t)) = (rp.contains_key("rope_type"), rp.get("type").cloned()) {
        rp.insert("rope_type".into(), t);
    }
    let partial = h.find(&["partial_rotary_factor", "rope_pct", "rope_percent"]);
    if let (false, Some((_, v))) = (rp.contains_key("partial_rotary_factor"), partial) {
        rp.insert("partial_rotary_factor".into(), v.clone());
    }
    let orig = h.get("original_max_position_embeddings");
    if let (false, Some(v)) = (rp.contains_key("original_max_position_embeddings"), orig) {
        rp.insert("original_max_position_embeddings".into(), v.clone());
    }
    Ok(rp)
}

fn rope_num(h: &Hparams, rp: &serde_json::Map<String, Json>, key: &str) -> Result<Option<f64>> {
    match rp.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            h.field_error(
                &format!("rope_scaling.{key}"),
                format!("expected a number, found {v}"),
            )
        }),
    }
}

/// `TextModel.set_gguf_parameters`.
fn text_params(h: &Hparams, m: &mut Meta, file_type: u32) -> Result<()> {
    let a = m
        .get("general.architecture")
        .and_then(|v| match v {
            ggufy_gguf::MetaValue::String(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let k = |s: &str| format!("{a}.{s}");
    m.u32(k("block_count"), h.require_u32(BLOCK_KEYS)?);
    if let Some(v) = h.u32(CTX_KEYS)? {
        m.u32(k("context_length"), v);
    }
    // llama.cpp's converter treats these as optional and would write a file its loader rejects;
    // every supported architecture needs them, so a config without them is refused here.
    m.u32(
        k("embedding_length"),
        h.require_u32(&["hidden_size", "n_embd", "dim"])?,
    );
    m.u32(
        k("feed_forward_length"),
        h.require_u32(&[
            "prefix_dense_intermediate_size",
            "dense_intermediate_size",
            "intermediate_size",
            "n_inner",
            "hidden_dim",
        ])?,
    );
    m.u32(
        k("attention.head_count"),
        h.require_u32(&["num_attention_heads", "n_head", "n_heads"])?,
    );
    if let Some(v) = h.u32(&["num_key_value_heads", "n_kv_heads"])? {
        m.u32(k("attention.head_count_kv"), v);
    }
    if h.get("is_causal") == Some(&Json::Bool(false)) {
        m.bool(k("attention.causal"), false);
    }
    let rp = rope_parameters(h)?;
    if let Some(rope_type) = rp.get("rope_type").and_then(Json::as_str) {
        let factor = rope_num(h, &rp, "factor")?;
        match (rope_type, factor) {
            ("linear", Some(f)) => {
                m.string(k("rope.scaling.type"), "linear");
                m.f32(k("rope.scaling.factor"), f);
            }
            ("yarn", Some(f)) => {
                m.string(k("rope.scaling.type"), "yarn");
                m.f32(k("rope.scaling.factor"), f);
                let orig = rp
                    .get("original_max_position_embeddings")
                    .and_then(crate::config::as_u32)
                    .ok_or_else(|| {
                        h.field_error(
                            "rope_scaling.original_max_position_embeddings",
                            "yarn scaling needs it",
                        )
                    })?;
                m.u32(k("rope.scaling.original_context_length"), orig);
                if let Some(v) = rope_num(h, &rp, "extrapolation_factor")? {
                    m.f32(k("rope.scaling.yarn_ext_factor"), v);
                }
                let attn = match rope_num(h, &rp, "attention_factor")? {
                    Some(v) => Some(v),
                    None => rope_num(h, &rp, "attn_factor")?,
                };
                if let Some(v) = attn {
                    m.f32(k("rope.scaling.yarn_attn_factor"), v);
                }
                if let Some(v) = rope_num(h, &rp, "beta_fast")? {
                    m.f32(k("rope.scaling.yarn_beta_fast"), v);
                }
                if let Some(v) = rope_num(h, &rp, "beta_slow")? {
                    m.f32(k("rope.scaling.yarn_beta_slow"), v);
                }
            }
            ("su" | "longrope", _) => m.string(k("rope.scaling.type"), "longrope"),
            _ => {} // llama3: the rope_freqs tensor; dynamic: handled nowhere for these models
        }
    }
    if let Some(v) = rope_num(h, &rp, "rope_theta")? {
        m.f32(k("rope.freq_base"), v);
    }
    if let Some(v) = h.f64(&["rms_norm_eps", "norm_eps"])? {
        m.f32(k("attention.layer_norm_rms_epsilon"), v);
    }
    if let Some(v) = h.f64(&["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"])? {
        m.f32(k("attention.layer_norm_epsilon"), v);
    }
    if let Some(v) = h.u32(&["head_dim"])? {
        m.u32(k("attention.key_length"), v);
        m.u32(k("attention.value_length"), v);
    }
    if file_type != u32::MAX {
        m.u32("general.file_type", file_type);
    }
    Ok(())
}

/// Head dimension: `head_dim`, else hidden size / heads.
pub fn head_dim(h: &Hparams) -> Result<u32> {
    if let Some(d) = h.u32(&["head_dim"])? {
        return Ok(d);
    }
    let hidden = h.require_u32(&["hidden_size"])?;
    let heads = h.require_u32(&["num_attention_heads"])?;
    if heads == 0 {
        return Err(h.field_error("num_attention_heads", "must not be 0"));
    }
    Ok(hidden / heads)
}

fn llama_params(h: &Hparams, m: &mut Meta, file_type: u32) -> Result<()> {
    text_params(h, m, file_type)?;
    m.u32("llama.vocab_size", h.require_u32(&["vocab_size"])?);
    m.u32("llama.rope.dimension_count", head_dim(h)?);
    Ok(())
}

fn phi3_params(h: &Hparams, m: &mut Meta, file_type: u32) -> Result<()> {
    let n_embd = h.require_u32(&["hidden_size", "n_embd"])?;
    let n_head = h.require_u32(&["num_attention_heads", "n_head"])?;
    let n_head_kv = h.require_u32(&["num_key_value_heads", "n_head_kv"])?;
    let rms = h
        .f64(&["rms_norm_eps"])?
        .ok_or_else(|| h.field_error("rms_norm_eps", "missing"))?;
    let ctx = h.require_u32(&["n_positions", "max_position_embeddings"])?;
    let rp = rope_parameters(h)?;
    let orig = rp
        .get("original_max_position_embeddings")
        .and_then(crate::config::as_u32)
        .ok_or_else(|| h.field_error("original_max_position_embeddings", "missing"))?;
    let rot = rope_num(h, &rp, "partial_rotary_factor")?.unwrap_or(1.0);
    if n_head == 0 {
        return Err(h.field_error("num_attention_heads", "must not be 0"));
    }
    let rope_dims = ((rot * f64::from(n_embd)) as u64 / u64::from(n_head)) as u32;
    m.u32("phi3.context_length", ctx);
    m.u32("phi3.rope.scaling.original_context_length", orig);
    m.u32("phi3.embedding_length", n_embd);
    m.u32(
        "phi3.feed_forward_length",
        h.require_u32(&["intermediate_size"])?,
    );
    m.u32("phi3.block_count", h.require_u32(BLOCK_KEYS)?);
    m.u32("phi3.attention.head_count", n_head);
    m.u32("phi3.attention.head_count_kv", n_head_kv);
    m.f32("phi3.attention.layer_norm_rms_epsilon", rms);
    m.u32("phi3.rope.dimension_count", rope_dims);
    let theta =
        rope_num(h, &rp, "rope_theta")?.ok_or_else(|| h.field_error("rope_theta", "missing"))?;
    m.f32("phi3.rope.freq_base", theta);
    if file_type != u32::MAX {
        m.u32("general.file_type", file_type);
    }
    m.u32(
        "phi3.attention.sliding_window",
        h.u32(&["sliding_window"])?.unwrap_or(0),
    );
    Ok(())
}

fn gemma_params(h: &Hparams, m: &mut Meta, file_type: u32) -> Result<()> {
    m.u32(
        "gemma.context_length",
        h.require_u32(&["max_position_embeddings"])?,
    );
    m.u32("gemma.embedding_length", h.require_u32(&["hidden_size"])?);
    m.u32("gemma.block_count", h.require_u32(BLOCK_KEYS)?);
    m.u32(
        "gemma.feed_forward_length",
        h.require_u32(&["intermediate_size"])?,
    );
    let heads = h.require_u32(&["num_attention_heads"])?;
    m.u32("gemma.attention.head_count", heads);
    m.u32(
        "gemma.attention.head_count_kv",
        h.u32(&["num_key_value_heads"])?.unwrap_or(heads),
    );
    let eps = h
        .f64(&["rms_norm_eps"])?
        .ok_or_else(|| h.field_error("rms_norm_eps", "missing"))?;
    m.f32("gemma.attention.layer_norm_rms_epsilon", eps);
    let hd = h.require_u32(&["head_dim"])?;
    m.u32("gemma.attention.key_length", hd);
    m.u32("gemma.attention.value_length", hd);
    if file_type != u32::MAX {
        m.u32("general.file_type", file_type);
    }
    Ok(())
}

/// Llama 3.1's `rope_freqs`: per-frequency divisors, computed in f32 as the converter does.
pub fn llama3_rope_freqs(h: &Hparams, rp: &serde_json::Map<String, Json>) -> Result<Vec<f32>> {
    let base = rope_num(h, rp, "rope_theta")?.unwrap_or(10000.0);
    let dim = head_dim(h)?;
    let factor = rope_num(h, rp, "factor")?.unwrap_or(8.0);
    let low = rope_num(h, rp, "low_freq_factor")?.unwrap_or(1.0);
    let high = rope_num(h, rp, "high_freq_factor")?.unwrap_or(4.0);
    let old_ctx = rope_num(h, rp, "original_max_position_embeddings")?.unwrap_or(8192.0);
    let low_wavelen = old_ctx / low;
    let high_wavelen = old_ctx / high;
    let mut out = Vec::with_capacity(dim as usize / 2);
    for i in (0..dim).step_by(2) {
        // torch: arange(0, dim, 2, float32) / dim, base ** that, 1 / that — all float32.
        let exponent = i as f32 / dim as f32;
        let freq = 1.0f32 / (base as f32).powf(exponent);
        let wavelen = (2.0 * std::f64::consts::PI) as f32 / freq;
        let v = if f64::from(wavelen) < high_wavelen {
            1.0
        } else if f64::from(wavelen) > low_wavelen {
            factor as f32
        } else {
            let smooth = ((old_ctx as f32) / wavelen - low as f32) / ((high - low) as f32);
            1.0 / ((1.0 - smooth) / factor as f32 + smooth)
        };
        out.push(v);
    }
    Ok(out)
}

/// Phi-3 LongRoPE scaling: the attention factor and the long and short factor tensors.
#[derive(Clone, Debug)]
pub struct LongRope {
    /// `rope.scaling.attn_factor`.
    pub attn_factor: f64,
    /// `rope_factors_long.weight`.
    pub long: Vec<f32>,
    /// `rope_factors_short.weight`.
    pub short: Vec<f32>,
}

/// Phi-3 LongRoPE factors from the config, checked as the converter checks them.
pub fn phi3_rope_factors(h: &Hparams) -> Result<Option<LongRope>> {
    let rp = rope_parameters(h)?;
    let get_list = |key: &str| -> Result<Option<Vec<f32>>> {
        match rp.get(key).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(Json::Array(a)) if a.is_empty() => Ok(None),
            Some(Json::Array(a)) => a
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .map(Some)
                .ok_or_else(|| {
                    h.field_error(&format!("rope_scaling.{key}"), "expected a list of numbers")
                }),
            Some(v) => Err(h.field_error(
                &format!("rope_scaling.{key}"),
                format!("expected a list, found {v}"),
            )),
        }
    };
    let Some(long) = get_list("long_factor")? else {
        return Ok(None);
    };
    let n_embd = h.require_u32(&["hidden_size", "n_embd"])?;
    let n_head = h.require_u32(&["num_attention_heads", "n_head"])?.max(1);
    let ctx = h.require_u32(&["n_positions", "max_position_embeddings"])?;
    let orig = rp
        .get("original_max_position_embeddings")
        .and_then(crate::config::as_u32)
        .ok_or_else(|| h.field_error("original_max_position_embeddings", "missing"))?;
    let rot = rope_num(h, &rp, "partial_rotary_factor")?.unwrap_or(1.0);
    let rope_dims = (rot * f64::from(n_embd)) as u64 / u64::from(n_head);
    let scale = f64::from(ctx) / f64::from(orig);
    let kind = rp
        .get("rope_type")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_lowercase();
    let attn = match kind.as_str() {
        "" => return Err(h.field_error("rope_scaling.type", "missing")),
        "su" | "longrope" => {
            if scale > 1.0 {
                (1.0 + scale.ln() / f64::from(orig).ln()).sqrt()
            } else {
                1.0
            }
        }
        "yarn" => {
            if scale > 1.0 {
                0.1 * scale.ln() + 1.0
            } else {
                1.0
            }
        }
        other => {
            return Err(h.field_error("rope_scaling.type", format!("'{other}' is not supported")));
        }
    };
    let short = get_list("short_factor")?
        .ok_or_else(|| h.field_error("rope_scaling.short_factor", "missing"))?;
    if long.len() != short.len() || long.len() as u64 * 2 != rope_dims {
        return Err(h.field_error(
            "rope_scaling.long_factor",
            format!(
                "long and short factors must both have {} entries (found {} and {})",
                rope_dims / 2,
                long.len(),
                short.len()
            ),
        ));
    }
    Ok(Some(LongRope {
        attn_factor: attn,
        long,
        short,
    }))
}
