//! Multi-tenant serving on the CPU: the engine (one shared base, every
//! tenant's BitDelta delta from its packed signs, requests of all tenants in
//! one batch) against the naive alternative (one merged model per tenant in
//! the same process, requests served one at a time), as ratios from one run.
//!
//! The model is synthetic (random weights, hidden 512, 4 layers, FFN 1408:
//! 47 MB f32), built in code, so the bench needs no download; each tenant's
//! fine-tune is another random model, compressed with `bitdelta`. For N
//! tenants, N closed-loop clients (one per tenant) each send `REQUESTS`
//! requests of a 32-token prompt and 32 greedy new tokens. Reported:
//! aggregate tokens/s, p50/p99 time to first token and inter-token latency
//! seen by the clients, the weight bytes each system holds (base + every
//! tenant's deltas and carried tensors, against N full models) and VmRSS
//! growth while loading (rough: the allocator reuses pages freed by the
//! previous measurement). Bounded: at most
//! `REQUESTS` per client and a 60 s cap per measurement; nothing listens on
//! the network.
//!
//! Run: `cargo bench --bench serve`.

use deltaguard::backend::{device, Backend};
use deltaguard::delta_core::{DType, DeltaPair, WriteOptions};
use deltaguard::delta_quant::ops::{compress_checkpoint, CompressOptions};
use deltaguard::delta_quant::parse_method;
use deltaguard::llama_model::save::save_hf_dir;
use deltaguard::llama_model::{GenerateConfig, LlamaConfig, Sampling, Tokenizer};
use deltaguard::model_io::load_model;
use deltaguard::serve::http::start_engine;
use deltaguard::serve::{EngineConfig, GenEvent, GenParams};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROMPT: usize = 32;
const NEW: usize = 32;
const REQUESTS: usize = 3;
const CAP: Duration = Duration::from_secs(60);

fn config() -> LlamaConfig {
    LlamaConfig {
        hidden_size: 512,
        intermediate_size: 1408,
        num_hidden_layers: 4,
        num_attention_heads: 8,
        num_key_value_heads: 4,
        head_dim: 64,
        max_position_embeddings: 512,
        // Never stop early: every request generates NEW tokens.
        eos_token_ids: vec![],
        ..LlamaConfig::tiny()
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Writes the base and `n` tenants' delta files once, under target/.
fn prepare(n: usize) -> (PathBuf, Vec<PathBuf>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/serve");
    let tok = Tokenizer::from_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hf-reference/pair/base"),
    )
    .unwrap();
    let write = |dir: &Path, seed: u64| {
        if !dir.join("model.safetensors").exists() {
            let m = config().init::<Backend>(&device(), seed);
            save_hf_dir(&m, &tok, None, dir, DType::F32, WriteOptions::default()).unwrap();
        }
    };
    std::fs::create_dir_all(&root).unwrap();
    let base = root.join("base");
    write(&base, 1);
    let mut files = Vec::new();
    for i in 0..n {
        let ft = root.join(format!("ft{i}"));
        write(&ft, 100 + i as u64);
        let f = root.join(format!("t{i}.bitdelta.safetensors"));
        if !f.exists() {
            let pair = DeltaPair::open(&base, &ft).unwrap();
            compress_checkpoint(
                &pair,
                parse_method("bitdelta").unwrap().as_ref(),
                &f,
                &CompressOptions::default(),
                &mut |_| {},
                None,
            )
            .unwrap();
        }
        files.push(f);
    }
    (base, files)
}

fn prompt(i: usize) -> Vec<u32> {
    (0..PROMPT)
        .map(|j| ((i * 31 + j * 7) % 300 + 3) as u32)
        .collect()
}

struct Stats {
    tokens: usize,
    wall: Duration,
    ttft: Vec<f64>,
    itl: Vec<f64>,
    rss_added: u64,
    /// Weight bytes held: base + Σ tenants' deltas and carried tensors, or N full models.
    held: u64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn engine_run(base: &Path, files: &[PathBuf]) -> Stats {
    let rss0 = rss_bytes();
    let deltas: Vec<(String, PathBuf)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("t{i}"), f.clone()))
        .collect();
    let engine = start_engine::<Backend>(
        base.to_path_buf(),
        Some("base".into()),
        deltas,
        device(),
        EngineConfig {
            max_batch: 16,
            ..EngineConfig::default()
        },
        None,
    )
    .unwrap();
    let rss_added = rss_bytes().saturating_sub(rss0);
    let held = engine.shared.base_bytes
        + engine
            .shared
            .tenants
            .read()
            .unwrap()
            .values()
            .map(|t| t.resident_bytes)
            .sum::<u64>();
    let start = Instant::now();
    let clients: Vec<_> = (0..files.len())
        .map(|i| {
            let e = engine.clone();
            std::thread::spawn(move || {
                let (mut ttft, mut itl, mut tokens) = (Vec::new(), Vec::new(), 0);
                for r in 0..REQUESTS {
                    if start.elapsed() > CAP {
                        break;
                    }
                    let sent = Instant::now();
                    let mut rx = e
                        .submit(GenParams {
                            model: format!("t{i}"),
                            prompt: prompt(i * REQUESTS + r),
                            max_tokens: NEW,
                            sampling: Sampling::Greedy,
                            seed: 0,
                        })
                        .unwrap();
                    let mut last = None::<Instant>;
                    while let Some(ev) = rx.blocking_recv() {
                        match ev {
                            GenEvent::Token(_) => {
                                let now = Instant::now();
                                match last {
                                    None => ttft.push((now - sent).as_secs_f64()),
                                    Some(l) => itl.push((now - l).as_secs_f64()),
                                }
                                last = Some(now);
                                tokens += 1;
                            }
                            _ => break,
                        }
                    }
                }
                (ttft, itl, tokens)
            })
        })
        .collect();
    let mut s = Stats {
        tokens: 0,
        wall: Duration::ZERO,
        ttft: Vec::new(),
        itl: Vec::new(),
        rss_added,
        held,
    };
    for c in clients {
        let (t, i, n) = c.join().unwrap();
        s.ttft.extend(t);
        s.itl.extend(i);
        s.tokens += n;
    }
    s.wall = start.elapsed();
    engine.shutdown();
    s
}

fn naive_run(base: &Path, files: &[PathBuf]) -> Stats {
    let rss0 = rss_bytes();
    let models: Vec<_> = files
        .iter()
        .map(|f| load_model::<Backend>(base, Some(f), &device()).unwrap())
        .collect();
    let rss_added = rss_bytes().saturating_sub(rss0);
    let per_model: u64 = deltaguard::llama_model::load::expected_shapes(&config())
        .iter()
        .map(|(_, s)| 4 * s.iter().product::<usize>() as u64)
        .sum();
    let start = Instant::now();
    let mut s = Stats {
        held: per_model * files.len() as u64,
        tokens: 0,
        wall: Duration::ZERO,
        ttft: Vec::new(),
        itl: Vec::new(),
        rss_added,
    };
    // One request at a time, round-robin over the tenants.
    'outer: for r in 0..REQUESTS {
        for (i, m) in models.iter().enumerate() {
            if start.elapsed() > CAP {
                break 'outer;
            }
            let sent = Instant::now();
            let mut last = None::<Instant>;
            let (ttft, itl) = (&mut s.ttft, &mut s.itl);
            let out = m
                .model
                .generate_streaming(
                    &[prompt(i * REQUESTS + r)],
                    &GenerateConfig {
                        stop_at_eos: false,
                        ..GenerateConfig::greedy(NEW)
                    },
                    |_| {
                        let now = Instant::now();
                        match last {
                            None => ttft.push((now - sent).as_secs_f64()),
                            Some(l) => itl.push((now - l).as_secs_f64()),
                        }
                        last = Some(now);
                    },
                )
                .unwrap();
            s.tokens += out[0].tokens.len();
        }
    }
    s.wall = start.elapsed();
    s
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we ignore.
    println!(
        "deltaguard serve bench · CPU: {} · {} threads",
        cpu_model(),
        rayon::current_num_threads()
    );
    println!(
        "synthetic Llama: hidden 512, 4 layers, FFN 1408, vocab 320 · {PROMPT}-token prompts, {NEW} greedy new tokens, {REQUESTS} requests per tenant\n"
    );
    println!("| N | system | tok/s | TTFT p50 / p99 (ms) | ITL p50 / p99 (ms) | weights held (MB) | RSS added (MB) |");
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for n in [1usize, 4, 8] {
        let (base, files) = prepare(n);
        let mut rows = Vec::new();
        for (name, mut st) in [
            ("engine", engine_run(&base, &files)),
            ("naive", naive_run(&base, &files)),
        ] {
            let tps = st.tokens as f64 / st.wall.as_secs_f64();
            println!(
                "| {n} | {name} | {tps:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {:.1} |",
                1e3 * pct(&mut st.ttft, 0.5),
                1e3 * pct(&mut st.ttft, 0.99),
                1e3 * pct(&mut st.itl, 0.5),
                1e3 * pct(&mut st.itl, 0.99),
                st.held as f64 / 1e6,
                st.rss_added as f64 / 1e6
            );
            rows.push((tps, st.held));
        }
        ratios.push((
            n,
            rows[0].0 / rows[1].0,
            rows[1].1 as f64 / rows[0].1.max(1) as f64,
        ));
    }
    println!("\n| N | aggregate tok/s engine ÷ naive | memory naive ÷ engine |");
    println!("|---|---|---|");
    for (n, t, m) in ratios {
        println!("| {n} | {t:.2}× | {m:.2}× |");
    }
}
