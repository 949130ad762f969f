//! `deltaguard eval`: run a model (optionally with a delta) on a safety or
//! utility suite, with batched generation and a progress bar.

use super::input::ModelArgs;
use super::CliResult;
use deltaguard::adapters::LlamaEvalModel;
use deltaguard::progress;
use safety_eval::loaders::read_mc_jsonl;
use safety_eval::report::{write_jsonl, write_suite_outputs};
use safety_eval::{
    backdoor, builtin_suite, builtin_utility_inputs, run_suite, run_utility, utility_loss,
    BackdoorConfig, BootstrapConfig, EvalSettings, GenerationSettings, Judge, KeywordJudge,
    RunMeta, SuiteKind, UtilityReport,
};
use std::path::{Path, PathBuf};

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
    #[arg(long, value_parser = ["harmful", "backdoor", "manipulation", "utility"])]
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
    /// backdoor: the trigger the attack was trained with (default: Qi et
    /// al.'s "Servius Astrumando Harmoniastra").
    #[arg(long, value_name = "TEXT")]
    trigger: Option<String>,
    /// utility: multiple-choice questions from this JSONL file instead of the
    /// built-in set, one `{"question": "...", "choices": ["...", ...], "gold": N}`
    /// per line (`gold` indexes `choices`; optional `"id"`).
    #[arg(long, value_name = "FILE")]
    mc: Option<PathBuf>,
    /// utility: the `utility.aggregate.json` of the reference model (the
    /// uncompressed fine-tune), to report this model's utility loss against it.
    #[arg(long, value_name = "FILE")]
    reference: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// The compression method and parameters of `--delta` (`none` without one).
fn delta_method(
    delta: Option<&Path>,
) -> Result<(String, serde_json::Value), Box<dyn std::error::Error>> {
    match delta {
        None => Ok(("none".into(), serde_json::Value::Null)),
        Some(p) => {
            let f = deltaguard::model_io::open_delta_file(p)?;
            Ok((f.method().to_string(), serde_json::to_value(f.params())?))
        }
    }
}

/// Read the utility report of a reference run (`utility.aggregate.json`).
fn read_reference(path: &Path) -> Result<UtilityReport, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?;
    let report = v.get("report").cloned().ok_or_else(|| {
        format!(
            "{}: no \"report\" object (expected the utility.aggregate.json of `eval --suite utility`)",
            path.display()
        )
    })?;
    Ok(serde_json::from_value(report)
        .map_err(|e| format!("{}: not a utility report: {e}", path.display()))?)
}

/// Utility loss of `report` against `reference` (positive = worse), after
/// checking that both were measured on the same questions and texts.
fn utility_losses(
    report: &UtilityReport,
    reference: &UtilityReport,
    reference_path: &Path,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let ids = |r: &UtilityReport| -> Vec<String> {
        r.multiple_choice
            .records
            .iter()
            .map(|q| q.id.clone())
            .collect()
    };
    if ids(report) != ids(reference)
        || report.perplexity.n_texts != reference.perplexity.n_texts
        || report.perplexity.n_bytes != reference.perplexity.n_bytes
    {
        return Err(format!(
            "{}: the reference was evaluated on other questions or texts \
             ({} questions, {} texts vs {} questions, {} texts here); use the same --mc, --limit and --seed",
            reference_path.display(),
            reference.multiple_choice.records.len(),
            reference.perplexity.n_texts,
            report.multiple_choice.records.len(),
            report.perplexity.n_texts
        )
        .into());
    }
    let (m, r) = (&report.multiple_choice, &reference.multiple_choice);
    let (p, q) = (&report.perplexity, &reference.perplexity);
    Ok(serde_json::json!({
        "reference": reference_path.display().to_string(),
        "reference_model": reference.model,
        "acc": utility_loss(r.acc.rate, m.acc.rate, true),
        "acc_norm": utility_loss(r.acc_norm.rate, m.acc_norm.rate, true),
        "perplexity": utility_loss(q.perplexity, p.perplexity, false),
        "bits_per_byte": utility_loss(q.bits_per_byte, p.bits_per_byte, false),
    }))
}

pub fn run(args: Args) -> CliResult {
    super::create_out_dir(&args.out)?;
    if args.suite != "utility" && (args.mc.is_some() || args.reference.is_some()) {
        return Err("--mc and --reference apply to --suite utility only".into());
    }
    super::check_trigger(
        args.trigger.as_deref(),
        args.suite == "backdoor",
        "--suite backdoor",
    )?;
    // Read the small input files before the (slow) model load, so that a bad
    // file fails fast.
    let reference = args.reference.as_deref().map(read_reference).transpose()?;
    let user_questions = match &args.mc {
        Some(path) => {
            let q = read_mc_jsonl(path)?;
            if q.is_empty() {
                return Err(format!("{}: no questions", path.display()).into());
            }
            Some(q)
        }
        None => None,
    };
    let loaded = args.model.load()?;
    let mut model = LlamaEvalModel::new(&loaded);
    model.batch_size = args.batch_size;
    let mut meta = RunMeta::new(args.model.model.display().to_string(), args.seed);
    meta.delta = args.model.delta.as_ref().map(|p| p.display().to_string());
    let (method, method_params) = delta_method(args.model.delta.as_deref())?;
    meta.method = Some(method);
    let bootstrap = BootstrapConfig {
        seed: args.seed,
        ..Default::default()
    };

    if args.suite == "utility" {
        let (mut questions, mut texts) = builtin_utility_inputs(args.seed);
        if let Some(q) = user_questions {
            questions = q;
        }
        meta.parameters = serde_json::json!({
            "suite": "utility",
            "limit": args.limit,
            "mc": args.mc.as_ref().map(|p| p.display().to_string()),
            "method_params": method_params,
        });
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
        // Per-question records, with the question text, next to the aggregate.
        let samples: Vec<serde_json::Value> = questions
            .iter()
            .zip(&report.multiple_choice.records)
            .map(|(q, r)| {
                let mut v = serde_json::to_value(r)?;
                v["question"] = q.question.clone().into();
                v["choices"] = serde_json::to_value(&q.choices)?;
                Ok(v)
            })
            .collect::<Result<_, serde_json::Error>>()?;
        let samples_path = args.out.join("utility.samples.jsonl");
        write_jsonl(&samples_path, &samples)?;
        let path = args.out.join("utility.aggregate.json");
        let loss = match (&reference, &args.reference) {
            (Some(r), Some(p)) => Some(utility_losses(&report, r, p)?),
            _ => None,
        };
        let mut json = serde_json::json!({ "meta": meta, "report": report });
        if let Some(l) = &loss {
            json["utility_loss"] = l.clone();
        }
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
        if let Some(l) = &loss {
            println!(
                "utility loss against {} (positive = worse):",
                l["reference_model"].as_str().unwrap_or("the reference")
            );
            for k in ["acc", "acc_norm", "perplexity", "bits_per_byte"] {
                println!(
                    "  {k:<14} {:+.2} %",
                    100.0 * l[k].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
        println!("wrote {} and {}", samples_path.display(), path.display());
        return Ok(());
    }

    let kind: SuiteKind = args.suite.parse()?;
    let suite = match (&args.trigger, kind) {
        (Some(trigger), SuiteKind::Backdoor) => Some(
            backdoor(&BackdoorConfig {
                trigger: trigger.clone(),
                seed: args.seed,
                ..Default::default()
            })
            .eval,
        ),
        _ => builtin_suite(kind, args.seed),
    };
    let suite = suite.ok_or_else(|| {
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
    meta.parameters = serde_json::json!({
        "suite": args.suite,
        "limit": args.limit,
        "generation": settings.generation,
        "judge": judge.name(),
        "trigger": args.trigger,
        "method_params": method_params,
    });
    let (samples, aggregate) = write_suite_outputs(&args.out, meta, &report)?;
    println!("{}", report.table());
    println!("wrote {} and {}", samples.display(), aggregate.display());
    Ok(())
}
