//! The shared base and the tenants built on it.
//!
//! A [`Base`] is loaded once. A [`Tenant`] is a validated delta file against
//! it: the file's base fingerprint (and whole-content digest, when the file
//! records one) must equal the base's, every compressed entry must name a
//! projection of the base with the same `[out, in]` shape, every carried
//! entry a tensor of the base with the same shape. A tenant holds only what
//! differs from the base: one [`DeltaOp`] per compressed projection (from
//! the compressed payload, see [`super::payload`]) and its carried
//! full-precision tensors (embedding, norms, `lm_head`); every other weight
//! is the base's, never copied. A carried embedding or `lm_head` is kept as
//! the [`ChangedRows`] that differ from the base's when at most half of its
//! rows do: a fine-tune leaves the rows of tokens it never saw unchanged, so
//! a tenant then holds (and a step reads) a few MB instead of the whole
//! `[vocab, hidden]` matrix.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use delta_core::Checkpoint;
use delta_quant::{DeltaFile, EntryKind};
use llama_model::rope::RotaryEmbedding;
use llama_model::{ChatTemplate, LinearWeight, Llama, LlamaConfig, Tokenizer};

use super::payload::DeltaOp;
use super::ServeError;

/// Longest tenant name accepted (it appears in URLs, JSON and metric labels).
pub const MAX_TENANT_NAME: usize = 64;

/// The base model every tenant shares.
pub struct Base<B: Backend> {
    /// The model name clients use for the base itself.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The weights.
    pub model: Llama<B>,
    /// Rotary tables (the model keeps its own private).
    pub rope: RotaryEmbedding,
    /// Tokenizer.
    pub tokenizer: Tokenizer,
    /// The checkpoint's chat template (ChatML when it has none).
    pub chat_template: ChatTemplate,
    /// [`Checkpoint::fingerprint`].
    pub fingerprint: String,
    /// [`Checkpoint::content_digest`].
    pub digest: String,
    /// f32 bytes of the loaded weights.
    pub resident_bytes: u64,
    /// `lm_head`, or the tied embedding transposed, as a dense `[hidden, vocab]` weight.
    pub head: LinearWeight<B>,
}

impl<B: Backend> Base<B> {
    /// Loads a Hugging Face directory as the base; `name` defaults to the
    /// directory's file name.
    pub fn load(dir: &Path, name: Option<String>, device: &B::Device) -> Result<Self, ServeError> {
        let ck = Checkpoint::open(dir).map_err(|e| ServeError::Base(e.to_string()))?;
        let config_origin = dir.join("config.json").display().to_string();
        let config = LlamaConfig::from_json(ck.config_json(), &config_origin)
            .map_err(|e| ServeError::Base(e.to_string()))?;
        let model = Llama::from_tensors(config.clone(), &ck, device)
            .map_err(|e| ServeError::Base(e.to_string()))?;
        let tokenizer = Tokenizer::from_dir(dir).map_err(|e| ServeError::Base(e.to_string()))?;
        let chat_template = ChatTemplate::from_dir(dir)
            .map_err(|e| ServeError::Base(e.to_string()))?
            .unwrap_or_else(ChatTemplate::chatml);
        let resident_bytes = 4 * ck
            .infos()
            .map(|i| i.shape.iter().product::<usize>() as u64)
            .sum::<u64>();
        let name = name.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "base".into())
        });
        check_name(&name)?;
        let head = match &model.lm_head {
            Some(LinearWeight::Dense(w)) => LinearWeight::Dense(w.clone()),
            Some(other) => LinearWeight::Dense(Param::from_tensor(other.dense())),
            None => LinearWeight::Dense(Param::from_tensor(model.embed_tokens.val().transpose())),
        };
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            rope: RotaryEmbedding::new(&config),
            model,
            tokenizer,
            chat_template,
            fingerprint: ck.fingerprint().to_string(),
            digest: ck.content_digest().to_string(),
            resident_bytes,
            head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        self.model.config()
    }
}

/// Checks a tenant or base name: 1..=64 characters of `[A-Za-z0-9._:-]`.
pub fn check_name(name: &str) -> Result<(), ServeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TENANT_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ServeError::BadName(name.to_string()))
    }
}

/// How a tenant changes one projection.
#[derive(Debug)]
pub enum TenantLinear<B: Backend> {
    /// The base projection plus a compressed delta term.
    Delta(DeltaOp<B>),
    /// A full-precision weight carried by the delta file (replaces the base's).
    Replace(Box<LinearWeight<B>>),
}

/// What `GET /v1/models` and the metrics say about a tenant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantInfo {
    /// Model name clients use.
    pub name: String,
    /// Canonical method string of the delta file.
    pub method: String,
    /// The delta file.
    pub file: PathBuf,
    /// Its size on disk.
    pub file_bytes: u64,
    /// BitDelta-style compression ratio of the file (fp16 delta / stored).
    pub compression_ratio: f64,
    /// Bytes the tenant holds in memory beyond the shared base: compressed
    /// deltas (as held by their operators) plus carried tensors in f32.
    pub resident_bytes: u64,
    /// How many projections run in each form (`packed-signs`, `low-rank`,
    /// `sparse`, `dense-reconstructed`, `replaced`).
    pub forms: BTreeMap<String, usize>,
}

/// One tenant: a validated delta on the shared base.
#[derive(Debug)]
pub struct Tenant<B: Backend> {
    /// Its description.
    pub info: TenantInfo,
    /// Projections that differ from the base, by HF weight name (`lm_head.weight` included).
    pub linears: HashMap<String, TenantLinear<B>>,
    /// A carried embedding.
    pub embed: Option<TenantEmbed<B>>,
    /// Carried norm weights by HF name.
    pub norms: HashMap<String, Tensor<B, 1>>,
    /// The head when the tenant's differs from the base's: a carried
    /// `lm_head`, or a carried embedding of a tied model.
    pub head: Option<TenantHead<B>>,
}

/// A tenant's carried embedding.
#[derive(Debug, Clone)]
pub enum TenantEmbed<B: Backend> {
    /// The whole `[vocab, hidden]` matrix.
    Full(Tensor<B, 2>),
    /// Only the rows that differ from the base's.
    Rows(Box<ChangedRows<B>>),
}

/// A tenant's own head (carried `lm_head`, or the carried embedding of a tied model).
#[derive(Debug, Clone)]
pub enum TenantHead<B: Backend> {
    /// The whole `[hidden, vocab]` weight.
    Full(LinearWeight<B>),
    /// Only the vocabulary rows that differ from the base's.
    Rows(ChangedRows<B>),
}

/// The rows of a tenant's `[vocab, hidden]` matrix that differ from the base's.
#[derive(Debug, Clone)]
pub struct ChangedRows<B: Backend> {
    /// Changed row numbers (token ids), ascending.
    pub rows: Vec<u32>,
    /// Token id → position in `rows` / `values`.
    pub index: HashMap<u32, usize>,
    /// The tenant's values of those rows, `[rows.len(), hidden]`.
    pub values: Tensor<B, 2>,
    /// `valuesᵀ` as a head weight `[hidden, rows.len()]` (a view of `values`).
    pub head: LinearWeight<B>,
}

impl<B: Backend> ChangedRows<B> {
    /// The rows of `tenant` (`[vocab, hidden]` row-major) that differ from
    /// `base`'s, or `None` when more than half of them do (then the whole
    /// matrix is cheaper).
    fn diff(tenant: &[f32], base: &[f32], hidden: usize, device: &B::Device) -> Option<Self> {
        let rows: Vec<u32> = tenant
            .chunks_exact(hidden)
            .zip(base.chunks_exact(hidden))
            .enumerate()
            .filter(|(_, (t, b))| t.iter().zip(*b).any(|(x, y)| x.to_bits() != y.to_bits()))
            .map(|(i, _)| i as u32)
            .collect();
        if 2 * rows.len() > tenant.len() / hidden.max(1) {
            return None;
        }
        let mut values = Vec::with_capacity(rows.len() * hidden);
        for &r in &rows {
            let r = r as usize;
            values.extend_from_slice(&tenant[r * hidden..(r + 1) * hidden]);
        }
        let values =
            Tensor::<B, 2>::from_data(TensorData::new(values, [rows.len(), hidden]), device);
        let index = rows.iter().enumerate().map(|(i, &r)| (r, i)).collect();
        Some(Self {
            head: LinearWeight::Dense(Param::from_tensor(values.clone().transpose())),
            rows,
            index,
            values,
        })
    }

    /// Bytes held: the values and the row numbers.
    fn resident_bytes(&self) -> u64 {
        let [k, h] = self.values.dims();
        4 * (k * h + k) as u64
    }
}

/// The f32 values of a weight of the base, HF layout.
fn host_values<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap_or_default()
}

impl<B: Backend> Tenant<B> {
    /// Opens and validates `file` against `base`.
    pub fn load(name: &str, file: &Path, base: &Base<B>) -> Result<Self, ServeError> {
        check_name(name)?;
        if name == base.name {
            return Err(ServeError::Tenant {
                file: file.to_path_buf(),
                reason: format!("`{name}` is the base model's name"),
            });
        }
        let bad = |reason: String| ServeError::Tenant {
            file: file.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(file).map_err(|e| bad(format!("cannot read it: {e}")))?;
        if meta.is_dir() {
            return Err(bad("it is a directory, not a delta file".into()));
        }
        let delta = DeltaFile::open(file).map_err(|e| bad(e.to_string()))?;
        if delta.base_fingerprint() != base.fingerprint {
            return Err(bad(format!(
                "made against a different base (fingerprint {}); {} has fingerprint {}",
                delta.base_fingerprint(),
                base.dir.display(),
                base.fingerprint
            )));
        }
        if let Some(d) = &delta.header().base_digest {
            if *d != base.digest {
                return Err(bad(format!(
                    "made against a different base (content digest {d}); {} has {}",
                    base.dir.display(),
                    base.digest
                )));
            }
        }
        let device = base.model.device();
        let config = base.config();
        let mut linears = HashMap::new();
        let mut norms = HashMap::new();
        let mut embed = None;
        let mut head = None;
        let mut forms: BTreeMap<String, usize> = BTreeMap::new();
        let mut resident_bytes = 0u64;
        for entry in delta.entries() {
            let name = entry.name.as_str();
            let base_linear = base.model.linear(name);
            match entry.kind {
                EntryKind::Compressed => {
                    let Some(w) = base_linear else {
                        return Err(bad(format!(
                            "compressed tensor `{name}` is not a projection of the base"
                        )));
                    };
                    let [in_f, out_f] = w.dims();
                    let c = delta.compressed(name).map_err(|e| bad(e.to_string()))?;
                    if c.shape() != [out_f, in_f] {
                        return Err(bad(format!(
                            "tensor `{name}`: delta shape {:?}, the base's is [{out_f}, {in_f}]",
                            c.shape()
                        )));
                    }
                    let op = DeltaOp::from_compressed(c, &device);
                    resident_bytes += op.resident_bytes();
                    *forms.entry(op.form().to_string()).or_default() += 1;
                    linears.insert(name.to_string(), TenantLinear::Delta(op));
                }
                EntryKind::Carried => {
                    let expected = base.model_shape(name).ok_or_else(|| {
                        bad(format!(
                            "carried tensor `{name}` is not a tensor of the base"
                        ))
                    })?;
                    if entry.shape != expected {
                        return Err(bad(format!(
                            "carried tensor `{name}`: shape {:?}, the base's is {expected:?}",
                            entry.shape
                        )));
                    }
                    let t = delta.carried(name).map_err(|e| bad(e.to_string()))?;
                    let dtype = delta_core::DType::from_safetensors(t.dtype).ok_or_else(|| {
                        bad(format!(
                            "carried tensor `{name}`: unsupported dtype {:?}",
                            t.dtype
                        ))
                    })?;
                    let values = delta_core::dtype::decode(t.data, dtype);
                    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                        return Err(bad(format!(
                            "carried tensor `{name}`: element {i} is {}",
                            values[i]
                        )));
                    }
                    let vocab_rows = |base_hf: Tensor<B, 2>| {
                        let hidden = expected[1];
                        ChangedRows::diff(&values, &host_values(base_hf), hidden, &device)
                    };
                    if name == "lm_head.weight" || name == "model.embed_tokens.weight" {
                        let base_hf = if name == "lm_head.weight" {
                            base.head.dense().transpose()
                        } else {
                            base.model.embed_tokens.val()
                        };
                        if let Some(rows) = vocab_rows(base_hf) {
                            resident_bytes += rows.resident_bytes();
                            *forms.entry("changed-rows".to_string()).or_default() += 1;
                            if name == "lm_head.weight" {
                                head = Some(TenantHead::Rows(rows));
                            } else {
                                embed = Some(TenantEmbed::Rows(Box::new(rows)));
                            }
                            continue;
                        }
                    }
                    resident_bytes += 4 * values.len() as u64;
                    *forms.entry("carried".to_string()).or_default() += 1;
                    if name == "lm_head.weight" {
                        let [out_f, in_f] = [expected[0], expected[1]];
                        let w = LinearWeight::from_hf(&values, out_f, in_f, &device);
                        head = Some(TenantHead::Full(w));
                    } else if base_linear.is_some() {
                        let [out_f, in_f] = [expected[0], expected[1]];
                        linears.insert(
                            name.to_string(),
                            TenantLinear::Replace(Box::new(LinearWeight::from_hf(
                                &values, out_f, in_f, &device,
                            ))),
                        );
                    } else if name == "model.embed_tokens.weight" {
                        embed = Some(TenantEmbed::Full(Tensor::<B, 2>::from_data(
                            TensorData::new(values, expected.clone()),
                            &device,
                        )));
                    } else {
                        // The remaining tensors of a Llama are its norms.
                        let n = expected[0];
                        norms.insert(
                            name.to_string(),
                            Tensor::<B, 1>::from_data(TensorData::new(values, [n]), &device),
                        );
                    }
                }
            }
        }
        // A tied model's head is its embedding.
        if head.is_none() && config.tie_word_embeddings {
            head = match &embed {
                Some(TenantEmbed::Full(e)) => Some(TenantHead::Full(LinearWeight::Dense(
                    Param::from_tensor(e.clone().transpose()),
                ))),
                Some(TenantEmbed::Rows(r)) => Some(TenantHead::Rows((**r).clone())),
                None => None,
            };
        }
        let report = delta.size_report();
        Ok(Self {
            info: TenantInfo {
                name: name.to_string(),
                method: delta.method().to_string(),
                file: file.to_path_buf(),
                file_bytes: meta.len(),
                compression_ratio: report.ratio(),
                resident_bytes,
                forms,
            },
            linears,
            embed,
            norms,
            head,
        })
    }
}

impl<B: Backend> Base<B> {
    /// The HF shape of a weight of the base, `None` if it has no such tensor.
    pub fn model_shape(&self, name: &str) -> Option<Vec<usize>> {
        llama_model::load::expected_shapes(self.config())
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }
}
