//! Writing a Hugging Face model directory: sharded safetensors with an index,
//! plus the config, tokenizer and chat-template files — atomically.
//!
//! Tensors are streamed: each one is appended to the current shard's data file
//! as it arrives, so memory holds one tensor at a time. A safetensors header
//! must list every tensor's offsets before the data, so a shard is assembled
//! when it closes: header, then the data file copied behind it.

use crate::atomic::AtomicDir;
use crate::checkpoint::{INDEX_FILE, SINGLE_FILE};
use crate::dtype::DType;
use crate::error::CheckpointError;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Files besides the weights that make a HF directory usable: copied verbatim
/// by [`CheckpointWriter::copy_aux_files_from`].
pub const AUX_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
];

/// How to write a checkpoint.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Start a new shard before a tensor would make the current one larger than
    /// this (a single larger tensor gets a shard of its own). Default 5 GB, as
    /// `save_pretrained(max_shard_size="5GB")`.
    pub max_shard_bytes: u64,
    /// Replace an existing output directory.
    pub overwrite: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            max_shard_bytes: 5_000_000_000,
            overwrite: false,
        }
    }
}

struct PendingTensor {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

struct OpenShard {
    data_path: PathBuf,
    data: BufWriter<File>,
    tensors: Vec<PendingTensor>,
    len: u64,
}

impl std::fmt::Debug for CheckpointWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointWriter")
            .field("target", &self.dir.target())
            .field("shards", &self.closed_shards.len())
            .field("tensors", &self.names.len())
            .finish()
    }
}

/// Streams tensors into a new HF model directory.
///
/// ```no_run
/// use delta_core::{CheckpointWriter, DType, WriteOptions};
/// let mut w = CheckpointWriter::create("out-model", WriteOptions::default())?;
/// w.copy_aux_files_from("base-model")?;
/// w.write_f32("model.norm.weight", DType::BF16, &[4], &[1.0, 1.0, 1.0, 1.0])?;
/// w.finish()?;
/// # Ok::<(), delta_core::CheckpointError>(())
/// ```
pub struct CheckpointWriter {
    dir: AtomicDir,
    options: WriteOptions,
    closed_shards: Vec<(PathBuf, Vec<String>, u64)>,
    open: Option<OpenShard>,
    names: BTreeMap<String, ()>,
    total_bytes: u64,
    allow_non_finite: bool,
}

impl CheckpointWriter {
    /// Start writing a model directory at `out_dir` (built under a temporary
    /// name; fails if `out_dir` exists unless `options.overwrite`).
    pub fn create(
        out_dir: impl AsRef<Path>,
        options: WriteOptions,
    ) -> Result<Self, CheckpointError> {
        let dir = AtomicDir::create(out_dir, options.overwrite)?;
        Ok(CheckpointWriter {
            dir,
            options,
            closed_shards: Vec::new(),
            open: None,
            names: BTreeMap::new(),
            total_bytes: 0,
            allow_non_finite: false,
        })
    }

    /// Accept NaN / ±Inf values. By default [`Self::write_tensor`] refuses
    /// them (naming the tensor and element), so no command writes a model
    /// that would produce non-finite logits; tests that build poisoned
    /// fixtures on purpose opt out here.
    pub fn allow_non_finite(mut self) -> Self {
        self.allow_non_finite = true;
        self
    }

    /// Copy the config, tokenizer and chat-template files found in `src_dir`.
    pub fn copy_aux_files_from(
        &mut self,
        src_dir: impl AsRef<Path>,
    ) -> Result<(), CheckpointError> {
        for name in AUX_FILES {
            let src = src_dir.as_ref().join(name);
            if src.is_file() {
                let dst = self.dir.path().join(name);
                fs::copy(&src, &dst).map_err(CheckpointError::io(&src))?;
            }
        }
        Ok(())
    }

    /// Write (or replace) a small file such as `config.json` in the output.
    pub fn write_aux_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).map_err(CheckpointError::io(&path))
    }

    /// Append one tensor given as raw little-endian bytes of `dtype`.
    pub fn write_tensor(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<(), CheckpointError> {
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
            .ok_or_else(|| CheckpointError::InvalidTensor {
                tensor: name.to_string(),
                reason: format!("shape {shape:?} of {dtype} overflows the address space"),
            })?;
        if bytes.len() != expected {
            return Err(CheckpointError::InvalidTensor {
                tensor: name.to_string(),
                reason: format!(
                    "{} bytes given for shape {shape:?} of {dtype} ({expected} expected)",
                    bytes.len()
                ),
            });
        }
        if !self.allow_non_finite {
            if let Some((index, value)) = crate::dtype::first_non_finite(bytes, dtype) {
                return Err(CheckpointError::NonFinite {
                    path: self.dir.target().to_path_buf(),
                    tensor: name.to_string(),
                    index,
                    value,
                });
            }
        }
        if self.names.insert(name.to_string(), ()).is_some() {
            return Err(CheckpointError::InvalidTensor {
                tensor: name.to_string(),
                reason: "written twice".to_string(),
            });
        }
        let size = bytes.len() as u64;
        let needs_new_shard = match &self.open {
            None => true,
            Some(s) => !s.tensors.is_empty() && s.len + size > self.options.max_shard_bytes,
        };
        if needs_new_shard {
            self.close_shard()?;
            let data_path = self
                .dir
                .path()
                .join(format!(".shard-{}.data", self.closed_shards.len()));
            let file = File::create(&data_path).map_err(CheckpointError::io(&data_path))?;
            self.open = Some(OpenShard {
                data_path,
                data: BufWriter::with_capacity(1 << 20, file),
                tensors: Vec::new(),
                len: 0,
            });
        }
        let shard = self.open.as_mut().expect("a shard is open");
        shard
            .data
            .write_all(bytes)
            .map_err(CheckpointError::io(&shard.data_path))?;
        shard.tensors.push(PendingTensor {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            start: shard.len,
            end: shard.len + size,
        });
        shard.len += size;
        self.total_bytes += size;
        Ok(())
    }

    /// Append one tensor given as `f32` values, stored as `dtype`.
    pub fn write_f32(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[usize],
        values: &[f32],
    ) -> Result<(), CheckpointError> {
        self.write_tensor(name, dtype, shape, &crate::dtype::encode(values, dtype))
    }

    /// Turn the open shard's data file into a safetensors file.
    fn close_shard(&mut self) -> Result<(), CheckpointError> {
        let Some(shard) = self.open.take() else {
            return Ok(());
        };
        let data_file = shard.data.into_inner().map_err(|e| CheckpointError::Io {
            path: shard.data_path.clone(),
            source: e.into_error(),
        })?;
        drop(data_file);
        let header = safetensors_header(&shard.tensors);
        let path = self
            .dir
            .path()
            .join(format!(".shard-{}.safetensors", self.closed_shards.len()));
        let mut out = BufWriter::with_capacity(
            1 << 20,
            File::create(&path).map_err(CheckpointError::io(&path))?,
        );
        out.write_all(&(header.len() as u64).to_le_bytes())
            .and_then(|_| out.write_all(&header))
            .map_err(CheckpointError::io(&path))?;
        let mut data =
            File::open(&shard.data_path).map_err(CheckpointError::io(&shard.data_path))?;
        std::io::copy(&mut data, &mut out).map_err(CheckpointError::io(&path))?;
        let file = out.into_inner().map_err(|e| CheckpointError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(CheckpointError::io(&path))?;
        fs::remove_file(&shard.data_path).map_err(CheckpointError::io(&shard.data_path))?;
        let names = shard.tensors.into_iter().map(|t| t.name).collect();
        self.closed_shards.push((path, names, shard.len));
        Ok(())
    }

    /// Close the last shard, name the shards the HF way, write the index if
    /// there is more than one, and rename the directory into place.
    pub fn finish(mut self) -> Result<PathBuf, CheckpointError> {
        self.close_shard()?;
        let n = self.closed_shards.len();
        if n <= 1 {
            // An empty model still gets a valid (empty) safetensors file.
            let target = self.dir.path().join(SINGLE_FILE);
            match self.closed_shards.first() {
                Some((path, _, _)) => {
                    fs::rename(path, &target).map_err(CheckpointError::io(&target))?
                }
                None => write_empty_safetensors(&target)?,
            }
        } else {
            let mut weight_map = Map::new();
            for (i, (path, names, _)) in self.closed_shards.iter().enumerate() {
                let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, n);
                let target = self.dir.path().join(&file);
                fs::rename(path, &target).map_err(CheckpointError::io(&target))?;
                for name in names {
                    weight_map.insert(name.clone(), Value::String(file.clone()));
                }
            }
            let index = json!({
                "metadata": {"total_size": self.total_bytes},
                "weight_map": weight_map,
            });
            let text = serde_json::to_string_pretty(&index).expect("index serializes");
            self.write_aux_file(INDEX_FILE, text.as_bytes())?;
        }
        self.dir.commit()
    }
}

fn safetensors_header(tensors: &[PendingTensor]) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("__metadata__".to_string(), json!({"format": "pt"}));
    for t in tensors {
        map.insert(
            t.name.clone(),
            json!({
                "dtype": t.dtype.safetensors_name(),
                "shape": t.shape,
                "data_offsets": [t.start, t.end],
            }),
        );
    }
    let mut header = serde_json::to_vec(&Value::Object(map)).expect("header serializes");
    // Pad with spaces so tensor data starts 8-byte aligned, as the safetensors
    // crate and HF's writer do.
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    header
}

fn write_empty_safetensors(path: &Path) -> Result<(), CheckpointError> {
    let header = safetensors_header(&[]);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    fs::write(path, bytes).map_err(CheckpointError::io(path))
}
