//! Typed errors of the GGUF reader, dequantizer and Llama loader.

/// Everything that can go wrong reading a GGUF file.
///
/// Every variant names the file (`file`) and, where it applies, the offset,
/// metadata key or tensor involved, so a message is actionable on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened, mapped or read.
    #[error("{file}: cannot {operation}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What was being done ("open", "memory-map", …).
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error(
        "{file}: bad magic {found:02x?} (expected \"GGUF\" = [47, 47, 55, 46]); not a GGUF file"
    )]
    BadMagic {
        /// The file.
        file: String,
        /// The bytes found.
        found: [u8; 4],
    },
    /// A GGUF version other than 2 or 3 (version 1 used 32-bit counts; a
    /// byte-swapped version means a big-endian file, which is not supported).
    #[error("{file}: unsupported GGUF version {version} (supported: 2 and 3, little-endian)")]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// The version read.
        version: u32,
    },
    /// The file ends before a field it declares.
    #[error(
        "{file}: truncated at offset {offset} reading {what}: need {needed} bytes, file has {len}"
    )]
    Truncated {
        /// The file.
        file: String,
        /// Offset of the field.
        offset: u64,
        /// Which field.
        what: String,
        /// Bytes the field needs.
        needed: u64,
        /// File length.
        len: u64,
    },
    /// A string length that exceeds the rest of the file.
    #[error("{file}: bad string length {length} at offset {offset} for {what} ({remaining} bytes remain)")]
    BadStringLength {
        /// The file.
        file: String,
        /// Offset of the length field.
        offset: u64,
        /// Which field.
        what: String,
        /// The length read.
        length: u64,
        /// Bytes left in the file after the length.
        remaining: u64,
    },
    /// A string that is not valid UTF-8.
    #[error("{file}: invalid UTF-8 at offset {offset} in {what}")]
    BadUtf8 {
        /// The file.
        file: String,
        /// Offset of the string bytes.
        offset: u64,
        /// Which field.
        what: String,
    },
    /// An array length whose elements cannot fit in the rest of the file.
    #[error("{file}: bad array length {length} at offset {offset} for {what} ({remaining} bytes remain)")]
    BadArrayLength {
        /// The file.
        file: String,
        /// Offset of the length field.
        offset: u64,
        /// Which field.
        what: String,
        /// The length read.
        length: u64,
        /// Bytes left in the file.
        remaining: u64,
    },
    /// A count in the header (tensors or metadata entries) that cannot fit in the file.
    #[error("{file}: bad {what} {count} in header ({remaining} bytes remain)")]
    BadCount {
        /// The file.
        file: String,
        /// Which count.
        what: &'static str,
        /// The count read.
        count: u64,
        /// Bytes left in the file.
        remaining: u64,
    },
    /// A metadata value type id not in the GGUF specification.
    #[error("{file}: unknown metadata value type {type_id} for key {key:?} at offset {offset}")]
    UnknownValueType {
        /// The file.
        file: String,
        /// The key whose value it is.
        key: String,
        /// The type id read.
        type_id: u32,
        /// Offset of the type id.
        offset: u64,
    },
    /// A boolean metadata byte other than 0 or 1.
    #[error("{file}: bad bool byte {byte} for key {key:?} at offset {offset}")]
    BadBool {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// The byte read.
        byte: u8,
        /// Its offset.
        offset: u64,
    },
    /// Arrays nested deeper than the reader allows.
    #[error("{file}: arrays nested deeper than {max} levels for key {key:?}")]
    NestingTooDeep {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// Maximum depth.
        max: usize,
    },
    /// The same metadata key twice.
    #[error("{file}: duplicate metadata key {key:?}")]
    DuplicateKey {
        /// The file.
        file: String,
        /// The key.
        key: String,
    },
    /// `general.alignment` of the wrong type, zero or not a power of two.
    #[error("{file}: bad general.alignment {value} (must be a non-zero power of two, u32)")]
    BadAlignment {
        /// The file.
        file: String,
        /// The value, as text.
        value: String,
    },
    /// A ggml tensor type id this reader does not know (so it cannot size the tensor).
    #[error("{file}: tensor {tensor:?}: unknown ggml type {type_id}")]
    UnknownGgmlType {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// The type id read.
        type_id: u32,
    },
    /// A tensor with zero or more than four dimensions.
    #[error("{file}: tensor {tensor:?}: {n_dims} dimensions (GGUF allows 1 to 4)")]
    BadDimCount {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// The count read.
        n_dims: u32,
    },
    /// Dimensions whose product (or byte size) overflows.
    #[error("{file}: tensor {tensor:?}: dimensions {dims:?} overflow")]
    DimsOverflow {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// The dims (ggml order: ne\[0\] first).
        dims: Vec<u64>,
    },
    /// A row length (`ne[0]`) that is not a multiple of the type's block size.
    #[error("{file}: tensor {tensor:?}: row length {ne0} is not a multiple of the {ggml_type} block size {block}")]
    BadBlockShape {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// Type name.
        ggml_type: String,
        /// ne\[0\].
        ne0: u64,
        /// Block size.
        block: u64,
    },
    /// Two tensors with the same name.
    #[error("{file}: duplicate tensor name {tensor:?}")]
    DuplicateTensor {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
    },
    /// A tensor offset not a multiple of the file's alignment.
    #[error("{file}: tensor {tensor:?}: offset {offset} is not aligned to {alignment}")]
    MisalignedTensor {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// The alignment.
        alignment: u64,
    },
    /// A tensor whose bytes lie (partly) beyond the end of the file.
    #[error(
        "{file}: tensor {tensor:?}: data [{start}, {end}) out of bounds (file is {len} bytes)"
    )]
    TensorOutOfBounds {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// Absolute start offset.
        start: u64,
        /// Absolute end offset (saturating).
        end: u64,
        /// File length.
        len: u64,
    },
    /// No tensor of that name.
    #[error("{file}: no tensor named {tensor:?}")]
    TensorNotFound {
        /// The file.
        file: String,
        /// The name asked for.
        tensor: String,
    },
    /// Dequantization of this ggml type is not implemented.
    #[error("{file}: tensor {tensor:?}: cannot dequantize ggml type {ggml_type} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)")]
    UnsupportedType {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// Type name.
        ggml_type: String,
    },
    /// A required metadata key is absent.
    #[error("{file}: missing metadata key {key:?}")]
    MissingKey {
        /// The file.
        file: String,
        /// The key.
        key: String,
    },
    /// A metadata value of the wrong type or out of range.
    #[error("{file}: metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The model is not one this loader handles, or is inconsistent.
    #[error("{file}: {message}")]
    Model {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The embedded tokenizer could not be converted.
    #[error("{file}: tokenizer: {message}")]
    Tokenizer {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}
