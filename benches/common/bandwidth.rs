//! The memory-bandwidth figure a bench divides its bytes by, shared by the
//! benches that state "fraction of the bandwidth limit" (`#[path]`-included,
//! so it is not a bench target of its own).

use rayon::prelude::*;
use std::time::Instant;

/// Sequential read bandwidth in bytes/s (sum over 1 GiB of f32, best of 3)
/// on rayon's global pool, i.e. with the thread count the decode loop it
/// bounds runs on: a single-thread figure under-states what two or more
/// threads can pull and made a 2-thread decode read as "178 % of the limit".
/// Returns the bandwidth and the thread count it was measured with.
pub fn read_bandwidth() -> (f64, usize) {
    let v = vec![1.0f32; 1 << 28];
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let s: f32 = v
            .par_chunks(1 << 16)
            .map(|c| c.chunks(16).map(|c| c.iter().sum::<f32>()).sum::<f32>())
            .sum();
        std::hint::black_box(s);
        best = best.min(t.elapsed().as_secs_f64());
    }
    ((v.len() * 4) as f64 / best, rayon::current_num_threads())
}
