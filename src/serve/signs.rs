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
//! Output rows are split over the rayon threads when the matrix is large;
//! several input rows (a prefill chunk of one tenant) reuse each row of bits
//! while it is in L1.

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
    let one = |o: usize, sums: &mut [f32]| {
        let row_bits = bits.row(o);
        for (r, s) in sums.iter_mut().enumerate() {
            let xr = &x[r * in_f..(r + 1) * in_f];
            *s = match kernel {
                Kernel::Portable => lut_sum(row_bits, &luts[r]),
                // SAFETY: `detect` saw AVX-512F on this CPU; `row_bits`
                // holds `ceil(in / 8)` bytes for the `in` entries of `xr`.
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => unsafe { masked_sum_avx512(row_bits, xr) },
            };
        }
    };
    if out_f * in_f * rows >= PARALLEL_MIN_BITS && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(rows)
            .enumerate()
            .for_each(|(o, s)| one(o, s));
    } else {
        out.chunks_mut(rows)
            .enumerate()
            .for_each(|(o, s)| one(o, s));
    }
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

/// `Σ_{i: bit i of row_bits set} x_i`, 16 entries per masked add (bit `k`
/// of byte `j` is entry `8j + k`, so two bytes read little-endian are the
/// mask of 16 consecutive entries). Four accumulators hide the add latency.
///
/// # Safety
/// The CPU must have AVX-512F, and `row_bits` must hold at least
/// `ceil(x.len() / 8)` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn masked_sum_avx512(row_bits: &[u8], x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len();
    debug_assert!(row_bits.len() >= n.div_ceil(8));
    let chunks = n / 16;
    let mask = |j: usize| u16::from_le_bytes([row_bits[2 * j], row_bits[2 * j + 1]]);
    let p = x.as_ptr();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut j = 0;
    while j + 4 <= chunks {
        for (u, a) in acc.iter_mut().enumerate() {
            // SAFETY: entries 16(j+u) .. 16(j+u)+16 lie inside `x`.
            let v = unsafe { _mm512_loadu_ps(p.add(16 * (j + u))) };
            *a = _mm512_mask_add_ps(*a, mask(j + u), *a, v);
        }
        j += 4;
    }
    while j < chunks {
        // SAFETY: as above.
        let v = unsafe { _mm512_loadu_ps(p.add(16 * j)) };
        acc[0] = _mm512_mask_add_ps(acc[0], mask(j), acc[0], v);
        j += 1;
    }
    let rest = n - 16 * chunks;
    if rest > 0 {
        let lo = u16::from(row_bits[2 * chunks]);
        let hi = u16::from(row_bits.get(2 * chunks + 1).copied().unwrap_or(0));
        let valid = ((1u32 << rest) - 1) as u16;
        let m = (lo | hi << 8) & valid;
        // SAFETY: the masked load reads only the `rest` entries left in `x`.
        let v = unsafe { _mm512_maskz_loadu_ps(m, p.add(16 * chunks)) };
        acc[1] = _mm512_add_ps(acc[1], v);
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(s)
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

    /// Widths around the 16-entry chunks and the 4-chunk unroll, one and
    /// several input rows, a matrix large enough to run on the thread pool.
    fn all_shapes() {
        for in_f in [1, 7, 8, 15, 16, 17, 63, 64, 65, 100, 576] {
            for rows in [1, 3] {
                check(9, in_f, rows);
            }
        }
        check(700, 300, 2);
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
