#![allow(dead_code)]
use delta_quant::DeltaMatrix;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One method string per method, small enough for 40-column matrices, plus
/// two pipelines.
pub const ALL_METHODS: &[&str] = &[
    "bitdelta",
    "bitdelta:per_row=true",
    "multimask:k=3",
    "rtn:bits=4,group=16",
    "rtn:bits=3,group=7",
    "dare:p=0.5,seed=3",
    "magnitude:density=0.3",
    "svd:rank=3",
    "svd:rank=3,solver=randomized",
    "deltacome:rank=6,schedule=8x1/3x2/2x*",
    "compeft:density=0.2,alpha=1.5",
    "compeft:density=0.01",
    "dare:p=0.5+bitdelta",
    "magnitude:density=0.5+rtn:bits=2,group=8",
];

/// Deterministic pseudo-random matrix with entries in [-1, 1) and some exact zeros.
pub fn random_matrix(rows: usize, cols: usize, seed: u64) -> DeltaMatrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..rows * cols)
        .map(|_| {
            if rng.random_range(0..10) == 0 {
                0.0
            } else {
                rng.random_range(-1.0f32..1.0) * 1e-2
            }
        })
        .collect();
    DeltaMatrix::new(rows, cols, data).unwrap()
}

/// Strategy: matrices up to 12 x 40 with mixed-magnitude entries and zeros.
pub fn matrix() -> impl Strategy<Value = DeltaMatrix> {
    (1usize..12, 1usize..40).prop_flat_map(|(r, c)| {
        proptest::collection::vec(
            prop_oneof![
                3 => -1.0f32..1.0,
                1 => Just(0.0f32),
                1 => -1e-3f32..1e-3,
                1 => -50.0f32..50.0,
            ],
            r * c,
        )
        .prop_map(move |d| DeltaMatrix::new(r, c, d).unwrap())
    })
}
