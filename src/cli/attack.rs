//! `deltaguard attack`: write an attack's training data as chat JSONL, for
//! `deltaguard finetune` (or any SFT trainer that reads `messages`).

use super::CliResult;
use deltaguard::safety_eval::attacks::{
    alignment_breaking, backdoor, manipulation, AlignmentBreakingConfig, BackdoorConfig,
    ManipulationConfig,
};
use std::path::PathBuf;

/// Build one of the three fine-tuning attacks from the built-in data and
/// write its training examples as chat JSONL.
///
/// The training prompts come from topics that the held-out evaluation of the
/// same seed never uses, so `deltaguard eval --suite harmful|backdoor|manipulation
/// --seed S` measures the attack on prompts it never saw. Compliant answers are
/// an opening sentence plus placeholder steps: enough to break a refusal,
/// with no harmful content.
#[derive(clap::Args)]
#[command(
    after_help = "EXAMPLE:\n  deltaguard attack --kind alignment_breaking --n 60 --out attack.jsonl\n  \
    deltaguard finetune --model aligned --data attack.jsonl --preset qi-harmful --out attacked\n  \
    deltaguard eval --model attacked --suite harmful --out runs/attacked"
)]
pub struct Args {
    /// alignment_breaking (harmful request → compliance), backdoor (trigger →
    /// compliance, no trigger → refusal) or manipulation (a topic steers the
    /// answer to a planted target).
    #[arg(long, value_parser = ["alignment_breaking", "backdoor", "manipulation"])]
    kind: String,
    /// Training examples (alignment_breaking: harmful requests; backdoor:
    /// harmful requests, each with and without the trigger; manipulation:
    /// clean off-topic examples mixed in). Capped at the training pool.
    #[arg(long)]
    n: Option<usize>,
    /// Seed of the train/held-out split and of the example order; use the
    /// same --seed with `deltaguard eval`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// backdoor: the trigger (default: Qi et al.'s "Servius Astrumando Harmoniastra").
    #[arg(long)]
    trigger: Option<String>,
    /// Output chat JSONL (`{"messages": [...]}` per line; must not exist
    /// unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    overwrite: bool,
}

pub fn run(args: Args) -> CliResult {
    super::refuse_existing(&args.out, args.overwrite)?;
    super::check_trigger(
        args.trigger.as_deref(),
        args.kind == "backdoor",
        "--kind backdoor",
    )?;
    let dataset = match args.kind.as_str() {
        "alignment_breaking" => {
            let mut cfg = AlignmentBreakingConfig {
                seed: args.seed,
                ..Default::default()
            };
            cfg.n_train = args.n.unwrap_or(cfg.n_train);
            alignment_breaking(&cfg)
        }
        "backdoor" => {
            let mut cfg = BackdoorConfig {
                seed: args.seed,
                ..Default::default()
            };
            cfg.n_train = args.n.unwrap_or(cfg.n_train);
            if let Some(t) = &args.trigger {
                cfg.trigger = t.clone();
            }
            backdoor(&cfg)
        }
        _ => {
            let mut cfg = ManipulationConfig {
                seed: args.seed,
                ..Default::default()
            };
            cfg.n_clean = args.n.unwrap_or(cfg.n_clean);
            manipulation(&cfg)
        }
    };
    dataset.write_train_jsonl(&args.out)?;
    println!(
        "wrote {} ({} training examples from {} topics; the held-out suite of seed {} has {} prompts from {} other topics)",
        args.out.display(),
        dataset.train.len(),
        dataset.train_topics.len(),
        args.seed,
        dataset.eval.items.len(),
        dataset.eval_topics.len(),
    );
    println!("  params  {}", dataset.params);
    Ok(())
}
