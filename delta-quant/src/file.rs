//! The compressed-delta file: one `.safetensors` file.
//!
//! # Layout
//!
//! A standard safetensors container (8-byte little-endian header length,
//! JSON header padded with spaces to a multiple of 8 bytes, then the
//! tensor bytes back to back), so any safetensors reader can list it.
//!
//! * A **compressed** tensor `W` is stored as one safetensors tensor per
//!   payload, named `W::<payload>` (e.g. `…q_proj.weight::signs`,
//!   `…::scales`; a pipeline's mask is `W::mask`, its inner payloads
//!   `W::inner.<payload>`), with the payload's own dtype (U8 for packed
//!   bits, F32 for scales, U32 for indices).
//! * A **carried** tensor (embeddings, norms, lm_head: copied from the
//!   fine-tuned model) is stored under its own name with its original
//!   dtype (F32/F16/BF16/…) and bytes, so HF tools can read it as is.
//!
//! Tensor names may not contain `::`.
//!
//! `__metadata__` (all values are strings, as safetensors requires):
//!
//! | key | value |
//! |---|---|
//! | `format` | `deltaguard.compressed-delta` |
//! | `format_version` | `1` |
//! | `method` | canonical method string ([`Compressor::spec`]) |
//! | `params` | JSON of [`Compressor::params`] |
//! | `base_fingerprint` | caller's fingerprint of the base checkpoint |
//! | `finetuned` | fine-tuned model identity (optional) |
//! | `seed` | seed of the run, decimal (optional; what randomized methods without `seed=` used) |
//! | `tensors` | JSON object: name → entry |
//!
//! A compressed entry is `{"kind":"compressed","shape":[r,c],
//! "storage_bytes":N,"encoding":{…},"payloads":["signs","scales"]}` where
//! `encoding` is [`Parts::encoding`]; a carried entry is
//! `{"kind":"carried","dtype":"BF16","shape":[…]}`.
//!
//! # Writing
//!
//! A safetensors header must list every offset before the data, so
//! [`DeltaFileWriter`] streams tensor bytes to `<path>.data.tmp`, and
//! [`DeltaFileWriter::finish`] writes header + data to `<path>.tmp`, syncs
//! it and renames it to `path`. Until `finish` succeeds `path` is not
//! touched; on error or drop the temporary files are removed.
//!
//! # Reading
//!
//! [`DeltaFile::open`] memory-maps the file and validates everything before
//! returning: the container (via the `safetensors` crate: truncation, bad
//! JSON, offsets that overlap or leave gaps), the metadata, the method
//! string, every payload's presence, dtype and size, and that no tensor is
//! unaccounted for. Each compressed tensor is decoded once there to be
//! validated and dropped at once, so opening needs memory for one tensor,
//! not the whole delta; the `DeltaFile` keeps only each payload's name,
//! dtype, shape and byte range in the map. [`DeltaFile::compressed`]
//! decodes a tensor from the map again on every call, and carried tensors
//! are borrowed from the map on request, so a caller that handles one
//! tensor at a time (apply, loading a model with a delta) holds at most a
//! few tensors. Reading back gives bitwise what was written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Map, Value};

use crate::compressed::{Parts, Payload};
use crate::compressor::{Compressor, Params};
use crate::size::SizeReport;
use crate::{parse_method, Compressed, QuantError};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "deltaguard.compressed-delta";
/// Value of the `format_version` metadata key this build writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// Separator between a tensor name and its payload name.
pub const PAYLOAD_SEP: &str = "::";

/// File-level description: method, its parameters, provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaFileHeader {
    /// Canonical method string.
    pub method: String,
    /// The method's parameters.
    pub params: Params,
    /// Fingerprint of the base checkpoint the delta applies to.
    pub base_fingerprint: String,
    /// Identity of the fine-tuned model, if known.
    pub finetuned: Option<String>,
    /// Seed of the run that wrote the file ([`crate::CompressContext::seed`]):
    /// randomized methods without their own `seed=` (DARE, randomized SVD)
    /// drew from it, so it is needed to reproduce the file. `None` if not
    /// recorded.
    pub seed: Option<u64>,
}

impl DeltaFileHeader {
    /// A header for files written with `compressor` against the base whose
    /// fingerprint is `base_fingerprint`.
    pub fn new(compressor: &dyn Compressor, base_fingerprint: impl Into<String>) -> Self {
        Self {
            method: compressor.spec(),
            params: compressor.params(),
            base_fingerprint: base_fingerprint.into(),
            finetuned: None,
            seed: None,
        }
    }
    /// Records the fine-tuned model's identity.
    pub fn with_finetuned(mut self, id: impl Into<String>) -> Self {
        self.finetuned = Some(id.into());
        self
    }
    /// Records the run's seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// Whether a tensor is a compressed delta or a carried full-precision tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Compressed,
    Carried,
}

/// One logical tensor of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub shape: Vec<usize>,
    /// Stored bytes (all payloads for compressed, raw bytes for carried).
    pub storage_bytes: u64,
    /// Dtype of a carried tensor.
    pub dtype: Option<Dtype>,
}

/// A carried tensor borrowed from the mapped file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarriedTensor<'a> {
    pub dtype: Dtype,
    pub shape: &'a [usize],
    /// Raw little-endian bytes, exactly as written.
    pub data: &'a [u8],
}

struct Stored {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    offsets: (usize, usize),
}

/// Writes a compressed-delta file (see the [module docs](self)).
pub struct DeltaFileWriter {
    path: PathBuf,
    data_tmp: PathBuf,
    out_tmp: PathBuf,
    data: Option<BufWriter<File>>,
    offset: usize,
    stored: Vec<Stored>,
    entries: Map<String, Value>,
    header: DeltaFileHeader,
    finished: bool,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl DeltaFileWriter {
    /// Starts a file at `path` (nothing appears there before `finish`).
    pub fn create(path: impl AsRef<Path>, header: DeltaFileHeader) -> Result<Self, QuantError> {
        let path = path.as_ref().to_path_buf();
        let data_tmp = sibling(&path, ".data.tmp");
        let out_tmp = sibling(&path, ".tmp");
        let f = File::create(&data_tmp).map_err(|e| QuantError::io(&data_tmp, e))?;
        Ok(Self {
            path,
            data_tmp,
            out_tmp,
            data: Some(BufWriter::with_capacity(1 << 20, f)),
            offset: 0,
            stored: Vec::new(),
            entries: Map::new(),
            header,
            finished: false,
        })
    }

    fn check_name(&self, name: &str) -> Result<(), QuantError> {
        if name.is_empty() || name.contains(PAYLOAD_SEP) || name == "__metadata__" {
            return Err(QuantError::Shape(format!(
                "invalid tensor name `{name}` (empty, `__metadata__`, or contains `{PAYLOAD_SEP}`)"
            )));
        }
        if self.entries.contains_key(name) {
            return Err(QuantError::Shape(format!("tensor `{name}` added twice")));
        }
        Ok(())
    }

    fn write_tensor(
        &mut self,
        name: String,
        dtype: Dtype,
        shape: Vec<usize>,
        bytes: &[u8],
    ) -> Result<(), QuantError> {
        let w = self.data.as_mut().expect("writer open until finish");
        w.write_all(bytes)
            .map_err(|e| QuantError::io(&self.data_tmp, e))?;
        let start = self.offset;
        self.offset += bytes.len();
        self.stored.push(Stored {
            name,
            dtype,
            shape,
            offsets: (start, self.offset),
        });
        Ok(())
    }

    /// Adds a compressed delta for tensor `name`.
    pub fn add_compressed(&mut self, name: &str, c: &Compressed) -> Result<(), QuantError> {
        self.check_name(name)?;
        let Parts { encoding, payloads } = c.to_parts();
        let mut names = Vec::with_capacity(payloads.len());
        for (p, payload) in payloads {
            self.write_tensor(
                format!("{name}{PAYLOAD_SEP}{p}"),
                payload.dtype,
                payload.shape,
                &payload.data,
            )?;
            names.push(p);
        }
        self.entries.insert(
            name.to_string(),
            json!({
                "kind": "compressed",
                "shape": c.shape(),
                "storage_bytes": c.storage_bytes(),
                "encoding": encoding,
                "payloads": names,
            }),
        );
        Ok(())
    }

    /// Adds a carried tensor: raw little-endian bytes of `dtype` and `shape`.
    pub fn add_carried(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        data: &[u8],
    ) -> Result<(), QuantError> {
        self.check_name(name)?;
        let numel = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let want = numel
            .and_then(|n| n.checked_mul(dtype.bitsize()))
            .map(|b| b.div_ceil(8));
        if want != Some(data.len()) {
            return Err(QuantError::Shape(format!(
                "carried tensor `{name}`: {} bytes for {dtype} {shape:?}",
                data.len()
            )));
        }
        self.write_tensor(name.to_string(), dtype, shape.to_vec(), data)?;
        self.entries.insert(
            name.to_string(),
            json!({ "kind": "carried", "dtype": dtype.to_string(), "shape": shape }),
        );
        Ok(())
    }

    /// Writes the file and atomically moves it to `path`.
    pub fn finish(mut self) -> Result<PathBuf, QuantError> {
        let mut w = self.data.take().expect("writer open until finish");
        w.flush().map_err(|e| QuantError::io(&self.data_tmp, e))?;
        drop(w);

        let h = &self.header;
        let mut meta = Map::new();
        meta.insert("format".into(), json!(FORMAT));
        meta.insert("format_version".into(), json!(FORMAT_VERSION));
        meta.insert("method".into(), json!(h.method));
        meta.insert(
            "params".into(),
            json!(serde_json::to_string(&h.params).expect("JSON")),
        );
        meta.insert("base_fingerprint".into(), json!(h.base_fingerprint));
        if let Some(f) = &h.finetuned {
            meta.insert("finetuned".into(), json!(f));
        }
        if let Some(seed) = h.seed {
            meta.insert("seed".into(), json!(seed.to_string()));
        }
        meta.insert(
            "tensors".into(),
            json!(serde_json::to_string(&self.entries).expect("JSON")),
        );
        let mut top = Map::new();
        top.insert("__metadata__".into(), Value::Object(meta));
        for s in &self.stored {
            top.insert(
                s.name.clone(),
                json!({ "dtype": s.dtype.to_string(), "shape": s.shape, "data_offsets": [s.offsets.0, s.offsets.1] }),
            );
        }
        let mut header = serde_json::to_vec(&Value::Object(top)).expect("JSON");
        header.resize(header.len().next_multiple_of(8), b' ');

        let io = |e| QuantError::io(&self.out_tmp, e);
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&self.out_tmp).map_err(io)?);
        out.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&header).map_err(io)?;
        let mut data = File::open(&self.data_tmp).map_err(|e| QuantError::io(&self.data_tmp, e))?;
        std::io::copy(&mut data, &mut out).map_err(io)?;
        let f = out.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&self.out_tmp, &self.path).map_err(|e| QuantError::io(&self.path, e))?;
        let _ = fs::remove_file(&self.data_tmp);
        self.finished = true;
        Ok(self.path.clone())
    }
}

impl Drop for DeltaFileWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.data.take();
            let _ = fs::remove_file(&self.data_tmp);
            let _ = fs::remove_file(&self.out_tmp);
        }
    }
}

/// Where a compressed tensor's payloads lie in the map: everything needed
/// to decode it again, nothing decoded.
struct LazyCompressed {
    encoding: Value,
    /// (payload name, dtype, shape, byte range in the map).
    payloads: Vec<(String, Dtype, Vec<usize>, Range<usize>)>,
}

impl LazyCompressed {
    /// Decodes tensor `name` from `map` (copies its payload bytes).
    fn decode(&self, name: &str, map: &[u8]) -> Result<Compressed, QuantError> {
        let payloads = self
            .payloads
            .iter()
            .map(|(p, dtype, shape, range)| {
                (
                    p.clone(),
                    Payload {
                        dtype: *dtype,
                        shape: shape.clone(),
                        data: map[range.clone()].to_vec(),
                    },
                )
            })
            .collect();
        Compressed::from_parts(
            name,
            &Parts {
                encoding: self.encoding.clone(),
                payloads,
            },
        )
    }
}

/// An opened, fully validated compressed-delta file.
pub struct DeltaFile {
    map: memmap2::Mmap,
    header: DeltaFileHeader,
    entries: Vec<Entry>,
    compressed: BTreeMap<String, LazyCompressed>,
    carried: BTreeMap<String, (Dtype, Vec<usize>, Range<usize>)>,
}

impl std::fmt::Debug for DeltaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaFile")
            .field("header", &self.header)
            .field("entries", &self.entries.len())
            .finish()
    }
}

fn meta_err(msg: impl Into<String>) -> QuantError {
    QuantError::Metadata(msg.into())
}

impl DeltaFile {
    /// Opens and validates `path` (see the [module docs](self)). The file is
    /// memory-mapped: do not modify it while the `DeltaFile` lives.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, QuantError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| QuantError::io(path, e))?;
        let len = file.metadata().map_err(|e| QuantError::io(path, e))?.len();
        if len < 8 {
            return Err(safetensors::SafeTensorError::HeaderTooSmall.into());
        }
        // SAFETY: the map is read-only; the caller must not truncate or
        // rewrite the file while it is open (documented above).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| QuantError::io(path, e))?;
        let (n, st_meta) = SafeTensors::read_metadata(&map)?;
        let data_start = 8 + n;

        let md = st_meta
            .metadata()
            .as_ref()
            .ok_or_else(|| meta_err("no __metadata__"))?;
        let get = |k: &str| md.get(k).ok_or_else(|| meta_err(format!("missing `{k}`")));
        if get("format")? != FORMAT {
            return Err(meta_err(format!("`format` is not `{FORMAT}`")));
        }
        let version = get("format_version")?;
        if version != FORMAT_VERSION {
            return Err(QuantError::Version(version.clone()));
        }
        let method = get("method")?.clone();
        let compressor = parse_method(&method)?;
        let params: Params = serde_json::from_str(get("params")?)
            .map_err(|e| meta_err(format!("`params` is not a JSON object: {e}")))?;
        if params != compressor.params() {
            return Err(meta_err(format!("`params` do not match method `{method}`")));
        }
        let seed = match md.get("seed") {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| meta_err(format!("`seed` is not an unsigned integer: `{s}`")))?,
            ),
        };
        let header = DeltaFileHeader {
            method,
            params,
            base_fingerprint: get("base_fingerprint")?.clone(),
            finetuned: md.get("finetuned").cloned(),
            seed,
        };
        let table: Map<String, Value> = serde_json::from_str(get("tensors")?)
            .map_err(|e| meta_err(format!("`tensors` is not a JSON object: {e}")))?;

        let infos = st_meta.tensors();
        let mut used: BTreeSet<String> = BTreeSet::new();
        let mut entries = Vec::with_capacity(table.len());
        let mut compressed = BTreeMap::new();
        let mut carried = BTreeMap::new();
        for (name, e) in &table {
            if name.contains(PAYLOAD_SEP) {
                return Err(meta_err(format!(
                    "tensor name `{name}` contains `{PAYLOAD_SEP}`"
                )));
            }
            let shape: Vec<usize> = e
                .get("shape")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .ok_or_else(|| meta_err(format!("tensor `{name}`: bad `shape`")))?;
            match e.get("kind").and_then(Value::as_str) {
                Some("compressed") => {
                    let encoding = e
                        .get("encoding")
                        .cloned()
                        .ok_or_else(|| meta_err(format!("tensor `{name}`: no `encoding`")))?;
                    let pnames: Vec<String> = e
                        .get("payloads")
                        .and_then(|s| serde_json::from_value(s.clone()).ok())
                        .ok_or_else(|| meta_err(format!("tensor `{name}`: bad `payloads`")))?;
                    let mut payloads = Vec::with_capacity(pnames.len());
                    for p in pnames {
                        let full = format!("{name}{PAYLOAD_SEP}{p}");
                        let info = infos.get(&full).ok_or_else(|| QuantError::MissingPayload {
                            tensor: name.clone(),
                            payload: p.clone(),
                        })?;
                        let (s, t) = info.data_offsets;
                        payloads.push((
                            p,
                            info.dtype,
                            info.shape.clone(),
                            data_start + s..data_start + t,
                        ));
                        used.insert(full);
                    }
                    let lazy = LazyCompressed { encoding, payloads };
                    // Decoded once to validate, then dropped: open holds one
                    // tensor at a time.
                    let c = lazy.decode(name, &map)?;
                    if c.shape().as_slice() != shape.as_slice() {
                        return Err(meta_err(format!(
                            "tensor `{name}`: shape {shape:?} but payloads decode to {:?}",
                            c.shape()
                        )));
                    }
                    let bytes = c.storage_bytes();
                    if e.get("storage_bytes").and_then(Value::as_u64) != Some(bytes) {
                        return Err(meta_err(format!(
                            "tensor `{name}`: `storage_bytes` disagrees with payloads ({bytes})"
                        )));
                    }
                    entries.push(Entry {
                        name: name.clone(),
                        kind: EntryKind::Compressed,
                        shape,
                        storage_bytes: bytes,
                        dtype: None,
                    });
                    drop(c);
                    compressed.insert(name.clone(), lazy);
                }
                Some("carried") => {
                    let info = infos.get(name).ok_or_else(|| QuantError::MissingPayload {
                        tensor: name.clone(),
                        payload: "(carried data)".into(),
                    })?;
                    let dtype_str = e.get("dtype").and_then(Value::as_str).unwrap_or("");
                    if info.dtype.to_string() != dtype_str || info.shape != shape {
                        return Err(meta_err(format!(
                            "tensor `{name}`: metadata says {dtype_str} {shape:?}, container has {} {:?}",
                            info.dtype, info.shape
                        )));
                    }
                    let (s, t) = info.data_offsets;
                    entries.push(Entry {
                        name: name.clone(),
                        kind: EntryKind::Carried,
                        shape: shape.clone(),
                        storage_bytes: (t - s) as u64,
                        dtype: Some(info.dtype),
                    });
                    carried.insert(
                        name.clone(),
                        (info.dtype, shape, data_start + s..data_start + t),
                    );
                    used.insert(name.clone());
                }
                other => return Err(meta_err(format!("tensor `{name}`: unknown kind {other:?}"))),
            }
        }
        if let Some(stray) = infos.keys().find(|k| !used.contains(*k)) {
            return Err(meta_err(format!(
                "container tensor `{stray}` is not described by the metadata"
            )));
        }
        Ok(Self {
            map,
            header,
            entries,
            compressed,
            carried,
        })
    }

    pub fn header(&self) -> &DeltaFileHeader {
        &self.header
    }
    /// Canonical method string.
    pub fn method(&self) -> &str {
        &self.header.method
    }
    pub fn params(&self) -> &Params {
        &self.header.params
    }
    pub fn base_fingerprint(&self) -> &str {
        &self.header.base_fingerprint
    }
    pub fn finetuned(&self) -> Option<&str> {
        self.header.finetuned.as_deref()
    }
    /// The method as a compressor (parsed from the stored method string).
    pub fn compressor(&self) -> Box<dyn Compressor> {
        parse_method(&self.header.method).expect("validated in open")
    }
    /// All tensors, sorted by name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// The compressed delta of `name`, decoded from the memory map.
    ///
    /// Each call decodes anew (copying the tensor's payload bytes; the file
    /// keeps nothing decoded), so callers should hold the value only while
    /// they use it and fetch tensors one at a time. The file was validated
    /// at [`open`](Self::open), so this fails only for an unknown `name`
    /// ([`QuantError::NotFound`]).
    pub fn compressed(&self, name: &str) -> Result<Compressed, QuantError> {
        self.compressed
            .get(name)
            .ok_or_else(|| QuantError::NotFound(name.to_string()))?
            .decode(name, &self.map)
    }
    /// The carried tensor `name`, borrowed from the map.
    pub fn carried(&self, name: &str) -> Result<CarriedTensor<'_>, QuantError> {
        let (dtype, shape, range) = self
            .carried
            .get(name)
            .ok_or_else(|| QuantError::NotFound(name.to_string()))?;
        Ok(CarriedTensor {
            dtype: *dtype,
            shape,
            data: &self.map[range.clone()],
        })
    }
    /// BitDelta-style size accounting of this file (carried tensors at fp16).
    pub fn size_report(&self) -> SizeReport {
        let mut r = SizeReport::default();
        for e in &self.entries {
            let numel: u64 = e.shape.iter().map(|&d| d as u64).product();
            match e.kind {
                EntryKind::Compressed => r.add_compressed(numel, e.storage_bytes),
                EntryKind::Carried => r.add_carried(numel),
            }
        }
        r
    }
}
