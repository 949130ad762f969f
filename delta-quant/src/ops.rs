//! Whole-checkpoint operations: compress every selected delta of a fine-tune
//! into one delta file, and apply a delta file to its base to get a full HF
//! model directory back.
//!
//! Both stream one tensor at a time (peak memory: a few tensors), report
//! progress through a callback, stop cleanly between tensors when an
//! interrupt flag is raised, and leave no partial output behind (the delta
//! file and the model directory are written under temporary names and
//! renamed only when complete).

use crate::compressed::Compressed;
use crate::compressor::{CompressContext, Compressor};
use crate::decode::{Decoder, Mode};
use crate::error::QuantError;
use crate::file::{DeltaFile, DeltaFileHeader, DeltaFileWriter, EntryKind};
use crate::matrix::DeltaMatrix;
use delta_core::TensorView;
use delta_core::{
    Action, Checkpoint, CheckpointError, CheckpointWriter, DType, DeltaError, DeltaPair, Selection,
    WriteOptions,
};
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};
use rayon::prelude::*;
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
                // from the map here and dropped before the next.
                let merged = merge_compressed(name, view, &delta.compressed(name)?)?;
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

/// `W_base + Δ̂` encoded in the base tensor's dtype — byte for byte what
/// `delta_core::add_delta(name, base, c.reconstruct().data())` returns,
/// without the f32 Δ̂ and W temporaries: each fixed row chunk of the base is
/// decoded to f32, gets Δ̂ added by the payload's decoder, is checked for
/// non-finite values and encoded, in parallel over chunks.
pub fn merge_compressed(
    name: &str,
    base: TensorView<'_>,
    c: &Compressed,
) -> Result<Vec<u8>, DeltaError> {
    let n = base.info.num_elements();
    let [rows, cols] = c.shape();
    let got = rows.saturating_mul(cols);
    if got != n || base.bytes.len() != n * base.info.dtype.size() {
        return Err(DeltaError::DeltaSize {
            tensor: name.to_string(),
            expected: n,
            got,
        });
    }
    let dt = base.info.dtype;
    let size = dt.size();
    let mut out = vec![0u8; n * size];
    if n == 0 {
        return Ok(out);
    }
    let decoder = Decoder::new(c);
    let task_rows = decoder.task_rows();
    out.par_chunks_mut(task_rows * cols * size)
        .enumerate()
        .try_for_each_init(
            || (Vec::new(), Vec::new()),
            |(w, halves), (t, bytes_out)| {
                let start = t * task_rows * cols;
                let len = bytes_out.len() / size;
                let bytes_in = &base.bytes[start * size..(start + len) * size];
                decode_chunk(bytes_in, dt, w, halves);
                decoder.rows_into(t * task_rows, w, Mode::Add);
                if let Some(i) = w.iter().position(|x| !x.is_finite()) {
                    return Err(DeltaError::NonFinite {
                        tensor: name.to_string(),
                        which: "the merged weight",
                        index: start + i,
                        value: w[i],
                    });
                }
                encode_chunk(w, dt, halves, bytes_out);
                Ok(())
            },
        )?;
    Ok(out)
}

/// Little-endian `bytes` of `dt` into `w` (resized). f16 goes through
/// half's slice conversion (F16C when the CPU has it, checked at run time),
/// `halves` being scratch for the possibly unaligned 16-bit words.
fn decode_chunk(bytes: &[u8], dt: DType, w: &mut Vec<f32>, halves: &mut Vec<u16>) {
    let len = bytes.len() / dt.size();
    w.resize(len, 0.0);
    match dt {
        DType::F32 => {
            for (x, b) in w.iter_mut().zip(bytes.chunks_exact(4)) {
                *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            halves_from_bytes(bytes, halves);
            halves
                .reinterpret_cast::<f16>()
                .convert_to_f32_slice(w.as_mut_slice());
        }
        DType::BF16 => {
            halves_from_bytes(bytes, halves);
            halves
                .reinterpret_cast::<bf16>()
                .convert_to_f32_slice(w.as_mut_slice());
        }
    }
}

/// `w` as little-endian `dt` into `out` (round to nearest even, as
/// `delta_core::dtype::encode`).
fn encode_chunk(w: &[f32], dt: DType, halves: &mut Vec<u16>, out: &mut [u8]) {
    match dt {
        DType::F32 => {
            for (b, x) in out.chunks_exact_mut(4).zip(w) {
                b.copy_from_slice(&x.to_le_bytes());
            }
        }
        DType::F16 | DType::BF16 => {
            halves.resize(w.len(), 0);
            if dt == DType::F16 {
                halves
                    .reinterpret_cast_mut::<f16>()
                    .convert_from_f32_slice(w);
            } else {
                halves
                    .reinterpret_cast_mut::<bf16>()
                    .convert_from_f32_slice(w);
            }
            for (b, h) in out.chunks_exact_mut(2).zip(halves.iter()) {
                b.copy_from_slice(&h.to_le_bytes());
            }
        }
    }
}

fn halves_from_bytes(bytes: &[u8], halves: &mut Vec<u16>) {
    halves.clear();
    halves.extend(
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]])),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_method;
    use delta_core::{add_delta, TensorInfo};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn base_bytes(rng: &mut ChaCha8Rng, n: usize, dt: DType) -> Vec<u8> {
        let values: Vec<f32> = (0..n)
            .map(|i| match i % 11 {
                0 => -0.0,
                1 => 0.0,
                _ => rng.random_range(-0.05f32..0.05),
            })
            .collect();
        delta_core::dtype::encode(&values, dt)
    }

    /// The fused merge writes exactly the bytes of `add_delta(reconstruct())`.
    #[test]
    fn merge_compressed_matches_add_delta_of_the_reconstruction() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for (rows, cols) in [(1, 1), (3, 31), (7, 65), (1, 200), (300, 257)] {
            let values: Vec<f32> = (0..rows * cols)
                .map(|_| rng.random_range(-1e-3f32..1e-3))
                .collect();
            let d = DeltaMatrix::new(rows, cols, values).unwrap();
            for m in [
                "bitdelta",
                "multimask:k=2,per_row=true",
                "rtn:bits=3,group=16",
                "dare:p=0.9",
                "compeft:density=0.5",
                "svd:rank=2",
                "dare:p=0.5+bitdelta",
            ] {
                let c = parse_method(m)
                    .unwrap()
                    .compress_matrix(&d, &CompressContext::new("t", 1))
                    .unwrap();
                for dt in [DType::F32, DType::F16, DType::BF16] {
                    let info = TensorInfo {
                        name: "t".into(),
                        dtype: dt,
                        shape: vec![rows, cols],
                    };
                    let bytes = base_bytes(&mut rng, rows * cols, dt);
                    let view = TensorView {
                        info: &info,
                        bytes: &bytes,
                    };
                    let want = add_delta("t", view, c.reconstruct().data()).unwrap();
                    let got = merge_compressed("t", view, &c).unwrap();
                    if m.contains("svd") {
                        // The product may round differently (see `decode`):
                        // compare values, one unit of the dtype apart at most.
                        let (g, w) = (
                            delta_core::dtype::decode(&got, dt),
                            delta_core::dtype::decode(&want, dt),
                        );
                        let ulp = match dt {
                            DType::F32 => 1e-6,
                            DType::F16 => 1e-3,
                            DType::BF16 => 8e-3,
                        };
                        for (x, y) in g.iter().zip(&w) {
                            assert!((x - y).abs() <= ulp * y.abs().max(1e-3), "{m} {dt}");
                        }
                    } else {
                        assert!(got == want, "{m} {rows}x{cols} {dt}: bytes differ");
                    }
                }
            }
        }
    }

    #[test]
    fn merge_compressed_refuses_a_non_finite_result_and_a_wrong_shape() {
        let d = DeltaMatrix::new(2, 3, vec![1e-3; 6]).unwrap();
        let c = parse_method("bitdelta")
            .unwrap()
            .compress_matrix(&d, &CompressContext::new("t", 0))
            .unwrap();
        let info = TensorInfo {
            name: "t".into(),
            dtype: DType::F32,
            shape: vec![2, 3],
        };
        let bytes =
            delta_core::dtype::encode(&[0.0, 0.0, 0.0, 0.0, f32::INFINITY, 0.0], DType::F32);
        let view = TensorView {
            info: &info,
            bytes: &bytes,
        };
        match merge_compressed("t", view, &c) {
            Err(DeltaError::NonFinite { index, tensor, .. }) => {
                assert_eq!((index, tensor.as_str()), (4, "t"))
            }
            other => panic!("{other:?}"),
        }
        let info = TensorInfo {
            name: "t".into(),
            dtype: DType::F32,
            shape: vec![7],
        };
        let bytes = vec![0u8; 28];
        let wrong = TensorView {
            info: &info,
            bytes: &bytes,
        };
        assert!(matches!(
            merge_compressed("t", wrong, &c),
            Err(DeltaError::DeltaSize {
                expected: 7,
                got: 6,
                ..
            })
        ));
    }
}
