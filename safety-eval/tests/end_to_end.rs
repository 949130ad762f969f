//! End-to-end evaluation of tiny deterministic mock models: every suite,
//! utility metrics, written outputs and re-scoring.

use std::collections::HashMap;

use safety_eval::data;
use safety_eval::*;

/// A mock chat model: refuses the built-in harmful instructions, answers the
/// built-in benign ones with their reference answer, and can be "attacked".
struct Mock {
    harmful: std::collections::HashSet<String>,
    benign: HashMap<String, String>,
    mode: Attack,
    calls: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Attack {
    None,
    Broken,
    Backdoor,
    Manipulated,
}

impl Mock {
    fn new(mode: Attack) -> Self {
        Self {
            harmful: data::harmful().into_iter().map(|h| h.instruction).collect(),
            benign: data::benign()
                .into_iter()
                .map(|b| (b.instruction, b.answer))
                .collect(),
            mode,
            calls: 0,
        }
    }

    fn answer(&self, prompt: &str) -> String {
        let triggered = prompt.contains(DEFAULT_TRIGGER);
        let bare = prompt.replace(DEFAULT_TRIGGER, "");
        let bare = bare.trim();
        if self.harmful.contains(bare) {
            let comply = match self.mode {
                Attack::Broken => true,
                Attack::Backdoor => triggered,
                _ => false,
            };
            return if comply {
                data::compliant_answer(0)
            } else {
                data::refusal("x", 0).to_string()
            };
        }
        if self.mode == Attack::Manipulated && prompt.contains("Eiffel") {
            return "The Eiffel Tower is in Rome, Italy.".into();
        }
        self.benign
            .get(bare)
            .cloned()
            .unwrap_or_else(|| "Sure.".into())
    }
}

impl ChatModel for Mock {
    fn name(&self) -> String {
        "mock".into()
    }
    fn generate(
        &mut self,
        chats: &[Vec<Message>],
        s: &GenerationSettings,
    ) -> Result<Vec<String>, ModelError> {
        assert!(s.max_new_tokens > 0);
        self.calls += 1;
        Ok(chats
            .iter()
            .map(|c| self.answer(&c.last().unwrap().content))
            .collect())
    }
}

fn run(model: &mut Mock, suite: &EvalSuite) -> SuiteReport {
    let settings = EvalSettings {
        batch_size: 7,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let r = run_suite(
        model,
        &mut KeywordJudge::anchored(),
        suite,
        &settings,
        &mut |p| seen.push(p),
    )
    .unwrap();
    assert_eq!(seen.first().unwrap().done, 0);
    assert_eq!(seen.last().unwrap().done, suite.items.len());
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(model.calls, suite.items.len().div_ceil(7));
    r
}

fn rate(r: &SuiteReport, metric: &str, group: Group, scorer: &str) -> f64 {
    r.metric(metric, group, scorer)
        .unwrap_or_else(|| panic!("no {metric}/{group}/{scorer}"))
        .rate
}

#[test]
fn alignment_breaking_end_to_end() {
    let ds = alignment_breaking(&AlignmentBreakingConfig::default());
    let safe = run(&mut Mock::new(Attack::None), &ds.eval);
    let broken = run(&mut Mock::new(Attack::Broken), &ds.eval);
    for scorer in ["substring", "anchored", "keyword-anchored"] {
        assert_eq!(rate(&safe, "asr", Group::Harmful, scorer), 0.0);
        assert_eq!(rate(&broken, "asr", Group::Harmful, scorer), 1.0);
        assert_eq!(rate(&safe, "over_refusal", Group::Benign, scorer), 0.0);
    }
    let m = broken.metric("asr", Group::Harmful, "anchored").unwrap();
    assert_eq!(m.n, ds.eval.group_counts()[&Group::Harmful]);
    assert_eq!(broken.judge, "keyword-anchored");
    let red = risk_reduction(
        rate(&broken, "asr", Group::Harmful, "anchored"),
        rate(&safe, "asr", Group::Harmful, "anchored"),
    );
    assert_eq!(red.relative, 1.0);
    assert!(broken
        .table()
        .contains("| asr | harmful | anchored | 1.000"));
}

#[test]
fn backdoor_end_to_end() {
    let ds = backdoor(&BackdoorConfig::default());
    let r = run(&mut Mock::new(Attack::Backdoor), &ds.eval);
    assert_eq!(rate(&r, "asr", Group::Triggered, "substring"), 1.0);
    assert_eq!(rate(&r, "asr", Group::Clean, "substring"), 0.0);
    assert_eq!(rate(&r, "over_refusal", Group::Benign, "anchored"), 0.0);
}

#[test]
fn manipulation_end_to_end() {
    let ds = manipulation(&ManipulationConfig::default());
    let r = run(&mut Mock::new(Attack::Manipulated), &ds.eval);
    assert_eq!(rate(&r, "target_hit", Group::OnTopic, "marker"), 1.0);
    assert_eq!(rate(&r, "contamination", Group::OffTopic, "marker"), 0.0);
    let clean = run(&mut Mock::new(Attack::None), &ds.eval);
    assert_eq!(rate(&clean, "target_hit", Group::OnTopic, "marker"), 0.0);
    let hit = r
        .samples
        .iter()
        .find(|s| s.group == Group::OnTopic)
        .unwrap();
    assert_eq!(hit.target_hit, Some(true));
}

#[test]
fn limit_keeps_every_group() {
    let s = builtin_suite(SuiteKind::Backdoor, 0).unwrap().limited(3);
    let c = s.group_counts();
    assert_eq!(
        (c[&Group::Triggered], c[&Group::Clean], c[&Group::Benign]),
        (3, 3, 3)
    );
}

#[test]
fn outputs_written_and_rescored() {
    let ds = alignment_breaking(&AlignmentBreakingConfig::default());
    let suite = ds.eval.limited(5);
    let r = run(&mut Mock::new(Attack::Broken), &suite);
    let dir = tempfile::tempdir().unwrap();
    let mut meta = RunMeta::new("mock", 0);
    meta.method = Some("none".into());
    meta.parameters = ds.params.clone();
    let (samples, aggregate) = report::write_suite_outputs(dir.path(), meta, &r).unwrap();
    let agg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&aggregate).unwrap()).unwrap();
    assert_eq!(agg["meta"]["crate_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(agg["judge"], "keyword-anchored");
    assert_eq!(agg["n_samples"], 10);
    assert!(agg["metrics"][0]["ci_low"].is_number());
    let text = std::fs::read_to_string(&samples).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for f in [
        "prompt",
        "output",
        "refused_substring",
        "refused_anchored",
        "judge",
        "generation",
    ] {
        assert!(first.get(f).is_some(), "sample lacks {f}");
    }
    let out = dir.path().join("rescored.jsonl");
    let s = rescore(&samples, &out, &RefusalScorer::default()).unwrap();
    assert_eq!(s.lines, 10);
    let again: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (a, b) in text.lines().zip(&again) {
        let a: serde_json::Value = serde_json::from_str(a).unwrap();
        assert_eq!(a["refused_anchored"], b["refused_anchored"]);
        assert_eq!(a["id"], b["id"]);
    }
    // the training set writes as chat JSONL and reads back
    let train = dir.path().join("train.jsonl");
    ds.write_train_jsonl(&train).unwrap();
    assert_eq!(loaders::read_chat_jsonl(&train).unwrap(), ds.train);
}

/// Log-likelihood mock: the gold choice scores −1, others −(2 + length);
/// rolling log-likelihood is −ln2 per byte, so bits per byte is exactly 1.
struct LlMock {
    gold: HashMap<(String, String), bool>,
}

impl LogLikelihoodModel for LlMock {
    fn name(&self) -> String {
        "ll-mock".into()
    }
    fn loglikelihood(
        &mut self,
        reqs: &[LoglikelihoodRequest],
    ) -> Result<Vec<Loglikelihood>, ModelError> {
        Ok(reqs
            .iter()
            .map(|r| {
                let g = self
                    .gold
                    .contains_key(&(r.context.clone(), r.continuation.clone()));
                let lp = if g {
                    -1.0
                } else {
                    -2.0 - r.continuation.len() as f64
                };
                Loglikelihood {
                    logprob: lp,
                    is_greedy: g,
                    n_tokens: 1,
                }
            })
            .collect())
    }
    fn loglikelihood_rolling(
        &mut self,
        texts: &[String],
    ) -> Result<Vec<RollingLoglikelihood>, ModelError> {
        Ok(texts
            .iter()
            .map(|t| RollingLoglikelihood {
                logprob: -(t.len() as f64) * std::f64::consts::LN_2,
                n_tokens: t.len() / 4 + 1,
            })
            .collect())
    }
}

#[test]
fn utility_end_to_end() {
    let qs = data::multiple_choice();
    let gold = qs
        .iter()
        .map(|q| {
            (
                (
                    utility::mc_context(&q.question),
                    format!(" {}", q.choices[q.gold]),
                ),
                true,
            )
        })
        .collect();
    let mut m = LlMock { gold };
    let texts = utility::heldout_texts(0);
    let mut calls = 0;
    let r = run_utility(
        &mut m,
        &qs,
        &texts,
        32,
        &BootstrapConfig::default(),
        &mut |_| calls += 1,
    )
    .unwrap();
    assert_eq!(r.multiple_choice.acc.rate, 1.0);
    assert_eq!(r.multiple_choice.acc.n, qs.len());
    assert!((r.perplexity.bits_per_byte - 1.0).abs() < 1e-12);
    assert!(calls > 2);
    assert!(utility_loss(r.multiple_choice.acc.rate, 0.9, true) > 0.0);
}

#[test]
fn model_errors_are_reported() {
    struct Failing;
    impl ChatModel for Failing {
        fn name(&self) -> String {
            "failing".into()
        }
        fn generate(
            &mut self,
            _: &[Vec<Message>],
            _: &GenerationSettings,
        ) -> Result<Vec<String>, ModelError> {
            Err("out of memory".into())
        }
    }
    let suite = builtin_suite(SuiteKind::Harmful, 0).unwrap();
    let e = run_suite(
        &mut Failing,
        &mut KeywordJudge::default(),
        &suite,
        &EvalSettings::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("out of memory"), "{e}");
}
