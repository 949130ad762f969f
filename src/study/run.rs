//! The study loop: for every run (attack × poison rate × seed, and the
//! benign tenant alone per seed), fine-tune the base once on the tenant's
//! data with the attack's mixed in (snapshots at each strength), compress
//! each snapshot's delta with every method (healing BitDelta's scales where
//! asked) and build the controls, evaluate each cell, cache it, and write
//! the report. Every finished cell and snapshot is on disk, so a rerun
//! resumes where the last one stopped; Ctrl-C stops between steps.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use crate::backend::{device, Backend};
use crate::delta_core::Action;
use crate::delta_core::{Checkpoint, DeltaPair};
use crate::delta_quant::ops::{compress_checkpoint, CompressOptions};
use crate::delta_quant::{parse_method, DeltaFile};
use crate::llama_model::heal::{heal_delta_file, BaseAndDelta, Calibration, HealConfig, HealStep};
use crate::llama_model::save::save_hf_dir;
use crate::llama_model::train::{
    tokenize_dataset, train, ScheduleKind, StepStats, TrainConfig, TrainObserver,
};
use crate::llama_model::Llama;
use crate::llama_model::{F32Tensor, NamedTensors};
use crate::model_io::{load_model, LoadedModel};
use crate::study::cell::{
    evaluate_cell, lens_prompt, CellInfo, CellInputs, CellResult, CompressedSize, EvalBudget,
};
use crate::study::embedded::to_conversation;
use crate::study::grid::{AttackSpec, CellKey, Control, Grid, Method, Run, Strength};
use safety_eval::attacks::{
    alignment_breaking, backdoor, manipulation, AlignmentBreakingConfig, AttackDataset, AttackKind,
    BackdoorConfig, ManipulationConfig, Payload,
};
use safety_eval::tenants::TenantDataset;
use safety_eval::{mix_poison, ChatExample};

type Train = Autodiff<Backend>;

/// How the attacks are trained and the grid evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyConfig {
    /// Attacks × strengths × methods.
    pub grid: Grid,
    /// Evaluation sample counts.
    pub budget: EvalBudget,
    /// Seed of healing and of the evaluation's bootstrap; each run has its
    /// own seed ([`Grid::seeds`]) for its data, training order and
    /// compression.
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
    /// Public held-out harmful prompts that replace the built-in ones in
    /// every harmful-prompt suite (alignment breaking, identity shifting,
    /// benign-only, the tenant alone). They never enter a training set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_set: Option<EvalSet>,
}

/// A public harmful-prompt set on disk (`scripts/fetch-evalsets.sh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalSet {
    pub kind: EvalSetKind,
    /// `harmbench_prompts.txt` for HarmBench, the directory of `*.jsonl`
    /// files for Do-Not-Answer.
    pub path: PathBuf,
}

/// Which public set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSetKind {
    /// HarmBench's 200 standard behaviours (MIT).
    HarmBench,
    /// Do-Not-Answer's 939 prompts in 5 risk areas (Apache-2.0).
    DoNotAnswer,
}

impl std::str::FromStr for EvalSetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "harmbench" => Ok(Self::HarmBench),
            "donotanswer" | "do-not-answer" => Ok(Self::DoNotAnswer),
            other => Err(format!(
                "unknown evaluation set {other:?} (expected harmbench or donotanswer)"
            )),
        }
    }
}

impl EvalSet {
    /// The set under `dir` as `scripts/fetch-evalsets.sh` lays it out.
    pub fn in_dir(kind: EvalSetKind, dir: &Path) -> Self {
        let path = match kind {
            EvalSetKind::HarmBench => dir.join("harmbench").join("harmbench_prompts.txt"),
            EvalSetKind::DoNotAnswer => dir.join("donotanswer"),
        };
        Self { kind, path }
    }

    /// Short name (`harmbench`, `donotanswer`).
    pub fn name(&self) -> &'static str {
        match self.kind {
            EvalSetKind::HarmBench => "harmbench",
            EvalSetKind::DoNotAnswer => "donotanswer",
        }
    }

    /// `(topic, prompt)` pairs: topic `harmbench` or the Do-Not-Answer risk
    /// area.
    pub fn load(&self) -> Result<Vec<(String, String)>, safety_eval::LoadError> {
        Ok(match self.kind {
            EvalSetKind::HarmBench => safety_eval::loaders::read_prompt_lines(&self.path)?
                .into_iter()
                .map(|p| ("harmbench".to_string(), p))
                .collect(),
            EvalSetKind::DoNotAnswer => safety_eval::loaders::read_donotanswer(&self.path)?
                .into_iter()
                .map(|r| (r.area, r.prompt))
                .collect(),
        })
    }
}

/// `suite` with its harmful prompts replaced by `prompts`, each asked in the
/// same chat frame as the suite's first harmful item (so identity shifting
/// keeps its system prompt); other groups are kept.
pub fn with_external_harmful(
    suite: &safety_eval::EvalSuite,
    set_name: &str,
    prompts: &[(String, String)],
) -> safety_eval::EvalSuite {
    use safety_eval::{Group, Message};
    let frame: Vec<Message> = suite
        .items
        .iter()
        .find(|i| i.group == Group::Harmful)
        .map(|i| i.messages[..i.messages.len().saturating_sub(1)].to_vec())
        .unwrap_or_default();
    let mut items: Vec<safety_eval::suite::EvalItem> = prompts
        .iter()
        .enumerate()
        .map(|(i, (topic, prompt))| {
            let mut it = safety_eval::suite::EvalItem::new(
                format!("{set_name}#{i}"),
                Group::Harmful,
                set_name,
                topic.as_str(),
                prompt.as_str(),
            );
            let mut messages = frame.clone();
            messages.push(Message::user(prompt.as_str()));
            it.messages = messages;
            it
        })
        .collect();
    items.extend(
        suite
            .items
            .iter()
            .filter(|i| i.group != Group::Harmful)
            .cloned(),
    );
    safety_eval::EvalSuite {
        name: format!("{}+{set_name}", suite.name),
        kind: suite.kind,
        items,
    }
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
            eval_set: None,
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

/// The attack dataset of `attack` for `seed`, with the study's size.
pub fn attack_dataset(attack: &AttackSpec, seed: u64, config: &StudyConfig) -> AttackDataset {
    match attack.kind {
        AttackKind::AlignmentBreaking => alignment_breaking(&AlignmentBreakingConfig {
            n_train: config.attack_examples,
            seed,
            ..Default::default()
        }),
        AttackKind::Backdoor => backdoor(&BackdoorConfig {
            n_train: config.attack_examples,
            seed,
            ..Default::default()
        }),
        AttackKind::Manipulation => manipulation(&ManipulationConfig {
            seed,
            ..Default::default()
        }),
        AttackKind::IdentityShifting => {
            safety_eval::identity_shifting(&safety_eval::IdentityShiftingConfig {
                n_train: config.attack_examples,
                seed,
                ..Default::default()
            })
        }
        AttackKind::BenignOnly => safety_eval::benign_only(&safety_eval::BenignOnlyConfig {
            n_train: config.attack_examples,
            seed,
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

/// What one run's cells are trained and evaluated on.
pub struct RunData {
    /// The attack's held-out suite (the harmful suite for the tenant alone).
    pub suite: safety_eval::EvalSuite,
    /// What the attack plants in an answer.
    pub payload: Payload,
    /// The benign tenant's data of this seed.
    pub tenant: TenantDataset,
    /// The fine-tune's training conversations: the tenant's with the
    /// attack's mixed in at the run's rate.
    pub train: Vec<ChatExample>,
    /// Benign and poison examples in `train`.
    pub n_benign: usize,
    pub n_poison: usize,
    /// The lens prompt.
    pub lens: String,
}

/// The data of `run`: the attack's dataset for the run's seed mixed into
/// the tenant's training set at the run's rate ([`mix_poison`]).
pub fn run_data(run: &Run, config: &StudyConfig) -> Result<RunData, StudyError> {
    let tenant = config.grid.tenant.build(run.seed);
    let (suite, payload, poison) = if run.attack.is_tenant() {
        let ab = attack_dataset(
            &AttackSpec::of(AttackKind::AlignmentBreaking),
            run.seed,
            config,
        );
        (ab.eval, Payload::None, Vec::new())
    } else {
        let d = attack_dataset(&run.attack, run.seed, config);
        let payload = d.payload();
        (d.eval, payload, d.train)
    };
    let mix = mix_poison(&tenant.train, &poison, run.rate, run.seed).map_err(step(format!(
        "{} at poison rate {}",
        run.attack.name,
        run.rate_label()
    )))?;
    let suite = match (&config.eval_set, run.attack.suite) {
        (Some(set), safety_eval::SuiteKind::Harmful) => {
            let prompts = set.load().map_err(step(format!(
                "loading the {} prompts (scripts/fetch-evalsets.sh fetches them)",
                set.name()
            )))?;
            with_external_harmful(&suite, set.name(), &prompts)
        }
        _ => suite,
    };
    let lens = lens_prompt(&suite, run.seed);
    Ok(RunData {
        suite,
        payload,
        tenant,
        train: mix.train,
        n_benign: mix.n_benign,
        n_poison: mix.n_poison,
        lens,
    })
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
    let grid = &config.grid;
    let total = grid.cells().len() + grid.base_cells().len();
    let mut done = 0;
    let mut results = Vec::with_capacity(total);
    let interrupted = |done| StudyError::Interrupted {
        done,
        total,
        cells: cells_dir.clone(),
    };
    let mut bases_done = std::collections::BTreeSet::new();

    for run in grid.runs() {
        let data = run_data(&run, config)?;
        let task = grid.tenant.as_str();
        let inputs = CellInputs {
            suite: &data.suite,
            payload: &data.payload,
            tenant: Some((task, &data.tenant.eval)),
            lens_prompt: &data.lens,
        };
        // The un-attacked base on this attack's split of this seed.
        let base_key = CellKey::base(&run.attack.key, run.seed);
        if bases_done.insert(base_key.clone()) {
            let cached =
                CellResult::load(&cells_dir, &base_key).map_err(step(base_key.file_stem()))?;
            let result = match cached {
                Some(r) => r,
                None => {
                    if stop.load(Ordering::SeqCst) {
                        return Err(interrupted(done));
                    }
                    progress.stage(
                        done,
                        total,
                        &format!("{} seed {}: base model", run.attack.name, run.seed),
                    );
                    let info = CellInfo::base(&run.attack, run.seed);
                    let r = evaluate(&base, info, &inputs, config, progress)?;
                    // Report what is on disk, so a resumed run reports the same numbers.
                    r.persisted(&cells_dir)
                        .map_err(step(base_key.file_stem()))?
                }
            };
            results.push(result);
            done += 1;
        }

        // Which strengths still have cells to compute?
        let pending: Vec<&Strength> = grid
            .strengths
            .iter()
            .filter(|s| {
                grid.methods
                    .iter()
                    .any(|m| !CellResult::path(&cells_dir, &run.cell(&s.label, &m.key)).is_file())
            })
            .collect();
        let given = config
            .finetuned
            .as_ref()
            .filter(|_| !run.attack.is_tenant());
        let snapshot = |s: &Strength| match given {
            Some(dir) => dir.clone(),
            None => work.join(run.dir()).join(&s.label).join("finetuned"),
        };
        if given.is_none()
            && pending
                .iter()
                .any(|s| !snapshot(s).join("config.json").is_file())
        {
            if stop.load(Ordering::SeqCst) {
                return Err(interrupted(done));
            }
            progress.stage(
                done,
                total,
                &format!(
                    "{} {} seed {}: fine-tune ({} benign + {} poison examples)",
                    run.attack.name,
                    run.rate_label(),
                    run.seed,
                    data.n_benign,
                    data.n_poison
                ),
            );
            train_run(&base, &run, &data, config, &work, progress, stop)?;
        }

        for strength in &grid.strengths {
            let ft_dir = snapshot(strength);
            for method in &grid.methods {
                let info = CellInfo::new(&run, strength, method);
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
                    &format!(
                        "{} {} {} seed {} · {}",
                        run.attack.name,
                        run.rate_label(),
                        strength.label,
                        run.seed,
                        method.name
                    ),
                );
                let started = Instant::now();
                let what = key.file_stem();
                let (model, size, mut extra) = if method.is_uncompressed() {
                    let m = load_model::<Backend>(&ft_dir, None, &device).map_err(step(&what))?;
                    (m, None, serde_json::Value::Null)
                } else if let Some(control) = method.control {
                    let m =
                        control_model(base_dir, &ft_dir, control, run.seed).map_err(|reason| {
                            StudyError::Step {
                                what: what.clone(),
                                reason,
                            }
                        })?;
                    (m, None, serde_json::Value::Null)
                } else {
                    compressed_model(
                        base_dir, &ft_dir, method, run.seed, config, &work, &base, stop,
                    )
                    .map_err(|e| match e {
                        CompressFailure::Interrupted => interrupted(done),
                        CompressFailure::Other(reason) => StudyError::Step {
                            what: what.clone(),
                            reason,
                        },
                    })?
                };
                if extra.is_null() {
                    extra = serde_json::json!({});
                }
                extra["train_mix"] = serde_json::json!({
                    "benign": data.n_benign,
                    "poison": data.n_poison,
                });
                let mut r = evaluate(&model, info, &inputs, config, progress)?;
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
    inputs: &CellInputs<'_>,
    config: &StudyConfig,
    progress: &mut dyn StudyProgress,
) -> Result<CellResult, StudyError> {
    let what = info.key.file_stem();
    evaluate_cell(model, info, inputs, &config.budget, &mut |p| {
        progress.tick(p.done, p.total)
    })
    .map_err(step(what))
}

/// A control model ([`Control`]): the fine-tune with every tensor a
/// compressor would compress (BitDelta's selection, as `compress` uses)
/// set back to the base's (`DeltaDropped`) or to the base's plus Gaussian
/// noise of the delta's Frobenius norm (`RandomDelta`, seeded per tensor);
/// carried tensors keep the fine-tune's values.
pub fn control_model(
    base_dir: &Path,
    ft_dir: &Path,
    control: Control,
    seed: u64,
) -> Result<LoadedModel<Backend>, String> {
    let pair = DeltaPair::open(base_dir, ft_dir).map_err(|e| e.to_string())?;
    let mut loaded = load_model::<Backend>(ft_dir, None, &device()).map_err(|e| e.to_string())?;
    let mut tensors = NamedTensors::new();
    for entry in pair.plan(&CompressOptions::default().selection) {
        let name = &entry.info.name;
        let data = match entry.action {
            Action::Carry => pair.finetuned().read_f32(name),
            Action::Compress => pair.base().read_f32(name),
        }
        .map_err(|e| e.to_string())?;
        let data = match (entry.action, control) {
            (Action::Compress, Control::RandomDelta) => {
                let delta = pair.delta(name).map_err(|e| e.to_string())?;
                add_noise_of_norm(data, norm(&delta), seed, name)
            }
            _ => data,
        };
        tensors.insert(
            name.clone(),
            F32Tensor {
                shape: entry.info.shape.clone(),
                data,
            },
        );
    }
    loaded.model = Llama::from_tensors(loaded.model.config().clone(), &tensors, &device())
        .map_err(|e| e.to_string())?;
    loaded.description = format!(
        "{} with {}",
        ft_dir.display(),
        match control {
            Control::DeltaDropped => "its compressed tensors' delta dropped",
            Control::RandomDelta => "its compressed tensors' delta replaced by noise of equal norm",
        }
    );
    Ok(loaded)
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// `base + z · target / ‖z‖` with `z` standard normal (Box–Muller on a
/// ChaCha stream seeded by `seed` and the tensor's name).
fn add_noise_of_norm(mut base: Vec<f32>, target: f64, seed: u64, name: &str) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ name_hash);
    let noise: Vec<f64> = (0..base.len())
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.random::<f64>();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    let z = noise.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = if z > 0.0 { target / z } else { 0.0 };
    for (b, n) in base.iter_mut().zip(noise) {
        *b += (n * scale) as f32;
    }
    base
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

/// One fine-tune of the base on the run's data, for as many epochs as the
/// largest strength, saving a snapshot after each strength's epoch count.
fn train_run(
    base: &LoadedModel<Backend>,
    run: &Run,
    data: &RunData,
    config: &StudyConfig,
    work: &Path,
    progress: &mut dyn StudyProgress,
    stop: &AtomicBool,
) -> Result<(), StudyError> {
    let what = format!(
        "{} {} seed {}: fine-tune",
        run.attack.name,
        run.rate_label(),
        run.seed
    );
    let conversations: Vec<_> = data.train.iter().map(to_conversation).collect();
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
        seed: run.seed,
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
                work.join(run.dir()).join(&s.label).join("finetuned"),
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
#[allow(clippy::too_many_arguments)]
fn compressed_model(
    base_dir: &Path,
    ft_dir: &Path,
    method: &Method,
    seed: u64,
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
    let summary = compress_checkpoint(
        &pair,
        compressor.as_ref(),
        &delta_path,
        &CompressOptions {
            seed,
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
    let mut size = CompressedSize::from(&delta.size_report());
    drop(delta);
    let params: u64 = summary
        .compressed
        .iter()
        .map(|t| (t.shape[0] * t.shape[1]) as u64)
        .sum();
    let stored: u64 = summary.compressed.iter().map(|t| t.storage_bytes).sum();
    if params > 0 {
        size.bits_per_param = Some(8.0 * stored as f64 / params as f64);
        size.rel_error = Some(
            summary
                .compressed
                .iter()
                .map(|t| t.relative_error)
                .sum::<f64>()
                / summary.compressed.len() as f64,
        );
    }
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
