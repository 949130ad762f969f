//! BitDelta scale distillation ("healing").
//!
//! BitDelta (Liu et al. 2024, "BitDelta: Your Fine-Tune May Only Be Worth One
//! Bit", arXiv 2402.10193) compresses each projection's fine-tuning delta to
//! `α·sign(Δ)` with `α = mean|Δ|`, which is the best 1-bit fit of the
//! *weights*. It then trains the scales with the signs frozen so that the
//! compressed model's *outputs* match the fine-tune's: the loss is the mean
//! squared error between the full-vocabulary logits of the fine-tuned model
//! (the teacher) and of the compressed model (the student) on calibration
//! text. The authors used AdamW at lr 1e-4 with a cosine schedule, 200 steps
//! of batch 4 at length 128 (their `scripts/train_example.bash` and
//! `bitdelta/train.py`; C4 as calibration text) — the defaults of
//! [`HealConfig`].
//!
//! This module does the same on Burn autodiff for every BitDelta or
//! multi-mask BitDelta tensor of a delta-quant [`DeltaFile`]:
//!
//! 1. [`BaseAndDelta::build`]: the student — the base model with every
//!    compressed tensor run as `W_base + Σ_k α_k ⊙ S_k`
//!    ([`crate::SignDelta`]: signs constant, scales `Param`s) and every
//!    carried tensor (embeddings, norms, lm_head: the fine-tune's own,
//!    stored in the delta file) as a dense weight. This is exactly the model
//!    `deltaguard apply` would rebuild from the same base and file.
//! 2. [`heal`]: AdamW on the MSE between teacher and student logits, batches
//!    of [`Calibration`] windows drawn with a seeded ChaCha generator, the
//!    rate from [`LrSchedule`], progress through a [`HealObserver`], and a
//!    stop flag checked between steps.
//! 3. [`write_healed`]: the healed delta in delta-quant's file format — same
//!    method and metadata, same signs, new scales (and, in
//!    [`HealMode::ScalesAndCarried`], the trained carried tensors), written
//!    atomically.
//!
//! [`heal_delta_file`] runs all three; [`delta_logit_mse`] measures the
//! held-out logit MSE of a base + delta file against the teacher, for
//! reports.
//!
//! # Two modes
//!
//! * [`HealMode::Scales`] trains only the scales `α` — what the BitDelta
//!   paper describes ("we freeze the signs and train the scales").
//! * [`HealMode::ScalesAndCarried`] also trains the tensors the delta file
//!   carries uncompressed. This is what BitDelta's public code ends up doing:
//!   `train.py` builds the student from a full copy of the fine-tuned model,
//!   replaces only the `*proj` linears by `BinaryDiff` modules (whose base is
//!   a buffer), and hands `finetuned_compressed_model.parameters()` — every
//!   parameter that still requires grad, i.e. embeddings, norms and lm_head
//!   too — to `torch.optim.AdamW`; `save_diff` then saves every
//!   `requires_grad` parameter next to the masks and scales.
//!
//! Freezing uses Burn's require-grad flags ([`Module::no_grad`], then
//! [`Param::set_require_grad`] on the trainable parameters), and the
//! optimizer only ever receives the gradients of the trainable parameter
//! ids, so a frozen tensor is never updated: in `Scales` mode the base and
//! carried tensors stay bit-identical.
//!
//! PyTorch's `AdamW` defaults differ slightly from what we default to: its
//! weight decay is 0.01 (BitDelta keeps it) and ours is 0
//! ([`HealConfig::weight_decay`]; over 200 steps at lr 1e-4 the difference
//! is a factor `1 − 2·10⁻⁴` on the trained values); ε is 1e-8 in both.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use delta_quant::{
    BitDelta, Compressed, DeltaFile, DeltaFileWriter, EntryKind, Payload, QuantError,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::chat::ChatTemplate;
use crate::config::LlamaConfig;
use crate::error::{LoadError, TokenizerError};
use crate::load::{projection_names, TensorSource};
use crate::model::{LinearWeight, Llama};
use crate::tokenizer::Tokenizer;
use crate::train::{LrSchedule, ScheduleKind};

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// What healing trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealMode {
    /// Only the scales of the sign masks (the BitDelta paper).
    #[default]
    Scales,
    /// The scales and every tensor the delta file carries uncompressed
    /// (BitDelta's public code, whose optimizer gets every parameter that
    /// requires grad). See the [module docs](self).
    ScalesAndCarried,
}

impl std::str::FromStr for HealMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "scales" => Ok(Self::Scales),
            "scales-and-carried" => Ok(Self::ScalesAndCarried),
            other => Err(format!(
                "unknown heal mode '{other}' (expected scales or scales-and-carried)"
            )),
        }
    }
}

impl std::fmt::Display for HealMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Scales => "scales",
            Self::ScalesAndCarried => "scales-and-carried",
        })
    }
}

/// Knobs of [`heal`]. The defaults are the BitDelta authors' (see the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct HealConfig {
    /// Optimizer steps (200).
    pub steps: usize,
    /// Windows per step (4).
    pub batch_size: usize,
    /// Tokens per window (128); used when reading calibration text.
    pub seq_len: usize,
    /// Peak learning rate (1e-4).
    pub lr: f64,
    /// Decay after warm-up (cosine, as `CosineAnnealingLR` in BitDelta).
    pub schedule: ScheduleKind,
    /// Steps of linear warm-up (0).
    pub warmup: usize,
    /// AdamW's decoupled weight decay (0; PyTorch's default is 0.01).
    pub weight_decay: f64,
    /// Seed of the batch order.
    pub seed: u64,
    /// What is trained.
    pub mode: HealMode,
}

impl Default for HealConfig {
    fn default() -> Self {
        Self {
            steps: 200,
            batch_size: 4,
            seq_len: 128,
            lr: 1e-4,
            schedule: ScheduleKind::Cosine,
            warmup: 0,
            weight_decay: 0.0,
            seed: 0,
            mode: HealMode::Scales,
        }
    }
}

impl HealConfig {
    /// The learning-rate schedule over [`Self::steps`].
    pub fn lr_schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            kind: self.schedule,
            warmup_steps: self.warmup,
            total_steps: self.steps,
        }
    }

    fn validate(&self) -> Result<(), HealError> {
        let bad = |m: String| Err(HealError::BadConfig(m));
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if self.seq_len == 0 {
            return bad("sequence length must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "learning rate must be positive and finite, got {}",
                self.lr
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay must be >= 0 and finite, got {}",
                self.weight_decay
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Errors of healing.
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    /// The delta file was made against another base checkpoint.
    #[error("the delta was made against a different base (fingerprint {expected}); the base given has fingerprint {got}")]
    WrongBase {
        /// Fingerprint recorded in the delta file.
        expected: String,
        /// Fingerprint of the base given.
        got: String,
    },
    /// A compressed tensor that is not BitDelta / multi-mask BitDelta.
    #[error("tensor `{tensor}` is compressed with `{method}` (encoding `{encoding}`); only bitdelta and multimask deltas have scales to heal")]
    UnsupportedMethod {
        /// Tensor name.
        tensor: String,
        /// The delta file's method string.
        method: String,
        /// The tensor's encoding kind.
        encoding: String,
    },
    /// A compressed tensor that is not one of the model's projections.
    #[error("compressed tensor `{tensor}` is not a linear projection of the model")]
    NotALinear {
        /// Tensor name.
        tensor: String,
    },
    /// A compressed tensor whose shape differs from the model's.
    #[error("tensor `{tensor}`: the delta is {delta:?} ([out, in]), the model's weight {model:?}")]
    ShapeMismatch {
        /// Tensor name.
        tensor: String,
        /// `[rows, cols]` of the delta.
        delta: [usize; 2],
        /// `[out, in]` of the model's weight.
        model: [usize; 2],
    },
    /// Teacher and student disagree on the model's shape.
    #[error("teacher and student differ: {0}")]
    ModelMismatch(String),
    /// Building the student failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Reading or writing delta-quant data failed.
    #[error("tensor `{tensor}`: {source}")]
    Quant {
        /// Tensor name (or the output file).
        tensor: String,
        /// What went wrong.
        #[source]
        source: Box<QuantError>,
    },
    /// Writing the healed delta file failed (nothing is left at `path`).
    #[error("{path}: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<QuantError>,
    },
    /// The calibration file is unreadable or malformed.
    #[error("{path}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Calibration {
        /// The file.
        path: PathBuf,
        /// 1-based line, for JSONL.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// Too little calibration text.
    #[error("{what}: {tokens} tokens make no window of {seq_len} tokens; give more text or a shorter sequence length")]
    NotEnoughData {
        /// Where the text came from.
        what: String,
        /// Tokens read.
        tokens: usize,
        /// Window length asked for.
        seq_len: usize,
    },
    /// A calibration token the model has no embedding for.
    #[error(
        "calibration window {window} holds token {token}, the model's vocabulary has {vocab_size}"
    )]
    TokenOutOfRange {
        /// Window index.
        window: usize,
        /// The token id.
        token: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// Tokenizing or chat-templating calibration text failed.
    #[error("{path}: {source}")]
    Tokenizer {
        /// The calibration file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: TokenizerError,
    },
    /// A setting of [`HealConfig`] is out of range.
    #[error("invalid heal setting: {0}")]
    BadConfig(String),
    /// The loss became NaN or infinite.
    #[error("the loss is not finite ({loss}) at step {step}; lower the learning rate")]
    NonFinite {
        /// 1-based step.
        step: usize,
        /// The loss value.
        loss: f64,
    },
    /// The stop flag was raised; nothing was written.
    #[error("interrupted after {done} of {total} steps; nothing was written")]
    Interrupted {
        /// Steps finished.
        done: usize,
        /// Steps asked for.
        total: usize,
    },
}

fn quant_err(tensor: &str) -> impl FnOnce(QuantError) -> HealError + '_ {
    move |source| HealError::Quant {
        tensor: tensor.to_string(),
        source: Box::new(source),
    }
}

// ---------------------------------------------------------------------------
// The student
// ---------------------------------------------------------------------------

/// A base checkpoint and a delta file made against it: what the student is
/// built from.
pub struct BaseAndDelta<'a, S: TensorSource + ?Sized> {
    /// Configuration of the base model.
    pub config: LlamaConfig,
    /// The base's tensors (HF names and layout).
    pub base: &'a S,
    /// Fingerprint of the base (delta-core's `Checkpoint::fingerprint`),
    /// compared with the one the delta file records.
    pub base_fingerprint: &'a str,
    /// The compressed delta.
    pub delta: &'a DeltaFile,
}

/// Tensors of the student: the base's for compressed entries (the delta is
/// added as sign masks afterwards), the delta file's for carried ones.
struct StudentSource<'a, S: TensorSource + ?Sized> {
    base: &'a S,
    delta: &'a DeltaFile,
}

impl<S: TensorSource + ?Sized> TensorSource for StudentSource<'_, S> {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        match self.delta.entries().iter().find(|e| e.name == name) {
            Some(e) => Some(e.shape.clone()),
            None => self.base.shape(name),
        }
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let delta_err = |reason: String| LoadError::Delta {
            name: name.to_string(),
            reason,
        };
        match self.delta.entries().iter().find(|e| e.name == name) {
            None => Err(delta_err(
                "not in the delta file (a delta from `deltaguard compress` holds every tensor of the model)"
                    .into(),
            )),
            Some(e) if e.kind == EntryKind::Compressed => self.base.read_f32(name),
            Some(_) => {
                let t = self
                    .delta
                    .carried(name)
                    .map_err(|e| delta_err(e.to_string()))?;
                let dtype = delta_core::DType::from_safetensors(t.dtype)
                    .ok_or_else(|| delta_err(format!("unsupported carried dtype {:?}", t.dtype)))?;
                Ok(delta_core::dtype::decode(t.data, dtype))
            }
        }
    }
}

/// One sign mask in HF layout: `(±1 signs [out·in], scales)`.
type HfMask = (Vec<f32>, Vec<f32>);

/// The masks of a BitDelta / multi-mask tensor, refusing other encodings.
fn sign_masks(name: &str, method: &str, c: &Compressed) -> Result<Vec<HfMask>, HealError> {
    let unpack = |s: &delta_quant::SignScales| -> HfMask {
        let signs = s
            .signs()
            .unpack()
            .into_iter()
            .map(|b| if b == 1 { 1.0 } else { -1.0 })
            .collect();
        (signs, s.scales().to_vec())
    };
    match c {
        Compressed::BitDelta(s) => Ok(vec![unpack(s)]),
        Compressed::MultiMask(m) => Ok(m.masks().iter().map(unpack).collect()),
        other => Err(HealError::UnsupportedMethod {
            tensor: name.to_string(),
            method: method.to_string(),
            encoding: other.kind().to_string(),
        }),
    }
}

impl<S: TensorSource + ?Sized> BaseAndDelta<'_, S> {
    /// Checks the fingerprint and that every compressed tensor is BitDelta
    /// or multi-mask BitDelta.
    pub fn check(&self) -> Result<(), HealError> {
        if self.delta.base_fingerprint() != self.base_fingerprint {
            return Err(HealError::WrongBase {
                expected: self.delta.base_fingerprint().to_string(),
                got: self.base_fingerprint.to_string(),
            });
        }
        for e in self.delta.entries() {
            if e.kind == EntryKind::Compressed {
                let c = self.delta.compressed(&e.name).map_err(quant_err(&e.name))?;
                if !matches!(c, Compressed::BitDelta(_) | Compressed::MultiMask(_)) {
                    return Err(HealError::UnsupportedMethod {
                        tensor: e.name.clone(),
                        method: self.delta.method().to_string(),
                        encoding: c.kind().to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The student on `device`: compressed tensors as
    /// [`LinearWeight::SignDelta`] over the base weight, carried tensors from
    /// the delta file as dense weights. Its logits equal those of the model
    /// `deltaguard apply` writes (up to float rounding).
    pub fn build<B: Backend>(&self, device: &B::Device) -> Result<Llama<B>, HealError> {
        self.check()?;
        let src = StudentSource {
            base: self.base,
            delta: self.delta,
        };
        let mut model = Llama::<B>::from_tensors(self.config.clone(), &src, device)?;
        for e in self.delta.entries() {
            if e.kind != EntryKind::Compressed {
                continue;
            }
            let name = e.name.as_str();
            let c = self.delta.compressed(name).map_err(quant_err(name))?;
            let masks = sign_masks(name, self.delta.method(), &c)?;
            let [in_f, out_f] = match model.linear(name) {
                Some(LinearWeight::Dense(w)) => w.val().dims(),
                _ => {
                    return Err(HealError::NotALinear {
                        tensor: name.to_string(),
                    })
                }
            };
            if c.shape() != [out_f, in_f] {
                return Err(HealError::ShapeMismatch {
                    tensor: name.to_string(),
                    delta: c.shape(),
                    model: [out_f, in_f],
                });
            }
            let refs: Vec<(&[f32], &[f32])> = masks
                .iter()
                .map(|(s, a)| (s.as_slice(), a.as_slice()))
                .collect();
            model.map_linear(name, |w| w.with_sign_masks(&refs));
        }
        Ok(model)
    }
}

// ---------------------------------------------------------------------------
// Calibration data
// ---------------------------------------------------------------------------

/// Calibration text as token windows of one length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calibration {
    seq_len: usize,
    windows: Vec<Vec<u32>>,
}

impl Calibration {
    /// Windows given directly (all of the same, non-zero length).
    pub fn from_windows(windows: Vec<Vec<u32>>) -> Result<Self, HealError> {
        let seq_len = windows.first().map_or(0, Vec::len);
        if seq_len == 0 {
            return Err(HealError::BadConfig(
                "calibration needs at least one non-empty window".into(),
            ));
        }
        if let Some(i) = windows.iter().position(|w| w.len() != seq_len) {
            return Err(HealError::BadConfig(format!(
                "calibration window {i} has {} tokens, window 0 has {seq_len}",
                windows[i].len()
            )));
        }
        Ok(Self { seq_len, windows })
    }

    /// Concatenates token streams (documents) and cuts them into
    /// non-overlapping windows of `seq_len`, dropping the incomplete tail.
    /// `what` names the source in errors.
    pub fn from_token_streams(
        streams: impl IntoIterator<Item = Vec<u32>>,
        seq_len: usize,
        what: &str,
    ) -> Result<Self, HealError> {
        if seq_len == 0 {
            return Err(HealError::BadConfig(
                "sequence length must be at least 1".into(),
            ));
        }
        let all: Vec<u32> = streams.into_iter().flatten().collect();
        if all.len() < seq_len {
            return Err(HealError::NotEnoughData {
                what: what.to_string(),
                tokens: all.len(),
                seq_len,
            });
        }
        let windows = all.chunks_exact(seq_len).map(<[u32]>::to_vec).collect();
        Ok(Self { seq_len, windows })
    }

    /// Reads calibration text from `path`:
    ///
    /// * `.jsonl` / `.json`: one JSON object per line (blank lines skipped),
    ///   with a `text` string (tokenized with the tokenizer's special tokens,
    ///   e.g. BOS, then EOS appended), or chat `messages` (rendered with
    ///   `template`, which writes its own special tokens);
    /// * anything else: plain UTF-8 text, one document.
    ///
    /// The documents are then cut into `seq_len` windows
    /// ([`Self::from_token_streams`]).
    pub fn from_file(
        path: &Path,
        tokenizer: &Tokenizer,
        template: &ChatTemplate,
        seq_len: usize,
    ) -> Result<Self, HealError> {
        let err = |line: Option<usize>, reason: String| HealError::Calibration {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(None, e.to_string()))?;
        let tok_err = |source| HealError::Tokenizer {
            path: path.to_path_buf(),
            source,
        };
        let jsonl = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"));
        let mut streams = Vec::new();
        if !jsonl {
            streams.push(tokenizer.encode(&text, true).map_err(tok_err)?);
        } else {
            for (i, line) in text.lines().enumerate() {
                let line_no = Some(i + 1);
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value =
                    serde_json::from_str(line).map_err(|e| err(line_no, e.to_string()))?;
                if let Some(t) = v.get("text") {
                    let t = t
                        .as_str()
                        .ok_or_else(|| err(line_no, "`text` is not a string".into()))?;
                    let mut ids = tokenizer.encode(t, true).map_err(tok_err)?;
                    ids.extend(tokenizer.eos_id());
                    streams.push(ids);
                } else if let Some(m) = v.get("messages") {
                    if !m.is_array() {
                        return Err(err(line_no, "`messages` is not an array".into()));
                    }
                    let rendered = template
                        .render_json(m, false, &Value::Null)
                        .map_err(|e| err(line_no, e.to_string()))?;
                    streams.push(tokenizer.encode(&rendered, false).map_err(tok_err)?);
                } else {
                    return Err(err(
                        line_no,
                        "expected an object with `text` or `messages`".into(),
                    ));
                }
            }
        }
        Self::from_token_streams(streams, seq_len, &path.display().to_string())
    }

    /// Tokens per window.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The windows.
    pub fn windows(&self) -> &[Vec<u32>] {
        &self.windows
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether there are no windows (never true for a built value).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Splits off `holdout` windows, chosen by a seeded shuffle, for
    /// evaluation: returns `(train, held_out)`. Both must stay non-empty.
    pub fn split_holdout(self, holdout: usize, seed: u64) -> Result<(Self, Self), HealError> {
        let n = self.windows.len();
        if holdout == 0 || holdout >= n {
            return Err(HealError::BadConfig(format!(
                "cannot hold out {holdout} of {n} calibration windows (need 1 ..= {})",
                n.saturating_sub(1)
            )));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x0068_6f6c_646f_7574));
        let (held, train) = order.split_at(holdout);
        let mut held = held.to_vec();
        let mut train = train.to_vec();
        held.sort_unstable();
        train.sort_unstable();
        let pick = |idx: &[usize]| Self {
            seq_len: self.seq_len,
            windows: idx.iter().map(|&i| self.windows[i].clone()).collect(),
        };
        Ok((pick(&train), pick(&held)))
    }

    fn check_vocab(&self, vocab_size: usize) -> Result<(), HealError> {
        for (window, w) in self.windows.iter().enumerate() {
            if let Some(&token) = w.iter().find(|&&t| t as usize >= vocab_size) {
                return Err(HealError::TokenOutOfRange {
                    window,
                    token,
                    vocab_size,
                });
            }
        }
        Ok(())
    }

    fn batch_tensor<B: Backend>(&self, idx: &[usize], device: &B::Device) -> Tensor<B, 2, Int> {
        let flat: Vec<i64> = idx
            .iter()
            .flat_map(|&i| self.windows[i].iter().map(|&t| t as i64))
            .collect();
        Tensor::from_data(TensorData::new(flat, [idx.len(), self.seq_len]), device)
    }
}

/// Seeded batch order: shuffled passes over the windows, a batch may span
/// two passes (so every batch is full even with fewer windows than its size).
struct BatchSampler {
    rng: ChaCha8Rng,
    order: Vec<usize>,
    pos: usize,
}

impl BatchSampler {
    fn new(n: usize, seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            order: (0..n).collect(),
            pos: n,
        }
    }

    fn next_batch(&mut self, size: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            if self.pos == self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.pos = 0;
            }
            out.push(self.order[self.pos]);
            self.pos += 1;
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------

/// One finished optimizer step, for progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealStep {
    /// Steps done so far, this one included (1-based).
    pub step: usize,
    /// Steps in the run.
    pub total: usize,
    /// Logit MSE of this step's batch (before the update).
    pub loss: f64,
    /// Learning rate used by this step.
    pub lr: f64,
}

/// Receives progress from [`heal`]. Any `FnMut(&HealStep)` is one.
pub trait HealObserver {
    /// Called after every optimizer step.
    fn on_step(&mut self, step: &HealStep);
}

impl<F: FnMut(&HealStep)> HealObserver for F {
    fn on_step(&mut self, step: &HealStep) {
        self(step)
    }
}

/// What a healing run did.
#[derive(Debug, Clone, PartialEq)]
pub struct HealReport {
    /// Mode trained in.
    pub mode: HealMode,
    /// Steps run.
    pub steps: usize,
    /// Training loss of every step.
    pub losses: Vec<f64>,
    /// Trainable tensors.
    pub trainable_tensors: usize,
    /// Trainable scalars.
    pub trainable_values: usize,
}

/// Collects the ids of the sign deltas' scales and bases.
#[derive(Default)]
struct SignDeltaIds {
    scales: HashSet<ParamId>,
    bases: HashSet<ParamId>,
}

fn sign_delta_ids<B: Backend>(model: &Llama<B>) -> SignDeltaIds {
    let mut ids = SignDeltaIds::default();
    let names = projection_names(model.config().num_hidden_layers)
        .into_iter()
        .chain(std::iter::once("lm_head.weight".to_string()));
    for name in names {
        if let Some(LinearWeight::SignDelta(d)) = model.linear(&name) {
            ids.scales.insert(d.scale.id);
            ids.bases.insert(d.base.id);
        }
    }
    ids
}

/// Turns require-grad on for the chosen parameters (all others were frozen).
struct Unfreeze<'a> {
    mode: HealMode,
    ids: &'a SignDeltaIds,
    trainable: Vec<ParamId>,
    values: usize,
}

impl<B: Backend> ModuleMapper<B> for Unfreeze<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let train = match self.mode {
            HealMode::Scales => self.ids.scales.contains(&param.id),
            HealMode::ScalesAndCarried => !self.ids.bases.contains(&param.id),
        };
        if !train {
            return param;
        }
        self.trainable.push(param.id);
        self.values += param.val().shape().num_elements();
        param.set_require_grad(true)
    }
}

/// Freezes everything but what `mode` trains (see [`HealMode`]) and returns
/// the trainable parameter ids and the number of trainable scalars. The
/// sign masks are constants and never trainable; the base weights under
/// the masks are frozen in both modes.
pub fn freeze_for_healing<AD: AutodiffBackend>(
    student: Llama<AD>,
    mode: HealMode,
) -> (Llama<AD>, Vec<ParamId>, usize) {
    let ids = sign_delta_ids(&student);
    let mut unfreeze = Unfreeze {
        mode,
        ids: &ids,
        trainable: Vec::new(),
        values: 0,
    };
    let student = student.no_grad().map(&mut unfreeze);
    (student, unfreeze.trainable, unfreeze.values)
}

fn check_pair<A: Backend, B: Backend>(
    student: &Llama<A>,
    teacher: &Llama<B>,
) -> Result<(), HealError> {
    let (s, t) = (student.config(), teacher.config());
    let fields = [
        ("vocab_size", s.vocab_size, t.vocab_size),
        ("hidden_size", s.hidden_size, t.hidden_size),
        (
            "num_hidden_layers",
            s.num_hidden_layers,
            t.num_hidden_layers,
        ),
    ];
    for (field, a, b) in fields {
        if a != b {
            return Err(HealError::ModelMismatch(format!(
                "{field} is {a} in the student (base + delta), {b} in the teacher"
            )));
        }
    }
    Ok(())
}

/// Distils the student's scales (and, per mode, carried tensors) towards the
/// teacher: AdamW on the MSE between their full-vocabulary logits over
/// batches of `calibration` windows. Returns the trained student.
///
/// `stop` is checked before every step; when it is raised the run ends with
/// [`HealError::Interrupted`].
pub fn heal<AD: AutodiffBackend>(
    student: Llama<AD>,
    teacher: &Llama<AD::InnerBackend>,
    calibration: &Calibration,
    config: &HealConfig,
    observer: &mut dyn HealObserver,
    stop: &AtomicBool,
) -> Result<(Llama<AD>, HealReport), HealError> {
    config.validate()?;
    check_pair(&student, teacher)?;
    calibration.check_vocab(student.config().vocab_size)?;
    let (mut student, trainable, values) = freeze_for_healing(student, config.mode);
    let device = student.device();
    let schedule = config.lr_schedule();
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_epsilon(1e-8)
        .init::<AD, Llama<AD>>();
    let mut sampler = BatchSampler::new(calibration.len(), config.seed);
    let mut losses = Vec::with_capacity(config.steps);
    for step in 0..config.steps {
        if stop.load(Ordering::Relaxed) {
            return Err(HealError::Interrupted {
                done: step,
                total: config.steps,
            });
        }
        let idx = sampler.next_batch(config.batch_size);
        let tokens = calibration.batch_tensor::<AD::InnerBackend>(&idx, &device);
        let target = teacher.forward(tokens.clone());
        let logits = student.forward(Tensor::from_inner(tokens));
        let loss = logits.sub(Tensor::from_inner(target)).square().mean();
        let value = loss.clone().into_scalar().elem::<f64>();
        if !value.is_finite() {
            return Err(HealError::NonFinite {
                step: step + 1,
                loss: value,
            });
        }
        let mut grads = loss.backward();
        let grads = GradientsParams::from_params(&mut grads, &student, &trainable);
        let lr = schedule.lr(step);
        student = optim.step(lr, student, grads);
        losses.push(value);
        observer.on_step(&HealStep {
            step: step + 1,
            total: config.steps,
            loss: value,
            lr,
        });
    }
    Ok((
        student,
        HealReport {
            mode: config.mode,
            steps: config.steps,
            losses,
            trainable_tensors: trainable.len(),
            trainable_values: values,
        },
    ))
}

// ---------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------

/// Mean squared difference between the full-vocabulary logits of `student`
/// and `teacher` over every position of every window, in batches of
/// `batch_size`.
pub fn logit_mse<A: Backend, B: Backend>(
    student: &Llama<A>,
    teacher: &Llama<B>,
    windows: &Calibration,
    batch_size: usize,
) -> Result<f64, HealError> {
    check_pair(student, teacher)?;
    windows.check_vocab(student.config().vocab_size)?;
    let (sd, td) = (student.device(), teacher.device());
    let idx: Vec<usize> = (0..windows.len()).collect();
    let (mut sum, mut count) = (0f64, 0f64);
    for chunk in idx.chunks(batch_size.max(1)) {
        let s: Vec<f32> = student
            .forward(windows.batch_tensor::<A>(chunk, &sd))
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| HealError::ModelMismatch(format!("student logits: {e:?}")))?;
        let t: Vec<f32> = teacher
            .forward(windows.batch_tensor::<B>(chunk, &td))
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| HealError::ModelMismatch(format!("teacher logits: {e:?}")))?;
        for (a, b) in s.iter().zip(&t) {
            let d = *a as f64 - *b as f64;
            sum += d * d;
        }
        count += s.len() as f64;
    }
    Ok(if count == 0.0 { 0.0 } else { sum / count })
}

/// Held-out logit MSE of base + delta file against `teacher` (for reports:
/// before and after healing).
pub fn delta_logit_mse<B: Backend, S: TensorSource + ?Sized>(
    src: &BaseAndDelta<'_, S>,
    teacher: &Llama<B>,
    windows: &Calibration,
    batch_size: usize,
) -> Result<f64, HealError> {
    let student = src.build::<B>(&teacher.device())?;
    logit_mse(&student, teacher, windows, batch_size)
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// `c` with its masks' scales replaced (signs and encoding unchanged).
fn rescaled(name: &str, c: &Compressed, scales: &[Vec<f32>]) -> Result<Compressed, HealError> {
    let drift = |reason: &str| HealError::Quant {
        tensor: name.to_string(),
        source: Box::new(QuantError::Metadata(format!(
            "cannot store healed scales: {reason}"
        ))),
    };
    match c {
        Compressed::BitDelta(s) => {
            let [one] = scales else {
                return Err(drift("a BitDelta tensor has exactly one mask"));
            };
            BitDelta::with_scales(s.signs().clone(), one.clone()).map_err(quant_err(name))
        }
        Compressed::MultiMask(m) => {
            if m.masks().len() != scales.len() {
                return Err(drift("mask count changed"));
            }
            // delta-quant names mask j's payloads `{j}.signs` / `{j}.scales`;
            // `from_parts` re-validates everything and the result is checked.
            let mut parts = c.to_parts();
            for (j, s) in scales.iter().enumerate() {
                let key = format!("{j}.scales");
                let slot = parts
                    .payloads
                    .iter_mut()
                    .find(|(n, _)| *n == key)
                    .ok_or_else(|| drift(&format!("no `{key}` payload")))?;
                slot.1 = Payload::f32(vec![s.len()], s);
            }
            let out = Compressed::from_parts(name, &parts).map_err(quant_err(name))?;
            match &out {
                Compressed::MultiMask(n)
                    if n.masks()
                        .iter()
                        .zip(scales)
                        .all(|(m, s)| m.scales() == s.as_slice())
                        && n.masks()
                            .iter()
                            .zip(m.masks())
                            .all(|(a, b)| a.signs() == b.signs()) =>
                {
                    Ok(out)
                }
                _ => Err(drift("the multimask payload layout changed")),
            }
        }
        other => Err(HealError::UnsupportedMethod {
            tensor: name.to_string(),
            method: other.kind().to_string(),
            encoding: other.kind().to_string(),
        }),
    }
}

/// The model's current value of a non-compressed tensor, HF name and layout,
/// if it is one of its parameters.
fn model_tensor_hf<B: Backend>(model: &Llama<B>, name: &str) -> Option<Vec<f32>> {
    let read = |t: Tensor<B, 1>| t.into_data().convert::<f32>().to_vec::<f32>().ok();
    let read2 = |t: Tensor<B, 2>| t.into_data().convert::<f32>().to_vec::<f32>().ok();
    if name == "model.embed_tokens.weight" {
        return read2(model.embed_tokens.val());
    }
    if name == "model.norm.weight" {
        return read(model.norm.weight.val());
    }
    if let Some(LinearWeight::Dense(w)) = model.linear(name) {
        // [in, out] → HF [out, in].
        return read2(w.val().transpose());
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (i, part) = rest.split_once('.')?;
    let layer = model.layers.get(i.parse::<usize>().ok()?)?;
    match part {
        "input_layernorm.weight" => read(layer.input_layernorm.weight.val()),
        "post_attention_layernorm.weight" => read(layer.post_attention_layernorm.weight.val()),
        _ => None,
    }
}

/// Writes the healed delta to `out` (atomically: a temporary file renamed
/// into place): `delta`'s header and entries, every compressed tensor with
/// the student's scales, carried tensors as stored — or, in
/// [`HealMode::ScalesAndCarried`], the student's values stored in the
/// entry's dtype (so bf16 carried tensors are rounded back to bf16).
pub fn write_healed<B: Backend>(
    delta: &DeltaFile,
    student: &Llama<B>,
    mode: HealMode,
    out: &Path,
) -> Result<PathBuf, HealError> {
    let write_err = |source| HealError::Write {
        path: out.to_path_buf(),
        source: Box::new(source),
    };
    let mut writer = DeltaFileWriter::create(out, delta.header().clone()).map_err(write_err)?;
    for e in delta.entries() {
        let name = e.name.as_str();
        match e.kind {
            EntryKind::Compressed => {
                let c = delta.compressed(name).map_err(quant_err(name))?;
                let scales = match student.linear(name) {
                    Some(LinearWeight::SignDelta(d)) => d.scales(),
                    _ => {
                        return Err(HealError::NotALinear {
                            tensor: name.to_string(),
                        })
                    }
                };
                let healed = rescaled(name, &c, &scales)?;
                writer
                    .add_compressed(name, &healed)
                    .map_err(quant_err(name))?;
            }
            EntryKind::Carried => {
                let t = delta.carried(name).map_err(quant_err(name))?;
                let trained = match mode {
                    HealMode::Scales => None,
                    HealMode::ScalesAndCarried => delta_core::DType::from_safetensors(t.dtype)
                        .and_then(|dt| Some((dt, model_tensor_hf(student, name)?))),
                };
                match trained {
                    Some((dtype, values)) => {
                        let bytes = delta_core::dtype::encode(&values, dtype);
                        writer
                            .add_carried(name, t.dtype, t.shape, &bytes)
                            .map_err(quant_err(name))?;
                    }
                    None => writer
                        .add_carried(name, t.dtype, t.shape, t.data)
                        .map_err(quant_err(name))?,
                }
            }
        }
    }
    writer.finish().map_err(write_err)
}

/// Builds the student from `src` on `AD`, heals it against `teacher` and
/// writes the healed delta to `out`. On interruption or error nothing is
/// written.
pub fn heal_delta_file<AD: AutodiffBackend, S: TensorSource + ?Sized>(
    src: &BaseAndDelta<'_, S>,
    teacher: &Llama<AD::InnerBackend>,
    calibration: &Calibration,
    config: &HealConfig,
    out: &Path,
    observer: &mut dyn HealObserver,
    stop: &AtomicBool,
) -> Result<HealReport, HealError> {
    let student = src.build::<AD>(&teacher.device())?;
    let (student, report) = heal(student, teacher, calibration, config, observer, stop)?;
    if stop.load(Ordering::Relaxed) {
        return Err(HealError::Interrupted {
            done: report.steps,
            total: config.steps,
        });
    }
    write_healed(src.delta, &student, config.mode, out)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/hf-reference/pair/base")
    }

    #[test]
    fn windows_cut_streams_and_samples_are_seeded() {
        let c =
            Calibration::from_token_streams(vec![vec![1, 2, 3], vec![4, 5, 6, 7]], 3, "t").unwrap();
        assert_eq!(c.windows(), &[vec![1, 2, 3], vec![4, 5, 6]]);
        assert!(matches!(
            Calibration::from_token_streams(vec![vec![1]], 3, "t"),
            Err(HealError::NotEnoughData { tokens: 1, .. })
        ));
        let draw = |seed| {
            let mut s = BatchSampler::new(5, seed);
            (0..4).flat_map(|_| s.next_batch(3)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // Each pass visits every window once.
        let mut first: Vec<usize> = draw(7)[..5].to_vec();
        first.sort_unstable();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        let (train, held) = Calibration::from_windows((0..10).map(|i| vec![i; 2]).collect())
            .unwrap()
            .split_holdout(3, 1)
            .unwrap();
        assert_eq!((train.len(), held.len()), (7, 3));
        assert!(held.windows().iter().all(|w| !train.windows().contains(w)));
    }

    #[test]
    fn calibration_files_plain_jsonl_and_chat() {
        let tok = Tokenizer::from_dir(fixture()).unwrap();
        let tmpl = ChatTemplate::from_dir(fixture()).unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("c.txt");
        std::fs::write(
            &plain,
            "the quick brown fox jumps over the lazy dog ".repeat(8),
        )
        .unwrap();
        let c = Calibration::from_file(&plain, &tok, &tmpl, 8).unwrap();
        let ids = tok
            .encode(&std::fs::read_to_string(&plain).unwrap(), true)
            .unwrap();
        assert_eq!(c.len(), ids.len() / 8);
        assert_eq!(c.windows()[0], ids[..8]);

        let jsonl = dir.path().join("c.jsonl");
        std::fs::write(
            &jsonl,
            "{\"text\": \"hello world\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n",
        )
        .unwrap();
        let c = Calibration::from_file(&jsonl, &tok, &tmpl, 2).unwrap();
        let mut want = tok.encode("hello world", true).unwrap();
        want.extend(tok.eos_id());
        let chat = tmpl
            .render(
                &[
                    crate::ChatMessage::user("hi"),
                    crate::ChatMessage::assistant("hello"),
                ],
                false,
            )
            .unwrap();
        want.extend(tok.encode(&chat, false).unwrap());
        let got: Vec<u32> = c.windows().iter().flatten().copied().collect();
        assert_eq!(got, want[..want.len() / 2 * 2]);

        std::fs::write(&jsonl, "{\"text\": \"ok\"}\n{\"prompt\": 3}\n").unwrap();
        let e = Calibration::from_file(&jsonl, &tok, &tmpl, 2).unwrap_err();
        assert!(e.to_string().contains("c.jsonl:2"), "{e}");
        std::fs::write(&jsonl, "not json\n").unwrap();
        let e = Calibration::from_file(&jsonl, &tok, &tmpl, 2).unwrap_err();
        assert!(e.to_string().contains("c.jsonl:1"), "{e}");
    }

    #[test]
    fn modes_parse() {
        assert_eq!("scales".parse::<HealMode>().unwrap(), HealMode::Scales);
        assert_eq!(
            "scales-and-carried".parse::<HealMode>().unwrap(),
            HealMode::ScalesAndCarried
        );
        assert!("all".parse::<HealMode>().is_err());
        assert_eq!(HealMode::ScalesAndCarried.to_string(), "scales-and-carried");
    }
}
