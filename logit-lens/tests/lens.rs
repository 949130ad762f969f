//! The lens against a pure-Rust reference model and a hand-computed case.

mod common;

use common::RefModel;
use logit_lens::{
    compare, run_lens, stats, Comparison, ForwardTrace, LensError, LensModel, LensOptions,
    PointFilter, Positions, ProbeHidden, ProbePoint, TokenContrast, TokenSet,
};

const TOKENS: [u32; 6] = [3, 17, 5, 0, 29, 11];

fn contrast() -> TokenContrast {
    TokenContrast::new(
        TokenSet::from_ids("refusal", [1, 2]),
        TokenSet::from_ids("compliance", [7]),
    )
    .unwrap()
}

#[test]
fn last_layer_lens_equals_model_logits() {
    for tied in [true, false] {
        let m = RefModel::random(1, 32, 16, 3, tied);
        let trace = m.trace(&TOKENS).unwrap();
        let last = trace.points.last().unwrap();
        assert_eq!(last.point, ProbePoint::Post { layer: 2 });
        let lens = m.decode(&last.hidden, TOKENS.len()).unwrap();
        for (a, b) in lens.iter().zip(&trace.logits) {
            assert!((a - b).abs() < 1e-4, "tied={tied}: {a} vs {b}");
        }
        // The report's own self-check and its distributions agree too.
        let r = run_lens("m", &m, &TOKENS, &LensOptions::default()).unwrap();
        assert!(r.last_point_max_abs_logit_diff.unwrap() < 1e-4);
        let last_row = r.points.last().unwrap();
        for (cell, out) in last_row.cells.iter().zip(&r.output) {
            assert!(cell.forward_kl < 1e-9, "forward_kl {}", cell.forward_kl);
            assert_eq!(cell.top[0].id, out.top[0].id);
            assert!((cell.entropy - out.entropy).abs() < 1e-6);
        }
    }
}

/// Two blocks on 2-d states whose updates are constant vectors, final RMSNorm
/// with weight 1 and eps 0, untied unembedding rows (1,0), (0,1), (−1,−1).
struct HandModel;

const HAND_EMB: [[f32; 2]; 2] = [[1.0, 1.0], [2.0, 0.0]];
const HAND_UNEMB: [[f32; 2]; 3] = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]];

impl LensModel for HandModel {
    fn hidden_size(&self) -> usize {
        2
    }
    fn vocab_size(&self) -> usize {
        3
    }
    fn trace(&self, tokens: &[u32]) -> logit_lens::Result<ForwardTrace> {
        let emb: Vec<f32> = tokens.iter().flat_map(|&t| HAND_EMB[t as usize]).collect();
        let add = |h: &[f32], v: [f32; 2]| -> Vec<f32> {
            h.chunks(2)
                .flat_map(|r| [r[0] + v[0], r[1] + v[1]])
                .collect()
        };
        let mid0 = add(&emb, [1.0, -1.0]);
        let post0 = add(&mid0, [0.0, 2.0]);
        let mid1 = add(&post0, [-2.0, 0.0]);
        let post1: Vec<f32> = mid1.iter().map(|x| 3.0 * x).collect(); // scaling: invisible to RMSNorm
        let logits = self.decode(&post1, tokens.len())?;
        let p = |point, hidden| ProbeHidden { point, hidden };
        Ok(ForwardTrace {
            n_positions: tokens.len(),
            points: vec![
                p(ProbePoint::Embedding, emb),
                p(ProbePoint::Mid { layer: 0 }, mid0),
                p(ProbePoint::Post { layer: 0 }, post0),
                p(ProbePoint::Mid { layer: 1 }, mid1),
                p(ProbePoint::Post { layer: 1 }, post1),
            ],
            logits,
        })
    }
    fn decode(&self, hidden: &[f32], _n: usize) -> logit_lens::Result<Vec<f32>> {
        Ok(hidden
            .chunks(2)
            .flat_map(|h| {
                let rms = ((h[0] * h[0] + h[1] * h[1]) / 2.0).sqrt();
                HAND_UNEMB.map(|u| (u[0] * h[0] + u[1] * h[1]) / rms)
            })
            .collect())
    }
    fn token_text(&self, id: u32) -> String {
        ["A", "B", "C"][id as usize].into()
    }
}

fn softmax3(z: [f64; 3]) -> [f64; 3] {
    let s: f64 = z.iter().map(|x| x.exp()).sum();
    z.map(|x| x.exp() / s)
}

#[test]
fn hand_computed_two_layer_case() {
    let r2 = 2f64.sqrt();
    let r5 = 5f64.sqrt();
    // Lens logits by hand: rows embed, L0.mid, L0.post, L1.mid, L1.post; two positions.
    // Position 0 (token 0 = (1,1)):  (1,1) → (2,0) → (2,2) → (0,2) → (0,6)
    // Position 1 (token 1 = (2,0)):  (2,0) → (3,−1) → (3,1) → (1,1) → (3,3)
    // normed = h / rms(h); logits = (n0, n1, −n0 − n1).
    let expected: [[[f64; 3]; 2]; 5] = [
        [[1.0, 1.0, -2.0], [r2, 0.0, -r2]],
        [[r2, 0.0, -r2], [3.0 / r5, -1.0 / r5, -2.0 / r5]],
        [[1.0, 1.0, -2.0], [3.0 / r5, 1.0 / r5, -4.0 / r5]],
        [[0.0, r2, -r2], [1.0, 1.0, -2.0]],
        [[0.0, r2, -r2], [1.0, 1.0, -2.0]],
    ];
    let opts = LensOptions {
        top_k: 3,
        targets: vec![2],
        contrast: Some(
            TokenContrast::new(TokenSet::from_ids("a", [0]), TokenSet::from_ids("b", [1])).unwrap(),
        ),
        ..LensOptions::default()
    };
    let r = run_lens("hand", &HandModel, &[0, 1], &opts).unwrap();
    assert_eq!(r.points.len(), 5);
    let labels: Vec<&str> = r.points.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["embed", "L0.mid", "L0.post", "L1.mid", "L1.post"]);
    for (row, exp_row) in r.points.iter().zip(&expected) {
        for (pos, cell) in row.cells.iter().enumerate() {
            let z = exp_row[pos];
            let p = softmax3(z);
            let fin = softmax3(expected[4][pos]);
            // Probabilities of all three tokens (top_k = 3 lists them all).
            for t in &cell.top {
                assert!(
                    (t.prob - p[t.id as usize]).abs() < 1e-6,
                    "{} pos {pos}",
                    row.label
                );
                assert!((t.log_prob - p[t.id as usize].ln()).abs() < 1e-5);
            }
            let h: f64 = -p.iter().map(|q| q * q.ln()).sum::<f64>();
            assert!((cell.entropy - h).abs() < 1e-6);
            let kl: f64 = (0..3).map(|i| fin[i] * (fin[i] / p[i]).ln()).sum();
            assert!(
                (cell.forward_kl - kl).abs() < 1e-6,
                "{} pos {pos}",
                row.label
            );
            // log_prob_diff of {0} vs {1} is just z0 − z1: the normaliser cancels.
            assert!((cell.log_prob_diff.unwrap() - (z[0] - z[1])).abs() < 1e-5);
            // rank of token 2: how many of z0, z1 exceed z2.
            let rank = (0..2).filter(|&i| z[i] > z[2]).count();
            assert_eq!(cell.targets[0].rank, rank);
            assert!((cell.targets[0].prob - p[2]).abs() < 1e-6);
        }
    }
    // Specific values: position 1 after block 0's attention predicts token 0 ("A").
    assert_eq!(r.points[1].cells[1].top[0].text, "A");
    assert!((r.points[1].cells[1].log_prob_diff.unwrap() - 4.0 / r5).abs() < 1e-5);
    assert!(r.last_point_max_abs_logit_diff.unwrap() < 1e-6);
}

#[test]
fn kl_of_a_model_with_itself_is_zero() {
    let m = RefModel::random(2, 40, 12, 2, false);
    let same = RefModel::random(2, 40, 12, 2, false);
    let c = compare(&[("a", &m), ("b", &same)], &TOKENS, &LensOptions::default()).unwrap();
    let pair = &c.pairs[0];
    for cell in pair
        .points
        .iter()
        .flat_map(|p| &p.cells)
        .chain(&pair.output)
    {
        assert!(cell.kl_divergence.abs() < 1e-12);
        assert!(cell.js_divergence.abs() < 1e-12);
        assert!(cell.total_variation.abs() < 1e-12);
    }
}

#[test]
fn pair_divergences_js_and_tv_are_symmetric_kl_is_not() {
    let base = RefModel::random(9, 40, 12, 2, true);
    let ft = base.perturbed(10, 0.8);
    let o = LensOptions::default();
    let ab = compare(&[("base", &base), ("ft", &ft)], &TOKENS, &o).unwrap();
    let ba = compare(&[("ft", &ft), ("base", &base)], &TOKENS, &o).unwrap();
    let (pab, pba) = (&ab.pairs[0], &ba.pairs[0]);
    assert_eq!((pab.a.as_str(), pba.a.as_str()), ("base", "ft"));
    let mut kl_differs = false;
    for (ra, rb) in pab.points.iter().zip(&pba.points) {
        for (x, y) in ra.cells.iter().zip(&rb.cells) {
            assert!((x.js_divergence - y.js_divergence).abs() < 1e-12);
            assert!((x.total_variation - y.total_variation).abs() < 1e-12);
            assert!(x.js_divergence <= std::f64::consts::LN_2);
            // `perturbed` keeps the embeddings: identical there, different after.
            if ra.point == ProbePoint::Embedding {
                assert!(x.js_divergence < 1e-12 && x.kl_divergence < 1e-12);
            } else {
                assert!(
                    x.js_divergence > 0.0,
                    "{}: different models, JS > 0",
                    ra.label
                );
            }
            kl_differs |= (x.kl_divergence - y.kl_divergence).abs() > 1e-6;
            // JS ≤ ¼ (KL(P‖Q) + KL(Q‖P)) (convexity of KL in its second argument).
            assert!(x.js_divergence <= 0.25 * (x.kl_divergence + y.kl_divergence) + 1e-12);
        }
    }
    assert!(kl_differs, "KL(a‖b) and KL(b‖a) should differ somewhere");
}

#[test]
fn compare_base_finetune_compressed() {
    let base = RefModel::random(3, 48, 16, 3, true);
    let ft = base.perturbed(4, 0.5);
    let comp = base.perturbed(4, 0.1);
    let opts = LensOptions {
        targets: vec![1, 7],
        contrast: Some(contrast()),
        top_k: 3,
        ..LensOptions::default()
    };
    let models: [(&str, &dyn LensModel); 3] =
        [("base", &base), ("fine-tune", &ft), ("compressed", &comp)];
    let c = compare(&models, &TOKENS, &opts).unwrap();
    assert_eq!(c.models.len(), 3);
    assert_eq!(c.points.len(), 7);
    assert_eq!(c.positions, (0..6).collect::<Vec<_>>());
    let names: Vec<(&str, &str)> = c
        .pairs
        .iter()
        .map(|p| (p.a.as_str(), p.b.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("base", "fine-tune"),
            ("base", "compressed"),
            ("fine-tune", "compressed")
        ]
    );
    // The embeddings are untouched, so every model agrees there.
    for p in &c.pairs {
        for cell in &p.points[0].cells {
            assert!(cell.js_divergence < 1e-12);
        }
    }
    // A bigger perturbation diverges more at the output (on average).
    let mean_js = |p: &logit_lens::PairDivergence| {
        p.output.iter().map(|x| x.js_divergence).sum::<f64>() / p.output.len() as f64
    };
    assert!(
        mean_js(c.pair("base", "fine-tune").unwrap())
            > mean_js(c.pair("base", "compressed").unwrap())
    );
    // Curves at the last position, and pairwise divergences within bounds.
    assert_eq!(c.curves.position, 5);
    assert_eq!(c.curves.models.len(), 3);
    assert_eq!(c.curves.models[1].log_prob_diff.len(), 7);
    assert!(c
        .curves
        .models
        .iter()
        .all(|m| m.log_prob_diff.iter().all(|v| v.is_some())));
    for p in c
        .pairs
        .iter()
        .flat_map(|p| p.points.iter().flat_map(|r| &r.cells))
    {
        assert!(p.js_divergence <= std::f64::consts::LN_2 && p.total_variation <= 1.0);
        assert!(p.kl_divergence >= 0.0);
    }
    // Per-model reports equal single-model runs.
    let single = run_lens("fine-tune", &ft, &TOKENS, &opts).unwrap();
    assert_eq!(single, c.models[1]);
}

#[test]
fn batching_and_position_selection_do_not_change_results() {
    let m = RefModel::random(5, 30, 8, 2, false);
    let opts = LensOptions {
        contrast: Some(contrast()),
        targets: vec![4],
        ..LensOptions::default()
    };
    let full = run_lens("m", &m, &TOKENS, &opts).unwrap();
    let one = run_lens(
        "m",
        &m,
        &TOKENS,
        &LensOptions {
            batch_rows: 1,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(full, one);
    let last2 = run_lens(
        "m",
        &m,
        &TOKENS,
        &LensOptions {
            positions: Positions::Last(2),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(last2.positions, vec![4, 5]);
    for (a, b) in last2.points.iter().zip(&full.points) {
        assert_eq!(a.cells[..], b.cells[4..]);
    }
    let list = run_lens(
        "m",
        &m,
        &TOKENS,
        &LensOptions {
            positions: Positions::List(vec![3, 0]),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(list.points[2].cells[1], full.points[2].cells[0]);
    let posts = run_lens(
        "m",
        &m,
        &TOKENS,
        &LensOptions {
            points: PointFilter::BlockOutputs,
            ..opts
        },
    )
    .unwrap();
    let labels: Vec<&str> = posts.points.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["embed", "L0.post", "L1.post"]);
    assert!(posts.last_point_max_abs_logit_diff.is_some());
}

#[test]
fn json_round_trip() {
    let base = RefModel::random(6, 20, 8, 1, true);
    let ft = base.perturbed(7, 0.3);
    let opts = LensOptions {
        contrast: Some(contrast()),
        targets: vec![2],
        ..LensOptions::default()
    };
    let c = compare(&[("base", &base), ("ft", &ft)], &TOKENS[..3], &opts).unwrap();
    let json = c.to_json().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema"], "deltaguard.logit-lens.v1");
    assert_eq!(
        v["points"][1],
        serde_json::json!({"kind": "mid", "layer": 0})
    );
    for key in ["top", "entropy", "forward_kl", "targets", "log_prob_diff"] {
        assert!(
            v["models"][0]["points"][0]["cells"][0].get(key).is_some(),
            "{key}"
        );
    }
    assert!(v["models"][0]["points"][0]["cells"][0]["targets"][0]
        .get("rank")
        .is_some());
    for key in ["kl_divergence", "js_divergence", "total_variation"] {
        assert!(
            v["pairs"][0]["points"][0]["cells"][0].get(key).is_some(),
            "{key}"
        );
    }
    let back = Comparison::from_json(&json).unwrap();
    assert_eq!(back.models.len(), 2);
    assert_eq!(back.positions, c.positions);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lens.json");
    c.write_json(&path).unwrap();
    assert!(Comparison::from_json(&std::fs::read_to_string(&path).unwrap()).is_ok());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    let bad = json.replace("deltaguard.logit-lens.v1", "other");
    assert!(Comparison::from_json(&bad).is_err());
}

#[test]
fn bad_inputs_are_refused() {
    let m = RefModel::random(8, 20, 8, 1, true);
    let other = RefModel::random(8, 21, 8, 1, true);
    let o = LensOptions::default();
    assert!(matches!(
        run_lens("m", &m, &[], &o),
        Err(LensError::Input(_))
    ));
    assert!(matches!(
        run_lens("m", &m, &[20], &o),
        Err(LensError::Input(_))
    ));
    let bad_target = LensOptions {
        targets: vec![99],
        ..LensOptions::default()
    };
    assert!(matches!(
        run_lens("m", &m, &[1], &bad_target),
        Err(LensError::Input(_))
    ));
    let bad_pos = LensOptions {
        positions: Positions::List(vec![5]),
        ..LensOptions::default()
    };
    assert!(matches!(
        run_lens("m", &m, &[1, 2], &bad_pos),
        Err(LensError::Input(_))
    ));
    assert!(matches!(
        compare(&[("a", &m), ("b", &other)], &[1], &o),
        Err(LensError::Mismatch(_))
    ));
    assert!(matches!(
        compare(&[("a", &m), ("a", &m)], &[1], &o),
        Err(LensError::Input(_))
    ));
}

#[test]
fn malformed_traces_are_refused() {
    struct Broken(usize);
    impl LensModel for Broken {
        fn hidden_size(&self) -> usize {
            2
        }
        fn vocab_size(&self) -> usize {
            3
        }
        fn trace(&self, tokens: &[u32]) -> logit_lens::Result<ForwardTrace> {
            let n = tokens.len();
            let mut t = HandModel.trace(tokens)?;
            match self.0 {
                0 => t.points.swap(1, 2),
                1 => t.points[2].hidden.pop().map(|_| ()).unwrap(),
                2 => t.logits.truncate(n),
                3 => t.points[1].hidden[0] = f32::NAN,
                _ => return Err(LensError::model(std::io::Error::other("boom"))),
            }
            Ok(t)
        }
        fn decode(&self, hidden: &[f32], n: usize) -> logit_lens::Result<Vec<f32>> {
            HandModel.decode(hidden, n)
        }
        fn token_text(&self, _: u32) -> String {
            String::new()
        }
    }
    let o = LensOptions::default();
    for (k, want) in ["Shape", "Shape", "Shape", "NonFinite", "Model"]
        .iter()
        .enumerate()
    {
        let e = run_lens("b", &Broken(k), &[0, 1], &o).unwrap_err();
        assert!(format!("{e:?}").starts_with(want), "case {k}: {e:?}");
    }
}

#[test]
fn refusal_contrast_through_a_tokenizer_closure() {
    // A toy tokenizer over the reference model's vocabulary.
    let vocab = ["I", "▁I", "Sorry", "▁Sure", "Here", "▁Here", "x"];
    let resolve = |w: &str| -> Vec<u32> {
        let piece = w.replace(' ', "▁");
        vocab
            .iter()
            .position(|v| *v == piece)
            .map(|i| vec![i as u32])
            .unwrap_or_default()
    };
    let c = TokenContrast::refusal_vs_compliance(&resolve).unwrap();
    assert_eq!(c.target.ids, vec![0, 1, 2]);
    assert_eq!(c.anti.ids, vec![3, 4, 5]);
    let lp = stats::log_softmax(&[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 5.0]);
    assert!((c.log_prob_diff(&lp).unwrap() - 1.0).abs() < 1e-12);
}
