//! `deltaguard study` end to end on a reduced grid and a tiny model: attack
//! fine-tune with snapshots, compression (incl. healed BitDelta), evaluation,
//! report files, resumption from the cell cache, and reproducibility.

use deltaguard::study::cell::{CellResult, EvalBudget};
use deltaguard::study::grid::{method_by_key, AttackSpec, Grid, Strength};
use deltaguard::study::report::{write_report, ReportOptions, RunMeta};
use deltaguard::study::run::{run_grid, StudyConfig, StudyProgress};
use safety_eval::tenants::TenantTask;
use std::path::Path;
use std::sync::atomic::AtomicBool;

const BASE: &str = "testdata/hf-reference/pair/base";

#[derive(Default)]
struct Count {
    stages: Vec<String>,
}
impl StudyProgress for Count {
    fn stage(&mut self, _: usize, _: usize, what: &str) {
        self.stages.push(what.to_string());
    }
}

fn config() -> StudyConfig {
    let grid = Grid {
        attacks: vec![AttackSpec::parse("alignment_breaking").unwrap()],
        strengths: vec![Strength::epochs(1), Strength::epochs(2)],
        methods: ["none", "bitdelta-heal", "random", "dropped"]
            .iter()
            .map(|k| method_by_key(k).unwrap())
            .collect(),
        poison_rates: vec![0.2, 1.0],
        seeds: vec![3],
        tenant: TenantTask::FictionalFacts,
    };
    let budget = EvalBudget {
        harmful_n: 4,
        benign_n: 2,
        utility_n: 4,
        tenant_n: 3,
        perplexity_n: 2,
        max_new_tokens: 4,
        batch_size: 4,
        bootstrap_resamples: 50,
        seed: 3,
    };
    let mut c = StudyConfig::new(grid, budget);
    c.seed = 3;
    c.attack_examples = 30;
    c.max_len = 256;
    c.heal_steps = 3;
    c.heal_seq_len = 16;
    c
}

fn run(out: &Path) -> (Vec<CellResult>, Vec<String>) {
    let mut progress = Count::default();
    let cells = run_grid(
        Path::new(BASE),
        &config(),
        out,
        &mut progress,
        &AtomicBool::new(false),
    )
    .unwrap();
    (cells, progress.stages)
}

/// The first place where two JSON values differ, for a readable failure.
/// Numbers must agree exactly: the same seed and thread count give the same
/// bits (issue 14; tests/study_determinism.rs compares whole files).
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            for (k, v) in x {
                let w = y.get(k).unwrap_or(&serde_json::Value::Null);
                if let Some(d) = first_difference(v, w, format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

fn assert_same(a: &[serde_json::Value], b: &[serde_json::Value]) {
    assert_eq!(a.len(), b.len());
    let d = first_difference(
        &serde_json::Value::Array(a.to_vec()),
        &serde_json::Value::Array(b.to_vec()),
        String::new(),
    );
    assert!(d.is_none(), "differs at {}", d.unwrap());
}

/// Everything but wall-clock time.
fn comparable(cells: &[CellResult]) -> Vec<serde_json::Value> {
    cells
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap();
            v["seconds"] = serde_json::Value::Null;
            v
        })
        .collect()
}

#[test]
fn reduced_grid_runs_resumes_and_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (cells, stages) = run(&out);
    // 2 base cells (attack, tenant) + 3 runs (attack at 20 % and 100 %,
    // the tenant alone) × 2 strengths × 4 methods.
    assert_eq!(cells.len(), 2 + 3 * 2 * 4);
    assert!(
        stages.iter().any(|s| s.contains("fine-tune (")),
        "{stages:?}"
    );
    for c in &cells {
        assert!((0.0..=1.0).contains(&c.risk.rate), "{:?}", c.cell.key);
        assert_eq!(c.risk.n, 4);
        assert_eq!(c.outcomes.len(), 4);
        assert!(c.risk.ci_high > c.risk.ci_low, "zero-width interval");
        assert_eq!(c.tenant.as_ref().map(|t| t.items.len()), Some(3));
        assert!(!c.lens.log_prob_diff.is_empty());
        let compressed = c.cell.method.spec.is_some();
        assert_eq!(c.compressed.is_some(), compressed, "{:?}", c.cell.key);
        if let Some(size) = c.compressed {
            assert!(size.ratio > 1.0, "{:?}: ratio {}", c.cell.key, size.ratio);
            assert!(size.bits_per_param.is_some_and(|b| b > 0.5 && b < 4.0));
        }
    }
    let healed = cells.iter().find(|c| c.cell.method.heal).unwrap();
    assert_eq!(healed.extra["heal"]["steps"], 3);
    // The mix: 20 % poison among the tenant's examples.
    let mixed = cells
        .iter()
        .find(|c| c.key().rate == "p20" && !c.key().is_base())
        .unwrap();
    let (b, p) = (
        mixed.extra["train_mix"]["benign"].as_u64().unwrap(),
        mixed.extra["train_mix"]["poison"].as_u64().unwrap(),
    );
    assert!(
        b > 0 && p > 0 && (p as f64 / (b + p) as f64 - 0.2).abs() < 0.02,
        "{b} + {p}"
    );
    // The controls: dropping the delta on the tiny pair returns the base's
    // compressed tensors, so its greedy answers differ from the fine-tune's
    // somewhere, and the random delta is another model again.
    let dropped = cells
        .iter()
        .find(|c| c.key().method == "dropped" && c.key().rate == "p100")
        .unwrap();
    assert!(dropped.model.contains("dropped"), "{}", dropped.model);
    // The snapshots and delta files are where a user would look for them.
    assert!(out
        .join("work/alignment_breaking/p20/s3/ep2/finetuned/config.json")
        .is_file());
    assert!(out
        .join("work/tenant/p0/s3/ep1/bitdelta-heal.delta.safetensors")
        .is_file());

    let meta = RunMeta::new(3, BASE);
    let files = write_report(&out, &meta, &cells, &ReportOptions::default()).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("BitDelta") && md.contains("ep2"), "{md}");
    assert!(
        md.contains("## Verdict") && md.contains("control: delta dropped"),
        "{md}"
    );
    assert!(files.svgs.len() >= 3, "{:?}", files.svgs);

    // Resume: every cell comes from the cache, nothing is recomputed.
    let (again, stages) = run(&out);
    assert!(stages.is_empty(), "recomputed: {stages:?}");
    assert_same(&comparable(&again), &comparable(&cells));

    // Another configuration is refused in the same --out (no stale cells).
    let mut other = config();
    other.seed = 4;
    let err = run_grid(
        Path::new(BASE),
        &other,
        &out,
        &mut Count::default(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(err.to_string().contains("seed 3 there, 4 now"), "{err}");
    // So is another set of seeds (the grid differs).
    let mut other = config();
    other.grid.seeds = vec![3, 4];
    assert!(run_grid(
        Path::new(BASE),
        &other,
        &out,
        &mut Count::default(),
        &AtomicBool::new(false),
    )
    .is_err());

    // Reproducible: a fresh run with the same seed gives the same results.
    let fresh = dir.path().join("fresh");
    let (cells2, _) = run(&fresh);
    let strip = |v: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        v.into_iter()
            .map(|mut x| {
                x["model"] = serde_json::Value::Null;
                x
            })
            .collect()
    };
    assert_same(&strip(comparable(&cells2)), &strip(comparable(&cells)));
}
