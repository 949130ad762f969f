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
        self.data
            .par_iter()
            .zip(other.data.par_iter())
            .map(|(&a, &b)| {
                let d = a as f64 - b as f64;
                d * d
            })
            .sum()
    }

    /// ‖self‖²_F, accumulated in f64.
    pub fn squared_norm(&self) -> f64 {
        self.data.par_iter().map(|&a| (a as f64) * (a as f64)).sum()
    }
}
