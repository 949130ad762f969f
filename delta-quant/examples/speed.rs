//! Quick timing of every method on a 4096 x 4096 f32 delta, without
//! criterion (the workspace bench `benches/compress.rs` is the full one).
//!
//! `cargo run --release -p delta-quant --example speed [method ...]`

use std::time::Instant;

use delta_quant::{parse_method, CompressContext, DeltaMatrix};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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
    for spec in specs {
        let c = parse_method(spec).unwrap();
        let out = c.compress_matrix(&d, &ctx).unwrap(); // warm-up
        let runs = if spec.contains("svd") || spec.contains("deltacome") {
            3
        } else {
            15
        };
        let mut ts: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(c.compress_matrix(&d, &ctx).unwrap());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ts.sort_by(f64::total_cmp);
        let t = Instant::now();
        let rec = out.reconstruct();
        let rt = t.elapsed().as_secs_f64() * 1e3;
        let rel = (d.squared_error(&rec) / d.squared_norm()).sqrt();
        println!(
            "{spec:<28} compress {:>9.2} ms (median of {runs})  reconstruct {rt:>8.2} ms  {:>9} bytes ({:.3} bits/entry)  rel. error {rel:.4}",
            ts[runs / 2],
            out.storage_bytes(),
            out.storage_bytes() as f64 * 8.0 / (n * n) as f64
        );
    }
}
