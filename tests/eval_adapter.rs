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
            "--trigger",
            "zq zq",
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
    let aggregate = names
        .iter()
        .find(|n| n.ends_with(".aggregate.json"))
        .unwrap();
    let agg = read_json(&tmp.path().join(aggregate));
    assert_eq!(agg["judge"], "keyword-substring");
    assert_eq!(agg["meta"]["method"], "none");
    assert_eq!(agg["meta"]["seed"], 0);
    assert!(agg["meta"]["crate_version"].is_string());
    assert_eq!(agg["meta"]["parameters"]["generation"]["max_new_tokens"], 4);
    let metrics = agg["metrics"].as_array().unwrap();
    for g in ["triggered", "clean"] {
        assert!(
            metrics
                .iter()
                .any(|m| m["metric"] == "asr" && m["group"] == g),
            "no asr for {g}"
        );
    }
    for m in metrics {
        let (lo, hi, r) = (
            m["ci_low"].as_f64().unwrap(),
            m["ci_high"].as_f64().unwrap(),
            m["rate"].as_f64().unwrap(),
        );
        assert!(lo <= r && r <= hi && m["confidence"] == 0.95, "{m}");
        assert!(
            m["n"].as_u64().unwrap() >= 2 && m["scorer"].is_string(),
            "{m}"
        );
    }
    let text = std::fs::read_to_string(tmp.path().join(samples)).unwrap();
    // two groups (triggered, clean) × 2 prompts, plus benign over-refusal prompts
    assert!(text.lines().count() >= 4);
    let mut triggered = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["prompt"].is_string() && v["output"].is_string());
        let prompt = v["prompt"].as_str().unwrap();
        assert_eq!(
            v["group"] == "triggered",
            prompt.ends_with(" zq zq"),
            "{prompt}"
        );
        triggered += usize::from(v["group"] == "triggered");
        assert_eq!(v["generation"]["max_new_tokens"], 4);
    }
    assert_eq!(triggered, 2);
    assert_eq!(agg["meta"]["parameters"]["trigger"], "zq zq");
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

fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args(args)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn utility_eval_takes_user_questions_records_the_delta_and_reports_utility_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (base, ft) = (fixture("pair/base"), fixture("pair/finetuned"));
    let (base, ft) = (base.to_str().unwrap(), ft.to_str().unwrap());
    std::fs::write(
        p("mc.jsonl"),
        concat!(
            "{\"question\":\"What is 2 plus 2?\",\"choices\":[\"3\",\"4\",\"5\"],\"gold\":1}\n",
            "{\"id\":\"sky\",\"question\":\"What color is the sky?\",\"choices\":[\"blue\",\"green\"],\"gold\":0}\n",
            "{\"question\":\"Which is a fruit?\",\"choices\":[\"apple\",\"stone\",\"car\",\"shoe\"],\"gold\":0}\n",
        ),
    )
    .unwrap();
    let out = run_cli(&[
        "compress",
        "--base",
        base,
        "--finetuned",
        ft,
        "--method",
        "bitdelta",
        "--out",
        &p("d.safetensors"),
        "-q",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // the uncompressed fine-tune is the reference
    let utility = |model: &[&str], out_dir: &str, limit: &str, extra: &[&str]| {
        let mut a = vec!["eval", "--model"];
        a.extend_from_slice(model);
        a.extend_from_slice(&["--suite", "utility", "--mc"]);
        let mc = p("mc.jsonl");
        a.push(&mc);
        a.extend_from_slice(&["--limit", limit, "-q", "--out", out_dir]);
        a.extend_from_slice(extra);
        run_cli(&a)
    };
    let out = utility(&[ft], &p("ref"), "5", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = read_json(&tmp.path().join("ref/utility.aggregate.json"));
    assert_eq!(reference["meta"]["method"], "none");
    assert!(reference["meta"]["delta"].is_null());
    let mc = &reference["report"]["multiple_choice"];
    assert_eq!(mc["acc"]["n"], 3);
    assert!(mc["acc"]["ci_low"].is_number() && mc["acc_norm"]["ci_high"].is_number());
    let ids: Vec<&str> = mc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["line1", "sky", "line3"]);
    assert!(reference.get("utility_loss").is_none());
    let samples = std::fs::read_to_string(tmp.path().join("ref/utility.samples.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(samples.lines().next().unwrap()).unwrap();
    assert_eq!(samples.lines().count(), 3);
    assert_eq!(first["question"], "What is 2 plus 2?");
    assert_eq!(first["loglikelihoods"].as_array().unwrap().len(), 3);
    assert_eq!(first["acc"], first["pred"] == 1);

    // base + compressed delta, against the reference
    let ref_file = p("ref/utility.aggregate.json");
    let delta = p("d.safetensors");
    let out = utility(
        &[base, "--delta", &delta],
        &p("cmp"),
        "5",
        &["--reference", &ref_file],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("utility loss against"));
    let cmp = read_json(&tmp.path().join("cmp/utility.aggregate.json"));
    assert_eq!(cmp["meta"]["method"], "bitdelta:per_row=false");
    assert_eq!(cmp["meta"]["delta"], delta.as_str());
    assert!(cmp["meta"]["parameters"]["method_params"].is_object());
    let loss = &cmp["utility_loss"];
    let ppl = |v: &serde_json::Value| v["report"]["perplexity"]["perplexity"].as_f64().unwrap();
    let expected = (ppl(&cmp) - ppl(&reference)) / ppl(&reference);
    assert!((loss["perplexity"].as_f64().unwrap() - expected).abs() < 1e-12);
    let acc = |v: &serde_json::Value| {
        v["report"]["multiple_choice"]["acc"]["rate"]
            .as_f64()
            .unwrap()
    };
    let expected = if acc(&reference) == 0.0 {
        0.0
    } else {
        (acc(&reference) - acc(&cmp)) / acc(&reference)
    };
    assert!((loss["acc"].as_f64().unwrap() - expected).abs() < 1e-12);
    assert!(loss["bits_per_byte"].is_number() && loss["acc_norm"].is_number());

    // a reference measured on other texts is refused
    let out = utility(&[ft], &p("cmp2"), "2", &["--reference", &ref_file]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other questions or texts"), "{err}");

    // a malformed question names its line; --mc needs --suite utility
    std::fs::write(
        p("bad.jsonl"),
        "{\"question\":\"q\",\"choices\":[\"a\",\"b\"],\"gold\":0}\n{\"question\":\"q\",\"choices\":[\"a\"],\"gold\":0}\n",
    )
    .unwrap();
    let bad = p("bad.jsonl");
    let out = run_cli(&[
        "eval",
        "--model",
        ft,
        "--suite",
        "utility",
        "--mc",
        &bad,
        "--out",
        &p("x"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.jsonl:2"),
        "{err}"
    );
    let out = run_cli(&[
        "eval",
        "--model",
        ft,
        "--suite",
        "harmful",
        "--mc",
        &bad,
        "--out",
        &p("x"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--suite utility"),
        "{err}"
    );
}

/// The tied tiny fixture with its context cut to `max` positions.
fn short_context_copy(max: usize) -> tempfile::TempDir {
    let src = fixture("llama-tied-f32");
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let path = tmp.path().join("config.json");
    let mut config = read_json(&path);
    config["max_position_embeddings"] = max.into();
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    tmp
}

#[test]
fn rolling_scores_every_token_of_a_text_longer_than_the_context_once() {
    let max = 8;
    let dir = short_context_copy(max);
    let loaded = load_model::<Backend>(dir.path(), None, &device()).unwrap();
    assert_eq!(loaded.model.config().max_position_embeddings, max);
    let mut model = LlamaEvalModel::new(&loaded);
    let text = "The quick brown fox jumps over the lazy dog, and then it runs away home.";
    let ids = loaded.tokenizer.encode(text, false).unwrap();
    assert!(ids.len() > 3 * max, "{} tokens", ids.len());
    // this tokenizer adds no BOS, so lm-eval's prefix is its BOS token
    assert_eq!(
        loaded.tokenizer.encode("a", true).unwrap(),
        loaded.tokenizer.encode("a", false).unwrap()
    );
    let prefix = loaded.tokenizer.bos_id().unwrap();
    let mut all = vec![prefix];
    all.extend(&ids);

    model.batch_size = 8;
    let rolled = model.loglikelihood_rolling(&[text.to_string()]).unwrap();
    model.batch_size = 1;
    let alone = model
        .loglikelihood_rolling(&["Hi".to_string(), text.to_string(), String::new()])
        .unwrap();
    assert_eq!(rolled[0].n_tokens, ids.len());
    assert!((rolled[0].logprob - alone[1].logprob).abs() < 1e-4);
    assert_eq!(alone[2].n_tokens, 0);
    assert_eq!(alone[2].logprob, 0.0);

    // Token by token: position p (in prefix + text) is predicted from the
    // window lm-eval's rolling windows give it: the first `max` positions from
    // the start, then blocks of `max - 1` new tokens, each window filled up to
    // `max` tokens with earlier ones.
    let n = all.len();
    let mut expected = 0.0;
    let mut contexts = Vec::new();
    for p in 1..n {
        let start = if p < max {
            0
        } else {
            let block_start = max + (p - max) / (max - 1) * (max - 1);
            (block_start + max - 1).min(n) - max
        };
        assert!(start < p && p - start < max);
        contexts.push(p - start);
        let one = model
            .score_tokens(&[all[start..=p].to_vec()], &[p - start])
            .unwrap();
        assert_eq!(one[0].len(), 1);
        expected += one[0][0].0;
    }
    assert!(
        (rolled[0].logprob - expected).abs() < 1e-3,
        "{} vs {expected}",
        rolled[0].logprob
    );
    // every window after the first carries context, and later windows are
    // not cut off from the text before them
    assert_eq!(contexts[0], 1);
    assert!(contexts.iter().all(|&c| c >= 1));
    assert_eq!(*contexts.iter().max().unwrap(), max - 1);
}

#[test]
fn loglikelihood_moves_trailing_context_space_into_the_continuation() {
    let loaded = load_model::<Backend>(&fixture("llama-tied-f32"), None, &device()).unwrap();
    let mut model = LlamaEvalModel::new(&loaded);
    let req = |c: &str, x: &str| LoglikelihoodRequest {
        context: c.to_string(),
        continuation: x.to_string(),
    };
    let got = model
        .loglikelihood(&[
            req("Question: 2+2?\nAnswer: ", "4"),
            req("Question: 2+2?\nAnswer:", " 4"),
            req("", "Hello there"),
        ])
        .unwrap();
    assert_eq!(got[0], got[1]);

    // whole = encode(context + continuation); the continuation is what
    // follows the context's own tokens
    let tok = &loaded.tokenizer;
    let whole = tok.encode("Question: 2+2?\nAnswer: 4", false).unwrap();
    let ctx = tok.encode("Question: 2+2?\nAnswer:", false).unwrap();
    assert!(whole.starts_with(&ctx) && whole.len() > ctx.len());
    let expected = model
        .score_tokens(std::slice::from_ref(&whole), &[ctx.len()])
        .unwrap();
    assert_eq!(got[0].n_tokens, whole.len() - ctx.len());
    let sum: f64 = expected[0].iter().map(|x| x.0).sum();
    assert!((got[0].logprob - sum).abs() < 1e-6, "{got:?} vs {sum}");
    // with the space left on the context, a different (worse-formed) split
    let separate = model
        .score_tokens(
            &[[
                tok.encode("Question: 2+2?\nAnswer: ", false).unwrap(),
                tok.encode("4", false).unwrap(),
            ]
            .concat()],
            &[tok.encode("Question: 2+2?\nAnswer: ", false).unwrap().len()],
        )
        .unwrap();
    let separate: f64 = separate[0].iter().map(|x| x.0).sum();
    assert!((separate - sum).abs() > 1e-6, "{separate} vs {sum}");

    // an empty context is lm-eval's prefix token
    let mut seq = vec![tok.bos_id().unwrap()];
    let cont = tok.encode("Hello there", false).unwrap();
    seq.extend(&cont);
    let expected = model.score_tokens(&[seq], &[1]).unwrap();
    assert_eq!(got[2].n_tokens, cont.len());
    let sum: f64 = expected[0].iter().map(|x| x.0).sum();
    assert!((got[2].logprob - sum).abs() < 1e-6);
}

/// Issue 14, item 4: a model whose logits are not finite (finite weights
/// that overflow: a final norm of 3e38) is refused by scoring, by
/// generation (so `eval` and `study` never score it) and by `logits`
/// (which used to print `null`).
#[test]
fn a_model_with_non_finite_logits_is_refused_not_scored() {
    use deltaguard::delta_core::{Checkpoint, CheckpointWriter, DType, WriteOptions};
    use safety_eval::{ChatModel, GenerationSettings, Message};
    let tmp = tempfile::tempdir().unwrap();
    let src = Checkpoint::open(fixture("llama-untied-f32")).unwrap();
    let dir = tmp.path().join("overflowing");
    let mut w = CheckpointWriter::create(&dir, WriteOptions::default()).unwrap();
    w.copy_aux_files_from(src.dir()).unwrap();
    for info in src.infos() {
        let mut v = src.read_f32(&info.name).unwrap();
        if info.name == "model.norm.weight" {
            v.fill(3.0e38);
        }
        w.write_f32(&info.name, DType::F32, &info.shape, &v)
            .unwrap();
    }
    w.finish().unwrap();

    let loaded = load_model::<Backend>(&dir, None, &device()).unwrap();
    let mut model = LlamaEvalModel::new(&loaded);
    let err = model.score_tokens(&[vec![1, 5, 9, 13]], &[1]).unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
    let err = model
        .loglikelihood(&[LoglikelihoodRequest {
            context: "Question: 2+2?\nAnswer:".into(),
            continuation: " 4".into(),
        }])
        .unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
    let err = model
        .generate(
            &[vec![Message::new("user", "Hello")]],
            &GenerationSettings {
                max_new_tokens: 4,
                ..GenerationSettings::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");

    let out = run_cli(&[
        "logits",
        "--model",
        dir.to_str().unwrap(),
        "--tokens",
        "1,5,9",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "logits printed a non-finite model");
    assert!(stderr.contains("not finite"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("null"));
}

/// Issue 14, item 1: log-likelihood requests longer than the context. The
/// context is cut from the left (as lm-eval does) and the score equals that
/// of the cut request; a continuation that alone fills the context is an
/// error naming both numbers (a 10 MB answer choice used to abort on the
/// causal mask). Generation truncates a prompt's beginning the same way and
/// refuses a budget that fills the whole context.
#[test]
fn over_long_requests_are_truncated_or_refused_never_allocated() {
    use safety_eval::{ChatModel, GenerationSettings, Message};
    let max = 8;
    let dir = short_context_copy(max);
    let loaded = load_model::<Backend>(dir.path(), None, &device()).unwrap();
    let mut model = LlamaEvalModel::new(&loaded);
    let long_context = "The quick brown fox jumps over the lazy dog, and then it runs away.";
    let got = model
        .loglikelihood(&[LoglikelihoodRequest {
            context: long_context.into(),
            continuation: " home".into(),
        }])
        .unwrap();
    assert!(got[0].logprob.is_finite() && got[0].n_tokens >= 1);
    let huge = "word ".repeat(200_000);
    let err = model
        .loglikelihood(&[LoglikelihoodRequest {
            context: "Q:".into(),
            continuation: huge,
        }])
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("max_position_embeddings 8"), "{msg}");
    let err = model.score_tokens(&[vec![]], &[1]).unwrap_err();
    assert!(err.to_string().contains("no tokens"), "{err}");

    let chat = vec![Message::new("user", long_context)];
    let settings = |n| GenerationSettings {
        max_new_tokens: n,
        ..GenerationSettings::default()
    };
    let out = model
        .generate(std::slice::from_ref(&chat), &settings(2))
        .unwrap();
    assert_eq!(out.len(), 1);
    let err = model.generate(&[chat], &settings(max)).unwrap_err();
    assert!(
        err.to_string().contains("max_position_embeddings 8"),
        "{err}"
    );
}
