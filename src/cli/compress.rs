//! `deltaguard compress`: fine-tune + base → compressed delta file.

use super::{human_bytes, CliResult};
use deltaguard::delta_core::dtype::first_non_finite;
use deltaguard::delta_core::{Action, DeltaPair, Selection};
use deltaguard::delta_quant::ops::{compress_checkpoint, CompressOptions};
use deltaguard::delta_quant::{parse_method, DeltaFile};
use deltaguard::progress;
use std::path::PathBuf;

/// Compress a fine-tune's delta against its base into one delta file.
///
/// Only the selected tensors are compressed (by default BitDelta's: every
/// `*proj` weight under `self_attn` and `mlp`); all others are carried from the
/// fine-tune at full precision. Both directories must be Hugging Face model
/// directories of the same architecture.
#[derive(clap::Args)]
#[command(
    after_help = "METHODS (combine stages with '+', e.g. dare:p=0.5+bitdelta):\n  \
    bitdelta[:per_row=true]          1-bit signs x mean|delta| (BitDelta)\n  \
    multimask:k=2                    k residual sign masks\n  \
    rtn:bits=4,group=128             group-wise round-to-nearest, 2..8 bits\n  \
    dare:p=0.9,seed=0                random drop + rescale (DARE)\n  \
    magnitude:density=0.1            keep the largest entries\n  \
    svd:rank=16                      truncated SVD\n  \
    deltacome:rank=128               SVD + mixed-precision singular vectors (Delta-CoMe)\n  \
    compeft:density=0.1,alpha=1      ternary top-k (ComPEFT)\n\n\
EXAMPLE:\n  deltaguard compress --base llama-2-7b-chat --finetuned my-finetune \\\n      --method bitdelta --out my-finetune.delta.safetensors"
)]
pub struct Args {
    /// Base model directory (HF layout).
    #[arg(long)]
    base: PathBuf,
    /// Fine-tuned model directory (HF layout), same architecture as the base.
    #[arg(long)]
    finetuned: PathBuf,
    /// Compression method and parameters, e.g. `bitdelta` or `rtn:bits=4,group=128`.
    #[arg(long, default_value = "bitdelta")]
    method: String,
    /// Output delta file (`.safetensors`; must not exist unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output file (only once the new one is complete).
    #[arg(long)]
    overwrite: bool,
    /// Glob patterns of tensors to compress (replaces BitDelta's default
    /// `*.self_attn.*proj.weight`, `*.mlp.*proj.weight`). Repeatable.
    #[arg(long = "include", value_name = "GLOB")]
    include: Vec<String>,
    /// Glob patterns of tensors never to compress. Repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Seed of randomized methods (DARE, randomized SVD).
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
    let compressor = parse_method(&args.method)?;
    let selection = if args.include.is_empty() && args.exclude.is_empty() {
        Selection::bitdelta()
    } else if args.include.is_empty() {
        let defaults: Vec<String> = Selection::bitdelta().include_patterns().to_vec();
        Selection::from_patterns(&defaults, &args.exclude)?
    } else {
        Selection::from_patterns(&args.include, &args.exclude)?
    };
    let pair = DeltaPair::open(&args.base, &args.finetuned)?;
    check_carried_finite(&pair, &selection)?;
    let total_bytes = pair.finetuned().total_bytes();
    let bar = progress::byte_bar(total_bytes, "compress", args.quiet);
    let interrupt = progress::interrupt_flag();
    let options = CompressOptions {
        selection,
        seed: args.seed,
    };
    let mut done_bytes = 0u64;
    let summary = compress_checkpoint(
        &pair,
        compressor.as_ref(),
        &args.out,
        &options,
        &mut |step| {
            bar.set_position(done_bytes);
            bar.set_message(step.tensor.to_string());
            done_bytes += step.bytes;
        },
        Some(interrupt),
    )?;
    bar.finish_and_clear();

    // The post-write check: the file must load back. If it does not, it is
    // removed, so a re-run is not refused with "already exists" and nothing
    // downstream picks up a file compress itself rejects.
    let file = match DeltaFile::open(&summary.path) {
        Ok(file) => file,
        Err(e) => {
            let removed = match std::fs::remove_file(&summary.path) {
                Ok(()) => "it was removed".to_string(),
                Err(r) => format!("removing it failed too: {r}"),
            };
            return Err(format!(
                "{}: the delta just written does not load back ({e}); {removed}",
                summary.path.display()
            )
            .into());
        }
    };
    let size = file.size_report();
    if args.json {
        let json = serde_json::json!({
            "path": summary.path,
            "method": summary.method,
            "compressed_tensors": summary.compressed.len(),
            "carried_tensors": summary.carried,
            "file_bytes": summary.stored_bytes,
            "finetuned_fp16_bytes": size.finetuned_fp16_bytes,
            "delta_bytes": size.delta_bytes(),
            "compressed_bytes": size.compressed_bytes,
            "ratio": size.ratio(),
            "tensors": summary.compressed,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    let mean_err = if summary.compressed.is_empty() {
        0.0
    } else {
        summary
            .compressed
            .iter()
            .map(|t| t.relative_error)
            .sum::<f64>()
            / summary.compressed.len() as f64
    };
    println!("wrote {}", summary.path.display());
    println!("  method              {}", summary.method);
    println!(
        "  tensors             {} compressed, {} carried at full precision",
        summary.compressed.len(),
        summary.carried
    );
    println!(
        "  compressed deltas   {}",
        human_bytes(size.compressed_bytes)
    );
    println!(
        "  delta (+ carried)   {} vs fp16 fine-tune {}: {:.2}x smaller",
        human_bytes(size.delta_bytes()),
        human_bytes(size.finetuned_fp16_bytes),
        size.ratio()
    );
    println!("  mean rel. error     {mean_err:.4} (||delta - reconstruction|| / ||delta||)");
    Ok(())
}

/// Refuses a fine-tune whose carried tensors (those stored as they are:
/// embeddings, norms, `lm_head`) hold NaN or ±Inf, naming the tensor: they
/// would go into the delta file unchanged and then into every model built
/// from it. (Compressed tensors are checked by the methods themselves.)
fn check_carried_finite(pair: &DeltaPair, selection: &Selection) -> CliResult {
    for entry in pair.plan(selection) {
        if entry.action != Action::Carry {
            continue;
        }
        let view = pair.finetuned().view(&entry.info.name)?;
        if let Some((index, value)) = first_non_finite(view.bytes, entry.info.dtype) {
            return Err(format!(
                "{}: tensor `{}` (carried into the delta as it is) holds a non-finite value \
                 ({value}) at element {index}; refusing to compress",
                pair.finetuned().dir().display(),
                entry.info.name
            )
            .into());
        }
    }
    Ok(())
}
