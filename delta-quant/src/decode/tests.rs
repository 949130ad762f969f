//! The fast decoders against the scalar decoders they replaced (copied
//! here unchanged in substance as `reference_*`), on shapes that are not
//! multiples of 8 / 32 / 64, single rows and columns, and several parallel
//! tasks.

use faer::Mat;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Decoder, Mode, TASK_ELEMS};
use crate::bitdelta::SignScales;
use crate::pack::{row_bytes, unpack_row, BitMatrix};
use crate::rtn::dequantize_group;
use crate::ternary::TernaryLayout;
use crate::{parse_method, CompressContext, Compressed, DeltaMatrix, QuantError};

// ---------------------------------------------------------------- reference

/// The bit-stream unpacker the crate used for every width.
fn reference_unpack(packed: &[u8], bits: u8, codes: &mut [u8]) {
    let mask = (1u32 << bits) - 1;
    let (mut acc, mut nacc, mut pos) = (0u32, 0u32, 0usize);
    for c in codes.iter_mut() {
        while nacc < bits as u32 {
            acc |= (packed[pos] as u32) << nacc;
            pos += 1;
            nacc += 8;
        }
        *c = (acc & mask) as u8;
        acc >>= bits;
        nacc -= bits as u32;
    }
}

fn reference_bitmatrix(b: &BitMatrix) -> Vec<u8> {
    let mut out = vec![0u8; b.rows() * b.cols()];
    for (i, o) in out.chunks_mut(b.cols().max(1)).enumerate().take(b.rows()) {
        reference_unpack(b.row(i), b.bits(), o);
    }
    out
}

/// Multi-mask / BitDelta: zeros, then `x += sign · α` per mask.
fn reference_signs(masks: &[SignScales]) -> DeltaMatrix {
    let [rows, cols] = masks[0].shape();
    let mut d = DeltaMatrix::zeros(rows, cols);
    for m in masks {
        let bits = reference_bitmatrix(m.signs());
        for (i, x) in d.data_mut().iter_mut().enumerate() {
            let r = i / cols;
            let a = 1.0
                * if m.per_row() {
                    m.scales()[r]
                } else {
                    m.scales()[0]
                };
            let sg = if bits[i] == 1 { 1.0f32 } else { -1.0 };
            *x += sg * a;
        }
    }
    d
}

/// The faer product the crate used: `C^T = b · aᵀ` on owned matrices.
fn reference_product(m: usize, n: usize, r: usize, a: &[f32], b: &[f32]) -> DeltaMatrix {
    let mut d = DeltaMatrix::zeros(m, n);
    if m == 0 || n == 0 || r == 0 {
        return d;
    }
    let at = Mat::<f32>::from_fn(r, m, |k, i| a[i * r + k]);
    let bm = Mat::<f32>::from_fn(n, r, |j, k| b[j * r + k]);
    let ct = &bm * &at;
    for (i, row) in d.data_mut().chunks_mut(n).enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = ct[(j, i)];
        }
    }
    d
}

fn reference_reconstruct(c: &Compressed) -> DeltaMatrix {
    let [rows, cols] = c.shape();
    match c {
        Compressed::BitDelta(p) => reference_signs(std::slice::from_ref(p)),
        Compressed::MultiMask(p) => reference_signs(p.masks()),
        Compressed::Rtn(p) => {
            let mut d = DeltaMatrix::zeros(rows, cols);
            let groups = cols.div_ceil(p.group());
            for i in 0..rows {
                let mut q = vec![0u8; cols];
                reference_unpack(p.codes().row(i), p.bits(), &mut q);
                let row = &mut d.data_mut()[i * cols..(i + 1) * cols];
                for (g, (o, qs)) in row
                    .chunks_mut(p.group())
                    .zip(q.chunks(p.group()))
                    .enumerate()
                {
                    let (s, z) = (p.scales()[i * groups + g], p.zeros()[i * groups + g]);
                    dequantize_group(qs, s, z, o);
                }
            }
            d
        }
        Compressed::Sparse(p) => {
            let mut d = DeltaMatrix::zeros(rows, cols);
            for (&i, &v) in p.indices().iter().zip(p.values()) {
                d.data_mut()[i as usize] = v;
            }
            d
        }
        Compressed::LowRank(p) => reference_product(rows, cols, p.rank(), p.a(), p.b()),
        Compressed::DeltaCome(p) => {
            let (a, b) = p.factors();
            reference_product(rows, cols, p.bits().len(), &a, &b)
        }
        Compressed::Ternary(p) => {
            let mut d = DeltaMatrix::zeros(rows, cols);
            let s = p.scale();
            match p.layout() {
                TernaryLayout::Dense(b) => {
                    for (x, c) in d.data_mut().iter_mut().zip(reference_bitmatrix(b)) {
                        *x = match c {
                            1 => s,
                            2 => -s,
                            _ => 0.0,
                        };
                    }
                }
                TernaryLayout::Sparse { indices, signs } => {
                    let mut bits = vec![0u8; indices.len()];
                    reference_unpack(signs, 1, &mut bits);
                    for (&i, &b) in indices.iter().zip(&bits) {
                        d.data_mut()[i as usize] = if b == 1 { s } else { -s };
                    }
                }
            }
            d
        }
        Compressed::Masked(p) => {
            let mut d = reference_reconstruct(&p.inner);
            let mask = reference_bitmatrix(&p.mask);
            for (x, &m) in d.data_mut().iter_mut().zip(&mask) {
                if m == 0 {
                    *x = 0.0;
                }
            }
            d
        }
        // The reference is the payload's own reconstruction.
        Compressed::Custom(p) => crate::payload::reconstruct_matrix(p.get()).unwrap(),
    }
}

/// Per-entry rounding allowance of the low-rank encodings (1e-5 ·
/// Σₖ|aᵢₖ bⱼₖ|, masked entries included), or `None` for the encodings that
/// must match bit for bit.
fn factor_tolerance(c: &Compressed) -> Option<Vec<f64>> {
    let [rows, cols] = c.shape();
    let bound = |r: usize, a: &[f32], b: &[f32]| {
        let mut t = vec![0f64; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                let s: f64 = (0..r)
                    .map(|k| (a[i * r + k] as f64 * b[j * r + k] as f64).abs())
                    .sum();
                t[i * cols + j] = 1e-5 * s + 1e-30;
            }
        }
        t
    };
    match c {
        Compressed::LowRank(p) => Some(bound(p.rank(), p.a(), p.b())),
        Compressed::DeltaCome(p) => {
            let (a, b) = p.factors();
            Some(bound(p.bits().len(), &a, &b))
        }
        Compressed::Masked(p) => factor_tolerance(&p.inner),
        _ => None,
    }
}

// ---------------------------------------------------------------- helpers

fn random_values(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.random_range(0..20) {
            0 => 0.0,
            1 => -0.0,
            2 => rng.random_range(-1.0f32..1.0) * 1e3,
            _ => rng.random_range(-1.0f32..1.0) * 1e-2,
        })
        .collect()
}

fn random_delta(seed: u64, rows: usize, cols: usize) -> DeltaMatrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    DeltaMatrix::new(rows, cols, random_values(&mut rng, rows * cols)).unwrap()
}

/// `got == want` bit for bit, or within `tol` where given.
fn assert_same(got: &[f32], want: &[f32], tol: Option<&[f64]>, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = match tol {
            None => g.to_bits() == w.to_bits(),
            Some(t) => (g as f64 - w as f64).abs() <= t[i],
        };
        assert!(ok, "{what}: entry {i}: got {g:e}, reference {w:e}");
    }
}

const METHODS: &[&str] = &[
    "bitdelta",
    "bitdelta:per_row=true",
    "multimask:k=3",
    "multimask:k=2,per_row=true",
    "rtn:bits=4,group=128",
    "rtn:bits=3,group=5",
    "rtn:bits=8,group=7",
    "rtn:bits=2,group=1",
    "rtn:bits=5,group=33",
    "rtn:bits=6,group=64",
    "rtn:bits=7,group=3",
    "dare:p=0.9",
    "magnitude:density=0.3",
    "compeft:density=0.5",
    "compeft:density=0.01",
    "svd:rank=3",
    "deltacome:rank=4,schedule=8x1/3x1/2x*",
    "dare:p=0.5+bitdelta",
    "dare:p=0.5+multimask:k=2",
    "magnitude:density=0.5+rtn:bits=3,group=16",
    "magnitude:density=0.5+multimask:k=2",
    "dare:p=0.5+svd:rank=2",
];

/// Odd shapes, single rows / columns, wide rows and
/// matrices of several parallel tasks.
const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (1, 7),
    (1, 33),
    (7, 1),
    (33, 1),
    (3, 31),
    (5, 32),
    (4, 33),
    (6, 63),
    (3, 64),
    (2, 65),
    (9, 100),
    (17, 129),
    (3, 2050),
    (2, 4133),
    (TASK_ELEMS / 257 + 45, 257),
];

/// Checks reconstruct, reconstruct_into, add_into and row-range decoding of
/// `c` against the reference.
fn check_against_reference(c: &Compressed, seed: u64, what: &str) {
    let [rows, cols] = c.shape();
    let want = reference_reconstruct(c);
    let tol = factor_tolerance(c);
    let tol = tol.as_deref();
    assert_same(
        c.reconstruct().data(),
        want.data(),
        tol,
        &format!("{what} reconstruct"),
    );

    let mut out = vec![f32::NAN; rows * cols];
    c.reconstruct_into(&mut out).unwrap();
    assert_same(&out, want.data(), tol, &format!("{what} reconstruct_into"));

    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xba5e);
    let base = random_values(&mut rng, rows * cols);
    let want_sum: Vec<f32> = base.iter().zip(want.data()).map(|(b, d)| b + d).collect();
    // A Δ̂ entry off by its allowance can move `base + Δ̂` by one more
    // rounding of the sum.
    let tol_sum: Option<Vec<f64>> = tol.map(|t| {
        t.iter()
            .zip(&want_sum)
            .map(|(t, s)| t + f32::EPSILON as f64 * s.abs() as f64)
            .collect()
    });
    let tol_sum = tol_sum.as_deref();
    let mut sum = base.clone();
    c.add_into(&mut sum).unwrap();
    assert_same(&sum, &want_sum, tol_sum, &format!("{what} add_into"));

    // Row runs of any length decode the same rows.
    let dec = Decoder::new(c);
    for step in [1, 3] {
        let mut set = vec![f32::NAN; rows * cols];
        let mut add = base.clone();
        if cols > 0 {
            for (t, (s, a)) in set
                .chunks_mut(step * cols)
                .zip(add.chunks_mut(step * cols))
                .enumerate()
            {
                dec.rows_into(t * step, s, Mode::Set);
                dec.rows_into(t * step, a, Mode::Add);
            }
        }
        assert_same(&set, want.data(), tol, &format!("{what} rows by {step}"));
        assert_same(
            &add,
            &want_sum,
            tol_sum,
            &format!("{what} add rows by {step}"),
        );
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn every_encoding_matches_the_reference_on_odd_shapes() {
    for (si, &(rows, cols)) in SHAPES.iter().enumerate() {
        let d = random_delta(si as u64, rows, cols);
        for m in METHODS {
            let c = parse_method(m)
                .unwrap()
                .compress_matrix(&d, &CompressContext::new("t", 3))
                .unwrap();
            check_against_reference(&c, si as u64, &format!("{m} {rows}x{cols}"));
        }
    }
}

#[test]
fn pipelines_that_mask_produce_masked_payloads() {
    // Guards the coverage of the test above: these specs must exercise the
    // masked decoder (over signs, RTN and factors), and compeft both layouts.
    let d = random_delta(1, 17, 129);
    let ctx = CompressContext::new("t", 3);
    for m in [
        "dare:p=0.5+bitdelta",
        "magnitude:density=0.5+multimask:k=2",
        "dare:p=0.5+svd:rank=2",
    ] {
        let c = parse_method(m).unwrap().compress_matrix(&d, &ctx).unwrap();
        assert_eq!(c.kind(), "masked", "{m}");
    }
    // RTN keeps exact zeros (its range always contains 0), so a pipeline
    // ending in RTN needs no mask: that path is the plain RTN decoder.
    let c = parse_method("magnitude:density=0.5+rtn:bits=3,group=16")
        .unwrap()
        .compress_matrix(&d, &ctx)
        .unwrap();
    assert_eq!(c.kind(), "rtn");
    let layout = |m: &str| match parse_method(m).unwrap().compress_matrix(&d, &ctx).unwrap() {
        Compressed::Ternary(t) => matches!(t.layout(), TernaryLayout::Dense(_)),
        other => panic!("{m}: {}", other.kind()),
    };
    assert!(layout("compeft:density=0.5"));
    assert!(!layout("compeft:density=0.01"));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let (rows, cols) = (2 * TASK_ELEMS / 300 + 7, 300);
    let d = random_delta(9, rows, cols);
    for m in [
        "bitdelta",
        "multimask:k=3",
        "rtn:bits=3,group=5",
        "dare:p=0.9",
        "svd:rank=3",
        "dare:p=0.5+bitdelta",
    ] {
        let c = parse_method(m)
            .unwrap()
            .compress_matrix(&d, &CompressContext::new("t", 3))
            .unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut base = d.data().to_vec();
                c.add_into(&mut base).unwrap();
                (c.reconstruct(), base)
            })
        };
        let (r1, a1) = run(1);
        for threads in [2, 5] {
            let (r, a) = run(threads);
            assert_same(
                r.data(),
                r1.data(),
                None,
                &format!("{m} reconstruct, {threads} threads"),
            );
            assert_same(&a, &a1, None, &format!("{m} add_into, {threads} threads"));
        }
    }
}

#[test]
fn a_buffer_of_the_wrong_length_is_a_shape_error() {
    let d = random_delta(2, 3, 5);
    let c = parse_method("bitdelta")
        .unwrap()
        .compress_matrix(&d, &CompressContext::new("t", 0))
        .unwrap();
    for n in [0, 14, 16] {
        let mut v = vec![0.0; n];
        assert!(matches!(
            c.reconstruct_into(&mut v),
            Err(QuantError::Shape(_))
        ));
        assert!(matches!(c.add_into(&mut v), Err(QuantError::Shape(_))));
    }
}

#[test]
fn fast_unpack_matches_the_bit_stream_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for bits in 1..=8u8 {
        for len in 0..=70 {
            let nb = row_bytes(len, bits);
            let mut packed: Vec<u8> = (0..nb).map(|_| rng.random()).collect();
            let used = (len * bits as usize) % 8;
            if used != 0 {
                packed[nb - 1] &= (1u8 << used) - 1;
            }
            let (mut fast, mut slow) = (vec![0u8; len], vec![0u8; len]);
            unpack_row(&packed, bits, &mut fast);
            reference_unpack(&packed, bits, &mut slow);
            assert_eq!(fast, slow, "bits {bits}, len {len}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn elementwise_encodings_match_the_reference_for_any_shape(
        rows in 1usize..24,
        cols in 1usize..150,
        seed in any::<u64>(),
        k in 1usize..4,
        bits in 2u8..=8,
        group in 1usize..70,
        per_row in any::<bool>(),
    ) {
        let d = random_delta(seed, rows, cols);
        let ctx = CompressContext::new("t", seed);
        for m in [
            format!("bitdelta:per_row={per_row}"),
            format!("multimask:k={k},per_row={per_row}"),
            format!("rtn:bits={bits},group={group}"),
            "compeft:density=0.3".to_string(),
            format!("dare:p=0.5,seed={seed}+multimask:k={k}"),
        ] {
            let c = parse_method(&m).unwrap().compress_matrix(&d, &ctx).unwrap();
            check_against_reference(&c, seed, &m);
        }
    }
}
