//! Metadata values: the 13 GGUF value types, zero-copy views for reading and owned values for writing.

use std::fmt;

/// Byte order of every scalar in a GGUF file (the format has no flag; v3 allows all-big-endian files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// The normal case: everything ggml, gguf-py and ggufy write.
    Little,
    /// gguf-py's `--bigendian` output (detected from the byte-swapped version field).
    Big,
}

/// A metadata value type id as stored in the file (gguf_type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// Maps a stored id; `None` for ids outside 0..=12.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The id stored in the file.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// gguf-py's name for the type (`GGUFValueType`), used in reports.
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "UINT8",
            I8 => "INT8",
            U16 => "UINT16",
            I16 => "INT16",
            U32 => "UINT32",
            I32 => "INT32",
            F32 => "FLOAT32",
            Bool => "BOOL",
            String => "STRING",
            Array => "ARRAY",
            U64 => "UINT64",
            I64 => "INT64",
            F64 => "FLOAT64",
        }
    }

    /// Size in bytes of a scalar of this type; `None` for strings and arrays.
    pub fn scalar_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads fixed-width scalars from a byte slice in a given byte order; `None` when bytes run out.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) endian: Endian,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], endian: Endian) -> Self {
        Cursor {
            bytes,
            pos: 0,
            endian,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.take(N)?;
        let mut a: [u8; N] = s.try_into().ok()?;
        if self.endian == Endian::Big {
            a.reverse();
        }
        Some(a)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    /// Decodes one scalar of `ty` (not a string or array).
    pub(crate) fn scalar(&mut self, ty: ValueType) -> Option<Value<'a>> {
        use ValueType as T;
        Some(match ty {
            T::U8 => Value::U8(self.u8()?),
            T::I8 => Value::I8(self.u8()? as i8),
            T::U16 => Value::U16(self.u16()?),
            T::I16 => Value::I16(self.u16()? as i16),
            T::U32 => Value::U32(self.u32()?),
            T::I32 => Value::I32(self.u32()? as i32),
            T::F32 => Value::F32(f32::from_bits(self.u32()?)),
            T::Bool => Value::Bool(self.u8()? != 0),
            T::U64 => Value::U64(self.u64()?),
            T::I64 => Value::I64(self.u64()? as i64),
            T::F64 => Value::F64(f64::from_bits(self.u64()?)),
            T::String | T::Array => return None,
        })
    }
}

/// A metadata value borrowed from the file's bytes: scalars decoded, strings and arrays zero-copy.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// Raw bytes as stored; usually UTF-8 but the file does not promise it.
    String(&'a [u8]),
    Array(ArrayView<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The stored value type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer type whose value is a non-negative number, widened (lenient read).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            _ => self.as_i64().and_then(|v| u64::try_from(v).ok()),
        }
    }

    /// Any integer type whose value fits an i64 (lenient read).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// A float of either width (lenient read; integers are not floats).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A bool value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string value that is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Copies the value into an owned [`MetaValue`]; fails only on strings that are not UTF-8.
    pub fn to_owned_value(&self) -> Result<MetaValue, std::str::Utf8Error> {
        Ok(match *self {
            Value::U8(v) => MetaValue::U8(v),
            Value::I8(v) => MetaValue::I8(v),
            Value::U16(v) => MetaValue::U16(v),
            Value::I16(v) => MetaValue::I16(v),
            Value::U32(v) => MetaValue::U32(v),
            Value::I32(v) => MetaValue::I32(v),
            Value::F32(v) => MetaValue::F32(v),
            Value::Bool(v) => MetaValue::Bool(v),
            Value::String(b) => MetaValue::String(std::str::from_utf8(b)?.to_owned()),
            Value::Array(a) => MetaValue::Array(a.to_owned_array()?),
            Value::U64(v) => MetaValue::U64(v),
            Value::I64(v) => MetaValue::I64(v),
            Value::F64(v) => MetaValue::F64(v),
        })
    }
}

/// A metadata array borrowed from the file: element type, count and the element bytes.
///
/// The reader has already walked every element, so iteration yields exactly `len` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayView<'a> {
    pub(crate) elem: ValueType,
    pub(crate) len: u64,
    pub(crate) bytes: &'a [u8],
    pub(crate) endian: Endian,
}

impl<'a> ArrayView<'a> {
    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// The element count the file declares (and the reader verified).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw element bytes, in the file's byte order.
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterates the elements in order.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cur: Cursor::new(self.bytes, self.endian),
            elem: self.elem,
            left: self.len,
        }
    }

    /// Element `i`, in O(1) for fixed-size elements and O(i) for strings and nested arrays.
    pub fn get(&self, i: u64) -> Option<Value<'a>> {
        if i >= self.len {
            return None;
        }
        match self.elem.scalar_size() {
            Some(size) => {
                let start = usize::try_from(i).ok()?.checked_mul(size)?;
                let mut cur = Cursor::new(self.bytes, self.endian);
                cur.pos = start;
                cur.scalar(self.elem)
            }
            None => self.iter().nth(usize::try_from(i).ok()?),
        }
    }

    /// Copies the array into an owned [`MetaArray`].
    pub fn to_owned_array(&self) -> Result<MetaArray, std::str::Utf8Error> {
        // Each scalar element type collects into the MetaArray variant of the same name.
        macro_rules! scalars {
            ($($variant:ident),*) => {
                match self.elem {
                    $(T::$variant => {
                        return Ok(MetaArray::$variant(
                            self.iter()
                                .filter_map(|v| match v {
                                    Value::$variant(x) => Some(x),
                                    _ => None,
                                })
                                .collect(),
                        ))
                    })*
                    _ => {}
                }
            };
        }
        use ValueType as T;
        scalars!(U8, I8, U16, I16, U32, I32, F32, Bool, U64, I64, F64);
        Ok(match self.elem {
            T::String => {
                let mut out = Vec::new();
                for v in self.iter() {
                    if let Value::String(b) = v {
                        out.push(std::str::from_utf8(b)?.to_owned());
                    }
                }
                MetaArray::String(out)
            }
            // Scalars returned above: what is left is an array of arrays.
            _ => {
                let mut out = Vec::new();
                for v in self.iter() {
                    if let Value::Array(a) = v {
                        out.push(a.to_owned_array()?);
                    }
                }
                MetaArray::Array(out)
            }
        })
    }
}

/// Iterator over an [`ArrayView`]'s elements.
#[derive(Clone, Debug)]
pub struct ArrayIter<'a> {
    cur: Cursor<'a>,
    elem: ValueType,
    left: u64,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.elem {
            ValueType::String => {
                let n = usize::try_from(self.cur.u64()?).ok()?;
                Some(Value::String(self.cur.take(n)?))
            }
            ValueType::Array => {
                let elem = ValueType::from_id(self.cur.u32()?)?;
                let len = self.cur.u64()?;
                let start = self.cur.pos;
                let mut inner = ArrayIter {
                    cur: self.cur.clone(),
                    elem,
                    left: len,
                };
                while inner.left > 0 {
                    inner.next()?;
                }
                self.cur.pos = inner.cur.pos;
                Some(Value::Array(ArrayView {
                    elem,
                    len,
                    bytes: self.cur.bytes.get(start..inner.cur.pos)?,
                    endian: self.cur.endian,
                }))
            }
            ty => self.cur.scalar(ty),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.left).unwrap_or(usize::MAX);
        (0, Some(n))
    }
}

/// An owned metadata value, for building files; always written little-endian.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(MetaArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// An owned, homogeneous metadata array; the variant is the element type.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<MetaArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl MetaValue {
    /// The value type this value is written as.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(_) => ValueType::Array,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
        }
    }

    /// Appends the value's encoding (without the type id) in GGUF v3 little-endian layout.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            MetaValue::U8(v) => out.push(*v),
            MetaValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            MetaValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            MetaValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            MetaValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            MetaValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            MetaValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            MetaValue::Bool(v) => out.push(u8::from(*v)),
            MetaValue::String(s) => encode_str(s, out),
            MetaValue::Array(a) => a.encode(out),
            MetaValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            MetaValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            MetaValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

pub(crate) fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl MetaArray {
    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        match self {
            MetaArray::U8(_) => ValueType::U8,
            MetaArray::I8(_) => ValueType::I8,
            MetaArray::U16(_) => ValueType::U16,
            MetaArray::I16(_) => ValueType::I16,
            MetaArray::U32(_) => ValueType::U32,
            MetaArray::I32(_) => ValueType::I32,
            MetaArray::F32(_) => ValueType::F32,
            MetaArray::Bool(_) => ValueType::Bool,
            MetaArray::String(_) => ValueType::String,
            MetaArray::Array(_) => ValueType::Array,
            MetaArray::U64(_) => ValueType::U64,
            MetaArray::I64(_) => ValueType::I64,
            MetaArray::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MetaArray::U8(v) => v.len(),
            MetaArray::I8(v) => v.len(),
            MetaArray::U16(v) => v.len(),
            MetaArray::I16(v) => v.len(),
            MetaArray::U32(v) => v.len(),
            MetaArray::I32(v) => v.len(),
            MetaArray::F32(v) => v.len(),
            MetaArray::Bool(v) => v.len(),
            MetaArray::String(v) => v.len(),
            MetaArray::Array(v) => v.len(),
            MetaArray::U64(v) => v.len(),
            MetaArray::I64(v) => v.len(),
            MetaArray::F64(v) => v.len(),
        }
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.elem_type().id().to_le_bytes());
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        fn each<T: Copy>(v: &[T], out: &mut Vec<u8>, f: impl Fn(T) -> MetaValue) {
            for x in v {
                f(*x).encode(out);
            }
        }
        match self {
            MetaArray::U8(v) => out.extend_from_slice(v),
            MetaArray::I8(v) => each(v, out, MetaValue::I8),
            MetaArray::U16(v) => each(v, out, MetaValue::U16),
            MetaArray::I16(v) => each(v, out, MetaValue::I16),
            MetaArray::U32(v) => each(v, out, MetaValue::U32),
            MetaArray::I32(v) => each(v, out, MetaValue::I32),
            MetaArray::F32(v) => each(v, out, MetaValue::F32),
            MetaArray::Bool(v) => each(v, out, MetaValue::Bool),
            MetaArray::String(v) => v.iter().for_each(|s| encode_str(s, out)),
            MetaArray::Array(v) => v.iter().for_each(|a| a.encode(out)),
            MetaArray::U64(v) => each(v, out, MetaValue::U64),
            MetaArray::I64(v) => each(v, out, MetaValue::I64),
            MetaArray::F64(v) => each(v, out, MetaValue::F64),
        }
    }
}

impl From<&str> for MetaValue {
    fn from(s: &str) -> Self {
        MetaValue::String(s.to_owned())
    }
}
impl From<String> for MetaValue {
    fn from(s: String) -> Self {
        MetaValue::String(s)
    }
}
impl From<u32> for MetaValue {
    fn from(v: u32) -> Self {
        MetaValue::U32(v)
    }
}
impl From<f32> for MetaValue {
    fn from(v: f32) -> Self {
        MetaValue::F32(v)
    }
}
impl From<bool> for MetaValue {
    fn from(v: bool) -> Self {
        MetaValue::Bool(v)
    }
}
impl From<MetaArray> for MetaValue {
    fn from(a: MetaArray) -> Self {
        MetaValue::Array(a)
    }
}
