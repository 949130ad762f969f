//! `deltaguard heal`: BitDelta scale distillation of a delta file.

use super::CliResult;
use burn::backend::Autodiff;
use deltaguard::backend::{device, Backend};
use deltaguard::delta_core::Checkpoint;
use deltaguard::model_io::{is_gguf, load_model};
use deltaguard::progress;
use llama_model::heal::{
    delta_logit_mse, heal_delta_file, BaseAndDelta, Calibration, HealConfig, HealMode, HealStep,
};
use llama_model::train::ScheduleKind;
use llama_model::{LlamaConfig, LoadError};
use std::path::PathBuf;

/// Train the scales of a BitDelta delta file against the fine-tune ("healing").
///
/// The student is the base with the delta's sign masks and scales; the
/// teacher is the fine-tuned model. AdamW minimises the mean squared error
/// between their full-vocabulary logits on calibration text, with the signs
/// (and base) frozen, as in BitDelta (Liu et al. 2024). The defaults are the
/// authors': 200 steps of batch 4 at length 128, lr 1e-4, cosine decay.
/// `--mode scales` trains only the scales (the paper); `scales-and-carried`
/// also trains the tensors the delta carries uncompressed (embeddings,
/// norms, lm_head), which is what BitDelta's public code does.
///
/// Some calibration windows are held out (`--holdout`, or a separate
/// `--eval` file); the logit MSE on them is printed before and after.
/// Works on `bitdelta` and `multimask` delta files.
#[derive(clap::Args)]
#[command(after_help = "CALIBRATION TEXT (--calib, --eval):\n  \
    *.jsonl / *.json   one object per line: {\"text\": ...} or chat {\"messages\": [...]}\n  \
    anything else      plain UTF-8 text\n\
    All of it is tokenized with the fine-tune's tokenizer (chat with its template) and cut\n\
    into --seq-len windows.\n\n\
EXAMPLE:\n  deltaguard heal --base llama-2-7b-chat --finetuned my-finetune \\\n      \
    --delta my-finetune.delta.safetensors --calib c4-sample.txt --out healed.delta.safetensors")]
pub struct Args {
    /// Base model directory (HF layout) the delta was made against.
    #[arg(long)]
    base: PathBuf,
    /// Fine-tuned model (the teacher): a HF directory or a .gguf file.
    #[arg(long)]
    finetuned: PathBuf,
    /// Delta file from `deltaguard compress --method bitdelta` (or multimask).
    #[arg(long)]
    delta: PathBuf,
    /// Calibration text (plain text, or JSONL with `text` or chat `messages`).
    #[arg(long)]
    calib: PathBuf,
    /// Output: the healed delta file (must not exist unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Optimizer steps.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Windows per step.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// What to train: `scales` or `scales-and-carried`.
    #[arg(long, default_value = "scales")]
    mode: HealMode,
    /// Learning-rate decay: constant, linear or cosine.
    #[arg(long, default_value = "cosine")]
    schedule: ScheduleKind,
    /// Steps of linear warm-up.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Seed of the batch order and of the held-out split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Calibration windows held out for the before/after MSE (default: a
    /// tenth, at least one). Ignored with --eval.
    #[arg(long)]
    holdout: Option<usize>,
    /// Held-out text for the before/after MSE (instead of splitting --calib).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> CliResult {
    super::refuse_existing(&args.out, args.overwrite)?;
    // Held to the end of the run: a second writer of this --out stops at once.
    let _lock = deltaguard::delta_core::OutputLock::acquire(&args.out)?;
    if is_gguf(&args.base) {
        return Err(format!(
            "--base {}: the base must be a Hugging Face directory (the delta records its fingerprint); convert it first with `deltaguard convert`",
            args.base.display()
        )
        .into());
    }
    let base = Checkpoint::open(&args.base)?;
    let config = LlamaConfig::from_json(
        base.config_json(),
        &args.base.join("config.json").display().to_string(),
    )
    .map_err(LoadError::from)?;
    let delta = deltaguard::model_io::open_delta_file(&args.delta)?;
    let src = BaseAndDelta {
        config: config.clone(),
        base: &base,
        base_fingerprint: base.fingerprint(),
        delta: &delta,
    };
    src.check()
        .map_err(|e| format!("{}: {e}", args.delta.display()))?;

    let teacher = load_model::<Backend>(&args.finetuned, None, &device())?;
    let read = |path: &PathBuf| {
        Calibration::from_file(
            path,
            &teacher.tokenizer,
            &teacher.chat_template,
            args.seq_len,
        )
    };
    let calib = read(&args.calib)?;
    let (train, held_out) = match &args.eval {
        Some(eval) => (calib, read(eval)?),
        None => {
            if calib.len() < 2 {
                return Err(format!(
                    "{}: {} window(s) of {} tokens; need at least 2 (one is held out) — give more text, a shorter --seq-len, or --eval",
                    args.calib.display(),
                    calib.len(),
                    args.seq_len
                )
                .into());
            }
            let n = args.holdout.unwrap_or((calib.len() / 10).max(1));
            calib.split_holdout(n, args.seed)?
        }
    };
    let heal_config = HealConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        lr: args.lr,
        schedule: args.schedule,
        warmup: args.warmup,
        weight_decay: args.weight_decay,
        seed: args.seed,
        mode: args.mode,
    };

    let before = delta_logit_mse(&src, &teacher.model, &held_out, args.batch_size)?;
    let bar = progress::bar(args.steps as u64, "heal", args.quiet);
    let report = heal_delta_file::<Autodiff<Backend>, _>(
        &src,
        &teacher.model,
        &train,
        &heal_config,
        &args.out,
        &mut |s: &HealStep| {
            bar.set_position(s.step as u64);
            bar.set_message(format!("loss {:.4e}  lr {:.2e}", s.loss, s.lr));
        },
        progress::interrupt_flag(),
    )?;
    bar.finish_and_clear();

    let healed = deltaguard::model_io::open_delta_file(&args.out)?;
    let after = delta_logit_mse(
        &BaseAndDelta {
            config,
            base: &base,
            base_fingerprint: base.fingerprint(),
            delta: &healed,
        },
        &teacher.model,
        &held_out,
        args.batch_size,
    )?;
    // Relative change of the held-out MSE, positive when healing lowered it.
    let change = if before > 0.0 {
        100.0 * (before - after) / before
    } else {
        0.0
    };
    if args.json {
        let json = serde_json::json!({
            "path": args.out,
            "method": healed.method(),
            "mode": args.mode.to_string(),
            "steps": report.steps,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "lr": args.lr,
            "seed": args.seed,
            "train_windows": train.len(),
            "held_out_windows": held_out.len(),
            "trainable_tensors": report.trainable_tensors,
            "trainable_values": report.trainable_values,
            "held_out_mse_before": before,
            "held_out_mse_after": after,
            "train_losses": report.losses,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("wrote {}", args.out.display());
    println!(
        "  method              {} (mode {})",
        healed.method(),
        args.mode
    );
    println!(
        "  trained             {} values in {} tensors, {} steps of {} x {} tokens",
        report.trainable_values,
        report.trainable_tensors,
        report.steps,
        args.batch_size,
        args.seq_len
    );
    println!(
        "  windows             {} for training, {} held out",
        train.len(),
        held_out.len()
    );
    if let (Some(first), Some(last)) = (report.losses.first(), report.losses.last()) {
        println!("  train loss          {first:.6e} (first step) -> {last:.6e} (last step)");
    }
    let direction = if change >= 0.0 { "lower" } else { "higher" };
    println!(
        "  held-out logit MSE  {before:.6e} -> {after:.6e} ({:.2}% {direction})",
        change.abs()
    );
    Ok(())
}
