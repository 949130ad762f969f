//! Whole-checkpoint operations: compress every selected delta of a fine-tune
//! into one delta file, and apply a delta file to its base to get a full HF
//! model directory back.
//!
//! Both stream one tensor at a time (peak memory: a few tensors), report
//! progress through a callback, stop cleanly between tensors when an
//! interrupt flag is raised, and leave no partial output behind (the delta
//! file and the model directory are written under temporary names and
//! renamed only when complete).

use crate::compressor::{CompressContext, Compressor};
use crate::error::QuantError;
use crate::file::{DeltaFile, DeltaFileHeader, DeltaFileWriter, EntryKind};
use crate::matrix::DeltaMatrix;
use delta_core::{
    add_delta, Action, Checkpoint, CheckpointError, CheckpointWriter, DType, DeltaError, DeltaPair,
    Selection, WriteOptions,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Errors of whole-checkpoint operations.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "{delta} was made against a different base (fingerprint {expected}); {base} has fingerprint {got}"
    )]
    WrongBase {
        delta: PathBuf,
        base: PathBuf,
        expected: String,
        got: String,
    },
    #[error("{delta}: tensor `{tensor}`: {reason}")]
    Incompatible {
        delta: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error("interrupted before {tensor}; no output was written")]
    Interrupted { tensor: String },
}

/// One step of a long operation, for progress display.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Tensors finished so far (this one not included).
    pub done: usize,
    pub total: usize,
    pub tensor: &'a str,
    /// Bytes of this tensor in the input.
    pub bytes: u64,
}

/// Knobs of [`compress_checkpoint`].
#[derive(Debug, Clone)]
pub struct CompressOptions {
    pub selection: Selection,
    /// Seed for randomized methods (DARE, randomized SVD), mixed per tensor
    /// with its name.
    pub seed: u64,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            selection: Selection::bitdelta(),
            seed: 0,
        }
    }
}

/// Reconstruction quality of one compressed tensor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TensorReport {
    pub name: String,
    pub shape: [usize; 2],
    pub storage_bytes: u64,
    /// ‖Δ − Δ̂‖_F / ‖Δ‖_F (0 when Δ = 0).
    pub relative_error: f64,
}

/// What [`compress_checkpoint`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompressSummary {
    pub path: PathBuf,
    pub method: String,
    pub compressed: Vec<TensorReport>,
    pub carried: usize,
    /// Bytes of the delta file's payloads (compressed + carried as stored).
    pub stored_bytes: u64,
}

fn check_interrupt(flag: Option<&AtomicBool>, tensor: &str) -> Result<(), OpsError> {
    if flag.is_some_and(|f| f.load(Ordering::Relaxed)) {
        return Err(OpsError::Interrupted {
            tensor: tensor.to_string(),
        });
    }
    Ok(())
}

/// Compress the fine-tune of `pair` against its base into a delta file at
/// `out`: selected tensors as compressed deltas, every other tensor carried
/// from the fine-tune as stored.
pub fn compress_checkpoint(
    pair: &DeltaPair,
    compressor: &dyn Compressor,
    out: impl AsRef<Path>,
    options: &CompressOptions,
    progress: &mut dyn FnMut(Step<'_>),
    interrupt: Option<&AtomicBool>,
) -> Result<CompressSummary, OpsError> {
    let header = DeltaFileHeader::new(compressor, pair.base().fingerprint())
        .with_finetuned(pair.finetuned().fingerprint())
        .with_digests(
            pair.base().content_digest(),
            pair.finetuned().content_digest(),
        )
        .with_seed(options.seed);
    let mut writer = DeltaFileWriter::create(out.as_ref(), header)?;
    let plan = pair.plan(&options.selection);
    let total = plan.len();
    let mut compressed = Vec::new();
    let mut carried = 0;
    for (done, entry) in plan.iter().enumerate() {
        let name = entry.info.name.as_str();
        check_interrupt(interrupt, name)?;
        progress(Step {
            done,
            total,
            tensor: name,
            bytes: entry.info.num_bytes() as u64,
        });
        match entry.action {
            Action::Compress => {
                let (rows, cols) = (entry.info.shape[0], entry.info.shape[1]);
                let delta = DeltaMatrix::new(rows, cols, pair.delta(name)?)?;
                let ctx = CompressContext::new(name, options.seed);
                let c = compressor.compress_matrix(&delta, &ctx)?;
                let relative_error = relative_error(delta.data(), c.reconstruct().data());
                writer.add_compressed(name, &c)?;
                compressed.push(TensorReport {
                    name: name.to_string(),
                    shape: [rows, cols],
                    storage_bytes: c.storage_bytes(),
                    relative_error,
                });
            }
            Action::Carry => {
                let view = pair.finetuned().view(name)?;
                writer.add_carried(
                    name,
                    entry.info.dtype.to_safetensors(),
                    &entry.info.shape,
                    view.bytes,
                )?;
                carried += 1;
            }
        }
    }
    check_interrupt(interrupt, "writing the file")?;
    let path = writer.finish()?;
    let stored_bytes = std::fs::metadata(&path)
        .map(|m| m.len())
        .map_err(|e| QuantError::Io {
            path: path.clone(),
            source: e,
        })?;
    Ok(CompressSummary {
        path,
        method: compressor.spec(),
        compressed,
        carried,
        stored_bytes,
    })
}

/// ‖a − b‖ / ‖a‖ in f64; when a = 0 the absolute error ‖b‖ is returned.
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let d = (*x as f64) - (*y as f64);
        num += d * d;
        den += (*x as f64) * (*x as f64);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Apply `delta` to `base` and write the full model to `out` (a HF directory
/// with the base's config, tokenizer and chat-template files). Refuses a delta
/// made against another base.
pub fn apply_delta_file(
    base: &Checkpoint,
    delta: &DeltaFile,
    delta_path: &Path,
    out: impl AsRef<Path>,
    write: &WriteOptions,
    progress: &mut dyn FnMut(Step<'_>),
    interrupt: Option<&AtomicBool>,
) -> Result<PathBuf, OpsError> {
    if delta.base_fingerprint() != base.fingerprint() {
        return Err(OpsError::WrongBase {
            delta: delta_path.to_path_buf(),
            base: base.dir().to_path_buf(),
            expected: delta.base_fingerprint().to_string(),
            got: base.fingerprint().to_string(),
        });
    }
    // The sampled fingerprint above is cheap; the full digest reads every
    // byte of the base, which apply is about to do anyway, and catches a
    // base that differs from the delta's in weights the sample missed.
    if let Some(expected) = &delta.header().base_digest {
        if expected != base.content_digest() {
            return Err(OpsError::WrongBase {
                delta: delta_path.to_path_buf(),
                base: base.dir().to_path_buf(),
                expected: expected.clone(),
                got: base.content_digest().to_string(),
            });
        }
    }
    let incompatible = |tensor: &str, reason: String| OpsError::Incompatible {
        delta: delta_path.to_path_buf(),
        tensor: tensor.to_string(),
        reason,
    };
    for info in base.infos() {
        if !delta.entries().iter().any(|e| e.name == info.name) {
            return Err(incompatible(
                &info.name,
                "in the base but not in the delta".into(),
            ));
        }
    }
    let mut writer = CheckpointWriter::create(out, write.clone())?;
    writer.copy_aux_files_from(base.dir())?;
    let total = delta.entries().len();
    for (done, entry) in delta.entries().iter().enumerate() {
        let name = entry.name.as_str();
        check_interrupt(interrupt, name)?;
        progress(Step {
            done,
            total,
            tensor: name,
            bytes: entry.storage_bytes,
        });
        match entry.kind {
            EntryKind::Compressed => {
                let view = base
                    .view(name)
                    .map_err(|_| incompatible(name, "not in the base model".into()))?;
                if view.info.shape != entry.shape {
                    return Err(incompatible(
                        name,
                        format!(
                            "shape {:?} in the delta, {:?} in the base",
                            entry.shape, view.info.shape
                        ),
                    ));
                }
                // One tensor at a time: the compressed payload is decoded
                // from the map here and dropped with `rec` before the next.
                let rec = delta.compressed(name)?.reconstruct();
                let merged = add_delta(name, view, rec.data())?;
                drop(rec);
                writer.write_tensor(name, view.info.dtype, &view.info.shape, &merged)?;
                base.release(name);
            }
            EntryKind::Carried => {
                let t = delta.carried(name)?;
                let dtype = DType::from_safetensors(t.dtype).ok_or_else(|| {
                    incompatible(name, format!("unsupported dtype {:?}", t.dtype))
                })?;
                writer.write_tensor(name, dtype, t.shape, t.data)?;
            }
        }
    }
    check_interrupt(interrupt, "renaming the output")?;
    Ok(writer.finish()?)
}
