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
//! | `format_version` | `2` (version 1, the same layout without checksums, is still read) |
//! | `method` | canonical method string ([`Compressor::spec`]) |
//! | `params` | JSON of [`Compressor::params`] |
//! | `base_fingerprint` | caller's fingerprint of the base checkpoint |
//! | `finetuned` | fine-tuned model identity (optional) |
//! | `base_digest` | whole-content digest of the base, `xxh3-64:…` (optional; checked by apply) |
//! | `finetuned_digest` | whole-content digest of the fine-tune (optional) |
//! | `seed` | seed of the run, decimal (optional; what randomized methods without `seed=` used) |
//! | `tensors` | JSON object: name → entry |
//! | `checksum_algorithm` | `xxh3-64` (version 2) |
//! | `checksums` | JSON object: container tensor name → 16 hex digits of the XXH3-64 of its bytes (version 2) |
//!
//! A compressed entry is `{"kind":"compressed","shape":[r,c],
//! "storage_bytes":N,"encoding":{…},"payloads":["signs","scales"]}` where
//! `encoding` is [`Parts::encoding`]; a carried entry is
//! `{"kind":"carried","dtype":"BF16","shape":[…]}`.
//!
//! # Writing
//!
//! A safetensors header must list every offset before the data, so
//! [`DeltaFileWriter`] streams tensor bytes to a uniquely named temporary
//! file beside `path` (`.<name>.<random>.data.tmp`), and
//! [`DeltaFileWriter::finish`] writes header + data to a second unique
//! temporary, syncs it and renames it to `path`. Two writers aimed at the
//! same `path` never share a temporary, so the result is one writer's file,
//! never a mix. Until `finish` succeeds `path` is not touched; on error or
//! drop the temporary files are removed.
//!
//! Every payload is checked before it is written ([`check_payload_values`]):
//! f32 payloads must be finite and at most [`MAX_PAYLOAD_MAGNITUDE`] in
//! magnitude, quantization steps and singular values non-negative, carried
//! float tensors finite.
//!
//! # Reading
//!
//! [`DeltaFile::open`] memory-maps the file and validates everything before
//! returning: the container (via the `safetensors` crate: truncation, bad
//! JSON, offsets that overlap or leave gaps), the metadata, the method
//! string, every payload's presence, dtype and size, and that no tensor is
//! unaccounted for; every tensor's XXH3-64 checksum (version 2 files,
//! unless [`OpenOptions::verify_checksums`] is off) and the value checks
//! of [`check_payload_values`]. Each compressed tensor is decoded once there to be
//! validated and dropped at once, so opening needs memory for one tensor,
//! not the whole delta; the `DeltaFile` keeps only each payload's name,
//! dtype, shape and byte range in the map. [`DeltaFile::compressed`]
//! decodes a tensor from the map again on every call, and carried tensors
//! are borrowed from the map on request, so a caller that handles one
//! tensor at a time (apply, loading a model with a delta) holds at most a
//! few tensors. Reading back gives bitwise what was written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
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
/// Value of the `format_version` metadata key this build writes.
pub const FORMAT_VERSION: &str = "2";
/// Every `format_version` this build reads: version 1 is version 2 without
/// the `checksums` (files written before checksums were added).
pub const READABLE_VERSIONS: &[&str] = &["1", "2"];
/// Value of the `checksum_algorithm` metadata key.
pub const CHECKSUM_ALGORITHM: &str = "xxh3-64";
/// Largest magnitude a stored f32 payload value (scale, factor, sparse
/// value) may have. A fine-tuning delta is orders of magnitude smaller;
/// the bound keeps every reconstruction (a scale times a code of at most
/// 255, a rank-r sum of factor products) far from f32 overflow, so a
/// corrupted or hostile file cannot decode to Inf or to 1e26-sized weights.
pub const MAX_PAYLOAD_MAGNITUDE: f32 = 1.0e12;
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
    /// Whole-content digest of the base ([`delta_core::Checkpoint::content_digest`]);
    /// `apply` refuses a base whose digest differs. `None` in version-1 files.
    pub base_digest: Option<String>,
    /// Whole-content digest of the fine-tune the delta was taken from, so a
    /// reviewer can tie the file to one exact upload. `None` if not recorded.
    pub finetuned_digest: Option<String>,
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
            base_digest: None,
            finetuned_digest: None,
        }
    }
    /// Records the whole-content digests of the base and the fine-tune.
    pub fn with_digests(mut self, base: impl Into<String>, finetuned: impl Into<String>) -> Self {
        self.base_digest = Some(base.into());
        self.finetuned_digest = Some(finetuned.into());
        self
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
    checksum: u64,
}

/// The checksum stored for a tensor's bytes, as written in `checksums`.
fn checksum_hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Whether payload `payload` holds magnitudes that no writer ever makes
/// negative: Delta-CoMe's quantization steps (`u_scales`, `v_scales`), the
/// ternary `scale`, singular values. BitDelta / multi-mask α (`scales`,
/// `N.scales`) are not among them: scale distillation trains α freely and
/// a negative α is a valid sign flip; they are still bounded and finite.
fn is_scale_payload(payload: &str) -> bool {
    payload.ends_with("_scales")
        || payload == "scale"
        || payload.ends_with(".scale")
        || payload.ends_with("sigma")
}

/// Checks the values of one stored tensor: f32 payloads of compressed
/// tensors finite, within [`MAX_PAYLOAD_MAGNITUDE`] and (for scales)
/// non-negative; carried f32/f16/bf16 tensors finite. `payload` is `None`
/// for a carried tensor. The error names the tensor, the payload and the
/// first bad element.
pub fn check_payload_values(
    tensor: &str,
    payload: Option<&str>,
    dtype: Dtype,
    bytes: &[u8],
) -> Result<(), QuantError> {
    let what = payload.unwrap_or("(carried data)");
    let bad = |i: usize, v: f32, why: &str| {
        Err(QuantError::bad_payload(
            tensor,
            what,
            format!("element {i} is {v:e}: {why}"),
        ))
    };
    // Finiteness: one bit-test pass (the same scan the checkpoint writer
    // uses), for every float type a tensor may be stored in.
    if let Some(dt) = delta_core::DType::from_safetensors(dtype) {
        if let Some((i, v)) = delta_core::dtype::first_non_finite(bytes, dt) {
            return bad(i, v, "not finite");
        }
    } else if dtype == Dtype::F64 {
        for (i, c) in bytes.chunks_exact(8).enumerate() {
            let v = f64::from_le_bytes(c.try_into().expect("8 bytes"));
            if !v.is_finite() {
                return bad(i, v as f32, "not finite");
            }
        }
    }
    // Bounds on f32 payloads of compressed tensors (carried data is only
    // required to be finite).
    if dtype == Dtype::F32 && payload.is_some() {
        let scale = payload.is_some_and(is_scale_payload);
        for (i, c) in bytes.chunks_exact(4).enumerate() {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if v.abs() > MAX_PAYLOAD_MAGNITUDE {
                return bad(
                    i,
                    v,
                    &format!("exceeds the bound {MAX_PAYLOAD_MAGNITUDE:e} on delta payloads"),
                );
            }
            if scale && v < 0.0 {
                return bad(i, v, "a scale must not be negative");
            }
        }
    }
    Ok(())
}

/// How [`DeltaFile::open_with`] validates a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Verify every tensor's checksum (version 2 files). On by default;
    /// turn off only for a file this process just wrote and verified.
    pub verify_checksums: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            verify_checksums: true,
        }
    }
}

/// Writes a compressed-delta file (see the [module docs](self)).
pub struct DeltaFileWriter {
    path: PathBuf,
    /// The tensor bytes, streamed; removed when the writer is dropped.
    data_tmp: tempfile::TempPath,
    data: Option<BufWriter<File>>,
    offset: usize,
    stored: Vec<Stored>,
    entries: Map<String, Value>,
    header: DeltaFileHeader,
}

/// Directory and file name of `path`, for temporaries beside it.
fn parent_and_name(path: &Path) -> Result<(PathBuf, String), QuantError> {
    let name = path
        .file_name()
        .ok_or_else(|| {
            QuantError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// A new uniquely named temporary file beside `path`.
fn temp_beside(path: &Path, suffix: &str) -> Result<tempfile::NamedTempFile, QuantError> {
    let (parent, name) = parent_and_name(path)?;
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(suffix)
        .tempfile_in(&parent)
        .map_err(|e| QuantError::io(&parent, e))
}

impl DeltaFileWriter {
    /// Starts a file at `path` (nothing appears there before `finish`).
    pub fn create(path: impl AsRef<Path>, header: DeltaFileHeader) -> Result<Self, QuantError> {
        let path = path.as_ref().to_path_buf();
        let (f, data_tmp) = temp_beside(&path, ".data.tmp")?.into_parts();
        Ok(Self {
            path,
            data_tmp,
            data: Some(BufWriter::with_capacity(1 << 20, f)),
            offset: 0,
            stored: Vec::new(),
            entries: Map::new(),
            header,
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
            checksum: xxhash_rust::xxh3::xxh3_64(bytes),
        });
        Ok(())
    }

    /// Adds a compressed delta for tensor `name`.
    pub fn add_compressed(&mut self, name: &str, c: &Compressed) -> Result<(), QuantError> {
        self.check_name(name)?;
        let parts = c.to_parts();
        // Refuse values no reader would accept, before anything is written.
        let mut seen = BTreeSet::new();
        for (p, payload) in &parts.payloads {
            if p.is_empty() || p.contains(PAYLOAD_SEP) || !seen.insert(p.as_str()) {
                return Err(QuantError::bad_payload(
                    name,
                    p,
                    format!("payload names must be unique, non-empty and free of `{PAYLOAD_SEP}`"),
                ));
            }
            check_payload_values(name, Some(p), payload.dtype, &payload.data)?;
        }
        if c.has_custom() {
            // A downstream payload: make sure the registered decoder reads
            // back exactly this value, so no unreadable file is written.
            let back = Compressed::from_parts(name, &parts).map_err(|e| match e {
                QuantError::Metadata(m) if m.contains("unknown encoding kind") => {
                    QuantError::Registry {
                        name: c.kind().to_string(),
                        reason: format!(
                            "tensor `{name}`: encoding is not registered, the file could not be read: {m}"
                        ),
                    }
                }
                other => other,
            })?;
            if &back != c || back.storage_bytes() != c.storage_bytes() {
                return Err(QuantError::bad_payload(
                    name,
                    c.kind(),
                    "the registered decoder does not read back the value written",
                ));
            }
        }
        let Parts { encoding, payloads } = parts;
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
        check_payload_values(name, None, dtype, data)?;
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
        if let Some(d) = &h.base_digest {
            meta.insert("base_digest".into(), json!(d));
        }
        if let Some(d) = &h.finetuned_digest {
            meta.insert("finetuned_digest".into(), json!(d));
        }
        meta.insert(
            "tensors".into(),
            json!(serde_json::to_string(&self.entries).expect("JSON")),
        );
        let checksums: Map<String, Value> = self
            .stored
            .iter()
            .map(|s| (s.name.clone(), json!(format!("{:016x}", s.checksum))))
            .collect();
        meta.insert("checksum_algorithm".into(), json!(CHECKSUM_ALGORITHM));
        meta.insert(
            "checksums".into(),
            json!(serde_json::to_string(&checksums).expect("JSON")),
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

        let out_tmp = temp_beside(&self.path, ".tmp")?;
        let out_path = out_tmp.path().to_path_buf();
        let io = |e| QuantError::io(&out_path, e);
        let mut out = BufWriter::with_capacity(1 << 20, out_tmp);
        out.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&header).map_err(io)?;
        let mut data = File::open(&self.data_tmp).map_err(|e| QuantError::io(&self.data_tmp, e))?;
        std::io::copy(&mut data, &mut out).map_err(io)?;
        let out_tmp = out.into_inner().map_err(|e| io(e.into_error()))?;
        out_tmp.as_file().sync_all().map_err(io)?;
        out_tmp
            .persist(&self.path)
            .map_err(|e| QuantError::io(&self.path, e.error))?;
        // `data_tmp` is removed when `self` drops.
        Ok(self.path.clone())
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

/// Checks that `sums` lists exactly the container's tensors and, when
/// `verify`, that each tensor's bytes (in `data`, the byte buffer after the
/// header) hash to its entry.
fn verify_checksums(
    sums: &BTreeMap<String, String>,
    infos: &std::collections::HashMap<String, &safetensors::tensor::TensorInfo>,
    data: &[u8],
    verify: bool,
) -> Result<(), QuantError> {
    if let Some(extra) = sums.keys().find(|k| !infos.contains_key(*k)) {
        return Err(meta_err(format!(
            "`checksums` lists `{extra}`, which the container does not hold"
        )));
    }
    // Sorted, so the first failure reported does not depend on hash order.
    let mut names: Vec<&String> = infos.keys().collect();
    names.sort();
    for name in names {
        let expected = sums
            .get(name)
            .ok_or_else(|| meta_err(format!("`checksums` has no entry for `{name}`")))?;
        if verify {
            let (s, t) = infos[name].data_offsets;
            let got = checksum_hex(&data[s..t]);
            if &got != expected {
                return Err(QuantError::Checksum {
                    tensor: name.clone(),
                    expected: expected.clone(),
                    got,
                });
            }
        }
    }
    Ok(())
}

impl DeltaFile {
    /// Opens and validates `path` (see the [module docs](self)). The file is
    /// memory-mapped: do not modify it while the `DeltaFile` lives.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, QuantError> {
        Self::open_with(path, OpenOptions::default())
    }

    /// [`open`](Self::open) with explicit [`OpenOptions`].
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<Self, QuantError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| QuantError::io(path, e))?;
        let file_meta = file.metadata().map_err(|e| QuantError::io(path, e))?;
        if !file_meta.is_file() {
            // Mapping a directory fails with "No such device"; say what is wrong.
            return Err(QuantError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file (a delta file is one .safetensors file)",
                ),
            ));
        }
        let len = file_meta.len();
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
        if !READABLE_VERSIONS.contains(&version.as_str()) {
            return Err(QuantError::Version(version.clone()));
        }
        let checksums: Option<BTreeMap<String, String>> = if version == "1" {
            None
        } else {
            let algorithm = get("checksum_algorithm")?;
            if algorithm != CHECKSUM_ALGORITHM {
                return Err(meta_err(format!(
                    "`checksum_algorithm` is `{algorithm}`, this build knows `{CHECKSUM_ALGORITHM}`"
                )));
            }
            let sums = serde_json::from_str(get("checksums")?).map_err(|e| {
                meta_err(format!(
                    "`checksums` is not a JSON object of hex strings: {e}"
                ))
            })?;
            Some(sums)
        };
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
            base_digest: md.get("base_digest").cloned(),
            finetuned_digest: md.get("finetuned_digest").cloned(),
        };
        let table: Map<String, Value> = serde_json::from_str(get("tensors")?)
            .map_err(|e| meta_err(format!("`tensors` is not a JSON object: {e}")))?;

        let infos = st_meta.tensors();
        if let Some(sums) = &checksums {
            verify_checksums(sums, &infos, &map[data_start..], options.verify_checksums)?;
        }
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
                        let range = data_start + s..data_start + t;
                        check_payload_values(name, Some(&p), info.dtype, &map[range.clone()])?;
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
                    check_payload_values(
                        name,
                        None,
                        info.dtype,
                        &map[data_start + s..data_start + t],
                    )?;
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
