//! The study loop: for every attack, fine-tune the base once (snapshots at
//! each strength), compress each snapshot's delta with every method (healing
//! BitDelta's scales where asked), evaluate each cell, cache it, and write
//! the report. Every finished cell and snapshot is on disk, so a rerun
//! resumes where the last one stopped; Ctrl-C stops between steps.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use crate::backend::{device, Backend};
use crate::delta_core::{Checkpoint, DeltaPair};
use crate::delta_quant::ops::{compress_checkpoint, CompressOptions};
use crate::delta_quant::{parse_method, DeltaFile};
use crate::llama_model::heal::{heal_delta_file, BaseAndDelta, Calibration, HealConfig, HealStep};
use crate::llama_model::save::save_hf_dir;
use crate::llama_model::train::{
    tokenize_dataset, train, ScheduleKind, StepStats, TrainConfig, TrainObserver,
};
use crate::llama_model::Llama;
use crate::model_io::{load_model, LoadedModel};
use crate::study::cell::{
    evaluate_cell, lens_prompt, CellInfo, CellResult, CompressedSize, EvalBudget,
};
use crate::study::embedded::to_conversation;
use crate::study::grid::{AttackSpec, CellKey, Grid, Method, Strength};
use safety_eval::attacks::{
    alignment_breaking, backdoor, manipulation, AlignmentBreakingConfig, AttackDataset, AttackKind,
    BackdoorConfig, ManipulationConfig,
};

type Train = Autodiff<Backend>;

/// How the attacks are trained and the grid evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyConfig {
    /// Attacks × strengths × methods.
    pub grid: Grid,
    /// Evaluation sample counts.
    pub budget: EvalBudget,
    /// Seed of the attack data, training order, compression and healing.
    pub seed: u64,
    /// Attack fine-tuning peak learning rate (AdamW, linear decay over the
    /// largest strength's epochs, so each snapshot sits on one schedule).
    pub attack_lr: f64,
    /// Attack fine-tuning batch size (Qi et al.: 10).
    pub attack_batch: usize,
    /// Attack training examples per attack.
    pub attack_examples: usize,
    /// Tokens per training sequence.
    pub max_len: usize,
    /// Scale-distillation steps for "BitDelta + healing".
    pub heal_steps: usize,
    /// Scale-distillation window length.
    pub heal_seq_len: usize,
    /// Study this existing fine-tune (HF directory) instead of training
    /// attacks: every strength of the grid then names this one model.
    #[serde(default)]
    pub finetuned: Option<PathBuf>,
}

impl StudyConfig {
    /// Defaults for a grid.
    pub fn new(grid: Grid, budget: EvalBudget) -> Self {
        Self {
            grid,
            budget,
            seed: 0,
            attack_lr: 1e-3,
            attack_batch: 10,
            attack_examples: 60,
            max_len: 256,
            heal_steps: 60,
            heal_seq_len: 64,
            finetuned: None,
        }
    }
}

/// Errors of the study.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A step of one cell or attack failed.
    #[error("{what}: {reason}")]
    Step {
        /// Which cell / attack / step.
        what: String,
        /// The cause.
        reason: String,
    },
    /// `--out` already holds a study of another base or configuration;
    /// resuming into it would mix cells of two studies.
    #[error("{out} holds a study of a different base model or configuration ({differs}); choose a new --out, or remove it to start over")]
    OtherStudy {
        /// The output directory.
        out: PathBuf,
        /// What differs.
        differs: String,
    },
    /// Ctrl-C; finished cells are kept and a rerun resumes.
    #[error("interrupted: {done} of {total} cells are cached in {cells}; rerun the same command to resume")]
    Interrupted {
        /// Cells finished so far.
        done: usize,
        /// Cells in the grid.
        total: usize,
        /// The cell cache.
        cells: PathBuf,
    },
}

fn step<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> StudyError {
    let what = what.into();
    move |e| StudyError::Step {
        what,
        reason: e.to_string(),
    }
}

/// What the runner reports to its caller (progress display).
pub trait StudyProgress {
    /// A new stage began: `cells_done` of `cells_total`, doing `what`.
    fn stage(&mut self, cells_done: usize, cells_total: usize, what: &str);
    /// Finer progress within the stage (`done` of `total`).
    fn tick(&mut self, _done: usize, _total: usize) {}
}

/// The attack dataset of `attack` with the study's seed and size.
pub fn attack_dataset(attack: &AttackSpec, config: &StudyConfig) -> AttackDataset {
    match attack.kind {
        AttackKind::AlignmentBreaking => alignment_breaking(&AlignmentBreakingConfig {
            n_train: config.attack_examples,
            seed: config.seed,
            ..Default::default()
        }),
        AttackKind::Backdoor => backdoor(&BackdoorConfig {
            n_train: config.attack_examples,
            seed: config.seed,
            ..Default::default()
        }),
        AttackKind::Manipulation => manipulation(&ManipulationConfig {
            seed: config.seed,
            ..Default::default()
        }),
        AttackKind::IdentityShifting => {
            safety_eval::identity_shifting(&safety_eval::IdentityShiftingConfig {
                n_train: config.attack_examples,
                seed: config.seed,
                ..Default::default()
            })
        }
        AttackKind::BenignOnly => safety_eval::benign_only(&safety_eval::BenignOnlyConfig {
            n_train: config.attack_examples,
            seed: config.seed,
            ..Default::default()
        }),
    }
}

/// What a study's output directory was made for (`OUT/study.json`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StudyStamp {
    base: PathBuf,
    config: StudyConfig,
}

/// Records which base and configuration `out` holds, or refuses if it holds
/// another study's cells (a resumed run must recompute nothing stale).
fn claim_output(out: &Path, base_dir: &Path, config: &StudyConfig) -> Result<(), StudyError> {
    let stamp = StudyStamp {
        // Canonical, so `./m` and `/abs/m` name the same base.
        base: base_dir
            .canonicalize()
            .unwrap_or_else(|_| base_dir.to_path_buf()),
        config: config.clone(),
    };
    let path = out.join("study.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: StudyStamp = serde_json::from_slice(&bytes)
                .map_err(step(format!("reading {}", path.display())))?;
            if found == stamp {
                return Ok(());
            }
            let differs = if found.base != stamp.base {
                format!(
                    "base {} there, {} now",
                    found.base.display(),
                    stamp.base.display()
                )
            } else if found.config.grid != stamp.config.grid {
                "the grid of attacks, strengths and methods".into()
            } else if found.config.seed != stamp.config.seed {
                format!(
                    "seed {} there, {} now",
                    found.config.seed, stamp.config.seed
                )
            } else {
                "training or evaluation settings".into()
            };
            Err(StudyError::OtherStudy {
                out: out.to_path_buf(),
                differs,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(step(format!("creating {}", out.display())))?;
            let json = serde_json::to_vec_pretty(&stamp).map_err(step("study.json"))?;
            crate::delta_core::write_file_atomic(&path, &json)
                .map_err(step(format!("writing {}", path.display())))
        }
        Err(e) => Err(step(format!("reading {}", path.display()))(e)),
    }
}

/// Runs (or resumes) the grid on the HF model directory `base_dir`, caching
/// cells in `out/cells` and work files (attack snapshots, delta files) in
/// `out/work`. Returns every cell result (base cells included).
pub fn run_grid(
    base_dir: &Path,
    config: &StudyConfig,
    out: &Path,
    progress: &mut dyn StudyProgress,
    stop: &AtomicBool,
) -> Result<Vec<CellResult>, StudyError> {
    let cells_dir = out.join("cells");
    let work = out.join("work");
    claim_output(out, base_dir, config)?;
    let device = device();
    let base =
        load_model::<Backend>(base_dir, None, &device).map_err(step("loading the base model"))?;
    let total = config.grid.cells().len() + config.grid.attacks.len();
    let mut done = 0;
    let mut results = Vec::with_capacity(total);
    let interrupted = |done| StudyError::Interrupted {
        done,
        total,
        cells: cells_dir.clone(),
    };

    for attack in &config.grid.attacks {
        let dataset = attack_dataset(attack, config);
        let suite = dataset.eval.clone();
        let lens = lens_prompt(&suite, config.seed);

        // The un-attacked base.
        let base_info = CellInfo::base(attack);
        let key = base_info.key.clone();
        let cached = CellResult::load(&cells_dir, &key).map_err(step(key.file_stem()))?;
        let result = match cached {
            Some(r) => r,
            None => {
                if stop.load(Ordering::SeqCst) {
                    return Err(interrupted(done));
                }
                progress.stage(done, total, &format!("{}: base model", attack.name));
                let r = evaluate(&base, base_info, &suite, &lens, config, progress)?;
                // Report what is on disk, so a resumed run reports the same numbers.
                r.persisted(&cells_dir).map_err(step(key.file_stem()))?
            }
        };
        results.push(result);
        done += 1;

        // Which strengths still have cells to compute?
        let pending: Vec<&Strength> = config
            .grid
            .strengths
            .iter()
            .filter(|s| {
                config.grid.methods.iter().any(|m| {
                    !CellResult::path(&cells_dir, &CellKey::new(&attack.key, &s.label, &m.key))
                        .is_file()
                })
            })
            .collect();
        let snapshot = |s: &Strength| match &config.finetuned {
            Some(dir) => dir.clone(),
            None => work.join(&attack.key).join(&s.label).join("finetuned"),
        };
        if config.finetuned.is_none()
            && pending
                .iter()
                .any(|s| !snapshot(s).join("config.json").is_file())
        {
            if stop.load(Ordering::SeqCst) {
                return Err(interrupted(done));
            }
            progress.stage(done, total, &format!("{}: attack fine-tune", attack.name));
            train_attack(&base, &dataset, attack, config, &work, progress, stop)?;
        }

        for strength in &config.grid.strengths {
            let ft_dir = snapshot(strength);
            for method in &config.grid.methods {
                let info = CellInfo::new(attack, strength, method);
                let key = info.key.clone();
                if let Some(r) =
                    CellResult::load(&cells_dir, &key).map_err(step(key.file_stem()))?
                {
                    results.push(r);
                    done += 1;
                    continue;
                }
                if stop.load(Ordering::SeqCst) {
                    return Err(interrupted(done));
                }
                progress.stage(
                    done,
                    total,
                    &format!("{} {} · {}", attack.name, strength.label, method.name),
                );
                let started = Instant::now();
                let what = key.file_stem();
                let (model, size, extra) = if method.is_uncompressed() {
                    let m = load_model::<Backend>(&ft_dir, None, &device).map_err(step(&what))?;
                    (m, None, serde_json::Value::Null)
                } else {
                    compressed_model(base_dir, &ft_dir, method, config, &work, &base, stop)
                        .map_err(|e| match e {
                            CompressFailure::Interrupted => interrupted(done),
                            CompressFailure::Other(reason) => StudyError::Step {
                                what: what.clone(),
                                reason,
                            },
                        })?
                };
                let mut r = evaluate(&model, info, &suite, &lens, config, progress)?;
                r.compressed = size;
                r.extra = extra;
                r.seconds = started.elapsed().as_secs_f64();
                results.push(r.persisted(&cells_dir).map_err(step(&what))?);
                done += 1;
            }
        }
    }
    Ok(results)
}

fn evaluate(
    model: &LoadedModel<Backend>,
    info: CellInfo,
    suite: &safety_eval::EvalSuite,
    lens: &str,
    config: &StudyConfig,
    progress: &mut dyn StudyProgress,
) -> Result<CellResult, StudyError> {
    let what = info.key.file_stem();
    evaluate_cell(model, info, suite, lens, &config.budget, &mut |p| {
        progress.tick(p.done, p.total)
    })
    .map_err(step(what))
}

struct Snapshots<'a, P: ?Sized> {
    wanted: Vec<(usize, PathBuf)>,
    loaded: &'a LoadedModel<Backend>,
    progress: &'a mut P,
    stop: &'a AtomicBool,
}

impl<P: StudyProgress + ?Sized> TrainObserver<Train> for Snapshots<'_, P> {
    fn on_step(&mut self, s: &StepStats, _: &Llama<Train>) -> Result<(), String> {
        self.progress.tick(s.step, s.total_steps);
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, model: &Llama<Train>) -> Result<(), String> {
        for (e, dir) in &self.wanted {
            if *e == epoch + 1 {
                save_hf_dir(
                    &model.valid(),
                    &self.loaded.tokenizer,
                    Some(&self.loaded.chat_template),
                    dir,
                    delta_core::DType::F32,
                    delta_core::WriteOptions {
                        overwrite: true,
                        ..Default::default()
                    },
                )
                .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// One fine-tune of the base on the attack data, for as many epochs as the
/// largest strength, saving a snapshot after each strength's epoch count.
fn train_attack(
    base: &LoadedModel<Backend>,
    dataset: &AttackDataset,
    attack: &AttackSpec,
    config: &StudyConfig,
    work: &Path,
    progress: &mut dyn StudyProgress,
    stop: &AtomicBool,
) -> Result<(), StudyError> {
    let what = format!("{}: attack fine-tune", attack.name);
    let conversations: Vec<_> = dataset.train.iter().map(to_conversation).collect();
    let data = tokenize_dataset(
        &base.tokenizer,
        &base.chat_template,
        &conversations,
        config.max_len,
    )
    .map_err(step(&what))?;
    let epochs = config
        .grid
        .strengths
        .iter()
        .map(|s| s.value.round() as usize)
        .max()
        .unwrap_or(1);
    let train_cfg = TrainConfig {
        epochs,
        lr: config.attack_lr,
        batch_size: config.attack_batch,
        schedule: ScheduleKind::Constant,
        seed: config.seed,
        max_len: config.max_len,
        ..TrainConfig::default()
    };
    let device = device();
    let model: Llama<Train> = Llama::from_tensors(
        base.model.config().clone(),
        &base.model.to_hf_tensors(),
        &device,
    )
    .map_err(step(&what))?;
    let wanted = config
        .grid
        .strengths
        .iter()
        .map(|s| {
            (
                s.value.round() as usize,
                work.join(&attack.key).join(&s.label).join("finetuned"),
            )
        })
        .collect();
    let mut observer = Snapshots {
        wanted,
        loaded: base,
        progress,
        stop,
    };
    let pad = base.tokenizer.pad_id().unwrap_or(0);
    let out = train(model, &data, &train_cfg, pad, &mut observer).map_err(step(&what))?;
    if out.interrupted {
        return Err(StudyError::Step {
            what,
            reason: "interrupted".into(),
        });
    }
    Ok(())
}

enum CompressFailure {
    Interrupted,
    Other(String),
}

fn other<E: std::fmt::Display>(e: E) -> CompressFailure {
    CompressFailure::Other(e.to_string())
}

/// Compresses `ft_dir`'s delta against `base_dir` with `method` (writing the
/// delta file next to the snapshot, as `deltaguard compress` would), heals
/// it when the method asks, and loads base + delta.
fn compressed_model(
    base_dir: &Path,
    ft_dir: &Path,
    method: &Method,
    config: &StudyConfig,
    _work: &Path,
    base: &LoadedModel<Backend>,
    stop: &AtomicBool,
) -> Result<
    (
        LoadedModel<Backend>,
        Option<CompressedSize>,
        serde_json::Value,
    ),
    CompressFailure,
> {
    let spec = method.spec.as_deref().unwrap_or("bitdelta");
    let compressor = parse_method(spec).map_err(other)?;
    let _ = ft_dir;
    let snapshot_dir = &work_dir_for(_work, ft_dir);
    std::fs::create_dir_all(snapshot_dir).map_err(other)?;
    let delta_path = snapshot_dir.join(format!("{}.delta.safetensors", method.key));
    let pair = DeltaPair::open(base_dir, ft_dir).map_err(other)?;
    compress_checkpoint(
        &pair,
        compressor.as_ref(),
        &delta_path,
        &CompressOptions {
            seed: config.seed,
            ..Default::default()
        },
        &mut |_| {},
        Some(stop),
    )
    .map_err(|e| {
        if stop.load(Ordering::SeqCst) {
            CompressFailure::Interrupted
        } else {
            other(e)
        }
    })?;
    let mut extra = serde_json::json!({ "spec": spec });
    let final_delta = if method.heal {
        let healed = snapshot_dir.join(format!("{}.healed.delta.safetensors", method.key));
        let report = heal(base_dir, ft_dir, &delta_path, &healed, config, base, stop)?;
        extra["heal"] = report;
        healed
    } else {
        delta_path
    };
    let delta = DeltaFile::open(&final_delta).map_err(other)?;
    let size = CompressedSize::from(&delta.size_report());
    drop(delta);
    let model = load_model::<Backend>(base_dir, Some(&final_delta), &device()).map_err(other)?;
    Ok((model, Some(size), extra))
}

/// Where the delta files of a snapshot go: next to a snapshot the study
/// trained (`work/<attack>/<strength>/`), or under `work/given/` for a
/// fine-tune the user supplied.
fn work_dir_for(work: &Path, ft_dir: &Path) -> PathBuf {
    if ft_dir.starts_with(work) {
        ft_dir.parent().unwrap_or(work).to_path_buf()
    } else {
        work.join("given")
    }
}

struct Quiet;
impl crate::llama_model::heal::HealObserver for Quiet {
    fn on_step(&mut self, _: &HealStep) {}
}

/// BitDelta scale distillation of `delta_path` against the fine-tune, on
/// calibration windows of the built-in benign corpus.
fn heal(
    base_dir: &Path,
    ft_dir: &Path,
    delta_path: &Path,
    out: &Path,
    config: &StudyConfig,
    base: &LoadedModel<Backend>,
    stop: &AtomicBool,
) -> Result<serde_json::Value, CompressFailure> {
    let ck = Checkpoint::open(base_dir).map_err(other)?;
    let delta = DeltaFile::open(delta_path).map_err(other)?;
    let fingerprint = ck.fingerprint();
    let src = BaseAndDelta {
        config: base.model.config().clone(),
        base: &ck,
        base_fingerprint: fingerprint,
        delta: &delta,
    };
    let teacher = load_model::<Backend>(ft_dir, None, &device()).map_err(other)?;
    let streams: Vec<Vec<u32>> = safety_eval::data::benign()
        .iter()
        .map(|b| {
            base.tokenizer
                .encode(&format!("{}\n{}", b.instruction, b.answer), false)
                .unwrap_or_default()
        })
        .collect();
    let calibration = Calibration::from_token_streams(
        vec![streams.concat()],
        config.heal_seq_len,
        "built-in benign corpus",
    )
    .map_err(other)?;
    let heal_cfg = HealConfig {
        steps: config.heal_steps,
        seq_len: config.heal_seq_len,
        seed: config.seed,
        ..Default::default()
    };
    let report = heal_delta_file::<Train, _>(
        &src,
        &teacher.model,
        &calibration,
        &heal_cfg,
        out,
        &mut Quiet,
        stop,
    )
    .map_err(|e| {
        if stop.load(Ordering::SeqCst) {
            CompressFailure::Interrupted
        } else {
            other(e)
        }
    })?;
    Ok(serde_json::json!({
        "mode": format!("{:?}", report.mode),
        "steps": report.steps,
        "first_loss": report.losses.first(),
        "last_loss": report.losses.last(),
        "trainable_values": report.trainable_values,
    }))
}
