//! SmolLM2-135M-Instruct in f32 on the CPU, deltaguard (Burn, ndarray backend)
//! against PyTorch + transformers on the same machine, in the same run:
//! prefill of 128 tokens (all logits) and greedy decode tokens/s, reported as
//! ratios; plus decode's fraction of the memory-bandwidth limit (weight bytes
//! read per token ÷ measured read bandwidth).
//!
//! Run: `scripts/fetch-smollm2.sh && cargo bench --bench llama`.
//! PyTorch is optional (`pip install torch transformers`); without it the
//! comparison is skipped with a message. Both sides use 2 threads. PyTorch
//! runs twice, with OpenMP's default (spinning) and passive waiting, and the
//! ratios use its faster figure for each measurement; the 1-minute load
//! average is printed, since other work on the machine skews every figure.

use burn::tensor::{Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion};
use deltaguard::backend::{device, Backend};
use deltaguard::delta_core::{CheckpointWriter, DType, WriteOptions};
use deltaguard::model_io::load_model;
use llama_model::gguf::load_llama_gguf;
use llama_model::{ForwardOptions, GenerateConfig, LogitsMode};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/bandwidth.rs"]
mod bandwidth;
use bandwidth::read_bandwidth;

const PREFILL: usize = 128;
const DECODE: usize = 64;

fn gguf_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The same weights as a HF directory for PyTorch (written once).
fn hf_dir(gguf: &Path) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/smollm2-135m-f32");
    if dir.join("model.safetensors").exists() {
        return dir;
    }
    let g = load_llama_gguf(gguf).unwrap();
    let mut w = CheckpointWriter::create(
        &dir,
        WriteOptions {
            overwrite: true,
            ..Default::default()
        },
    )
    .unwrap();
    w.write_aux_file(
        "config.json",
        &serde_json::to_vec_pretty(&g.config_json).unwrap(),
    )
    .unwrap();
    w.write_aux_file(
        "tokenizer.json",
        &serde_json::to_vec(&g.tokenizer_json).unwrap(),
    )
    .unwrap();
    w.write_aux_file(
        "tokenizer_config.json",
        &serde_json::to_vec_pretty(&g.tokenizer_config_json().unwrap()).unwrap(),
    )
    .unwrap();
    for t in g.tensors() {
        let t = t.unwrap();
        w.write_f32(&t.name, DType::F32, &t.shape, &t.data).unwrap();
    }
    w.finish().unwrap()
}

/// (prefill seconds, decode tokens/s) from PyTorch, median of repeats.
/// `passive`: `OMP_WAIT_POLICY=PASSIVE`, so that OpenMP's threads sleep
/// instead of spinning between operations (on a machine shared with other
/// work, spinning threads fight for the cores and PyTorch slows down
/// several-fold).
fn pytorch(dir: &Path, passive: bool) -> Option<(f64, f64)> {
    let script = format!(
        r#"
import time, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(2)
m = AutoModelForCausalLM.from_pretrained("{dir}", dtype=torch.float32).eval()
ids = torch.arange(1000, 1000 + {PREFILL}).unsqueeze(0)
with torch.no_grad():
    m(ids)
    ts = []
    for _ in range(10):
        t = time.perf_counter(); m(ids); ts.append(time.perf_counter() - t)
    ts.sort(); prefill = ts[len(ts) // 2]
    short = ids[:, :8]
    m.generate(short, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    ds = []
    for _ in range(3):
        t = time.perf_counter()
        m.generate(short, max_new_tokens={DECODE}, min_new_tokens={DECODE}, do_sample=False)
        ds.append(time.perf_counter() - t)
    ds.sort()
print(prefill, {DECODE} / ds[1])
"#,
        dir = dir.display()
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    if passive {
        cmd.env("OMP_WAIT_POLICY", "PASSIVE");
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!(
            "PyTorch comparison skipped: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some((it.next()??, it.next()??))
}

/// The 1-minute load average (Linux), to tell a loaded machine from a quiet one.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "n/a".into())
}

fn bench(c: &mut Criterion) {
    let gguf = gguf_path();
    if !gguf.exists() {
        eprintln!("SKIPPED llama bench: run scripts/fetch-smollm2.sh first");
        return;
    }
    let load_before = load_average();
    let m = load_model::<Backend>(&gguf, None, &device()).unwrap();
    let cfg = m.model.config().clone();
    let prompt: Vec<i64> = (1000..1000 + PREFILL as i64).collect();
    let tokens = || {
        Tensor::<Backend, 2, Int>::from_data(
            TensorData::new(prompt.clone(), [1, PREFILL]),
            &device(),
        )
    };

    let mut group = c.benchmark_group("smollm2-135m-f32");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("prefill-128", |b| {
        b.iter(|| {
            let out = m.model.forward_with(
                tokens(),
                ForwardOptions {
                    logits: LogitsMode::All,
                    ..Default::default()
                },
                None,
            );
            out.logits.into_data()
        })
    });
    let short: Vec<u32> = (1000..1008).collect();
    let mut gen = GenerateConfig::greedy(DECODE);
    gen.stop_at_eos = false;
    group.bench_function("greedy-decode-64", |b| {
        b.iter(|| {
            m.model
                .generate(std::slice::from_ref(&short), &gen)
                .unwrap()
        })
    });
    group.finish();

    // Same measurements outside criterion, for the ratios.
    let time = |f: &mut dyn FnMut()| {
        let mut ts: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect();
        ts.sort_by(f64::total_cmp);
        ts[2]
    };
    let ours_prefill = time(&mut || {
        let out = m.model.forward_with(
            tokens(),
            ForwardOptions {
                logits: LogitsMode::All,
                ..Default::default()
            },
            None,
        );
        std::hint::black_box(out.logits.into_data());
    });
    let ours_decode = DECODE as f64
        / time(&mut || {
            std::hint::black_box(
                m.model
                    .generate(std::slice::from_ref(&short), &gen)
                    .unwrap(),
            );
        });

    // Decode reads every weight once per token; the tied embedding is read
    // as the lm_head (the embedding lookup itself touches one row).
    let params = cfg.num_hidden_layers
        * (cfg.hidden_size * cfg.num_attention_heads * cfg.head_dim * 2
            + cfg.hidden_size * cfg.num_key_value_heads * cfg.head_dim * 2
            + 3 * cfg.hidden_size * cfg.intermediate_size)
        + cfg.vocab_size * cfg.hidden_size;
    let bytes_per_token = params as f64 * 4.0;
    let (bw, bw_threads) = read_bandwidth();
    let limit = bw / bytes_per_token;
    println!("\n== SmolLM2-135M f32, {} ==", deltaguard::backend::NAME);
    println!("deltaguard: prefill {PREFILL} tokens {ours_prefill:.3} s; greedy decode {ours_decode:.1} tokens/s");
    println!(
        "memory: {:.0} MB of weights read per decoded token; measured read bandwidth {:.1} GB/s \
         with {bw_threads} threads (the decode's pool) -> limit {limit:.1} tokens/s; decode reaches {:.0} % of it",
        bytes_per_token / 1e6,
        bw / 1e9,
        100.0 * ours_decode / limit
    );
    // PyTorch's default OpenMP settings and passive waiting; the ratios use
    // the faster of the two for each measurement.
    let dir = hf_dir(&gguf);
    let runs: Vec<(&str, (f64, f64))> = [("default", false), ("OMP_WAIT_POLICY=PASSIVE", true)]
        .into_iter()
        .filter_map(|(name, passive)| Some((name, pytorch(&dir, passive)?)))
        .collect();
    for (name, (p, d)) in &runs {
        println!("PyTorch (2 threads, {name}): prefill {p:.3} s; HF generate {d:.1} tokens/s");
    }
    let best = (!runs.is_empty()).then(|| {
        runs.iter()
            .fold((f64::INFINITY, 0.0f64), |(p, d), (_, (rp, rd))| {
                (p.min(*rp), d.max(*rd))
            })
    });
    match best {
        Some((pt_prefill, pt_decode)) => {
            println!(
                "ratios (deltaguard vs PyTorch, >1 = deltaguard faster): prefill {:.2}x, decode {:.2}x",
                pt_prefill / ours_prefill,
                ours_decode / pt_decode
            );
        }
        None => println!("PyTorch not available: ratios skipped"),
    }
    println!(
        "1-minute load average: {load_before} at start, {} at end ({} CPUs)",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
