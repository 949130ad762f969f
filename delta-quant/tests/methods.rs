//! Deterministic checks of each method, the parser and pipelines.

mod common;

use common::{random_matrix, ALL_METHODS};
use delta_quant::{
    parse_method, BitDelta, BitMatrix, CompressContext, CompressTensor, Compressed, Compressor,
    Dare, DeltaCome, DeltaMatrix, LowRank, QuantError, SvdSolver, METHODS,
};

fn ctx(name: &str) -> CompressContext<'_> {
    CompressContext::new(name, 0)
}

#[test]
fn every_method_parses_with_defaults_and_spec_round_trips() {
    for (name, _) in METHODS {
        let c = parse_method(name).unwrap();
        assert_eq!(c.method(), *name);
        let again = parse_method(&c.spec()).unwrap();
        assert_eq!(again.spec(), c.spec());
        assert_eq!(again.params(), c.params());
    }
    for m in ALL_METHODS {
        let c = parse_method(m).unwrap();
        assert_eq!(parse_method(&c.spec()).unwrap().spec(), c.spec(), "{m}");
    }
    let p = parse_method(" dare : p = 0.5 , seed=1 + bitdelta:per_row=true").unwrap();
    assert_eq!(p.method(), "pipeline");
    assert_eq!(p.spec(), "dare:p=0.5,seed=1+bitdelta:per_row=true");
    assert_eq!(
        parse_method("rtn:bits=4,group=128").unwrap().spec(),
        "rtn:bits=4,group=128"
    );
}

#[test]
fn parse_errors_are_typed_and_list_valid_choices() {
    match parse_method("bitdeltaa").unwrap_err() {
        QuantError::UnknownMethod { name, valid } => {
            assert_eq!(name, "bitdeltaa");
            for (m, _) in METHODS {
                assert!(valid.contains(m), "{valid}");
            }
        }
        e => panic!("{e}"),
    }
    match parse_method("rtn:bits=4,grp=3").unwrap_err() {
        QuantError::UnknownParam {
            method,
            param,
            valid,
        } => {
            assert_eq!((method.as_str(), param.as_str()), ("rtn", "grp"));
            assert_eq!(valid, "bits, group");
        }
        e => panic!("{e}"),
    }
    for (spec, param) in [
        ("rtn:bits=9", "bits"),
        ("rtn:bits=1", "bits"),
        ("rtn:group=0", "group"),
        ("dare:p=1", "p"),
        ("dare:p=-0.1", "p"),
        ("dare:p=nan", "p"),
        ("magnitude:density=1.5", "density"),
        ("compeft:alpha=0", "alpha"),
        ("bitdelta:per_row=yes", "per_row"),
        ("multimask:k=0", "k"),
        ("svd:solver=qr", "solver"),
        ("deltacome:schedule=8x*/2x3", "schedule"),
        ("deltacome:schedule=9x2", "schedule"),
    ] {
        match parse_method(spec).unwrap_err() {
            QuantError::InvalidParam { param: p, .. } => assert_eq!(p, param, "{spec}"),
            e => panic!("{spec}: {e}"),
        }
    }
    for spec in [
        "",
        "bitdelta+",
        "rtn:bits",
        "rtn:bits=4,,group=2",
        "rtn:bits=4,bits=3",
        ":bits=3",
    ] {
        assert!(
            matches!(parse_method(spec).unwrap_err(), QuantError::Syntax { .. }),
            "{spec}"
        );
    }
}

#[test]
fn bitdelta_known_values_and_sign_of_zero() {
    // Width 10: two bytes per row, the second only 2 bits used.
    let data = vec![
        1.0, -2.0, 0.0, -0.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0, //
        -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0,
    ];
    let d = DeltaMatrix::new(2, 10, data.clone()).unwrap();
    let c = BitDelta::default().compress_matrix(&d, &ctx("w")).unwrap();
    let Compressed::BitDelta(p) = &c else {
        panic!()
    };
    assert_eq!(p.scales(), &[46.0 / 20.0]);
    // Row 0: + - + + + - + - | + -  (0 and -0 are +1), LSB first.
    assert_eq!(p.signs().row(0), &[0b0101_1101, 0b01]);
    assert_eq!(p.signs().row(1), &[0b1010_1010, 0b10]);
    assert_eq!(c.storage_bytes(), 4 + 4);
    let rec = c.reconstruct();
    assert_eq!(rec.data()[2], 2.3);
    assert_eq!(rec.data()[3], 2.3);
    assert_eq!(rec.data()[1], -2.3);

    let Compressed::BitDelta(pr) = BitDelta::new(true).compress_matrix(&d, &ctx("w")).unwrap()
    else {
        panic!()
    };
    assert_eq!(pr.scales(), &[3.6, 1.0]);
}

#[test]
fn bitdelta_with_given_scales() {
    let signs = BitMatrix::pack(2, 3, 1, &[1, 0, 1, 0, 0, 1]).unwrap();
    let c = BitDelta::with_scales(signs.clone(), vec![0.5, 2.0]).unwrap();
    assert_eq!(c.reconstruct().data(), &[0.5, -0.5, 0.5, -2.0, -2.0, 2.0]);
    assert_eq!(c.storage_bytes(), 2 + 8);
    assert!(BitDelta::with_scales(signs, vec![1.0; 3]).is_err());
}

#[test]
fn storage_bytes_formulas() {
    let d = random_matrix(6, 37, 1);
    let b = |m: &str| {
        parse_method(m)
            .unwrap()
            .compress_matrix(&d, &ctx("w"))
            .unwrap()
            .storage_bytes()
    };
    assert_eq!(b("bitdelta"), 6 * 5 + 4);
    assert_eq!(b("bitdelta:per_row=true"), 6 * 5 + 6 * 4);
    assert_eq!(b("multimask:k=3"), 3 * (6 * 5 + 4));
    // 37 codes x 3 bits = 111 bits = 14 bytes per row; groups ceil(37/16) = 3.
    assert_eq!(b("rtn:bits=3,group=16"), 6 * 14 + 6 * 3 * 5);
    assert_eq!(b("svd:rank=4"), 4 * 4 * (6 + 37));
    let k = (0.25f64 * 222.0).round() as u64;
    assert_eq!(b("magnitude:density=0.25"), 8 * k);
    // deltacome: rank 5, bits [8, 3, 3, 2, 2].
    let dc = DeltaCome {
        rank: 5,
        schedule: vec![(8, Some(1)), (3, Some(2)), (2, None)],
        solver: SvdSolver::Exact,
    };
    assert_eq!(dc.bit_widths(6), vec![8, 3, 3, 2, 2]);
    let code_bytes = |len: usize| {
        [8, 3, 3, 2, 2]
            .iter()
            .map(|&b| (len * b).div_ceil(8))
            .sum::<usize>() as u64
    };
    let c = dc.compress_matrix(&d, &ctx("w")).unwrap();
    assert_eq!(
        c.storage_bytes(),
        5 * 4 + 2 * 5 * 5 + code_bytes(6) + code_bytes(37)
    );
}

#[test]
fn non_finite_input_is_a_typed_error_naming_the_tensor() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut d = random_matrix(4, 19, 2);
        d.data_mut()[19 + 2] = bad;
        for m in common::ALL_METHODS {
            let err = parse_method(m)
                .unwrap()
                .compress_matrix(&d, &ctx("model.layers.3.mlp.up_proj.weight"))
                .unwrap_err();
            match err {
                QuantError::NonFinite {
                    tensor, row, col, ..
                } => {
                    assert_eq!(tensor, "model.layers.3.mlp.up_proj.weight", "{m}");
                    assert_eq!((row, col), (1, 2), "{m}");
                }
                e => panic!("{m}: {e}"),
            }
        }
    }
}

#[test]
fn burn_tensor_path_equals_matrix_path() {
    use burn::backend::NdArray;
    let device = Default::default();
    let d = random_matrix(5, 23, 3);
    for m in ALL_METHODS {
        let c = parse_method(m).unwrap();
        let via_tensor = c
            .compress(d.to_tensor::<NdArray>(&device), &ctx("w"))
            .unwrap();
        assert_eq!(via_tensor, c.compress_matrix(&d, &ctx("w")).unwrap(), "{m}");
        let rec =
            DeltaMatrix::from_tensor(via_tensor.reconstruct_tensor::<NdArray>(&device)).unwrap();
        assert_eq!(rec, via_tensor.reconstruct());
    }
}

#[test]
fn dare_streams_are_per_tensor_and_reproducible() {
    let d = random_matrix(16, 64, 4);
    let dare = Dare::new(0.5, None).unwrap();
    let a = dare
        .compress_matrix(&d, &CompressContext::new("a", 5))
        .unwrap();
    assert_eq!(
        a,
        dare.compress_matrix(&d, &CompressContext::new("a", 5))
            .unwrap()
    );
    assert_ne!(
        a,
        dare.compress_matrix(&d, &CompressContext::new("b", 5))
            .unwrap()
    );
    assert_ne!(
        a,
        dare.compress_matrix(&d, &CompressContext::new("a", 6))
            .unwrap()
    );
    // seed= in the method string overrides the context seed.
    let fixed = Dare::new(0.5, Some(9)).unwrap();
    assert_eq!(
        fixed
            .compress_matrix(&d, &CompressContext::new("a", 1))
            .unwrap(),
        fixed
            .compress_matrix(&d, &CompressContext::new("a", 2))
            .unwrap()
    );
    // Survivors are rescaled by exactly 1/(1-p).
    let Compressed::Sparse(p) = &a else { panic!() };
    for (&i, &v) in p.indices().iter().zip(p.values()) {
        assert_eq!(v, d.data()[i as usize] * 2.0);
    }
}

/// Hoeffding: for i.i.d. X in [a, b], P(|mean − E| ≥ t) ≤ 2·exp(−2Nt²/(b−a)²).
/// We pick t for a failure probability of 1e-12 per entry, so with a few
/// hundred entries the test cannot fail by chance (and the seeds are fixed,
/// so it is deterministic anyway).
fn hoeffding_t(n: usize, range: f64) -> f64 {
    range * ((2.0f64 / 1e-12).ln() / (2.0 * n as f64)).sqrt()
}

#[test]
fn dare_is_unbiased_over_seeds() {
    let d = random_matrix(8, 16, 5);
    let p = 0.7;
    let dare = Dare::new(p, None).unwrap();
    let n = 3000;
    let mut sum = vec![0f64; d.len()];
    let mut kept = 0usize;
    for seed in 0..n {
        let c = dare
            .compress_matrix(&d, &CompressContext::new("w", seed as u64))
            .unwrap();
        if let Compressed::Sparse(s) = &c {
            kept += s.nnz();
        }
        for (acc, &x) in sum.iter_mut().zip(c.reconstruct().data()) {
            *acc += x as f64;
        }
    }
    for (i, &x) in d.data().iter().enumerate() {
        let mean = sum[i] / n as f64;
        let t = hoeffding_t(n, x.abs() as f64 / (1.0 - p));
        assert!(
            (mean - x as f64).abs() <= t,
            "entry {i}: mean {mean} vs {x} (t = {t})"
        );
    }
    // Keep rate: Bernoulli(1 − p) over n·len draws.
    let rate = kept as f64 / (n * d.len()) as f64;
    assert!((rate - (1.0 - p)).abs() <= hoeffding_t(n * d.len(), 1.0));
}

#[test]
fn pipeline_keeps_the_sparsity_mask() {
    let d = random_matrix(7, 29, 6);
    let c = parse_method("dare:p=0.6,seed=1+bitdelta")
        .unwrap()
        .compress_matrix(&d, &ctx("w"))
        .unwrap();
    let Compressed::Masked(m) = &c else {
        panic!("expected a mask, got {}", c.kind())
    };
    assert_eq!(m.inner.kind(), "bitdelta");
    let dare = parse_method("dare:p=0.6,seed=1")
        .unwrap()
        .compress_matrix(&d, &ctx("w"))
        .unwrap()
        .reconstruct();
    let rec = c.reconstruct();
    // α of the BitDelta stage is mean |DARE output| (zeros included).
    let alpha = dare.data().iter().map(|x| x.abs() as f64).sum::<f64>() / d.len() as f64;
    for (&x, &y) in dare.data().iter().zip(rec.data()) {
        if x == 0.0 {
            assert_eq!(y, 0.0);
        } else {
            assert!((y.abs() as f64 - alpha).abs() < 1e-6 * alpha && y.signum() == x.signum());
        }
    }
    assert_eq!(c.storage_bytes(), 2 * 7 * 4 + 4);
    // A last stage that keeps zeros needs no mask.
    let c2 = parse_method("dare:p=0.6+magnitude:density=0.2")
        .unwrap()
        .compress_matrix(&d, &ctx("w"))
        .unwrap();
    assert_eq!(c2.kind(), "sparse");
}

#[test]
fn compeft_is_ternary_with_std_scale() {
    let d = random_matrix(10, 40, 7);
    let n = d.len() as f64;
    let mean = d.data().iter().map(|&x| x as f64).sum::<f64>() / n;
    let std = (d
        .data()
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    for (density, layout_bytes) in [(0.3, 10 * 10), (0.02, 4 * 8 + 1)] {
        let c = parse_method(&format!("compeft:density={density},alpha=2"))
            .unwrap()
            .compress_matrix(&d, &ctx("w"))
            .unwrap();
        let Compressed::Ternary(t) = &c else { panic!() };
        assert!((t.scale() as f64 - 2.0 * std).abs() < 1e-6 * std);
        assert_eq!(c.storage_bytes(), 4 + layout_bytes);
        let rec = c.reconstruct();
        let k = (density * n).round() as usize;
        assert_eq!(rec.data().iter().filter(|&&x| x != 0.0).count(), k);
        for (&x, &y) in d.data().iter().zip(rec.data()) {
            assert!(y == 0.0 || (y == t.scale() * x.signum() && x != 0.0));
        }
    }
}

#[test]
fn randomized_svd_is_close_to_exact_on_low_rank_plus_noise() {
    // 600 x 530 matrix of rank 12 plus small noise: randomized SVD must get
    // within 1% of the optimal (exact) error.
    let (m, n, r) = (600, 530, 12);
    let a = random_matrix(m, r, 8);
    let b = random_matrix(n, r, 9);
    let noise = random_matrix(m, n, 10);
    let data: Vec<f32> = (0..m * n)
        .map(|idx| {
            let (i, j) = (idx / n, idx % n);
            let s: f32 = (0..r)
                .map(|k| a.data()[i * r + k] * b.data()[j * r + k] * (r - k) as f32)
                .sum();
            s * 100.0 + noise.data()[idx] * 1e-2
        })
        .collect();
    let d = DeltaMatrix::new(m, n, data).unwrap();
    let err = |solver| {
        let c = LowRank { rank: 8, solver }
            .compress_matrix(&d, &ctx("w"))
            .unwrap();
        d.squared_error(&c.reconstruct())
    };
    let (exact, rand) = (err(SvdSolver::Exact), err(SvdSolver::Randomized));
    assert!(rand <= exact * 1.01, "randomized {rand} vs exact {exact}");
    assert!(exact < 0.1 * d.squared_norm());
}

#[test]
fn deltacome_at_high_precision_approaches_svd() {
    let d = random_matrix(20, 30, 11);
    let svd = LowRank {
        rank: 6,
        solver: SvdSolver::Exact,
    }
    .compress_matrix(&d, &ctx("w"))
    .unwrap();
    let dc = DeltaCome {
        rank: 6,
        schedule: vec![(8, None)],
        solver: SvdSolver::Exact,
    }
    .compress_matrix(&d, &ctx("w"))
    .unwrap();
    let dc2 = DeltaCome {
        rank: 6,
        schedule: vec![(2, None)],
        solver: SvdSolver::Exact,
    }
    .compress_matrix(&d, &ctx("w"))
    .unwrap();
    let e_svd = d.squared_error(&svd.reconstruct());
    let e8 = d.squared_error(&dc.reconstruct());
    let e2 = d.squared_error(&dc2.reconstruct());
    assert!(e8 <= e_svd * 1.05, "8-bit {e8} vs svd {e_svd}");
    assert!(e2 > e8, "2-bit {e2} should be worse than 8-bit {e8}");
    assert!(dc2.storage_bytes() < dc.storage_bytes());
}

#[test]
fn empty_and_degenerate_shapes() {
    for (r, c) in [(0, 5), (5, 0), (1, 1)] {
        let d = DeltaMatrix::zeros(r, c);
        for m in ALL_METHODS {
            let out = parse_method(m)
                .unwrap()
                .compress_matrix(&d, &ctx("w"))
                .unwrap();
            assert_eq!(out.shape(), [r, c], "{m}");
            assert_eq!(out.reconstruct(), d, "{m}");
            assert_eq!(
                Compressed::from_parts("w", &out.to_parts()).unwrap(),
                out,
                "{m}"
            );
        }
    }
}

#[test]
fn bitdelta_wide_rows_cross_simd_blocks() {
    // 1003 columns: four 256-wide blocks (the last partial) plus a 3-value tail.
    let d = random_matrix(3, 1003, 12);
    for per_row in [false, true] {
        let c = BitDelta::new(per_row)
            .compress_matrix(&d, &ctx("w"))
            .unwrap();
        let Compressed::BitDelta(p) = &c else {
            panic!()
        };
        let rec = c.reconstruct();
        for i in 0..3 {
            let row = d.row(i);
            let mean = if per_row {
                row.iter().map(|x| x.abs() as f64).sum::<f64>() / 1003.0
            } else {
                d.data().iter().map(|x| x.abs() as f64).sum::<f64>() / d.len() as f64
            };
            let a = p.scales()[if per_row { i } else { 0 }];
            assert!((a as f64 - mean).abs() <= 1e-6 * mean);
            for (j, &x) in row.iter().enumerate() {
                assert_eq!(rec.row(i)[j], if x >= 0.0 { a } else { -a }, "({i},{j})");
            }
        }
    }
}

#[test]
fn bitdelta_handles_values_near_f32_max() {
    // 300 columns of ±3e38: the fast path's f32 partial sums overflow, the
    // scale must still be the exact mean |Δ| (no error, no infinity).
    let (rows, cols) = (2, 300);
    let data: Vec<f32> = (0..rows * cols)
        .map(|i| if i % 3 == 0 { -3.0e38 } else { 3.0e38 })
        .collect();
    let d = DeltaMatrix::new(rows, cols, data).unwrap();
    for per_row in [false, true] {
        let c = BitDelta::new(per_row)
            .compress_matrix(&d, &ctx("w"))
            .unwrap();
        let Compressed::BitDelta(p) = &c else {
            panic!()
        };
        assert!(p.scales().iter().all(|&a| a == 3.0e38), "{:?}", p.scales());
        let rec = c.reconstruct();
        assert_eq!(rec.data(), d.data());
    }
    // Multi-mask: the residual after the first mask is exactly zero.
    let c = parse_method("multimask:k=2")
        .unwrap()
        .compress_matrix(&d, &ctx("w"))
        .unwrap();
    assert_eq!(c.reconstruct().data(), d.data());
    // A real infinity is still refused, naming its position.
    let mut bad = d.data().to_vec();
    bad[cols + 7] = f32::INFINITY;
    let bad = DeltaMatrix::new(rows, cols, bad).unwrap();
    match BitDelta::default().compress_matrix(&bad, &ctx("w")) {
        Err(QuantError::NonFinite { row, col, .. }) => assert_eq!((row, col), (1, 7)),
        other => panic!("{other:?}"),
    }
}
