//! The validating parser: bytes in, a checked [`Layout`] out. Nothing here trusts a count or size
//! from the file before comparing it with the bytes that remain.
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::ops::Range;

use crate::diagnose::diagnose_non_gguf;
use crate::error::{GgufError, Result};
use crate::types::GgmlType;
use crate::value::{ArrayView, Cursor, Endian, Value, ValueType};

/// The bytes "GGUF" that open every GGUF file (in either byte order of the rest).
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Bytes of the fixed header: magic, version, tensor count, key-value count.
pub const FIXED_HEADER_LEN: usize = 24;
/// Default data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_NAME: tensor names longer than this minus one are refused by llama.cpp.
pub const LLAMA_CPP_MAX_NAME: usize = 63;

/// Caps that bound work and memory independently of what a file declares.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest metadata key accepted (real keys are under 100 bytes).
    pub max_key_len: u64,
    /// Longest tensor name accepted (llama.cpp itself stops at 63).
    pub max_name_len: u64,
    /// Longest string value (ggml: 1 GiB).
    pub max_string_len: u64,
    /// Most elements in one array (ggml: 2^30).
    pub max_array_len: u64,
    /// Deepest nesting of arrays inside arrays.
    pub max_array_depth: u32,
    /// Most metadata entries.
    pub max_kv: u64,
    /// Largest `general.alignment`.
    pub max_alignment: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: 65_535,
            max_name_len: 65_535,
            max_string_len: 1 << 30,
            max_array_len: 1 << 30,
            max_array_depth: 8,
            max_kv: 1 << 20,
            max_alignment: 1 << 20,
        }
    }
}

/// One metadata entry, as spans into the file's bytes.
#[derive(Clone, Debug)]
pub(crate) struct KvEntry {
    pub(crate) key: String,
    pub(crate) ty: ValueType,
    /// Byte offset of the key's length prefix (for error messages and reports).
    pub(crate) offset: u64,
    pub(crate) value: Range<usize>,
}

/// A tensor's descriptor as stored in the header, with its sizes computed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name (UTF-8, unique in the file).
    pub name: String,
    /// Dimensions in ggml order (`dims[0]` = ne0, the row length), as stored: not padded to 4.
    pub dims: Vec<u64>,
    /// The element type.
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Product of the dimensions.
    pub n_elements: u64,
    /// Bytes of data (rows × row size).
    pub n_bytes: u64,
}

impl TensorInfo {
    /// ne0: elements per row.
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of every dimension after the first).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// Everything the header says, validated against the file's length.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Format version (2 or 3).
    pub version: u32,
    /// Byte order of every scalar in the file.
    pub endian: Endian,
    /// Data alignment (`general.alignment` or 32).
    pub alignment: u64,
    pub(crate) kvs: Vec<KvEntry>,
    key_index: HashMap<String, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// Bytes of magic, counts, metadata and tensor infos (before padding).
    pub header_len: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// End of the last tensor's data, relative to the data section.
    pub data_len: u64,
    /// Length of the file the layout was checked against.
    pub file_len: u64,
    /// Things other readers (mostly llama.cpp) would refuse or that look wrong, but that do not
    /// stop ggufy from reading the file.
    pub warnings: Vec<String>,
}

impl Layout {
    /// Bytes after the last tensor's padded data (ggml ignores them).
    pub fn trailing_bytes(&self) -> u64 {
        if self.tensors.is_empty() {
            return self.file_len.saturating_sub(self.header_len);
        }
        let end = align_up(self.data_len, self.alignment)
            .and_then(|e| e.checked_add(self.data_offset))
            .unwrap_or(u64::MAX);
        self.file_len.saturating_sub(end)
    }

    pub(crate) fn key_index(&self, key: &str) -> Option<usize> {
        self.key_index.get(key).copied()
    }

    pub(crate) fn tensor_index(&self, name: &str) -> Option<usize> {
        self.tensor_index.get(name).copied()
    }
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(x: u64, align: u64) -> Option<u64> {
    let rem = x.checked_rem(align)?;
    if rem == 0 {
        Some(x)
    } else {
        x.checked_add(align.checked_sub(rem)?)
    }
}

/// A parse failure inside a value, before the key it belongs to is attached.
struct Fail {
    offset: usize,
    what: String,
}

type PResult<T> = std::result::Result<T, Fail>;

fn truncated(offset: usize, what: &str, need: u64, have: usize) -> Fail {
    Fail {
        offset,
        what: format!("{what} needs {need} bytes but only {have} remain in the file"),
    }
}

struct Parser<'a> {
    cur: Cursor<'a>,
    limits: Limits,
}

impl<'a> Parser<'a> {
    fn u32(&mut self, what: &str) -> PResult<u32> {
        let at = self.cur.pos;
        let have = self.cur.remaining();
        self.cur.u32().ok_or_else(|| truncated(at, what, 4, have))
    }

    fn u64(&mut self, what: &str) -> PResult<u64> {
        let at = self.cur.pos;
        let have = self.cur.remaining();
        self.cur.u64().ok_or_else(|| truncated(at, what, 8, have))
    }

    fn take(&mut self, n: u64, what: &str) -> PResult<&'a [u8]> {
        let at = self.cur.pos;
        let have = self.cur.remaining();
        usize::try_from(n)
            .ok()
            .and_then(|n| self.cur.take(n))
            .ok_or_else(|| truncated(at, what, n, have))
    }

    /// A length-prefixed string, bounded by `cap` and by the bytes remaining.
    fn string(&mut self, cap: u64, what: &str) -> PResult<&'a [u8]> {
        let at = self.cur.pos;
        let have = self.cur.remaining();
        let len = self
            .cur
            .u64()
            .ok_or_else(|| truncated(at, &format!("{what} length"), 8, have))?;
        if len > cap {
            return Err(Fail {
                offset: at,
                what: format!("{what} length {len} exceeds the limit of {cap} bytes"),
            });
        }
        self.take(len, what)
    }

    /// Walks one value of type `ty`, checking every length against the bytes left.
    fn skip_value(&mut self, ty: ValueType, depth: u32) -> PResult<()> {
        if let Some(size) = ty.scalar_size() {
            self.take(size as u64, ty.name())?;
            return Ok(());
        }
        if ty == ValueType::String {
            self.string(self.limits.max_string_len, "string")?;
            return Ok(());
        }
        let at = self.cur.pos;
        let elem_id = self.u32("array element type")?;
        let elem = ValueType::from_id(elem_id).ok_or_else(|| Fail {
            offset: at,
            what: format!("array element type {elem_id} is not a GGUF value type (0..=12)"),
        })?;
        let count_at = self.cur.pos;
        let count = self.u64("array length")?;
        if count > self.limits.max_array_len {
            return Err(Fail {
                offset: count_at,
                what: format!(
                    "array length {count} exceeds the limit of {} elements",
                    self.limits.max_array_len
                ),
            });
        }
        // Every element takes at least this many bytes, so the count is checked before any walk.
        let min_elem: u64 = match elem {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.scalar_size().map_or(1, |s| s as u64),
        };
        let need = count.saturating_mul(min_elem);
        if need > self.cur.remaining() as u64 {
            return Err(truncated(
                count_at,
                &format!("array of {count} {} elements", elem.name()),
                need,
                self.cur.remaining(),
            ));
        }
        match elem {
            ValueType::String => {
                for i in 0..count {
                    // The element index is only formatted on failure: this loop runs per token.
                    self.string(self.limits.max_string_len, "string element")
                        .map_err(|f| Fail {
                            what: f.what.replacen(
                                "string element",
                                &format!("string element {i}"),
                                1,
                            ),
                            ..f
                        })?;
                }
            }
            ValueType::Array => {
                let depth = depth.saturating_add(1);
                if depth >= self.limits.max_array_depth {
                    return Err(Fail {
                        offset: at,
                        what: format!(
                            "arrays nested deeper than {} levels",
                            self.limits.max_array_depth
                        ),
                    });
                }
                for _ in 0..count {
                    self.skip_value(ValueType::Array, depth)?;
                }
            }
            _ => {
                self.take(need, "array elements")?;
            }
        }
        Ok(())
    }
}

fn malformed(offset: usize, field: impl Into<String>, problem: impl Into<String>) -> GgufError {
    GgufError::Malformed {
        offset: offset as u64,
        field: field.into(),
        problem: problem.into(),
    }
}

fn utf8<'b>(bytes: &'b [u8], offset: usize, field: &str) -> Result<&'b str> {
    std::str::from_utf8(bytes).map_err(|e| {
        malformed(
            offset,
            field,
            format!(
                "not valid UTF-8 ({e}): {:?}",
                String::from_utf8_lossy(bytes)
            ),
        )
    })
}

/// Decodes the value stored at `span` (which the parser validated).
pub(crate) fn decode_value(
    bytes: &[u8],
    endian: Endian,
    ty: ValueType,
    span: Range<usize>,
) -> Value<'_> {
    let Some(raw) = bytes.get(span) else {
        return Value::String(&[]);
    };
    let mut cur = Cursor::new(raw, endian);
    match ty {
        ValueType::String => Value::String(raw.get(8..).unwrap_or(&[])),
        ValueType::Array => {
            let elem = cur
                .u32()
                .and_then(ValueType::from_id)
                .unwrap_or(ValueType::U8);
            let len = cur.u64().unwrap_or(0);
            Value::Array(ArrayView {
                elem,
                len,
                bytes: raw.get(12..).unwrap_or(&[]),
                endian,
            })
        }
        t => cur.scalar(t).unwrap_or(Value::U8(0)),
    }
}

/// Parses and validates a whole GGUF header against `bytes` (the entire file).
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Layout> {
    let file_len = bytes.len() as u64;
    let magic = bytes.get(..4);
    if magic != Some(&MAGIC[..]) {
        return Err(GgufError::NotGguf(diagnose_non_gguf(bytes)));
    }
    if bytes.len() < FIXED_HEADER_LEN {
        return Err(malformed(
            0,
            "header",
            format!(
                "truncated: the file is {} bytes, a GGUF header needs at least {FIXED_HEADER_LEN}",
                bytes.len()
            ),
        ));
    }

    let mut cur = Cursor::new(bytes, Endian::Little);
    cur.pos = 4;
    let raw_version = cur.u32().unwrap_or(0);
    let (version, endian) = if raw_version != 0 && raw_version & 0xFFFF == 0 {
        (raw_version.swap_bytes(), Endian::Big)
    } else {
        (raw_version, Endian::Little)
    };
    match version {
        0 => return Err(malformed(4, "version", "version 0 is not a GGUF version")),
        1 => {
            return Err(GgufError::Unsupported(
                "GGUF v1 (2023, 32-bit counts) is no longer read by llama.cpp or ggufy; re-convert the model"
                    .into(),
            ));
        }
        2 | 3 => {}
        v => {
            return Err(GgufError::Unsupported(format!(
                "GGUF version {v} (raw field 0x{raw_version:08x}) is newer than this ggufy knows (2 and 3)"
            )));
        }
    }
    let mut p = Parser {
        cur: Cursor::new(bytes, endian),
        limits,
    };
    p.cur.pos = 8;
    let fail = |f: Fail, field: &str| malformed(f.offset, field, f.what);
    let n_tensors = p.u64("tensor count").map_err(|f| fail(f, "tensor count"))?;
    let n_kv = p
        .u64("metadata count")
        .map_err(|f| fail(f, "metadata count"))?;

    // Smallest possible entries: a KV with a 1-byte key and a 1-byte value; a tensor info with a
    // 1-byte name and no dims. Counts beyond what the remaining bytes can hold are lies.
    const MIN_KV: u64 = 8 + 1 + 4 + 1;
    const MIN_TENSOR_INFO: u64 = 8 + 1 + 4 + 4 + 8;
    let remaining = p.cur.remaining() as u64;
    if n_kv > limits.max_kv {
        return Err(malformed(
            16,
            "metadata count",
            format!("{n_kv} entries exceeds the limit of {}", limits.max_kv),
        ));
    }
    if i64::try_from(n_tensors).is_err() || n_tensors > remaining / MIN_TENSOR_INFO {
        return Err(malformed(
            8,
            "tensor count",
            format!(
                "{n_tensors} tensors cannot fit in the {remaining} bytes after the header (each needs at least {MIN_TENSOR_INFO})"
            ),
        ));
    }
    let need = n_kv
        .checked_mul(MIN_KV)
        .and_then(|k| k.checked_add(n_tensors.checked_mul(MIN_TENSOR_INFO)?));
    if need.is_none_or(|n| n > remaining) {
        return Err(malformed(
            16,
            "metadata count",
            format!(
                "{n_kv} entries and {n_tensors} tensor infos cannot fit in the {remaining} bytes after the header"
            ),
        ));
    }

    let mut warnings = Vec::new();
    let mut kvs: Vec<KvEntry> = Vec::with_capacity(n_kv as usize);
    let mut key_index: HashMap<String, usize> = HashMap::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let at = p.cur.pos;
        let key_bytes = p
            .string(limits.max_key_len, "key")
            .map_err(|f| fail(f, &format!("metadata entry #{i} key")))?;
        let key = utf8(key_bytes, at, &format!("metadata entry #{i} key"))?;
        if key.is_empty() {
            return Err(malformed(
                at,
                format!("metadata entry #{i} key"),
                "empty key",
            ));
        }
        let field = format!("metadata key '{key}'");
        let ty_at = p.cur.pos;
        let ty_id = p.u32("value type").map_err(|f| fail(f, &field))?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| {
            malformed(
                ty_at,
                &field,
                format!("value type {ty_id} is not a GGUF value type (0..=12)"),
            )
        })?;
        let start = p.cur.pos;
        p.skip_value(ty, 0).map_err(|f| fail(f, &field))?;
        let end = p.cur.pos;
        if key_index.insert(key.to_owned(), kvs.len()).is_some() {
            return Err(malformed(at, field, "duplicate key"));
        }
        kvs.push(KvEntry {
            key: key.to_owned(),
            ty,
            offset: at as u64,
            value: start..end,
        });
    }

    let mut alignment = DEFAULT_ALIGNMENT;
    if let Some(&i) = key_index.get("general.alignment")
        && let Some(kv) = kvs.get(i)
    {
        let field = "metadata key 'general.alignment'";
        let v = decode_value(bytes, endian, kv.ty, kv.value.clone());
        let Value::U32(a) = v else {
            return Err(malformed(
                kv.value.start,
                field,
                format!("must be UINT32, found {}", kv.ty.name()),
            ));
        };
        if a == 0 || !a.is_power_of_two() {
            return Err(malformed(
                kv.value.start,
                field,
                format!("{a} is not a non-zero power of two"),
            ));
        }
        if u64::from(a) > limits.max_alignment {
            return Err(malformed(
                kv.value.start,
                field,
                format!("{a} exceeds the limit of {} bytes", limits.max_alignment),
            ));
        }
        alignment = u64::from(a);
    }

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut tensor_index: HashMap<String, usize> = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let at = p.cur.pos;
        let idx_field = format!("tensor info #{i}");
        let name_bytes = p
            .string(limits.max_name_len, "name")
            .map_err(|f| fail(f, &format!("{idx_field} name")))?;
        let name = utf8(name_bytes, at, &format!("{idx_field} name"))?.to_owned();
        if name.is_empty() {
            return Err(malformed(
                at,
                format!("{idx_field} name"),
                "empty tensor name",
            ));
        }
        let field = format!("tensor '{name}'");
        if name.len() > LLAMA_CPP_MAX_NAME {
            warnings.push(format!(
                "tensor '{name}': name is {} bytes; llama.cpp refuses names over {LLAMA_CPP_MAX_NAME}",
                name.len()
            ));
        }
        let nd_at = p.cur.pos;
        let n_dims = p.u32("n_dims").map_err(|f| fail(f, &field))?;
        if n_dims > 4 {
            return Err(malformed(
                nd_at,
                &field,
                format!("n_dims = {n_dims}; ggml tensors have at most 4 dimensions"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let d_at = p.cur.pos;
            let ne = p.u64("dimension").map_err(|f| fail(f, &field))?;
            if i64::try_from(ne).is_err() {
                return Err(malformed(
                    d_at,
                    &field,
                    format!("dimension {d} = {ne} is negative as a signed 64-bit count"),
                ));
            }
            dims.push(ne);
        }
        let ty_at = p.cur.pos;
        let ty_id = p.u32("type").map_err(|f| fail(f, &field))?;
        let ty = GgmlType::from_id(ty_id).map_err(|e| malformed(ty_at, &field, e.to_string()))?;
        let off_at = p.cur.pos;
        let offset = p.u64("data offset").map_err(|f| fail(f, &field))?;

        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(|| {
                malformed(
                    nd_at,
                    &field,
                    format!("shape {dims:?} has more elements than a 64-bit count can hold"),
                )
            })?;
        let ne0 = dims.first().copied().unwrap_or(1);
        if ne0.checked_rem(ty.block_size()) != Some(0) {
            return Err(malformed(
                nd_at,
                &field,
                format!(
                    "row length {ne0} is not a multiple of the {} block size {}",
                    ty.name(),
                    ty.block_size()
                ),
            ));
        }
        let row_bytes = ty.row_bytes(ne0).unwrap_or(u64::MAX);
        let n_rows = dims
            .iter()
            .skip(1)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX);
        let n_bytes = row_bytes
            .checked_mul(n_rows)
            .filter(|&b| i64::try_from(b).is_ok() && usize::try_from(b).is_ok())
            .ok_or_else(|| {
                malformed(
                    nd_at,
                    &field,
                    format!(
                        "{} data of shape {dims:?} overflows a 64-bit byte size",
                        ty.name()
                    ),
                )
            })?;
        if offset.checked_rem(alignment) != Some(0) {
            return Err(malformed(
                off_at,
                &field,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(malformed(at, field, "duplicate tensor name"));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
            n_elements,
            n_bytes,
        });
    }

    let header_len = p.cur.pos as u64;
    let data_offset = align_up(header_len, alignment)
        .ok_or_else(|| malformed(p.cur.pos, "data section", "start overflows a 64-bit offset"))?;

    // ggml requires offsets to be exactly cumulative in tensor-info order; other readers only
    // need the data in bounds and unshared. Refuse what is unsafe; warn about what llama.cpp refuses.
    let mut expected: u64 = 0;
    let mut cumulative = true;
    for t in &tensors {
        if cumulative && t.offset != expected {
            cumulative = false;
            warnings.push(format!(
                "tensor '{}' has data offset {}, expected {expected}: llama.cpp refuses files whose tensor data is not laid out in tensor-info order",
                t.name, t.offset
            ));
        }
        expected = align_up(t.n_bytes, alignment)
            .and_then(|b| b.checked_add(t.offset))
            .ok_or_else(|| {
                malformed(
                    data_offset as usize,
                    format!("tensor '{}'", t.name),
                    "data offset plus size overflows a 64-bit offset",
                )
            })?;
    }
    let mut spans: Vec<(u64, u64, &str)> = tensors
        .iter()
        .map(|t| {
            (
                t.offset,
                t.offset.saturating_add(t.n_bytes),
                t.name.as_str(),
            )
        })
        .collect();
    spans.sort_unstable();
    let mut reach: Option<(u64, &str)> = None;
    for &(start, end, name) in &spans {
        if let Some((prev_end, prev)) = reach
            && start < prev_end
            && end > start
        {
            return Err(malformed(
                data_offset as usize,
                format!("tensor '{name}'"),
                format!(
                    "data at offset {start} overlaps tensor '{prev}' (which ends at {prev_end})"
                ),
            ));
        }
        if reach.is_none_or(|(prev_end, _)| end > prev_end) {
            reach = Some((end, name));
        }
    }
    let mut data_len = 0u64;
    for t in &tensors {
        let end = t.offset.saturating_add(t.n_bytes);
        let abs_end = data_offset.checked_add(end);
        if abs_end.is_none_or(|e| e > file_len) {
            return Err(malformed(
                data_offset as usize,
                format!("tensor '{}'", t.name),
                format!(
                    "data needs bytes {}..{} of the file ({} {} bytes at data offset {}), but the file is {file_len} bytes: truncated or lying header",
                    data_offset.saturating_add(t.offset),
                    data_offset.saturating_add(end),
                    t.ty.name(),
                    t.n_bytes,
                    t.offset
                ),
            ));
        }
        data_len = data_len.max(end);
    }
    if endian == Endian::Big {
        warnings.push(
            "big-endian file: tensor data is big-endian; llama.cpp on little-endian machines cannot load it"
                .into(),
        );
    }

    Ok(Layout {
        version,
        endian,
        alignment,
        kvs,
        key_index,
        tensors,
        tensor_index,
        header_len,
        data_offset,
        data_len,
        file_len,
        warnings,
    })
}
