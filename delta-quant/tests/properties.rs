//! Laws that hold for every input, checked with proptest.

mod common;

use common::{matrix, ALL_METHODS};
use delta_quant::pack::{pack_row, row_bytes, unpack_row};
use delta_quant::{
    parse_method, BitDelta, BitMatrix, CompressContext, Compressed, Compressor, Dare, DeltaFile,
    DeltaFileHeader, DeltaFileWriter, DeltaMatrix, LowRank, Magnitude, MultiMask, Rtn, SvdSolver,
};
use proptest::prelude::*;

fn ctx() -> CompressContext<'static> {
    CompressContext::new("t", 7)
}

/// ‖Δ − α·S‖² in f64.
fn sign_fit_error(d: &DeltaMatrix, alpha: f64) -> f64 {
    d.data()
        .iter()
        .map(|&x| {
            let s = if x >= 0.0 { 1.0 } else { -1.0 };
            (x as f64 - alpha * s).powi(2)
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn bitdelta_alpha_is_mean_abs_and_minimises_error(d in matrix(), eps in 1e-3f64..0.5) {
        let Compressed::BitDelta(p) = BitDelta::default().compress_matrix(&d, &ctx()).unwrap() else { panic!() };
        let alpha = p.scales()[0] as f64;
        let mean_abs = d.data().iter().map(|x| x.abs() as f64).sum::<f64>() / d.len() as f64;
        prop_assert!((alpha - mean_abs).abs() <= 1e-6 * mean_abs.max(1e-30));
        let e = sign_fit_error(&d, alpha);
        let nudge = if alpha > 0.0 { alpha * 1e-4 } else { 1e-3 };
        for other in [alpha * (1.0 + eps), alpha * (1.0 - eps), alpha + nudge, (alpha - nudge).max(0.0)] {
            // f32 rounding of α can cost at most ~n·(α·2⁻²⁴)² — negligible.
            prop_assert!(e <= sign_fit_error(&d, other) * (1.0 + 1e-9) + 1e-12, "α={alpha} other={other}");
        }
        // Reconstruction is α·sign(Δ), sign(0) = +1.
        let rec = p.reconstruct();
        for (&x, &y) in d.data().iter().zip(rec.data()) {
            prop_assert_eq!(y, if x >= 0.0 { alpha as f32 } else { -(alpha as f32) });
        }
    }

    #[test]
    fn bitdelta_per_row_scales_are_row_means(d in matrix()) {
        let Compressed::BitDelta(p) = BitDelta::new(true).compress_matrix(&d, &ctx()).unwrap() else { panic!() };
        for i in 0..d.rows() {
            let m = d.row(i).iter().map(|x| x.abs() as f64).sum::<f64>() / d.cols() as f64;
            prop_assert!((p.scales()[i] as f64 - m).abs() <= 1e-6 * m.max(1e-30));
        }
    }

    #[test]
    fn pack_unpack_exact(rows in 0usize..6, cols in 0usize..70, bits in 1u8..=8, seed in any::<u64>()) {
        let mut s = seed;
        let codes: Vec<u8> = (0..rows * cols).map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as u8) & (((1u16 << bits) - 1) as u8)
        }).collect();
        let m = BitMatrix::pack(rows, cols, bits, &codes).unwrap();
        prop_assert_eq!(m.as_bytes().len(), rows * row_bytes(cols, bits));
        prop_assert_eq!(m.unpack(), codes.clone());
        for i in 0..rows {
            for j in 0..cols {
                prop_assert_eq!(m.get(i, j), codes[i * cols + j]);
            }
        }
        // Bytes survive a round trip through from_bytes (padding is zero).
        let again = BitMatrix::from_bytes(rows, cols, bits, m.as_bytes().to_vec()).unwrap();
        prop_assert_eq!(&again, &m);
        // Row-level API agrees.
        if rows > 0 {
            let mut out = vec![0u8; row_bytes(cols, bits)];
            pack_row(&codes[..cols], bits, &mut out);
            prop_assert_eq!(&out[..], m.row(0));
            let mut back = vec![0u8; cols];
            unpack_row(&out, bits, &mut back);
            prop_assert_eq!(&back[..], &codes[..cols]);
        }
    }

    #[test]
    fn rtn_error_at_most_half_step(d in matrix(), bits in 2u8..=8, group in 1usize..50) {
        let c = Rtn::new(bits, group).unwrap().compress_matrix(&d, &ctx()).unwrap();
        let Compressed::Rtn(p) = &c else { panic!() };
        let rec = c.reconstruct();
        let groups = d.cols().div_ceil(group);
        for i in 0..d.rows() {
            for j in 0..d.cols() {
                let s = p.scales()[i * groups + j / group];
                let err = (d.data()[i * d.cols() + j] - rec.data()[i * d.cols() + j]).abs();
                // scale/2 plus f32 rounding of (q − z)·scale.
                prop_assert!(err <= s * (0.5 + 1e-4), "err {err} > {s}/2 at ({i},{j})");
                if d.data()[i * d.cols() + j] == 0.0 {
                    prop_assert_eq!(rec.data()[i * d.cols() + j], 0.0);
                }
            }
        }
    }

    #[test]
    fn svd_error_non_increasing_in_rank_and_zero_at_full_rank(d in matrix()) {
        let full = d.rows().min(d.cols());
        let norm = d.squared_norm();
        let mut prev = f64::INFINITY;
        for r in 0..=full {
            let c = LowRank { rank: r, solver: SvdSolver::Exact }.compress_matrix(&d, &ctx()).unwrap();
            let e = d.squared_error(&c.reconstruct());
            prop_assert!(e <= prev * (1.0 + 1e-6) + 1e-9 * norm, "rank {r}: {e} > {prev}");
            prev = e;
        }
        prop_assert!(prev <= 1e-10 * norm + 1e-20, "full-rank error {prev} vs ‖Δ‖² {norm}");
    }

    #[test]
    fn magnitude_keeps_exactly_the_largest(d in matrix(), density in 0.0f64..=1.0) {
        let m = Magnitude::new(density).unwrap();
        let Compressed::Sparse(p) = m.compress_matrix(&d, &ctx()).unwrap() else { panic!() };
        let k = (density * d.len() as f64).round() as usize;
        prop_assert_eq!(p.nnz(), k);
        let kept: std::collections::HashSet<u32> = p.indices().iter().copied().collect();
        let min_kept = p.indices().iter().map(|&i| d.data()[i as usize].abs()).fold(f32::INFINITY, f32::min);
        for (i, &x) in d.data().iter().enumerate() {
            if !kept.contains(&(i as u32)) {
                prop_assert!(x.abs() <= min_kept);
            } else {
                prop_assert_eq!(p.reconstruct().data()[i], x);
            }
        }
    }

    #[test]
    fn multimask_error_non_increasing_in_k(d in matrix(), per_row in any::<bool>()) {
        let norm2: f64 = d.data().iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let mut prev = f64::INFINITY;
        for k in 1..=5 {
            let c = MultiMask::new(k, per_row).compress_matrix(&d, &ctx()).unwrap();
            let e = d.squared_error(&c.reconstruct());
            // Exact in real arithmetic. f32 rounding of the reconstruction is
            // relative to the delta's own size (a 40.0 entry rounds at ~2e-6),
            // so the slack scales with ‖Δ‖², not with the (possibly ~0) error.
            let slack = 1e-10 * norm2 + 1e-12;
            prop_assert!(e <= prev * (1.0 + 1e-5) + slack, "k={k}: {e} > {prev}");
            prev = e;
        }
        // k = 1 is BitDelta.
        let one = MultiMask::new(1, per_row).compress_matrix(&d, &ctx()).unwrap().reconstruct();
        let bd = BitDelta::new(per_row).compress_matrix(&d, &ctx()).unwrap().reconstruct();
        prop_assert_eq!(one, bd);
    }

    #[test]
    fn zero_delta_reconstructs_to_zero(rows in 1usize..10, cols in 1usize..40) {
        let d = DeltaMatrix::zeros(rows, cols);
        for m in ALL_METHODS {
            let c = parse_method(m).unwrap().compress_matrix(&d, &ctx()).unwrap();
            prop_assert!(c.reconstruct().data().iter().all(|&x| x == 0.0), "{m}");
        }
    }

    #[test]
    fn parts_round_trip_and_storage_bytes(d in matrix()) {
        for m in ALL_METHODS {
            let c = parse_method(m).unwrap().compress_matrix(&d, &ctx()).unwrap();
            let parts = c.to_parts();
            let sum: u64 = parts.payloads.iter().map(|(_, p)| p.nbytes()).sum();
            prop_assert_eq!(sum, c.storage_bytes(), "{}", m);
            prop_assert_eq!(c.shape(), d.shape());
            let back = Compressed::from_parts("t", &parts).unwrap();
            prop_assert_eq!(&back, &c, "{}", m);
        }
    }
}

proptest! {
    // Each case writes and reads files: fewer cases.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn file_round_trip_is_exact_for_every_method(d in matrix(), carried in proptest::collection::vec(any::<u8>(), 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        for m in ALL_METHODS {
            let comp = parse_method(m).unwrap();
            let c = comp.compress_matrix(&d, &CompressContext::new("layer.q_proj.weight", 1)).unwrap();
            let path = dir.path().join("delta.safetensors");
            let header = DeltaFileHeader::new(comp.as_ref(), "sha256:base").with_finetuned("ft-model").with_seed(u64::MAX);
            let mut w = DeltaFileWriter::create(&path, header.clone()).unwrap();
            w.add_compressed("layer.q_proj.weight", &c).unwrap();
            let n = carried.len() / 2 * 2;
            // Clear one exponent bit of each bf16 so no value is NaN/Inf
            // (the writer refuses those).
            let carried: Vec<u8> = carried.iter().enumerate().map(|(i, b)| if i % 2 == 1 { b & !0x40 } else { *b }).collect();
            w.add_carried("model.norm.weight", delta_quant::Dtype::BF16, &[n / 2], &carried[..n]).unwrap();
            w.finish().unwrap();

            let f = DeltaFile::open(&path).unwrap();
            prop_assert_eq!(f.header(), &header);
            prop_assert_eq!(&f.compressed("layer.q_proj.weight").unwrap(), &c, "{}", m);
            let rec = f.compressed("layer.q_proj.weight").unwrap().reconstruct();
            let want = c.reconstruct();
            prop_assert!(rec.data().iter().zip(want.data()).all(|(a, b)| a.to_bits() == b.to_bits()));
            let t = f.carried("model.norm.weight").unwrap();
            prop_assert_eq!(t.data, &carried[..n]);
            prop_assert_eq!(t.dtype, delta_quant::Dtype::BF16);
            prop_assert_eq!(t.shape, &[n / 2][..]);
            prop_assert_eq!(f.entries().len(), 2);
        }
    }
}

/// Hoeffding: the mean of `n` independent draws from an interval of width
/// `width` is within this distance of its expectation except with
/// probability 1e-12.
fn hoeffding_t(n: usize, width: f64) -> f64 {
    width * ((2.0f64 / 1e-12).ln() / (2.0 * n as f64)).sqrt()
}

proptest! {
    // Each case compresses the matrix once per seed.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn dare_is_unbiased_on_average_over_seeds(d in matrix(), p in 0.05f64..0.9, first_seed in any::<u64>()) {
        let seeds = 400usize;
        let dare = Dare::new(p, None).unwrap();
        let mut sum = vec![0f64; d.len()];
        for s in 0..seeds {
            let seed = first_seed.wrapping_add(s as u64);
            let c = dare.compress_matrix(&d, &CompressContext::new("w", seed)).unwrap();
            for (acc, &x) in sum.iter_mut().zip(c.reconstruct().data()) {
                *acc += x as f64;
            }
        }
        // Per entry: each draw is 0 or x/(1-p), an interval of width |x|/(1-p).
        // Pooled: z = sign(x)·(draw − x)/|x| lies in [−1, p/(1−p)] with mean 0,
        // independently over entries and seeds — a much sharper check (a DARE
        // without the rescale has E[z] = −p).
        let (mut z_sum, mut z_n) = (0f64, 0usize);
        for (i, &x) in d.data().iter().enumerate() {
            let mean = sum[i] / seeds as f64;
            if x == 0.0 {
                prop_assert_eq!(mean, 0.0);
                continue;
            }
            let x = x as f64;
            let t = hoeffding_t(seeds, x.abs() / (1.0 - p)) + 1e-6 * x.abs();
            prop_assert!((mean - x).abs() <= t, "entry {}: mean {} vs {} (t = {})", i, mean, x, t);
            z_sum += (sum[i] - seeds as f64 * x) / x.abs() * x.signum();
            z_n += seeds;
        }
        if z_n > 0 {
            let z_mean = z_sum / z_n as f64;
            let t = hoeffding_t(z_n, 1.0 / (1.0 - p)) + 1e-6;
            prop_assert!(z_mean.abs() <= t, "pooled relative bias {} (t = {})", z_mean, t);
        }
    }
}
