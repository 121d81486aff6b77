//! The streaming writer: the whole layout is computed up front from metadata and tensor
//! descriptors, the header is written once, then tensor data streams in order into a temporary
//! file in the target directory, which is fsynced and renamed over the destination on success.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};
use crate::keys;
use crate::reader::{DEFAULT_ALIGNMENT, LLAMA_CPP_MAX_NAME, MAGIC, align_up};
use crate::types::GgmlType;
use crate::value::{MetaValue, encode_str};

/// What the writer needs to know about a tensor before any data exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name, at most 63 bytes (llama.cpp's limit).
    pub name: String,
    /// Dimensions in ggml order (`dims[0]` is the row length), at most 4.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
}

/// A validated file layout: the encoded header and every tensor's offset and size.
#[derive(Clone, Debug)]
pub struct WritePlan {
    header: Vec<u8>,
    tensors: Vec<PlannedTensor>,
    alignment: u64,
}

#[derive(Clone, Debug)]
struct PlannedTensor {
    name: String,
    offset: u64,
    n_bytes: u64,
}

impl WritePlan {
    /// Checks metadata and tensors against what llama.cpp accepts and lays the file out.
    ///
    /// Standard keys must already have the types gguf-py writes (see [`keys::normalize`]).
    pub fn new(metadata: Vec<(String, MetaValue)>, tensors: Vec<TensorSpec>) -> Result<WritePlan> {
        let invalid = |m: String| GgufError::InvalidPlan(m);
        let arch = metadata.iter().find_map(|(k, v)| match v {
            MetaValue::String(s) if k == "general.architecture" => Some(s.as_str()),
            _ => None,
        });
        let mut seen = HashSet::new();
        let mut alignment = DEFAULT_ALIGNMENT;
        for (k, v) in &metadata {
            if k.is_empty() {
                return Err(invalid("empty metadata key".into()));
            }
            if !seen.insert(k.as_str()) {
                return Err(invalid(format!("duplicate metadata key '{k}'")));
            }
            if let Some(c) = keys::canonical(k, arch)
                && !keys::conforms(v, c)
            {
                return Err(invalid(format!(
                    "metadata key '{k}' must be {c:?} for llama.cpp, not {}",
                    v.value_type()
                )));
            }
            if k == "general.alignment" {
                let MetaValue::U32(a) = v else {
                    return Err(invalid("general.alignment must be UINT32".into()));
                };
                if *a == 0 || !a.is_power_of_two() {
                    return Err(invalid(format!(
                        "general.alignment {a} is not a non-zero power of two"
                    )));
                }
                alignment = u64::from(*a);
            }
        }

        let mut header = Vec::new();
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in &metadata {
            encode_str(k, &mut header);
            header.extend_from_slice(&v.value_type().id().to_le_bytes());
            v.encode(&mut header);
        }

        let mut names = HashSet::new();
        let mut planned = Vec::with_capacity(tensors.len());
        let mut offset = 0u64;
        for t in &tensors {
            if t.name.is_empty() || t.name.len() > LLAMA_CPP_MAX_NAME {
                return Err(invalid(format!(
                    "tensor name '{}' must be 1 to {LLAMA_CPP_MAX_NAME} bytes",
                    t.name
                )));
            }
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!("duplicate tensor name '{}'", t.name)));
            }
            if t.dims.len() > 4 {
                return Err(invalid(format!(
                    "tensor '{}' has {} dimensions; ggml allows 4",
                    t.name,
                    t.dims.len()
                )));
            }
            let ne0 = t.dims.first().copied().unwrap_or(1);
            let row = t.ty.row_bytes(ne0).ok_or_else(|| {
                invalid(format!(
                    "tensor '{}': row length {ne0} is not a multiple of the {} block size {}",
                    t.name,
                    t.ty,
                    t.ty.block_size()
                ))
            })?;
            let n_bytes = t
                .dims
                .iter()
                .skip(1)
                .try_fold(row, |acc, &d| acc.checked_mul(d))
                .filter(|&b| i64::try_from(b).is_ok())
                .ok_or_else(|| invalid(format!("tensor '{}' is too large", t.name)))?;
            encode_str(&t.name, &mut header);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            planned.push(PlannedTensor {
                name: t.name.clone(),
                offset,
                n_bytes,
            });
            offset = align_up(n_bytes, alignment)
                .and_then(|b| b.checked_add(offset))
                .ok_or_else(|| invalid("total data size overflows".into()))?;
        }
        let padded = align_up(header.len() as u64, alignment)
            .ok_or_else(|| invalid("header size overflows".into()))?;
        header.resize(padded as usize, 0);
        Ok(WritePlan {
            header,
            tensors: planned,
            alignment,
        })
    }

    /// The encoded header, padded to the data section's alignment.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header
    }

    /// Bytes before the data section (header plus padding).
    pub fn header_len(&self) -> u64 {
        self.header.len() as u64
    }

    /// Size of the finished file.
    pub fn file_len(&self) -> u64 {
        let data = self
            .tensors
            .last()
            .and_then(|t| align_up(t.n_bytes, self.alignment).map(|b| b + t.offset))
            .unwrap_or(0);
        self.header_len() + data
    }

    /// Bytes each tensor's data must have, in order.
    pub fn tensor_sizes(&self) -> impl ExactSizeIterator<Item = (&str, u64)> + '_ {
        self.tensors.iter().map(|t| (t.name.as_str(), t.n_bytes))
    }
}

/// Options for [`GgufWriter::create`].
#[derive(Clone, Debug, Default)]
pub struct WriterOptions {
    /// Replace an existing destination file (never one of `inputs`).
    pub overwrite: bool,
    /// Files the data comes from; writing over any of them is refused, even through links, and
    /// if any of them changes before the output is complete, the output is discarded.
    pub inputs: Vec<PathBuf>,
}

/// Streams a [`WritePlan`]'s tensors into a new file; nothing appears at the destination unless
/// [`GgufWriter::finish`] succeeds.
pub struct GgufWriter {
    plan: WritePlan,
    dest: PathBuf,
    tmp_path: PathBuf,
    out: BufWriter<tempfile::NamedTempFile>,
    next: usize,
    scratch: Vec<u8>,
    inputs: Vec<InputSnapshot>,
}

/// What an input file looked like when writing began: if any of it differs at the end, the
/// data read from it may be a mix of two versions (or a truncated map), so the output is dropped.
#[derive(Debug, PartialEq, Eq)]
struct InputSnapshot {
    path: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
    id: Option<(u64, u64)>,
}

impl InputSnapshot {
    fn take(path: &Path) -> Option<InputSnapshot> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            Some((m.dev(), m.ino()))
        };
        #[cfg(not(unix))]
        let id = None;
        Some(InputSnapshot {
            path: path.to_path_buf(),
            len: m.len(),
            modified: m.modified().ok(),
            id,
        })
    }

    /// What changed since the snapshot, in words, or `None`.
    fn changes(&self) -> Option<String> {
        let Some(now) = InputSnapshot::take(&self.path) else {
            return Some("it can no longer be read".into());
        };
        if now.id != self.id {
            Some("it was replaced by another file".into())
        } else if now.len != self.len {
            Some(format!("size {} → {} bytes", self.len, now.len))
        } else if now.modified != self.modified {
            Some("modification time moved".into())
        } else {
            None
        }
    }
}

impl std::fmt::Debug for GgufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field("dest", &self.dest)
            .field("next", &self.next)
            .finish()
    }
}

const PAD: [u8; 4096] = [0; 4096];

impl GgufWriter {
    /// Creates the temporary output next to `dest` and writes the header.
    pub fn create(dest: impl AsRef<Path>, plan: WritePlan, opts: &WriterOptions) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        for input in &opts.inputs {
            if same_file(&dest, input) {
                return Err(GgufError::InvalidPlan(format!(
                    "output {} is the same file as input {}; choose another output path",
                    dest.display(),
                    input.display()
                )));
            }
        }
        if !opts.overwrite && dest.exists() {
            return Err(GgufError::io(
                &dest,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            ));
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                GgufError::InvalidPlan(format!("{} is not a file path", dest.display()))
            })?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|e| GgufError::io(&dir, e))?;
        let tmp_path = tmp.path().to_path_buf();
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        out.write_all(&plan.header)
            .map_err(|e| GgufError::io(&tmp_path, e))?;
        Ok(GgufWriter {
            plan,
            dest,
            tmp_path,
            out,
            next: 0,
            scratch: Vec::new(),
            inputs: opts
                .inputs
                .iter()
                .filter_map(|p| InputSnapshot::take(p))
                .collect(),
        })
    }

    /// Name and size of the tensor the next write must supply, or `None` when all are written.
    pub fn next_tensor(&self) -> Option<(&str, u64)> {
        self.plan
            .tensors
            .get(self.next)
            .map(|t| (t.name.as_str(), t.n_bytes))
    }

    /// Writes the next tensor's data, which must be exactly its planned size.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<()> {
        let (name, n_bytes) = self.expect_next()?;
        if data.len() as u64 != n_bytes {
            return Err(GgufError::InvalidPlan(format!(
                "tensor '{name}' has {} bytes of data, its shape and type need {n_bytes}",
                data.len()
            )));
        }
        self.out
            .write_all(data)
            .map_err(|e| GgufError::io(&self.tmp_path, e))?;
        self.pad_after(n_bytes)
    }

    /// Writes the next tensor by letting `fill` produce its bytes into a reusable buffer of
    /// exactly the planned size (so peak memory is one tensor, not the model).
    pub fn write_tensor_with<E>(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> std::result::Result<(), E>,
    ) -> Result<(), WriteError<E>> {
        let (_, n_bytes) = self.expect_next().map_err(WriteError::Gguf)?;
        let len = usize::try_from(n_bytes)
            .map_err(|_| WriteError::Gguf(GgufError::InvalidPlan("tensor too large".into())))?;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.resize(len, 0);
        let filled = fill(&mut buf);
        let result = match filled {
            Err(e) => Err(WriteError::Source(e)),
            Ok(()) => self
                .out
                .write_all(&buf)
                .map_err(|e| WriteError::Gguf(GgufError::io(&self.tmp_path, e)))
                .and_then(|()| self.pad_after(n_bytes).map_err(WriteError::Gguf)),
        };
        self.scratch = buf;
        result
    }

    fn expect_next(&mut self) -> Result<(String, u64)> {
        let t = self.plan.tensors.get(self.next).ok_or_else(|| {
            GgufError::InvalidPlan("all planned tensors are already written".into())
        })?;
        self.next += 1;
        Ok((t.name.clone(), t.n_bytes))
    }

    fn pad_after(&mut self, n_bytes: u64) -> Result<()> {
        let mut pad = align_up(n_bytes, self.plan.alignment).unwrap_or(n_bytes) - n_bytes;
        while pad > 0 {
            let n = pad.min(PAD.len() as u64) as usize;
            self.out
                .write_all(&PAD[..n])
                .map_err(|e| GgufError::io(&self.tmp_path, e))?;
            pad -= n as u64;
        }
        Ok(())
    }

    /// Flushes, fsyncs and renames the file into place; fails if any tensor is missing.
    pub fn finish(self) -> Result<PathBuf> {
        if let Some(t) = self.plan.tensors.get(self.next) {
            return Err(GgufError::InvalidPlan(format!(
                "tensor '{}' (and {} more) never written",
                t.name,
                self.plan.tensors.len() - self.next - 1
            )));
        }
        // Checked after the last byte is read and before the rename, so a file changed at any
        // moment of the job never reaches the destination.
        for input in &self.inputs {
            if let Some(what) = input.changes() {
                return Err(GgufError::InputChanged {
                    path: input.path.clone(),
                    what,
                });
            }
        }
        let tmp_path = self.tmp_path;
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| GgufError::io(&tmp_path, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| GgufError::io(&tmp_path, e))?;
        set_readable(tmp.as_file());
        tmp.persist(&self.dest)
            .map_err(|e| GgufError::io(&self.dest, e.error))?;
        if let Some(dir) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable; not every platform can open a directory, so a
            // failure here is not an error.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(self.dest)
    }
}

/// Error from [`GgufWriter::write_tensor_with`]: the writer's own, or the fill closure's.
#[derive(Debug, thiserror::Error)]
pub enum WriteError<E> {
    /// Writing failed.
    #[error(transparent)]
    Gguf(GgufError),
    /// The closure producing the data failed.
    #[error("{0}")]
    Source(E),
}

#[cfg(unix)]
fn set_readable(f: &File) {
    use std::os::unix::fs::PermissionsExt;
    // Temporary files are created 0600; a model file should be readable like any other output.
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o644));
}

#[cfg(not(unix))]
fn set_readable(_: &File) {}

/// Whether two paths name the same file (through symlinks and hard links).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
