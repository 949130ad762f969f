//! [`Tokenizer`]: a `tokenizers` tokenizer plus the special tokens a
//! Llama checkpoint names, and [`IncrementalDecoder`] for streaming text.

use std::path::Path;

use serde_json::Value;

use crate::error::TokenizerError;

/// The special tokens named by `tokenizer_config.json` (or by GGUF metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence, e.g. `<s>`.
    pub bos_token: Option<String>,
    /// End of sequence (for chat models often the end-of-turn token).
    pub eos_token: Option<String>,
    /// Padding.
    pub pad_token: Option<String>,
    /// Unknown.
    pub unk_token: Option<String>,
}

/// A tokenizer with its special tokens resolved to ids.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
}

impl Tokenizer {
    /// Reads `tokenizer.json` and, if present, `tokenizer_config.json` from a HF directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        let inner = read_tokenizer_json(&path)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let special = if cfg_path.exists() {
            special_tokens_from_config(&cfg_path)?
        } else {
            SpecialTokens::default()
        };
        Ok(Self::from_tokenizers(inner, special))
    }

    /// Wraps a tokenizer built elsewhere (e.g. converted from a GGUF vocabulary).
    pub fn from_tokenizers(inner: tokenizers::Tokenizer, special: SpecialTokens) -> Self {
        let id = |t: &Option<String>| t.as_deref().and_then(|t| inner.token_to_id(t));
        let (bos_id, eos_id, pad_id) = (
            id(&special.bos_token),
            id(&special.eos_token),
            id(&special.pad_token),
        );
        Self {
            inner,
            special,
            bos_id,
            eos_id,
            pad_id,
        }
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The special tokens as strings.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Id of the BOS token, if named and in the vocabulary.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Id of the EOS token, if named and in the vocabulary.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Id of the padding token, if named and in the vocabulary.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes text. `add_special_tokens` runs the tokenizer's post-processor
    /// (which adds BOS for Llama-2's tokenizer); chat prompts are encoded without.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids; `skip_special_tokens` drops BOS/EOS and other special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }

    /// Id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// A streaming decoder over this tokenizer.
    pub fn incremental_decoder(&self, skip_special_tokens: bool) -> IncrementalDecoder<'_> {
        IncrementalDecoder::new(self, skip_special_tokens)
    }
}

/// The largest `tokenizer.json` read (the largest public ones are ~35 MB).
pub const MAX_TOKENIZER_JSON_BYTES: u64 = 256 << 20;

/// Reads a tokenizer JSON file (`tokenizer.json`, `tokenizer_config.json`):
/// bounded in size, parsed, every failure a typed error naming the file.
fn read_json_file(path: &Path) -> Result<Value, TokenizerError> {
    let io = |e: std::io::Error| TokenizerError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_TOKENIZER_JSON_BYTES {
        return Err(TokenizerError::Config {
            path: path.to_path_buf(),
            reason: format!("{len} bytes, more than the {MAX_TOKENIZER_JSON_BYTES} it may have"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    serde_json::from_str(&text).map_err(|e| TokenizerError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads a `tokenizer.json`, with every failure a typed error naming the file.
fn read_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let bad = |reason: String| TokenizerError::Config {
        path: path.to_path_buf(),
        reason,
    };
    // JSON syntax first: tokenizers 0.22 panics ("Helper", an `expect` in
    // its decoder deserializer) on some syntax errors inside `decoder`
    // instead of returning them (found by fuzzing, tests/fuzz); from a
    // parsed value those errors cannot occur.
    let value = read_json_file(path)?;
    // The crate has a few more `expect`s on shapes it does not check; any
    // still reachable becomes this typed error instead of a crash of the
    // caller.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serde_json::from_value::<tokenizers::Tokenizer>(value)
    }));
    match parsed {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(bad(format!("not a tokenizer: {e}"))),
        Err(_) => Err(bad(
            "not a tokenizer: the tokenizers crate could not read it".to_string(),
        )),
    }
}

/// Reads `bos_token` etc. from `tokenizer_config.json`; each may be a string
/// or an `AddedToken` object with a `content` field.
pub fn special_tokens_from_config(path: &Path) -> Result<SpecialTokens, TokenizerError> {
    let v = read_json_file(path)?;
    let get = |key: &str| -> Result<Option<String>, TokenizerError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Object(o)) => match o.get("content") {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                _ => Err(TokenizerError::Config {
                    path: path.to_path_buf(),
                    reason: format!("`{key}` is an object without a string `content`"),
                }),
            },
            Some(other) => Err(TokenizerError::Config {
                path: path.to_path_buf(),
                reason: format!("`{key}` is neither a string nor a token object: {other}"),
            }),
        }
    };
    Ok(SpecialTokens {
        bos_token: get("bos_token")?,
        eos_token: get("eos_token")?,
        pad_token: get("pad_token")?,
        unk_token: get("unk_token")?,
    })
}

/// Turns a growing list of ids into text pieces as they become complete.
///
/// Each [`push`](Self::push) decodes a short window of the latest ids twice
/// (with and without the new id) and emits the new suffix, unless it ends in
/// an incomplete UTF-8 sequence (U+FFFD), in which case the text waits for the
/// next id. Concatenating every piece plus [`finish`](Self::finish) gives the
/// decoding of the whole list.
#[derive(Debug)]
pub struct IncrementalDecoder<'a> {
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl<'a> IncrementalDecoder<'a> {
    /// A decoder with no ids yet.
    pub fn new(tokenizer: &'a Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// Ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Adds one id; returns the newly completed text, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let prefix = self.tokenizer.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') {
            if let Some(piece) = full.get(prefix.len()..) {
                if full.starts_with(&prefix) {
                    let piece = piece.to_string();
                    self.prefix_offset = self.read_offset;
                    self.read_offset = self.ids.len();
                    return Ok(Some(piece));
                }
            }
        }
        Ok(None)
    }

    /// Text still held back (an incomplete character at the end), decoded lossily.
    pub fn finish(&mut self) -> Result<Option<String>, TokenizerError> {
        let prefix = self.tokenizer.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(full
            .get(prefix.len()..)
            .filter(|p| !p.is_empty())
            .map(str::to_string))
    }
}
