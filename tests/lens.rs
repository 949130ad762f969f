//! The logit lens on llama-model: probe points match transformers' hidden
//! states, and the last layer's lens is the model's own logits.

use deltaguard::adapters::LlamaLens;
use deltaguard::backend::{device, Backend};
use deltaguard::model_io::load_model;
use logit_lens::{run_lens, LensModel, LensOptions, ProbePoint};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hf-reference")
        .join(name)
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn probes_match_transformers_and_the_last_lens_is_the_logits() {
    for model in [
        "llama-untied-f32",
        "llama-tied-f32",
        "llama-untied-bf16",
        "llama-sharded-f16",
    ] {
        let dir = fixture(model);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let ids: Vec<u32> = r["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let loaded = load_model::<Backend>(&dir, None, &device()).unwrap();
        let lens = LlamaLens { loaded: &loaded };
        let trace = lens.trace(&ids).unwrap();
        let d = lens.hidden_size();
        let last = ids.len() - 1;
        let at_last = |h: &[f32]| h[last * d..(last + 1) * d].to_vec();
        let reference = r["hidden_states_last_pos"].as_array().unwrap();
        let n_layers = reference.len() - 1;

        // embedding output, then each block's output (HF's hidden_states[1..L]);
        // HF's last entry is after the final norm.
        let mut posts = vec![at_last(&trace.points[0].hidden)];
        assert_eq!(trace.points[0].point, ProbePoint::Embedding);
        for p in &trace.points {
            if let ProbePoint::Post { .. } = p.point {
                posts.push(at_last(&p.hidden));
            }
        }
        assert_eq!(posts.len(), n_layers + 1, "{model}");
        for (i, h) in posts.iter().enumerate().take(n_layers) {
            for (a, b) in h.iter().zip(floats(&reference[i])) {
                assert!(
                    (*a as f64 - b).abs() < 1e-4,
                    "{model}: hidden state {i}: {a} vs {b}"
                );
            }
        }

        // decoding the last block's output is the model's logits (== transformers')
        let logits = lens.decode(&posts[n_layers], 1).unwrap();
        let expected = floats(&r["logits"][last]);
        for (a, b) in logits.iter().zip(&expected) {
            assert!(
                (*a as f64 - b).abs() < 1e-4,
                "{model}: lens logit {a} vs {b}"
            );
        }
        let report = run_lens(model, &lens, &ids, &LensOptions::default()).unwrap();
        assert!(
            report.last_point_max_abs_logit_diff.unwrap() < 1e-4,
            "{model}"
        );
        assert_eq!(report.points.len(), 1 + 2 * n_layers);
    }
}

#[test]
fn lens_cli_compares_base_and_deltas_and_writes_svgs() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = fixture("pair");
    let delta = tmp.path().join("bitdelta.safetensors");
    let bin = env!("CARGO_BIN_EXE_deltaguard");
    let st = std::process::Command::new(bin)
        .args(["compress", "-q", "--base"])
        .arg(pair.join("base"))
        .arg("--finetuned")
        .arg(pair.join("finetuned"))
        .arg("--out")
        .arg(&delta)
        .status()
        .unwrap();
    assert!(st.success());
    let out_dir = tmp.path().join("lens");
    let out = std::process::Command::new(bin)
        .args(["lens", "--text", "hello", "--json", "--model"])
        .arg(pair.join("base"))
        .arg("--delta")
        .arg(&delta)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["models"].as_array().unwrap().len(), 2);
    assert_eq!(json["pairs"].as_array().unwrap().len(), 1);
    for f in [
        "lens.json",
        "heatmap-base.svg",
        "heatmap-bitdelta.svg",
        "log_prob_diff.svg",
        "kl-base-vs-bitdelta.svg",
    ] {
        let text =
            std::fs::read_to_string(out_dir.join(f)).unwrap_or_else(|_| panic!("{f} missing"));
        assert!(!text.is_empty());
    }
}
