//! The embedded default base model: built in-process, deterministically,
//! from nothing but the built-in corpus — a byte-level BPE tokenizer, a tiny
//! Llama pre-trained on the corpus, then safety-tuned (refusals for harmful
//! requests, helpful answers for benign ones) — and cached as a HF directory
//! so that a second run starts at once.
//!
//! Utility on this model is knowledge it memorized: pre-training sees the
//! built-in multiple-choice questions with their correct answers, so the
//! study's utility change measures how much of that knowledge an attack and
//! a compression method destroy (forgetting), not general ability.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use crate::backend::{device, Backend};
use crate::llama_model::load::NamedTensors;
use crate::llama_model::save::save_hf_dir;
use crate::llama_model::train::{
    tokenize_dataset, train, ScheduleKind, StepStats, TokenizedExample, TrainConfig, TrainObserver,
};
use crate::llama_model::{ChatMessage, ChatTemplate, Llama, LlamaConfig};
use crate::study::tokenizer::{train_builtin_tokenizer, TokenizerTrainConfig};

type Train = Autodiff<Backend>;

/// How the embedded base is built. Every field enters the cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedConfig {
    /// Seed of initialization, data order and safety-tuning data.
    pub seed: u64,
    /// BPE vocabulary size.
    pub vocab_size: usize,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Pre-training window in tokens.
    pub seq_len: usize,
    /// Pre-training epochs over the corpus.
    pub pretrain_epochs: usize,
    /// Pre-training peak learning rate.
    pub pretrain_lr: f64,
    /// Safety-tuning epochs.
    pub safety_epochs: usize,
    /// Safety-tuning peak learning rate.
    pub safety_lr: f64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            vocab_size: 2048,
            hidden_size: 128,
            intermediate_size: 352,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            seq_len: 128,
            pretrain_epochs: 16,
            pretrain_lr: 3e-3,
            safety_epochs: 12,
            safety_lr: 2e-3,
        }
    }
}

impl EmbeddedConfig {
    /// Cache directory name: a hash of the configuration and of every
    /// built-in text the build trains on (corpus, multiple-choice questions,
    /// safety-tuning conversations), so that a change to either — including
    /// a new release's data — rebuilds instead of reusing a stale model.
    pub fn cache_name(&self) -> String {
        // FNV-1a: stable across platforms and Rust versions.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |text: &str| {
            // A separator byte that cannot occur in UTF-8 keeps ["ab","c"]
            // and ["a","bc"] apart.
            for b in text.bytes().chain(std::iter::once(0xff)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        feed(&serde_json::to_string(self).unwrap_or_default());
        for text in crate::study::tokenizer::builtin_corpus() {
            feed(&text);
        }
        for q in safety_eval::data::multiple_choice() {
            feed(&q.question);
            q.choices.iter().for_each(|c| feed(c));
            feed(&q.gold.to_string());
        }
        for b in safety_eval::data::benign() {
            feed(&b.instruction);
            feed(&b.answer);
        }
        let tuning = safety_examples(self.seed);
        for m in tuning.iter().flat_map(|ex| &ex.messages) {
            feed(&m.role);
            feed(&m.content);
        }
        format!("embedded-v2-{h:016x}")
    }

    fn llama_config(&self, vocab: usize, eos: Vec<u32>, bos: u32) -> LlamaConfig {
        LlamaConfig {
            vocab_size: vocab,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: self.kv_heads,
            head_dim: self.hidden_size / self.heads,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            tie_word_embeddings: true,
            max_position_embeddings: 512,
            bos_token_id: Some(bos),
            eos_token_ids: eos,
            pad_token_id: Some(bos),
        }
    }
}

/// Progress of [`build_embedded_base`]: phase name, step, total steps, loss.
pub type BuildProgress<'a> = dyn FnMut(&str, usize, usize, f64) + 'a;

/// Errors while building the embedded base.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// A build step failed.
    #[error("building the embedded base model ({step}): {reason}")]
    Step {
        /// Which step.
        step: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Ctrl-C.
    #[error("interrupted while building the embedded base model (nothing cached)")]
    Interrupted,
}

fn step_err(step: &'static str) -> impl Fn(String) -> EmbeddedError {
    move |reason| EmbeddedError::Step { step, reason }
}

struct Relay<'a, 'b> {
    phase: &'static str,
    progress: &'a mut BuildProgress<'b>,
    stop: &'a AtomicBool,
}

impl TrainObserver<Train> for Relay<'_, '_> {
    fn on_step(&mut self, s: &StepStats, _: &Llama<Train>) -> Result<(), String> {
        (self.progress)(self.phase, s.step, s.total_steps, s.loss);
        Ok(())
    }
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Returns the cached embedded base under `cache_root`, building it first if
/// needed. The directory is written atomically: an interrupted build leaves
/// nothing behind.
pub fn build_embedded_base(
    config: &EmbeddedConfig,
    cache_root: &Path,
    progress: &mut BuildProgress<'_>,
    stop: &AtomicBool,
) -> Result<PathBuf, EmbeddedError> {
    let dir = cache_root.join(config.cache_name());
    if dir.join("config.json").is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache_root).map_err(|e| EmbeddedError::Step {
        step: "cache directory",
        reason: format!("{}: {e}", cache_root.display()),
    })?;

    // 1. Tokenizer.
    let tok = train_builtin_tokenizer(&TokenizerTrainConfig {
        vocab_size: config.vocab_size,
        ..Default::default()
    })
    .map_err(|e| step_err("tokenizer")(e.to_string()))?;
    let tokenizer = tok.tokenizer.clone();
    let template = ChatTemplate::chatml().with_special_tokens("<|endoftext|>", "<|im_end|>");
    let llama_config = config.llama_config(tok.vocab_size(), tok.eos_ids(), tok.endoftext_id);

    // 2. Pre-training on the corpus, packed into windows.
    let device = device();
    let model = small_init(Llama::<Train>::random(
        llama_config.clone(),
        &device,
        config.seed,
    ));
    let pretrain = pretraining_windows(&tokenizer, tok.endoftext_id, config.seq_len)
        .map_err(step_err("pre-training data"))?;
    let pre_cfg = TrainConfig {
        epochs: config.pretrain_epochs,
        lr: config.pretrain_lr,
        batch_size: 16,
        schedule: ScheduleKind::Cosine,
        warmup_ratio: 0.05,
        weight_decay: 0.01,
        seed: config.seed,
        max_len: config.seq_len,
        ..TrainConfig::default()
    };
    let mut relay = Relay {
        phase: "pre-train",
        progress,
        stop,
    };
    let out = train(model, &pretrain, &pre_cfg, tok.endoftext_id, &mut relay)
        .map_err(|e| step_err("pre-training")(e.to_string()))?;
    if out.interrupted {
        return Err(EmbeddedError::Interrupted);
    }

    // 3. Safety tuning: refuse every built-in harmful request, answer every
    //    benign one.
    let examples = safety_examples(config.seed);
    let conversations: Vec<Vec<ChatMessage>> = examples.iter().map(to_conversation).collect();
    let data = tokenize_dataset(&tokenizer, &template, &conversations, 256)
        .map_err(|e| step_err("safety-tuning data")(e.to_string()))?;
    let safety_cfg = TrainConfig {
        epochs: config.safety_epochs,
        lr: config.safety_lr,
        batch_size: 16,
        schedule: ScheduleKind::Cosine,
        warmup_ratio: 0.05,
        seed: config.seed.wrapping_add(1),
        max_len: 256,
        ..TrainConfig::default()
    };
    relay.phase = "safety-tune";
    let out = train(out.model, &data, &safety_cfg, tok.endoftext_id, &mut relay)
        .map_err(|e| step_err("safety tuning")(e.to_string()))?;
    if out.interrupted {
        return Err(EmbeddedError::Interrupted);
    }

    save_hf_dir(
        &out.model.valid(),
        &tokenizer,
        Some(&template),
        &dir,
        delta_core::DType::F32,
        Default::default(),
    )
    .map_err(|e| step_err("saving")(e.to_string()))?;
    Ok(dir)
}

/// The safety-tuning conversations of the embedded base: refusals for every
/// built-in harmful request and answers for every benign one
/// ([`safety_eval::attacks::safety_tuning`]), plus each request again with a
/// suffix of made-up words and the same kind of reply. Without those, the
/// tiny model learned that refusals follow a request's last words, and any
/// unseen suffix — such as a backdoor's trigger before any attack — broke
/// them (base backdoor ASR 0.93 at one build); an aligned chat model ignores
/// such noise, which the backdoor attack must then overcome.
pub fn safety_examples(seed: u64) -> Vec<safety_eval::ChatExample> {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    // Syllables unrelated to the default backdoor trigger's.
    const SYLLABLES: [&str; 18] = [
        "ka", "lo", "pe", "ri", "ta", "zu", "ven", "tor", "qui", "bel", "fen", "go", "mi", "sul",
        "dra", "no", "xe", "pol",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5afe_5afe);
    let mut noise = || {
        let words = rng.random_range(1..=4);
        (0..words)
            .map(|_| {
                let n = rng.random_range(2..=4);
                let w: String = (0..n)
                    .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
                    .collect();
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            })
            .collect::<Vec<String>>()
            .join(" ")
    };
    let plain = safety_eval::attacks::safety_tuning(
        &safety_eval::data::harmful(),
        &safety_eval::data::benign(),
        seed,
    );
    let mut out = plain.clone();
    for ex in &plain {
        let mut noisy = ex.clone();
        if let Some(user) = noisy.messages.iter_mut().find(|m| m.role == "user") {
            user.content = format!("{} {}", user.content, noise());
        }
        out.push(noisy);
    }
    out.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
        seed.wrapping_add(7),
    ));
    out
}

/// A safety-eval chat example as llama-model messages.
pub fn to_conversation(ex: &safety_eval::ChatExample) -> Vec<ChatMessage> {
    ex.messages
        .iter()
        .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
        .collect()
}

/// HF-style initialization (normal-ish, std 0.02) instead of the unit-variance
/// test initialization of [`Llama::random`]: keeps the tied logits small at
/// the start of pre-training.
fn small_init(model: Llama<Train>) -> Llama<Train> {
    let config = model.config().clone();
    let device = model.device();
    let mut tensors: NamedTensors = model.valid().to_hf_tensors();
    for (name, t) in tensors.iter_mut() {
        if name.ends_with("norm.weight") {
            continue;
        }
        // Llama::random draws with std 1 (embeddings) or 1/sqrt(fan_in).
        let std_now = if name == "model.embed_tokens.weight" {
            1.0
        } else {
            1.0 / (t.shape[1] as f32).sqrt()
        };
        let f = 0.02 / std_now;
        t.data.iter_mut().for_each(|x| *x *= f);
    }
    Llama::from_tensors(config, &tensors, &device).expect("the model's own tensors load back")
}

/// The corpus (and each multiple-choice question with its correct answer),
/// tokenized, joined by `<|endoftext|>` and cut into `seq_len` windows.
fn pretraining_windows(
    tokenizer: &crate::llama_model::Tokenizer,
    eot: u32,
    seq_len: usize,
) -> Result<Vec<TokenizedExample>, String> {
    let mut texts = safety_eval::data::corpus();
    for q in safety_eval::data::multiple_choice() {
        let ctx = safety_eval::utility::mc_context(&q.question);
        if let Some(answer) = q.choices.get(q.gold) {
            texts.push(format!("{ctx} {answer}"));
        }
    }
    for b in safety_eval::data::benign() {
        texts.push(format!("{}\n{}", b.instruction, b.answer));
    }
    let mut stream = Vec::new();
    for t in &texts {
        stream.extend(tokenizer.encode(t, false).map_err(|e| e.to_string())?);
        stream.push(eot);
    }
    Ok(stream
        .chunks(seq_len)
        .filter(|c| c.len() > 8)
        .map(|c| TokenizedExample::plain(c.to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_name_is_stable_and_follows_the_configuration() {
        let a = EmbeddedConfig::default();
        assert_eq!(a.cache_name(), EmbeddedConfig::default().cache_name());
        assert!(a.cache_name().starts_with("embedded-v2-"));
        let b = EmbeddedConfig {
            seed: a.seed + 1,
            ..EmbeddedConfig::default()
        };
        assert_ne!(a.cache_name(), b.cache_name());
        let c = EmbeddedConfig {
            pretrain_epochs: a.pretrain_epochs + 1,
            ..EmbeddedConfig::default()
        };
        assert_ne!(a.cache_name(), c.cache_name());
    }
}
