//! The embedded default's tokenizer: a byte-level BPE (GPT-2 / SmolLM2
//! style) trained, deterministically, on the built-in text of safety-eval.
//!
//! Layout of the vocabulary: the three special tokens first
//! (`<|endoftext|>` = 0, `<|im_start|>` = 1, `<|im_end|>` = 2, as in
//! SmolLM2), then the 256 byte symbols of the byte-level alphabet, then the
//! merges in the order they were learned. Every byte is in the vocabulary,
//! so any text encodes and decodes losslessly.
//!
//! Training is deterministic: the BPE trainer breaks ties between equally
//! frequent pairs by the pair's ids, the alphabet is sorted, and the
//! serialized vocabulary is ordered by id — so the same corpus and
//! configuration give a byte-identical `tokenizer.json` on every run and
//! machine.
//!
//! ```
//! use deltaguard::study::tokenizer::{train_builtin_tokenizer, TokenizerTrainConfig};
//! let t = train_builtin_tokenizer(&TokenizerTrainConfig { vocab_size: 512, ..Default::default() })?;
//! let ids = t.tokenizer.encode("<|im_start|>user\nHello<|im_end|>\n", false)?;
//! assert_eq!(ids[0], t.im_start_id);
//! assert_eq!(t.tokenizer.decode(&ids, false)?, "<|im_start|>user\nHello<|im_end|>\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use llama_model::tokenizer::SpecialTokens;
use llama_model::Tokenizer;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper, TokenizerBuilder};

/// End of a document (also used as padding and unknown token).
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Opens a ChatML turn.
pub const IM_START: &str = "<|im_start|>";
/// Closes a ChatML turn (the chat model's end-of-sequence token).
pub const IM_END: &str = "<|im_end|>";
/// The special tokens, in vocabulary order (ids 0, 1, 2).
pub const SPECIAL_TOKENS: [&str; 3] = [ENDOFTEXT, IM_START, IM_END];

/// Errors of tokenizer training.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerTrainError {
    /// The requested vocabulary cannot hold the special tokens and the 256 bytes.
    #[error("vocab_size {requested} is too small: the special tokens and 256 byte symbols need at least {minimum}")]
    VocabTooSmall { requested: usize, minimum: usize },
    /// Nothing to train on.
    #[error("the training corpus is empty")]
    EmptyCorpus,
    /// The `tokenizers` crate failed.
    #[error("tokenizers: {0}")]
    Tokenizers(String),
    /// A special token did not get an id.
    #[error("special token {0} is missing from the trained vocabulary")]
    MissingSpecial(&'static str),
}

/// Settings of [`train_tokenizer`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenizerTrainConfig {
    /// Largest vocabulary size, special tokens included (the trainer stops
    /// earlier when no pair is frequent enough any more).
    pub vocab_size: usize,
    /// A pair must occur this often to be merged.
    pub min_frequency: u64,
}

impl Default for TokenizerTrainConfig {
    /// 2048 tokens, pairs seen at least twice.
    fn default() -> Self {
        Self {
            vocab_size: 2048,
            min_frequency: 2,
        }
    }
}

/// A trained tokenizer with what a model directory needs.
#[derive(Debug, Clone)]
pub struct TrainedTokenizer {
    /// Ready to use, with special tokens: bos = pad = unk = `<|endoftext|>`,
    /// eos = `<|im_end|>`.
    pub tokenizer: Tokenizer,
    /// The `tokenizer.json` text (deterministic).
    pub json: String,
    /// Id of `<|endoftext|>`.
    pub endoftext_id: u32,
    /// Id of `<|im_start|>`.
    pub im_start_id: u32,
    /// Id of `<|im_end|>`.
    pub im_end_id: u32,
}

impl TrainedTokenizer {
    /// Vocabulary size including the special tokens (the model's `vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size()
    }

    /// End-of-sequence ids for a model config: `<|im_end|>` (end of a chat
    /// turn) and `<|endoftext|>`.
    pub fn eos_ids(&self) -> Vec<u32> {
        vec![self.im_end_id, self.endoftext_id]
    }

    /// A `tokenizer_config.json` for the model directory: the special tokens
    /// and the ChatML chat template, readable by transformers
    /// (`PreTrainedTokenizerFast`) and by [`Tokenizer::from_dir`].
    pub fn tokenizer_config_json(&self) -> String {
        let v = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": ENDOFTEXT,
            "eos_token": IM_END,
            "pad_token": ENDOFTEXT,
            "unk_token": ENDOFTEXT,
            "additional_special_tokens": [IM_START, IM_END],
            "add_bos_token": false,
            "add_eos_token": false,
            "clean_up_tokenization_spaces": false,
            "model_max_length": 2048,
            "chat_template": llama_model::chat::CHATML_TEMPLATE,
        });
        serde_json::to_string_pretty(&v).expect("a JSON value serializes")
    }
}

/// The special tokens as [`llama_model::Tokenizer`] resolves them.
pub fn special_tokens() -> SpecialTokens {
    SpecialTokens {
        bos_token: Some(ENDOFTEXT.to_string()),
        eos_token: Some(IM_END.to_string()),
        pad_token: Some(ENDOFTEXT.to_string()),
        unk_token: Some(ENDOFTEXT.to_string()),
    }
}

/// The built-in training text: every string of [`safety_eval::data::corpus`],
/// the multiple-choice prompts as the utility evaluation shows them
/// (`Question: …\nAnswer: …`), and the ChatML role headers.
pub fn builtin_corpus() -> Vec<String> {
    let mut out = safety_eval::data::corpus();
    for q in safety_eval::data::multiple_choice() {
        let ctx = safety_eval::utility::mc_context(&q.question);
        for c in &q.choices {
            out.push(format!("{ctx} {c}"));
        }
    }
    for role in ["system", "user", "assistant"] {
        out.push(format!("{IM_START}{role}\n"));
    }
    out
}

/// Trains a byte-level BPE on `texts` (special tokens inside the texts are
/// kept whole and not learned from).
pub fn train_tokenizer(
    texts: &[String],
    cfg: &TokenizerTrainConfig,
) -> Result<TrainedTokenizer, TokenizerTrainError> {
    let minimum = SPECIAL_TOKENS.len() + 256;
    if cfg.vocab_size < minimum {
        return Err(TokenizerTrainError::VocabTooSmall {
            requested: cfg.vocab_size,
            minimum,
        });
    }
    if texts.iter().all(|t| t.is_empty()) {
        return Err(TokenizerTrainError::EmptyCorpus);
    }
    let tk = |e: tokenizers::Error| TokenizerTrainError::Tokenizers(e.to_string());
    let special: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    let mut trainer = BpeTrainer::builder()
        .vocab_size(cfg.vocab_size)
        .min_frequency(cfg.min_frequency)
        .show_progress(false)
        .special_tokens(special.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    // SmolLM2/GPT-2 style: no prefix space, GPT-2 split regex.
    let byte_level = ByteLevel::new(false, true, true);
    let mut builder =
        TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(byte_level))
            .with_post_processor(Some(byte_level))
            .with_decoder(Some(byte_level))
            .build()
            .map_err(tk)?;
    // Special tokens are registered first so the trainer's input is split
    // around them instead of learning merges across `<|im_start|>`.
    builder.add_special_tokens(&special);
    builder.train(&mut trainer, texts.iter()).map_err(tk)?;
    let inner: tokenizers::Tokenizer = builder.into();
    let json = inner.to_string(true).map_err(tk)?;
    // Round-trip through JSON so the returned tokenizer is exactly what a
    // model directory will load.
    let inner: tokenizers::Tokenizer = json.parse().map_err(tk)?;
    let id = |t: &'static str| {
        inner
            .token_to_id(t)
            .ok_or(TokenizerTrainError::MissingSpecial(t))
    };
    let (endoftext_id, im_start_id, im_end_id) = (id(ENDOFTEXT)?, id(IM_START)?, id(IM_END)?);
    Ok(TrainedTokenizer {
        tokenizer: Tokenizer::from_tokenizers(inner, special_tokens()),
        json,
        endoftext_id,
        im_start_id,
        im_end_id,
    })
}

/// [`train_tokenizer`] on [`builtin_corpus`].
pub fn train_builtin_tokenizer(
    cfg: &TokenizerTrainConfig,
) -> Result<TrainedTokenizer, TokenizerTrainError> {
    train_tokenizer(&builtin_corpus(), cfg)
}
