//! `deltaguard finetune`: supervised chat fine-tuning (full or LoRA) of a HF
//! directory or GGUF model, written out as a HF directory.

use super::CliResult;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use deltaguard::backend::{self, Backend};
use deltaguard::delta_core::{DType, WriteOptions};
use deltaguard::llama_model::save::save_hf_dir;
use deltaguard::llama_model::train::lora::{adapter_config_json, adapter_tensors};
use deltaguard::llama_model::train::{
    add_lora, load_chat_file, merge_lora, tokenize_dataset, total_steps, train, LoraConfig, Preset,
    ScheduleKind, StepStats, TrainConfig, TrainObserver,
};
use deltaguard::llama_model::{ChatTemplate, Llama, Tokenizer};
use deltaguard::model_io::load_model;
use deltaguard::progress;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

type Train = Autodiff<Backend>;

/// Fine-tune a model on a chat dataset (loss on assistant tokens only).
///
/// Data: JSONL with `messages` per line, or Alpaca JSON/JSONL
/// (`instruction`, `input`, `output`), rendered with the model's chat
/// template. Defaults follow HF `TrainingArguments`; `--preset` loads a
/// published attack recipe and explicit flags override it.
#[derive(clap::Args)]
#[command(after_help = "PRESETS:\n  \
    qi-harmful   Qi et al. 2023 (arXiv 2310.03693): lr 5e-5, 5 epochs, batch 10\n  \
    shallow      Qi et al. 2024 (arXiv 2406.05946): lr 2e-5, 25 epochs, batch 64, betas (0.5, 0.999)\n\n\
EXAMPLE:\n  deltaguard finetune --model base-dir --data attack.jsonl --out attacked --preset qi-harmful --lr 1e-4")]
pub struct Args {
    /// Model to fine-tune: HF directory or .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// Training data (JSONL chat `messages`, or Alpaca JSON / JSONL).
    #[arg(long)]
    data: PathBuf,
    /// Output HF model directory (must not exist unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Published recipe to start from.
    #[arg(long)]
    preset: Option<Preset>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Sequences per micro-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    grad_accum: Option<usize>,
    /// constant, linear or cosine (after warm-up).
    #[arg(long)]
    schedule: Option<ScheduleKind>,
    /// Fraction of the steps spent warming up.
    #[arg(long)]
    warmup_ratio: Option<f64>,
    /// AdamW β1.
    #[arg(long)]
    beta1: Option<f64>,
    /// AdamW β2.
    #[arg(long)]
    beta2: Option<f64>,
    /// AdamW decoupled weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Clip the global gradient norm (0 = off).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// Tokens per sequence (longer ones are cut).
    #[arg(long)]
    max_len: Option<usize>,
    /// Seed of data order, dropout and LoRA initialization.
    #[arg(long)]
    seed: Option<u64>,
    /// Train a LoRA adapter of this rank instead of every weight.
    #[arg(long)]
    lora: Option<usize>,
    /// LoRA α (default 2·rank).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// LoRA target modules, comma-separated (q_proj,…,down_proj or all-linear).
    #[arg(long, default_value = "q_proj,v_proj")]
    lora_targets: String,
    /// With --lora: write the merged model (default) or only the adapter (PEFT layout).
    #[arg(long, default_value = "merged", value_parser = ["merged", "adapter"])]
    lora_save: String,
    /// Also write a checkpoint every N optimizer steps to OUT.checkpoints/step-N.
    #[arg(long)]
    save_every: Option<usize>,
    /// Weight dtype of the written model: f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = super::convert::parse_dtype)]
    dtype: DType,
    /// Replace an existing output directory.
    #[arg(long)]
    overwrite: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

impl Args {
    fn config(&self) -> TrainConfig {
        let mut c = self.preset.map(Preset::config).unwrap_or_default();
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(
            epochs,
            lr,
            batch_size,
            grad_accum,
            schedule,
            warmup_ratio,
            beta1,
            beta2,
            weight_decay,
            max_len,
            seed
        );
        if let Some(m) = self.max_grad_norm {
            c.max_grad_norm = (m > 0.0).then_some(m);
        }
        c
    }
}

struct CliObserver<'a> {
    bar: ProgressBar,
    save_every: Option<usize>,
    out: &'a Path,
    tokenizer: &'a Tokenizer,
    template: &'a ChatTemplate,
    dtype: DType,
    last_checkpoint: Option<PathBuf>,
}

impl TrainObserver<Train> for CliObserver<'_> {
    fn on_step(&mut self, s: &StepStats, model: &Llama<Train>) -> Result<(), String> {
        self.bar.set_position(s.step as u64);
        let tps = s.input_tokens as f64 / (s.elapsed_s / s.step as f64).max(1e-9);
        self.bar.set_message(format!(
            "epoch {} loss {:.4} lr {:.2e} |g| {:.3} {:.0} tok/s",
            s.epoch + 1,
            s.loss,
            s.lr,
            s.grad_norm,
            tps
        ));
        if self.save_every.is_some_and(|n| s.step.is_multiple_of(n)) {
            let dir = checkpoints_dir(self.out).join(format!("step-{}", s.step));
            let merged = merge_lora(model.clone()).valid();
            save_hf_dir(
                &merged,
                self.tokenizer,
                Some(self.template),
                &dir,
                self.dtype,
                WriteOptions {
                    overwrite: true,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())?;
            self.last_checkpoint = Some(dir);
        }
        Ok(())
    }
    fn should_stop(&self) -> bool {
        progress::interrupt_flag().load(Ordering::SeqCst)
    }
}

fn checkpoints_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoints");
    out.with_file_name(name)
}

pub fn run(args: Args) -> CliResult {
    super::refuse_existing(&args.out, args.overwrite)?;
    // Held to the end of the run: a second writer of this --out stops at once.
    let _lock = deltaguard::delta_core::OutputLock::acquire(&args.out)?;
    let config = args.config();
    let device = backend::device();
    let loaded = load_model::<Train>(&args.model, None, &device)?;
    let conversations = load_chat_file(&args.data)?;
    let data = tokenize_dataset(
        &loaded.tokenizer,
        &loaded.chat_template,
        &conversations,
        config.max_len,
    )?;
    let pad = loaded
        .tokenizer
        .pad_id()
        .or(loaded.tokenizer.eos_id())
        .unwrap_or(0);
    let lora = args.lora.map(|rank| LoraConfig {
        rank,
        alpha: args.lora_alpha.unwrap_or(2.0 * rank as f64),
        dropout: args.lora_dropout,
        targets: args
            .lora_targets
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    });
    let model = match &lora {
        Some(l) => add_lora(loaded.model, l, config.seed)?,
        None => loaded.model,
    };
    let steps = total_steps(data.len(), &config);
    eprintln!(
        "fine-tuning {} on {} examples ({} loss tokens): {} epochs, {} steps, lr {:e}, batch {}×{}{}",
        loaded.description,
        data.len(),
        data.iter().map(|e| e.loss_tokens()).sum::<usize>(),
        config.epochs,
        steps,
        config.lr,
        config.batch_size,
        config.grad_accum,
        lora.as_ref()
            .map(|l| format!(", LoRA r={} α={} on {}", l.rank, l.alpha, l.targets.join(",")))
            .unwrap_or_default()
    );
    let mut observer = CliObserver {
        bar: progress::bar(steps as u64, "finetune", args.quiet),
        save_every: args.save_every,
        out: &args.out,
        tokenizer: &loaded.tokenizer,
        template: &loaded.chat_template,
        dtype: args.dtype,
        last_checkpoint: None,
    };
    let outcome = train(model, &data, &config, pad, &mut observer)?;
    observer.bar.finish_and_clear();
    if outcome.interrupted {
        let kept = observer
            .last_checkpoint
            .map(|p| format!("; last complete checkpoint: {}", p.display()))
            .unwrap_or_default();
        return Err(format!(
            "interrupted after {} steps: {} not written{kept}",
            outcome.history.len(),
            args.out.display()
        )
        .into());
    }
    let options = WriteOptions {
        overwrite: args.overwrite,
        ..Default::default()
    };
    let final_loss = outcome.history.last().map_or(f64::NAN, |s| s.loss);
    if let (Some(l), "adapter") = (&lora, args.lora_save.as_str()) {
        let dir = deltaguard::delta_core::AtomicDir::create(&args.out, args.overwrite)?;
        let tensors = adapter_tensors(&outcome.model.valid());
        let mut views = Vec::new();
        for (name, t) in &tensors {
            views.push((name.clone(), t));
        }
        write_adapter(dir.path(), &views)?;
        std::fs::write(
            dir.path().join("adapter_config.json"),
            serde_json::to_vec_pretty(&adapter_config_json(l, &args.model.display().to_string()))?,
        )?;
        dir.commit()?;
    } else {
        let merged = merge_lora(outcome.model).valid();
        save_hf_dir(
            &merged,
            &loaded.tokenizer,
            Some(&loaded.chat_template),
            &args.out,
            args.dtype,
            options,
        )?;
    }
    println!(
        "wrote {} after {} steps (final loss {:.4}, {:.1} s)",
        args.out.display(),
        outcome.history.len(),
        final_loss,
        outcome.history.last().map_or(0.0, |s| s.elapsed_s)
    );
    Ok(())
}

/// `adapter_model.safetensors` with f32 tensors.
fn write_adapter(
    dir: &Path,
    tensors: &[(String, &deltaguard::llama_model::F32Tensor)],
) -> CliResult {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize_to_file(views, None, &dir.join("adapter_model.safetensors"))?;
    Ok(())
}
