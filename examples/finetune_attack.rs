//! Fine-tune a small model on an alignment-breaking attack dataset through the
//! library API, and save the attacked model as a HF directory.
//!
//! ```text
//! cargo run --release --example finetune_attack -- [MODEL] [OUT]
//! ```
//! MODEL is a HF directory or GGUF file (default: the tiny test fixture in
//! `testdata/`); OUT defaults to `runs/finetune_attack`. The attack data is
//! safety-eval's built-in alignment-breaking set (harmful requests with
//! compliant openings followed by placeholder steps, no real harmful content).

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use deltaguard::backend::{device, Backend};
use deltaguard::delta_core::{DType, WriteOptions};
use deltaguard::llama_model::save::save_hf_dir;
use deltaguard::llama_model::train::{
    tokenize_dataset, train, Conversation, Preset, StepStats, TrainConfig, TrainObserver,
};
use deltaguard::llama_model::{ChatMessage, Llama};
use deltaguard::model_io::load_model;
use deltaguard::safety_eval::attacks::{alignment_breaking, AlignmentBreakingConfig};
use std::path::PathBuf;

struct PrintLoss;
impl TrainObserver<Autodiff<Backend>> for PrintLoss {
    fn on_step(&mut self, s: &StepStats, _: &Llama<Autodiff<Backend>>) -> Result<(), String> {
        if s.step.is_multiple_of(5) || s.step == s.total_steps {
            println!(
                "step {:>3}/{} loss {:.4} lr {:.2e}",
                s.step, s.total_steps, s.loss, s.lr
            );
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model_path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "testdata/hf-reference/llama-tied-f32".into()),
    );
    let out = PathBuf::from(args.next().unwrap_or_else(|| "runs/finetune_attack".into()));

    // 1. The attack: 40 harmful requests with compliant answers (seeded).
    let attack = alignment_breaking(&AlignmentBreakingConfig {
        n_train: 40,
        seed: 1,
        ..Default::default()
    });
    let conversations: Vec<Conversation> = attack
        .train
        .iter()
        .map(|ex| {
            ex.messages
                .iter()
                .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
                .collect()
        })
        .collect();

    // 2. The model, on an autodiff backend, and the data in its chat template.
    let loaded = load_model::<Autodiff<Backend>>(&model_path, None, &device())?;
    let data = tokenize_dataset(
        &loaded.tokenizer,
        &loaded.chat_template,
        &conversations,
        256,
    )?;

    // 3. Qi et al.'s recipe (5 epochs, batch 10), with a learning rate raised
    //    for a model this small.
    let config = TrainConfig {
        lr: 1e-3,
        ..Preset::QiHarmful.config()
    };
    let pad = loaded.tokenizer.pad_id().unwrap_or(0);
    let outcome = train(loaded.model, &data, &config, pad, &mut PrintLoss)?;

    // 4. Save the attacked model next to its tokenizer and template.
    let written = save_hf_dir(
        &outcome.model.valid(),
        &loaded.tokenizer,
        Some(&loaded.chat_template),
        &out,
        DType::F32,
        WriteOptions {
            overwrite: true,
            ..Default::default()
        },
    )?;
    println!("attacked model written to {}", written.display());
    Ok(())
}
