//! BitDelta scale distillation on a tiny model: a base and a "fine-tune"
//! (base + a structured perturbation) written as HF directories, the delta
//! compressed through delta-quant's whole-checkpoint API, then healed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::tensor::{Int, Tensor, TensorData};
use delta_core::{Checkpoint, CheckpointWriter, DType, DeltaPair, WriteOptions};
use delta_quant::ops::{compress_checkpoint, CompressOptions};
use delta_quant::{parse_method, Compressed, DeltaFile, EntryKind};
use llama_model::heal::{
    delta_logit_mse, freeze_for_healing, heal, heal_delta_file, logit_mse, BaseAndDelta,
    Calibration, HealConfig, HealError, HealMode, HealStep,
};
use llama_model::load::projection_names;
use llama_model::{LinearWeight, Llama, LlamaConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = NdArray;
type AD = Autodiff<NdArray>;

fn config() -> LlamaConfig {
    LlamaConfig::tiny()
}

/// `(name, HF shape)` of every tensor of the model.
fn tensor_names(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let h = c.hidden_size;
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![c.vocab_size, h],
    )];
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for (n, s) in [
            ("self_attn.q_proj", vec![q, h]),
            ("self_attn.k_proj", vec![kv, h]),
            ("self_attn.v_proj", vec![kv, h]),
            ("self_attn.o_proj", vec![h, q]),
            ("mlp.gate_proj", vec![c.intermediate_size, h]),
            ("mlp.up_proj", vec![c.intermediate_size, h]),
            ("mlp.down_proj", vec![h, c.intermediate_size]),
            ("input_layernorm", vec![h]),
            ("post_attention_layernorm", vec![h]),
        ] {
            out.push((format!("{p}.{n}.weight"), s));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    out.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    out
}

/// Channels that the block norms scale up.
const OUTLIERS: usize = 4;

fn uniform(rng: &mut ChaCha8Rng, n: usize, a: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-a..a)).collect()
}

/// Base weights (seed `seed`) and a fine-tune: every projection moves by a
/// rank-2 update plus noise (a delta BitDelta's one bit fits poorly), norms,
/// embeddings and lm_head by small noise.
fn make_pair(seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let c = config();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut base = Vec::new();
    let mut ft = Vec::new();
    for (name, shape) in tensor_names(&c) {
        let n: usize = shape.iter().product();
        let (b, d): (Vec<f32>, Vec<f32>) = if shape.len() == 1 {
            // Outlier features, as in real LLMs: a few channels the block
            // norms scale up.
            let outlier = |i: usize| name.contains("layernorm") && i < OUTLIERS;
            let b: Vec<f32> = uniform(&mut rng, n, 0.1)
                .iter()
                .enumerate()
                .map(|(i, x)| if outlier(i) { 4.0 } else { 1.0 } + x)
                .collect();
            (b, uniform(&mut rng, n, 0.05))
        } else if name.contains("proj") {
            let (out_f, in_f) = (shape[0], shape[1]);
            let a = (3.0 / in_f as f32).sqrt();
            let b = uniform(&mut rng, n, a);
            let u = uniform(&mut rng, out_f * 2, 1.0);
            let v = uniform(&mut rng, 2 * in_f, 1.0);
            let noise = uniform(&mut rng, n, 0.3 * a);
            // Fine-tuning moves the weights reading the outlier channels
            // most, so the 1-bit fit with α = mean|Δ| is worst where the
            // activations are largest: what healing corrects.
            let reads_norm = !(name.contains("o_proj") || name.contains("down_proj"));
            let mut d = vec![0.0f32; n];
            for o in 0..out_f {
                for i in 0..in_f {
                    let lr = u[o * 2] * v[i] + u[o * 2 + 1] * v[in_f + i];
                    let col = if reads_norm && i < OUTLIERS { 3.0 } else { 1.0 };
                    d[o * in_f + i] = col * 0.6 * a * lr + noise[o * in_f + i];
                }
            }
            (b, d)
        } else {
            let b = uniform(&mut rng, n, 3f32.sqrt());
            (b, uniform(&mut rng, n, 0.05))
        };
        ft.push(b.iter().zip(&d).map(|(x, y)| x + y).collect());
        base.push(b);
    }
    (base, ft)
}

fn write_model(dir: &Path, tensors: &[Vec<f32>]) -> PathBuf {
    let c = config();
    let mut w = CheckpointWriter::create(dir, WriteOptions::default()).unwrap();
    w.write_aux_file(
        "config.json",
        serde_json::to_string_pretty(&c.to_hf_json())
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    for ((name, shape), data) in tensor_names(&c).iter().zip(tensors) {
        w.write_f32(name, DType::F32, shape, data).unwrap();
    }
    w.finish().unwrap()
}

struct Setup {
    _tmp: tempfile::TempDir,
    base: Checkpoint,
    teacher: Llama<B>,
    delta_path: PathBuf,
    dir: PathBuf,
}

fn setup(method: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (base_t, ft_t) = make_pair(11);
    let base_dir = write_model(&tmp.path().join("base"), &base_t);
    let ft_dir = write_model(&tmp.path().join("ft"), &ft_t);
    let pair = DeltaPair::open(&base_dir, &ft_dir).unwrap();
    let delta_path = tmp.path().join("delta.safetensors");
    let compressor = parse_method(method).unwrap();
    compress_checkpoint(
        &pair,
        compressor.as_ref(),
        &delta_path,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap();
    Setup {
        dir: tmp.path().to_path_buf(),
        base: Checkpoint::open(&base_dir).unwrap(),
        teacher: Llama::from_hf_dir(&ft_dir, &Default::default()).unwrap(),
        delta_path,
        _tmp: tmp,
    }
}

impl Setup {
    fn source<'a>(&'a self, delta: &'a DeltaFile) -> BaseAndDelta<'a, Checkpoint> {
        BaseAndDelta {
            config: config(),
            base: &self.base,
            base_fingerprint: self.base.fingerprint(),
            delta,
        }
    }
}

/// Random token windows (a stand-in for text: the model is random too).
fn windows(n: usize, len: usize, seed: u64) -> Calibration {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Calibration::from_windows(
        (0..n)
            .map(|_| (0..len).map(|_| rng.random_range(3..320u32)).collect())
            .collect(),
    )
    .unwrap()
}

fn heal_config(mode: HealMode) -> HealConfig {
    HealConfig {
        steps: 40,
        batch_size: 4,
        seq_len: 24,
        lr: 5e-3,
        mode,
        seed: 5,
        ..HealConfig::default()
    }
}

/// Heals `method`'s delta and returns (MSE before, after) on held-out windows.
fn heal_and_measure(method: &str, mode: HealMode) -> (f64, f64, Setup, PathBuf) {
    let s = setup(method);
    let delta = DeltaFile::open(&s.delta_path).unwrap();
    let src = s.source(&delta);
    // One pass: every window is drawn once (BitDelta draws batch x steps samples).
    let train = windows(160, 24, 1);
    let held_out = windows(8, 24, 2);
    let before = delta_logit_mse(&src, &s.teacher, &held_out, 4).unwrap();
    let out = s.dir.join("healed.safetensors");
    let mut seen = Vec::new();
    let report = heal_delta_file::<AD, _>(
        &src,
        &s.teacher,
        &train,
        &heal_config(mode),
        &out,
        &mut |st: &HealStep| seen.push(*st),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(report.steps, 40);
    assert_eq!(seen.len(), 40);
    assert_eq!(seen.last().unwrap().step, 40);
    assert!(seen[0].lr > seen[39].lr, "cosine decay");
    let healed = DeltaFile::open(&out).unwrap();
    assert_eq!(healed.method(), delta.method());
    assert_eq!(healed.params(), delta.params());
    assert_eq!(healed.base_fingerprint(), delta.base_fingerprint());
    let after = delta_logit_mse(&s.source(&healed), &s.teacher, &held_out, 4).unwrap();
    eprintln!(
        "{method} {mode}: held-out logit MSE {before:.6} -> {after:.6} ({:.1}% lower); train loss {:.6} -> {:.6}",
        100.0 * (1.0 - after / before),
        report.losses[0],
        report.losses[39]
    );
    (before, after, s, out)
}

fn signs_and_scales(c: &Compressed) -> Vec<(Vec<u8>, Vec<f32>)> {
    match c {
        Compressed::BitDelta(s) => vec![(s.signs().as_bytes().to_vec(), s.scales().to_vec())],
        Compressed::MultiMask(m) => m
            .masks()
            .iter()
            .map(|s| (s.signs().as_bytes().to_vec(), s.scales().to_vec()))
            .collect(),
        other => panic!("unexpected {}", other.kind()),
    }
}

/// Same signs everywhere, scales changed somewhere, carried bytes as given.
fn check_same_signs(a: &DeltaFile, b: &DeltaFile, carried_identical: bool) {
    assert_eq!(a.entries().len(), b.entries().len());
    let mut scales_moved = false;
    for e in a.entries() {
        match e.kind {
            EntryKind::Compressed => {
                let x = signs_and_scales(&a.compressed(&e.name).unwrap());
                let y = signs_and_scales(&b.compressed(&e.name).unwrap());
                assert_eq!(x.len(), y.len());
                for ((sx, ax), (sy, ay)) in x.iter().zip(&y) {
                    assert_eq!(sx, sy, "{} signs", e.name);
                    assert_eq!(ax.len(), ay.len());
                    scales_moved |= ax != ay;
                }
            }
            EntryKind::Carried => {
                let (x, y) = (a.carried(&e.name).unwrap(), b.carried(&e.name).unwrap());
                assert_eq!(x.dtype, y.dtype);
                assert_eq!(x.shape, y.shape);
                if carried_identical {
                    assert_eq!(x.data, y.data, "{} carried bytes", e.name);
                }
            }
        }
    }
    assert!(scales_moved);
}

#[test]
fn healing_lowers_held_out_logit_mse_of_bitdelta() {
    let (before, after, s, out) = heal_and_measure("bitdelta", HealMode::Scales);
    assert!(before > 0.0);
    // One scale per matrix can only do so much: ~5 % here (the optimum is
    // reached at any learning rate from 2e-3 to 1e-2).
    assert!(after < 0.97 * before, "{before} -> {after}");
    let (a, b) = (
        DeltaFile::open(&s.delta_path).unwrap(),
        DeltaFile::open(&out).unwrap(),
    );
    check_same_signs(&a, &b, true);
}

#[test]
fn healing_multimask_per_row_scales() {
    let (before, after, s, out) = heal_and_measure("multimask:k=2,per_row=true", HealMode::Scales);
    assert!(after < 0.9 * before, "{before} -> {after}");
    let (a, b) = (
        DeltaFile::open(&s.delta_path).unwrap(),
        DeltaFile::open(&out).unwrap(),
    );
    check_same_signs(&a, &b, true);
    let c = b.compressed("model.layers.0.mlp.up_proj.weight").unwrap();
    let masks = signs_and_scales(&c);
    assert_eq!(masks.len(), 2);
    assert_eq!(masks[0].1.len(), 176, "one scale per output row");
}

#[test]
fn scales_and_carried_mode_also_trains_carried_tensors() {
    let (before, after, s, out) = heal_and_measure("bitdelta", HealMode::ScalesAndCarried);
    assert!(after < 0.9 * before, "{before} -> {after}");
    let (a, b) = (
        DeltaFile::open(&s.delta_path).unwrap(),
        DeltaFile::open(&out).unwrap(),
    );
    check_same_signs(&a, &b, false);
    let moved = [
        "model.norm.weight",
        "lm_head.weight",
        "model.embed_tokens.weight",
    ]
    .iter()
    .filter(|n| a.carried(n).unwrap().data != b.carried(n).unwrap().data)
    .count();
    assert!(moved >= 2, "carried tensors were trained ({moved} moved)");
}

fn param_bits<const D: usize>(p: &Param<Tensor<AD, D>>) -> Vec<u32> {
    p.val()
        .into_data()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// Every frozen value of the student: sign-delta bases and all carried tensors.
fn frozen_bits(m: &Llama<AD>) -> Vec<Vec<u32>> {
    let mut out = vec![param_bits(&m.embed_tokens), param_bits(&m.norm.weight)];
    for l in &m.layers {
        out.push(param_bits(&l.input_layernorm.weight));
        out.push(param_bits(&l.post_attention_layernorm.weight));
    }
    for name in projection_names(2)
        .into_iter()
        .chain(["lm_head.weight".to_string()])
    {
        match m.linear(&name).unwrap() {
            LinearWeight::SignDelta(d) => out.push(param_bits(&d.base)),
            LinearWeight::Dense(w) => out.push(param_bits(w)),
            _ => panic!("unexpected weight kind for {name}"),
        }
    }
    out
}

#[test]
fn scales_mode_leaves_base_and_carried_bit_identical() {
    let s = setup("multimask:k=2");
    let delta = DeltaFile::open(&s.delta_path).unwrap();
    let src = s.source(&delta);
    let device = Default::default();
    let student = src.build::<AD>(&device).unwrap();
    let q = "model.layers.0.self_attn.q_proj.weight";
    match student.linear(q).unwrap() {
        LinearWeight::SignDelta(d) => {
            assert_eq!(d.num_masks(), 2);
            assert!(!d.per_row());
        }
        _ => panic!("{q} is not a sign delta"),
    }
    // The student is base + delta: it matches the applied model.
    let plain = src.build::<B>(&device).unwrap();
    let probe = windows(2, 24, 9);
    let merged = {
        let mut deltas = llama_model::NamedTensors::new();
        for e in delta
            .entries()
            .iter()
            .filter(|e| e.kind == EntryKind::Compressed)
        {
            let r = delta.compressed(&e.name).unwrap().reconstruct();
            deltas.insert(
                e.name.clone(),
                llama_model::F32Tensor::new(e.shape.clone(), r.data().to_vec()).unwrap(),
            );
        }
        let mut m = Llama::<B>::from_checkpoint_with_delta(&s.base, &deltas, &device).unwrap();
        // Carried tensors come from the fine-tune.
        m.embed_tokens = s.teacher.embed_tokens.clone();
        m.norm = s.teacher.norm.clone();
        m.lm_head = s.teacher.lm_head.clone();
        for (l, t) in m.layers.iter_mut().zip(&s.teacher.layers) {
            l.input_layernorm = t.input_layernorm.clone();
            l.post_attention_layernorm = t.post_attention_layernorm.clone();
        }
        m
    };
    let gap = logit_mse(&plain, &merged, &probe, 2).unwrap();
    eprintln!("student vs applied model: logit MSE {gap:e}");
    // Equal up to f32 rounding (the logits are O(10), their MSE to the
    // teacher O(10)).
    assert!(gap < 1e-6, "{gap}");

    // Frozen parameters get no gradient; the scales do.
    let (frozen, ids, values) =
        freeze_for_healing(src.build::<AD>(&device).unwrap(), HealMode::Scales);
    assert_eq!(ids.len(), 14, "one scale tensor per projection");
    assert_eq!(values, 14 * 2, "two masks, one scale each");
    let tokens =
        Tensor::<AD, 2, Int>::from_data(TensorData::new(vec![1i64, 7, 9, 30], [1, 4]), &device);
    let grads = frozen.forward(tokens.clone()).square().mean().backward();
    match frozen.linear(q).unwrap() {
        LinearWeight::SignDelta(d) => {
            assert!(d.base.val().grad(&grads).is_none());
            assert!(d.scale.val().grad(&grads).is_some());
        }
        _ => unreachable!(),
    }
    assert!(frozen.embed_tokens.val().grad(&grads).is_none());
    assert!(frozen.norm.weight.val().grad(&grads).is_none());
    let (open, ids, _) = freeze_for_healing(
        src.build::<AD>(&device).unwrap(),
        HealMode::ScalesAndCarried,
    );
    assert_eq!(
        ids.len(),
        14 + 1 + 1 + 1 + 2 * 2,
        "scales, embed, lm_head, norms"
    );
    let grads = open.forward(tokens).square().mean().backward();
    assert!(open.embed_tokens.val().grad(&grads).is_some());
    match open.linear(q).unwrap() {
        LinearWeight::SignDelta(d) => assert!(d.base.val().grad(&grads).is_none()),
        _ => unreachable!(),
    }

    // After healing in Scales mode every frozen value is bit-identical.
    let bits_before = frozen_bits(&student);
    let (healed, report) = heal(
        student,
        &s.teacher,
        &windows(8, 24, 1),
        &HealConfig {
            steps: 5,
            ..heal_config(HealMode::Scales)
        },
        &mut |_: &HealStep| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(report.trainable_tensors, 14);
    assert_eq!(frozen_bits(&healed), bits_before);
    match healed.linear(q).unwrap() {
        LinearWeight::SignDelta(d) => {
            let orig = signs_and_scales(&delta.compressed(q).unwrap());
            let now = d.scales();
            assert_ne!(now[0], orig[0].1, "scales were trained");
        }
        _ => unreachable!(),
    }
}

#[test]
fn mismatched_base_and_unsupported_methods_are_refused() {
    let s = setup("bitdelta");
    let delta = DeltaFile::open(&s.delta_path).unwrap();
    // A delta made against another base.
    let tmp = tempfile::tempdir().unwrap();
    let other_dir = write_model(&tmp.path().join("other"), &make_pair(12).0);
    let other = Checkpoint::open(&other_dir).unwrap();
    let src = BaseAndDelta {
        config: config(),
        base: &other,
        base_fingerprint: other.fingerprint(),
        delta: &delta,
    };
    let e = src.build::<B>(&Default::default()).unwrap_err();
    assert!(matches!(e, HealError::WrongBase { .. }), "{e}");
    assert!(e.to_string().contains(other.fingerprint()), "{e}");
    let out = s.dir.join("never.safetensors");
    let e = heal_delta_file::<AD, _>(
        &src,
        &s.teacher,
        &windows(4, 8, 1),
        &heal_config(HealMode::Scales),
        &out,
        &mut |_: &HealStep| {},
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(e, HealError::WrongBase { .. }), "{e}");
    assert!(!out.exists());

    // A method without scales to heal.
    let rtn = setup("rtn:bits=4,group=16");
    let delta = DeltaFile::open(&rtn.delta_path).unwrap();
    let e = rtn
        .source(&delta)
        .build::<B>(&Default::default())
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, HealError::UnsupportedMethod { .. }), "{msg}");
    assert!(
        msg.contains("rtn:bits=4,group=16") && msg.contains("model.layers.0."),
        "{msg}"
    );
}

#[test]
fn a_raised_stop_flag_interrupts_and_writes_nothing() {
    let s = setup("bitdelta");
    let delta = DeltaFile::open(&s.delta_path).unwrap();
    let out = s.dir.join("healed.safetensors");
    let e = heal_delta_file::<AD, _>(
        &s.source(&delta),
        &s.teacher,
        &windows(4, 8, 1),
        &heal_config(HealMode::Scales),
        &out,
        &mut |_: &HealStep| {},
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert!(
        matches!(e, HealError::Interrupted { done: 0, total: 40 }),
        "{e}"
    );
    assert!(!out.exists());
    assert!(std::fs::read_dir(&s.dir).unwrap().all(|f| !f
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("healed")));
}
