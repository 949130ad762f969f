//! Group-wise k-bit round-to-nearest (RTN) quantization, asymmetric with a
//! zero point — the baseline of GPTQ (Frantar et al. 2022, arXiv
//! 2210.17323) and of Delta-CoMe's comparisons.
//!
//! Each row (output unit) is split into groups of `group` consecutive
//! input columns (the last group may be shorter). Per group, with
//! L = 2^bits − 1 levels:
//!
//! * the range is widened to include 0 (`lo = min(min x, 0)`,
//!   `hi = max(max x, 0)`, as GPTQ's quantizer does) so the zero point is
//!   in range and exact zeros stay exactly zero;
//! * `scale = (hi − lo) / L` (rounded *up* to f32 so the range is covered),
//!   `zero = round(−lo / scale)` ∈ [0, L];
//! * `q = clamp(round(x / scale) + zero, 0, L)`, `x̂ = (q − zero) · scale`.
//!
//! Hence |x − x̂| ≤ scale / 2 for every element (plus f32 rounding). A group
//! that is all zero gets scale 0 and reconstructs to 0.
//!
//! Storage: `codes` U8 `[rows, ceil(cols·bits/8)]` ([`crate::pack`] layout),
//! `scales` **F32** `[rows, groups]`, `zeros` U8 `[rows, groups]`. (GPTQ
//! checkpoints use f16 scales; with f32 the stored size is 2 bytes per group
//! larger — 0.125 bit per weight at g = 128 — and we count what we store.)

use rayon::prelude::*;
use serde_json::{json, Value};

use crate::compressed::{meta_usize, PartsReader, Payload};
use crate::compressor::{CompressContext, Compressor, Params};
use crate::decode::Decoder;
use crate::pack::{pack_row, row_bytes, BitMatrix};
use crate::params::ParamList;
use crate::{Compressed, DeltaMatrix, QuantError};

/// k-bit group-wise RTN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtn {
    /// Bits per code, 2..=8.
    pub bits: u8,
    /// Group size along the input dimension (≥ 1).
    pub group: usize,
}

impl Rtn {
    pub fn new(bits: u8, group: usize) -> Result<Self, QuantError> {
        let bad = |p: &str, v: String, r: &str| QuantError::InvalidParam {
            method: "rtn".into(),
            param: p.into(),
            value: v,
            reason: r.into(),
        };
        if !(2..=8).contains(&bits) {
            return Err(bad("bits", bits.to_string(), "must be in 2..=8"));
        }
        if group == 0 {
            return Err(bad("group", "0".into(), "must be >= 1"));
        }
        Ok(Self { bits, group })
    }
    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        Ok(Self {
            bits: p.get_in("bits", 4u8, 2, 8, "in 2..=8")?,
            group: p.get_in("group", 128usize, 1, usize::MAX, ">= 1")?,
        })
    }
}

impl Compressor for Rtn {
    fn method(&self) -> &'static str {
        "rtn"
    }
    fn params(&self) -> Params {
        Params::from([
            ("bits".to_string(), json!(self.bits)),
            ("group".to_string(), json!(self.group)),
        ])
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        Rtn::new(self.bits, self.group)?;
        delta.check_finite(ctx.name)?;
        let (rows, cols) = (delta.rows(), delta.cols());
        let groups = cols.div_ceil(self.group);
        let rb = row_bytes(cols, self.bits);
        let mut codes = vec![0u8; rows * rb];
        let mut scales = vec![0f32; rows * groups];
        let mut zeros = vec![0u8; rows * groups];
        if cols > 0 {
            codes
                .par_chunks_mut(rb)
                .zip(scales.par_chunks_mut(groups))
                .zip(zeros.par_chunks_mut(groups))
                .zip(delta.data().par_chunks(cols))
                .for_each(|(((out, sc), zr), row)| {
                    let mut q = vec![0u8; cols];
                    for (g, (xs, qs)) in row
                        .chunks(self.group)
                        .zip(q.chunks_mut(self.group))
                        .enumerate()
                    {
                        let (s, z) = quantize_group(xs, self.bits, qs);
                        sc[g] = s;
                        zr[g] = z;
                    }
                    pack_row(&q, self.bits, out);
                });
        }
        Ok(Compressed::Rtn(RtnPayload {
            group: self.group,
            codes: BitMatrix::from_raw_unchecked(rows, cols, self.bits, codes),
            scales,
            zeros,
        }))
    }
}

/// Quantizes `xs` to `bits`-bit codes in `q`; returns (scale, zero).
pub(crate) fn quantize_group(xs: &[f32], bits: u8, q: &mut [u8]) -> (f32, u8) {
    let levels = ((1u32 << bits) - 1) as f64;
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for &x in xs {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    let range = hi as f64 - lo as f64;
    if range == 0.0 {
        q.fill(0);
        return (0.0, 0);
    }
    let mut scale = (range / levels) as f32;
    // Round up so that `levels · scale` covers the range (the error bound
    // needs scale ≥ (hi − lo)/L).
    if (scale as f64) * levels < range {
        scale = f32::from_bits(scale.to_bits() + 1);
    }
    let s = scale as f64;
    let zero = (-(lo as f64) / s).round().clamp(0.0, levels);
    for (c, &x) in q.iter_mut().zip(xs) {
        *c = ((x as f64 / s).round() + zero).clamp(0.0, levels) as u8;
    }
    (scale, zero as u8)
}

/// `out[i] = (q[i] − zero) · scale`.
pub(crate) fn dequantize_group(q: &[u8], scale: f32, zero: u8, out: &mut [f32]) {
    for (o, &c) in out.iter_mut().zip(q) {
        *o = (c as f32 - zero as f32) * scale;
    }
}

/// RTN codes, scales and zero points (layout in the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct RtnPayload {
    group: usize,
    codes: BitMatrix,
    scales: Vec<f32>,
    zeros: Vec<u8>,
}

impl RtnPayload {
    pub fn bits(&self) -> u8 {
        self.codes.bits()
    }
    pub fn group(&self) -> usize {
        self.group
    }
    /// Codes, `[rows, cols]` of `bits`-bit values.
    pub fn codes(&self) -> &BitMatrix {
        &self.codes
    }
    /// Scales, row-major `[rows, groups]`.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    /// Zero points, row-major `[rows, groups]`.
    pub fn zeros(&self) -> &[u8] {
        &self.zeros
    }
    pub fn shape(&self) -> [usize; 2] {
        [self.codes.rows(), self.codes.cols()]
    }
    fn groups(&self) -> usize {
        self.codes.cols().div_ceil(self.group)
    }
    pub fn storage_bytes(&self) -> u64 {
        (self.codes.as_bytes().len() + 4 * self.scales.len() + self.zeros.len()) as u64
    }
    /// Dequantized values as a new matrix.
    pub fn reconstruct(&self) -> DeltaMatrix {
        Decoder::rtn(self).reconstruct()
    }
    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        let rows = self.codes.rows();
        let groups = self.groups();
        out.push((
            format!("{prefix}codes"),
            Payload::u8(
                vec![rows, self.codes.row_bytes()],
                self.codes.as_bytes().to_vec(),
            ),
        ));
        out.push((
            format!("{prefix}scales"),
            Payload::f32(vec![rows, groups], &self.scales),
        ));
        out.push((
            format!("{prefix}zeros"),
            Payload::u8(vec![rows, groups], self.zeros.clone()),
        ));
        json!({ "bits": self.bits(), "group": self.group })
    }
    pub(crate) fn decode(
        meta: &Value,
        r: &PartsReader<'_>,
        prefix: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Self, QuantError> {
        let bits = meta_usize(meta, "bits", r.tensor)?;
        let group = meta_usize(meta, "group", r.tensor)?;
        if !(1..=8).contains(&bits) || group == 0 {
            return Err(QuantError::Metadata(format!(
                "tensor `{}`: rtn bits={bits} group={group}",
                r.tensor
            )));
        }
        let bits = bits as u8;
        let groups = cols.div_ceil(group);
        let codes_name = format!("{prefix}codes");
        let codes = r.u8(&codes_name, rows * row_bytes(cols, bits))?;
        let codes = BitMatrix::from_bytes(rows, cols, bits, codes)
            .map_err(|e| r.bad(&codes_name, e.to_string()))?;
        let scales_name = format!("{prefix}scales");
        let scales = r.f32(&scales_name, rows * groups)?;
        if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return Err(r.bad(&scales_name, "negative or non-finite scale"));
        }
        let zeros_name = format!("{prefix}zeros");
        let zeros = r.u8(&zeros_name, rows * groups)?;
        if bits < 8 && zeros.iter().any(|&z| z >> bits != 0) {
            return Err(r.bad(&zeros_name, "zero point out of range"));
        }
        Ok(Self {
            group,
            codes,
            scales,
            zeros,
        })
    }
}
