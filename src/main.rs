//! The `deltaguard` command-line tool. Each subcommand lives in `cli/`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli;

/// Compress LLM fine-tuning deltas (BitDelta and friends) and measure what it
/// does to safety.
///
/// A fine-tune is stored as its base model plus a delta Δ = W_ft − W_base.
/// `compress` turns a fine-tune into a small delta file, `apply` rebuilds a
/// full model from base + delta, `inspect` shows what a delta file holds.
/// `logits` and `generate` run a model (HF directory or GGUF, optionally with a
/// delta applied); `convert` turns a GGUF file into a HF directory. `eval` runs
/// a safety or utility suite on a model; `score` re-scores saved generations;
/// `lens` shows layer by layer where models differ (a logit lens); `heal`
/// trains a BitDelta delta's scales against the fine-tune; `attack` writes a
/// fine-tuning attack's training data, `finetune` trains on it, and `study`
/// runs the whole attack × strength × compression grid. `serve` serves a base
/// and many compressed tenant deltas over an OpenAI-compatible HTTP API.
#[derive(Parser)]
#[command(name = "deltaguard", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Compress(cli::compress::Args),
    Apply(cli::apply::Args),
    Inspect(cli::inspect::Args),
    Convert(cli::convert::Args),
    Logits(cli::logits::Args),
    Generate(cli::generate::Args),
    Eval(cli::eval::Args),
    Score(cli::score::Args),
    Attack(cli::attack::Args),
    Lens(cli::lens::Args),
    Heal(cli::heal::Args),
    Finetune(cli::finetune::Args),
    Study(cli::study::Args),
    Serve(cli::serve::Args),
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`deltaguard inspect f | head`), as Unix
    // tools do, instead of panicking on the failed print.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compress(a) => cli::compress::run(a),
        Command::Apply(a) => cli::apply::run(a),
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Convert(a) => cli::convert::run(a),
        Command::Logits(a) => cli::logits::run(a),
        Command::Generate(a) => cli::generate::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Score(a) => cli::score::run(a),
        Command::Attack(a) => cli::attack::run(a),
        Command::Lens(a) => cli::lens::run(a),
        Command::Heal(a) => cli::heal::run(a),
        Command::Finetune(a) => cli::finetune::run(a),
        Command::Study(a) => cli::study::run(a),
        Command::Serve(a) => cli::serve::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
