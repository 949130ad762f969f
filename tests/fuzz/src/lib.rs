//! Fuzz targets for every reader of deltaguard: one function per reader, each
//! taking arbitrary bytes and driving the reader as far as the bytes allow
//! (parse, then use what was parsed: decode every tensor, render, encode).
//! A target must return for any input; a panic, an abort (for example a
//! huge allocation) or a hang is a bug in the reader.
//!
//! The same functions run two ways:
//! - coverage-guided under libFuzzer (`scripts/fuzz.sh TARGET SECONDS`, the
//!   `libfuzzer` feature, instrumented on the stable toolchain);
//! - as a plain `cargo test` (tests/corpus.rs) that replays the committed
//!   corpus in `tests/fuzz/corpus/TARGET/`, so every input the fuzzer once
//!   found interesting stays a regression test.
//!
//! ```
//! // Any bytes: an error, never a panic.
//! assert!(!deltaguard_fuzz::run("gguf", b"GGUF\x03\x00\x00\x00garbage"));
//! deltaguard_fuzz::run("method_spec", b"svd:rank=99999999999");
//! assert!(deltaguard_fuzz::run("method_spec", b"bitdelta"));
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub mod corpus;
mod readers;

pub use readers::*;

/// A reader under test: its name (the corpus folder and libFuzzer binary)
/// and the function that drives it.
pub struct Target {
    /// Name as used by `scripts/fuzz.sh` and `corpus/NAME/`.
    pub name: &'static str,
    /// What it reads.
    pub what: &'static str,
    /// The driver: `true` when the reader accepted the input (it went on to
    /// use what it read), `false` when it refused it with an error.
    pub run: fn(&[u8]) -> bool,
}

/// Every target, in the order the README's table lists them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "safetensors",
        what: "model.safetensors header and data (Checkpoint::open, every tensor read)",
        run: safetensors,
    },
    Target {
        name: "safetensors_index",
        what: "model.safetensors.index.json over real shards",
        run: safetensors_index,
    },
    Target {
        name: "gguf",
        what: "GGUF header, metadata, tensors, Llama config, tokenizer, template",
        run: gguf,
    },
    Target {
        name: "delta_file",
        what: "delta file (header, checksums on or off, every payload decoded)",
        run: delta_file,
    },
    Target {
        name: "config_json",
        what: "config.json (LlamaConfig, then a model load over real weights)",
        run: config_json,
    },
    Target {
        name: "tokenizer",
        what: "tokenizer.json / tokenizer_config.json (load, encode, decode)",
        run: tokenizer,
    },
    Target {
        name: "chat_template",
        what: "Jinja chat template (compile, render)",
        run: chat_template,
    },
    Target {
        name: "datasets",
        what: "every JSONL/CSV/text loader, the chat-data loader, the serve keys file",
        run: datasets,
    },
    Target {
        name: "method_spec",
        what: "method spec strings (parse, round-trip, compress a small matrix)",
        run: method_spec,
    },
    Target {
        name: "serve_request",
        what: "OpenAI request bodies (parse, stop strings, streamed text cutting)",
        run: serve_request,
    },
];

/// Runs target `name` on `data`; whether its reader accepted the input.
/// Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    let t = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name:?}"));
    (t.run)(data)
}

/// The repository's root (for fixtures under `testdata/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch folder for this process, created once and removed never (the
/// fuzzer runs until killed; it lives under the system temp folder).
fn scratch_root() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::Builder::new()
            .prefix("deltaguard-fuzz-")
            .tempdir()
            .expect("create scratch folder")
            .keep();
        d
    })
}

/// A per-target, per-thread scratch folder, so parallel test threads never
/// share files.
fn scratch(target: &str) -> PathBuf {
    let tid = format!("{:?}", std::thread::current().id());
    let tid: String = tid.chars().filter(char::is_ascii_digit).collect();
    let d = scratch_root().join(format!("{target}-{tid}"));
    std::fs::create_dir_all(&d).expect("create scratch folder");
    d
}
