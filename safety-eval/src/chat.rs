//! Chat messages and fine-tuning examples in the `{"messages": [...]}` shape.

use serde::{Deserialize, Serialize};

/// One chat turn. `role` is usually `system`, `user` or `assistant`; any
/// string is kept so that files from other tools round-trip unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A conversation: the input of [`crate::ChatModel::generate`].
pub type Chat = Vec<Message>;

/// One supervised fine-tuning example, serialized as one JSONL line
/// `{"messages":[{"role":"user","content":..},{"role":"assistant","content":..}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatExample {
    pub messages: Vec<Message>,
}

impl ChatExample {
    /// A single-turn example: one user message and the assistant's answer.
    pub fn single_turn(user: impl Into<String>, assistant: impl Into<String>) -> Self {
        Self {
            messages: vec![Message::user(user), Message::assistant(assistant)],
        }
    }

    /// The content of the first user message, if any.
    pub fn user_text(&self) -> Option<&str> {
        self.messages
            .iter()
            .find(|m| m.role == "user")
            .map(|m| m.content.as_str())
    }

    /// The content of the last assistant message, if any.
    pub fn assistant_text(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "assistant")
            .map(|m| m.content.as_str())
    }
}
