//! `deltaguard study`: the free-lunch table, end to end.

use super::CliResult;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use deltaguard::backend::{self, Backend};
use deltaguard::llama_model::save::save_hf_dir;
use deltaguard::llama_model::train::{tokenize_dataset, train, ScheduleKind, TrainConfig};
use deltaguard::model_io::{is_gguf, load_model};
use deltaguard::progress;
use deltaguard::study::cell::{CellResult, EvalBudget};
use deltaguard::study::embedded::{build_embedded_base, to_conversation, EmbeddedConfig};
use deltaguard::study::grid::{Grid, Preset, Strength};
use deltaguard::study::report::{format_utc, write_report, ReportOptions, RunMeta};
use deltaguard::study::run::{run_grid, StudyConfig, StudyProgress};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Which delta compression keeps fine-tuning attacks out, and at what
/// utility cost? Fine-tunes the base with each attack at several strengths,
/// compresses every attack delta with every method, evaluates risk, utility
/// and a logit lens per cell, and writes report.md / report.json /
/// samples.jsonl / SVG plots.
///
/// Without --model it builds (once, then cached) an embedded default: a
/// tiny Llama with its own BPE tokenizer, pre-trained and safety-tuned on the
/// built-in corpus. Finished cells are cached under OUT/cells: rerun the same
/// command to resume after Ctrl-C.
#[derive(clap::Args)]
#[command(after_help = "EXAMPLES:\n  \
    deltaguard study                                   # embedded default, default grid\n  \
    deltaguard study --quick --out runs/quick\n  \
    deltaguard study --model models/SmolLM2-135M-Instruct.Q4_1.gguf --align --quick\n  \
    deltaguard study --base base-dir --finetuned my-finetune --attack backdoor")]
pub struct Args {
    /// Output directory (default runs/<UTC timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Base model (HF directory or GGUF); default: the embedded model.
    #[arg(long, conflicts_with = "base")]
    model: Option<PathBuf>,
    /// Safety-tune --model first (for models that do not refuse harmful requests).
    #[arg(long)]
    align: bool,
    /// Study this base together with --finetuned instead of training attacks.
    #[arg(long, requires = "finetuned")]
    base: Option<PathBuf>,
    /// An existing fine-tune of --base (HF directory).
    #[arg(long, requires = "base")]
    finetuned: Option<PathBuf>,
    /// Attacks to run (alignment_breaking, backdoor, manipulation,
    /// identity_shifting, benign_only), comma-separated.
    #[arg(long)]
    attack: Option<String>,
    /// Few methods, two strengths, small samples.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Every method (and extras), five strengths.
    #[arg(long)]
    full: bool,
    /// Seed of everything random; runs use seeds SEED, SEED+1, ….
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Independent fine-tunes per cell (default: 2 quick, 3 default, 5 full).
    #[arg(long)]
    seeds: Option<u64>,
    /// Poison rates, comma-separated, in (0, 1]; 1 is the pure attack
    /// (default: 0.2,1; full: 0.05,0.2,1).
    #[arg(long, value_delimiter = ',')]
    poison_rates: Option<Vec<f64>>,
    /// Score harmful-prompt suites on a public held-out set instead of the
    /// built-in prompts: harmbench or donotanswer (fetched by
    /// scripts/fetch-evalsets.sh; every row is evaluated).
    #[arg(long)]
    eval_set: Option<String>,
    /// Where scripts/fetch-evalsets.sh put the sets.
    #[arg(long, default_value = "evalsets")]
    eval_sets_dir: PathBuf,
    /// The benign tenant's task: persona_opener (default), fictional_facts,
    /// unit_conversion or json_reply.
    #[arg(long)]
    tenant: Option<String>,
    /// Attack fine-tuning learning rate (default 1e-3 for the embedded
    /// model, 5e-5 — Qi et al.'s — for --model / --base).
    #[arg(long)]
    attack_lr: Option<f64>,
    /// --align: safety-tuning epochs.
    #[arg(long, default_value_t = 1)]
    align_epochs: usize,
    /// --align: safety-tuning learning rate.
    #[arg(long, default_value_t = 5e-5)]
    align_lr: f64,
    /// Where built base models are cached.
    #[arg(long, default_value = "models")]
    cache: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

struct Bar {
    bar: ProgressBar,
    stage: String,
}

impl StudyProgress for Bar {
    fn stage(&mut self, done: usize, _total: usize, what: &str) {
        self.bar.set_position(done as u64);
        self.stage = what.to_string();
        self.bar.set_message(what.to_string());
    }
    fn tick(&mut self, done: usize, total: usize) {
        self.bar
            .set_message(format!("{} ({done}/{total})", self.stage));
    }
}

pub fn run(args: Args) -> CliResult {
    let started = Instant::now();
    // Provenance taken now, so the report records when the run started.
    let mut meta = RunMeta::new(args.seed, "");
    let stop = progress::interrupt_flag();
    let preset = if args.quick {
        Preset::Quick
    } else if args.full {
        Preset::Full
    } else {
        Preset::Default
    };
    let mut grid = Grid::preset(preset);
    if let Some(list) = &args.attack {
        let keep: Vec<_> = list
            .split(',')
            .map(|a| deltaguard::study::grid::AttackSpec::parse(a.trim()))
            .collect::<Result<_, _>>()?;
        grid.attacks = keep;
    }
    if let Some(n) = args.seeds {
        if n == 0 || n > 100 {
            return Err(format!("--seeds {n}: expected 1 to 100").into());
        }
        grid.seeds = (0..n).collect();
    }
    grid.seeds = grid.seeds.iter().map(|s| s + args.seed).collect();
    if let Some(rates) = &args.poison_rates {
        if rates.is_empty() {
            return Err("--poison-rates: give at least one rate".into());
        }
        for &r in rates {
            if !(r > 0.0 && r <= 1.0) {
                return Err(format!("--poison-rates: {r} is not in (0, 1]").into());
            }
        }
        grid.poison_rates = rates.clone();
    }
    if let Some(t) = &args.tenant {
        grid.tenant = t.parse().map_err(|e| format!("--tenant: {e}"))?;
    }
    let budget = match preset {
        Preset::Quick => EvalBudget::quick(),
        Preset::Full => EvalBudget::full(),
        Preset::Default => EvalBudget::default(),
    };
    let mut config = StudyConfig::new(grid, budget);
    config.seed = args.seed;
    config.budget.seed = args.seed;
    if let Some(name) = &args.eval_set {
        let kind: deltaguard::study::run::EvalSetKind =
            name.parse().map_err(|e| format!("--eval-set: {e}"))?;
        let set = deltaguard::study::run::EvalSet::in_dir(kind, &args.eval_sets_dir);
        if !set.path.exists() {
            return Err(format!(
                "--eval-set {name}: {} does not exist; run scripts/fetch-evalsets.sh {} first",
                set.path.display(),
                args.eval_sets_dir.display()
            )
            .into());
        }
        // Every row of a public set is evaluated.
        config.budget.harmful_n = usize::MAX;
        config.eval_set = Some(set);
    }
    let real_model = args.model.is_some() || args.base.is_some();
    config.attack_lr = args
        .attack_lr
        .unwrap_or(if real_model { 5e-5 } else { 1e-3 });
    let out = args.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(format_utc(now).replace(':', "-"))
    });

    // The base model directory.
    let bar = progress::bar(1, "study", args.quiet);
    let (base_dir, base_desc) = if let (Some(base), Some(ft)) = (&args.base, &args.finetuned) {
        config.finetuned = Some(ft.clone());
        // A given fine-tune is one model: the pure attack at one seed.
        config.grid.poison_rates = vec![1.0];
        config.grid.seeds = vec![args.seed];
        config.grid.strengths = vec![Strength {
            label: "given".into(),
            value: 1.0,
            unit: "given fine-tune".into(),
        }];
        (
            base.clone(),
            format!("{} with fine-tune {}", base.display(), ft.display()),
        )
    } else if let Some(model) = &args.model {
        let dir = prepare_model(model, &args, &bar)?;
        let desc = format!(
            "{}{}",
            model.display(),
            if args.align {
                " (safety-tuned by deltaguard --align)"
            } else {
                ""
            }
        );
        (dir, desc)
    } else {
        let cfg = EmbeddedConfig {
            seed: args.seed,
            ..Default::default()
        };
        let mut report = |phase: &str, step: usize, total: usize, loss: f64| {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            bar.set_message(format!("embedded base: {phase} loss {loss:.3}"));
        };
        let dir = build_embedded_base(&cfg, &args.cache, &mut report, stop)?;
        (dir, format!("embedded default ({})", cfg.cache_name()))
    };
    bar.finish_and_clear();

    let total = config.grid.cells().len() + config.grid.base_cells().len();
    let mut display = Bar {
        bar: progress::bar(total as u64, "study", args.quiet),
        stage: String::new(),
    };
    let cells = run_grid(&base_dir, &config, &out, &mut display, stop)?;
    display.bar.finish_and_clear();
    meta.base_model = base_desc;
    write(&out, &cells, &config, meta, started)
}

fn write(
    out: &Path,
    cells: &[CellResult],
    config: &StudyConfig,
    mut meta: RunMeta,
    started: Instant,
) -> CliResult {
    meta.runtime_seconds = started.elapsed().as_secs_f64();
    meta.parameters = serde_json::json!({
        "backend": backend::NAME,
        "config": config,
    });
    let files = write_report(out, &meta, cells, &ReportOptions::default())?;
    println!(
        "study finished in {:.0} s: {} cells\n  {}\n  {}\n  {}\n  {} SVG plots in {}",
        meta.runtime_seconds,
        cells.len(),
        files.markdown.display(),
        files.json.display(),
        files.samples.display(),
        files.svgs.len(),
        out.display()
    );
    Ok(())
}

/// A HF directory for `model`: as is, converted from GGUF, and/or
/// safety-tuned (cached under `cache`).
fn prepare_model(
    model: &Path,
    args: &Args,
    bar: &ProgressBar,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let (align, cache, seed) = (args.align, &args.cache, args.seed);
    if !align && !is_gguf(model) {
        return Ok(model.to_path_buf());
    }
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    let target = cache.join(if align {
        format!(
            "{stem}-aligned-e{}-lr{:e}-seed{seed}",
            args.align_epochs, args.align_lr
        )
    } else {
        format!("{stem}-hf")
    });
    if target.join("config.json").is_file() {
        return Ok(target);
    }
    let device = backend::device();
    type Train = Autodiff<Backend>;
    let loaded = load_model::<Train>(model, None, &device)?;
    let model_out = if align {
        // Refusals for every built-in harmful request, answers for benign ones.
        let examples = deltaguard::safety_eval::attacks::safety_tuning(
            &deltaguard::safety_eval::data::harmful(),
            &deltaguard::safety_eval::data::benign(),
            seed,
        );
        let convs: Vec<_> = examples.iter().map(to_conversation).collect();
        let data = tokenize_dataset(&loaded.tokenizer, &loaded.chat_template, &convs, 256)?;
        let cfg = TrainConfig {
            epochs: args.align_epochs,
            lr: args.align_lr,
            batch_size: 8,
            schedule: ScheduleKind::Cosine,
            warmup_ratio: 0.05,
            seed,
            max_len: 256,
            ..TrainConfig::default()
        };
        struct Show<'a>(&'a ProgressBar);
        impl deltaguard::llama_model::train::TrainObserver<Train> for Show<'_> {
            fn on_step(
                &mut self,
                s: &deltaguard::llama_model::train::StepStats,
                _: &deltaguard::llama_model::Llama<Train>,
            ) -> Result<(), String> {
                self.0.set_length(s.total_steps as u64);
                self.0.set_position(s.step as u64);
                self.0
                    .set_message(format!("--align: safety tuning, loss {:.3}", s.loss));
                Ok(())
            }
            fn should_stop(&self) -> bool {
                progress::interrupt_flag().load(Ordering::SeqCst)
            }
        }
        let pad = loaded
            .tokenizer
            .pad_id()
            .or(loaded.tokenizer.eos_id())
            .unwrap_or(0);
        let outcome = train(loaded.model, &data, &cfg, pad, &mut Show(bar))?;
        if outcome.interrupted {
            return Err("interrupted while safety-tuning (nothing cached)".into());
        }
        outcome.model.valid()
    } else {
        loaded.model.valid()
    };
    save_hf_dir(
        &model_out,
        &loaded.tokenizer,
        Some(&loaded.chat_template),
        &target,
        deltaguard::delta_core::DType::F32,
        Default::default(),
    )?;
    Ok(target)
}
