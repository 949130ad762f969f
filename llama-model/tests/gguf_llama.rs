//! Llama GGUF → HF: config, tensor names/shapes/values (Q/K un-permuted),
//! SentencePiece tokenizer conversion, chat template. Fixture
//! `tests/data/gguf/tiny_llama.gguf`: written by `scripts/make_gguf_fixtures.py`
//! from random HF tensors the way `convert_hf_to_gguf.py` does (names mapped, Q/K
//! permuted with numpy), with a SentencePiece BPE model trained there; the
//! reference holds the original HF tensors and SentencePiece's own token ids.

use std::path::PathBuf;

use llama_model::gguf::{load_llama_gguf, GgufError, GgufFile, GgufLlama};
use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf")
}

fn reference() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(data_dir().join("tiny_llama_reference.json")).unwrap(),
    )
    .unwrap()
}

fn load() -> GgufLlama {
    load_llama_gguf(data_dir().join("tiny_llama.gguf")).unwrap()
}

#[test]
fn config_from_metadata() {
    let m = load();
    let r = reference();
    for (k, v) in r["config"].as_object().unwrap() {
        let got = &m.config_json[k];
        match (got.as_f64(), v.as_f64()) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-6),
                "{k}: {got} vs {v}"
            ),
            _ => assert_eq!(got, v, "{k}"),
        }
    }
    assert_eq!(m.config_json["architectures"][0], "LlamaForCausalLM");
    assert_eq!(m.config_json["bos_token_id"], 1);
    assert_eq!(m.config_json["eos_token_id"], 2);
    assert!(!m.tied_embeddings);
    assert_eq!(m.bos_token_id, Some(1));
    assert_eq!(m.eos_token_id, Some(2));
    assert_eq!(
        m.chat_template.as_deref(),
        Some("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    );
    let tc = m.tokenizer_config_json().unwrap();
    assert_eq!(tc["bos_token"], "<s>");
    assert_eq!(tc["eos_token"], "</s>");
    assert_eq!(tc["add_bos_token"], true);
    assert_eq!(
        tc["chat_template"],
        Value::String(m.chat_template.clone().unwrap())
    );
    assert_eq!(m.generation_config_json()["eos_token_id"], 2);
}

#[test]
fn tensors_match_hf_originals() {
    let m = load();
    let r = reference();
    let blob = std::fs::read(data_dir().join("tiny_llama_reference.bin")).unwrap();
    let halfs: Vec<f32> = blob
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    let expected = r["tensors"].as_array().unwrap();
    let mut n = 0;
    for t in m.tensors() {
        let t = t.unwrap();
        let e = expected
            .iter()
            .find(|e| e["name"] == t.name.as_str())
            .unwrap_or_else(|| panic!("{}", t.name));
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape, shape, "{}", t.name);
        let off = e["offset"].as_u64().unwrap() as usize;
        let count = e["count"].as_u64().unwrap() as usize;
        assert_eq!(
            t.data,
            halfs[off..off + count],
            "{} (from {})",
            t.name,
            t.gguf_name
        );
        n += 1;
    }
    assert_eq!(n, expected.len());
    // By HF name, and the permuted raw data really differs from HF layout.
    let q = m.tensor("model.layers.1.self_attn.q_proj.weight").unwrap();
    assert_eq!(q.gguf_name, "blk.1.attn_q.weight");
    assert_ne!(m.file.dequantize("blk.1.attn_q.weight").unwrap(), q.data);
    assert!(matches!(
        m.tensor("model.nope.weight"),
        Err(GgufError::TensorNotFound { .. })
    ));
    let names = m.tensor_names();
    assert!(names.contains(&("output.weight".to_string(), "lm_head.weight".to_string())));
}

#[test]
fn sentencepiece_tokenizer_matches_sentencepiece() {
    let m = load();
    let r = reference();
    for case in r["sentencepiece_encodings"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = m.tokenizer.encode(text, true).unwrap();
        assert_eq!(got.get_ids(), want, "{text:?}: {:?}", got.get_tokens());
        let decoded = m.tokenizer.decode(got.get_ids(), true).unwrap();
        assert_eq!(decoded, text, "decode of {text:?}");
    }
    // Control tokens are special (whole, skipped on decode); user-defined ones are kept whole.
    let enc = m.tokenizer.encode("<s>hi</s> <tool>", false).unwrap();
    assert_eq!(enc.get_ids()[0], 1);
    assert!(enc.get_ids().contains(&2));
    let tool = m.tokenizer.token_to_id("<tool>").unwrap();
    assert!(enc.get_ids().contains(&tool), "{:?}", enc.get_tokens());
    // The tokenizer.json value round-trips through the tokenizers crate.
    let again: tokenizers::Tokenizer = m.tokenizer_json.to_string().parse().unwrap();
    assert_eq!(
        again.encode("Hello world", true).unwrap().get_ids(),
        m.tokenizer.encode("Hello world", true).unwrap().get_ids()
    );
}

#[test]
fn not_a_llama_is_rejected() {
    let f = GgufFile::open(data_dir().join("quants.gguf")).unwrap();
    let e = GgufLlama::from_file(f).unwrap_err();
    assert!(e.to_string().contains("only \"llama\""), "{e}");
}
