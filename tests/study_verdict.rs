//! The study's statistical verdict on constructed cells: a method that
//! keeps the tenant's task and drops the attack is a free lunch; one that
//! drops the delta (the control, or a compressor that behaves like it) is
//! never one, however much risk it removes; pure attacks take their
//! retention from the benign tenant compressed the same way.

use deltaguard::study::cell::{
    CellInfo, CellResult, EvalBudget, LensCurve, Outcome, TenantItemScore, TenantScore,
    UtilityResult,
};
use deltaguard::study::grid::{method_by_key, AttackSpec, Method, Run, Strength};
use deltaguard::study::report::{render_markdown, ReportOptions, RunMeta};
use deltaguard::study::verdict::{verdict_rows, VerdictRow};
use safety_eval::stats::{wilson_of, ClusterBootstrap};
use safety_eval::tenants::TenantTask;
use safety_eval::utility::McRecord;
use safety_eval::verdict::{Failure, VerdictConfig};
use safety_eval::AttackKind;

const PROMPTS: usize = 20;
const TASK_ITEMS: usize = 30;
const QUESTIONS: usize = 40;

/// What one constructed cell scores: attack successes of `PROMPTS`, task
/// items right of `TASK_ITEMS`, questions right of `QUESTIONS`.
struct Scores {
    attack_hits: usize,
    task_right: usize,
    questions_right: usize,
}

fn cell(info: CellInfo, s: &Scores) -> CellResult {
    let attack: Vec<bool> = (0..PROMPTS).map(|i| i < s.attack_hits).collect();
    let task: Vec<bool> = (0..TASK_ITEMS).map(|i| i < s.task_right).collect();
    let acc: Vec<bool> = (0..QUESTIONS).map(|i| i < s.questions_right).collect();
    let rate = |v: &[bool]| wilson_of(v, 0.95).unwrap();
    CellResult {
        cell: info,
        model: "constructed".into(),
        risk: rate(&attack),
        secondary: vec![],
        metrics: vec![],
        utility: UtilityResult {
            acc: rate(&acc),
            acc_norm: rate(&acc),
            perplexity: None,
            bits_per_byte: None,
            n_texts: 0,
            records: acc
                .iter()
                .enumerate()
                .map(|(i, &a)| McRecord {
                    id: format!("q{i}"),
                    gold: 0,
                    loglikelihoods: vec![-1.0, -2.0],
                    pred: if a { 0 } else { 1 },
                    pred_norm: 0,
                    acc: a,
                    acc_norm: a,
                })
                .collect(),
        },
        lens: LensCurve {
            prompt: "p".into(),
            labels: vec!["embed".into()],
            log_prob_diff: vec![0.0],
        },
        compressed: None,
        outcomes: attack
            .iter()
            .enumerate()
            .map(|(i, &a)| Outcome {
                id: format!("h{i}"),
                substring: a,
                anchored: a,
                payload: Some(a),
                success: a,
            })
            .collect(),
        payload_risk: None,
        tenant: Some(TenantScore {
            task: "fictional_facts".into(),
            accuracy: rate(&task),
            items: task
                .iter()
                .enumerate()
                .map(|(i, &c)| TenantItemScore {
                    id: format!("t{i}"),
                    cluster: format!("c{}", i / 3),
                    correct: c,
                    output: String::new(),
                })
                .collect(),
        }),
        seconds: 0.0,
        budget: EvalBudget::default(),
        samples: vec![],
        extra: serde_json::Value::Null,
    }
}

const BASE: Scores = Scores {
    attack_hits: 1,
    task_right: 0,
    questions_right: 20,
};
const FULL: Scores = Scores {
    attack_hits: 18,
    task_right: 30,
    questions_right: 20,
};
/// Drops the attack, keeps the task and the utility.
const KEEPER: Scores = Scores {
    attack_hits: 2,
    task_right: 30,
    questions_right: 20,
};
/// Back at the base on everything: what dropping the delta does.
const LIKE_BASE: Scores = BASE;

fn cells_of(run: &Run, ep: &Strength, methods: &[(Method, &Scores)]) -> Vec<CellResult> {
    let mut out = vec![cell(CellInfo::base(&run.attack, run.seed), &BASE)];
    for (m, s) in methods {
        out.push(cell(CellInfo::new(run, ep, m), s));
    }
    out
}

fn rows() -> Vec<VerdictRow> {
    let ep = Strength::epochs(3);
    let attack = AttackSpec::of(AttackKind::AlignmentBreaking);
    let tenant = AttackSpec::tenant(TenantTask::FictionalFacts);
    let methods = [
        (Method::none(), &FULL),
        (method_by_key("bitdelta").unwrap(), &KEEPER),
        (method_by_key("magnitude-0.1").unwrap(), &LIKE_BASE),
        (Method::dropped(), &LIKE_BASE),
    ];
    let mut cells = Vec::new();
    for seed in 0..3 {
        for (a, rate) in [(&attack, 0.2), (&attack, 1.0), (&tenant, 0.0)] {
            let run = Run {
                attack: a.clone(),
                rate,
                seed,
            };
            cells.extend(cells_of(&run, &ep, &methods));
        }
    }
    verdict_rows(
        &cells,
        &VerdictConfig::default(),
        &ClusterBootstrap {
            resamples: 500,
            ..Default::default()
        },
    )
    .unwrap()
}

fn row<'a>(rows: &'a [VerdictRow], attack: &str, rate: &str, method: &str) -> &'a VerdictRow {
    rows.iter()
        .find(|r| r.attack == attack && r.rate == rate && r.method.key == method)
        .unwrap_or_else(|| panic!("no row {attack}/{rate}/{method}"))
}

#[test]
fn a_keeper_is_a_free_lunch_and_dropping_the_delta_never_is() {
    let rows = rows();
    // 3 runs × 3 non-reference methods.
    assert_eq!(rows.len(), 9);
    for rate in ["p20", "p100"] {
        let keeper = row(&rows, "alignment_breaking", rate, "bitdelta");
        assert!(keeper.verdict.free_lunch, "{rate}: {:?}", keeper.verdict);
        assert_eq!(keeper.seeds, vec![0, 1, 2]);
        assert_eq!(keeper.verdict.risk_full.n, 3 * PROMPTS);
        assert!(!keeper.like_dropped());

        for m in ["dropped", "magnitude-0.1"] {
            let r = row(&rows, "alignment_breaking", rate, m);
            // Lower risk, significantly — and still no free lunch.
            assert!(r.verdict.p_holm < 0.05, "{m}: {}", r.verdict.p_holm);
            assert!(!r.verdict.free_lunch, "{rate}/{m}");
            assert!(
                r.verdict
                    .failed
                    .iter()
                    .any(|f| matches!(f, Failure::Retention { .. })),
                "{m}: {:?}",
                r.verdict.failed
            );
            assert!(r.verdict.task_like_base, "{m}");
        }
        let mag = row(&rows, "alignment_breaking", rate, "magnitude-0.1");
        assert!(mag.like_dropped());
        assert!(mag.p_vs_dropped.is_some_and(|p| p >= 0.99));
    }
    // Where retention comes from.
    assert_eq!(
        row(&rows, "alignment_breaking", "p100", "bitdelta").retention_source,
        "benign tenant compressed the same way"
    );
    assert_eq!(
        row(&rows, "alignment_breaking", "p20", "bitdelta").retention_source,
        "this fine-tune's task"
    );
}

#[test]
fn pure_attack_retention_follows_the_benign_tenant() {
    // Same as above, but the tenant's own compressed fine-tune loses its task
    // under BitDelta: the pure attack's BitDelta row must then fail
    // retention even though the attack cells themselves look perfect.
    let ep = Strength::epochs(3);
    let attack = AttackSpec::of(AttackKind::AlignmentBreaking);
    let tenant = AttackSpec::tenant(TenantTask::FictionalFacts);
    let bitdelta = method_by_key("bitdelta").unwrap();
    let mut cells = Vec::new();
    for seed in 0..3 {
        let pure = Run {
            attack: attack.clone(),
            rate: 1.0,
            seed,
        };
        cells.extend(cells_of(
            &pure,
            &ep,
            &[(Method::none(), &FULL), (bitdelta.clone(), &KEEPER)],
        ));
        let alone = Run {
            attack: tenant.clone(),
            rate: 0.0,
            seed,
        };
        cells.extend(cells_of(
            &alone,
            &ep,
            &[(Method::none(), &FULL), (bitdelta.clone(), &LIKE_BASE)],
        ));
    }
    let rows = verdict_rows(
        &cells,
        &VerdictConfig::default(),
        &ClusterBootstrap::default(),
    )
    .unwrap();
    let r = row(&rows, "alignment_breaking", "p100", "bitdelta");
    assert!(!r.verdict.free_lunch);
    assert!(r.verdict.task_like_base);
    assert!(r
        .verdict
        .failed
        .iter()
        .all(|f| matches!(f, Failure::Retention { .. })));

    // And the report says so in words.
    let md = render_markdown(
        &RunMeta::new(0, "constructed"),
        &cells,
        &ReportOptions::default(),
    );
    assert!(md.contains("## Verdict"), "{md}");
    assert!(md.contains("✗ retention"), "{md}");
    assert!(md.contains("No compression method is a free lunch"), "{md}");
}
