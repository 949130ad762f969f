//! safety-eval's model traits implemented for llama-model: log-likelihoods
//! agree with transformers' logits, batching changes nothing, and a suite runs
//! end to end on a tiny model.

use deltaguard::adapters::LlamaEvalModel;
use deltaguard::backend::{device, Backend};
use deltaguard::model_io::load_model;
use safety_eval::{LogLikelihoodModel, LoglikelihoodRequest};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hf-reference")
        .join(name)
}

#[test]
fn token_log_probs_match_transformers_logits() {
    let dir = fixture("llama-untied-f32");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let ids: Vec<u32> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let logits: Vec<Vec<f64>> = r["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    let loaded = load_model::<Backend>(&dir, None, &device()).unwrap();
    let model = LlamaEvalModel::new(&loaded);
    let scored = model
        .score_tokens(std::slice::from_ref(&ids), &[1])
        .unwrap();
    assert_eq!(scored[0].len(), ids.len() - 1);
    for (p, (lp, _)) in scored[0].iter().enumerate() {
        let row = &logits[p];
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        let expected = row[ids[p + 1] as usize] - lse;
        assert!(
            (lp - expected).abs() < 1e-4,
            "position {}: {lp} vs {expected}",
            p + 1
        );
    }
}

#[test]
fn batching_and_padding_do_not_change_scores() {
    let loaded = load_model::<Backend>(&fixture("llama-tied-f32"), None, &device()).unwrap();
    let mut model = LlamaEvalModel::new(&loaded);
    let requests: Vec<LoglikelihoodRequest> = [
        ("Question: 2+2?\nAnswer:", " 4"),
        ("Hi", " there friend"),
        ("A long context here, then", " x"),
    ]
    .iter()
    .map(|(c, x)| LoglikelihoodRequest {
        context: c.to_string(),
        continuation: x.to_string(),
    })
    .collect();
    model.batch_size = 8;
    let together = model.loglikelihood(&requests).unwrap();
    model.batch_size = 1;
    let alone = model.loglikelihood(&requests).unwrap();
    for (a, b) in together.iter().zip(&alone) {
        assert!((a.logprob - b.logprob).abs() < 1e-4, "{a:?} vs {b:?}");
        assert_eq!(a.n_tokens, b.n_tokens);
        assert!(a.logprob < 0.0);
    }
    let rolling = model
        .loglikelihood_rolling(&["some held-out text".to_string()])
        .unwrap();
    assert!(rolling[0].logprob < 0.0 && rolling[0].n_tokens > 0);
}

#[test]
fn eval_cli_writes_samples_and_aggregate_for_a_tiny_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args([
            "eval",
            "--model",
            fixture("llama-untied-f32").to_str().unwrap(),
            "--suite",
            "backdoor",
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "-q",
            "--out",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".samples.jsonl")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with(".aggregate.json")),
        "{names:?}"
    );
    let samples = names
        .iter()
        .find(|n| n.ends_with(".samples.jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(tmp.path().join(samples)).unwrap();
    // two groups (triggered, clean) × 2 prompts, plus benign over-refusal prompts
    assert!(text.lines().count() >= 4);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["prompt"].is_string() && v["output"].is_string());
    }
    // score re-reads them without the model and keeps every field
    let rescored = tmp.path().join("rescored.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args(["score", "--in"])
        .arg(tmp.path().join(samples))
        .arg("--out")
        .arg(&rescored)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (a, b) in text
        .lines()
        .zip(std::fs::read_to_string(&rescored).unwrap().lines())
    {
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(a).unwrap(),
            serde_json::from_str(b).unwrap(),
        );
        for (k, v) in a.as_object().unwrap() {
            if !k.starts_with("refus") {
                assert_eq!(&b[k], v, "field {k} changed");
            }
        }
        assert!(b["refused_substring"].is_boolean() && b["refused_anchored"].is_boolean());
    }
}
