//! The logit lens on llama-model: probe points match transformers' hidden
//! states, and the last layer's lens is the model's own logits.

use burn::tensor::{Tensor, TensorData};
use deltaguard::adapters::LlamaLens;
use deltaguard::backend::{device, Backend};
use deltaguard::model_io::load_model;
use logit_lens::{run_lens, LensModel, LensOptions, ProbePoint};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: [&str; 4] = [
    "llama-untied-f32",
    "llama-tied-f32",
    "llama-untied-bf16",
    "llama-sharded-f16",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hf-reference")
        .join(name)
}

fn reference(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap()
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
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
    for model in FIXTURES {
        let dir = fixture(model);
        let r = reference(&dir);
        let ids = ids_of(&r["input_ids"]);
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

/// The check, literally: on every shared fixture, decoding the last
/// block's output through the lens reproduces what `deltaguard logits` prints,
/// at every position, and the lens' own top-1 at the last block is the CLI's
/// argmax.
#[test]
fn last_layer_lens_equals_deltaguard_logits() {
    let bin = env!("CARGO_BIN_EXE_deltaguard");
    for model in FIXTURES {
        let dir = fixture(model);
        let ids = ids_of(&reference(&dir)["input_ids"]);
        let ids_arg: Vec<String> = ids.iter().map(u32::to_string).collect();
        let out = Command::new(bin)
            .args([
                "logits",
                "--json",
                "--tokens",
                &ids_arg.join(","),
                "--model",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ids_of(&cli["input_ids"]), ids, "{model}");
        let rows = cli["logits"].as_array().unwrap();
        assert_eq!(rows.len(), ids.len(), "{model}");

        let loaded = load_model::<Backend>(&dir, None, &device()).unwrap();
        let lens = LlamaLens { loaded: &loaded };
        let vocab = lens.vocab_size();
        let trace = lens.trace(&ids).unwrap();
        let last = trace.points.last().unwrap();
        let n_layers = loaded.model.config().num_hidden_layers;
        assert_eq!(
            last.point,
            ProbePoint::Post {
                layer: n_layers - 1
            }
        );
        let decoded = lens.decode(&last.hidden, ids.len()).unwrap();
        assert_eq!(decoded.len(), ids.len() * vocab);
        let report = run_lens(model, &lens, &ids, &LensOptions::default()).unwrap();
        let last_row = report.points.last().unwrap();
        for (pos, row) in rows.iter().enumerate() {
            let expected = floats(row);
            assert_eq!(expected.len(), vocab, "{model}");
            let got = &decoded[pos * vocab..(pos + 1) * vocab];
            for (v, (a, b)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() < 1e-5 * (1.0 + b.abs()),
                    "{model}: position {pos}, token {v}: lens {a} vs `deltaguard logits` {b}"
                );
            }
            let argmax = (0..vocab)
                .max_by(|&i, &j| expected[i].total_cmp(&expected[j]).then(j.cmp(&i)))
                .unwrap();
            assert_eq!(
                last_row.cells[pos].top[0].id as usize, argmax,
                "{model}: position {pos}"
            );
            assert!(last_row.cells[pos].forward_kl < 1e-9, "{model}");
        }
    }
}

/// `mid` is the residual stream after the attention residual add: the block's
/// output is exactly `mid + mlp(post_attention_layernorm(mid))`, and attention
/// did change the stream (`mid != pre`).
#[test]
fn mid_is_the_residual_stream_after_attention() {
    for model in ["llama-untied-f32", "llama-tied-f32"] {
        let dir = fixture(model);
        let ids = ids_of(&reference(&dir)["input_ids"]);
        let loaded = load_model::<Backend>(&dir, None, &device()).unwrap();
        let lens = LlamaLens { loaded: &loaded };
        let (n, d) = (ids.len(), lens.hidden_size());
        let trace = lens.trace(&ids).unwrap();
        let layers = &loaded.model.layers;
        assert_eq!(trace.points.len(), 1 + 2 * layers.len(), "{model}");
        for (i, layer) in layers.iter().enumerate() {
            let (pre, mid, post) = (
                &trace.points[2 * i],
                &trace.points[2 * i + 1],
                &trace.points[2 * i + 2],
            );
            assert_eq!(mid.point, ProbePoint::Mid { layer: i });
            assert_eq!(post.point, ProbePoint::Post { layer: i });
            let x = Tensor::<Backend, 3>::from_data(
                TensorData::new(mid.hidden.clone(), [1, n, d]),
                &device(),
            );
            let mlp: Vec<f32> = layer
                .mlp
                .forward(layer.post_attention_layernorm.forward(x))
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap();
            for (k, ((m, u), p)) in mid.hidden.iter().zip(&mlp).zip(&post.hidden).enumerate() {
                assert!(
                    (m + u - p).abs() < 1e-4 * (1.0 + p.abs()),
                    "{model}: block {i}, value {k}: mid + mlp = {} vs post {p}",
                    m + u
                );
            }
            let moved = pre
                .hidden
                .iter()
                .zip(&mid.hidden)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                moved > 1e-3,
                "{model}: block {i}: attention left the stream unchanged"
            );
        }
    }
}

fn compress(bin: &str, pair: &Path, method: &str, out: &Path) {
    let st = Command::new(bin)
        .args(["compress", "-q", "--method", method, "--base"])
        .arg(pair.join("base"))
        .arg("--finetuned")
        .arg(pair.join("finetuned"))
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "compress {method}");
}

fn parse_svg(path: &Path) -> usize {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|_| panic!("{} missing", path.display()));
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: invalid XML: {e}", path.display()));
    doc.descendants().filter(|n| n.has_tag_name("rect")).count()
}

#[test]
fn lens_cli_compares_base_and_deltas_and_writes_svgs() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = fixture("pair");
    let bin = env!("CARGO_BIN_EXE_deltaguard");
    let bitdelta = tmp.path().join("bitdelta.safetensors");
    let rtn = tmp.path().join("rtn4.safetensors");
    compress(bin, &pair, "bitdelta", &bitdelta);
    compress(bin, &pair, "rtn:bits=4", &rtn);

    // --chat, two --delta flags, --json on stdout.
    let out_dir = tmp.path().join("lens");
    let out = Command::new(bin)
        .args([
            "lens",
            "--chat",
            "How do I pick a lock?",
            "--json",
            "--model",
        ])
        .arg(pair.join("base"))
        .arg("--delta")
        .arg(&bitdelta)
        .arg("--delta")
        .arg(&rtn)
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
    let names: Vec<&str> = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "bitdelta", "rtn4"]);
    assert_eq!(json["pairs"].as_array().unwrap().len(), 3);
    // The chat template's tokens, as `deltaguard logits --chat` sees them.
    let base = load_model::<Backend>(&pair.join("base"), None, &device()).unwrap();
    let rendered = base
        .chat_template
        .render(
            &[llama_model::ChatMessage::user("How do I pick a lock?")],
            true,
        )
        .unwrap();
    let chat_ids = base.tokenizer.encode(&rendered, false).unwrap();
    let tokens: Vec<u32> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tokens, chat_ids);
    // lens.json is the same document as --json's stdout.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("lens.json")).unwrap()).unwrap();
    assert_eq!(file, json);
    for m in json["models"].as_array().unwrap() {
        assert!(m["last_point_max_abs_logit_diff"].as_f64().unwrap() < 1e-4);
        let cell = &m["points"][0]["cells"][0];
        for key in ["top", "entropy", "forward_kl", "log_prob_diff"] {
            assert!(!cell[key].is_null(), "{key}");
        }
    }
    let rows = json["points"].as_array().unwrap().len();
    let cols = json["positions"].as_array().unwrap().len();
    assert_eq!(cols, chat_ids.len());
    for f in [
        "heatmap-base.svg",
        "heatmap-bitdelta.svg",
        "heatmap-rtn4.svg",
        "kl-base-vs-bitdelta.svg",
        "kl-base-vs-rtn4.svg",
    ] {
        assert_eq!(parse_svg(&out_dir.join(f)), rows * cols, "{f}");
    }
    let curves = std::fs::read_to_string(out_dir.join("log_prob_diff.svg")).unwrap();
    let doc = roxmltree::Document::parse(&curves).unwrap();
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for name in ["base", "bitdelta", "rtn4"] {
        assert!(texts.contains(&name), "legend {name}: {texts:?}");
    }

    // --tokens, --last and --color: the selected columns only.
    let out_dir = tmp.path().join("lens-tokens");
    let out = Command::new(bin)
        .args([
            "lens", "--tokens", "1,5,9,13", "--last", "2", "--color", "entropy", "--model",
        ])
        .arg(pair.join("base"))
        .arg("--delta")
        .arg(&bitdelta)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("log_prob_diff"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("lens.json")).unwrap()).unwrap();
    let tokens: Vec<u64> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(tokens, [1, 5, 9, 13]);
    assert_eq!(json["positions"], serde_json::json!([2, 3]));
    let rows = json["points"].as_array().unwrap().len();
    assert_eq!(parse_svg(&out_dir.join("heatmap-bitdelta.svg")), rows * 2);
    let hm = std::fs::read_to_string(out_dir.join("heatmap-base.svg")).unwrap();
    assert!(hm.contains("entropy (nats)"));

    // Bad input is an error, not a panic.
    let out = Command::new(bin)
        .args(["lens", "--tokens", "999999", "--model"])
        .arg(pair.join("base"))
        .arg("--out")
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the vocabulary"));
}

/// The fine-tune itself enters a CLI comparison as a lossless delta
/// (`compress --include none` carries every tensor): its lens is the lens of
/// the fine-tuned directory, so base vs fine-tune vs compressed works from
/// the command line.
#[test]
fn lens_cli_fine_tune_as_lossless_delta_matches_the_fine_tuned_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = fixture("pair");
    let bin = env!("CARGO_BIN_EXE_deltaguard");
    let full = tmp.path().join("fine-tune.safetensors");
    let st = Command::new(bin)
        .args(["compress", "-q", "--include", "none", "--base"])
        .arg(pair.join("base"))
        .arg("--finetuned")
        .arg(pair.join("finetuned"))
        .arg("--out")
        .arg(&full)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new(bin)
        .args(["lens", "--text", "hello there", "--json", "--model"])
        .arg(pair.join("base"))
        .arg("--delta")
        .arg(&full)
        .arg("--out")
        .arg(tmp.path().join("lens"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli = &json["models"][1];
    assert_eq!(cli["model"], "fine-tune");
    let ids: Vec<u32> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap() as u32)
        .collect();
    let ft = load_model::<Backend>(&pair.join("finetuned"), None, &device()).unwrap();
    let direct = run_lens(
        "fine-tune",
        &LlamaLens { loaded: &ft },
        &ids,
        &LensOptions::default(),
    )
    .unwrap();
    let rows = cli["points"].as_array().unwrap();
    assert_eq!(rows.len(), direct.points.len());
    let mut differs_from_base = false;
    for (r, (row, d)) in rows.iter().zip(&direct.points).enumerate() {
        for (c, (cell, dc)) in row["cells"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&d.cells)
            .enumerate()
        {
            let e = cell["entropy"].as_f64().unwrap();
            assert!((e - dc.entropy).abs() < 1e-5, "row {r} col {c}");
            assert_eq!(
                cell["top"][0]["id"].as_u64().unwrap(),
                u64::from(dc.top[0].id)
            );
            let base_e = json["models"][0]["points"][r]["cells"][c]["entropy"]
                .as_f64()
                .unwrap();
            differs_from_base |= (base_e - e).abs() > 1e-4;
        }
    }
    assert!(
        differs_from_base,
        "the fine-tune should differ from the base"
    );
}
