//! [`DeltaMatrix`]: the plain row-major `f32` matrix every compressor works on.
//!
//! Compressors are written against a host-side matrix rather than a Burn
//! tensor so that the trait stays object-safe (methods are picked from a
//! string at run time) and so that bit packing, sorting and SVD can run on
//! raw slices. [`DeltaMatrix::from_tensor`] / [`DeltaMatrix::to_tensor`]
//! are the bridge to any Burn backend.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use rayon::prelude::*;

use crate::QuantError;

/// A 2-D delta, row-major. Following Hugging Face `nn.Linear` weights
/// (`[out_features, in_features]`), `rows` is the output dimension and
/// `cols` the input dimension; every method that groups or packs does so
/// along a row, i.e. along the input dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaMatrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl DeltaMatrix {
    /// Wraps `data` (row-major, `rows * cols` values).
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self, QuantError> {
        match rows.checked_mul(cols) {
            Some(n) if n == data.len() => Ok(Self { rows, cols, data }),
            _ => Err(QuantError::Shape(format!(
                "{} values do not make a {rows}x{cols} matrix",
                data.len()
            ))),
        }
    }

    /// An all-zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Reads a 2-D Burn tensor of any float dtype (converted to `f32`).
    pub fn from_tensor<B: Backend>(tensor: Tensor<B, 2>) -> Result<Self, QuantError> {
        let [rows, cols] = tensor.dims();
        let data = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| QuantError::Shape(format!("cannot read tensor data as f32: {e:?}")))?;
        Self::new(rows, cols, data)
    }

    /// Uploads the matrix to `device` as a `[rows, cols]` float tensor.
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), [self.rows, self.cols]),
            device,
        )
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Row-major values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Fails with [`QuantError::NonFinite`] naming `tensor` and the first
    /// offending position if any entry is NaN or ±Inf.
    pub fn check_finite(&self, tensor: &str) -> Result<(), QuantError> {
        let bad = self.data.par_iter().position_first(|x| !x.is_finite());
        match bad {
            None => Ok(()),
            Some(i) => Err(self.non_finite_at(tensor, i)),
        }
    }

    pub(crate) fn non_finite_at(&self, tensor: &str, i: usize) -> QuantError {
        let cols = self.cols.max(1);
        QuantError::NonFinite {
            tensor: tensor.to_string(),
            row: i / cols,
            col: i % cols,
            value: self.data[i],
        }
    }

    /// ‖self − other‖²_F, accumulated in f64.
    pub fn squared_error(&self, other: &DeltaMatrix) -> f64 {
        assert_eq!(self.shape(), other.shape(), "squared_error: shape mismatch");
        fixed_chunk_sum(self.data.len(), |range| {
            self.data[range.clone()]
                .iter()
                .zip(&other.data[range])
                .map(|(&a, &b)| {
                    let d = a as f64 - b as f64;
                    d * d
                })
                .sum()
        })
    }

    /// ‖self‖²_F, accumulated in f64.
    pub fn squared_norm(&self) -> f64 {
        fixed_chunk_sum(self.data.len(), |range| {
            self.data[range]
                .iter()
                .map(|&a| (a as f64) * (a as f64))
                .sum()
        })
    }
}

/// Elements per chunk of [`fixed_chunk_sum`]: fixed, so the grouping of the
/// sum does not depend on the thread count.
const SUM_CHUNK: usize = 1 << 16;

/// `Σ chunk_sum(range)` over `0..len` cut into [`SUM_CHUNK`]-element
/// ranges: each range summed sequentially (in parallel with the others), the
/// partial sums then added in index order. Rayon's own `sum` splits the
/// work where threads happen to steal it, so its floating-point result
/// changed from run to run; this one is the same for any thread count and
/// any scheduling.
pub(crate) fn fixed_chunk_sum(
    len: usize,
    chunk_sum: impl Fn(std::ops::Range<usize>) -> f64 + Sync,
) -> f64 {
    let partials: Vec<f64> = (0..len.div_ceil(SUM_CHUNK))
        .into_par_iter()
        .map(|c| chunk_sum(c * SUM_CHUNK..((c + 1) * SUM_CHUNK).min(len)))
        .collect();
    partials.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of very different magnitudes (so the grouping of a float sum
    /// shows in its last bits), several chunks and a ragged last one.
    fn matrix(seed: u64) -> DeltaMatrix {
        let (rows, cols) = (37, 5 * SUM_CHUNK / 37 + 11);
        let mut state = seed;
        let data = (0..rows * cols)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                u * 10f32.powi((state >> 20) as i32 % 7 - 3)
            })
            .collect();
        DeltaMatrix::new(rows, cols, data).unwrap()
    }

    fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    /// Bit for bit the same norm and error on 1, 2 and 4 threads, run after
    /// run, and equal to the sum in chunk order.
    #[test]
    fn sums_do_not_depend_on_threads_or_scheduling() {
        let (a, b) = (matrix(1), matrix(2));
        let reference = (a.squared_norm(), a.squared_error(&b));
        for threads in [1, 2, 4, 1, 2, 4] {
            for _ in 0..3 {
                let got = in_pool(threads, || (a.squared_norm(), a.squared_error(&b)));
                assert_eq!(reference.0.to_bits(), got.0.to_bits(), "{threads} threads");
                assert_eq!(reference.1.to_bits(), got.1.to_bits(), "{threads} threads");
            }
        }
        let sequential: f64 = a
            .data()
            .chunks(SUM_CHUNK)
            .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
            .sum();
        assert_eq!(reference.0.to_bits(), sequential.to_bits());
    }
}
