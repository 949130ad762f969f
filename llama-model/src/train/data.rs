//! Training data: chat datasets read from JSONL (`messages`) or Alpaca JSON
//! (`instruction` / `input` / `output`), rendered with the model's chat
//! template and tokenized with a loss mask that covers assistant turns only.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::tokenizer::Tokenizer;

/// Errors reading or tokenizing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A record is malformed.
    #[error("{path}:{line}: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line (JSONL) or 1-based record number (JSON array).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file holds no examples.
    #[error("{path}: no training examples")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// An example cannot be rendered or tokenized.
    #[error("example {index}: {reason}")]
    Example {
        /// 0-based index of the example.
        index: usize,
        /// What went wrong.
        reason: String,
    },
}

/// One conversation to learn from.
pub type Conversation = Vec<ChatMessage>;

/// Reads a chat dataset. Accepted, detected per record:
/// - JSONL, one object per line, either `{"messages": [{"role", "content"}, …]}`
///   or Alpaca `{"instruction", "input"?, "output", "system"?}`;
/// - a JSON array of such objects (the Alpaca release format).
///
/// Alpaca records become `[system?, user: instruction + "\n\n" + input, assistant: output]`.
pub fn load_chat_file(path: impl AsRef<Path>) -> Result<Vec<Conversation>, DataError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let record_err = |line: usize, reason: String| DataError::Record {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut out = Vec::new();
    if text.trim_start().starts_with('[') {
        let records: Vec<Value> =
            serde_json::from_str(&text).map_err(|e| record_err(e.line(), e.to_string()))?;
        for (i, r) in records.iter().enumerate() {
            out.push(conversation_from_value(r).map_err(|reason| record_err(i + 1, reason))?);
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|e| record_err(i + 1, format!("not JSON: {e}")))?;
            out.push(conversation_from_value(&v).map_err(|reason| record_err(i + 1, reason))?);
        }
    }
    if out.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// One record (`messages` or Alpaca) as a conversation.
pub fn conversation_from_value(v: &Value) -> Result<Conversation, String> {
    let obj = v.as_object().ok_or("a record must be a JSON object")?;
    if let Some(messages) = obj.get("messages") {
        let list = messages.as_array().ok_or("`messages` must be an array")?;
        let mut conv = Vec::with_capacity(list.len());
        for (j, m) in list.iter().enumerate() {
            let field = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("messages[{j}] has no string `{k}`"))
            };
            let role = field("role")?;
            if !matches!(role, "system" | "user" | "assistant") {
                return Err(format!("messages[{j}] has unknown role `{role}`"));
            }
            conv.push(ChatMessage::new(role, field("content")?));
        }
        if !conv.iter().any(|m| m.role == "assistant") {
            return Err("no assistant message to learn from".into());
        }
        return Ok(conv);
    }
    let text = |k: &str| obj.get(k).and_then(Value::as_str);
    match (text("instruction"), text("output")) {
        (Some(instruction), Some(output)) => {
            let mut conv = Vec::with_capacity(3);
            if let Some(system) = text("system").filter(|s| !s.is_empty()) {
                conv.push(ChatMessage::system(system));
            }
            let user = match text("input").filter(|s| !s.trim().is_empty()) {
                Some(input) => format!("{instruction}\n\n{input}"),
                None => instruction.to_string(),
            };
            conv.push(ChatMessage::user(user));
            conv.push(ChatMessage::assistant(output));
            Ok(conv)
        }
        _ => Err("expected `messages`, or Alpaca `instruction` and `output`".into()),
    }
}

/// A tokenized training sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `targets[j]`: whether predicting token `j` (from tokens `..j`) counts
    /// in the loss. `targets[0]` is never used (nothing predicts it).
    pub targets: Vec<bool>,
}

impl TokenizedExample {
    /// Plain language-model data: every token but the first is a target.
    pub fn plain(ids: Vec<u32>) -> Self {
        let targets = (0..ids.len()).map(|j| j > 0).collect();
        Self { ids, targets }
    }

    /// Number of tokens that carry loss.
    pub fn loss_tokens(&self) -> usize {
        self.targets.iter().skip(1).filter(|&&t| t).count()
    }
}

/// Renders `conversation` with `template` and tokenizes it (without adding
/// special tokens: templates write their own BOS, as HF's
/// `apply_chat_template(tokenize=True)` does). Only the tokens of assistant
/// turns — their text and the template's end-of-turn marker, what the model
/// must learn to produce — are targets.
///
/// Spans are found by rendering each prefix of the conversation: the text
/// between `render(messages[..i], add_generation_prompt)` and
/// `render(messages[..=i])` is assistant turn `i`. A token is a target when
/// it starts inside such a span. Sequences longer than `max_len` are cut at
/// the right.
pub fn tokenize_chat(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    conversation: &[ChatMessage],
    max_len: usize,
) -> Result<TokenizedExample, String> {
    let full = template
        .render(conversation, false)
        .map_err(|e| e.to_string())?;
    let mut spans = Vec::new();
    for (i, m) in conversation.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before = template
            .render(&conversation[..i], true)
            .map_err(|e| e.to_string())?;
        let through = template
            .render(&conversation[..=i], false)
            .map_err(|e| e.to_string())?;
        if !full.starts_with(&through) || !through.starts_with(&before) {
            return Err(format!(
                "the chat template does not render assistant turn {i} as a continuation of the \
                 conversation before it, so its tokens cannot be located"
            ));
        }
        spans.push(before.len()..through.len());
    }
    if spans.is_empty() {
        return Err("no assistant message to learn from".into());
    }
    let encoding = tokenizer
        .inner()
        .encode(full.as_str(), false)
        .map_err(|e| e.to_string())?;
    let mut ids = encoding.get_ids().to_vec();
    let mut targets: Vec<bool> = encoding
        .get_offsets()
        .iter()
        .map(|&(start, end)| end > start && spans.iter().any(|s| s.contains(&start)))
        .collect();
    ids.truncate(max_len);
    targets.truncate(max_len);
    if let Some(first) = targets.first_mut() {
        *first = false;
    }
    let example = TokenizedExample { ids, targets };
    if example.loss_tokens() == 0 {
        return Err(format!(
            "no assistant token within the first {max_len} tokens (raise the maximum length)"
        ));
    }
    Ok(example)
}

/// Tokenizes every conversation ([`tokenize_chat`]); errors name the example.
pub fn tokenize_dataset(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    conversations: &[Conversation],
    max_len: usize,
) -> Result<Vec<TokenizedExample>, DataError> {
    conversations
        .iter()
        .enumerate()
        .map(|(index, c)| {
            tokenize_chat(tokenizer, template, c, max_len)
                .map_err(|reason| DataError::Example { index, reason })
        })
        .collect()
}
