//! Parity with Hugging Face transformers on the reference fixtures in
//! `../testdata/hf-reference/` (written by transformers 5.x, see `../testdata/hf-reference/README.md`).

use std::path::PathBuf;

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use llama_model::{ChatMessage, ChatTemplate, ForwardOptions, GenerateConfig, Llama, Tokenizer};
use serde_json::Value;

type B = NdArray;

fn data_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/hf-reference")
        .join(name)
}

fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(data_dir(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x {
            Value::Array(_) => floats(x),
            _ => vec![x.as_f64().unwrap() as f32],
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(name: &str) {
    let device = Default::default();
    let dir = data_dir(name);
    let r = reference(name);
    let model = Llama::<B>::from_hf_dir(&dir, &device).unwrap();
    let cfg = model.config().clone();

    // Logits at every position and hidden states at the last one.
    let input = ids(&r["input_ids"]);
    let s = input.len();
    let tokens = Tensor::<B, 2, Int>::from_data(
        TensorData::new(input.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, s]),
        &device,
    );
    let out = model.forward_with(
        tokens,
        ForwardOptions {
            capture_hidden: true,
            ..Default::default()
        },
        None,
    );
    let logits: Vec<f32> = out.logits.into_data().to_vec().unwrap();
    let want = floats(&r["logits"]);
    let d = max_abs_diff(&logits, &want);
    eprintln!("{name}: max |logit diff| = {d:e}");
    assert!(d < 1e-4, "{name}: logits differ by {d}");

    let hidden = out.hidden.unwrap().hf_hidden_states();
    let want_hidden = r["hidden_states_last_pos"].as_array().unwrap();
    assert_eq!(
        hidden.len(),
        want_hidden.len(),
        "{name}: number of hidden states"
    );
    for (i, (h, w)) in hidden.iter().zip(want_hidden).enumerate() {
        let last: Vec<f32> = h
            .clone()
            .narrow(1, s - 1, 1)
            .reshape([cfg.hidden_size])
            .into_data()
            .to_vec()
            .unwrap();
        let d = max_abs_diff(&last, &floats(w));
        assert!(d < 1e-4, "{name}: hidden state {i} differs by {d}");
    }

    // Greedy continuation.
    let want_cont = ids(&r["greedy_continuation"]);
    let g = model
        .generate(&[input], &GenerateConfig::greedy(want_cont.len()))
        .unwrap();
    assert_eq!(g[0].tokens, want_cont, "{name}: greedy continuation");

    // Chat template and chat continuation.
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let template = ChatTemplate::from_dir(&dir)
        .unwrap()
        .expect("fixture has a template");
    let messages: Vec<ChatMessage> = serde_json::from_value(r["chat"].clone()).unwrap();
    let text = template.render(&messages, true).unwrap();
    let chat_ids = tok.encode(&text, false).unwrap();
    assert_eq!(
        chat_ids,
        ids(&r["chat_input_ids"]),
        "{name}: chat input ids"
    );
    let want_chat = ids(&r["chat_greedy_continuation"]);
    let g = model
        .generate(&[chat_ids], &GenerateConfig::greedy(want_chat.len()))
        .unwrap();
    assert_eq!(g[0].tokens, want_chat, "{name}: chat greedy continuation");
}

#[test]
fn untied_f32_matches_transformers() {
    check("llama-untied-f32");
}

#[test]
fn tied_f32_matches_transformers() {
    check("llama-tied-f32");
}

#[test]
fn untied_bf16_matches_transformers() {
    check("llama-untied-bf16");
}

#[test]
fn sharded_f16_matches_transformers() {
    check("llama-sharded-f16");
}
