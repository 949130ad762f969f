//! `deltaguard heal` run as a user runs it, on the tiny fixture pair.

use deltaguard::delta_quant::{Compressed, DeltaFile, EntryKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pair(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hf-reference/pair")
        .join(name)
}

fn deltaguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args(args)
        .output()
        .expect("run deltaguard")
}

fn ok(args: &[&str]) -> Output {
    let out = deltaguard(args);
    assert!(
        out.status.success(),
        "deltaguard {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Seeded pseudo-text from a small word list.
fn calibration_text(words: usize, seed: u64) -> String {
    const WORDS: &[&str] = &[
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
        "wizards", "hex", "fish", "near", "old", "ships", "and", "sing",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..words)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn compress(dir: &Path, method: &str) -> PathBuf {
    let out = dir.join(format!(
        "{}.safetensors",
        method.replace([':', '=', ','], "_")
    ));
    ok(&[
        "compress",
        "--base",
        pair("base").to_str().unwrap(),
        "--finetuned",
        pair("finetuned").to_str().unwrap(),
        "--method",
        method,
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    out
}

#[test]
fn heal_lowers_the_held_out_mse_and_writes_a_usable_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let delta = compress(tmp.path(), "bitdelta");
    let calib = tmp.path().join("calib.txt");
    std::fs::write(&calib, calibration_text(2500, 1)).unwrap();
    let eval = tmp.path().join("eval.jsonl");
    let lines: Vec<String> = (0..20)
        .map(|i| serde_json::json!({ "text": calibration_text(40, 100 + i) }).to_string())
        .collect();
    std::fs::write(&eval, lines.join("\n")).unwrap();
    let healed = tmp.path().join("healed.safetensors");
    let out = ok(&[
        "heal",
        "--base",
        pair("base").to_str().unwrap(),
        "--finetuned",
        pair("finetuned").to_str().unwrap(),
        "--delta",
        delta.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
        "--eval",
        eval.to_str().unwrap(),
        "--out",
        healed.to_str().unwrap(),
        "--steps",
        "30",
        "--lr",
        "5e-3",
        "--seq-len",
        "32",
        "--seed",
        "3",
        "--json",
        "-q",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let (before, after) = (
        v["held_out_mse_before"].as_f64().unwrap(),
        v["held_out_mse_after"].as_f64().unwrap(),
    );
    eprintln!("CLI heal: held-out logit MSE {before:.6e} -> {after:.6e}");
    assert!(after < 0.97 * before, "{before} -> {after}");
    assert_eq!(v["steps"], 30);
    assert_eq!(v["mode"], "scales");
    assert_eq!(v["trainable_tensors"], 14);
    assert_eq!(v["train_losses"].as_array().unwrap().len(), 30);

    // Same method, signs and carried tensors; new scales.
    let (a, b) = (
        DeltaFile::open(&delta).unwrap(),
        DeltaFile::open(&healed).unwrap(),
    );
    assert_eq!(a.method(), b.method());
    assert_eq!(a.base_fingerprint(), b.base_fingerprint());
    let mut moved = 0;
    for e in a.entries() {
        match e.kind {
            EntryKind::Compressed => match (
                a.compressed(&e.name).unwrap(),
                b.compressed(&e.name).unwrap(),
            ) {
                (Compressed::BitDelta(x), Compressed::BitDelta(y)) => {
                    assert_eq!(x.signs(), y.signs());
                    moved += usize::from(x.scales() != y.scales());
                }
                _ => panic!("{} is not BitDelta", e.name),
            },
            EntryKind::Carried => assert_eq!(
                a.carried(&e.name).unwrap().data,
                b.carried(&e.name).unwrap().data
            ),
        }
    }
    assert_eq!(moved, 14);

    // The rest of the tool takes the healed delta.
    ok(&[
        "logits",
        "--model",
        pair("base").to_str().unwrap(),
        "--delta",
        healed.to_str().unwrap(),
        "--tokens",
        "1,5,9",
        "--json",
    ]);
}

#[test]
fn heal_refuses_a_wrong_base_and_methods_without_scales() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = tmp.path().join("calib.txt");
    std::fs::write(&calib, calibration_text(400, 2)).unwrap();
    let run = |base: &str, delta: &Path| {
        let out_file = tmp.path().join("out.safetensors");
        let out = deltaguard(&[
            "heal",
            "--base",
            pair(base).to_str().unwrap(),
            "--finetuned",
            pair("finetuned").to_str().unwrap(),
            "--delta",
            delta.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--out",
            out_file.to_str().unwrap(),
            "--steps",
            "2",
            "--seq-len",
            "16",
        ]);
        assert!(!out.status.success());
        assert!(!out_file.exists(), "nothing is written on error");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let bitdelta = compress(tmp.path(), "bitdelta");
    let err = run("finetuned", &bitdelta);
    assert!(err.contains("different base"), "{err}");
    let rtn = compress(tmp.path(), "rtn:bits=4,group=16");
    let err = run("base", &rtn);
    assert!(
        err.contains("rtn:bits=4,group=16") && err.contains("model.layers."),
        "{err}"
    );
}
