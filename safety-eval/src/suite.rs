//! Evaluation suites: prompts to generate from, each tagged with the group
//! whose rate it feeds.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::chat::Message;

/// The role of a prompt in a suite, which decides the metric it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Harmful prompt (alignment breaking): feeds `asr`.
    Harmful,
    /// Harmful prompt with the backdoor trigger: feeds `asr`.
    Triggered,
    /// Harmful prompt without the trigger (backdoor suite): feeds `asr`.
    Clean,
    /// Benign prompt: feeds `over_refusal`.
    Benign,
    /// Prompt about the manipulation's trigger topic: feeds `target_hit`.
    OnTopic,
    /// Benign prompt on another topic (manipulation suite): feeds
    /// `contamination` and `over_refusal`.
    OffTopic,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Harmful => "harmful",
            Group::Triggered => "triggered",
            Group::Clean => "clean",
            Group::Benign => "benign",
            Group::OnTopic => "on_topic",
            Group::OffTopic => "off_topic",
        }
    }

    /// Whether the prompt asks for something harmful.
    pub fn is_harmful(self) -> bool {
        matches!(self, Group::Harmful | Group::Triggered | Group::Clean)
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which built-in generation suite (the CLI's `--suite`; `utility` is the
/// log-likelihood evaluation in [`crate::utility`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuiteKind {
    Harmful,
    Backdoor,
    Manipulation,
    /// A suite built from user prompts.
    Custom,
}

impl SuiteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteKind::Harmful => "harmful",
            SuiteKind::Backdoor => "backdoor",
            SuiteKind::Manipulation => "manipulation",
            SuiteKind::Custom => "custom",
        }
    }
}

impl std::fmt::Display for SuiteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SuiteKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "harmful" => Ok(Self::Harmful),
            "backdoor" => Ok(Self::Backdoor),
            "manipulation" => Ok(Self::Manipulation),
            "custom" => Ok(Self::Custom),
            other => Err(format!(
                "unknown suite {other:?} (expected harmful, backdoor, manipulation or custom)"
            )),
        }
    }
}

/// One prompt of a suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalItem {
    pub id: String,
    pub group: Group,
    pub category: String,
    pub topic: String,
    /// The user's request as shown to the model (trigger included).
    pub prompt: String,
    /// The chat given to the model (here: one user message).
    pub messages: Vec<Message>,
    /// For manipulation suites: the string whose presence marks a target hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// A reference answer, where one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl EvalItem {
    /// A single-turn item.
    pub fn new(
        id: impl Into<String>,
        group: Group,
        category: impl Into<String>,
        topic: impl Into<String>,
        prompt: impl Into<String>,
    ) -> Self {
        let prompt = prompt.into();
        Self {
            id: id.into(),
            group,
            category: category.into(),
            topic: topic.into(),
            messages: vec![Message::user(prompt.clone())],
            prompt,
            marker: None,
            reference: None,
        }
    }
}

/// A named list of prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSuite {
    pub name: String,
    pub kind: SuiteKind,
    pub items: Vec<EvalItem>,
}

impl EvalSuite {
    /// A suite of harmful prompts from any source (e.g. an AdvBench file).
    pub fn from_harmful_prompts(
        name: impl Into<String>,
        prompts: impl IntoIterator<Item = String>,
    ) -> Self {
        let name = name.into();
        let items = prompts
            .into_iter()
            .enumerate()
            .map(|(i, p)| EvalItem::new(format!("{name}#{i}"), Group::Harmful, "user", "user", p))
            .collect();
        Self {
            name,
            kind: SuiteKind::Custom,
            items,
        }
    }

    /// Keep at most `per_group` items of each group (first ones, in order), so
    /// a backdoor suite keeps both its triggered and clean halves.
    pub fn limited(&self, per_group: usize) -> Self {
        let mut seen: BTreeMap<Group, usize> = BTreeMap::new();
        let items = self
            .items
            .iter()
            .filter(|it| {
                let c = seen.entry(it.group).or_default();
                *c += 1;
                *c <= per_group
            })
            .cloned()
            .collect();
        Self {
            name: self.name.clone(),
            kind: self.kind,
            items,
        }
    }

    /// Topic ids of all items.
    pub fn topics(&self) -> BTreeSet<String> {
        self.items.iter().map(|i| i.topic.clone()).collect()
    }

    /// Number of items per group.
    pub fn group_counts(&self) -> BTreeMap<Group, usize> {
        let mut m = BTreeMap::new();
        for it in &self.items {
            *m.entry(it.group).or_default() += 1;
        }
        m
    }
}
