//! `Σ_{i: bit i set} x_i` for every row of a packed sign matrix: the only
//! work a BitDelta / multi-mask tenant adds to a projection
//! (`Δ̂x = α·(2·Σ_{s=+1} x − Σ x)`).
//!
//! Two kernels compute the same sums:
//! - **AVX-512** (x86-64 CPUs that have it, detected at run time: Intel
//!   since Skylake-SP, AMD since Zen 4): 16 sign bits are one mask register,
//!   so 16 entries cost one masked add of 16 inputs, and the bits stream
//!   straight from the packed bytes (1/32 of an f32 weight's bytes).
//! - **Portable**: LUT-GEMM's trick — per 8 inputs a table of the 256 subset
//!   sums, then one lookup per byte of signs.
//!
//! Output rows are split over the rayon threads in blocks when the matrix is
//! large; the AVX-512 kernel computes 8 output rows × 1 input row or 4 × 4
//! (a prefill chunk of one tenant) per pass, so every mask and input vector
//! it loads feeds several independent masked adds.

use delta_quant::BitMatrix;
use rayon::prelude::*;

/// Matrices with fewer sign bits × input rows than this run on one thread.
const PARALLEL_MIN_BITS: usize = 1 << 17;

/// `out[o·rows + r] = Σ_{i: bit (o, i) set} x[r·in + i]` for every output
/// row `o` of `bits` (`[out, in]`, one bit per entry) and every input row
/// `r` of `x` (`[rows, in]`, row-major).
pub fn positive_sums(bits: &BitMatrix, x: &[f32], rows: usize, out: &mut [f32]) {
    let (out_f, in_f) = (bits.rows(), bits.cols());
    assert_eq!(bits.bits(), 1, "a sign matrix has one bit per entry");
    assert_eq!(x.len(), rows * in_f, "x is [rows, in]");
    assert_eq!(out.len(), out_f * rows, "out is [out, rows]");
    if rows == 0 || out_f == 0 {
        return;
    }
    let kernel = Kernel::detect();
    let luts: Vec<Vec<f32>> = match kernel {
        Kernel::Portable => x.chunks_exact(in_f).map(byte_sums).collect(),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => Vec::new(),
    };
    // One task per block of BLOCK output rows: `sums` is its `[≤BLOCK, rows]` part of `out`.
    let block = |bi: usize, sums: &mut [f32]| {
        let o0 = bi * BLOCK;
        match kernel {
            Kernel::Portable => {
                for (k, s) in sums.chunks_mut(rows).enumerate() {
                    let row_bits = bits.row(o0 + k);
                    for (r, s) in s.iter_mut().enumerate() {
                        *s = lut_sum(row_bits, &luts[r]);
                    }
                }
            }
            // SAFETY: `detect` saw AVX-512F on this CPU.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512_block(bits, o0, x, rows, sums) },
        }
    };
    let task = BLOCK * rows;
    if out_f * in_f * rows >= PARALLEL_MIN_BITS && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(task)
            .enumerate()
            .for_each(|(bi, s)| block(bi, s));
    } else {
        out.chunks_mut(task)
            .enumerate()
            .for_each(|(bi, s)| block(bi, s));
    }
}

/// Output rows per task (a multiple of the AVX-512 kernels' 8 and 4).
const BLOCK: usize = 32;

/// The sums of output rows `o0 ..` (as many as `sums` holds, `[k, rows]`)
/// for every input row: 8 output rows × 1 input row, or 4 × 4, per pass
/// over the inputs, so each mask and each input vector loaded serves several
/// independent masked adds (and the add latency is hidden).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_block(bits: &BitMatrix, o0: usize, x: &[f32], rows: usize, sums: &mut [f32]) {
    let in_f = bits.cols();
    let k = sums.len() / rows;
    let xrow = |r: usize| &x[r * in_f..(r + 1) * in_f];
    // Past the last row, a block repeats it; those results are dropped.
    let brow = |o: usize| bits.row(o0 + o.min(k - 1));
    let mut r = 0;
    while r + 4 <= rows {
        let xs = [xrow(r), xrow(r + 1), xrow(r + 2), xrow(r + 3)];
        for ob in (0..k).step_by(4) {
            let rb = [brow(ob), brow(ob + 1), brow(ob + 2), brow(ob + 3)];
            // SAFETY: AVX-512F (caller); every bits row holds ceil(in / 8) bytes.
            let got = unsafe { masked_sums::<4, 4>(&rb, &xs, in_f) };
            for (o, g) in got.iter().enumerate().take(k - ob) {
                sums[(ob + o) * rows + r..(ob + o) * rows + r + 4].copy_from_slice(g);
            }
        }
        r += 4;
    }
    for r in r..rows {
        let xs = [xrow(r)];
        for ob in (0..k).step_by(8) {
            let rb = [0, 1, 2, 3, 4, 5, 6, 7].map(|o| brow(ob + o));
            // SAFETY: as above.
            let got = unsafe { masked_sums::<8, 1>(&rb, &xs, in_f) };
            for (o, g) in got.iter().enumerate().take(k - ob) {
                sums[(ob + o) * rows + r] = g[0];
            }
        }
    }
}

/// `out[o][r] = Σ_{i: bit i of rb[o] set} xs[r][i]` for `O` rows of packed
/// bits and `R` input rows of `n` entries, 16 entries per masked add (bit
/// `k` of byte `j` is entry `8j + k`, so two bytes read little-endian are
/// the mask of 16 consecutive entries).
///
/// # Safety
/// The CPU must have AVX-512F; every `rb[o]` holds at least `ceil(n / 8)`
/// bytes and every `xs[r]` exactly `n` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn masked_sums<const O: usize, const R: usize>(
    rb: &[&[u8]; O],
    xs: &[&[f32]; R],
    n: usize,
) -> [[f32; R]; O] {
    use std::arch::x86_64::*;
    debug_assert!(rb.iter().all(|b| b.len() >= n.div_ceil(8)));
    debug_assert!(xs.iter().all(|x| x.len() == n));
    let chunks = n / 16;
    let mut acc = [[_mm512_setzero_ps(); R]; O];
    for j in 0..chunks {
        // SAFETY: entries 16j .. 16j + 16 lie inside every input row.
        let v: [__m512; R] =
            std::array::from_fn(|r| unsafe { _mm512_loadu_ps(xs[r].as_ptr().add(16 * j)) });
        for o in 0..O {
            // SAFETY: bytes 2j and 2j + 1 < ceil(n / 8) because 16(j + 1) ≤ n.
            let m: u16 = unsafe { rb[o].as_ptr().add(2 * j).cast::<u16>().read_unaligned() };
            let m = u16::from_le(m);
            for r in 0..R {
                acc[o][r] = _mm512_mask_add_ps(acc[o][r], m, acc[o][r], v[r]);
            }
        }
    }
    let rest = n - 16 * chunks;
    if rest > 0 {
        let valid = ((1u32 << rest) - 1) as u16;
        // SAFETY: the masked loads read only the `rest` entries left.
        let v: [__m512; R] = std::array::from_fn(|r| unsafe {
            _mm512_maskz_loadu_ps(valid, xs[r].as_ptr().add(16 * chunks))
        });
        for o in 0..O {
            let lo = u16::from(rb[o][2 * chunks]);
            let hi = u16::from(rb[o].get(2 * chunks + 1).copied().unwrap_or(0));
            let m = (lo | hi << 8) & valid;
            for r in 0..R {
                acc[o][r] = _mm512_mask_add_ps(acc[o][r], m, acc[o][r], v[r]);
            }
        }
    }
    acc.map(|a| a.map(|v| _mm512_reduce_add_ps(v)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if !force_portable() && std::arch::is_x86_feature_detected!("avx512f") {
            return Self::Avx512;
        }
        Self::Portable
    }
}

/// Tests set this to check the portable kernel on a CPU that has AVX-512.
#[cfg(test)]
static FORCE_PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn force_portable() -> bool {
    #[cfg(test)]
    {
        FORCE_PORTABLE.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// Partial sums of `x` per byte of sign bits: entry `256·j + b` is
/// `Σ_{k: bit k of b set} x[8j + k]`. Building it costs 255 additions per 8
/// inputs; afterwards each output row costs one lookup and one addition per
/// byte of its packed signs.
fn byte_sums(x: &[f32]) -> Vec<f32> {
    let nb = x.len().div_ceil(8);
    let mut lut = vec![0.0f32; nb * 256];
    for (j, t) in lut.chunks_exact_mut(256).enumerate() {
        let xs = &x[8 * j..(8 * j + 8).min(x.len())];
        for b in 1..256usize {
            let k = b.trailing_zeros() as usize;
            let xk = xs.get(k).copied().unwrap_or(0.0);
            t[b] = t[b & (b - 1)] + xk;
        }
    }
    lut
}

fn lut_sum(row_bits: &[u8], lut: &[f32]) -> f32 {
    row_bits
        .iter()
        .enumerate()
        .map(|(j, &b)| lut[256 * j + b as usize])
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize, seed: u64) -> (BitMatrix, Vec<u8>) {
        let codes: Vec<u8> = (0..rows * cols)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 7919)) % 13 < 6) as u8)
            .collect();
        (BitMatrix::pack(rows, cols, 1, &codes).unwrap(), codes)
    }

    fn check(out_f: usize, in_f: usize, rows: usize) {
        let (bits, codes) = matrix(out_f, in_f, (out_f * in_f) as u64);
        let x: Vec<f32> = (0..rows * in_f)
            .map(|i| ((i as f32) * 0.731).sin())
            .collect();
        let mut got = vec![f32::NAN; out_f * rows];
        positive_sums(&bits, &x, rows, &mut got);
        for o in 0..out_f {
            for r in 0..rows {
                let want: f64 = (0..in_f)
                    .filter(|&i| codes[o * in_f + i] == 1)
                    .map(|i| f64::from(x[r * in_f + i]))
                    .sum();
                let g = f64::from(got[o * rows + r]);
                assert!(
                    (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "[{out_f}x{in_f}, {rows} rows] row {o}, input {r}: {g} vs {want}"
                );
            }
        }
    }

    /// Widths around the 16-entry chunks, input rows around the 4-row
    /// blocks, output rows around the 8/4-row and 32-row blocks, matrices
    /// large enough to run on the thread pool.
    fn all_shapes() {
        for in_f in [1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 576] {
            for rows in [1, 3, 4, 5, 9] {
                check(9, in_f, rows);
            }
        }
        // Output rows past whole blocks of 32 / 8 / 4; the thread pool.
        check(70, 33, 6);
        check(700, 300, 2);
        check(333, 200, 5);
    }

    #[test]
    fn both_kernels_sum_exactly_the_set_entries() {
        // One test (not two) so the portable switch never races another test.
        all_shapes();
        FORCE_PORTABLE.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(Kernel::detect(), Kernel::Portable);
        all_shapes();
        FORCE_PORTABLE.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}
