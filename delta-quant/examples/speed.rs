//! Quick timing of every method on a 4096 x 4096 f32 delta, without
//! criterion (the workspace bench `benches/compress.rs` is the full one):
//! compress, then decode three ways — `reconstruct()` (allocates the
//! matrix), `reconstruct_into` (into a buffer allocated once) and
//! `add_into` (base += Δ̂, what `apply` and the model loader do) — with
//! GB/s of f32 output. When `python3` with numpy is on the PATH, numpy's
//! naive BitDelta decode `base + α·(2·unpackbits − 1)` runs on the same
//! shape for comparison.
//!
//! `cargo run --release -p delta-quant --example speed [method ...]`
//!
//! Decode figures are the best of several runs (the machine this project
//! runs on is shared, so the minimum is the least noisy statistic);
//! compress figures the median, as before.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use delta_quant::{parse_method, CompressContext, Compressed, DeltaMatrix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Decode repetitions (best of).
const DECODE_RUNS: usize = 7;

fn main() {
    let n = 4096;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let data = (0..n * n)
        .map(|_| rng.random_range(-1.0f32..1.0) * 1e-3)
        .collect();
    let d = DeltaMatrix::new(n, n, data).unwrap();
    let ctx = CompressContext::new("w", 0);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let specs: Vec<&str> = if args.is_empty() {
        vec![
            "bitdelta",
            "bitdelta:per_row=true",
            "multimask:k=3",
            "rtn:bits=4,group=128",
            "dare:p=0.9",
            "magnitude:density=0.1",
            "compeft:density=0.1",
            "dare:p=0.5+bitdelta",
            "svd:rank=16",
            "deltacome",
        ]
    } else {
        args.iter().map(String::as_str).collect()
    };
    println!(
        "CPU: {}; {} rayon threads; load average {}; delta {n}x{n} f32 ({:.1} MB of output per decode)",
        cpu_model(),
        rayon::current_num_threads(),
        load_average(),
        (n * n * 4) as f64 / 1e6
    );
    let out_bytes = (n * n * 4) as f64;
    let gbs = |ms: f64| out_bytes / (ms * 1e-3) / 1e9;
    let mut buf = vec![0f32; n * n];
    let mut base = vec![0.01f32; n * n];
    for spec in specs {
        let c = parse_method(spec).unwrap();
        let out = c.compress_matrix(&d, &ctx).unwrap(); // warm-up
        let runs = if spec.contains("svd") || spec.contains("deltacome") {
            3
        } else {
            15
        };
        let mut ts: Vec<f64> = (0..runs)
            .map(|_| time_ms(|| drop(std::hint::black_box(c.compress_matrix(&d, &ctx).unwrap()))))
            .collect();
        ts.sort_by(f64::total_cmp);
        let rec = out.reconstruct();
        let rel = (d.squared_error(&rec) / d.squared_norm()).sqrt();
        drop(rec);
        let (alloc, into, add) = decode_times(&out, &mut buf, &mut base);
        println!(
            "{spec:<28} compress {:>8.2} ms (median of {runs})  {:>9} bytes ({:.3} bits/entry)  rel. error {rel:.4}\n\
             {:<28} reconstruct() {alloc:>7.2} ms ({:>5.2} GB/s)  reconstruct_into {into:>7.2} ms ({:>5.2} GB/s)  add_into {add:>7.2} ms ({:>5.2} GB/s)",
            ts[runs / 2],
            out.storage_bytes(),
            out.storage_bytes() as f64 * 8.0 / (n * n) as f64,
            "",
            gbs(alloc),
            gbs(into),
            gbs(add),
        );
    }
    match numpy_bitdelta_ms(n) {
        Some(ms) => println!(
            "numpy {}: base + alpha*(2*unpackbits - 1), {n}x{n}: {ms:.2} ms ({:.2} GB/s), best of {DECODE_RUNS}",
            numpy_version().unwrap_or_default(),
            gbs(ms)
        ),
        None => println!("numpy comparison skipped (python3 with numpy not found)"),
    }
    println!("load average after the run: {}", load_average());
}

fn time_ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// Best-of-[`DECODE_RUNS`] milliseconds of `reconstruct()`,
/// `reconstruct_into` and `add_into`.
fn decode_times(c: &Compressed, buf: &mut [f32], base: &mut [f32]) -> (f64, f64, f64) {
    let best = |f: &mut dyn FnMut()| {
        (0..DECODE_RUNS)
            .map(|_| time_ms(&mut *f))
            .fold(f64::INFINITY, f64::min)
    };
    let alloc = best(&mut || drop(std::hint::black_box(c.reconstruct())));
    let into = best(&mut || c.reconstruct_into(std::hint::black_box(&mut *buf)).unwrap());
    // Adding Δ̂ repeatedly into the same base only moves its values.
    let add = best(&mut || c.add_into(std::hint::black_box(&mut *base)).unwrap());
    (alloc, into, add)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn numpy_version() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import numpy; print(numpy.__version__)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Best-of-[`DECODE_RUNS`] milliseconds of numpy's naive BitDelta decode
/// on an `n x n` delta, or None without python3 + numpy.
fn numpy_bitdelta_ms(n: usize) -> Option<f64> {
    let script = format!(
        r#"
import time, numpy as np
n = {n}
rng = np.random.default_rng(0)
d = ((rng.random((n, n), dtype=np.float32) * 2 - 1) * 1e-3).astype(np.float32)
base = np.full((n, n), 0.01, dtype=np.float32)
alpha = np.float32(np.abs(d).mean())
packed = np.packbits(d >= 0, axis=-1, bitorder="little")
best = float("inf")
for _ in range({DECODE_RUNS}):
    t = time.perf_counter()
    w = base + alpha * (2 * np.unpackbits(packed, axis=-1, count=n, bitorder="little").astype(np.float32) - 1)
    best = min(best, time.perf_counter() - t)
print(best * 1e3)
"#
    );
    let mut child = Command::new("python3")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(script.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
