//! Tokenizer round trips, streaming decode and chat-template lookup on the fixtures.

use std::path::PathBuf;

use llama_model::{ChatMessage, ChatTemplate, Tokenizer};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/hf-reference/llama-untied-f32")
}

#[test]
fn encode_decode_round_trip() {
    let tok = Tokenizer::from_dir(dir()).unwrap();
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(4)); // <|im_end|>
    for text in [
        "What is the capital of France?",
        "héllo wörld — 世界 🙂",
        "  spaces\n\tand tabs",
    ] {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", false).unwrap();
    assert_eq!(ids[0], 3);
    assert_eq!(*ids.last().unwrap(), 4);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi");
}

#[test]
fn incremental_decoding_reassembles_text() {
    let tok = Tokenizer::from_dir(dir()).unwrap();
    let text = "Streaming: héllo 世界 🙂 done.";
    let ids = tok.encode(text, false).unwrap();
    let mut dec = tok.incremental_decoder(false);
    let mut out = String::new();
    for &id in &ids {
        if let Some(piece) = dec.push(id).unwrap() {
            assert!(
                !piece.contains('\u{FFFD}'),
                "incomplete character emitted: {piece:?}"
            );
            out.push_str(&piece);
        }
    }
    if let Some(rest) = dec.finish().unwrap() {
        out.push_str(&rest);
    }
    assert_eq!(out, text);
}

#[test]
fn template_lookup_prefers_jinja_file_then_tokenizer_config() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(ChatTemplate::from_dir(tmp.path()).unwrap().is_none());
    std::fs::write(
        tmp.path().join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>",
            "chat_template": [{"name": "default", "template": "{{ bos_token }}{{ messages[0].content.strip() }}{{ eos_token }}"},
                              {"name": "tool_use", "template": "T"}]}"#,
    )
    .unwrap();
    let t = ChatTemplate::from_dir(tmp.path()).unwrap().unwrap();
    assert_eq!(
        t.render(&[ChatMessage::user(" x ")], false).unwrap(),
        "<s>x</s>"
    );
    let t = ChatTemplate::from_dir_named(tmp.path(), Some("tool_use"))
        .unwrap()
        .unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "T");
    assert!(ChatTemplate::from_dir_named(tmp.path(), Some("nope")).is_err());
    std::fs::write(
        tmp.path().join("chat_template.jinja"),
        "J{{ messages | length }}",
    )
    .unwrap();
    let t = ChatTemplate::from_dir(tmp.path()).unwrap().unwrap();
    assert_eq!(t.render(&[ChatMessage::user("a")], true).unwrap(), "J1");
}

/// A `tokenizer.json` cut off inside `"decoder"` (the input fuzzing found:
/// tokenizers 0.22 panics on it with "Helper") is a typed error naming the
/// file, not a panic; an oversized or non-tokenizer JSON file likewise.
#[test]
fn malformed_tokenizer_json_is_a_typed_error() {
    let good = std::fs::read_to_string(dir().join("tokenizer.json")).unwrap();
    let cut = good.find("\"decoder\"").expect("fixture has a decoder") + 40;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    for text in [
        format!("{}      \"8\": 28,\n  }}\n}}", &good[..cut]),
        "{\"decoder\": 7}".to_string(),
        "[1, 2, 3]".to_string(),
    ] {
        std::fs::write(&path, &text).unwrap();
        let r = std::panic::catch_unwind(|| Tokenizer::from_dir(tmp.path()));
        let Err(e) = r.expect("no panic") else {
            panic!("{text:?} was accepted")
        };
        assert!(e.to_string().contains("tokenizer.json"), "{e}");
    }
}
