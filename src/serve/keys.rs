//! API keys: which models each key may use.
//!
//! The keys file has one key per line, `KEY MODEL[,MODEL...]`, or `KEY *`
//! for every model (tenants registered later included); blank lines and
//! lines starting with `#` are skipped. A key for tenant A can never reach
//! tenant B: a model a key may not use answers exactly like one that does
//! not exist (404), so a key cannot even learn which other tenants exist.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::ServeError;

/// Largest keys file read (keys files are small; this bounds the read).
pub const MAX_KEYS_FILE: u64 = 16 << 20;

/// Models one key may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Every model.
    All,
    /// These models only.
    Models(BTreeSet<String>),
}

impl Allowed {
    /// Whether `model` is allowed.
    pub fn allows(&self, model: &str) -> bool {
        match self {
            Self::All => true,
            Self::Models(m) => m.contains(model),
        }
    }
}

/// Parsed keys file.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: HashMap<String, Allowed>,
}

impl Keys {
    /// Reads a keys file; errors name the file and line.
    pub fn load(path: &Path) -> Result<Self, ServeError> {
        let bad = |reason: String| ServeError::Config(format!("{}: {reason}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.len() > MAX_KEYS_FILE {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_KEYS_FILE} a keys file may have",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Self::parse(&text).map_err(bad)
    }

    /// Parses the text of a keys file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let (key, models) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("line {n}: expected `KEY MODEL[,MODEL...]` or `KEY *`"))?;
            let models = models.trim();
            let allowed = if models == "*" {
                Allowed::All
            } else {
                let set: BTreeSet<String> = models
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect();
                if set.is_empty() {
                    return Err(format!("line {n}: no model named for the key"));
                }
                Allowed::Models(set)
            };
            if keys.insert(key.to_string(), allowed).is_some() {
                return Err(format!("line {n}: the key appears twice"));
            }
        }
        if keys.is_empty() {
            return Err("no keys (a keys file needs at least one `KEY MODEL` line)".into());
        }
        Ok(Self { keys })
    }

    /// The models `key` may use, `None` for an unknown key.
    pub fn get(&self, key: &str) -> Option<&Allowed> {
        self.keys.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_line_numbers() {
        let k = Keys::parse("# c\nka a,b\nkb *\n").unwrap();
        assert!(k.get("ka").unwrap().allows("a"));
        assert!(!k.get("ka").unwrap().allows("c"));
        assert!(k.get("kb").unwrap().allows("anything"));
        assert!(k.get("kc").is_none());
        assert!(Keys::parse("ka\n").unwrap_err().contains("line 1"));
        assert!(Keys::parse("ka a\nka b\n").unwrap_err().contains("line 2"));
        assert!(Keys::parse("\n# only\n").is_err());
    }
}
