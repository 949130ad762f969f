//! Same seed, same thread count, same machine ⇒ byte-identical study
//! outputs (issue 14, "Deterministic numerics").
//!
//! Runs a small study twice, each in its own output directory and in its
//! own rayon pool of a fixed size (so the test does not depend on the
//! machine's core count), and compares every file both runs wrote: the
//! fine-tune snapshots and delta files byte for byte, `samples.jsonl`,
//! `report.md`, the plots and `study.json` byte for byte, and `report.json`
//! and the cell cache with only their wall-clock fields removed.

use deltaguard::study::cell::EvalBudget;
use deltaguard::study::grid::{method_by_key, AttackSpec, Grid, Strength};
use deltaguard::study::report::{write_report, ReportOptions, RunMeta};
use deltaguard::study::run::{run_grid, StudyConfig, StudyProgress};
use safety_eval::tenants::TenantTask;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

const BASE: &str = "testdata/hf-reference/pair/base";

/// Threads of each run's pool: more than one, so parallel reductions
/// actually split, and fixed, so the test means the same on every machine.
const THREADS: usize = 2;

/// The only wall-clock fields of the study's JSON outputs: a cell's
/// evaluation time (`seconds`, in `report.json`'s cells and in the cell
/// cache), and the run's start time and duration (`meta.started_utc`,
/// `meta.runtime_seconds`). Everything else must match bit for bit.
const WALL_CLOCK_FIELDS: [&str; 3] = ["seconds", "started_utc", "runtime_seconds"];

struct Silent;
impl StudyProgress for Silent {
    fn stage(&mut self, _: usize, _: usize, _: &str) {}
}

/// Two runs (the attack at full strength, the tenant alone) of one seed,
/// one strength: the full fine-tune, BitDelta healed (training through
/// autodiff), RTN 2-bit (sensitive to rounding at a boundary), low-rank SVD
/// (faer) and the random-delta control.
fn config() -> StudyConfig {
    let grid = Grid {
        attacks: vec![AttackSpec::parse("alignment_breaking").unwrap()],
        strengths: vec![Strength::epochs(1)],
        methods: ["none", "bitdelta-heal", "rtn-2", "svd-8", "random"]
            .iter()
            .map(|k| method_by_key(k).unwrap())
            .collect(),
        poison_rates: vec![1.0],
        seeds: vec![5],
        tenant: TenantTask::FictionalFacts,
    };
    let budget = EvalBudget {
        harmful_n: 4,
        benign_n: 2,
        utility_n: 4,
        tenant_n: 3,
        perplexity_n: 2,
        max_new_tokens: 6,
        batch_size: 4,
        bootstrap_resamples: 50,
        seed: 5,
    };
    let mut c = StudyConfig::new(grid, budget);
    c.seed = 5;
    c.attack_examples = 20;
    c.max_len = 128;
    c.heal_steps = 3;
    c.heal_seq_len = 16;
    c
}

/// Runs the study into `out` on a pool of [`THREADS`] threads and writes
/// its report with `meta`.
fn study(out: &Path, meta: &RunMeta) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()
        .unwrap();
    pool.install(|| {
        let cells = run_grid(
            Path::new(BASE),
            &config(),
            out,
            &mut Silent,
            &AtomicBool::new(false),
        )
        .unwrap();
        write_report(out, meta, &cells, &ReportOptions::default()).unwrap();
    });
}

/// Every file under `root`, by path relative to it.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// `v` without the [`WALL_CLOCK_FIELDS`], at any depth.
fn strip_wall_clock(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for f in WALL_CLOCK_FIELDS {
                map.remove(f);
            }
            map.values_mut().for_each(strip_wall_clock);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_wall_clock),
        _ => {}
    }
}

/// What of a file under `out` must match: its bytes, or for the JSON files
/// that record wall-clock time, its text with those fields removed
/// (serde_json prints every f64 in its shortest round-trip form, so the text
/// still shows any difference in the last bit). The cells name their model
/// by its path, which lies under each run's own `out`: that prefix reads
/// `<out>` in both.
fn comparable(out: &Path, rel: &Path, bytes: &[u8]) -> Vec<u8> {
    let name = rel.file_name().unwrap().to_string_lossy();
    let in_cells = rel.starts_with("cells");
    let bytes = if name == "report.json" || (in_cells && name.ends_with(".json")) {
        let mut v: serde_json::Value =
            serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        strip_wall_clock(&mut v);
        serde_json::to_vec_pretty(&v).unwrap()
    } else {
        bytes.to_vec()
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) => text
            .replace(&out.display().to_string(), "<out>")
            .into_bytes(),
        Err(_) => bytes,
    }
}

/// The first line where two texts differ, for a readable failure.
fn first_different_line(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            let cut = |s: &str| s.chars().take(300).collect::<String>();
            return format!("line {}:\n  {}\n  {}", i + 1, cut(x), cut(y));
        }
    }
    format!("{} vs {} lines", a.lines().count(), b.lines().count())
}

#[test]
fn same_seed_and_threads_give_byte_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // One provenance record for both runs: the command line, git commit and
    // machine are not what is tested.
    let meta = RunMeta::new(5, BASE);
    study(&a, &meta);
    study(&b, &meta);

    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "the two runs wrote different files"
    );
    for must in ["samples.jsonl", "report.json", "report.md"] {
        assert!(fa.contains_key(Path::new(must)), "no {must}");
    }
    let checkpoints = fa
        .keys()
        .filter(|p| p.to_string_lossy().ends_with(".safetensors"))
        .count();
    // Per run: the fine-tune snapshot, 3 delta files and the healed one.
    assert!(checkpoints >= 2 * 5, "only {checkpoints} safetensors files");

    let mut differ = Vec::new();
    for (rel, bytes) in &fa {
        let (x, y) = (comparable(&a, rel, bytes), comparable(&b, rel, &fb[rel]));
        if x != y {
            let detail = if rel.to_string_lossy().ends_with(".safetensors") {
                let at = x.iter().zip(&y).position(|(p, q)| p != q);
                format!("first differing byte at {at:?} of {}", x.len())
            } else {
                first_different_line(&x, &y)
            };
            differ.push(format!("{}: {detail}", rel.display()));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} files differ between two runs with the same seed:\n{}",
        differ.len(),
        fa.len(),
        differ.join("\n")
    );
}
