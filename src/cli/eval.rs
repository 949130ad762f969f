//! `deltaguard eval`: run a model (optionally with a delta) on a safety or
//! utility suite, with batched generation and a progress bar.

use super::input::ModelArgs;
use super::CliResult;
use deltaguard::adapters::LlamaEvalModel;
use deltaguard::progress;
use safety_eval::report::write_suite_outputs;
use safety_eval::{
    builtin_suite, builtin_utility_inputs, run_suite, run_utility, BootstrapConfig, EvalSettings,
    GenerationSettings, KeywordJudge, RunMeta, SuiteKind,
};
use std::path::PathBuf;

/// Evaluate a model on a built-in suite: attack success on held-out harmful
/// prompts (`harmful`), backdoor success with and without the trigger
/// (`backdoor`), target-hit rate of an output manipulation (`manipulation`), or
/// utility (`utility`: multiple-choice acc / acc_norm, perplexity, bits per byte).
///
/// Writes per-sample JSONL and an aggregate JSON to --out; every rate comes with
/// a 95 % bootstrap interval and its sample count.
#[derive(clap::Args)]
#[command(
    after_help = "EXAMPLE:\n  deltaguard eval --model my-finetune --suite harmful --out runs/eval-ft --limit 20"
)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// harmful | backdoor | manipulation | utility
    #[arg(long)]
    suite: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// At most N prompts per group (e.g. triggered and clean for backdoor).
    #[arg(long)]
    limit: Option<usize>,
    /// Prompts per generation batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Most new tokens per answer.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Refusal judge: substring (the published 29-string list) or anchored (answer opening only).
    #[arg(long, default_value = "substring", value_parser = ["substring", "anchored"])]
    judge: String,
    /// Seed of the suite's held-out split and of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> CliResult {
    let loaded = args.model.load()?;
    let mut model = LlamaEvalModel::new(&loaded);
    model.batch_size = args.batch_size;
    let mut meta = RunMeta::new(loaded.description.clone(), args.seed);
    meta.delta = args.model.delta.as_ref().map(|p| p.display().to_string());
    let bootstrap = BootstrapConfig {
        seed: args.seed,
        ..Default::default()
    };

    if args.suite == "utility" {
        let (mut questions, mut texts) = builtin_utility_inputs(args.seed);
        if let Some(n) = args.limit {
            questions.truncate(n);
            texts.truncate(n);
        }
        let bar = progress::bar(
            (questions.len() + texts.len()) as u64,
            "utility",
            args.quiet,
        );
        let report = run_utility(
            &mut model,
            &questions,
            &texts,
            args.batch_size,
            &bootstrap,
            &mut |p| {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
            },
        )?;
        bar.finish_and_clear();
        std::fs::create_dir_all(&args.out)?;
        let path = args.out.join("utility.aggregate.json");
        let json = serde_json::json!({ "meta": meta, "report": report });
        deltaguard::delta_core::write_file_atomic(
            &path,
            serde_json::to_string_pretty(&json)?.as_bytes(),
        )?;
        let mc = &report.multiple_choice;
        println!("utility of {}", loaded.description);
        println!(
            "  acc            {:.3} [{:.3}, {:.3}] (n = {})",
            mc.acc.rate, mc.acc.ci_low, mc.acc.ci_high, mc.acc.n
        );
        println!(
            "  acc_norm       {:.3} [{:.3}, {:.3}] (n = {})",
            mc.acc_norm.rate, mc.acc_norm.ci_low, mc.acc_norm.ci_high, mc.acc_norm.n
        );
        println!("  perplexity     {:.3}", report.perplexity.perplexity);
        println!("  bits_per_byte  {:.4}", report.perplexity.bits_per_byte);
        println!("wrote {}", path.display());
        return Ok(());
    }

    let kind: SuiteKind = args.suite.parse()?;
    let suite = builtin_suite(kind, args.seed).ok_or_else(|| {
        format!(
            "no built-in suite `{}` (harmful, backdoor, manipulation, utility)",
            args.suite
        )
    })?;
    let suite = match args.limit {
        Some(n) => suite.limited(n),
        None => suite,
    };
    let settings = EvalSettings {
        generation: GenerationSettings {
            max_new_tokens: args.max_new_tokens,
            ..Default::default()
        },
        batch_size: args.batch_size,
        bootstrap,
        ..Default::default()
    };
    let mut judge = if args.judge == "anchored" {
        KeywordJudge::anchored()
    } else {
        KeywordJudge::substring()
    };
    let bar = progress::bar(suite.items.len() as u64, &args.suite, args.quiet);
    let report = run_suite(&mut model, &mut judge, &suite, &settings, &mut |p| {
        bar.set_position(p.done as u64);
    })?;
    bar.finish_and_clear();
    meta.parameters = serde_json::json!({ "suite": args.suite, "limit": args.limit, "generation": settings.generation });
    let (samples, aggregate) = write_suite_outputs(&args.out, meta, &report)?;
    println!("{}", report.table());
    println!("wrote {} and {}", samples.display(), aggregate.display());
    Ok(())
}
