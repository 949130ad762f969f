//! `Σ_{i: bit i set} x_i` for every row of a packed sign matrix: the only
//! work a BitDelta / multi-mask tenant adds to a projection
//! (`Δ̂x = α·(2·Σ_{s=+1} x − Σ x)`).
//!
//! Three kernels compute the same sums:
//! - **AVX-512** (x86-64 CPUs that have it, detected at run time: Intel
//!   since Skylake-SP, AMD since Zen 4): 16 sign bits are one mask register,
//!   so 16 entries cost one masked add of 16 inputs, and the bits stream
//!   straight from the packed bytes (1/32 of an f32 weight's bytes).
//! - **AVX2** (the x86-64 CPUs without AVX-512, e.g. AMD Zen 2/3): a byte
//!   of signs picks one of 256 lane masks (a table in L1), then an AND and
//!   an add per 8 entries.
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
        Kernel::Avx512 | Kernel::Avx2 => Vec::new(),
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
            Kernel::Avx512 => unsafe {
                blocked(
                    bits,
                    o0,
                    x,
                    rows,
                    sums,
                    masked_sums::<4, 4>,
                    masked_sums::<8, 1>,
                )
            },
            // SAFETY: `detect` saw AVX2 on this CPU.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe {
                blocked(
                    bits,
                    o0,
                    x,
                    rows,
                    sums,
                    avx2_sums::<4, 2>,
                    avx2_sums::<8, 1>,
                )
            },
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

/// A kernel's sums of `O` rows of packed bits over `R` input rows of `n` entries.
#[cfg(target_arch = "x86_64")]
type Sums<const O: usize, const R: usize> =
    unsafe fn(&[&[u8]; O], &[&[f32]; R], usize) -> [[f32; R]; O];

/// The sums of output rows `o0 ..` (as many as `sums` holds, `[k, rows]`)
/// for every input row: `OM` output rows × `RM` input rows per pass of
/// `multi` over the inputs, then `OS` × 1 per pass of `single` for the input
/// rows left, so each mask and each input vector loaded serves several
/// independent adds (and the add latency is hidden).
///
/// # Safety
/// The CPU must have the features `multi` and `single` were compiled for.
#[cfg(target_arch = "x86_64")]
unsafe fn blocked<const OM: usize, const RM: usize, const OS: usize>(
    bits: &BitMatrix,
    o0: usize,
    x: &[f32],
    rows: usize,
    sums: &mut [f32],
    multi: Sums<OM, RM>,
    single: Sums<OS, 1>,
) {
    let in_f = bits.cols();
    let k = sums.len() / rows;
    let xrow = |r: usize| &x[r * in_f..(r + 1) * in_f];
    // Past the last row, a block repeats it; those results are dropped.
    let brow = |o: usize| bits.row(o0 + o.min(k - 1));
    let mut r = 0;
    while r + RM <= rows {
        let xs: [&[f32]; RM] = std::array::from_fn(|i| xrow(r + i));
        for ob in (0..k).step_by(OM) {
            let rb: [&[u8]; OM] = std::array::from_fn(|o| brow(ob + o));
            // SAFETY: the CPU features (caller); every bits row holds ceil(in / 8) bytes.
            let got = unsafe { multi(&rb, &xs, in_f) };
            for (o, g) in got.iter().enumerate().take(k - ob) {
                sums[(ob + o) * rows + r..(ob + o) * rows + r + RM].copy_from_slice(g);
            }
        }
        r += RM;
    }
    for r in r..rows {
        let xs = [xrow(r)];
        for ob in (0..k).step_by(OS) {
            let rb: [&[u8]; OS] = std::array::from_fn(|o| brow(ob + o));
            // SAFETY: as above.
            let got = unsafe { single(&rb, &xs, in_f) };
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

/// Lane masks of a byte of sign bits: lane `k` of entry `b` is all ones
/// when bit `k` of `b` is set.
#[cfg(target_arch = "x86_64")]
static BYTE_MASKS: [[i32; 8]; 256] = {
    let mut t = [[0i32; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        while k < 8 {
            if b >> k & 1 == 1 {
                t[b][k] = -1;
            }
            k += 1;
        }
        b += 1;
    }
    t
};

/// The AVX2 form of [`masked_sums`]: 8 entries per step, the byte of signs
/// turned into a lane mask by [`BYTE_MASKS`] (8 KiB, stays in L1), then an
/// AND and an add.
///
/// # Safety
/// The CPU must have AVX2; every `rb[o]` holds at least `ceil(n / 8)` bytes
/// and every `xs[r]` exactly `n` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_sums<const O: usize, const R: usize>(
    rb: &[&[u8]; O],
    xs: &[&[f32]; R],
    n: usize,
) -> [[f32; R]; O] {
    use std::arch::x86_64::*;
    debug_assert!(rb.iter().all(|b| b.len() >= n.div_ceil(8)));
    debug_assert!(xs.iter().all(|x| x.len() == n));
    let chunks = n / 8;
    let mut acc = [[_mm256_setzero_ps(); R]; O];
    for j in 0..chunks {
        // SAFETY: entries 8j .. 8j + 8 lie inside every input row.
        let v: [__m256; R] =
            std::array::from_fn(|r| unsafe { _mm256_loadu_ps(xs[r].as_ptr().add(8 * j)) });
        for o in 0..O {
            // SAFETY: byte j < ceil(n / 8); BYTE_MASKS rows are 8 lanes.
            let m = unsafe {
                let b = *rb[o].get_unchecked(j);
                _mm256_castsi256_ps(_mm256_loadu_si256(BYTE_MASKS[b as usize].as_ptr().cast()))
            };
            for r in 0..R {
                acc[o][r] = _mm256_add_ps(acc[o][r], _mm256_and_ps(m, v[r]));
            }
        }
    }
    let mut out = [[0.0f32; R]; O];
    for o in 0..O {
        for r in 0..R {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[o][r]) };
            let mut sum = lanes.iter().sum::<f32>();
            // The entries past the last whole byte.
            if let Some(&b) = rb[o].get(chunks) {
                for (k, &v) in xs[r][8 * chunks..].iter().enumerate() {
                    if b >> k & 1 == 1 {
                        sum += v;
                    }
                }
            }
            out[o][r] = sum;
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let ceiling = kernel_ceiling();
            if ceiling >= 2 && std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if ceiling >= 1 && std::arch::is_x86_feature_detected!("avx2") {
                return Self::Avx2;
            }
        }
        Self::Portable
    }
}

/// Tests lower this to check the slower kernels on a CPU that has the
/// faster ones: 2 allows AVX-512, 1 at most AVX2, 0 only the portable one.
#[cfg(test)]
static KERNEL_CEILING: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(2);

fn kernel_ceiling() -> u8 {
    #[cfg(test)]
    {
        KERNEL_CEILING.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(test))]
    {
        2
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
    fn every_kernel_sums_exactly_the_set_entries() {
        // One test (not three) so the kernel switch never races another test.
        use std::sync::atomic::Ordering::Relaxed;
        for ceiling in [2, 1, 0] {
            KERNEL_CEILING.store(ceiling, Relaxed);
            eprintln!("ceiling {ceiling}: {:?}", Kernel::detect());
            all_shapes();
        }
        assert_eq!(Kernel::detect(), Kernel::Portable);
        KERNEL_CEILING.store(2, Relaxed);
    }
}
