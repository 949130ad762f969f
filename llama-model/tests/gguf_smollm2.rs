//! The real SmolLM2-135M-Instruct Q4_1 GGUF (`scripts/fetch-smollm2.sh`). Every
//! test here is `#[ignore]`d, so `cargo test` lists it as ignored (not as passed)
//! when the model may be absent; `scripts/test.sh` runs them with `--ignored`
//! when `models/SmolLM2-135M-Instruct.Q4_1.gguf` is there, and a test run
//! without the model fails with a message saying how to fetch it.
//!
//! References (made by `scripts/make_gguf_fixtures.py`): token ids from
//! transformers' own GGUF tokenizer converter and from a tokenizer with SmolLM2's
//! HF pre-tokenizer (`smollm2_tokenizer_reference.json`), and slices of
//! dequantized tensors from Python `gguf` (`smollm2_tensor_slices.json`).

use std::path::PathBuf;

use llama_model::gguf::{load_llama_gguf, GgmlType, GgufFile, GgufLlama};
use serde_json::Value;

/// The model file; panics (failing the test, never passing it) when absent.
fn model_path() -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "{} is absent: run scripts/fetch-smollm2.sh first (these tests are #[ignore]d for that reason)",
        p.display()
    );
    p
}

fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gguf")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn load() -> GgufLlama {
    load_llama_gguf(model_path()).unwrap()
}

#[test]
#[ignore = "needs models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh)"]
fn smollm2_config() {
    let m = load();
    let c = &m.config_json;
    assert_eq!(c["num_hidden_layers"], 30);
    assert_eq!(c["hidden_size"], 576);
    assert_eq!(c["intermediate_size"], 1536);
    assert_eq!(c["num_attention_heads"], 9);
    assert_eq!(c["num_key_value_heads"], 3);
    assert_eq!(c["head_dim"], 64);
    assert_eq!(c["vocab_size"], 49152);
    assert_eq!(c["max_position_embeddings"], 8192);
    assert_eq!(c["rope_theta"].as_f64(), Some(100000.0));
    assert!((c["rms_norm_eps"].as_f64().unwrap() - 1e-5).abs() < 1e-10);
    assert_eq!(c["rope_scaling"], Value::Null);
    assert_eq!(c["tie_word_embeddings"], true);
    assert!(m.tied_embeddings);
    assert_eq!((m.bos_token_id, m.eos_token_id), (Some(1), Some(2)));
    let t = m.chat_template.as_deref().unwrap();
    assert!(
        t.contains("<|im_start|>") && t.contains("add_generation_prompt"),
        "{t}"
    );
    let tc = m.tokenizer_config_json().unwrap();
    assert_eq!(tc["eos_token"], "<|im_end|>");
    assert_eq!(tc["add_bos_token"], false);
}

#[test]
#[ignore = "needs models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh)"]
fn smollm2_every_tensor_dequantizes() {
    let m = load();
    let mut count = 0;
    let mut params = 0usize;
    for t in m.tensors() {
        let t = t.unwrap();
        assert_eq!(
            t.data.len(),
            t.shape.iter().product::<usize>(),
            "{}",
            t.name
        );
        assert!(
            t.data.iter().all(|v| v.is_finite()),
            "{} has non-finite values",
            t.name
        );
        if t.name.ends_with("proj.weight") {
            assert_eq!(t.shape.len(), 2);
        }
        match t.name.as_str() {
            "model.embed_tokens.weight" => assert_eq!(t.shape, vec![49152, 576]),
            "model.layers.0.self_attn.q_proj.weight" => assert_eq!(t.shape, vec![576, 576]),
            "model.layers.0.self_attn.k_proj.weight" => assert_eq!(t.shape, vec![192, 576]),
            "model.layers.0.mlp.down_proj.weight" => assert_eq!(t.shape, vec![576, 1536]),
            "model.layers.0.mlp.up_proj.weight" => assert_eq!(t.shape, vec![1536, 576]),
            _ => {}
        }
        count += 1;
        params += t.data.len();
    }
    assert_eq!(count, 272);
    assert!(m.tensor("lm_head.weight").is_err());
    eprintln!("{count} tensors, {params} parameters");
}

#[test]
#[ignore = "needs models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh)"]
fn smollm2_dequantization_matches_python_gguf() {
    let p = model_path();
    let f = GgufFile::open(p).unwrap();
    let r = fixture("smollm2_tensor_slices.json");
    let mut types = Vec::new();
    for t in r["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let info = f.tensor(name).unwrap();
        assert_eq!(info.ggml_type.to_string(), t["ggml_type"].as_str().unwrap());
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(info.shape(), shape);
        let data = f.dequantize(name).unwrap();
        for s in t["slices"].as_array().unwrap() {
            let start = s["start"].as_u64().unwrap() as usize;
            for (i, v) in s["values"].as_array().unwrap().iter().enumerate() {
                let e = v.as_f64().unwrap() as f32;
                assert_eq!(data[start + i], e, "{name}[{}]", start + i);
            }
        }
        let sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
        let want = t["sum"].as_f64().unwrap();
        assert!(
            (sum - want).abs() <= 1e-9 * want.abs().max(1.0) + 1e-6,
            "{name}: sum {sum} vs {want}"
        );
        types.push(info.ggml_type);
    }
    for ty in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::F32] {
        assert!(types.contains(&ty), "{ty}");
    }
}

#[test]
#[ignore = "needs models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh)"]
fn smollm2_tokenizer_matches_hf() {
    let m = load();
    let r = fixture("smollm2_tokenizer_reference.json");
    let mut n = 0;
    for case in r["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        for key in ["ids", "transformers_gguf_ids"] {
            let want: Vec<u32> = case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let got = m.tokenizer.encode(text, true).unwrap();
            assert_eq!(
                got.get_ids(),
                want,
                "{key} of {text:?}: {:?}",
                got.get_tokens()
            );
        }
        // Byte-level BPE decodes back to the text (special tokens kept).
        let ids = m.tokenizer.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(m.tokenizer.decode(&ids, false).unwrap(), text);
        n += 1;
    }
    assert!(n >= 20);
    assert_eq!(m.tokenizer.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(m.tokenizer.token_to_id("<|im_end|>"), Some(2));
}
