//! `deltaguard generate`: continue a prompt, streaming the text.

use super::input::{ModelArgs, PromptArgs};
use super::CliResult;
use llama_model::GenerateConfig;
use std::io::Write;

/// Generate a continuation of a prompt (greedy by default, or sampled with a seed).
#[derive(clap::Args)]
#[command(
    after_help = "EXAMPLE:\n  deltaguard generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\\n      --chat \"What is the capital of France?\" --greedy --max-new-tokens 32"
)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Greedy decoding (the default when no sampling option is given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k"])]
    greedy: bool,
    /// Sampling temperature.
    #[arg(long)]
    temperature: Option<f32>,
    /// Nucleus sampling: smallest set of tokens with this total probability.
    #[arg(long)]
    top_p: Option<f32>,
    /// Sample among the K most likely tokens only.
    #[arg(long)]
    top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print `{"input_ids", "output_ids", "text"}` instead of streaming text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let m = args.model.load()?;
    let ids = args.prompt.token_ids(&m)?;
    let sampled = args.temperature.is_some() || args.top_p.is_some() || args.top_k.is_some();
    let config = if sampled && !args.greedy {
        GenerateConfig::sampled(
            args.max_new_tokens,
            args.temperature.unwrap_or(1.0),
            args.top_k,
            args.top_p,
            args.seed,
        )
    } else {
        GenerateConfig::greedy(args.max_new_tokens)
    };
    let mut decoder = m.tokenizer.incremental_decoder(true);
    let mut stdout = std::io::stdout();
    let mut stream_err = None;
    let out = m
        .model
        .generate_streaming(std::slice::from_ref(&ids), &config, |ev| {
            if args.json || ev.is_stop {
                return;
            }
            match decoder.push(ev.token) {
                Ok(Some(text)) => {
                    let _ = write!(stdout, "{text}");
                    let _ = stdout.flush();
                }
                Ok(None) => {}
                Err(e) => stream_err = Some(e),
            }
        })?;
    if let Some(e) = stream_err {
        return Err(e.into());
    }
    let output_ids = out.into_iter().next().map(|g| g.tokens).unwrap_or_default();
    if args.json {
        let text = m.tokenizer.decode(&output_ids, true)?;
        let json = serde_json::json!({ "input_ids": ids, "output_ids": output_ids, "text": text });
        println!("{}", serde_json::to_string(&json)?);
    } else {
        if let Some(rest) = decoder.finish()? {
            print!("{rest}");
        }
        println!();
    }
    Ok(())
}
