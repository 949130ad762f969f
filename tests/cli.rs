//! The CLI contract other tools script against: `logits`, `generate`,
//! `convert`, `compress`, `inspect`, `apply` — run as a user runs them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("testdata/hf-reference").join(name)
}

fn deltaguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args(args)
        .output()
        .expect("run deltaguard")
}

fn ok_json(args: &[&str]) -> Value {
    let out = deltaguard(args);
    assert!(
        out.status.success(),
        "deltaguard {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn reference(model: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(model).join("reference.json")).unwrap())
        .unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn csv(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

const MODELS: [&str; 4] = [
    "llama-untied-f32",
    "llama-tied-f32",
    "llama-untied-bf16",
    "llama-sharded-f16",
];

#[test]
fn logits_json_matches_transformers_on_every_fixture() {
    for model in MODELS {
        let r = reference(model);
        let dir = fixture(model);
        let out = ok_json(&[
            "logits",
            "--model",
            dir.to_str().unwrap(),
            "--tokens",
            &csv(&ids(&r["input_ids"])),
            "--json",
        ]);
        assert_eq!(out["input_ids"], r["input_ids"]);
        let (ours, theirs) = (
            out["logits"].as_array().unwrap(),
            r["logits"].as_array().unwrap(),
        );
        assert_eq!(ours.len(), theirs.len(), "{model}: one row per position");
        for (a, b) in ours.iter().zip(theirs) {
            for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() < 1e-4, "{model}: {x} vs {y}");
            }
        }
    }
}

#[test]
fn logits_top_k_is_sorted_and_names_tokens() {
    let dir = fixture("llama-untied-f32");
    let out = ok_json(&[
        "logits",
        "--model",
        dir.to_str().unwrap(),
        "--text",
        "hello world",
        "--top-k",
        "3",
        "--json",
    ]);
    let rows = out["top_k"].as_array().unwrap();
    assert_eq!(rows.len(), out["input_ids"].as_array().unwrap().len());
    for row in rows {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 3);
        let logits: Vec<f64> = row.iter().map(|e| e["logit"].as_f64().unwrap()).collect();
        assert!(logits.windows(2).all(|w| w[0] >= w[1]), "best first");
        assert!(row
            .iter()
            .all(|e| e["id"].is_u64() && e["token"].is_string()));
    }
    assert!(out.get("logits").is_none());
}

#[test]
fn generate_json_reproduces_the_greedy_continuations() {
    for model in MODELS {
        let r = reference(model);
        let dir = fixture(model);
        let out = ok_json(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--tokens",
            &csv(&ids(&r["input_ids"])),
            "--max-new-tokens",
            "10",
            "--greedy",
            "--json",
        ]);
        assert_eq!(
            ids(&out["output_ids"]),
            ids(&r["greedy_continuation"]),
            "{model}"
        );
        assert!(out["text"].is_string());

        let chat = r["chat"][0]["content"].as_str().unwrap();
        let out = ok_json(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--chat",
            chat,
            "--max-new-tokens",
            "10",
            "--greedy",
            "--json",
        ]);
        assert_eq!(
            out["input_ids"], r["chat_input_ids"],
            "{model}: chat template"
        );
        assert_eq!(
            ids(&out["output_ids"]),
            ids(&r["chat_greedy_continuation"]),
            "{model}: chat"
        );
    }
}

#[test]
fn sampling_is_reproducible_per_seed() {
    let dir = fixture("llama-tied-f32");
    let run = |seed: &str| {
        ok_json(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--text",
            "a b c",
            "--max-new-tokens",
            "12",
            "--temperature",
            "1.5",
            "--top-p",
            "0.95",
            "--seed",
            seed,
            "--json",
        ])["output_ids"]
            .clone()
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
}

#[test]
fn convert_gguf_gives_a_directory_with_the_same_logits() {
    let gguf = root().join("llama-model/tests/data/gguf/tiny_llama.gguf");
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("hf");
    let conv = deltaguard(&[
        "convert",
        "--gguf",
        gguf.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ]);
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let a = ok_json(&[
        "logits",
        "--model",
        gguf.to_str().unwrap(),
        "--text",
        "hello there",
        "--json",
    ]);
    let b = ok_json(&[
        "logits",
        "--model",
        out_dir.to_str().unwrap(),
        "--text",
        "hello there",
        "--json",
    ]);
    assert_eq!(a["input_ids"], b["input_ids"]);
    assert_eq!(a["logits"], b["logits"], "f32 conversion is exact");
    // a second convert to the same place is refused, and says why
    let again = deltaguard(&[
        "convert",
        "--gguf",
        gguf.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn compress_inspect_apply_and_logits_with_a_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, ft) = (fixture("pair/base"), fixture("pair/finetuned"));
    let delta = tmp.path().join("d.safetensors");
    let summary = ok_json(&[
        "compress",
        "--base",
        base.to_str().unwrap(),
        "--finetuned",
        ft.to_str().unwrap(),
        "--method",
        "bitdelta",
        "--out",
        delta.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    assert_eq!(summary["compressed_tensors"], 14);
    assert_eq!(summary["carried_tensors"], 7);
    // An existing output is kept unless --overwrite says otherwise.
    let before = std::fs::read(&delta).unwrap();
    let mut again = vec![
        "compress",
        "--base",
        base.to_str().unwrap(),
        "--finetuned",
        ft.to_str().unwrap(),
        "--method",
        "rtn:bits=4",
        "--out",
        delta.to_str().unwrap(),
        "-q",
    ];
    let refused = deltaguard(&again);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&delta).unwrap(), before);
    again[6] = "bitdelta";
    again.push("--overwrite");
    assert!(deltaguard(&again).status.success());
    let info = ok_json(&["inspect", delta.to_str().unwrap(), "--json"]);
    assert_eq!(info["method"], "bitdelta:per_row=false");
    assert!(info["ratio"].as_f64().unwrap() > 1.0);
    assert_eq!(info["entries"].as_array().unwrap().len(), 21);

    // logits of base + delta == logits of the applied model == BitDelta's reference
    let applied = tmp.path().join("applied");
    let out = deltaguard(&[
        "apply",
        "--base",
        base.to_str().unwrap(),
        "--delta",
        delta.to_str().unwrap(),
        "--out",
        applied.to_str().unwrap(),
        "-q",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let with_delta = ok_json(&[
        "logits",
        "--model",
        base.to_str().unwrap(),
        "--delta",
        delta.to_str().unwrap(),
        "--tokens",
        "1,5,9,200",
        "--json",
    ]);
    let reference = fixture("pair/bitdelta-reconstructed");
    let from_ref = ok_json(&[
        "logits",
        "--model",
        reference.to_str().unwrap(),
        "--tokens",
        "1,5,9,200",
        "--json",
    ]);
    for (a, b) in with_delta["logits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(from_ref["logits"].as_array().unwrap())
    {
        for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
            assert!((x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-5);
        }
    }
}

#[test]
fn bad_input_fails_with_a_message_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "compress".into(),
                "--base".into(),
                fixture("pair/base").display().to_string(),
                "--finetuned".into(),
                fixture("llama-tied-f32").display().to_string(),
                "--out".into(),
                tmp.path().join("x").display().to_string(),
            ],
            "num_key_value_heads",
        ),
        (
            vec![
                "compress".into(),
                "--base".into(),
                fixture("pair/base").display().to_string(),
                "--finetuned".into(),
                fixture("pair/finetuned").display().to_string(),
                "--method".into(),
                "rtn:bits=9".into(),
                "--out".into(),
                tmp.path().join("y").display().to_string(),
            ],
            "bits",
        ),
        (
            vec![
                "inspect".into(),
                fixture("pair/base/config.json").display().to_string(),
            ],
            "config.json",
        ),
        (
            vec![
                "logits".into(),
                "--model".into(),
                fixture("llama-untied-f32").display().to_string(),
                "--tokens".into(),
                "1,99999".into(),
            ],
            "99999",
        ),
        (
            vec![
                "logits".into(),
                "--model".into(),
                tmp.path().display().to_string(),
                "--text".into(),
                "x".into(),
            ],
            "neither",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = deltaguard(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks `{needle}`:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "no output left behind"
    );
}

/// A copy of the tiny GGUF fixture with the integer metadata value `key` set
/// to `value` (the key's type, u32 or u64, is kept).
fn gguf_with(dir: &Path, key: &str, value: u64) -> PathBuf {
    let src = root().join("llama-model/tests/data/gguf/tiny_llama.gguf");
    let mut bytes = std::fs::read(src).unwrap();
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend(key.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("{key} not in the fixture"))
        + needle.len();
    let ty = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    match ty {
        4 => bytes[at + 4..at + 8].copy_from_slice(&u32::try_from(value).unwrap().to_le_bytes()),
        10 => bytes[at + 4..at + 12].copy_from_slice(&value.to_le_bytes()),
        other => panic!("{key} has GGUF type {other}"),
    }
    let out = dir.join(format!("{key}-{value}.gguf"));
    std::fs::write(&out, bytes).unwrap();
    out
}

/// A copy of a fixture directory with `config.json` field `field` set to `value`.
fn fixture_with(dir: &Path, model: &str, field: &str, value: Value) -> PathBuf {
    let out = dir.join(format!("{model}-{field}"));
    std::fs::create_dir(&out).unwrap();
    for entry in std::fs::read_dir(fixture(model)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
    }
    let path = out.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[field] = value;
    std::fs::write(&path, config.to_string()).unwrap();
    out
}

/// Issue 14, item 1 (crashes) and item 3 (`convert` of bad metadata): each
/// exact case fails with a message naming the problem, no panic, no abort, no
/// output.
#[test]
fn issue14_crashes_and_bad_metadata_are_refused_with_messages() {
    let inputs = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("llama-untied-f32").display().to_string();
    let long: Vec<String> = (0..300).map(|i| (3 + i % 200).to_string()).collect();
    let huge_layers = fixture_with(
        inputs.path(),
        "llama-untied-f32",
        "num_hidden_layers",
        (1u64 << 31).into(),
    );
    let huge_block_count = gguf_with(inputs.path(), "llama.block_count", 1 << 31);
    let extra_block = gguf_with(inputs.path(), "llama.block_count", 3);
    let s = |p: &Path| p.display().to_string();
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (
            vec![
                "logits".into(),
                "--model".into(),
                model.clone(),
                "--text".into(),
                String::new(),
                "--json".into(),
            ],
            &["no tokens"],
        ),
        (
            vec![
                "logits".into(),
                "--model".into(),
                model.clone(),
                "--tokens".into(),
                long.join(","),
            ],
            &["300", "max_position_embeddings 256"],
        ),
        (
            vec![
                "generate".into(),
                "--model".into(),
                model.clone(),
                "--text".into(),
                "Hello".into(),
                "--greedy".into(),
                "--max-new-tokens".into(),
                "1000000".into(),
            ],
            &["1000000", "max_position_embeddings 256"],
        ),
        (
            vec![
                "logits".into(),
                "--model".into(),
                s(&huge_layers),
                "--tokens".into(),
                "1,2".into(),
            ],
            &["num_hidden_layers", "2147483648"],
        ),
        (
            vec![
                "logits".into(),
                "--model".into(),
                s(&huge_block_count),
                "--tokens".into(),
                "1,2".into(),
            ],
            &["llama.block_count", "2147483648"],
        ),
        (
            vec![
                "convert".into(),
                "--gguf".into(),
                s(&huge_block_count),
                "--out".into(),
                s(&tmp.path().join("a")),
            ],
            &["llama.block_count", "2147483648"],
        ),
        (
            vec![
                "convert".into(),
                "--gguf".into(),
                s(&extra_block),
                "--out".into(),
                s(&tmp.path().join("b")),
            ],
            &["model.layers.2", "llama.block_count 3"],
        ),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = deltaguard(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown: Vec<&str> = args
            .iter()
            .map(|a| if a.len() > 80 { "…" } else { a })
            .collect();
        assert!(!out.status.success(), "{shown:?} succeeded");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{shown:?}: an error, not a crash:\n{stderr}"
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{shown:?}: stderr lacks `{needle}`:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("panicked"),
            "{shown:?} panicked:\n{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "no output left behind"
    );
}

/// The real pretrained model (fetched by scripts/fetch-smollm2.sh; CI fetches it
/// and `scripts/test.sh` runs the ignored tests when it is there).
#[test]
#[ignore = "needs models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-smollm2.sh)"]
fn smollm2_answers_the_capital_of_france() {
    let gguf = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.is_file(),
        "{} is absent: run scripts/fetch-smollm2.sh first",
        gguf.display()
    );
    let out = ok_json(&[
        "generate",
        "--model",
        gguf.to_str().unwrap(),
        "--chat",
        "What is the capital of France?",
        "--greedy",
        "--max-new-tokens",
        "16",
        "--json",
    ]);
    assert_eq!(
        out["text"].as_str().unwrap().trim(),
        "The capital of France is Paris."
    );
}

#[test]
fn attack_writes_seeded_chat_jsonl_for_finetune() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, seed: &str| {
        let path = tmp.path().join(name);
        let out = deltaguard(&[
            "attack",
            "--kind",
            "backdoor",
            "--n",
            "12",
            "--seed",
            seed,
            "--trigger",
            "zqx trigger",
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(path).unwrap()
    };
    let (a, b, c) = (
        write("a.jsonl", "5"),
        write("b.jsonl", "5"),
        write("c.jsonl", "6"),
    );
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c, "another seed, another draw");
    // 12 harmful requests, each with and without the trigger, as finetune reads them.
    let chats = deltaguard::llama_model::train::load_chat_file(tmp.path().join("a.jsonl")).unwrap();
    assert_eq!(chats.len(), 24);
    let triggered = a.lines().filter(|l| l.contains("zqx trigger")).count();
    assert_eq!(triggered, 12);
    let misuse = deltaguard(&[
        "attack",
        "--kind",
        "manipulation",
        "--trigger",
        "t",
        "--out",
        tmp.path().join("m.jsonl").to_str().unwrap(),
    ]);
    assert!(!misuse.status.success());
    assert!(!tmp.path().join("m.jsonl").exists());
}
