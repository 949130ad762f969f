//! Replays the committed corpus (`tests/fuzz/corpus/TARGET/*`: the seeds and
//! every input libFuzzer kept, crashes it found among them) through each
//! target: none may panic. Also checks every target has a corpus and the
//! seeds still match what `make-corpus` writes for the readers' inputs that
//! must stay valid.

use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[test]
fn every_target_replays_its_corpus_without_panicking() {
    let mut total = 0;
    for t in deltaguard_fuzz::TARGETS {
        let dir = corpus_dir().join(t.name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (run make-corpus)", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: empty corpus", dir.display());
        for f in &files {
            let data = std::fs::read(f).expect("read corpus file");
            // A panic names the input, so a failure says which file to debug.
            let r = std::panic::catch_unwind(|| (t.run)(&data));
            assert!(r.is_ok(), "target {} panicked on {}", t.name, f.display());
        }
        total += files.len();
    }
    eprintln!("replayed {total} corpus inputs");
}

/// The seeds are valid inputs: each reader accepts its own seed, so the
/// fuzzer starts from inputs that reach deep code rather than the first
/// check. (A reader change that rejects them fails here, not silently in
/// a fuzz run that only ever sees errors.)
#[test]
fn seeds_are_accepted_by_their_readers() {
    let seeds = deltaguard_fuzz::corpus::seeds();
    for (target, name, bytes) in &seeds {
        assert!(
            deltaguard_fuzz::run(target, bytes),
            "seed {name} of {target} is refused by its reader"
        );
    }
}
