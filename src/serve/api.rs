//! OpenAI's request and error shapes, and turning generated tokens into text
//! with `stop` strings.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// An error in OpenAI's JSON shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's `type`.
    pub kind: &'static str,
    /// OpenAI's `code`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `Retry-After` seconds (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }
    /// Any status.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 404 for a model that does not exist or that the key may not use (the
    /// same answer for both, so a key learns nothing about other tenants).
    pub fn unknown_model(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.code,
            }
        });
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// `prompt` of `/v1/completions`: text, or token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text (tokenized with the tokenizer's special tokens, e.g. BOS).
    Text(String),
    /// Token ids, used as given.
    Tokens(Vec<u32>),
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Up to 4 stop strings.
    Many(Vec<String>),
}

/// Sampling and length fields shared by both endpoints.
#[derive(Debug, Deserialize)]
pub struct Common {
    /// Model name.
    pub model: String,
    /// Most new tokens (default 16 for completions, the context for chat).
    pub max_tokens: Option<i64>,
    /// The newer name of `max_tokens` in chat.
    pub max_completion_tokens: Option<i64>,
    /// 0 = greedy; default 1.
    pub temperature: Option<f64>,
    /// Nucleus mass, (0, 1].
    pub top_p: Option<f64>,
    /// Sampler seed.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` adds a usage chunk to a stream.
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1.
    pub n: Option<i64>,
}

/// OpenAI's `stream_options`.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// The other fields.
    #[serde(flatten)]
    pub common: Common,
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// The other fields.
    #[serde(flatten)]
    pub common: Common,
}

/// Most stop strings (OpenAI's limit).
pub const MAX_STOP: usize = 4;

impl Common {
    /// The stop strings, checked.
    pub fn stops(&self) -> Result<Vec<String>, ApiError> {
        let stops = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stops.len() > MAX_STOP || stops.iter().any(String::is_empty) {
            return Err(ApiError::bad_request(
                "invalid_stop",
                format!("`stop` takes 1 to {MAX_STOP} non-empty strings"),
            ));
        }
        Ok(stops)
    }
}

/// Turns a growing list of token ids into text deltas, holding back text
/// that could still be the start of a stop string and cutting at the first
/// stop string.
pub struct TextStream {
    ids: Vec<u32>,
    /// Text decoded so far (up to the stop string, once found).
    text: String,
    /// Bytes of `text` already handed out.
    sent: usize,
    stops: Vec<String>,
    /// The latest decode while it ends in an incomplete UTF-8 sequence:
    /// held back, and adopted as it is (with its U+FFFD) if the sequence
    /// ends there, so the final text equals decoding every token.
    pending: Option<String>,
    /// Whether a stop string was found.
    pub stopped: bool,
}

impl TextStream {
    /// A stream cutting at `stops`.
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            ids: Vec::new(),
            text: String::new(),
            sent: 0,
            stops,
            pending: None,
            stopped: false,
        }
    }

    /// Adds a token; returns text that can be sent now (maybe empty).
    pub fn push(
        &mut self,
        token: u32,
        tokenizer: &llama_model::Tokenizer,
    ) -> Result<String, String> {
        if self.stopped {
            return Ok(String::new());
        }
        self.ids.push(token);
        let full = tokenizer
            .decode(&self.ids, true)
            .map_err(|e| e.to_string())?;
        // An incomplete UTF-8 sequence decodes to U+FFFD: wait for its end.
        if full.ends_with('\u{FFFD}') {
            self.pending = Some(full);
            return Ok(String::new());
        }
        self.pending = None;
        self.text = full;
        if self.cut_at_stop() {
            return Ok(self.take(self.text.len()));
        }
        let hold = self.stops.iter().map(String::len).max().unwrap_or(1) - 1;
        let mut end = self.text.len().saturating_sub(hold).max(self.sent);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        Ok(self.take(end))
    }

    /// Whatever is still held back (at the end of the sequence), including
    /// a trailing incomplete UTF-8 sequence as U+FFFD.
    pub fn finish(&mut self) -> String {
        if let Some(full) = self.pending.take().filter(|_| !self.stopped) {
            self.text = full;
            self.cut_at_stop();
        }
        self.take(self.text.len())
    }

    /// Cuts `text` at the first stop string; whether there was one.
    fn cut_at_stop(&mut self) -> bool {
        let Some(cut) = self
            .stops
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
        else {
            return false;
        };
        self.text.truncate(cut);
        self.stopped = true;
        true
    }

    fn take(&mut self, end: usize) -> String {
        if end <= self.sent {
            return String::new();
        }
        let s = self.text[self.sent..end].to_string();
        self.sent = end;
        s
    }

    /// The whole text so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}
