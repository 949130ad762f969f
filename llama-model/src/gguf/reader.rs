//! Parsing of the GGUF container: header, metadata, tensor infos, data section.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::path::Path;

use super::dequant;
use super::error::GgufError;

/// `GGUF` in little-endian byte order.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest nesting of metadata arrays the reader accepts (arrays of arrays of ...).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// The type of a metadata value, with its GGUF type id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgufValueType {
    /// 0
    U8,
    /// 1
    I8,
    /// 2
    U16,
    /// 3
    I16,
    /// 4
    U32,
    /// 5
    I32,
    /// 6
    F32,
    /// 7
    Bool,
    /// 8
    String,
    /// 9
    Array,
    /// 10
    U64,
    /// 11
    I64,
    /// 12
    F64,
}

impl GgufValueType {
    /// The type for a GGUF type id, if it is one.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgufValueType::*;
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

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        use GgufValueType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// The fewest bytes one value of this type occupies in a file.
    fn min_size(self) -> u64 {
        use GgufValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// u8
    U8(u8),
    /// i8
    I8(i8),
    /// u16
    U16(u16),
    /// i16
    I16(i16),
    /// u32
    U32(u32),
    /// i32
    I32(i32),
    /// f32
    F32(f32),
    /// bool
    Bool(bool),
    /// UTF-8 string
    String(String),
    /// Array of values of one type (possibly arrays themselves).
    Array(GgufArray),
    /// u64
    U64(u64),
    /// i64
    I64(i64),
    /// f64
    F64(f64),
}

/// A metadata array: its declared element type and the values.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufArray {
    /// Declared element type.
    pub elem_type: GgufValueType,
    /// The elements (all of `elem_type`).
    pub values: Vec<GgufValue>,
}

impl GgufValue {
    /// The value's type.
    pub fn value_type(&self) -> GgufValueType {
        use GgufValue as V;
        use GgufValueType as T;
        match self {
            V::U8(_) => T::U8,
            V::I8(_) => T::I8,
            V::U16(_) => T::U16,
            V::I16(_) => T::I16,
            V::U32(_) => T::U32,
            V::I32(_) => T::I32,
            V::F32(_) => T::F32,
            V::Bool(_) => T::Bool,
            V::String(_) => T::String,
            V::Array(_) => T::Array,
            V::U64(_) => T::U64,
            V::I64(_) => T::I64,
            V::F64(_) => T::F64,
        }
    }

    /// Any integer value as `i128` (lossless for every GGUF integer type).
    fn as_i128(&self) -> Option<i128> {
        use GgufValue as V;
        Some(match *self {
            V::U8(v) => v.into(),
            V::I8(v) => v.into(),
            V::U16(v) => v.into(),
            V::I16(v) => v.into(),
            V::U32(v) => v.into(),
            V::I32(v) => v.into(),
            V::U64(v) => v.into(),
            V::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An integer value of any width that fits in `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer value of any width that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// A numeric value (integer or float) as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Converts to JSON (arrays to lists, non-finite floats to `null`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            GgufValue::F32(v) => {
                serde_json::Number::from_f64((*v).into()).map_or(J::Null, J::Number)
            }
            GgufValue::F64(v) => serde_json::Number::from_f64(*v).map_or(J::Null, J::Number),
            GgufValue::Bool(b) => J::Bool(*b),
            GgufValue::String(s) => J::String(s.clone()),
            GgufValue::Array(a) => J::Array(a.values.iter().map(GgufValue::to_json).collect()),
            other => match other.as_i64() {
                Some(i) => J::from(i),
                None => J::from(other.as_u64().unwrap_or(0)),
            },
        }
    }

    /// A short description for error messages (type, and the value when scalar).
    pub fn describe(&self) -> String {
        match self {
            GgufValue::String(s) if s.len() <= 40 => format!("string {s:?}"),
            GgufValue::String(s) => format!("string of {} bytes", s.len()),
            GgufValue::Array(a) => format!("array of {} {:?}", a.values.len(), a.elem_type),
            other => format!("{other:?}"),
        }
    }
}

impl fmt::Display for GgufValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A ggml tensor element type (the ids of `ggml.h`), known to the reader so it
/// can size tensors. Only some can be dequantized: see [`GgmlType::can_dequantize`].
#[allow(non_camel_case_types, missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

impl GgmlType {
    /// The type for a ggml type id, if known.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            _ => return None,
        })
    }

    /// `(elements per block, bytes per block)`, as ggml's `type_traits`.
    pub fn block_layout(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 => (1, 4),
            F16 => (1, 2),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 40),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            IQ2_XXS => (256, 66),
            IQ2_XS => (256, 74),
            IQ3_XXS => (256, 98),
            IQ1_S => (256, 50),
            IQ4_NL => (32, 18),
            IQ3_S => (256, 110),
            IQ2_S => (256, 82),
            IQ4_XS => (256, 136),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 => (1, 8),
            F64 => (1, 8),
            IQ1_M => (256, 56),
            BF16 => (1, 2),
            TQ1_0 => (256, 54),
            TQ2_0 => (256, 66),
            MXFP4 => (32, 17),
        }
    }

    /// Whether [`GgufFile::dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
        )
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One tensor's entry in the tensor-info table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` (`ne[0]`) is the innermost, fastest-varying
    /// one, i.e. the reverse of the numpy / PyTorch shape.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the tensor's bytes, relative to the data section.
    pub offset: u64,
    /// Number of elements.
    pub n_elements: u64,
    /// Number of bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The shape in numpy / PyTorch order (outermost first): `dims` reversed.
    /// For a 2-D weight this is `[out_features, in_features]`.
    pub fn shape(&self) -> Vec<usize> {
        // Fits: n_elements was checked to fit in i64 and the file is in memory.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

type Bytes = Box<dyn Deref<Target = [u8]> + Send + Sync>;

/// The file's bytes, memory-mapped read-only: opening a multi-GB GGUF costs
/// address space, and tensors are paged in only when dequantized.
fn map_file(file: &std::fs::File) -> std::io::Result<Bytes> {
    // SAFETY: read-only map; like every mmap-based reader we rely on the file
    // not being truncated by another process while it is open.
    Ok(Box::new(unsafe { memmap2::Mmap::map(file)? }))
}

/// An opened GGUF file: parsed header, metadata and tensor infos, and the raw bytes
/// (memory-mapped when opened from a path with [`GgufFile::open`]).
pub struct GgufFile {
    name: String,
    bytes: Bytes,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, GgufValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("name", &self.name)
            .field("len", &self.bytes.len())
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file (memory-mapped read-only where the crate
    /// has `memmap2`, otherwise read into memory).
    ///
    /// The whole header, metadata and tensor-info table are validated here,
    /// including that every tensor's bytes lie inside the file; tensor data is
    /// only read when asked for.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let io = |operation| {
            let file = name.clone();
            move |source| GgufError::Io {
                file,
                operation,
                source,
            }
        };
        // A directory opens on Linux but cannot be mapped ("No such device").
        if path.is_dir() {
            return Err(io("read it as a GGUF file")(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "it is a directory",
            )));
        }
        let file = std::fs::File::open(path).map_err(io("open"))?;
        let bytes = map_file(&file).map_err(io("memory-map"))?;
        Self::from_boxed(bytes, name)
    }

    /// Parses a GGUF file held in memory; `name` is used in error messages.
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<String>) -> Result<Self, GgufError> {
        Self::from_boxed(Box::new(bytes), name.into())
    }

    fn from_boxed(bytes: Bytes, name: String) -> Result<Self, GgufError> {
        let parsed = parse(&bytes, &name)?;
        Ok(Self {
            name,
            bytes,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata_index: parsed
                .metadata
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect(),
            metadata: parsed.metadata,
            tensor_index: parsed
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            tensors: parsed.tensors,
        })
    }

    /// The file name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and tensors (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Total file length in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the file is empty (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// All metadata entries, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn wrong(&self, key: &str, expected: &str, v: &GgufValue) -> GgufError {
        GgufError::WrongType {
            file: self.name.clone(),
            key: key.to_string(),
            expected: expected.to_string(),
            found: v.describe(),
        }
    }

    /// A metadata value that must be present.
    pub fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            file: self.name.clone(),
            key: key.to_string(),
        })
    }

    /// An optional non-negative integer (any integer type); error if present with another type.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
            })
            .transpose()
    }

    /// An optional number (integer or float); error if present with another type.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.wrong(key, "a number", v)))
            .transpose()
    }

    /// An optional boolean; error if present with another type.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.wrong(key, "a bool", v)))
            .transpose()
    }

    /// An optional string; error if present with another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| self.wrong(key, "a string", v)))
            .transpose()
    }

    /// An optional array of strings; error if present with another type.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let err = || self.wrong(key, "an array of strings", v);
        let arr = v.as_array().ok_or_else(err)?;
        arr.values
            .iter()
            .map(|e| e.as_str().ok_or_else(err))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional array of numbers as `f64`; error if present with another type.
    pub fn get_f64_array(&self, key: &str) -> Result<Option<Vec<f64>>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let err = || self.wrong(key, "an array of numbers", v);
        let arr = v.as_array().ok_or_else(err)?;
        arr.values
            .iter()
            .map(|e| e.as_f64().ok_or_else(err))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional array of integers as `i64`; error if present with another type.
    pub fn get_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let err = || self.wrong(key, "an array of integers", v);
        let arr = v.as_array().ok_or_else(err)?;
        arr.values
            .iter()
            .map(|e| e.as_i64().ok_or_else(err))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A tensor info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor(name).ok_or_else(|| GgufError::TensorNotFound {
            file: self.name.clone(),
            tensor: name.to_string(),
        })
    }

    /// The raw (possibly quantized) bytes of a tensor.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.require_tensor(name)?;
        Ok(self.raw(info))
    }

    fn raw(&self, info: &TensorInfo) -> &[u8] {
        // Bounds were validated at parse time.
        let start = (self.data_offset + info.offset) as usize;
        &self.bytes[start..start + info.n_bytes as usize]
    }

    /// Dequantizes a tensor to `f32`, in memory order (ggml `ne[0]` fastest, i.e.
    /// row-major for the numpy shape [`TensorInfo::shape`]).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.require_tensor(name)?;
        self.dequantize_info(info)
    }

    /// Dequantizes the tensor described by `info` (which must come from this file).
    pub fn dequantize_info(&self, info: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        let mut out = vec![0f32; info.n_elements as usize];
        self.dequantize_into(info, &mut out)?;
        Ok(out)
    }

    /// Dequantizes into a caller-provided buffer of exactly `info.n_elements` values.
    pub fn dequantize_into(&self, info: &TensorInfo, out: &mut [f32]) -> Result<(), GgufError> {
        if out.len() as u64 != info.n_elements {
            return Err(GgufError::Model {
                file: self.name.clone(),
                message: format!(
                    "tensor {:?}: output buffer holds {} values, tensor has {}",
                    info.name,
                    out.len(),
                    info.n_elements
                ),
            });
        }
        let raw = self.raw(info);
        if !dequant::dequantize(info.ggml_type, raw, out) {
            return Err(GgufError::UnsupportedType {
                file: self.name.clone(),
                tensor: info.name.clone(),
                ggml_type: info.ggml_type.to_string(),
            });
        }
        Ok(())
    }
}

struct Parsed {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<TensorInfo>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                file: self.file.to_string(),
                offset: self.pos as u64,
                what: what(),
                needed: n,
                len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len_offset = self.pos as u64;
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > self.remaining() {
            return Err(GgufError::BadStringLength {
                file: self.file.to_string(),
                offset: len_offset,
                what: what(),
                length: len,
                remaining: self.remaining(),
            });
        }
        let start = self.pos as u64;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::BadUtf8 {
            file: self.file.to_string(),
            offset: start,
            what: what(),
        })
    }

    fn value(
        &mut self,
        ty: GgufValueType,
        key: &str,
        depth: usize,
    ) -> Result<GgufValue, GgufError> {
        let what = || format!("value of {key:?}");
        use GgufValue as V;
        Ok(match ty {
            GgufValueType::U8 => V::U8(self.array::<1>(&what)?[0]),
            GgufValueType::I8 => V::I8(self.array::<1>(&what)?[0] as i8),
            GgufValueType::U16 => V::U16(u16::from_le_bytes(self.array(&what)?)),
            GgufValueType::I16 => V::I16(i16::from_le_bytes(self.array(&what)?)),
            GgufValueType::U32 => V::U32(u32::from_le_bytes(self.array(&what)?)),
            GgufValueType::I32 => V::I32(i32::from_le_bytes(self.array(&what)?)),
            GgufValueType::F32 => V::F32(f32::from_le_bytes(self.array(&what)?)),
            GgufValueType::U64 => V::U64(u64::from_le_bytes(self.array(&what)?)),
            GgufValueType::I64 => V::I64(i64::from_le_bytes(self.array(&what)?)),
            GgufValueType::F64 => V::F64(f64::from_le_bytes(self.array(&what)?)),
            GgufValueType::Bool => {
                let offset = self.pos as u64;
                match self.array::<1>(&what)?[0] {
                    0 => V::Bool(false),
                    1 => V::Bool(true),
                    byte => {
                        return Err(GgufError::BadBool {
                            file: self.file.to_string(),
                            key: key.to_string(),
                            byte,
                            offset,
                        })
                    }
                }
            }
            GgufValueType::String => V::String(self.string(&what)?),
            GgufValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        file: self.file.to_string(),
                        key: key.to_string(),
                        max: MAX_ARRAY_DEPTH,
                    });
                }
                let elem_type =
                    self.value_type(key, &|| format!("array element type of {key:?}"))?;
                let len_offset = self.pos as u64;
                let len = self.u64(&|| format!("array length of {key:?}"))?;
                if len
                    .checked_mul(elem_type.min_size())
                    .is_none_or(|n| n > self.remaining())
                {
                    return Err(GgufError::BadArrayLength {
                        file: self.file.to_string(),
                        offset: len_offset,
                        what: format!("array {key:?} of {elem_type:?}"),
                        length: len,
                        remaining: self.remaining(),
                    });
                }
                let mut values = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    values.push(self.value(elem_type, key, depth + 1)?);
                }
                V::Array(GgufArray { elem_type, values })
            }
        })
    }

    fn value_type(
        &mut self,
        key: &str,
        what: &dyn Fn() -> String,
    ) -> Result<GgufValueType, GgufError> {
        let offset = self.pos as u64;
        let id = self.u32(what)?;
        GgufValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
            file: self.file.to_string(),
            key: key.to_string(),
            type_id: id,
            offset,
        })
    }
}

fn parse(buf: &[u8], file: &str) -> Result<Parsed, GgufError> {
    let mut c = Cursor { buf, pos: 0, file };
    let magic: [u8; 4] = c.array(&|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic {
            file: file.to_string(),
            found: magic,
        });
    }
    let version = c.u32(&|| "version".into())?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion {
            file: file.to_string(),
            version,
        });
    }
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.u64(&|| "metadata count".into())?;
    // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes, each
    // tensor info at least 8 + 4 + 8 + 4 + 8: reject counts the file cannot hold
    // before allocating for them.
    for (what, count, min) in [
        ("metadata count", n_kv, 13u64),
        ("tensor count", n_tensors, 32),
    ] {
        if count.checked_mul(min).is_none_or(|n| n > c.remaining()) {
            return Err(GgufError::BadCount {
                file: file.to_string(),
                what,
                count,
                remaining: c.remaining(),
            });
        }
    }

    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv as usize);
    let mut seen: HashMap<String, ()> = HashMap::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let key = c.string(&|| format!("key of metadata entry {i}"))?;
        let ty = c.value_type(&key, &|| format!("value type of {key:?}"))?;
        let value = c.value(ty, &key, 0)?;
        if seen.insert(key.clone(), ()).is_some() {
            return Err(GgufError::DuplicateKey {
                file: file.to_string(),
                key,
            });
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v {
            GgufValue::U32(a) if *a != 0 && a.is_power_of_two() => u64::from(*a),
            other => {
                return Err(GgufError::BadAlignment {
                    file: file.to_string(),
                    value: other.describe(),
                })
            }
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names: HashMap<String, ()> = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.string(&|| format!("name of tensor {i}"))?;
        let n_dims = c.u32(&|| format!("dimension count of tensor {name:?}"))?;
        if n_dims == 0 || n_dims > 4 {
            return Err(GgufError::BadDimCount {
                file: file.to_string(),
                tensor: name,
                n_dims,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&|| format!("dimension {d} of tensor {name:?}"))?);
        }
        let type_id = c.u32(&|| format!("type of tensor {name:?}"))?;
        let offset = c.u64(&|| format!("offset of tensor {name:?}"))?;
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownGgmlType {
                file: file.to_string(),
                tensor: name,
                type_id,
            });
        };
        let overflow = || GgufError::DimsOverflow {
            file: file.to_string(),
            tensor: name.clone(),
            dims: dims.clone(),
        };
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(overflow)?;
        let (block, type_size) = ggml_type.block_layout();
        if dims[0] % block != 0 {
            return Err(GgufError::BadBlockShape {
                file: file.to_string(),
                tensor: name,
                ggml_type: ggml_type.to_string(),
                ne0: dims[0],
                block,
            });
        }
        let n_bytes = (n_elements / block)
            .checked_mul(type_size)
            .ok_or_else(overflow)?;
        if offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                file: file.to_string(),
                tensor: name,
                offset,
                alignment,
            });
        }
        if names.insert(name.clone(), ()).is_some() {
            return Err(GgufError::DuplicateTensor {
                file: file.to_string(),
                tensor: name,
            });
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_elements,
            n_bytes,
        });
    }

    let pos = c.pos as u64;
    // pos <= len <= isize::MAX and alignment <= u32::MAX: no overflow.
    let data_offset = pos.div_ceil(alignment) * alignment;
    let len = buf.len() as u64;
    for t in &tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        if end.is_none_or(|e| e > len) {
            return Err(GgufError::TensorOutOfBounds {
                file: file.to_string(),
                tensor: t.name.clone(),
                start: start.unwrap_or(u64::MAX),
                end: end.unwrap_or(u64::MAX),
                len,
            });
        }
    }
    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
    })
}
