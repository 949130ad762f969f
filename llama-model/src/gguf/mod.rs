//! GGUF (llama.cpp's model format): reader, dequantization, and conversion of a
//! Llama GGUF into what the Hugging Face loader expects (config, tensor names and
//! layout, tokenizer, chat template).
//!
//! # The format (v2 and v3, little-endian)
//!
//! ```text
//! magic        4 bytes  "GGUF"
//! version      u32      2 or 3 (v1 used 32-bit counts; v3 only added big-endian files)
//! n_tensors    u64
//! n_kv         u64
//! n_kv × { key: string, value_type: u32, value }
//! n_tensors × { name: string, n_dims: u32, ne: [u64; n_dims], ggml_type: u32, offset: u64 }
//! padding to `general.alignment` (u32 metadata, default 32)
//! data section: each tensor at data_offset + offset (offset a multiple of the alignment)
//! ```
//!
//! A `string` is a u64 byte length and UTF-8 bytes. Value types: 0 u8, 1 i8,
//! 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (one byte, 0 or 1), 8 string,
//! 9 array (`elem_type: u32, len: u64, len × value`, arrays may nest), 10 u64,
//! 11 i64, 12 f64.
//!
//! Tensor dimensions are in ggml order: `ne[0]` is the innermost (fastest-varying)
//! dimension, so the numpy / PyTorch shape is `ne` reversed; a Linear weight with
//! `ne = [in_features, out_features]` is the HF `[out_features, in_features]`
//! matrix, row-major, with no transposition of the data.
//!
//! Quantized types store `ne[0]` in blocks (32 values for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0,
//! super-blocks of 256 for the K-quants); dequantization follows
//! `ggml-quants.c` exactly and is cross-checked against the Python `gguf`
//! package's `gguf.quants.dequantize` (see `tests/gguf_dequant.rs`).
//!
//! [`GgufFile`] validates everything at open time — magic, version, every
//! length against the remaining bytes, value and ggml type ids, dimension
//! overflow, block shape, alignment, duplicate names, tensor bounds — and returns
//! a typed [`GgufError`] naming the file and the field, key or tensor; it never
//! panics on malformed input (fuzz-style test in `tests/gguf_reader.rs`).
//!
//! # The Q/K permutation
//!
//! llama.cpp applies RoPE to adjacent pairs `(x[2i], x[2i+1])` of each head
//! (GPT-J style), while HF Llama rotates halves `(x[i], x[i + d/2])`. So
//! `convert_hf_to_gguf.py` permutes the rows of `q_proj` (with `n_head`) and
//! `k_proj` (with `n_head_kv`):
//!
//! ```python
//! w.reshape(n_head, 2, dim // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)
//! ```
//!
//! i.e. within each head of `d` rows, GGUF row `2i + j` is HF row `j·d/2 + i`
//! (`j ∈ {0,1}`, `i < d/2`). [`unpermute_qk`] inverts it (and [`permute_qk`] is the
//! forward map, for tests and writers); [`GgufLlama`] applies it to
//! `attn_q`/`attn_k` weights (and biases) so tensors come out in HF layout.
//!
//! # Tokenizers
//!
//! [`tokenizer_json`] turns `tokenizer.ggml.*` metadata into a Hugging Face
//! `tokenizer.json` value (and [`tokenizer_from_gguf`] into a
//! [`tokenizers::Tokenizer`]); see the [`tokenizer`] module for the two model kinds
//! (`gpt2` byte-level BPE and `llama` SentencePiece-style BPE with byte fallback).

mod dequant;
mod error;
mod llama;
mod reader;
pub mod tokenizer;

pub use error::GgufError;
pub use llama::{
    gguf_to_hf_name, llama_config_json, load_llama_gguf, permute_qk, unpermute_qk, GgufLlama,
    HfTensor,
};
pub use reader::{
    GgmlType, GgufArray, GgufFile, GgufValue, GgufValueType, TensorInfo, DEFAULT_ALIGNMENT,
    GGUF_MAGIC, MAX_ARRAY_DEPTH,
};
pub use tokenizer::{chat_template, tokenizer_config_json, tokenizer_from_gguf, tokenizer_json};
