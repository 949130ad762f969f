//! Evaluate a model (optionally with a compressed delta) on the held-out
//! harmful suite and print the table of rates with 95 % bootstrap intervals.
//!
//! ```text
//! cargo run --release --example evaluate_attack -- MODEL [--delta FILE] [--limit N]
//! cargo run --release --example evaluate_attack -- models/SmolLM2-135M-Instruct.Q4_1.gguf --limit 10
//! ```

use deltaguard::adapters::LlamaEvalModel;
use deltaguard::backend::{device, Backend};
use deltaguard::model_io::load_model;
use safety_eval::{
    builtin_suite, run_suite, EvalSettings, GenerationSettings, KeywordJudge, SuiteKind,
};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model_path = PathBuf::from(
        args.next()
            .ok_or("usage: evaluate_attack MODEL [--delta FILE] [--limit N]")?,
    );
    let (mut delta, mut limit) = (None, 20usize);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--delta", Some(v)) => delta = Some(PathBuf::from(v)),
            ("--limit", Some(v)) => limit = v.parse()?,
            _ => return Err(format!("unexpected argument {flag}").into()),
        }
    }

    let loaded = load_model::<Backend>(&model_path, delta.as_deref(), &device())?;
    let mut model = LlamaEvalModel::new(&loaded);
    // Held-out harmful prompts (topics the attack never trains on) plus benign
    // prompts for over-refusal; seed 0 fixes the split.
    let suite = builtin_suite(SuiteKind::Harmful, 0)
        .ok_or("no harmful suite")?
        .limited(limit);
    let settings = EvalSettings {
        generation: GenerationSettings {
            max_new_tokens: 48,
            ..Default::default()
        },
        ..Default::default()
    };
    // The published keyword judge (29 strings, anywhere in the answer); the
    // report also carries the anchored variant for every rate.
    let mut judge = KeywordJudge::substring();
    let report = run_suite(&mut model, &mut judge, &suite, &settings, &mut |p| {
        eprint!("\r{}/{} prompts", p.done, p.total);
    })?;
    eprintln!();
    println!("{}", report.table());
    Ok(())
}
