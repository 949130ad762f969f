//! A reduced free-lunch study written against the library API: one attack
//! (alignment breaking) mixed into the persona-opener tenant's data at 20 %
//! and alone, two seeds, two compression methods and the delta-dropped
//! control, a small evaluation budget — a starting point for building your
//! own grid. The report's verdict section says which rows are free lunches.
//!
//! ```text
//! cargo run --release --example free_lunch -- [BASE_HF_DIR] [OUT]
//! ```
//! Without BASE_HF_DIR it uses (building it once, ~3 minutes on 2 cores) the
//! embedded default model that `deltaguard study` uses, cached in `models/`.

use deltaguard::study::cell::EvalBudget;
use deltaguard::study::embedded::{build_embedded_base, EmbeddedConfig};
use deltaguard::study::grid::{method_by_key, AttackSpec, Grid, Strength};
use deltaguard::study::report::{write_report, ReportOptions, RunMeta};
use deltaguard::study::run::{run_grid, StudyConfig, StudyProgress};
use safety_eval::tenants::TenantTask;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Prints each stage as it starts.
struct Print;
impl StudyProgress for Print {
    fn stage(&mut self, done: usize, total: usize, what: &str) {
        println!("[{done}/{total}] {what}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let mut args = std::env::args().skip(1);
    let stop = AtomicBool::new(false);
    let base = match args.next() {
        Some(dir) => PathBuf::from(dir),
        None => build_embedded_base(
            &EmbeddedConfig::default(),
            "models".as_ref(),
            &mut |phase, step, total, loss| {
                if step == total {
                    println!("embedded base: {phase} done, loss {loss:.3}");
                }
            },
            &stop,
        )?,
    };
    let out = PathBuf::from(args.next().unwrap_or_else(|| "runs/free_lunch".into()));

    // The grid: one attack at two poison rates and two seeds, one strength,
    // the full fine-tune, two methods and the delta-dropped control.
    let grid = Grid {
        attacks: vec![AttackSpec::parse("alignment_breaking")?],
        strengths: vec![Strength::epochs(3)],
        methods: ["none", "bitdelta", "svd-8", "dropped"]
            .iter()
            .map(|k| method_by_key(k))
            .collect::<Result<_, _>>()?,
        poison_rates: vec![0.2, 1.0],
        seeds: vec![0, 1],
        tenant: TenantTask::PersonaOpener,
    };
    let config = StudyConfig::new(grid, EvalBudget::quick());

    // Run (cells are cached in OUT/cells: a rerun resumes), then report.
    let cells = run_grid(&base, &config, &out, &mut Print, &stop)?;
    let mut meta = RunMeta::new(config.seed, base.display().to_string());
    meta.runtime_seconds = started.elapsed().as_secs_f64();
    let files = write_report(&out, &meta, &cells, &ReportOptions::default())?;
    println!("{}", std::fs::read_to_string(&files.markdown)?);
    Ok(())
}
