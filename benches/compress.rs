//! Compression throughput of every delta-quant method on a 4096 x 4096 f32
//! delta (the size of a Llama-2-7B attention projection), plus BitDelta
//! against numpy's `np.abs(d).mean(); np.packbits(d >= 0)` on the same
//! shape, timed in the same run.
//!
//! Run: `cargo bench --bench compress`. numpy is optional: without it the
//! comparison is skipped with a message. SVD-based methods use the
//! randomized solver (`solver=auto` picks it at this size: a full SVD of a
//! 4096² matrix takes minutes on two cores) and fewer samples.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use deltaguard::delta_quant::{parse_method, CompressContext, DeltaMatrix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 4096;

fn delta() -> DeltaMatrix {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // Fine-tuning deltas are small and roughly symmetric around zero.
    let data = (0..N * N)
        .map(|_| rng.random_range(-1.0f32..1.0) * 1e-3)
        .collect();
    DeltaMatrix::new(N, N, data).unwrap()
}

/// Median milliseconds of numpy's BitDelta step, or None without numpy.
fn numpy_ms() -> Option<f64> {
    let script = format!(
        r#"
import time, numpy as np
d = (np.random.default_rng(0).random(({N}, {N}), dtype=np.float32) * 2 - 1) * 1e-3
ts = []
for _ in range(25):
    t = time.perf_counter()
    a = np.abs(d).mean(); s = np.packbits(d >= 0)
    ts.append(time.perf_counter() - t)
ts.sort()
print(ts[len(ts) // 2] * 1e3)
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

fn median_ms(mut f: impl FnMut(), runs: usize) -> f64 {
    f();
    let mut ts: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[runs / 2]
}

fn bench(c: &mut Criterion) {
    let d = delta();
    let ctx = CompressContext::new("model.layers.0.self_attn.q_proj.weight", 0);

    let bitdelta = parse_method("bitdelta").unwrap();
    let ours = median_ms(
        || drop(black_box(bitdelta.compress_matrix(&d, &ctx).unwrap())),
        25,
    );
    match numpy_ms() {
        Some(np) => println!(
            "bitdelta 4096x4096 f32: delta-quant {ours:.2} ms, numpy {np:.2} ms (abs().mean() + packbits) -> {:.1}x faster (median of 25, {} cores)",
            np / ours,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        None => println!(
            "bitdelta 4096x4096 f32: delta-quant {ours:.2} ms; numpy comparison skipped (python3 with numpy not found)"
        ),
    }

    let mut g = c.benchmark_group("compress_4096x4096");
    g.throughput(Throughput::Bytes((N * N * 4) as u64));
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    // BitDelta takes milliseconds: full sample count.
    for spec in ["bitdelta", "bitdelta:per_row=true"] {
        let comp = parse_method(spec).unwrap();
        g.bench_function(spec, |b| {
            b.iter(|| comp.compress_matrix(black_box(&d), &ctx).unwrap())
        });
    }
    // The rest take 0.05-2 s per call: 10 samples each keeps the whole run
    // to a few minutes.
    g.sample_size(10);
    for spec in [
        "multimask:k=3",
        "rtn:bits=4,group=128",
        "dare:p=0.9",
        "magnitude:density=0.1",
        "compeft:density=0.1",
        "dare:p=0.5+bitdelta",
        "svd:rank=16",
        "deltacome",
    ] {
        let comp = parse_method(spec).unwrap();
        g.bench_function(spec, |b| {
            b.iter(|| comp.compress_matrix(black_box(&d), &ctx).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
