//! The model and prompt arguments shared by `logits`, `generate` (and later
//! `lens`): `--model PATH [--delta FILE] (--tokens | --text | --chat)`.

use deltaguard::backend::{device, Backend};
use deltaguard::model_io::{load_model, LoadedModel};
use llama_model::ChatMessage;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// A delta file (from `deltaguard compress`) to apply on top of the model.
    #[arg(long)]
    pub delta: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct PromptArgs {
    /// Token ids, comma-separated (used as given: no BOS is added).
    #[arg(long, value_delimiter = ',')]
    pub tokens: Option<Vec<u32>>,
    /// Raw text, tokenized with the model's special tokens (e.g. BOS) added.
    #[arg(long)]
    pub text: Option<String>,
    /// A user message, wrapped in the model's chat template with a generation prompt.
    #[arg(long)]
    pub chat: Option<String>,
}

impl ModelArgs {
    pub fn load(&self) -> Result<LoadedModel<Backend>, Box<dyn std::error::Error>> {
        Ok(load_model::<Backend>(
            &self.model,
            self.delta.as_deref(),
            &device(),
        )?)
    }
}

impl PromptArgs {
    /// The prompt as token ids: never empty, every id in the vocabulary.
    pub fn token_ids(
        &self,
        m: &LoadedModel<Backend>,
    ) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
        let ids = self.encode(m)?;
        if ids.is_empty() {
            let what = if self.text.is_some() {
                "--text"
            } else {
                "--chat"
            };
            return Err(format!(
                "{what}: the prompt encodes to no tokens (the tokenizer adds no BOS); give a non-empty prompt"
            )
            .into());
        }
        Ok(ids)
    }

    fn encode(&self, m: &LoadedModel<Backend>) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
        if let Some(t) = &self.tokens {
            if t.is_empty() {
                return Err("--tokens: give at least one id".into());
            }
            let vocab = m.model.config().vocab_size;
            if let Some(bad) = t.iter().find(|&&id| id as usize >= vocab) {
                return Err(
                    format!("--tokens: id {bad} is outside the vocabulary (size {vocab})").into(),
                );
            }
            return Ok(t.clone());
        }
        if let Some(text) = &self.text {
            return Ok(m.tokenizer.encode(text, true)?);
        }
        let chat = self.chat.as_deref().unwrap_or_default();
        let rendered = m.chat_template.render(&[ChatMessage::user(chat)], true)?;
        // The template writes BOS itself where the model wants one.
        Ok(m.tokenizer.encode(&rendered, false)?)
    }
}
