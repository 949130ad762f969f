//! `deltaguard score`: re-score saved generations without the model.

use super::CliResult;
use safety_eval::{rescore, RefusalScorer};
use std::path::PathBuf;

/// Re-score saved generations (JSONL) with the refusal keyword judges.
///
/// Each input line is an object with at least `prompt` and `output`; each output
/// line keeps every input field and adds `refused_substring` (the 29-string
/// GCG/AdvBench list, anywhere in the answer, case-sensitive),
/// `refused_anchored` (only the answer's opening), `refusal_keywords`, and
/// `target_hit` when the line has a `marker` field. A malformed line is an
/// error naming it, and no output is written.
#[derive(clap::Args)]
pub struct Args {
    /// Input JSONL.
    #[arg(long = "in")]
    input: PathBuf,
    /// Output JSONL (may be the input file: it is replaced atomically).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let summary = rescore(&args.input, &args.out, &RefusalScorer::default())?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
