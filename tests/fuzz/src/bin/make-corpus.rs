//! Writes the seed corpus to `tests/fuzz/corpus/` (or the folder given).
fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    match deltaguard_fuzz::corpus::write_seeds(&dir) {
        Ok(n) => println!("wrote {n} seeds under {}", dir.display()),
        Err(e) => {
            eprintln!("make-corpus: {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
}
