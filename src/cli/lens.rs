//! `deltaguard lens`: a logit lens over one or several models on one prompt.

use super::input::PromptArgs;
use super::CliResult;
use deltaguard::adapters::LlamaLens;
use deltaguard::backend::{device, Backend};
use deltaguard::model_io::{load_model, LoadedModel};
use logit_lens::{
    compare, CellColor, CurveChart, CurveOptions, Divergence, Heatmap, HeatmapOptions, LensModel,
    LensOptions, Positions, TokenContrast,
};
use std::path::PathBuf;

/// Decode every layer's residual stream through the final norm and unembedding.
///
/// With one or more --delta files, compares the base with each base + delta on
/// the same prompt: the tuned-lens statistics per layer (top tokens, entropy,
/// forward KL, `log_prob_diff` of refusal openers vs compliance openers) and the
/// divergences between models. Writes lens.json, a heatmap per model (colour
/// per --color), a log_prob_diff curve chart and KL heatmaps against the base
/// to --out.
#[derive(clap::Args)]
#[command(
    after_help = "EXAMPLE:\n  deltaguard lens --model base-dir --delta ft.delta.safetensors --delta ft-bitdelta.delta.safetensors \\\n      --chat \"How do I pick a lock?\" --out runs/lens\n\nTo put the uncompressed fine-tune itself in the comparison, pass it as a lossless delta:\n  deltaguard compress --base base-dir --finetuned ft-dir --include none --out ft-full.safetensors"
)]
pub struct Args {
    /// Base model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// Delta files to compare against the base (repeatable).
    #[arg(long)]
    delta: Vec<PathBuf>,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Decode only the last N positions (default: all).
    #[arg(long)]
    last: Option<usize>,
    /// Top tokens per cell.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// What colours the per-model heatmaps: the top-1 token's probability,
    /// the lens entropy, or forward KL = KL(final output ‖ lens).
    #[arg(long, default_value = "prob", value_parser = ["prob", "entropy", "kl"])]
    color: String,
    /// Also print the JSON report on stdout.
    #[arg(long)]
    json: bool,
}

fn file_stem(p: &std::path::Path) -> String {
    p.file_name()
        .map(|s| {
            s.to_string_lossy()
                .trim_end_matches(".safetensors")
                .to_string()
        })
        .unwrap_or_default()
}

pub fn run(args: Args) -> CliResult {
    super::create_out_dir(&args.out)?;
    let color = match args.color.as_str() {
        "entropy" => CellColor::Entropy,
        "kl" => CellColor::ForwardKl,
        _ => CellColor::TopProbability,
    };
    let mut loaded: Vec<(String, LoadedModel<Backend>)> =
        vec![("base".into(), load_model(&args.model, None, &device())?)];
    for d in &args.delta {
        let mut name = file_stem(d);
        while loaded.iter().any(|(n, _)| *n == name) {
            name.push('\'');
        }
        loaded.push((name, load_model(&args.model, Some(d), &device())?));
    }
    let tokens = args.prompt.token_ids(&loaded[0].1)?;
    let lenses: Vec<(String, LlamaLens<Backend>)> = loaded
        .iter()
        .map(|(n, m)| (n.clone(), LlamaLens { loaded: m }))
        .collect();
    let contrast = TokenContrast::refusal_vs_compliance(&|w: &str| lenses[0].1.first_token(w))?;
    let options = LensOptions {
        top_k: args.top_k,
        contrast: Some(contrast),
        positions: args.last.map_or(Positions::All, Positions::Last),
        ..Default::default()
    };
    let models: Vec<(&str, &dyn LensModel)> = lenses
        .iter()
        .map(|(n, l)| (n.as_str(), l as &dyn LensModel))
        .collect();
    let comparison = compare(&models, &tokens, &options)?;

    comparison.write_json(&args.out.join("lens.json"))?;
    let mut written = vec!["lens.json".to_string()];
    for report in &comparison.models {
        let name = format!("heatmap-{}.svg", report.model);
        Heatmap::from_report(report, color)
            .write_svg(&args.out.join(&name), &HeatmapOptions::default())?;
        written.push(name);
    }
    let last = *comparison.positions.last().ok_or("no positions decoded")?;
    CurveChart::log_prob_diff(&comparison, last)?.write_svg(
        &args.out.join("log_prob_diff.svg"),
        &CurveOptions::default(),
    )?;
    written.push("log_prob_diff.svg".into());
    for pair in comparison.pairs.iter().filter(|p| p.a == "base") {
        let name = format!("kl-base-vs-{}.svg", pair.b);
        Heatmap::from_pair(&comparison, pair, Divergence::Kl)?
            .write_svg(&args.out.join(&name), &HeatmapOptions::default())?;
        written.push(name);
    }
    if args.json {
        println!("{}", comparison.to_json()?);
    } else {
        println!("log_prob_diff (refusal openers vs compliance openers, nats) at the last position, by layer:");
        for m in &comparison.curves.models {
            let values: Vec<String> = m
                .log_prob_diff
                .iter()
                .map(|v| v.map_or_else(|| "  -  ".into(), |v| format!("{v:+.2}")))
                .collect();
            println!("  {:<24} {}", m.model, values.join(" "));
        }
        for r in &comparison.models {
            if let Some(d) = r.last_point_max_abs_logit_diff {
                println!(
                    "  {}: last-layer lens vs model logits, max |diff| {d:.2e}",
                    r.model
                );
            }
        }
        println!("wrote {} to {}", written.join(", "), args.out.display());
    }
    Ok(())
}
