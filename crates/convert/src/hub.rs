//! Checkpoints from the Hugging Face hub (feature `hub`): only the files a conversion needs,
//! through the standard cache (resumable downloads, retries), or from the cache alone when offline.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use serde_json::Value as Json;

use crate::checkpoint::read_json;
use crate::error::{ConvertError, Result};

/// Where and how to reach the hub. The CLI fills this from `HF_ENDPOINT`, `HF_HOME`, `HF_TOKEN`
/// and `HF_HUB_OFFLINE`; library users pass what they want (nothing here reads the environment).
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// Hub URL (default https://huggingface.co).
    pub endpoint: Option<String>,
    /// Cache directory (`$HF_HOME/hub`; default ~/.cache/huggingface/hub).
    pub cache_dir: Option<PathBuf>,
    /// Access token for gated or private models.
    pub token: Option<String>,
    /// Use the cache only; never touch the network.
    pub offline: bool,
    /// Retries per file (downloads resume where they stopped).
    pub retries: usize,
}

/// A hub model id, `org/name` with an optional `@revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    pub revision: String,
}

impl HubId {
    /// Parses `org/name[@revision]`; None for anything else (a path, a URL).
    pub fn parse(s: &str) -> Option<HubId> {
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev),
            Some(_) => return None,
            None => (s, "main"),
        };
        let (org, name) = repo.split_once('/')?;
        let ok = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        (ok(org) && ok(name)).then(|| HubId {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

/// Side files a conversion may read, besides config.json and the weights.
const SIDE_FILES: [&str; 10] = [
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "merges.txt",
    "vocab.json",
];

fn hub_err(id: &HubId, problem: impl std::fmt::Display) -> ConvertError {
    ConvertError::File {
        path: PathBuf::from(format!("hf://{}@{}", id.repo, id.revision)),
        problem: problem.to_string(),
    }
}

/// The shard names an index lists.
fn shards_of(index: &Path) -> Result<Vec<String>> {
    let j = read_json(index)?;
    let mut names: Vec<String> = j
        .get("weight_map")
        .and_then(Json::as_object)
        .ok_or_else(|| ConvertError::Field {
            path: index.to_owned(),
            field: "weight_map".into(),
            problem: "missing or not an object".into(),
        })?
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Fetches (or finds in the cache) what converting `id` needs, and returns the local snapshot
/// directory holding it. `progress` is told each file as it starts.
pub fn fetch(id: &HubId, opts: &HubOptions, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let cache = match &opts.cache_dir {
        Some(d) => Cache::new(d.clone()),
        None => Cache::from_env(),
    };
    let repo = Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision.clone());
    if opts.offline {
        let cached = cache.repo(repo);
        let get = |f: &str| cached.get(f);
        let config = get("config.json").ok_or_else(|| {
            hub_err(id, "config.json is not in the cache, and offline mode (HF_HUB_OFFLINE) forbids downloading it")
        })?;
        let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
        let index = dir.join("model.safetensors.index.json");
        let shards = if index.is_file() {
            shards_of(&index)?
        } else {
            vec!["model.safetensors".into()]
        };
        for s in &shards {
            if get(s).is_none() {
                return Err(hub_err(
                    id,
                    format!("{s} is not in the cache (offline mode)"),
                ));
            }
        }
        return Ok(dir);
    }
    let mut builder = ApiBuilder::from_cache(cache)
        .with_progress(false)
        .with_retries(opts.retries)
        .with_user_agent("ggufy", env!("CARGO_PKG_VERSION"));
    if let Some(e) = &opts.endpoint {
        builder = builder.with_endpoint(e.trim_end_matches('/').to_owned());
    }
    if let Some(t) = &opts.token {
        builder = builder.with_token(Some(t.clone()));
    }
    let api = builder
        .build()
        .map_err(|e| hub_err(id, format!("cannot set up the hub client: {e}")))?;
    let remote = api.repo(repo);
    let info = remote
        .info()
        .map_err(|e| hub_err(id, format!("cannot list the repository: {e}")))?;
    let listed: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let has = |f: &str| listed.iter().any(|l| l == f);
    if !has("config.json") {
        return Err(hub_err(
            id,
            "the repository has no config.json (not a transformers checkpoint)",
        ));
    }
    let mut get = |f: &str| -> Result<PathBuf> {
        progress(f);
        remote
            .get(f)
            .map_err(|e| hub_err(id, format!("downloading {f}: {e}")))
    };
    let config = get("config.json")?;
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let shards = if has("model.safetensors.index.json") {
        let index = get("model.safetensors.index.json")?;
        shards_of(&index)?
    } else {
        let mut s: Vec<String> = listed
            .iter()
            .filter(|f| !f.contains('/') && f.starts_with("model") && f.ends_with(".safetensors"))
            .cloned()
            .collect();
        s.sort();
        s
    };
    if shards.is_empty() {
        return Err(hub_err(
            id,
            "the repository has no model*.safetensors files (PyTorch .bin pickles are not read)",
        ));
    }
    for f in SIDE_FILES.iter().filter(|f| has(f)) {
        get(f)?;
    }
    for f in listed
        .iter()
        .filter(|f| f.starts_with("additional_chat_templates/") && f.ends_with(".jinja"))
    {
        get(f)?;
    }
    for s in &shards {
        if !has(s) {
            return Err(hub_err(
                id,
                format!("the index lists {s}, which the repository does not have"),
            ));
        }
        get(s)?;
    }
    Ok(dir)
}
