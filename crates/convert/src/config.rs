//! `config.json` as the converter sees it: `text_config` merged into the root and the defaults
//! of transformers' config class filled in, because llama.cpp's converter reads the config through
//! transformers and so writes those defaults (e.g. `rope.freq_base` 10000 when the file has none).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::checkpoint::read_json;
use crate::error::{ConvertError, Result};

/// Model hyperparameters from config.json.
#[derive(Clone, Debug)]
pub struct Hparams {
    path: PathBuf,
    map: Map<String, Json>,
}

impl Hparams {
    /// Reads `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Hparams> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(ConvertError::File {
                path,
                problem: "missing: a checkpoint needs its config.json".into(),
            });
        }
        let json = read_json(&path)?;
        Hparams::from_json(path, json)
    }

    /// Builds hyperparameters from an already parsed config (`path` is used in errors).
    pub fn from_json(path: PathBuf, json: Json) -> Result<Hparams> {
        let Json::Object(mut map) = json else {
            return Err(ConvertError::File {
                path,
                problem: "not a JSON object".into(),
            });
        };
        if let Some(Json::Object(text)) = map.get("text_config").cloned() {
            for (k, v) in text {
                map.insert(k, v);
            }
        }
        Ok(Hparams { path, map })
    }

    /// The config file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `architectures[0]`.
    pub fn architecture(&self) -> Result<&str> {
        self.map
            .get("architectures")
            .and_then(Json::as_array)
            .and_then(|a| a.first())
            .and_then(Json::as_str)
            .ok_or_else(|| self.field_error("architectures", "missing or not a list of names"))
    }

    /// A raw value (`null` counts as absent, as in the converter's `dict.get(k) is None`).
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Sets `key` when it is absent or null (a transformers default).
    pub fn default(&mut self, key: &str, value: Json) {
        if self.get(key).is_none() {
            self.map.insert(key.to_owned(), value);
        }
    }

    /// An error about `field` of config.json.
    pub fn field_error(&self, field: &str, problem: impl Into<String>) -> ConvertError {
        ConvertError::Field {
            path: self.path.clone(),
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    /// The first of `keys` present, with its name.
    pub fn find(&self, keys: &[&str]) -> Option<(&str, &Json)> {
        keys.iter().find_map(|k| {
            let (name, v) = self.map.get_key_value(*k)?;
            (!v.is_null()).then_some((name.as_str(), v))
        })
    }

    /// The first of `keys` present, as a non-negative integer that fits a u32 (GGUF counts are u32).
    pub fn u32(&self, keys: &[&str]) -> Result<Option<u32>> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, v)) => as_u32(v).map(Some).ok_or_else(|| {
                self.field_error(
                    k,
                    format!("expected a non-negative integer below 2^32, found {v}"),
                )
            }),
        }
    }

    /// Like [`Hparams::u32`], but the value must be there.
    pub fn require_u32(&self, keys: &[&str]) -> Result<u32> {
        self.u32(keys)?
            .ok_or_else(|| self.field_error(keys.first().copied().unwrap_or("?"), "missing"))
    }

    /// The first of `keys` present, as a number.
    pub fn f64(&self, keys: &[&str]) -> Result<Option<f64>> {
        match self.find(keys) {
            None => Ok(None),
            Some((k, v)) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.field_error(k, format!("expected a number, found {v}"))),
        }
    }

    /// A boolean flag (absent = `default`).
    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(v) => Err(self.field_error(key, format!("expected true or false, found {v}"))),
        }
    }
}

/// A JSON integer that fits a u32.
pub(crate) fn as_u32(v: &Json) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Fills in what transformers' config class for `hf_arch` would (transformers 4.57, the version
/// llama.cpp's converter pins), for the fields the converter reads.
pub(crate) fn fill_transformers_defaults(h: &mut Hparams, hf_arch: &str) {
    let heads = h.get("num_attention_heads").cloned();
    let hidden = h.get("hidden_size").and_then(Json::as_u64);
    let n_heads = heads.as_ref().and_then(Json::as_u64);
    let f = |x: f64| Json::from(x);
    match hf_arch {
        "LlamaForCausalLM" => {
            if let Some(v) = heads {
                h.default("num_key_value_heads", v);
            }
            if let (Some(hs), Some(nh)) = (hidden, n_heads.filter(|&n| n > 0)) {
                h.default("head_dim", Json::from(hs / nh));
            }
            h.default("max_position_embeddings", Json::from(2048));
            h.default("rope_theta", f(10000.0));
            h.default("rms_norm_eps", f(1e-6));
            h.default("vocab_size", Json::from(32000));
        }
        "MistralForCausalLM" => {
            h.default("num_key_value_heads", Json::from(8));
            h.default("max_position_embeddings", Json::from(131072));
            h.default("rope_theta", f(10000.0));
            h.default("rms_norm_eps", f(1e-6));
            h.default("vocab_size", Json::from(32000));
        }
        "Qwen2ForCausalLM" => {
            h.default("num_key_value_heads", Json::from(32));
            h.default("max_position_embeddings", Json::from(32768));
            h.default("rope_theta", f(10000.0));
            h.default("rms_norm_eps", f(1e-6));
            h.default("vocab_size", Json::from(151936));
        }
        "Phi3ForCausalLM" => {
            if let Some(v) = heads {
                h.default("num_key_value_heads", v);
            }
            h.default("max_position_embeddings", Json::from(4096));
            h.default("original_max_position_embeddings", Json::from(4096));
            h.default("partial_rotary_factor", f(1.0));
            h.default("rope_theta", f(10000.0));
            h.default("rms_norm_eps", f(1e-5));
            h.default("vocab_size", Json::from(32064));
        }
        "GemmaForCausalLM" => {
            h.default("num_key_value_heads", Json::from(16));
            h.default("head_dim", Json::from(256));
            h.default("max_position_embeddings", Json::from(8192));
            h.default("rope_theta", f(10000.0));
            h.default("rms_norm_eps", f(1e-6));
            h.default("vocab_size", Json::from(256000));
        }
        _ => {}
    }
}
