//! The downstream method through every path of the library, with nothing
//! inside the workspace crates knowing about it: method string → compress
//! a checkpoint → file → inspect → apply → a model forward with the delta
//! → a study cell; plus a pipeline with it as the last stage, the direct
//! `x · Δ̂ᵀ`, and corrupted payloads.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use delta_core::{Checkpoint, DeltaPair, WriteOptions};
use delta_quant::ops::{apply_delta_file, compress_checkpoint, CompressOptions};
use delta_quant::{
    parse_method, CompressContext, Compressed, DeltaFile, DeltaFileHeader, DeltaFileWriter,
    DeltaMatrix, EntryKind, QuantError,
};
use deltaguard::backend::{device, Backend};
use deltaguard::model_io::load_model;
use deltaguard::study::cell::{
    evaluate_cell, lens_prompt, CellInfo, CellInputs, CellResult, EvalBudget,
};
use deltaguard::study::grid::{method_by_key, AttackSpec, Method, Run, Strength};
use safety_eval::AttackKind;
use ternary_method::{register, TernaryGroups};

const SPEC: &str = "ternary158:group=16";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/hf-reference/pair")
        .join(name)
}

/// Δ̂ of one row-major matrix as the method's definition says, written
/// independently of the crate's code: absmean per group, round(clamp).
fn reference(delta: &[f32], cols: usize, group: usize) -> Vec<f32> {
    let mut out = vec![0f32; delta.len()];
    for (row, o) in delta.chunks(cols).zip(out.chunks_mut(cols)) {
        for (g, o) in row.chunks(group).zip(o.chunks_mut(group)) {
            let gamma = (g.iter().map(|v| v.abs() as f64).sum::<f64>() / g.len() as f64) as f32;
            for (v, o) in g.iter().zip(o) {
                let t = if gamma == 0.0 {
                    0.0
                } else {
                    (v / gamma).clamp(-1.0, 1.0).round()
                };
                *o = gamma * t;
            }
        }
    }
    out
}

fn logits(dir: &Path, delta: Option<&Path>) -> Vec<f32> {
    let m = load_model::<Backend>(dir, delta, &device()).unwrap();
    let t: Tensor<Backend, 3> = m.model.logits(&[1, 5, 9, 42, 7, 3]).unwrap();
    t.into_data().to_vec().unwrap()
}

#[test]
fn downstream_method_through_compress_file_inspect_apply_forward_and_a_study_cell() {
    register().unwrap();
    register().unwrap(); // idempotent

    // Method string: parsed through the registry, canonical spec round trips.
    let c = parse_method(SPEC).unwrap();
    assert_eq!(c.spec(), SPEC);
    assert_eq!(
        parse_method("ternary158").unwrap().spec(),
        "ternary158:group=64"
    );
    assert!(matches!(
        parse_method("ternary158:bits=2").unwrap_err(),
        QuantError::UnknownParam { .. }
    ));
    assert!(matches!(
        parse_method("ternary158:group=0").unwrap_err(),
        QuantError::InvalidParam { .. }
    ));

    // compress a whole checkpoint pair, as `deltaguard compress` does.
    let tmp = tempfile::tempdir().unwrap();
    let delta_path = tmp.path().join("t.delta.safetensors");
    let pair = DeltaPair::open(fixture("base"), fixture("finetuned")).unwrap();
    let summary = compress_checkpoint(
        &pair,
        c.as_ref(),
        &delta_path,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap();
    assert!(!summary.compressed.is_empty(), "{summary:?}");
    assert_eq!(summary.method, SPEC);

    // file → inspect.
    let file = DeltaFile::open(&delta_path).unwrap();
    assert_eq!(file.method(), SPEC);
    assert_eq!(file.compressor().spec(), SPEC);
    let base = Checkpoint::open(fixture("base")).unwrap();
    let ft = Checkpoint::open(fixture("finetuned")).unwrap();
    let mut compressed = 0;
    for e in file.entries() {
        if e.kind != EntryKind::Compressed {
            continue;
        }
        compressed += 1;
        let [rows, cols] = [e.shape[0], e.shape[1]];
        let got = file.compressed(&e.name).unwrap();
        assert_eq!(got.kind(), "ternary158");
        let Compressed::Custom(p) = &got else {
            panic!("{}: not a downstream payload", e.name)
        };
        let t = p.downcast_ref::<TernaryGroups>().unwrap();
        assert_eq!(t.group(), 16);
        // 1.6 bits per entry + one f32 per group of 16.
        let expected_bytes = rows * cols.div_ceil(5) + 4 * rows * cols.div_ceil(16);
        assert_eq!(e.storage_bytes, expected_bytes as u64, "{}", e.name);

        let b = base.read_f32(&e.name).unwrap();
        let f = ft.read_f32(&e.name).unwrap();
        let delta: Vec<f32> = f.iter().zip(&b).map(|(f, b)| f - b).collect();
        let want = reference(&delta, cols, 16);
        assert_eq!(got.reconstruct().data(), want.as_slice(), "{}", e.name);
    }
    assert!(compressed > 0);
    let report = file.size_report();
    assert!(report.compressed_bytes > 0);

    // apply → a full checkpoint equal to base + Δ̂ (carried = fine-tune).
    let applied = apply_delta_file(
        &base,
        &file,
        &delta_path,
        tmp.path().join("applied"),
        &WriteOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap();
    let out = Checkpoint::open(&applied).unwrap();
    for e in file.entries() {
        let got = out.read_f32(&e.name).unwrap();
        let want = match e.kind {
            EntryKind::Carried => ft.read_f32(&e.name).unwrap(),
            EntryKind::Compressed => {
                let mut w = base.read_f32(&e.name).unwrap();
                let d = file.compressed(&e.name).unwrap().reconstruct();
                for (w, d) in w.iter_mut().zip(d.data()) {
                    *w += d;
                }
                w
            }
        };
        assert_eq!(got, want, "{}", e.name);
    }

    // A model forward with the delta loaded on top of the base equals the
    // applied checkpoint's, and differs from the base's.
    let with_delta = logits(&fixture("base"), Some(&delta_path));
    let merged = logits(&applied, None);
    let base_logits = logits(&fixture("base"), None);
    assert_eq!(with_delta.len(), merged.len());
    for (a, b) in with_delta.iter().zip(&merged) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    assert!(with_delta
        .iter()
        .zip(&base_logits)
        .any(|(a, b)| (a - b).abs() > 1e-4));

    // A study cell: the grid takes the method string, the cell is evaluated
    // on the base + delta model and cached like any other.
    let method = method_by_key(SPEC).unwrap();
    assert_eq!(method, Method::from_spec(SPEC).unwrap());
    assert_eq!(method.spec.as_deref(), Some(SPEC));
    let loaded = load_model::<Backend>(&fixture("base"), Some(&delta_path), &device()).unwrap();
    let attack = AttackSpec::of(AttackKind::AlignmentBreaking);
    let suite = safety_eval::builtin_suite(attack.suite, 0).unwrap();
    let budget = EvalBudget {
        harmful_n: 2,
        benign_n: 1,
        utility_n: 2,
        tenant_n: 2,
        perplexity_n: 1,
        max_new_tokens: 2,
        batch_size: 2,
        bootstrap_resamples: 50,
        seed: 0,
    };
    let run = Run {
        attack: attack.clone(),
        rate: 1.0,
        seed: 0,
    };
    let cell = CellInfo::new(&run, &Strength::epochs(1), &method);
    let prompt = lens_prompt(&suite, 0);
    let tenant = safety_eval::tenants::TenantTask::PersonaOpener.build(0);
    let payload = safety_eval::attacks::Payload::ComplianceSteps;
    let inputs = CellInputs {
        suite: &suite,
        payload: &payload,
        tenant: Some(("persona_opener", &tenant.eval)),
        lens_prompt: &prompt,
    };
    let r = evaluate_cell(&loaded, cell, &inputs, &budget, &mut |_| {}).unwrap();
    assert_eq!(r.tenant.as_ref().map(|t| t.items.len()), Some(2));
    assert_eq!(r.key().method, method.key);
    assert_eq!(r.risk.n, 2);
    assert!((0.0..=1.0).contains(&r.risk.rate));
    assert!(r.lens.log_prob_diff.iter().all(|v| v.is_finite()));
    let cache = tmp.path().join("cells");
    r.save(&cache).unwrap();
    let back = CellResult::load(&cache, r.key()).unwrap().unwrap();
    assert_eq!(back.key(), r.key());
}

#[test]
fn pipeline_direct_product_and_corrupt_payloads() {
    register().unwrap();
    let d = DeltaMatrix::new(
        7,
        23,
        (0..7 * 23)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3)
            .collect(),
    )
    .unwrap();
    let ctx = CompressContext::new("w", 0);

    // As the last stage after DARE: ternary keeps DARE's zeros (t(0) = 0),
    // so no support mask is stored; the file round trips bitwise.
    let p = parse_method("dare:p=0.5,seed=1+ternary158:group=8").unwrap();
    let c = p.compress_matrix(&d, &ctx).unwrap();
    assert_eq!(c.kind(), "ternary158");
    let dropped = parse_method("dare:p=0.5,seed=1")
        .unwrap()
        .compress_matrix(&d, &ctx)
        .unwrap()
        .reconstruct();
    let rec = c.reconstruct();
    let zeros = dropped.data().iter().filter(|v| **v == 0.0).count();
    assert!(zeros > 0);
    for (a, b) in dropped.data().iter().zip(rec.data()) {
        if *a == 0.0 {
            assert_eq!(*b, 0.0);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.safetensors");
    let mut w = DeltaFileWriter::create(&path, DeltaFileHeader::new(p.as_ref(), "fp")).unwrap();
    w.add_compressed("w", &c).unwrap();
    w.finish().unwrap();
    let f = DeltaFile::open(&path).unwrap();
    assert_eq!(f.compressed("w").unwrap(), c);
    assert_eq!(f.compressed("w").unwrap().reconstruct(), c.reconstruct());

    // x · Δ̂ᵀ: the payload's own product equals the dense one.
    let t = parse_method("ternary158:group=8")
        .unwrap()
        .compress_matrix(&d, &ctx)
        .unwrap();
    let n = 3;
    let x: Vec<f32> = (0..n * 23).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut y = vec![1.0f32; n * 7];
    t.matmul_t_add(&x, n, &mut y).unwrap();
    let dense = t.reconstruct();
    for i in 0..n {
        for r in 0..7 {
            let want = 1.0
                + (0..23)
                    .map(|j| x[i * 23 + j] * dense.data()[r * 23 + j])
                    .sum::<f32>();
            assert!(
                (y[i * 7 + r] - want).abs() < 1e-5,
                "{} vs {want}",
                y[i * 7 + r]
            );
        }
    }
    assert!(matches!(
        t.matmul_t_add(&x[1..], n, &mut y).unwrap_err(),
        QuantError::Shape(_)
    ));

    // Corrupt parts are typed errors naming the payload.
    let good = t.to_parts();
    let mut bad = good.clone();
    bad.payloads
        .iter_mut()
        .find(|(n, _)| n == "codes")
        .unwrap()
        .1
        .data[0] = 250;
    match Compressed::from_parts("w", &bad).unwrap_err() {
        QuantError::BadPayload { payload, .. } => assert_eq!(payload, "codes"),
        e => panic!("{e}"),
    }
    let mut bad = good.clone();
    let scales = &mut bad
        .payloads
        .iter_mut()
        .find(|(n, _)| n == "scales")
        .unwrap()
        .1;
    scales.data[..4].copy_from_slice(&(-1.0f32).to_le_bytes());
    match Compressed::from_parts("w", &bad).unwrap_err() {
        QuantError::BadPayload { payload, .. } => assert_eq!(payload, "scales"),
        e => panic!("{e}"),
    }
    let mut bad = good.clone();
    bad.payloads.pop();
    assert!(matches!(
        Compressed::from_parts("w", &bad).unwrap_err(),
        QuantError::MissingPayload { .. }
    ));
    let mut bad = good;
    bad.encoding["group"] = serde_json::json!(0);
    assert!(matches!(
        Compressed::from_parts("w", &bad).unwrap_err(),
        QuantError::Metadata(_)
    ));
}
