//! One full fine-tuning step of SmolLM2-135M-Instruct in f32 on the CPU —
//! batch 4 × 128 tokens, every weight trainable, AdamW (lr 1e-5) — deltaguard
//! (Burn autodiff on burn-ndarray) against PyTorch + transformers on the same
//! machine, in the same run, from the same weights and the same token batch.
//! Reports seconds per step on each side, their ratio, and where the time goes
//! (forward + loss, backward, optimizer) on both sides.
//!
//! The two sides take turns, one step each (PyTorch runs in a Python process
//! that waits for a line on stdin before each step), so that on a shared
//! machine both see the same load; the ratio is the median of the per-pair
//! ratios.
//!
//! Run: `scripts/fetch-smollm2.sh && cargo bench --bench train`.
//! PyTorch is optional (`pip install torch transformers`; the interpreter is
//! `$PYTHON`, else `python3`); without it the comparison is skipped with a
//! message. Both sides use 2 threads; for another count run with
//! `RAYON_NUM_THREADS=N MATMUL_NUM_THREADS=N` (burn-ndarray's two thread
//! pools), and PyTorch gets N too. Set `DELTAGUARD_BENCH_SKIP_TORCH=1` to
//! time deltaguard alone (e.g. under `perf record`). A criterion filter that
//! matches nothing (`cargo bench --bench train -- none`) skips the criterion
//! samples and keeps the side-by-side comparison.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion};
use deltaguard::backend::{device, Backend, NAME};
use deltaguard::delta_core::{DType, WriteOptions};
use deltaguard::model_io::{load_model, LoadedModel};
use llama_model::save::save_hf_dir;
use llama_model::train::loss::masked_cross_entropy;
use llama_model::train::{train, Quiet, ScheduleKind, TokenizedExample, TrainConfig};
use llama_model::{ForwardOptions, Llama};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = Autodiff<Backend>;

const BATCH: usize = 4;
const SEQ: usize = 128;
const LR: f64 = 1e-5;
/// Timed steps per side after one warm-up step (which also allocates
/// AdamW's state).
const STEPS: usize = 5;
/// Steps of the `train` loop run for comparison (the first is not counted).
const ENGINE_STEPS: usize = 3;

/// Threads of both sides: `RAYON_NUM_THREADS`, else 2 (both cores of this
/// project's machine kind).
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gguf_path() -> PathBuf {
    root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The same f32 weights as a HF directory for PyTorch (written once; the
/// same directory `benches/llama.rs` uses).
fn hf_dir(loaded: &LoadedModel<B>) -> PathBuf {
    let dir = root().join("target/bench-data/smollm2-135m-f32");
    if dir.join("model.safetensors").exists() {
        return dir;
    }
    save_hf_dir(
        &loaded.model,
        &loaded.tokenizer,
        Some(&loaded.chat_template),
        &dir,
        DType::F32,
        WriteOptions {
            overwrite: true,
            ..Default::default()
        },
    )
    .expect("writing the HF directory for PyTorch")
}

/// The random batch: `BATCH` rows of `SEQ` token ids, seeded.
fn token_rows(vocab: usize) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    (0..BATCH)
        .map(|_| {
            (0..SEQ)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect()
}

/// What transformers computes for `model(input_ids=ids, labels=ids)`: the
/// logits of all `SEQ` positions, the loss over the `SEQ - 1` that have a
/// next token, averaged over `BATCH · (SEQ - 1)` tokens.
struct StepInputs {
    inputs: Tensor<B, 2, Int>,
    targets: Tensor<B, 2, Int>,
    weights: Tensor<B, 2>,
    normalizer: f64,
}

fn step_inputs(rows: &[Vec<u32>]) -> StepInputs {
    let mut inputs = Vec::with_capacity(BATCH * SEQ);
    let mut targets = Vec::with_capacity(BATCH * SEQ);
    let mut weights = Vec::with_capacity(BATCH * SEQ);
    for row in rows {
        for j in 0..SEQ {
            inputs.push(row[j] as i64);
            targets.push(row.get(j + 1).map_or(0, |&t| t as i64));
            weights.push(if j + 1 < SEQ { 1.0f32 } else { 0.0 });
        }
    }
    let dev = device();
    StepInputs {
        inputs: Tensor::from_data(TensorData::new(inputs, [BATCH, SEQ]), &dev),
        targets: Tensor::from_data(TensorData::new(targets, [BATCH, SEQ]), &dev),
        weights: Tensor::from_data(TensorData::new(weights, [BATCH, SEQ]), &dev),
        normalizer: (BATCH * (SEQ - 1)) as f64,
    }
}

/// Seconds of each phase of one step, and the loss before it.
#[derive(Debug, Clone, Copy, Default)]
struct Split {
    forward: f64,
    backward: f64,
    optimizer: f64,
    loss: f64,
}

impl Split {
    fn total(&self) -> f64 {
        self.forward + self.backward + self.optimizer
    }
}

/// HF's AdamW defaults apart from the learning rate (`TrainConfig::default`).
fn adamw() -> impl Optimizer<Llama<B>, B> {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init::<B, Llama<B>>()
}

/// One step, built from the pieces `llama_model::train::train` uses (without
/// its gradient-norm clipping). burn-ndarray runs eagerly, so wall-clock
/// time between the calls is the time of each phase.
fn step(
    model: Llama<B>,
    optim: &mut impl Optimizer<Llama<B>, B>,
    b: &StepInputs,
) -> (Llama<B>, Split) {
    let t0 = Instant::now();
    let logits = model
        .forward_with(b.inputs.clone(), ForwardOptions::default(), None)
        .logits;
    let loss = masked_cross_entropy(logits, b.targets.clone(), b.weights.clone(), b.normalizer);
    let t1 = Instant::now();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let t2 = Instant::now();
    let model = optim.step(LR, model, grads);
    let t3 = Instant::now();
    let loss = loss
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_or(f64::NAN, |v| v[0]);
    let split = Split {
        forward: (t1 - t0).as_secs_f64(),
        backward: (t2 - t1).as_secs_f64(),
        optimizer: (t3 - t2).as_secs_f64(),
        loss,
    };
    (model, split)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Timed steps summarized two ways: the per-phase medians (robust to a
/// loaded machine) and the fastest step (closest to a quiet machine).
struct Summary {
    median: Split,
    best: Split,
}

fn summarize(steps: &[Split], loss0: f64) -> Summary {
    let phase = |f: fn(&Split) -> f64| median(&steps.iter().map(f).collect::<Vec<_>>());
    let best = steps
        .iter()
        .copied()
        .min_by(|a, b| a.total().total_cmp(&b.total()))
        .unwrap_or_default();
    Summary {
        median: Split {
            forward: phase(|s| s.forward),
            backward: phase(|s| s.backward),
            optimizer: phase(|s| s.optimizer),
            loss: loss0,
        },
        best: Split {
            loss: loss0,
            ..best
        },
    }
}

/// `scripts/torch_train_step.py --serve`: PyTorch holding the same model
/// and batch, one step per request.
struct TorchServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
    version: String,
}

impl TorchServer {
    fn start(dir: &Path, rows: &[Vec<u32>]) -> Result<Self, String> {
        let data = root().join("target/bench-data");
        let tokens = data.join("train-batch.json");
        let tmp = tokens.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(rows).map_err(|e| e.to_string())?)
            .and_then(|()| std::fs::rename(&tmp, &tokens))
            .map_err(|e| format!("{}: {e}", tokens.display()))?;
        let log = data.join("torch_train_step.log");
        let log_file = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(root().join("scripts/torch_train_step.py"))
            .arg("--model")
            .arg(dir)
            .arg("--tokens")
            .arg(&tokens)
            .args(["--lr", &LR.to_string(), "--serve"])
            .args(["--threads", &threads().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut server = Self {
            child,
            stdin,
            stdout,
            log,
            version: String::new(),
        };
        let ready = server.read()?;
        if ready["ready"] != serde_json::Value::Bool(true) {
            return Err(format!("unexpected first line from the script: {ready}"));
        }
        server.version = format!(
            "PyTorch {} + transformers {}, {} threads",
            ready["torch"].as_str().unwrap_or("?"),
            ready["transformers"].as_str().unwrap_or("?"),
            ready["threads"]
        );
        Ok(server)
    }

    /// The next JSON line, or the last line of the script's stderr if it ended.
    fn read(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            let _ = self.child.wait();
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            return Err(log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("the script ended without a message")
                .to_string());
        }
        serde_json::from_str(&line).map_err(|e| format!("bad line from the script ({e}): {line}"))
    }

    fn step(&mut self) -> Result<Split, String> {
        let stdin = self.stdin.as_mut().ok_or("the script's stdin is closed")?;
        stdin
            .write_all(b"step\n")
            .and_then(|()| stdin.flush())
            .map_err(|e| e.to_string())?;
        let v = self.read()?;
        let get = |k: &str| {
            v[k].as_f64()
                .ok_or_else(|| format!("no '{k}' in the script's answer: {v}"))
        };
        Ok(Split {
            forward: get("forward_s")?,
            backward: get("backward_s")?,
            optimizer: get("optimizer_s")?,
            loss: get("loss")?,
        })
    }
}

impl Drop for TorchServer {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF ends the script's loop
        let _ = self.child.wait();
    }
}

fn bench(c: &mut Criterion) {
    let gguf = gguf_path();
    if !gguf.exists() {
        eprintln!("SKIPPED train bench: run scripts/fetch-smollm2.sh first");
        return;
    }
    let matmul_threads = std::env::var("MATMUL_NUM_THREADS").ok();
    if std::env::var_os("RAYON_NUM_THREADS").is_some()
        && matmul_threads.as_deref() != Some(threads().to_string().as_str())
    {
        eprintln!(
            "note: MATMUL_NUM_THREADS ({}) differs from RAYON_NUM_THREADS ({})",
            matmul_threads.as_deref().unwrap_or("unset"),
            threads()
        );
    }
    let loaded = load_model::<B>(&gguf, None, &device()).expect("loading SmolLM2");
    let vocab = loaded.model.config().vocab_size;
    let rows = token_rows(vocab);
    let inputs = step_inputs(&rows);
    let params: usize = burn::module::Module::num_params(&loaded.model);

    // Criterion: the whole step (the optimizer state carries over between
    // iterations, as in training).
    let mut optim = adamw();
    let mut model = Some(loaded.model.clone());
    let mut group = c.benchmark_group("smollm2-135m-train-f32");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30));
    group.bench_function("step-4x128-adamw", |bch| {
        bch.iter(|| {
            let (m, split) = step(model.take().unwrap(), &mut optim, &inputs);
            model = Some(m);
            split.loss
        })
    });
    group.finish();
    drop((model, optim));

    // The same step phase by phase, from fresh weights and a fresh
    // optimizer, taking turns with PyTorch.
    let mut torch = if std::env::var_os("DELTAGUARD_BENCH_SKIP_TORCH").is_some() {
        println!("\nPyTorch comparison skipped (DELTAGUARD_BENCH_SKIP_TORCH is set)");
        None
    } else {
        match TorchServer::start(&hf_dir(&loaded), &rows) {
            Ok(t) => Some(t),
            Err(e) => {
                println!("\nPyTorch comparison skipped: {e}");
                None
            }
        }
    };
    let mut optim = adamw();
    let mut model = loaded.model.clone();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..=STEPS {
        let (m, s) = step(model, &mut optim, &inputs);
        model = m;
        ours.push(s);
        if let Some(t) = torch.as_mut() {
            match t.step() {
                Ok(s) => theirs.push(s),
                Err(e) => {
                    println!("PyTorch comparison stopped: {e}");
                    theirs.clear();
                    torch = None;
                }
            }
        }
    }
    let torch_version = torch.as_ref().map(|t| t.version.clone());
    drop((model, optim, torch));

    // The engine itself: `train` with its defaults (gradient norm clipped
    // at 1), constant lr, ENGINE_STEPS steps of BATCH sequences of SEQ
    // tokens (each example has SEQ + 1 ids so that the inputs are SEQ wide).
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let data: Vec<TokenizedExample> = (0..BATCH * ENGINE_STEPS)
        .map(|_| {
            TokenizedExample::plain(
                (0..=SEQ)
                    .map(|_| rng.random_range(0..vocab as u32))
                    .collect(),
            )
        })
        .collect();
    let config = TrainConfig {
        epochs: 1,
        lr: LR,
        batch_size: BATCH,
        schedule: ScheduleKind::Constant,
        max_len: SEQ + 1,
        ..TrainConfig::default()
    };
    let outcome = train(loaded.model.clone(), &data, &config, 0, &mut Quiet).expect("train");
    let elapsed: Vec<f64> = outcome.history.iter().map(|s| s.elapsed_s).collect();
    // Steps after the first (which allocates AdamW's state).
    let engine_step = (elapsed[elapsed.len() - 1] - elapsed[0]) / (elapsed.len() - 1) as f64;
    drop(outcome);
    drop(loaded);

    println!(
        "\n== SmolLM2-135M full fine-tuning step, batch {BATCH} x {SEQ} tokens, AdamW lr {LR}, f32, {NAME}, {} threads ==",
        threads()
    );
    println!(
        "{params} trainable parameters; {STEPS} timed steps per side after 1 warm-up step, \
         the sides taking turns; 'median' = per-phase medians, 'best' = the fastest step"
    );
    let row = |who: &str, s: &Split| {
        println!(
            "{who:<18} step {:.3} s = forward+loss {:.3} s ({:.0} %) + backward {:.3} s ({:.0} %) \
             + optimizer {:.3} s ({:.0} %); first-step loss {:.4}",
            s.total(),
            s.forward,
            100.0 * s.forward / s.total(),
            s.backward,
            100.0 * s.backward / s.total(),
            s.optimizer,
            100.0 * s.optimizer / s.total(),
            s.loss
        )
    };
    let ours_sum = summarize(&ours[1..], ours[0].loss);
    row("deltaguard median", &ours_sum.median);
    row("deltaguard best", &ours_sum.best);
    println!(
        "deltaguard `train` loop (gradient-norm clipping on): {engine_step:.3} s per step (mean of {})",
        ENGINE_STEPS - 1
    );
    let Some(version) = torch_version.filter(|_| theirs.len() == ours.len()) else {
        return;
    };
    let theirs_sum = summarize(&theirs[1..], theirs[0].loss);
    row("PyTorch median", &theirs_sum.median);
    row("PyTorch best", &theirs_sum.best);
    println!("({version})");
    let pairs: Vec<f64> = theirs[1..]
        .iter()
        .zip(&ours[1..])
        .map(|(t, o)| t.total() / o.total())
        .collect();
    println!(
        "ratio, PyTorch time / deltaguard time (>1 = deltaguard faster): median over the step pairs {:.2}x \
         (pairs: {}); best step vs best step {:.2}x",
        median(&pairs),
        pairs
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        theirs_sum.best.total() / ours_sum.best.total()
    );
    let (t, o) = (&theirs_sum.median, &ours_sum.median);
    println!(
        "per phase (medians): forward+loss {:.2}x, backward {:.2}x, optimizer {:.2}x",
        t.forward / o.forward,
        t.backward / o.backward,
        t.optimizer / o.optimizer
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
