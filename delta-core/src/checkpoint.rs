//! Reading a Hugging Face model directory, memory-mapped, tensor by tensor.
//!
//! [`Checkpoint::open`] maps every safetensors shard and validates its header
//! (through the `safetensors` crate, which checks that offsets are contiguous and
//! agree with the file length), but reads no tensor data: a 7B checkpoint costs
//! address space, not memory. A tensor's bytes are touched only when
//! [`Checkpoint::view`] or [`Checkpoint::read_f32`] asks for them.

use crate::dtype::{self, DType};
use crate::error::CheckpointError;
use memmap2::Mmap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Name of the single-file weights of a HF checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the index of a sharded HF checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Name, element type and shape of one tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// HF tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Element type as stored.
    pub dtype: DType,
    /// Shape as stored (`[out_features, in_features]` for linear weights).
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements (the product of the shape).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes as stored (elements × dtype size).
    pub fn num_bytes(&self) -> usize {
        self.num_elements() * self.dtype.size()
    }
}

/// A zero-copy view of one tensor's little-endian bytes inside a mapped shard.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Name, dtype and shape.
    pub info: &'a TensorInfo,
    /// The tensor's bytes, little-endian, exactly as stored.
    pub bytes: &'a [u8],
}

impl TensorView<'_> {
    /// The values converted to `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        dtype::decode(self.bytes, self.info.dtype)
    }
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

struct Entry {
    info: TensorInfo,
    shard: usize,
    /// Byte range inside the shard's file.
    start: usize,
    end: usize,
}

/// An opened HF model directory: `config.json` plus safetensors weights,
/// single-file or sharded through `model.safetensors.index.json`.
pub struct Checkpoint {
    dir: PathBuf,
    config: serde_json::Value,
    shards: Vec<Shard>,
    entries: BTreeMap<String, Entry>,
    fingerprint: OnceLock<String>,
    content_digest: OnceLock<String>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("dir", &self.dir)
            .field("shards", &self.shards.len())
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl Checkpoint {
    /// Open a HF model directory. Reads `config.json` and the safetensors
    /// headers; maps the shards without reading their data.
    pub fn open(dir: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        let dir = dir.as_ref().to_path_buf();
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(CheckpointError::MissingConfig { path: dir });
        }
        let config = read_json(&config_path)?;

        let index_path = dir.join(INDEX_FILE);
        let single_path = dir.join(SINGLE_FILE);
        let (shard_files, weight_map) = if index_path.is_file() {
            let (files, map) = read_index(&index_path)?;
            (files, Some(map))
        } else if single_path.is_file() {
            (vec![SINGLE_FILE.to_string()], None)
        } else {
            return Err(CheckpointError::NoWeights { dir });
        };

        let mut shards = Vec::with_capacity(shard_files.len());
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        for (shard_idx, file) in shard_files.iter().enumerate() {
            let path = dir.join(file);
            let (mmap, tensors) = map_safetensors(&path)?;
            for (info, start, end) in tensors {
                if let Some(prev) = entries.get(&info.name) {
                    return Err(CheckpointError::DuplicateTensor {
                        path,
                        tensor: info.name,
                        other: shards
                            .get(prev.shard)
                            .map_or_else(PathBuf::new, |s: &Shard| s.path.clone()),
                    });
                }
                entries.insert(
                    info.name.clone(),
                    Entry {
                        info,
                        shard: shard_idx,
                        start,
                        end,
                    },
                );
            }
            shards.push(Shard { path, mmap });
        }

        if let Some(map) = weight_map {
            for (tensor, file) in &map {
                let in_named_shard = entries
                    .get(tensor)
                    .is_some_and(|e| shard_files[e.shard] == *file);
                if !in_named_shard {
                    return Err(CheckpointError::IndexMismatch {
                        index: index_path,
                        tensor: tensor.clone(),
                        shard: dir.join(file),
                    });
                }
            }
        }

        Ok(Checkpoint {
            dir,
            config,
            shards,
            entries,
            fingerprint: OnceLock::new(),
            content_digest: OnceLock::new(),
        })
    }

    /// The directory this checkpoint was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed `config.json`.
    pub fn config_json(&self) -> &serde_json::Value {
        &self.config
    }

    /// Tensor names in sorted order.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// Every tensor's name, dtype and shape, in sorted name order.
    pub fn infos(&self) -> impl Iterator<Item = &TensorInfo> {
        self.entries.values().map(|e| &e.info)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the checkpoint has no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a tensor called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Name, dtype and shape of the tensor `name`, if it exists.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.entries.get(name).map(|e| &e.info)
    }

    /// Total bytes of all tensors as stored.
    pub fn total_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| e.info.num_bytes() as u64)
            .sum()
    }

    /// Paths of the safetensors files backing this checkpoint.
    pub fn shard_paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// Zero-copy view of one tensor.
    pub fn view(&self, name: &str) -> Result<TensorView<'_>, CheckpointError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| CheckpointError::TensorNotFound {
                dir: self.dir.clone(),
                tensor: name.to_string(),
            })?;
        let bytes = &self.shards[entry.shard].mmap[entry.start..entry.end];
        Ok(TensorView {
            info: &entry.info,
            bytes,
        })
    }

    /// Tell the OS this process is done with a tensor's pages for now, so a
    /// streamed pass over a large model does not keep every touched page of
    /// the mapping resident. Best effort; the data stays valid and is read
    /// back from the page cache or disk if the tensor is viewed again.
    pub fn release(&self, name: &str) {
        #[cfg(unix)]
        if let Some(e) = self.entries.get(name) {
            // SAFETY: the mapping is a read-only shared map of a file; dropping
            // its pages (MADV_DONTNEED) cannot change what a later read sees:
            // the kernel refaults them from the file.
            let _ = unsafe {
                self.shards[e.shard].mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    e.start,
                    e.end - e.start,
                )
            };
        }
        #[cfg(not(unix))]
        let _ = name;
    }

    /// One tensor converted to `f32` (row-major, HF layout).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, CheckpointError> {
        Ok(self.view(name)?.to_f32())
    }

    /// A short content fingerprint (hex SHA-256) that identifies this checkpoint
    /// well enough to refuse applying a delta to the wrong base.
    ///
    /// It hashes every tensor's name, dtype and shape, plus 16 evenly spaced
    /// 4 KiB windows of each tensor's bytes (all of a tensor under 64 KiB). A
    /// full hash of a 7B model would read 13 GB for every `compress`; sampling
    /// still separates a base from its fine-tune, whose weights all move.
    /// Computed once and cached.
    pub fn fingerprint(&self) -> &str {
        self.fingerprint.get_or_init(|| {
            let mut h = Sha256::new();
            for (name, e) in &self.entries {
                h.update((name.len() as u64).to_le_bytes());
                h.update(name.as_bytes());
                h.update(e.info.dtype.safetensors_name().as_bytes());
                for d in &e.info.shape {
                    h.update((*d as u64).to_le_bytes());
                }
                let bytes = &self.shards[e.shard].mmap[e.start..e.end];
                for window in sample_windows(bytes.len()) {
                    h.update(&bytes[window]);
                }
            }
            let digest = h.finalize();
            digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
        })
    }
}

impl Checkpoint {
    /// A digest of the whole checkpoint: every tensor's name, dtype, shape and
    /// *all* of its bytes (`xxh3-64:` + 16 hex digits). Unlike
    /// [`fingerprint`](Self::fingerprint) it reads every byte, so it also
    /// tells apart two checkpoints that differ in a single weight; `apply`
    /// checks it (it reads the whole base anyway). Tensors are hashed in
    /// parallel, each on its own, and the per-tensor hashes combined in name
    /// order, so the value does not depend on thread count or sharding.
    /// Computed once and cached.
    pub fn content_digest(&self) -> &str {
        use rayon::prelude::*;
        self.content_digest.get_or_init(|| {
            let entries: Vec<(&String, &Entry)> = self.entries.iter().collect();
            let per_tensor: Vec<u64> = entries
                .par_iter()
                .map(|(_, e)| {
                    xxhash_rust::xxh3::xxh3_64(&self.shards[e.shard].mmap[e.start..e.end])
                })
                .collect();
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for ((name, e), tensor_hash) in entries.iter().zip(per_tensor) {
                h.update(&(name.len() as u64).to_le_bytes());
                h.update(name.as_bytes());
                h.update(e.info.dtype.safetensors_name().as_bytes());
                h.update(&(e.info.shape.len() as u64).to_le_bytes());
                for d in &e.info.shape {
                    h.update(&(*d as u64).to_le_bytes());
                }
                h.update(&tensor_hash.to_le_bytes());
            }
            format!("xxh3-64:{:016x}", h.digest())
        })
    }
}

/// 16 windows of 4 KiB spread evenly over `len` bytes (the whole range if small).
fn sample_windows(len: usize) -> Vec<std::ops::Range<usize>> {
    const WINDOWS: usize = 16;
    const WINDOW: usize = 4096;
    if len <= WINDOWS * WINDOW {
        return std::iter::once(0..len).collect();
    }
    let stride = (len - WINDOW) / (WINDOWS - 1);
    (0..WINDOWS)
        .map(|i| i * stride..i * stride + WINDOW)
        .collect()
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(CheckpointError::io(path))?;
    serde_json::from_str(&text).map_err(|source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The shard files (in first-appearance order) and the tensor → file map.
fn read_index(path: &Path) -> Result<(Vec<String>, BTreeMap<String, String>), CheckpointError> {
    let json = read_json(path)?;
    let invalid = |reason: &str| CheckpointError::InvalidIndex {
        index: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| invalid("no `weight_map` object"))?;
    let mut files = Vec::new();
    let mut weight_map = BTreeMap::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| invalid(&format!("`{tensor}` maps to a non-string")))?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(invalid(&format!(
                "`{tensor}` maps outside the directory: {file}"
            )));
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
        weight_map.insert(tensor.clone(), file.to_string());
    }
    files.sort();
    Ok((files, weight_map))
}

type TensorSpan = (TensorInfo, usize, usize);

/// A plain explanation of why `bytes` is not a valid safetensors file, for
/// the cases the safetensors crate reports obscurely ("incomplete metadata,
/// file not fully covered", an invalid tensor info naming no tensor): a
/// truncated file or a size mismatch, and a tensor whose byte range does not
/// match its shape and dtype, by name. `None` when none of these applies.
fn diagnose_safetensors(bytes: &[u8]) -> Option<String> {
    let len = bytes.len() as u64;
    let Some(head) = bytes.get(..8) else {
        return Some(format!(
            "truncated: the file has {len} bytes, fewer than the 8-byte header length"
        ));
    };
    let n = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    let header_end = n.checked_add(8)?;
    if header_end > len {
        return Some(format!(
            "truncated or not safetensors: the header declares {n} bytes of JSON, the file has \
             {len} bytes in all"
        ));
    }
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..header_end as usize]).ok()?;
    let mut data_end = 0u64;
    for (name, info) in header.as_object()? {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info.get("data_offsets")?.as_array()?;
        let (start, end) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
        let elements = info
            .get("shape")?
            .as_array()?
            .iter()
            .try_fold(1u64, |n, d| n.checked_mul(d.as_u64()?))?;
        let width = match info.get("dtype")?.as_str()? {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            _ => 1,
        };
        let expected = elements.checked_mul(width)?;
        if end < start || end - start != expected {
            return Some(format!(
                "tensor `{name}`: byte range [{start}, {end}) holds {} bytes, its shape and dtype \
                 need {expected}",
                end.saturating_sub(start)
            ));
        }
        data_end = data_end.max(end);
    }
    let expected_len = header_end.checked_add(data_end)?;
    if expected_len > len {
        return Some(format!(
            "truncated: the header declares {data_end} bytes of tensor data ({expected_len} bytes \
             in all), the file has {len}"
        ));
    }
    if expected_len < len {
        return Some(format!(
            "size mismatch: the header accounts for {expected_len} bytes, the file has {len}"
        ));
    }
    None
}

/// Map one safetensors file and list its tensors with absolute byte ranges.
fn map_safetensors(path: &Path) -> Result<(Mmap, Vec<TensorSpan>), CheckpointError> {
    let file = File::open(path).map_err(CheckpointError::io(path))?;
    // SAFETY: the mapping is read-only; like every mmap-based reader (the
    // safetensors crate's own example included) we rely on no other process
    // truncating the file while it is open.
    let mmap = unsafe { Mmap::map(&file) }.map_err(CheckpointError::io(path))?;
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| {
        CheckpointError::Safetensors {
            path: path.to_path_buf(),
            reason: diagnose_safetensors(&mmap).unwrap_or_else(|| e.to_string()),
        }
    })?;
    let data_start = 8 + header_len;
    let mut tensors = Vec::new();
    for (name, info) in metadata.tensors() {
        let dtype = DType::from_safetensors(info.dtype).ok_or_else(|| {
            CheckpointError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: name.clone(),
                dtype: format!("{:?}", info.dtype),
            }
        })?;
        let (s, e) = info.data_offsets;
        tensors.push((
            TensorInfo {
                name,
                dtype,
                shape: info.shape.clone(),
            },
            data_start + s,
            data_start + e,
        ));
    }
    Ok((mmap, tensors))
}
