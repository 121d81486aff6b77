//! A Hugging Face checkpoint directory: its safetensors shards (memory-mapped, zero-copy), checked
//! against the shard index, and its JSON side files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};
use serde_json::Value as Json;

use crate::error::{ConvertError, Result};

/// The element type of a checkpoint tensor, as safetensors names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// Bytes (bitsandbytes packs NF4 codes and quantization state in these).
    U8,
    /// Any other safetensors dtype, by name; converting it is refused where it matters.
    Other(String),
}

impl Dtype {
    fn from_safetensors(d: StDtype) -> Dtype {
        match d {
            StDtype::F32 => Dtype::F32,
            StDtype::F16 => Dtype::F16,
            StDtype::BF16 => Dtype::BF16,
            StDtype::U8 => Dtype::U8,
            other => Dtype::Other(format!("{other:?}")),
        }
    }

    /// Bytes per element, where fixed.
    pub fn size(&self) -> Option<u64> {
        match self {
            Dtype::F32 => Some(4),
            Dtype::F16 | Dtype::BF16 => Some(2),
            Dtype::U8 => Some(1),
            Dtype::Other(_) => None,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dtype::F32 => f.write_str("F32"),
            Dtype::F16 => f.write_str("F16"),
            Dtype::BF16 => f.write_str("BF16"),
            Dtype::U8 => f.write_str("U8"),
            Dtype::Other(s) => f.write_str(s),
        }
    }
}

/// One tensor of the checkpoint: where its bytes are, and what they are.
#[derive(Clone, Debug)]
pub struct CheckpointTensor {
    /// The checkpoint's name for it.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape in PyTorch order (outermost first).
    pub shape: Vec<u64>,
    shard: usize,
    start: usize,
    end: usize,
}

impl CheckpointTensor {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

struct Shard {
    map: Mmap,
}

/// A checkpoint directory opened for conversion.
pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<Shard>,
    shard_names: Vec<String>,
    tensors: Vec<CheckpointTensor>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("dir", &self.dir)
            .field("shards", &self.shard_names)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Reads and parses a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read(path).map_err(|source| ConvertError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| ConvertError::File {
        path: path.to_owned(),
        problem: format!("not valid JSON: {e}"),
    })
}

/// Reads a JSON file if it exists.
pub(crate) fn read_json_if_present(path: &Path) -> Result<Option<Json>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// How a Git LFS pointer file starts: what a clone without `git lfs` leaves in place of weights.
const LFS_POINTER: &[u8] = b"version https://git-lfs.github.com/spec/";

/// A shard file name from an index must name a file in the checkpoint directory, nothing else.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.contains('\0')
}

impl Checkpoint {
    /// Opens the checkpoint in `dir`: finds its shards (through `model.safetensors.index.json`
    /// when present), maps them, and checks that every indexed tensor is there and nothing else.
    pub fn open(dir: impl AsRef<Path>) -> Result<Checkpoint> {
        let dir = dir.as_ref().to_owned();
        if !dir.is_dir() {
            return Err(ConvertError::File {
                path: dir,
                problem: "not a directory (expected a Hugging Face checkpoint directory)".into(),
            });
        }
        let index_path = dir.join("model.safetensors.index.json");
        let mut indexed: Option<BTreeMap<String, String>> = None;
        let part_names: Vec<String> = if index_path.is_file() {
            let index = read_json(&index_path)?;
            let map = index
                .get("weight_map")
                .and_then(Json::as_object)
                .ok_or_else(|| ConvertError::Field {
                    path: index_path.clone(),
                    field: "weight_map".into(),
                    problem: "missing or not an object".into(),
                })?;
            let mut names = BTreeMap::new();
            for (tensor, file) in map {
                let file = file
                    .as_str()
                    .filter(|f| is_plain_file_name(f))
                    .ok_or_else(|| ConvertError::Field {
                        path: index_path.clone(),
                        field: format!("weight_map.{tensor}"),
                        problem: format!("{file} is not a file name in the checkpoint directory"),
                    })?;
                names.insert(tensor.clone(), file.to_owned());
            }
            let parts: BTreeSet<String> = names.values().cloned().collect();
            indexed = Some(names);
            parts.into_iter().collect()
        } else {
            let mut parts = Vec::new();
            let entries = std::fs::read_dir(&dir).map_err(|source| ConvertError::Io {
                path: dir.clone(),
                source,
            })?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("model") && name.ends_with(".safetensors") {
                    parts.push(name);
                }
            }
            parts.sort();
            parts
        };
        if part_names.is_empty() {
            let problem = if dir.join("consolidated.safetensors").is_file()
                || dir.join("params.json").is_file()
            {
                "Mistral's native format (consolidated.safetensors, params.json) is not supported; use the Hugging Face format of the model".to_owned()
            } else if std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.ends_with(".bin") || n.ends_with(".pt") || n.ends_with(".pth")
                })
            {
                "only safetensors checkpoints are read: PyTorch pickle files (.bin/.pt) can run code when loaded".to_owned()
            } else {
                "no model*.safetensors files".to_owned()
            };
            return Err(ConvertError::File { path: dir, problem });
        }

        let mut shards = Vec::with_capacity(part_names.len());
        let mut tensors = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, part) in part_names.iter().enumerate() {
            let path = dir.join(part);
            if indexed.is_some() && !path.exists() {
                return Err(ConvertError::File {
                    path,
                    problem: "missing: the shard index lists it, but the file is not there (an incomplete download?)".into(),
                });
            }
            let file = File::open(&path).map_err(|source| ConvertError::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the map is read-only and private to this process; ggufy never writes to a
            // file it reads (outputs go to a new temporary file renamed into place). Another
            // process truncating the file while mapped would raise SIGBUS, the contract every
            // mmap-based checkpoint reader (safetensors' own included) has.
            let map = unsafe { Mmap::map(&file) }.map_err(|source| ConvertError::Io {
                path: path.clone(),
                source,
            })?;
            if map.starts_with(LFS_POINTER) {
                return Err(ConvertError::File {
                    path,
                    problem: "a Git LFS pointer, not the weights: fetch the real file (`git lfs pull`, or give ggufy the hub id)".into(),
                });
            }
            let st = SafeTensors::deserialize(&map).map_err(|e| ConvertError::File {
                path: path.clone(),
                problem: format!("not a valid safetensors file: {e}"),
            })?;
            let base = map.as_ptr() as usize;
            let mut names: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
            names.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, view) in names {
                if let Some(prev) = seen.insert(name.clone(), i) {
                    return Err(ConvertError::File {
                        path: path.clone(),
                        problem: format!(
                            "tensor '{name}' is also in {}",
                            part_names.get(prev).map_or("another shard", |s| s.as_str())
                        ),
                    });
                }
                let data = view.data();
                let start = data.as_ptr() as usize - base;
                tensors.push(CheckpointTensor {
                    name,
                    dtype: Dtype::from_safetensors(view.dtype()),
                    shape: view.shape().iter().map(|&d| d as u64).collect(),
                    shard: i,
                    start,
                    end: start + data.len(),
                });
            }
            shards.push(Shard { map });
        }

        if let Some(index) = indexed {
            let missing: Vec<&String> = index.keys().filter(|n| !seen.contains_key(*n)).collect();
            let extra: Vec<&String> = seen.keys().filter(|n| !index.contains_key(*n)).collect();
            if !missing.is_empty() || !extra.is_empty() {
                let show = |v: &[&String]| {
                    let mut s = v
                        .iter()
                        .take(5)
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    if v.len() > 5 {
                        s.push_str(&format!(", … ({} in all)", v.len()));
                    }
                    s
                };
                let mut problem = String::from("the index and the shards disagree:");
                if !missing.is_empty() {
                    let files: BTreeSet<&str> = missing
                        .iter()
                        .filter_map(|n| index.get(*n).map(|s| s.as_str()))
                        .collect();
                    problem.push_str(&format!(
                        " missing tensors {} (expected in {})",
                        show(&missing),
                        files.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                }
                if !extra.is_empty() {
                    problem.push_str(&format!(" tensors not in the index: {}", show(&extra)));
                }
                return Err(ConvertError::File {
                    path: index_path,
                    problem,
                });
            }
        }
        Ok(Checkpoint {
            dir,
            shards,
            shard_names: part_names,
            tensors,
        })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Shard file names, in the order they are read.
    pub fn shard_names(&self) -> &[String] {
        &self.shard_names
    }

    /// All tensors: shards in name order, each shard's tensors in name order (the order
    /// llama.cpp's converter writes them in).
    pub fn tensors(&self) -> &[CheckpointTensor] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&CheckpointTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's bytes (zero-copy from the map).
    pub fn data(&self, t: &CheckpointTensor) -> &[u8] {
        self.shards
            .get(t.shard)
            .and_then(|s| s.map.get(t.start..t.end))
            .unwrap_or(&[])
    }

    /// Drops the mapped pages of a tensor that has been converted, so the process's resident set
    /// stays near one tensor instead of growing to the whole checkpoint. Advisory: on failure
    /// nothing changes.
    pub fn release(&self, t: &CheckpointTensor) {
        let Some(shard) = self.shards.get(t.shard) else {
            return;
        };
        // madvise works on whole pages; round inward so neighbouring tensors keep theirs.
        const PAGE: usize = 4096;
        let start = t.start.div_ceil(PAGE) * PAGE;
        let end = t.end / PAGE * PAGE;
        if end > start {
            // SAFETY: the map is private and read-only, so MADV_DONTNEED cannot discard data:
            // the pages are re-read from the file if touched again. Nothing holds a reference
            // into this range once its tensor is written (the caller's contract).
            let _ = unsafe {
                shard.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }

    /// Total bytes of tensor data.
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| (t.end - t.start) as u64).sum()
    }
}
