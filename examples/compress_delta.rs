//! Compress a fine-tune against its base with two methods through the library
//! API, print sizes and reconstruction error, and apply one of them.
//!
//! ```text
//! cargo run --release --example compress_delta -- [BASE_DIR FINETUNED_DIR]
//! ```
//! Without arguments it uses the tiny base/fine-tuned pair shipped in
//! `testdata/hf-reference/pair`.

use deltaguard::delta_core::{Checkpoint, DeltaPair, WriteOptions};
use deltaguard::delta_quant::ops::{apply_delta_file, compress_checkpoint, CompressOptions};
use deltaguard::delta_quant::{parse_method, DeltaFile};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (base_dir, ft_dir) = match args.as_slice() {
        [b, f] => (PathBuf::from(b), PathBuf::from(f)),
        [] => {
            let pair = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/hf-reference/pair");
            (pair.join("base"), pair.join("finetuned"))
        }
        _ => return Err("usage: compress_delta [BASE_DIR FINETUNED_DIR]".into()),
    };

    // Pairing checks architecture, vocabulary, tensor names, shapes and dtypes.
    let pair = DeltaPair::open(&base_dir, &ft_dir)?;
    let out_dir = std::env::temp_dir().join(format!("deltaguard-example-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;

    // BitDelta's default selection: the *proj weights; everything else is carried.
    let options = CompressOptions::default();
    let mut files = Vec::new();
    for method in ["bitdelta", "rtn:bits=4,group=64"] {
        let compressor = parse_method(method)?;
        let path = out_dir.join(format!(
            "{}.safetensors",
            method.replace([':', ',', '='], "_")
        ));
        let summary = compress_checkpoint(
            &pair,
            compressor.as_ref(),
            &path,
            &options,
            &mut |_| {},
            None,
        )?;
        let size = DeltaFile::open(&path)?.size_report();
        let mean_err = summary
            .compressed
            .iter()
            .map(|t| t.relative_error)
            .sum::<f64>()
            / summary.compressed.len().max(1) as f64;
        println!(
            "{:<28} {:>3} tensors compressed  delta {:>9} B  ({:.2}x vs fp16 fine-tune)  mean rel. error {:.3}",
            summary.method,
            summary.compressed.len(),
            size.delta_bytes(),
            size.ratio(),
            mean_err
        );
        files.push(path);
    }

    // Rebuild a full model: W_base + reconstructed delta, carried tensors as stored.
    let base = Checkpoint::open(&base_dir)?;
    let delta = DeltaFile::open(&files[0])?;
    let model_dir = out_dir.join("bitdelta-model");
    apply_delta_file(
        &base,
        &delta,
        &files[0],
        &model_dir,
        &WriteOptions::default(),
        &mut |_| {},
        None,
    )?;
    let merged = Checkpoint::open(&model_dir)?;
    println!(
        "applied {} -> {} ({} tensors)",
        files[0].display(),
        model_dir.display(),
        merged.len()
    );
    std::fs::remove_dir_all(&out_dir)?;
    Ok(())
}
