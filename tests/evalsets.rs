//! The public held-out prompt sets as `scripts/fetch-evalsets.sh` lays them
//! out: HarmBench's 200 standard behaviours and Do-Not-Answer's 939 prompts
//! in 5 risk areas, loaded through the study's reader. Skipped — visibly, on
//! stderr — when `evalsets/` has not been fetched (CI fetches it).

use deltaguard::study::run::{EvalSet, EvalSetKind};
use std::path::Path;

#[test]
fn fetched_public_sets_load_completely() {
    let dir = Path::new("evalsets");
    if !dir.join("harmbench/harmbench_prompts.txt").is_file() {
        eprintln!(
            "SKIPPED: evalsets/ is absent; run scripts/fetch-evalsets.sh to test the public sets"
        );
        return;
    }
    let hb = EvalSet::in_dir(EvalSetKind::HarmBench, dir).load().unwrap();
    assert_eq!(hb.len(), 200);
    assert!(
        dir.join("harmbench/LICENSE").is_file(),
        "HarmBench's MIT licence travels with it"
    );
    let dna = EvalSet::in_dir(EvalSetKind::DoNotAnswer, dir)
        .load()
        .unwrap();
    assert_eq!(dna.len(), 939);
    let areas: std::collections::BTreeSet<&str> = dna.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(areas.len(), 5, "{areas:?}");
    // None of them is a built-in prompt (they are held out from everything
    // the embedded base and the attacks train on).
    let builtin: std::collections::BTreeSet<String> =
        safety_eval::data::corpus().into_iter().collect();
    assert!(hb.iter().chain(&dna).all(|(_, p)| !builtin.contains(p)));
}
