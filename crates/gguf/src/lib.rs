//! `ggufy-gguf`: the GGUF container. A strict, zero-copy reader (mmap or any byte buffer) that turns
//! every malformed file into a typed error, and a streaming writer that produces files llama.cpp
//! accepts. No tensor maths lives here.
//!
//! ```
//! use ggufy_gguf::{GgmlType, Gguf, GgufWriter, WriterOptions};
//!
//! # fn main() -> ggufy_gguf::Result<()> {
//! let model = Gguf::open("../../fixtures/gguf/tiny-llama-f16.gguf")?;
//! assert_eq!(model.architecture()?, Some("llama"));
//! assert_eq!(model.get_u32("llama.block_count")?, Some(2));
//! let embd = model.tensor("token_embd.weight").expect("present");
//! assert_eq!((embd.ty, embd.dims.as_slice()), (GgmlType::F16, &[256, 288][..]));
//! assert_eq!(model.tensor_data(embd).map(<[u8]>::len), Some(256 * 288 * 2));
//!
//! // Rewrite it: the plan fixes every offset up front, data streams in tensor order.
//! let dir = tempfile::tempdir().map_err(|e| ggufy_gguf::GgufError::Io { path: ".".into(), err: e })?;
//! let out = dir.path().join("copy.gguf");
//! let mut w = GgufWriter::create(&out, model.to_write_plan()?, &WriterOptions::default())?;
//! for t in model.tensors() {
//!     w.write_tensor(model.tensor_data(t).expect("in bounds"))?;
//! }
//! w.finish()?;
//! assert_eq!(std::fs::read(&out).ok(), std::fs::read("../../fixtures/gguf/tiny-llama-f16.gguf").ok());
//! # Ok(())
//! # }
//! ```

mod diagnose;
mod error;
pub mod keys;
mod reader;
mod types;
mod value;
mod writer;

use std::fs::File;
use std::path::Path;

pub use diagnose::diagnose_non_gguf;
pub use error::{GgufError, Result};
pub use reader::{
    DEFAULT_ALIGNMENT, FIXED_HEADER_LEN, LLAMA_CPP_MAX_NAME, Layout, Limits, MAGIC, TensorInfo,
    align_up,
};
pub use types::{GgmlType, TypeIdError};
pub use value::{ArrayIter, ArrayView, Endian, MetaArray, MetaValue, Value, ValueType};
pub use writer::{GgufWriter, TensorSpec, WriteError, WritePlan, WriterOptions};

/// A memory-mapped GGUF file.
pub type GgufFile = Gguf<memmap2::Mmap>;

/// A parsed GGUF file over any byte buffer: the validated header plus zero-copy access to values
/// and tensor data.
#[derive(Debug)]
pub struct Gguf<B> {
    bytes: B,
    layout: Layout,
}

impl Gguf<memmap2::Mmap> {
    /// Opens and validates a GGUF file by mapping it into memory (nothing is read eagerly).
    ///
    /// The mapping assumes nobody truncates the file while it is open (ggufy never writes to a
    /// file it has mapped; see [`GgufWriter`]).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        Gguf::open_with(path, Limits::default())
    }

    /// [`Gguf::open`] with explicit parser limits.
    pub fn open_with(path: impl AsRef<Path>, limits: Limits) -> Result<GgufFile> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| GgufError::io(path, e))?;
        let meta = file.metadata().map_err(|e| GgufError::io(path, e))?;
        if meta.is_dir() {
            return Err(GgufError::io(
                path,
                std::io::Error::other("is a directory, not a GGUF file"),
            ));
        }
        if meta.len() == 0 {
            return Err(GgufError::NotGguf(diagnose_non_gguf(&[])));
        }
        // SAFETY: the map is read-only and private to this process; ggufy never writes to a file
        // it reads (outputs go to a new temporary file that is renamed into place). Another
        // process truncating the file while mapped would raise SIGBUS, the same contract every
        // mmap-based GGUF reader (llama.cpp included) has.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| GgufError::io(path, e))?;
        Gguf::from_bytes_with(map, limits)
    }

    /// Lets the OS drop the resident pages behind `bytes`, a part of this file's map that has been
    /// consumed (a tensor already converted), so streaming a model through memory keeps the
    /// process's resident set near one tensor instead of the whole file. Advisory: slices from
    /// elsewhere and failures are ignored; the data stays readable (it is re-read if touched).
    pub fn release(&self, bytes: &[u8]) {
        const PAGE: usize = 4096;
        let base = self.bytes.as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        let Some(offset) = start.checked_sub(base) else {
            return;
        };
        let Some(end) = offset.checked_add(bytes.len()) else {
            return;
        };
        if end > self.bytes.len() {
            return;
        }
        // Whole pages only, rounded inward, so neighbouring tensors keep theirs.
        let (from, to) = (offset.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
        if to > from {
            // SAFETY: the map is private and read-only, so MADV_DONTNEED cannot discard data:
            // pages are read again from the file if touched. Callers pass slices they no longer
            // hold, and even if they did, the slice would stay valid (only residency changes).
            let _ = unsafe {
                self.bytes.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    from,
                    to - from,
                )
            };
        }
    }

    /// Maps the pages behind `bytes` (a part of this file's map) into the process now, reading
    /// them from the file if they are not cached, so that later reads do not fault: a token's
    /// embedding row read through the map faulted for 0.1–0.5 ms, a tenth of a decode step at 16
    /// threads. Advisory, like [`Gguf::release`]: slices from elsewhere and failures (kernels
    /// before Linux 5.14) are ignored.
    pub fn prefetch(&self, bytes: &[u8]) {
        let Some(offset) = (bytes.as_ptr() as usize).checked_sub(self.bytes.as_ptr() as usize)
        else {
            return;
        };
        if offset
            .checked_add(bytes.len())
            .is_none_or(|end| end > self.bytes.len())
        {
            return;
        }
        // Whole pages: the advice needs a page-aligned start.
        let from = offset / 4096 * 4096;
        let _ = self.bytes.advise_range(
            memmap2::Advice::PopulateRead,
            from,
            offset + bytes.len() - from,
        );
    }
}

impl<B: AsRef<[u8]>> Gguf<B> {
    /// Parses and validates a GGUF file held in memory.
    pub fn from_bytes(bytes: B) -> Result<Self> {
        Gguf::from_bytes_with(bytes, Limits::default())
    }

    /// [`Gguf::from_bytes`] with explicit parser limits.
    pub fn from_bytes_with(bytes: B, limits: Limits) -> Result<Self> {
        let layout = reader::parse(bytes.as_ref(), limits)?;
        Ok(Gguf { bytes, layout })
    }

    /// The validated header: version, byte order, alignment, offsets, warnings.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Number of metadata entries.
    pub fn metadata_len(&self) -> usize {
        self.layout.kvs.len()
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, Value<'_>)> + '_ {
        let bytes = self.bytes.as_ref();
        self.layout.kvs.iter().map(move |kv| {
            (
                kv.key.as_str(),
                reader::decode_value(bytes, self.layout.endian, kv.ty, kv.value.clone()),
            )
        })
    }

    /// Byte offset in the file where each metadata entry starts, in file order.
    pub fn metadata_offsets(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.layout.kvs.iter().map(|kv| kv.offset)
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        let kv = self.layout.kvs.get(self.layout.key_index(key)?)?;
        Some(reader::decode_value(
            self.bytes.as_ref(),
            self.layout.endian,
            kv.ty,
            kv.value.clone(),
        ))
    }

    /// A string value; `Ok(None)` if absent, an error naming the key if it is not a UTF-8 string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| GgufError::Metadata {
                key: key.into(),
                problem: format!("expected a UTF-8 STRING, found {}", v.value_type()),
            }),
        }
    }

    /// An unsigned integer of any stored width or signedness, if the value fits in a u64.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| GgufError::Metadata {
                key: key.into(),
                problem: format!(
                    "expected a non-negative integer, found {} {}",
                    v.value_type(),
                    show(&v)
                ),
            }),
        }
    }

    /// A u32 stored as any integer type whose value fits (lenient, unlike llama.cpp's getter).
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get_u64(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v).map(Some).map_err(|_| GgufError::Metadata {
                key: key.into(),
                problem: format!("value {v} does not fit in a u32"),
            }),
        }
    }

    /// A float stored as FLOAT32 or FLOAT64.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| GgufError::Metadata {
                key: key.into(),
                problem: format!("expected a float, found {}", v.value_type()),
            }),
        }
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| GgufError::Metadata {
                key: key.into(),
                problem: format!("expected BOOL, found {}", v.value_type()),
            }),
        }
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<Option<ArrayView<'_>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| GgufError::Metadata {
                key: key.into(),
                problem: format!("expected ARRAY, found {}", v.value_type()),
            }),
        }
    }

    /// `general.architecture`, the key every model file must have.
    pub fn architecture(&self) -> Result<Option<&str>> {
        self.get_str("general.architecture")
    }

    /// Tensor descriptors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.layout.tensors
    }

    /// The descriptor of the tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.layout.tensors.get(self.layout.tensor_index(name)?)
    }

    /// The tensor's data, borrowed from the file. `None` only for a descriptor from another file.
    pub fn tensor_data(&self, t: &TensorInfo) -> Option<&[u8]> {
        let start = self.layout.data_offset.checked_add(t.offset)?;
        let end = start.checked_add(t.n_bytes)?;
        self.bytes
            .as_ref()
            .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// A plan that rewrites this file unchanged: same metadata (in order), tensors, dims and
    /// alignment. Fails only if a string in the file is not UTF-8.
    pub fn to_write_plan(&self) -> Result<WritePlan> {
        let mut metadata = Vec::with_capacity(self.metadata_len());
        for (k, v) in self.metadata() {
            let owned = v.to_owned_value().map_err(|e| GgufError::Metadata {
                key: k.into(),
                problem: format!("string is not UTF-8 ({e})"),
            })?;
            metadata.push((k.to_owned(), owned));
        }
        let tensors = self
            .tensors()
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
            })
            .collect();
        WritePlan::new(metadata, tensors)
    }
}

/// Short rendering of a value for error messages.
fn show(v: &Value<'_>) -> String {
    match v {
        Value::String(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::Array(a) => format!("[{} x {}]", a.len(), a.elem_type()),
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
    }
}
