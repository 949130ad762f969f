//! `deltaguard inspect`: what a delta file holds.

use super::{human_bytes, CliResult};
use deltaguard::delta_quant::EntryKind;
use std::path::PathBuf;

/// Show what a delta file holds: method, parameters, sizes, ratio.
///
/// Prints the base fingerprint, per-tensor sizes and the compression ratio
/// (BitDelta's accounting: compressed deltas plus carried tensors at fp16,
/// against the fp16 fine-tuned model).
#[derive(clap::Args)]
pub struct Args {
    /// Delta file written by `deltaguard compress`.
    file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let file = deltaguard::model_io::open_delta_file(&args.file)?;
    let size = file.size_report();
    if args.json {
        let entries: Vec<_> = file
            .entries()
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "kind": match e.kind { EntryKind::Compressed => "compressed", EntryKind::Carried => "carried" },
                    "shape": e.shape,
                    "storage_bytes": e.storage_bytes,
                })
            })
            .collect();
        let json = serde_json::json!({
            "method": file.method(),
            "params": file.params(),
            "base_fingerprint": file.base_fingerprint(),
            "finetuned_fingerprint": file.finetuned(),
            "base_digest": file.header().base_digest,
            "finetuned_digest": file.header().finetuned_digest,
            "seed": file.header().seed,
            "finetuned_fp16_bytes": size.finetuned_fp16_bytes,
            "compressed_bytes": size.compressed_bytes,
            "carried_fp16_bytes": size.carried_fp16_bytes,
            "delta_bytes": size.delta_bytes(),
            "ratio": size.ratio(),
            "entries": entries,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("{}", args.file.display());
    println!("  method             {}", file.method());
    println!(
        "  parameters         {}",
        serde_json::to_string(file.params())?
    );
    println!("  base fingerprint   {}", file.base_fingerprint());
    if let Some(d) = &file.header().base_digest {
        println!("  base digest        {d}");
    }
    if let Some(ft) = file.finetuned() {
        println!("  fine-tune          {ft}");
    }
    if let Some(d) = &file.header().finetuned_digest {
        println!("  fine-tune digest   {d}");
    }
    if let Some(seed) = file.header().seed {
        println!("  seed               {seed}");
    }
    println!();
    println!(
        "  {:<52} {:>10} {:>16} {:>12}",
        "tensor", "kind", "shape", "bytes"
    );
    for e in file.entries() {
        let kind = match e.kind {
            EntryKind::Compressed => "compressed",
            EntryKind::Carried => "carried",
        };
        let shape = format!("{:?}", e.shape);
        println!(
            "  {:<52} {:>10} {:>16} {:>12}",
            e.name, kind, shape, e.storage_bytes
        );
    }
    println!();
    println!(
        "  compressed deltas {}; carried tensors {} (at fp16)",
        human_bytes(size.compressed_bytes),
        human_bytes(size.carried_fp16_bytes)
    );
    println!(
        "  delta total {} vs fp16 fine-tune {}: {:.2}x",
        human_bytes(size.delta_bytes()),
        human_bytes(size.finetuned_fp16_bytes),
        size.ratio()
    );
    Ok(())
}
