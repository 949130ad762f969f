//! Conversion of a GGUF-embedded tokenizer (`tokenizer.ggml.*` metadata) into a
//! Hugging Face `tokenizer.json` and a [`tokenizers::Tokenizer`].
//!
//! Two `tokenizer.ggml.model` kinds are handled:
//!
//! * **`gpt2`** — byte-level BPE (GPT-2, StarCoder/SmolLM, Llama-3, Qwen2, ...).
//!   `tokenizer.ggml.tokens` is the vocabulary (id = index), `tokenizer.ggml.merges`
//!   the ranked merges (`"a b"`). The pre-tokenizer is chosen by `tokenizer.ggml.pre`
//!   as in the models' own `tokenizer.json`:
//!   - `smollm`, `starcoder`, `refact`: `Sequence[Digits(individual_digits), ByteLevel(use_regex)]`
//!     (SmolLM2's HF pre-tokenizer);
//!   - `llama-bpe`/`llama3`/`llama-v3`/`dbrx`/`smaug-bpe`/`falcon3`: `Split(Llama-3 regex, Isolated)` +
//!     `ByteLevel(use_regex = false)`, with `ignore_merges`;
//!   - `qwen2`/`deepseek-r1-qwen`: the same with Qwen2's regex;
//!   - anything else (`gpt2`, `default`, absent, ...): `ByteLevel(add_prefix_space = false, use_regex = true)`.
//!
//!   Decoder `ByteLevel`; post-processor `ByteLevel(trim_offsets = false)`, followed by a
//!   template adding BOS/EOS when `tokenizer.ggml.add_bos_token`/`add_eos_token` say so
//!   (default: no). Normal tokens not spelled in the byte-level alphabet are respelled
//!   into it (as transformers does); control and user-defined tokens are kept verbatim.
//!
//! * **`llama`** — SentencePiece BPE (Llama-2, Mistral, TinyLlama): tokens with
//!   `tokenizer.ggml.scores`, byte tokens `<0xNN>`, `▁` for space. Converted the way
//!   HF's `LlamaConverter` writes Llama-2's `tokenizer.json` (the "legacy" layout,
//!   which also matches llama.cpp): normalizer `Prepend("▁")` (when
//!   `tokenizer.ggml.add_space_prefix`, default true) + `Replace(" ", "▁")`, no
//!   pre-tokenizer, a BPE model with `byte_fallback`, `fuse_unk` and the unknown token,
//!   decoder `Replace("▁", " ")`, `ByteFallback`, `Fuse`, `Strip(1, 0)`, and BOS added
//!   unless `tokenizer.ggml.add_bos_token` is false. SentencePiece BPE merges the
//!   adjacent pair whose concatenation has the highest score; a HF BPE reproduces it
//!   with merges derived from the vocabulary (unless the file has
//!   `tokenizer.ggml.merges`): every split `l + r` of every token into two tokens,
//!   ranked by the token's score (descending), then the lengths of `l` and `r`
//!   (longer first), then file order — exactly transformers' `generate_merges`.
//!
//! In both kinds, tokens of type 3 (control) and 2 (unknown), and the BOS/EOS/unknown
//! tokens, become special added tokens; type 4 (user-defined) become non-special
//! added tokens (matched whole in text, like llama.cpp does).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::error::GgufError;
use super::reader::GgufFile;

const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn tok_err(file: &GgufFile, message: impl Into<String>) -> GgufError {
    GgufError::Tokenizer {
        file: file.name().to_string(),
        message: message.into(),
    }
}

/// `tokenizer.chat_template`, when present (error if present but not a string).
pub fn chat_template(file: &GgufFile) -> Result<Option<String>, GgufError> {
    Ok(file.get_str("tokenizer.chat_template")?.map(str::to_string))
}

struct Meta<'a> {
    tokens: Vec<&'a str>,
    types: Vec<i64>,
    bos: Option<usize>,
    eos: Option<usize>,
    unk: Option<usize>,
    pad: Option<usize>,
}

fn token_id(file: &GgufFile, key: &str, n: usize) -> Result<Option<usize>, GgufError> {
    match file.get_u64(key)? {
        None => Ok(None),
        Some(v) if (v as u128) < n as u128 => Ok(Some(v as usize)),
        Some(v) => Err(tok_err(
            file,
            format!("{key} = {v} is not below the vocabulary size {n}"),
        )),
    }
}

fn meta(file: &GgufFile) -> Result<Meta<'_>, GgufError> {
    let tokens = file
        .get_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| GgufError::MissingKey {
            file: file.name().to_string(),
            key: "tokenizer.ggml.tokens".into(),
        })?;
    let n = tokens.len();
    if n == 0 || n > u32::MAX as usize {
        return Err(tok_err(
            file,
            format!("tokenizer.ggml.tokens has {n} entries"),
        ));
    }
    let types = match file.get_i64_array("tokenizer.ggml.token_type")? {
        Some(t) if t.len() == n => t,
        Some(t) => {
            return Err(tok_err(
                file,
                format!(
                    "tokenizer.ggml.token_type has {} entries for {n} tokens",
                    t.len()
                ),
            ))
        }
        None => vec![1; n],
    };
    Ok(Meta {
        bos: token_id(file, "tokenizer.ggml.bos_token_id", n)?,
        eos: token_id(file, "tokenizer.ggml.eos_token_id", n)?,
        unk: token_id(file, "tokenizer.ggml.unknown_token_id", n)?,
        pad: token_id(file, "tokenizer.ggml.padding_token_id", n)?,
        tokens,
        types,
    })
}

fn added_tokens(m: &Meta<'_>) -> Vec<Value> {
    let forced: Vec<usize> = [m.bos, m.eos, m.unk].into_iter().flatten().collect();
    let mut out = Vec::new();
    for (id, (tok, &ty)) in m.tokens.iter().zip(&m.types).enumerate() {
        let special = ty == TOKEN_CONTROL || ty == TOKEN_UNKNOWN || forced.contains(&id);
        if special || ty == TOKEN_USER_DEFINED {
            out.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special,
            }));
        }
    }
    out
}

/// Post-processor adding BOS/EOS (`None` when neither is added).
fn template(m: &Meta<'_>, add_bos: bool, add_eos: bool) -> Option<Value> {
    let bos = m.bos.filter(|_| add_bos);
    let eos = m.eos.filter(|_| add_eos);
    if bos.is_none() && eos.is_none() {
        return None;
    }
    let special =
        |id: usize, type_id: u32| json!({"SpecialToken": {"id": m.tokens[id], "type_id": type_id}});
    let seq = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    if let Some(b) = bos {
        single.push(special(b, 0));
    }
    single.push(seq("A", 0));
    if let Some(e) = eos {
        single.push(special(e, 0));
    }
    pair.extend(single.iter().cloned());
    if let Some(b) = bos {
        pair.push(special(b, 1));
    }
    pair.push(seq("B", 1));
    if let Some(e) = eos {
        pair.push(special(e, 1));
    }
    let mut specials = Map::new();
    for id in [bos, eos].into_iter().flatten() {
        specials.insert(
            m.tokens[id].to_string(),
            json!({"id": m.tokens[id], "ids": [id], "tokens": [m.tokens[id]]}),
        );
    }
    Some(
        json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}),
    )
}

/// GPT-2's byte → printable-char table (`bytes_to_unicode`).
fn byte_level_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap_or('\0')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

fn gpt2_json(file: &GgufFile, m: &Meta<'_>) -> Result<Value, GgufError> {
    let merges = file
        .get_str_array("tokenizer.ggml.merges")?
        .ok_or_else(|| GgufError::MissingKey {
            file: file.name().to_string(),
            key: "tokenizer.ggml.merges".into(),
        })?;
    let table = byte_level_alphabet();
    let in_alphabet: std::collections::HashSet<char> = table.iter().copied().collect();
    let mut vocab = Map::new();
    for (id, (tok, &ty)) in m.tokens.iter().zip(&m.types).enumerate() {
        let keep = ty == TOKEN_CONTROL
            || ty == TOKEN_USER_DEFINED
            || tok.chars().all(|c| in_alphabet.contains(&c));
        let key = if keep {
            (*tok).to_string()
        } else {
            tok.bytes().map(|b| table[b as usize]).collect()
        };
        vocab.entry(key).or_insert(json!(id));
    }
    let mut merge_pairs = Vec::with_capacity(merges.len());
    for (i, mg) in merges.iter().enumerate() {
        let Some((a, b)) = mg.split_once(' ') else {
            return Err(tok_err(
                file,
                format!("merge {i} {mg:?} is not two tokens separated by a space"),
            ));
        };
        merge_pairs.push(json!([a, b]));
    }
    let pre = file.get_str("tokenizer.ggml.pre")?.unwrap_or("default");
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    let (pre_tokenizer, ignore_merges) = match pre {
        "smollm" | "starcoder" | "refact" => (
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]}),
            false,
        ),
        "llama-bpe" | "llama3" | "llama-v3" | "dbrx" | "smaug-bpe" | "falcon3" => {
            (split(LLAMA3_SPLIT), true)
        }
        "qwen2" | "deepseek-r1-qwen" => (split(QWEN2_SPLIT), false),
        _ => (byte_level(true), false),
    };
    let add_bos = file
        .get_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(false);
    let add_eos = file
        .get_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    let byte_post = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true});
    let post = match template(m, add_bos, add_eos) {
        None => byte_post,
        Some(t) => json!({"type": "Sequence", "processors": [byte_post, t]}),
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(m),
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merge_pairs,
        },
    }))
}

/// Merges implied by a SentencePiece vocabulary and its scores (transformers'
/// `generate_merges`): for each token in id order, each split into two tokens
/// ordered by (left id, right id); then a stable sort by (score, left length,
/// right length), all descending. Lengths count chars.
pub fn sentencepiece_merges(tokens: &[&str], scores: &[f32]) -> Vec<(String, String)> {
    let mut vocab: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t, i); // last occurrence wins, like a Python dict
    }
    // Python iterates dict(zip(tokens, scores)): first-insertion order, last score.
    let mut score_of: HashMap<&str, f32> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    for (t, &s) in tokens.iter().zip(scores) {
        if score_of.insert(t, s).is_none() {
            order.push(t);
        }
    }
    struct M<'a> {
        l: &'a str,
        r: &'a str,
        score: f32,
        ll: usize,
        rl: usize,
    }
    let mut merges: Vec<M<'_>> = Vec::new();
    for piece in order {
        let score = score_of[piece];
        let mut local: Vec<(usize, usize, M<'_>)> = Vec::new();
        for (idx, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(idx);
            if let (Some(&il), Some(&ir)) = (vocab.get(l), vocab.get(r)) {
                local.push((
                    il,
                    ir,
                    M {
                        l,
                        r,
                        score,
                        ll: l.chars().count(),
                        rl: r.chars().count(),
                    },
                ));
            }
        }
        local.sort_by_key(|x| (x.0, x.1));
        merges.extend(local.into_iter().map(|x| x.2));
    }
    // Stable sort, descending on the key (Python's sorted(reverse=True) is stable).
    merges.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.ll.cmp(&a.ll))
            .then(b.rl.cmp(&a.rl))
    });
    merges
        .into_iter()
        .map(|m| (m.l.to_string(), m.r.to_string()))
        .collect()
}

fn llama_json(file: &GgufFile, m: &Meta<'_>) -> Result<Value, GgufError> {
    let merges: Vec<(String, String)> = match file.get_str_array("tokenizer.ggml.merges")? {
        Some(ms) => ms
            .iter()
            .enumerate()
            .map(|(i, mg)| {
                mg.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        tok_err(
                            file,
                            format!("merge {i} {mg:?} is not two tokens separated by a space"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        None => {
            let scores = file
                .get_f64_array("tokenizer.ggml.scores")?
                .ok_or_else(|| GgufError::MissingKey {
                    file: file.name().to_string(),
                    key: "tokenizer.ggml.scores".into(),
                })?;
            if scores.len() != m.tokens.len() {
                return Err(tok_err(
                    file,
                    format!(
                        "tokenizer.ggml.scores has {} entries for {} tokens",
                        scores.len(),
                        m.tokens.len()
                    ),
                ));
            }
            let scores: Vec<f32> = scores.iter().map(|&s| s as f32).collect();
            sentencepiece_merges(&m.tokens, &scores)
        }
    };
    let mut vocab = Map::new();
    for (id, tok) in m.tokens.iter().enumerate() {
        vocab.insert((*tok).to_string(), json!(id));
    }
    let unk = m
        .unk
        .or_else(|| m.tokens.iter().position(|t| *t == "<unk>"));
    let add_prefix = file
        .get_bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    let add_bos = file
        .get_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(true);
    let add_eos = file
        .get_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if add_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let merges: Vec<Value> = merges.into_iter().map(|(a, b)| json!([a, b])).collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(m),
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": template(m, add_bos, add_eos),
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk.map(|u| m.tokens[u]),
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
            "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    }))
}

/// The embedded tokenizer as a Hugging Face `tokenizer.json` value (see the module doc).
pub fn tokenizer_json(file: &GgufFile) -> Result<Value, GgufError> {
    let model = file
        .get_str("tokenizer.ggml.model")?
        .ok_or_else(|| GgufError::MissingKey {
            file: file.name().to_string(),
            key: "tokenizer.ggml.model".into(),
        })?;
    let m = meta(file)?;
    match model {
        "gpt2" => gpt2_json(file, &m),
        "llama" => llama_json(file, &m),
        other => Err(tok_err(
            file,
            format!(
                "tokenizer.ggml.model {other:?} is not supported (supported: \"gpt2\", \"llama\")"
            ),
        )),
    }
}

pub(crate) fn load_tokenizer_json(
    file: &GgufFile,
    json: &Value,
) -> Result<tokenizers::Tokenizer, GgufError> {
    let text = serde_json::to_string(json).map_err(|e| tok_err(file, e.to_string()))?;
    text.parse::<tokenizers::Tokenizer>()
        .map_err(|e| tok_err(file, format!("building the tokenizer: {e}")))
}

/// The embedded tokenizer as a [`tokenizers::Tokenizer`].
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<tokenizers::Tokenizer, GgufError> {
    load_tokenizer_json(file, &tokenizer_json(file)?)
}

/// A `tokenizer_config.json` for a HF directory written from this GGUF: special
/// token strings, `add_bos_token`/`add_eos_token`, `chat_template` and
/// `model_max_length` (from `<arch>.context_length`).
pub fn tokenizer_config_json(file: &GgufFile) -> Result<Value, GgufError> {
    let m = meta(file)?;
    let model = file.get_str("tokenizer.ggml.model")?.unwrap_or("");
    let tok = |id: Option<usize>| id.map(|i| m.tokens[i]);
    let mut cfg = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": file.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(model == "llama"),
        "add_eos_token": file.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
        "bos_token": tok(m.bos),
        "eos_token": tok(m.eos),
        "unk_token": tok(m.unk),
        "pad_token": tok(m.pad),
        "clean_up_tokenization_spaces": false,
    });
    if let Some(arch) = file.get_str("general.architecture")? {
        if let Some(ctx) = file.get_u64(&format!("{arch}.context_length"))? {
            cfg["model_max_length"] = json!(ctx);
        }
    }
    if let Some(t) = chat_template(file)? {
        cfg["chat_template"] = json!(t);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_matches_gpt2() {
        let t = byte_level_alphabet();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
    }

    #[test]
    fn merges_from_scores() {
        let tokens = ["<unk>", "a", "b", "c", "ab", "abc", "bc"];
        let scores = [0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -4.5];
        let m = sentencepiece_merges(&tokens, &scores);
        let m: Vec<(&str, &str)> = m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        // ab (-4) first, then bc (-4.5), then abc (-5): "ab"+"c" (left longer) before "a"+"bc".
        assert_eq!(m, vec![("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
    }
}
