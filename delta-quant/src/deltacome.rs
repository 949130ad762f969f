//! Delta-CoMe-style mixed-precision low-rank compression (Ping et al. 2024,
//! "Delta-CoMe: Training-Free Delta-Compression with Mixed-Precision for
//! Large Language Models", arXiv 2406.08903).
//!
//! Δ = U Σ Vᵀ (see [`crate::lowrank`] for the solvers); singular vectors
//! that go with larger singular values get more bits. The bit schedule
//! (`schedule=`) is a `/`-separated list of `BITSxCOUNT` items, the last
//! COUNT may be `*` ("all remaining up to `rank`"); the default
//! `8x2/3x32/2x*` gives 8 bits to the top 2 singular-vector pairs, 3 bits to
//! the next 32 and 2 bits to the rest, up to `rank` (default 128). A finite
//! schedule shorter than `rank` limits the rank.
//!
//! Each unit singular vector uₖ (length rows) and vₖ (length cols) is
//! quantized by asymmetric RTN with one scale and zero point per vector
//! (the quantizer of [`crate::Rtn`], group = whole vector). Delta-CoMe uses
//! GPTQ for this step; RTN keeps the method training- and data-free.
//!
//! Storage: `sigma` F32 `[r]`; for `u` and `v`: `{u,v}_codes` U8 (each
//! vector packed separately, [`crate::pack`] layout, concatenated),
//! `{u,v}_scales` F32 `[r]`, `{u,v}_zeros` U8 `[r]`. The per-vector bit
//! widths are in the encoding record.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::compressed::{meta_usize, PartsReader, Payload};
use crate::compressor::{CompressContext, Compressor, Params};
use crate::decode::Decoder;
use crate::lowrank::{truncated_svd, SvdSolver};
use crate::pack::{pack_row, row_bytes, unpack_row};
use crate::params::ParamList;
use crate::rtn::{dequantize_group, quantize_group};
use crate::{Compressed, DeltaMatrix, QuantError};

/// `(bits, count)`; `count = None` means "the rest".
pub type Schedule = Vec<(u8, Option<usize>)>;

/// Delta-CoMe-style mixed-precision SVD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaCome {
    pub rank: usize,
    pub schedule: Schedule,
    pub solver: SvdSolver,
}

impl Default for DeltaCome {
    fn default() -> Self {
        Self {
            rank: 128,
            schedule: vec![(8, Some(2)), (3, Some(32)), (2, None)],
            solver: SvdSolver::Auto,
        }
    }
}

/// Parses `8x2/3x32/2x*`.
pub fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let items: Vec<&str> = s.split('/').collect();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (b, c) = item
            .split_once('x')
            .ok_or_else(|| format!("item `{item}` is not BITSxCOUNT"))?;
        let bits: u8 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad bit width `{b}`"))?;
        if !(1..=8).contains(&bits) {
            return Err(format!("bit width {bits} not in 1..=8"));
        }
        let count = match c.trim() {
            "*" if i + 1 == items.len() => None,
            "*" => return Err("`*` only allowed in the last item".into()),
            c => Some(c.parse::<usize>().map_err(|_| format!("bad count `{c}`"))?),
        };
        out.push((bits, count));
    }
    Ok(out)
}

fn schedule_string(s: &Schedule) -> String {
    s.iter()
        .map(|(b, c)| match c {
            Some(c) => format!("{b}x{c}"),
            None => format!("{b}x*"),
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl DeltaCome {
    /// Bits of each singular-vector pair, for a matrix whose rank is at most
    /// `max_rank`.
    pub fn bit_widths(&self, max_rank: usize) -> Vec<u8> {
        let r = self.rank.min(max_rank);
        let mut out = Vec::with_capacity(r);
        for &(b, c) in &self.schedule {
            let take = c.unwrap_or(usize::MAX).min(r - out.len());
            out.extend(std::iter::repeat_n(b, take));
            if out.len() == r {
                break;
            }
        }
        out
    }
    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        let d = DeltaCome::default();
        let schedule = match p.raw("schedule") {
            None => d.schedule,
            Some(s) => parse_schedule(s).map_err(|e| p.invalid("schedule", s, e))?,
        };
        Ok(Self {
            rank: p.get("rank", d.rank)?,
            schedule,
            solver: SvdSolver::from_params(p)?,
        })
    }
}

impl Compressor for DeltaCome {
    fn method(&self) -> &'static str {
        "deltacome"
    }
    fn params(&self) -> Params {
        Params::from([
            ("rank".to_string(), json!(self.rank)),
            (
                "schedule".to_string(),
                json!(schedule_string(&self.schedule)),
            ),
            ("solver".to_string(), json!(self.solver.as_str())),
        ])
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        delta.check_finite(ctx.name)?;
        let (m, n) = (delta.rows(), delta.cols());
        let bits = self.bit_widths(m.min(n));
        let f = truncated_svd(delta, bits.len(), self.solver, ctx.seed, ctx.name)?;
        let mut u = QuantVectors::default();
        let mut v = QuantVectors::default();
        let mut col = Vec::new();
        for (k, &b) in bits.iter().enumerate() {
            col.clear();
            col.extend((0..m).map(|i| f.u[(i, k)] as f32));
            u.push(&col, b);
            col.clear();
            col.extend((0..n).map(|j| f.v[(j, k)] as f32));
            v.push(&col, b);
        }
        let sigma = f.s.iter().map(|&s| s as f32).collect();
        Ok(Compressed::DeltaCome(DeltaComePayload {
            rows: m,
            cols: n,
            bits,
            sigma,
            u,
            v,
        }))
    }
}

/// Per-vector RTN-quantized vectors, packed back to back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantVectors {
    codes: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<u8>,
}

impl QuantVectors {
    fn push(&mut self, x: &[f32], bits: u8) {
        let mut q = vec![0u8; x.len()];
        let (s, z) = quantize_group(x, bits, &mut q);
        let start = self.codes.len();
        self.codes.resize(start + row_bytes(x.len(), bits), 0);
        pack_row(&q, bits, &mut self.codes[start..]);
        self.scales.push(s);
        self.zeros.push(z);
    }
    /// Dequantized vectors, `len` values each, as row-major `[len, r]`
    /// columns scaled by `col_scale[k]`.
    fn dequantize(&self, len: usize, bits: &[u8], col_scale: Option<&[f32]>) -> Vec<f32> {
        let r = bits.len();
        let mut out = vec![0f32; len * r];
        let mut q = vec![0u8; len];
        let mut x = vec![0f32; len];
        let mut pos = 0;
        for (k, &b) in bits.iter().enumerate() {
            let nb = row_bytes(len, b);
            unpack_row(&self.codes[pos..pos + nb], b, &mut q);
            pos += nb;
            dequantize_group(&q, self.scales[k], self.zeros[k], &mut x);
            let c = col_scale.map_or(1.0, |s| s[k]);
            for i in 0..len {
                out[i * r + k] = x[i] * c;
            }
        }
        out
    }
    fn encode(&self, prefix: &str, which: &str, out: &mut Vec<(String, Payload)>) {
        let r = self.scales.len();
        out.push((
            format!("{prefix}{which}_codes"),
            Payload::u8(vec![self.codes.len()], self.codes.clone()),
        ));
        out.push((
            format!("{prefix}{which}_scales"),
            Payload::f32(vec![r], &self.scales),
        ));
        out.push((
            format!("{prefix}{which}_zeros"),
            Payload::u8(vec![r], self.zeros.clone()),
        ));
    }
    fn decode(
        r: &PartsReader<'_>,
        prefix: &str,
        which: &str,
        len: usize,
        bits: &[u8],
    ) -> Result<Self, QuantError> {
        let total: usize = bits.iter().map(|&b| row_bytes(len, b)).sum();
        let codes_name = format!("{prefix}{which}_codes");
        let codes = r.u8(&codes_name, total)?;
        // Padding bits at the end of each packed vector must be zero.
        let mut pos = 0;
        for &b in bits {
            let nb = row_bytes(len, b);
            let used = (len * b as usize) % 8;
            if used != 0 && codes[pos + nb - 1] >> used != 0 {
                return Err(r.bad(&codes_name, "non-zero padding bits"));
            }
            pos += nb;
        }
        let scales_name = format!("{prefix}{which}_scales");
        let scales = r.f32(&scales_name, bits.len())?;
        if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return Err(r.bad(&scales_name, "negative or non-finite scale"));
        }
        let zeros_name = format!("{prefix}{which}_zeros");
        let zeros = r.u8(&zeros_name, bits.len())?;
        if zeros.iter().zip(bits).any(|(&z, &b)| b < 8 && z >> b != 0) {
            return Err(r.bad(&zeros_name, "zero point out of range"));
        }
        Ok(Self {
            codes,
            scales,
            zeros,
        })
    }
}

/// Singular values and quantized singular vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaComePayload {
    rows: usize,
    cols: usize,
    bits: Vec<u8>,
    sigma: Vec<f32>,
    u: QuantVectors,
    v: QuantVectors,
}

impl DeltaComePayload {
    /// Bit width of each singular-vector pair.
    pub fn bits(&self) -> &[u8] {
        &self.bits
    }
    pub fn sigma(&self) -> &[f32] {
        &self.sigma
    }
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
    pub fn storage_bytes(&self) -> u64 {
        let r = self.bits.len() as u64;
        4 * r + 2 * 5 * r + (self.u.codes.len() + self.v.codes.len()) as u64
    }
    /// U·diag(σ)·Vᵀ from the dequantized vectors, as a new matrix.
    pub fn reconstruct(&self) -> DeltaMatrix {
        let (a, b) = self.factors();
        Decoder::factors(self.shape(), self.bits.len(), Cow::Owned(a), Cow::Owned(b)).reconstruct()
    }

    /// The dequantized factors of Δ̂ = a · bᵀ: `a` = U·diag(σ) row-major
    /// `[rows, r]`, `b` = V row-major `[cols, r]`.
    pub(crate) fn factors(&self) -> (Vec<f32>, Vec<f32>) {
        let a = self.u.dequantize(self.rows, &self.bits, Some(&self.sigma));
        let b = self.v.dequantize(self.cols, &self.bits, None);
        (a, b)
    }
    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        out.push((
            format!("{prefix}sigma"),
            Payload::f32(vec![self.sigma.len()], &self.sigma),
        ));
        self.u.encode(prefix, "u", out);
        self.v.encode(prefix, "v", out);
        json!({ "rank": self.bits.len(), "bits": self.bits })
    }
    pub(crate) fn decode(
        meta: &Value,
        r: &PartsReader<'_>,
        prefix: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Self, QuantError> {
        let rank = meta_usize(meta, "rank", r.tensor)?;
        let bits: Vec<u8> = meta
            .get("bits")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .filter(|b| (1..=8).contains(b))
                    .map(|b| b as u8)
                    .collect()
            })
            .unwrap_or_default();
        if bits.len() != rank || rank > rows.min(cols) {
            return Err(QuantError::Metadata(format!(
                "tensor `{}`: deltacome rank {rank} with bit widths {:?}",
                r.tensor,
                meta.get("bits")
            )));
        }
        let sigma_name = format!("{prefix}sigma");
        let sigma = r.f32(&sigma_name, rank)?;
        if sigma.iter().any(|s| !s.is_finite()) {
            return Err(r.bad(&sigma_name, "non-finite singular value"));
        }
        let u = QuantVectors::decode(r, prefix, "u", rows, &bits)?;
        let v = QuantVectors::decode(r, prefix, "v", cols, &bits)?;
        Ok(Self {
            rows,
            cols,
            bits,
            sigma,
            u,
            v,
        })
    }
}
