//! # delta-quant
//!
//! Compressors for LLM fine-tuning deltas Δ = W_ft − W_base, behind one
//! object-safe trait, and a packed on-disk format. Part of deltaguard,
//! which reproduces "Quantized Delta Weight Is Safety Keeper" (arXiv
//! 2411.19530): how much of a fine-tuning attack survives delta
//! compression.
//!
//! A [`Compressor`] takes a 2-D delta — a Burn tensor on any backend via
//! [`CompressTensor::compress`], or a host [`DeltaMatrix`] — and returns a
//! [`Compressed`] value that knows its exact stored size
//! ([`Compressed::storage_bytes`]) and reconstructs Δ̂
//! ([`Compressed::reconstruct`], [`Compressed::reconstruct_tensor`]).
//! Matrices are `[out_features, in_features]` as in Hugging Face; packing
//! and grouping run along the input dimension.
//!
//! | method string | method | source | stored |
//! |---|---|---|---|
//! | `bitdelta[:per_row=false]` | [`BitDelta`]: α·sign(Δ), α = mean\|Δ\| | Liu et al. 2024, arXiv 2402.10193 | 1 bit/entry + f32 scale(s) |
//! | `multimask:k=2` | [`MultiMask`]: k residual sign masks | BitDelta, iterated on the residual | k bits/entry + k scales |
//! | `rtn:bits=4,group=128` | [`Rtn`]: group-wise asymmetric round-to-nearest | GPTQ's RTN baseline, arXiv 2210.17323 | k bits/entry + f32 scale, u8 zero per group |
//! | `dare:p=0.9[,seed=S]` | [`Dare`]: drop with prob. p, rescale 1/(1−p) | Yu et al. 2023, arXiv 2311.03099 | u32 index + f32 value per survivor |
//! | `magnitude:density=0.1` | [`Magnitude`]: keep the largest \|Δ\| | magnitude pruning baseline | u32 index + f32 value per kept entry |
//! | `svd:rank=16[,solver=auto]` | [`LowRank`]: truncated SVD | Eckart–Young; Halko et al. 2011 for `randomized` | f32 · r·(rows+cols) |
//! | `deltacome:rank=128,schedule=8x2/3x32/2x*` | [`DeltaCome`]: SVD, mixed-precision singular vectors | Ping et al. 2024, arXiv 2406.08903 | per-vector k-bit codes + σ |
//! | `compeft:density=0.1,alpha=1` | [`Compeft`]: top-k → sign·α·std(Δ) | Yadav et al. 2023, arXiv 2311.13171 | 2 bits/entry or u32 index + sign bit, + 1 scale |
//!
//! Each built-in payload type implements the open [`CompressedTensor`]
//! trait; methods a downstream crate registers ([`registry`]) sit beside
//! these in every path.
//!
//! ## Method strings
//!
//! `stage ("+" stage)*` with `stage = name [":" key=value ("," key=value)*]`,
//! parsed by [`parse_method`]; omitted parameters take the defaults shown
//! above, unknown methods or parameters are typed errors listing the valid
//! ones, and [`Compressor::spec`] gives the canonical string back. Several
//! stages make a [`Pipeline`] (e.g. `dare:p=0.5+bitdelta`): each stage
//! compresses the previous stage's reconstruction and the last stage's
//! payload is stored, plus a 1-bit support mask when an earlier stage
//! zeroed entries the last one would fill in (see [`pipeline`]).
//!
//! ## Adding your own method
//!
//! A method is a [`Compressor`] whose output is either a built-in payload
//! or your own [`CompressedTensor`] wrapped in [`Compressed::custom`].
//! Register the method (its name, parameters, constructor) and the
//! payload's encoding (its kind and decoder) once per process with
//! [`register_method`] / [`register_encoding`]; from then on
//! [`parse_method`], [`DeltaFile::open`], `ops::apply_delta_file`, model
//! loading with a delta, pipelines (`dare:p=0.5+yours`) and the study grid
//! accept it like a built-in. See [`registry`] for the rules and
//! `examples/ternary-method` in the repository for a complete 1.58-bit
//! method with tests.
//!
//! ```
//! use std::any::Any;
//! use delta_quant::*;
//! use serde_json::{json, Value};
//!
//! /// Keeps the largest |Δ| of each row: one (u32 column, f32 value) per row.
//! #[derive(Debug)]
//! struct RowMax { cols: usize, at: Vec<u32>, val: Vec<f32> }
//!
//! impl CompressedTensor for RowMax {
//!     fn kind(&self) -> &'static str { "rowmax" }
//!     fn shape(&self) -> [usize; 2] { [self.at.len(), self.cols] }
//!     fn storage_bytes(&self) -> u64 { 8 * self.at.len() as u64 }
//!     fn write_parts(&self, w: &mut PartsWriter<'_>) -> Value {
//!         w.push("at", Payload::u32(vec![self.at.len()], &self.at));
//!         w.push("val", Payload::f32(vec![self.val.len()], &self.val));
//!         json!({})
//!     }
//!     fn reconstruct_into(&self, out: &mut [f32]) -> Result<(), QuantError> {
//!         payload::check_len(self.shape(), out.len())?;
//!         out.fill(0.0);
//!         for (r, (&c, &v)) in self.at.iter().zip(&self.val).enumerate() {
//!             out[r * self.cols + c as usize] = v;
//!         }
//!         Ok(())
//!     }
//!     fn as_any(&self) -> &dyn Any { self }
//! }
//!
//! #[derive(Debug)]
//! struct RowMaxMethod;
//! impl Compressor for RowMaxMethod {
//!     fn method(&self) -> &'static str { "rowmax" }
//!     fn params(&self) -> Params { Params::new() }
//!     fn compress_matrix(&self, d: &DeltaMatrix, _: &CompressContext<'_>)
//!         -> Result<Compressed, QuantError> {
//!         let (mut at, mut val) = (vec![], vec![]);
//!         for row in d.data().chunks(d.cols()) {
//!             let (c, v) = row.iter().enumerate()
//!                 .fold((0, 0f32), |b, (c, &v)| if v.abs() > b.1.abs() { (c, v) } else { b });
//!             at.push(c as u32);
//!             val.push(v);
//!         }
//!         Ok(Compressed::custom(RowMax { cols: d.cols(), at, val }))
//!     }
//! }
//!
//! fn decode(r: &EncodingReader<'_>) -> Result<Compressed, QuantError> {
//!     let at = r.u32("at", r.rows())?;
//!     if at.iter().any(|&c| c as usize >= r.cols()) {
//!         return Err(r.bad("at", "column out of range"));
//!     }
//!     Ok(Compressed::custom(RowMax { cols: r.cols(), at, val: r.f32("val", r.rows())? }))
//! }
//!
//! register_method(MethodInfo {
//!     name: "rowmax",
//!     params: &[],
//!     summary: "largest entry of each row",
//!     build: |_| Ok(Box::new(RowMaxMethod)),
//! }).unwrap();
//! register_encoding(EncodingInfo { kind: "rowmax", decode }).unwrap();
//!
//! // Every path now takes it: parse, compress, write, open, reconstruct.
//! let c = parse_method("rowmax").unwrap();
//! let d = DeltaMatrix::new(2, 3, vec![0.1, -0.5, 0.2, 0.3, 0.0, -0.1]).unwrap();
//! let t = c.compress_matrix(&d, &CompressContext::new("w", 0)).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("d.safetensors");
//! let mut w = DeltaFileWriter::create(&path, DeltaFileHeader::new(c.as_ref(), "base")).unwrap();
//! w.add_compressed("w", &t).unwrap();
//! w.finish().unwrap();
//! let file = DeltaFile::open(&path).unwrap();
//! assert_eq!(file.method(), "rowmax");
//! assert_eq!(file.compressed("w").unwrap().reconstruct().data(), &[0.0, -0.5, 0.0, 0.3, 0.0, 0.0]);
//! ```
//!
//! ## Files and sizes
//!
//! [`file`](mod@file) writes and reads one `.safetensors` file with every compressed
//! payload and the full-precision "carried" tensors; [`size`] computes
//! compression ratios the way BitDelta reports them.
//!
//! ## Example
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Tensor, TensorData};
//! use delta_quant::{parse_method, CompressContext, CompressTensor};
//!
//! let device = Default::default();
//! // A 2 x 10 delta: width 10 is not a multiple of 8, rows pack separately.
//! let values: Vec<f32> = (0..20).map(|i| (i as f32 - 9.5) * 0.01).collect();
//! let delta = Tensor::<NdArray, 2>::from_data(TensorData::new(values.clone(), [2, 10]), &device);
//!
//! let bitdelta = parse_method("bitdelta").unwrap();
//! let ctx = CompressContext::new("model.layers.0.mlp.up_proj.weight", 0);
//! let c = bitdelta.compress(delta, &ctx).unwrap();
//!
//! // 2 rows x ceil(10/8) = 2 bytes of signs, plus one f32 scale.
//! assert_eq!(c.storage_bytes(), 2 * 2 + 4);
//! let alpha = values.iter().map(|x| x.abs()).sum::<f32>() / 20.0;
//! let rec: Vec<f32> = c.reconstruct_tensor::<NdArray>(&device).into_data().to_vec().unwrap();
//! for (x, y) in values.iter().zip(&rec) {
//!     assert!((y - alpha * x.signum()).abs() < 1e-6);
//! }
//! ```

pub mod bitdelta;
pub mod compressed;
pub mod compressor;
pub mod dare;
pub mod decode;
pub mod deltacome;
pub mod error;
pub mod file;
pub mod lowrank;
pub mod magnitude;
pub mod matrix;
pub mod ops;
pub mod pack;
mod params;
pub mod payload;
pub mod pipeline;
pub mod registry;
pub mod rtn;
pub mod size;
pub mod sparse;
pub mod ternary;

pub use bitdelta::{BitDelta, MultiMask, MultiMaskPayload, SignScales};
pub use compressed::{Compressed, MaskedPayload, Parts, Payload};
pub use compressor::{CompressContext, CompressTensor, Compressor, Params};
pub use dare::Dare;
pub use deltacome::{DeltaCome, DeltaComePayload};
pub use error::QuantError;
pub use file::{
    check_payload_values, CarriedTensor, DeltaFile, DeltaFileHeader, DeltaFileWriter, Entry,
    EntryKind, OpenOptions, MAX_PAYLOAD_MAGNITUDE,
};
pub use lowrank::{LowRank, LowRankPayload, SvdSolver};
pub use magnitude::Magnitude;
pub use matrix::DeltaMatrix;
pub use pack::BitMatrix;
pub use params::ParamList;
pub use payload::{CompressedTensor, CustomPayload, EncodingReader, PartsWriter};
pub use pipeline::{parse_method, Pipeline, METHODS};
pub use registry::{register_encoding, register_method, EncodingInfo, MethodInfo};
pub use rtn::{Rtn, RtnPayload};
pub use safetensors::Dtype;
pub use size::SizeReport;
pub use sparse::SparsePayload;
pub use ternary::{Compeft, TernaryPayload};
