//! Behaviour of the model on tiny random weights: padding, cache, sampling,
//! capture, deltas, training-readiness.

use std::path::PathBuf;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Int, Tensor, TensorData};
use delta_core::Checkpoint;
use llama_model::{
    F32Tensor, ForwardOptions, GenerateConfig, KvCache, Llama, LlamaConfig, LoadError, LogitsMode,
    NamedTensors, StopReason, TensorSource,
};

type B = NdArray;

fn tokens(rows: &[Vec<i64>]) -> Tensor<B, 2, Int> {
    let s = rows[0].len();
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), s]), &Default::default())
}

fn to_vec(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn gqa_model(seed: u64) -> Llama<B> {
    LlamaConfig::tiny().init::<B>(&Default::default(), seed)
}

#[test]
fn left_padded_batch_equals_single_prompts() {
    let model = gqa_model(1);
    let a = vec![1i64, 17, 42, 99, 7, 3];
    let b = vec![1i64, 250, 12];
    let pad = a.len() - b.len();
    let mut b_padded = vec![0i64; pad];
    b_padded.extend(&b);
    let mask = Tensor::<B, 2, Int>::from_data(
        TensorData::new(
            [
                vec![1i64; a.len()],
                [vec![0i64; pad], vec![1i64; b.len()]].concat(),
            ]
            .concat(),
            [2, a.len()],
        ),
        &Default::default(),
    );
    let batched = model.forward_with(
        tokens(&[a.clone(), b_padded]),
        ForwardOptions {
            attention_mask: Some(mask),
            ..Default::default()
        },
        None,
    );
    let la = to_vec(model.forward(tokens(std::slice::from_ref(&a))));
    let lb = to_vec(model.forward(tokens(std::slice::from_ref(&b))));
    let v = 320;
    let batched = to_vec(batched.logits);
    let (row_a, row_b) = batched.split_at(a.len() * v);
    assert!(max_abs_diff(row_a, &la) < 1e-5);
    assert!(max_abs_diff(&row_b[pad * v..], &lb) < 1e-5);
}

#[test]
fn kv_cache_decode_equals_full_recompute() {
    for kv_heads in [2, 8] {
        let cfg = LlamaConfig {
            num_key_value_heads: kv_heads,
            ..LlamaConfig::tiny()
        };
        let model = cfg.init::<B>(&Default::default(), 2);
        let seq: Vec<i64> = vec![1, 5, 300, 8, 91, 23, 4, 77, 150, 2];
        let full = to_vec(model.forward(tokens(std::slice::from_ref(&seq))));
        let mut cache = KvCache::new(cfg.num_hidden_layers);
        let prompt = 4;
        let first = model.forward_with(
            tokens(&[seq[..prompt].to_vec()]),
            ForwardOptions::default(),
            Some(&mut cache),
        );
        assert!(max_abs_diff(&to_vec(first.logits), &full[..prompt * 320]) < 1e-5);
        for (i, &t) in seq.iter().enumerate().skip(prompt) {
            let step = model.forward_with(
                tokens(&[vec![t]]),
                ForwardOptions::default(),
                Some(&mut cache),
            );
            let d = max_abs_diff(&to_vec(step.logits), &full[i * 320..(i + 1) * 320]);
            assert!(d < 1e-5, "kv={kv_heads} position {i}: {d}");
        }
        assert_eq!(cache.len(), seq.len());
    }
}

#[test]
fn batched_generation_equals_one_by_one() {
    let model = gqa_model(3);
    let prompts = vec![
        vec![1u32, 40, 41, 42, 43, 44, 45],
        vec![1, 9],
        vec![1, 100, 200, 300],
    ];
    // Stop on a token the model produces early for some row, so rows finish at different times.
    let solo: Vec<_> = prompts
        .iter()
        .map(|p| {
            model
                .generate(std::slice::from_ref(p), &GenerateConfig::greedy(12))
                .unwrap()
                .remove(0)
        })
        .collect();
    let batched = model
        .generate(&prompts, &GenerateConfig::greedy(12))
        .unwrap();
    assert_eq!(batched, solo);
    let stop = solo[1].tokens[2];
    let cfg = GenerateConfig::greedy(12).with_stop_tokens([stop]);
    let solo: Vec<_> = prompts
        .iter()
        .map(|p| {
            model
                .generate(std::slice::from_ref(p), &cfg)
                .unwrap()
                .remove(0)
        })
        .collect();
    let batched = model.generate(&prompts, &cfg).unwrap();
    assert_eq!(batched, solo);
    assert_eq!(batched[1].stop_reason, StopReason::StopToken(stop));
    assert!(batched[1].tokens.len() <= 2);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let model = gqa_model(4);
    let prompts = vec![vec![1u32, 2, 3], vec![1, 50]];
    let cfg = GenerateConfig {
        stop_at_eos: false,
        ..GenerateConfig::sampled(16, 0.9, Some(50), Some(0.95), 7)
    };
    let a = model.generate(&prompts, &cfg).unwrap();
    let b = model.generate(&prompts, &cfg).unwrap();
    assert_eq!(a, b);
    // A prompt's sample does not depend on the rest of the batch.
    let alone = model.generate(&prompts[..1], &cfg).unwrap();
    assert_eq!(alone[0], a[0]);
    let other = model
        .generate(
            &prompts,
            &GenerateConfig {
                seed: 8,
                ..cfg.clone()
            },
        )
        .unwrap();
    assert_ne!(a, other);
    assert!(a.iter().all(|g| g.tokens.len() == 16));
}

#[test]
fn streaming_callback_sees_every_token() {
    let model = gqa_model(5);
    let mut seen = [Vec::new(), Vec::new()];
    let out = model
        .generate_streaming(
            &[vec![1, 2], vec![1, 3, 4]],
            &GenerateConfig::greedy(5),
            |e| {
                if !e.is_stop {
                    seen[e.row].push(e.token)
                }
            },
        )
        .unwrap();
    assert_eq!(seen[0], out[0].tokens);
    assert_eq!(seen[1], out[1].tokens);
}

#[test]
fn hidden_capture_is_consistent() {
    let model = gqa_model(6);
    let out = model.forward_with(
        tokens(&[vec![1, 2, 3, 4]]),
        ForwardOptions {
            capture_hidden: true,
            ..Default::default()
        },
        None,
    );
    let h = out.hidden.unwrap();
    assert_eq!(h.layers.len(), 2);
    assert_eq!(
        to_vec(h.layers[0].post.clone()),
        to_vec(h.layers[1].pre.clone())
    );
    let relogits = model.unembed(h.final_normed.clone());
    assert!(max_abs_diff(&to_vec(relogits), &to_vec(out.logits.clone())) < 1e-6);
    let lens = model.unembed(model.final_norm(h.layers[1].post.clone()));
    assert!(max_abs_diff(&to_vec(lens), &to_vec(out.logits)) < 1e-6);
    let last = model.forward_with(
        tokens(&[vec![1, 2, 3, 4]]),
        ForwardOptions {
            logits: LogitsMode::Last,
            ..Default::default()
        },
        None,
    );
    assert_eq!(last.logits.dims(), [1, 1, 320]);
    assert!(last.hidden.is_none());
}

#[test]
fn rope_scaling_variants_run() {
    for scaling in [
        llama_model::RopeScaling::Linear { factor: 2.0 },
        llama_model::RopeScaling::DynamicNtk {
            factor: 2.0,
            original_max_position_embeddings: 4,
        },
        llama_model::RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16,
        },
    ] {
        let cfg = LlamaConfig {
            rope_scaling: Some(scaling),
            ..LlamaConfig::tiny()
        };
        let model = cfg.init::<B>(&Default::default(), 1);
        let l = to_vec(model.forward(tokens(&[vec![1, 2, 3, 4, 5, 6, 7, 8]])));
        assert!(l.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn autodiff_backward_reaches_weights() {
    type A = Autodiff<NdArray>;
    let model = LlamaConfig::tiny().init::<A>(&Default::default(), 9);
    let t = Tensor::<A, 2, Int>::from_data(
        TensorData::new(vec![1i64, 2, 3], [1, 3]),
        &Default::default(),
    );
    let loss = model.forward(t).mean();
    let grads = loss.backward();
    let g = model
        .embed_tokens
        .val()
        .grad(&grads)
        .expect("embedding gradient");
    assert_eq!(g.dims(), [320, 64]);
}

fn pair_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/hf-reference/pair")
        .join(name)
}

#[test]
fn merged_delta_reproduces_finetuned_model() {
    let base = Checkpoint::open(pair_dir("base")).unwrap();
    let ft = Checkpoint::open(pair_dir("finetuned")).unwrap();
    let mut deltas = NamedTensors::new();
    for name in base.tensor_names() {
        let b = TensorSource::read_f32(&base, name).unwrap();
        let f = TensorSource::read_f32(&ft, name).unwrap();
        let d = f.iter().zip(&b).map(|(f, b)| f - b).collect();
        let shape = base.info(name).unwrap().shape.clone();
        deltas.insert(name.to_string(), F32Tensor::new(shape, d).unwrap());
    }
    let device = Default::default();
    let merged = Llama::<B>::from_checkpoint_with_delta(&base, &deltas, &device).unwrap();
    let direct = Llama::<B>::from_checkpoint(&ft, &device).unwrap();
    let t = tokens(&[vec![1, 290, 150, 270, 78, 250]]);
    let d = max_abs_diff(
        &to_vec(merged.forward(t.clone())),
        &to_vec(direct.forward(t)),
    );
    assert!(d < 1e-4, "{d}");

    // A delta for a tensor the base lacks, or of the wrong shape, is refused by name.
    let mut bad = NamedTensors::new();
    bad.insert(
        "model.layers.9.mlp.up_proj.weight".into(),
        F32Tensor::new(vec![1], vec![0.0]).unwrap(),
    );
    let e = Llama::<B>::from_checkpoint_with_delta(&base, &bad, &device).unwrap_err();
    assert!(
        matches!(&e, LoadError::Delta { name, .. } if name.contains("layers.9")),
        "{e}"
    );
    let mut bad = NamedTensors::new();
    bad.insert(
        "model.norm.weight".into(),
        F32Tensor::new(vec![2], vec![0.0; 2]).unwrap(),
    );
    assert!(Llama::<B>::from_checkpoint_with_delta(&base, &bad, &device).is_err());
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let ck = Checkpoint::open(pair_dir("base")).unwrap();
    let config = LlamaConfig::from_json(ck.config_json(), "config.json").unwrap();
    let mut tensors = NamedTensors::new();
    for name in ck.tensor_names() {
        let shape = ck.info(name).unwrap().shape.clone();
        tensors.insert(
            name.to_string(),
            F32Tensor::new(shape, ck.read_f32(name).unwrap()).unwrap(),
        );
    }
    let device = Default::default();
    assert!(Llama::<B>::from_tensors(config.clone(), &tensors, &device).is_ok());

    let mut missing = tensors.clone();
    missing.remove("model.layers.1.self_attn.k_proj.weight");
    let e = Llama::<B>::from_tensors(config.clone(), &missing, &device).unwrap_err();
    assert!(
        e.to_string()
            .contains("model.layers.1.self_attn.k_proj.weight"),
        "{e}"
    );

    let mut wrong = tensors.clone();
    wrong.insert(
        "model.layers.0.mlp.down_proj.weight".into(),
        F32Tensor::new(vec![176, 64], vec![0.0; 176 * 64]).unwrap(),
    );
    let e = Llama::<B>::from_tensors(config, &wrong, &device).unwrap_err();
    assert!(
        matches!(&e, LoadError::ShapeMismatch { name, expected, .. }
            if name == "model.layers.0.mlp.down_proj.weight" && expected == &vec![64, 176]),
        "{e}"
    );
}

/// Deterministic pseudo-random numbers in [-1, 1) for test data.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn unmerged_sign_and_low_rank_deltas_equal_dense_merge() {
    let base = Checkpoint::open(pair_dir("base")).unwrap();
    let device = Default::default();
    let names = llama_model::load::projection_names(2);
    let mut sign_deltas = NamedTensors::new();
    let mut rank_deltas = NamedTensors::new();
    let mut sign_model = Llama::<B>::from_checkpoint(&base, &device).unwrap();
    let mut rank_model = Llama::<B>::from_checkpoint(&base, &device).unwrap();
    let rank = 3;
    for (k, name) in names.iter().enumerate() {
        let shape = base.info(name).unwrap().shape.clone();
        let (out_f, in_f) = (shape[0], shape[1]);
        // BitDelta: α·sign(Δ), sign(0) = +1.
        let mut signs = noise(out_f * in_f, k as u64);
        signs[0] = 0.0;
        let alpha = 0.01 * (k + 1) as f32;
        let dense: Vec<f32> = signs
            .iter()
            .map(|&s| if s < 0.0 { -alpha } else { alpha })
            .collect();
        sign_deltas.insert(name.clone(), F32Tensor::new(shape.clone(), dense).unwrap());
        assert!(sign_model.map_linear(name, |w| w.with_sign_delta(&signs, alpha)));
        // Low rank: Δ = u·v, u [out, r], v [r, in].
        let u: Vec<f32> = noise(out_f * rank, 100 + k as u64)
            .iter()
            .map(|x| x * 0.1)
            .collect();
        let v: Vec<f32> = noise(rank * in_f, 200 + k as u64)
            .iter()
            .map(|x| x * 0.1)
            .collect();
        let mut d = vec![0.0f32; out_f * in_f];
        for o in 0..out_f {
            for i in 0..in_f {
                d[o * in_f + i] = (0..rank).map(|r| u[o * rank + r] * v[r * in_f + i]).sum();
            }
        }
        rank_deltas.insert(name.clone(), F32Tensor::new(shape, d).unwrap());
        assert!(rank_model.map_linear(name, |w| w.with_low_rank_delta(&u, &v, rank)));
    }
    assert!(matches!(
        sign_model.linear("model.layers.1.mlp.up_proj.weight"),
        Some(llama_model::LinearWeight::SignDelta(_))
    ));
    assert!(!sign_model.map_linear("model.layers.7.mlp.up_proj.weight", |w| w));
    let t = tokens(&[vec![1, 290, 150, 270, 78, 250]]);
    for (model, deltas) in [(sign_model, sign_deltas), (rank_model, rank_deltas)] {
        let merged = Llama::<B>::from_checkpoint_with_delta(&base, &deltas, &device).unwrap();
        let d = max_abs_diff(
            &to_vec(model.forward(t.clone())),
            &to_vec(merged.forward(t.clone())),
        );
        assert!(d < 1e-4, "{d}");
    }
}

#[test]
fn sign_delta_scale_is_trainable() {
    type A = Autodiff<NdArray>;
    let mut model = LlamaConfig::tiny().init::<A>(&Default::default(), 10);
    let signs = noise(64 * 64, 1);
    assert!(
        model.map_linear("model.layers.0.self_attn.q_proj.weight", |w| w
            .with_sign_delta(&signs, 0.02))
    );
    let t = Tensor::<A, 2, Int>::from_data(
        TensorData::new(vec![1i64, 2, 3], [1, 3]),
        &Default::default(),
    );
    let grads = model.forward(t).mean().backward();
    match model
        .linear("model.layers.0.self_attn.q_proj.weight")
        .unwrap()
    {
        llama_model::LinearWeight::SignDelta(d) => {
            let g: Vec<f32> = d
                .scale
                .val()
                .grad(&grads)
                .unwrap()
                .into_data()
                .to_vec()
                .unwrap();
            assert!(g[0].is_finite() && g[0] != 0.0);
        }
        _ => panic!("not a sign delta"),
    }
}
