//! `deltaguard apply`: base + delta file → full HF model directory.

use super::{parse_size, CliResult};
use deltaguard::delta_core::{Checkpoint, WriteOptions};
use deltaguard::delta_quant::ops::apply_delta_file;
use deltaguard::progress;
use std::path::PathBuf;

/// Rebuild a full model from a base and a delta file.
///
/// W = W_base + Δ̂ for every compressed tensor, the carried tensors as stored.
/// Writes a Hugging Face
/// directory (config, tokenizer and chat template copied from the base) that
/// transformers loads. Refuses a delta made against another base.
#[derive(clap::Args)]
#[command(
    after_help = "EXAMPLE:\n  deltaguard apply --base llama-2-7b-chat --delta my-finetune.delta.safetensors --out my-finetune-bitdelta"
)]
pub struct Args {
    /// Base model directory the delta was made against.
    #[arg(long)]
    base: PathBuf,
    /// Delta file written by `deltaguard compress`.
    #[arg(long)]
    delta: PathBuf,
    /// Output model directory (must not exist unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Largest safetensors shard, e.g. 5GB or 500MB.
    #[arg(long, default_value = "5GB", value_parser = parse_size)]
    max_shard_size: u64,
    /// Replace the output directory if it exists.
    #[arg(long)]
    overwrite: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> CliResult {
    super::refuse_existing(&args.out, args.overwrite)?;
    // Held to the end of the run: a second writer of this --out stops at once.
    let _lock = deltaguard::delta_core::OutputLock::acquire(&args.out)?;
    let base = Checkpoint::open(&args.base)?;
    let delta = deltaguard::model_io::open_delta_file(&args.delta)?;
    let bar = progress::bar(delta.entries().len() as u64, "apply", args.quiet);
    let write = WriteOptions {
        max_shard_bytes: args.max_shard_size,
        overwrite: args.overwrite,
    };
    let out = apply_delta_file(
        &base,
        &delta,
        &args.delta,
        &args.out,
        &write,
        &mut |step| {
            bar.set_position(step.done as u64);
            bar.set_message(step.tensor.to_string());
        },
        Some(progress::interrupt_flag()),
    )?;
    bar.finish_and_clear();
    println!(
        "wrote {} ({} tensors, method {})",
        out.display(),
        delta.entries().len(),
        delta.method()
    );
    Ok(())
}
