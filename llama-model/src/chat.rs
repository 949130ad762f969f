//! Chat templates as Hugging Face defines them: Jinja2 source from
//! `chat_template.jinja` or `tokenizer_config.json`'s `chat_template`,
//! rendered with minijinja in the environment transformers uses
//! (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`,
//! Python string methods, a Python-style `tojson`, `strftime_now`).

use std::path::Path;

use minijinja::value::{Kwargs, Value as JValue, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ChatTemplateError;
use crate::tokenizer::SpecialTokens;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Llama-2-chat's template (`[INST] <<SYS>> … <</SYS>> … [/INST]`), as shipped
/// in Meta's `tokenizer_config.json`.
pub const LLAMA2_TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// The ChatML template (`<|im_start|>role\n…<|im_end|>\n`).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// A compiled chat template and the special tokens it is rendered with.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl Clone for ChatTemplate {
    fn clone(&self) -> Self {
        Self::new(&self.source)
            .expect("a template that compiled once compiles again")
            .with_special_tokens(&self.bos_token, &self.eos_token)
    }
}

impl ChatTemplate {
    /// Compiles Jinja2 source.
    pub fn new(source: &str) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| ChatTemplateError::Syntax(format_error(&e)))?;
        Ok(Self {
            env,
            source: source.to_string(),
            bos_token: String::new(),
            eos_token: String::new(),
        })
    }

    /// The built-in Llama-2-chat template.
    pub fn llama2() -> Self {
        Self::new(LLAMA2_TEMPLATE)
            .expect("built-in template compiles")
            .with_special_tokens("<s>", "</s>")
    }

    /// The built-in ChatML template.
    pub fn chatml() -> Self {
        Self::new(CHATML_TEMPLATE).expect("built-in template compiles")
    }

    /// Sets the `bos_token` / `eos_token` strings the template sees.
    pub fn with_special_tokens(mut self, bos_token: &str, eos_token: &str) -> Self {
        self.bos_token = bos_token.to_string();
        self.eos_token = eos_token.to_string();
        self
    }

    /// The Jinja2 source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The checkpoint's own template, looked up as transformers does:
    /// `chat_template.jinja`, then `chat_template.json`, then the
    /// `chat_template` field of `tokenizer_config.json` (a string, or a list
    /// of `{name, template}` from which `default` is taken). Special tokens
    /// come from `tokenizer_config.json`. `Ok(None)` when there is none.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Option<Self>, ChatTemplateError> {
        Self::from_dir_named(dir, None)
    }

    /// Like [`Self::from_dir`], choosing a named template from a list.
    pub fn from_dir_named(
        dir: impl AsRef<Path>,
        name: Option<&str>,
    ) -> Result<Option<Self>, ChatTemplateError> {
        let dir = dir.as_ref();
        let cfg_path = dir.join("tokenizer_config.json");
        let special = if cfg_path.exists() {
            crate::tokenizer::special_tokens_from_config(&cfg_path).map_err(|e| {
                ChatTemplateError::File {
                    path: cfg_path.clone(),
                    reason: e.to_string(),
                }
            })?
        } else {
            SpecialTokens::default()
        };
        let source = match find_template_source(dir, name)? {
            Some(s) => s,
            None => return Ok(None),
        };
        let t = Self::new(&source)?.with_special_tokens(
            special.bos_token.as_deref().unwrap_or(""),
            special.eos_token.as_deref().unwrap_or(""),
        );
        Ok(Some(t))
    }

    /// Renders a conversation with HF's variables (`messages`,
    /// `add_generation_prompt`, `bos_token`, `eos_token`).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        self.render_value(
            JValue::from_serialize(messages),
            add_generation_prompt,
            JValue::from(()),
        )
    }

    /// Renders arbitrary JSON messages (tool calls, extra fields) with extra
    /// template variables from `extra` (a JSON object, or null).
    pub fn render_json(
        &self,
        messages: &Value,
        add_generation_prompt: bool,
        extra: &Value,
    ) -> Result<String, ChatTemplateError> {
        let extra = match extra {
            Value::Object(_) => JValue::from_serialize(extra),
            _ => JValue::from(()),
        };
        self.render_value(
            JValue::from_serialize(messages),
            add_generation_prompt,
            extra,
        )
    }

    fn render_value(
        &self,
        messages: JValue,
        add_generation_prompt: bool,
        extra: JValue,
    ) -> Result<String, ChatTemplateError> {
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
            ..extra
        };
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| ChatTemplateError::Render(format_error(&e)))?;
        tmpl.render(ctx)
            .map_err(|e| ChatTemplateError::Render(format_error(&e)))
    }
}

fn find_template_source(
    dir: &Path,
    name: Option<&str>,
) -> Result<Option<String>, ChatTemplateError> {
    let file_err = |path: &Path, reason: String| ChatTemplateError::File {
        path: path.to_path_buf(),
        reason,
    };
    let jinja = dir.join("chat_template.jinja");
    if name.is_none() && jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| file_err(&jinja, e.to_string()));
    }
    for file in ["chat_template.json", "tokenizer_config.json"] {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| file_err(&path, e.to_string()))?;
        match v.get("chat_template") {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => {
                if let Some(n) = name {
                    if n != "default" {
                        return Err(ChatTemplateError::NoSuchTemplate(n.to_string()));
                    }
                }
                return Ok(Some(s.clone()));
            }
            Some(Value::Array(list)) => {
                let wanted = name.unwrap_or("default");
                for item in list {
                    if item.get("name").and_then(Value::as_str) == Some(wanted) {
                        return match item.get("template").and_then(Value::as_str) {
                            Some(t) => Ok(Some(t.to_string())),
                            None => Err(file_err(
                                &path,
                                format!("chat template `{wanted}` has no string `template`"),
                            )),
                        };
                    }
                }
                if name.is_some() {
                    return Err(ChatTemplateError::NoSuchTemplate(wanted.to_string()));
                }
                return Ok(None);
            }
            Some(_) => {
                return Err(file_err(
                    &path,
                    "`chat_template` is neither a string nor a list".into(),
                ))
            }
        }
    }
    match name {
        Some(n) => Err(ChatTemplateError::NoSuchTemplate(n.to_string())),
        None => Ok(None),
    }
}

fn format_error(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn raise_exception(message: String) -> Result<JValue, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False,
/// indent=indent)` — Python's separators, no HTML escaping, key order kept.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<JValue, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&value, indent, 0, &mut out)?;
    Ok(JValue::from_safe_string(out))
}

fn write_json(
    v: &JValue,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) -> Result<(), minijinja::Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&v.to_string()),
        ValueKind::String | ValueKind::Bytes => {
            out.push_str(&serde_json::to_string(v.as_str().unwrap_or_default()).expect("string"))
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<JValue> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(item, indent, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let keys: Vec<JValue> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                let key = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| k.to_string());
                out.push_str(&serde_json::to_string(&key).expect("string"));
                out.push_str(": ");
                write_json(&v.get_item(k)?, indent, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => out.push_str(&serde_json::to_string(&v.to_string()).expect("string")),
    }
    Ok(())
}

/// `strftime_now(format)`: the current UTC date; supports `%d %m %Y %y %b %B %H %M %S %%`.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    strftime(secs, &format)
}

fn strftime(secs: i64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama2_template_with_system_prompt() {
        let t = ChatTemplate::llama2();
        let s = t
            .render(
                &[
                    ChatMessage::system("Be brief."),
                    ChatMessage::user(" Hi "),
                    ChatMessage::assistant("Hello."),
                    ChatMessage::user("Bye"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(
            s,
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello. </s><s>[INST] Bye [/INST]"
        );
    }

    #[test]
    fn llama2_template_rejects_bad_alternation() {
        let t = ChatTemplate::llama2();
        let e = t
            .render(&[ChatMessage::assistant("x"), ChatMessage::user("y")], true)
            .unwrap_err();
        assert!(e.to_string().contains("alternate"), "{e}");
    }

    #[test]
    fn chatml_template() {
        let s = ChatTemplate::chatml()
            .render(&[ChatMessage::user("Hi")], true)
            .unwrap();
        assert_eq!(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn tojson_is_python_style_and_trim_blocks_apply() {
        let t = ChatTemplate::new(
            "{% for m in messages %}\n{{ m | tojson }}\n{% endfor %}{{ {'a': [1, 'x<y']} | tojson(indent=2) }}",
        )
        .unwrap();
        let s = t.render(&[ChatMessage::user("é")], false).unwrap();
        assert_eq!(
            s,
            "{\"role\": \"user\", \"content\": \"é\"}\n{\n  \"a\": [\n    1,\n    \"x<y\"\n  ]\n}"
        );
    }

    #[test]
    fn strftime_formats_dates() {
        // 2024-07-23 12:34:56 UTC
        assert_eq!(
            strftime(1_721_738_096, "%d %b %Y %H:%M:%S"),
            "23 Jul 2024 12:34:56"
        );
        assert_eq!(strftime(0, "%Y-%m-%d %B"), "1970-01-01 January");
    }
}
