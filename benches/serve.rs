//! Multi-tenant serving on the CPU: the engine (one shared base, every
//! tenant's delta from its compressed form, requests of all tenants in one
//! batch) against what a user would otherwise run, as ratios from one run:
//! - **naive**: one merged model per tenant in the same process, requests
//!   served one at a time;
//! - **merge-per-request**: one model in memory, `W_base + Δ̂` merged from the
//!   tenant's delta file when its request arrives.
//!
//! The model is SmolLM2-135M-shaped (hidden 576, 30 layers, FFN 1536, 9/3
//! heads, vocab 49 152, tied embeddings; random weights built in code, so
//! no download). Each tenant's fine-tune is another random model whose
//! embedding differs from the base's on the rows of the tokens it "saw"
//! (the first `SEEN_ROWS`; Adam leaves unseen rows unchanged), compressed
//! with the method of the row. For N tenants, N closed-loop clients (one per
//! tenant) each send `REQUESTS` requests of a `PROMPT`-token prompt and
//! `NEW` greedy new tokens. Reported: aggregate tokens/s, p50/p99 time to
//! first token and inter-token latency seen by the clients, weight bytes
//! held (base + every tenant's deltas and carried tensors, against N full
//! models), VmRSS, and the engine's decode step against the memory
//! bandwidth limit (bytes a step reads ÷ read bandwidth measured with the
//! engine's thread count). Bounded: at most `REQUESTS` per client and a
//! `CAP` per measurement; nothing listens on the network.
//!
//! Run: `cargo bench --bench serve` (about 15 min on 2 cores; tenant files are
//! written once under target/bench-data/serve). `SERVE_BENCH_N=8` runs one N.

use burn::module::Param;
use burn::tensor::Tensor;
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

#[path = "common/bandwidth.rs"]
mod bandwidth;
use bandwidth::read_bandwidth;

const PROMPT: usize = 128;
const NEW: usize = 64;
const REQUESTS: usize = 2;
const CAP: Duration = Duration::from_secs(90);
/// Embedding rows a tenant's fine-tune changed (the tokens its data held).
const SEEN_ROWS: usize = 4096;

fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 49_152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 30,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        head_dim: 64,
        max_position_embeddings: 2048,
        rope_theta: 100_000.0,
        tie_word_embeddings: true,
        // Never stop early: every request generates NEW tokens.
        eos_token_ids: vec![],
        ..LlamaConfig::tiny()
    }
}

fn rss_bytes() -> u64 {
    deltaguard::serve::metrics::resident_bytes().unwrap_or(0)
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

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "n/a".into())
}

fn data_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/serve")
}

/// Writes the base once and `n` tenants' delta files for `method` once,
/// under target/ (a fine-tune's directory is removed once compressed).
fn prepare(method: &str, n: usize) -> (PathBuf, Vec<PathBuf>) {
    let root = data_root();
    let tok = Tokenizer::from_dir(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hf-reference/pair/base"),
    )
    .unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let base = root.join("base");
    if !base.join("model.safetensors").exists() {
        let m = config().init::<Backend>(&device(), 1);
        save_hf_dir(&m, &tok, None, &base, DType::F32, WriteOptions::default()).unwrap();
    }
    let tag: String = method
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut files = Vec::new();
    for i in 0..n {
        let f = root.join(format!("t{i}.{tag}.safetensors"));
        if !f.exists() {
            let ft = root.join(format!("ft{i}"));
            if !ft.join("model.safetensors").exists() {
                let base_embed = load_model::<Backend>(&base, None, &device())
                    .unwrap()
                    .model
                    .embed_tokens
                    .val();
                let mut m = config().init::<Backend>(&device(), 100 + i as u64);
                // The fine-tune changed the embedding rows of the tokens it saw.
                let own = m.embed_tokens.val().narrow(0, 0, SEEN_ROWS);
                let [v, h] = base_embed.dims();
                m.embed_tokens = Param::from_tensor(Tensor::cat(
                    vec![own, base_embed.narrow(0, SEEN_ROWS, v - SEEN_ROWS)],
                    0,
                ));
                assert_eq!(m.embed_tokens.val().dims(), [v, h]);
                save_hf_dir(&m, &tok, None, &ft, DType::F32, WriteOptions::default()).unwrap();
            }
            let pair = DeltaPair::open(&base, &ft).unwrap();
            compress_checkpoint(
                &pair,
                parse_method(method).unwrap().as_ref(),
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
        .map(|j| ((i * 31 + j * 7) % 5000 + 3) as u32)
        .collect()
}

fn request(i: usize, r: usize) -> GenParams {
    GenParams {
        model: format!("t{i}"),
        prompt: prompt(i * REQUESTS + r),
        max_tokens: NEW,
        sampling: Sampling::Greedy,
        seed: 0,
    }
}

#[derive(Default)]
struct Stats {
    tokens: usize,
    wall: Duration,
    ttft: Vec<f64>,
    itl: Vec<f64>,
    /// VmRSS after loading.
    rss: u64,
    /// Weight bytes held: base + Σ tenants' deltas and carried tensors, or N full models.
    held: u64,
}

impl Stats {
    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.wall.as_secs_f64()
    }
}

/// Client-side timing of one streamed request.
#[derive(Default)]
struct Clock {
    sent: Option<Instant>,
    last: Option<Instant>,
}

impl Clock {
    fn start() -> Self {
        Self {
            sent: Some(Instant::now()),
            last: None,
        }
    }
    fn token(&mut self, ttft: &mut Vec<f64>, itl: &mut Vec<f64>) {
        let now = Instant::now();
        match self.last {
            None => ttft.push((now - self.sent.unwrap_or(now)).as_secs_f64()),
            Some(l) => itl.push((now - l).as_secs_f64()),
        }
        self.last = Some(now);
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn engine_run(base: &Path, files: &[PathBuf]) -> Stats {
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
            kv_budget_bytes: 4 << 30,
            ..EngineConfig::default()
        },
        None,
    )
    .unwrap();
    let held = engine.shared.base_bytes
        + engine
            .shared
            .tenants
            .read()
            .unwrap()
            .values()
            .map(|t| t.resident_bytes)
            .sum::<u64>();
    let rss = rss_bytes();
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
                    let mut clock = Clock::start();
                    let mut rx = e.submit(request(i, r)).unwrap();
                    while let Some(GenEvent::Token(_)) = rx.blocking_recv() {
                        clock.token(&mut ttft, &mut itl);
                        tokens += 1;
                    }
                }
                (ttft, itl, tokens)
            })
        })
        .collect();
    let mut s = Stats {
        rss,
        held,
        ..Stats::default()
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

fn per_model_bytes() -> u64 {
    deltaguard::llama_model::load::expected_shapes(&config())
        .iter()
        .map(|(_, s)| 4 * s.iter().product::<usize>() as u64)
        .sum()
}

fn generate_one(
    m: &deltaguard::llama_model::Llama<Backend>,
    p: Vec<u32>,
    clock: &mut Clock,
    s: &mut Stats,
) {
    let (ttft, itl) = (&mut s.ttft, &mut s.itl);
    let out = m
        .generate_streaming(
            &[p],
            &GenerateConfig {
                stop_at_eos: false,
                ..GenerateConfig::greedy(NEW)
            },
            |_| clock.token(ttft, itl),
        )
        .unwrap();
    s.tokens += out[0].tokens.len();
}

fn naive_run(base: &Path, files: &[PathBuf]) -> Stats {
    let models: Vec<_> = files
        .iter()
        .map(|f| load_model::<Backend>(base, Some(f), &device()).unwrap())
        .collect();
    let mut s = Stats {
        held: per_model_bytes() * files.len() as u64,
        rss: rss_bytes(),
        ..Stats::default()
    };
    let start = Instant::now();
    // One request at a time, round-robin over the tenants.
    'outer: for r in 0..REQUESTS {
        for (i, m) in models.iter().enumerate() {
            if start.elapsed() > CAP {
                break 'outer;
            }
            let mut clock = Clock::start();
            generate_one(&m.model, request(i, r).prompt, &mut clock, &mut s);
        }
    }
    s.wall = start.elapsed();
    s
}

/// One model in memory at a time: each request merges base + its tenant's
/// delta from the files, then generates (the clock starts before the merge).
fn merge_per_request_run(base: &Path, files: &[PathBuf]) -> Stats {
    let mut s = Stats {
        held: per_model_bytes(),
        ..Stats::default()
    };
    let start = Instant::now();
    'outer: for r in 0..REQUESTS {
        for (i, f) in files.iter().enumerate() {
            if start.elapsed() > CAP {
                break 'outer;
            }
            let mut clock = Clock::start();
            let m = load_model::<Backend>(base, Some(f), &device()).unwrap();
            s.rss = s.rss.max(rss_bytes());
            generate_one(&m.model, request(i, r).prompt, &mut clock, &mut s);
        }
    }
    s.wall = start.elapsed();
    s
}

fn main() {
    // `cargo bench` passes `--bench`; other arguments are ignored.
    let only_n: Option<usize> = std::env::var("SERVE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok());
    let (bw, bw_threads) = read_bandwidth();
    println!(
        "deltaguard serve bench · CPU: {} · {} threads · load average {} · read bandwidth {:.1} GB/s ({bw_threads} threads)",
        cpu_model(),
        rayon::current_num_threads(),
        load_average(),
        bw / 1e9,
    );
    println!(
        "SmolLM2-135M-shaped random weights ({:.0} MB f32) · {PROMPT}-token prompts, {NEW} greedy new tokens, {REQUESTS} requests per tenant, one closed-loop client per tenant\n",
        per_model_bytes() as f64 / 1e6
    );
    println!("| method | N | system | tok/s | TTFT p50 / p99 (ms) | ITL p50 / p99 (ms) | weights held (MB) | VmRSS (MB) |");
    println!("|---|---|---|---|---|---|---|---|");
    let cells: Vec<(&str, usize)> = [1usize, 4, 8, 16]
        .into_iter()
        .map(|n| ("bitdelta", n))
        .chain([("svd:rank=16", 8), ("magnitude:density=0.1", 8)])
        .filter(|&(_, n)| only_n.is_none_or(|o| o == n))
        .collect();
    let mut ratios = Vec::new();
    for (method, n) in cells {
        let (base, files) = prepare(method, n);
        let mut rows = Vec::new();
        for (name, run) in [
            ("engine", engine_run as fn(&Path, &[PathBuf]) -> Stats),
            ("naive", naive_run),
            ("merge-per-request", merge_per_request_run),
        ] {
            let mut st = run(&base, &files);
            println!(
                "| {method} | {n} | {name} | {:.1} | {:.0} / {:.0} | {:.1} / {:.1} | {:.0} | {:.0} |",
                st.tokens_per_s(),
                1e3 * pct(&mut st.ttft, 0.5),
                1e3 * pct(&mut st.ttft, 0.99),
                1e3 * pct(&mut st.itl, 0.5),
                1e3 * pct(&mut st.itl, 0.99),
                st.held as f64 / 1e6,
                st.rss as f64 / 1e6,
            );
            rows.push(st);
        }
        // A decode step of the engine reads the base once and every tenant's
        // delta and carried tensors once; its median duration is the ITL p50.
        let step_s = pct(&mut rows[0].itl, 0.5);
        let bw_share = rows[0].held as f64 / step_s / bw;
        // Steady decode: N streams advance one token per engine step; the
        // naive server advances one stream at a time.
        let decode_engine = n as f64 / step_s;
        let decode_naive = 1.0 / pct(&mut rows[1].itl, 0.5);
        ratios.push((
            method,
            n,
            decode_engine / decode_naive,
            rows[0].tokens_per_s() / rows[1].tokens_per_s(),
            rows[0].tokens_per_s() / rows[2].tokens_per_s(),
            rows[1].held as f64 / rows[0].held.max(1) as f64,
            bw_share,
        ));
    }
    println!("\n| method | N | decode tok/s engine ÷ naive (N ÷ ITL p50 vs 1 ÷ ITL p50) | end-to-end tok/s engine ÷ naive | engine ÷ merge-per-request | weights naive ÷ engine | engine decode step: bytes read ÷ (ITL p50 × bandwidth) |");
    println!("|---|---|---|---|---|---|---|");
    for (method, n, d, t, tm, m, b) in ratios {
        println!(
            "| {method} | {n} | {d:.2}× | {t:.2}× | {tm:.2}× | {m:.2}× | {:.0} % |",
            100.0 * b
        );
    }
}
