//! Load a model (HF directory or GGUF), optionally with a compressed delta
//! applied, chat with it and stream the answer token by token.
//!
//! ```text
//! scripts/fetch-smollm2.sh
//! cargo run --release --example generate -- models/SmolLM2-135M-Instruct.Q4_1.gguf "Name three primary colours."
//! cargo run --release --example generate -- BASE_DIR "Hello" --delta my.delta.safetensors
//! ```

use deltaguard::backend::{device, Backend};
use deltaguard::model_io::load_model;
use llama_model::{ChatMessage, GenerateConfig};
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model_path), Some(question)) = (args.next(), args.next()) else {
        return Err("usage: generate MODEL (HF dir or .gguf) QUESTION [--delta FILE]".into());
    };
    let delta = match (args.next().as_deref(), args.next()) {
        (Some("--delta"), Some(file)) => Some(PathBuf::from(file)),
        (None, _) => None,
        _ => return Err("usage: generate MODEL QUESTION [--delta FILE]".into()),
    };

    let loaded = load_model::<Backend>(model_path.as_ref(), delta.as_deref(), &device())?;
    eprintln!("loaded {}", loaded.description);

    // The model's own chat template, with the assistant turn opened.
    let chat = [ChatMessage::user(question)];
    let prompt = loaded.chat_template.render(&chat, true)?;
    let ids = loaded.tokenizer.encode(&prompt, false)?;

    // Stream: the incremental decoder emits text only once it is complete UTF-8.
    let mut decoder = loaded.tokenizer.incremental_decoder(true);
    let mut stdout = std::io::stdout();
    loaded
        .model
        .generate_streaming(&[ids], &GenerateConfig::greedy(128), |event| {
            if event.is_stop {
                return;
            }
            if let Ok(Some(text)) = decoder.push(event.token) {
                let _ = write!(stdout, "{text}");
                let _ = stdout.flush();
            }
        })?;
    if let Some(rest) = decoder.finish()? {
        print!("{rest}");
    }
    println!();
    Ok(())
}
