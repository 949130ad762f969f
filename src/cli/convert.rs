//! `deltaguard convert`: GGUF → Hugging Face directory.

use super::{parse_size, CliResult};
use deltaguard::delta_core::{CheckpointWriter, DType, WriteOptions};
use deltaguard::progress;
use llama_model::gguf::load_llama_gguf;
use std::path::PathBuf;

/// Convert a llama.cpp GGUF file into a Hugging Face model directory.
///
/// Tensors are dequantized (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and
/// the K-quants), the Q/K projections are un-permuted back to HF's layout, and
/// `config.json`, `tokenizer.json`, `tokenizer_config.json` (with the chat
/// template), `chat_template.jinja` and `generation_config.json` are written
/// from the GGUF metadata. transformers loads the result.
#[derive(clap::Args)]
#[command(
    after_help = "EXAMPLE:\n  deltaguard convert --gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-135m-instruct"
)]
pub struct Args {
    /// The GGUF file.
    #[arg(long)]
    gguf: PathBuf,
    /// Output directory (must not exist unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Stored dtype of the tensors: f32 (exact dequantized values), f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: DType,
    /// Largest safetensors shard, e.g. 5GB.
    #[arg(long, default_value = "5GB", value_parser = parse_size)]
    max_shard_size: u64,
    /// Replace the output directory if it exists.
    #[arg(long)]
    overwrite: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn parse_dtype(s: &str) -> Result<DType, String> {
    DType::parse(s).ok_or_else(|| format!("`{s}`: expected f32, f16 or bf16"))
}

pub fn run(args: Args) -> CliResult {
    super::refuse_existing(&args.out, args.overwrite)?;
    // Held to the end of the run: a second writer of this --out stops at once.
    let _lock = deltaguard::delta_core::OutputLock::acquire(&args.out)?;
    let gguf = load_llama_gguf(&args.gguf)?;
    let names = gguf.tensor_names();
    let mut writer = CheckpointWriter::create(
        &args.out,
        WriteOptions {
            max_shard_bytes: args.max_shard_size,
            overwrite: args.overwrite,
        },
    )?;
    let mut config = gguf.config_json.clone();
    config["torch_dtype"] = serde_json::json!(match args.dtype {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
    });
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).map(String::into_bytes);
    writer.write_aux_file("config.json", &pretty(&config)?)?;
    writer.write_aux_file("tokenizer.json", &serde_json::to_vec(&gguf.tokenizer_json)?)?;
    writer.write_aux_file(
        "tokenizer_config.json",
        &pretty(&gguf.tokenizer_config_json()?)?,
    )?;
    writer.write_aux_file(
        "generation_config.json",
        &pretty(&gguf.generation_config_json())?,
    )?;
    if let Some(template) = &gguf.chat_template {
        writer.write_aux_file("chat_template.jinja", template.as_bytes())?;
    }
    let bar = progress::bar(names.len() as u64, "convert", args.quiet);
    let interrupt = progress::interrupt_flag();
    for tensor in gguf.tensors() {
        if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(
                format!("interrupted; nothing was written to {}", args.out.display()).into(),
            );
        }
        let t = tensor?;
        bar.set_message(t.name.clone());
        writer.write_f32(&t.name, args.dtype, &t.shape, &t.data)?;
        bar.inc(1);
    }
    let out = writer.finish()?;
    bar.finish_and_clear();
    println!(
        "wrote {} ({} tensors, {})",
        out.display(),
        names.len(),
        args.dtype
    );
    Ok(())
}
