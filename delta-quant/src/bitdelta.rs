//! BitDelta and multi-mask BitDelta.
//!
//! BitDelta (Liu et al. 2024, "BitDelta: Your Fine-Tune May Only Be Worth
//! One Bit", arXiv 2402.10193, code: github.com/FasterDecoding/BitDelta)
//! stores Δ ≈ α·sign(Δ) with α = mean|Δ|, which minimises ‖Δ − α·S‖²_F for
//! S = sign(Δ) (set the derivative of Σ(|Δᵢ| − α)² to zero). As in the
//! reference code, sign(0) = +1 (`Δ >= 0`).
//!
//! Storage: the signs as a 1-bit [`BitMatrix`] (bit = 1 for +1, rows packed
//! separately, LSB-first in bytes, see [`crate::pack`]) and the scales as
//! **f32** (one per matrix, or one per row with `per_row=true`). The
//! reference code keeps α in the model dtype (fp16/bf16); we store f32 so a
//! trained α from scale distillation round-trips exactly. The difference is
//! 2 bytes per matrix (per row with `per_row`), far below rounding in any
//! reported ratio (see [`crate::size`]).
//!
//! Multi-mask BitDelta applies the same step to the residual k times:
//! R₀ = Δ; αⱼ = mean|Rⱼ|, Sⱼ = sign(Rⱼ), Rⱼ₊₁ = Rⱼ − αⱼSⱼ; Δ̂ = Σⱼ αⱼSⱼ.
//! Each step is the optimal 1-bit fit of the residual, so ‖Δ − Δ̂‖ never
//! grows with k.

use rayon::prelude::*;
use serde_json::{json, Value};

use crate::compressed::{meta_bool, meta_usize, PartsReader, Payload};
use crate::compressor::{CompressContext, Compressor, Params};
use crate::decode::kernels::signs_row;
use crate::decode::{Decoder, TASK_ELEMS};
use crate::pack::{row_bytes, BitMatrix};
use crate::params::ParamList;
use crate::{Compressed, DeltaMatrix, QuantError};

/// BitDelta: 1-bit signs and one scale per matrix (or per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BitDelta {
    /// One scale per output row (αᵢ = mean|Δᵢ|) instead of one per matrix.
    pub per_row: bool,
}

impl BitDelta {
    pub fn new(per_row: bool) -> Self {
        Self { per_row }
    }

    /// A BitDelta value from given signs and scale(s) — for scale
    /// distillation, which trains α with the signs fixed. `scales` has one
    /// value (per matrix) or `signs.rows()` values (per row).
    pub fn with_scales(signs: BitMatrix, scales: Vec<f32>) -> Result<Compressed, QuantError> {
        Ok(Compressed::BitDelta(SignScales::new(signs, scales)?))
    }

    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        Ok(Self {
            per_row: p.get("per_row", false)?,
        })
    }
}

impl Compressor for BitDelta {
    fn method(&self) -> &'static str {
        "bitdelta"
    }
    fn params(&self) -> Params {
        Params::from([("per_row".to_string(), json!(self.per_row))])
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        let (signs, row_sums) = signs_and_abs_sums(delta, ctx.name)?;
        let scales = scales_from_sums(&row_sums, delta.cols(), self.per_row);
        Ok(Compressed::BitDelta(SignScales { signs, scales }))
    }
}

/// Multi-mask BitDelta: `k` residual 1-bit masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiMask {
    pub k: usize,
    pub per_row: bool,
}

impl MultiMask {
    pub fn new(k: usize, per_row: bool) -> Self {
        Self { k, per_row }
    }
    pub(crate) fn from_params(p: &ParamList) -> Result<Self, QuantError> {
        Ok(Self {
            k: p.get_in("k", 2usize, 1, 16, "in 1..=16")?,
            per_row: p.get("per_row", false)?,
        })
    }
}

impl Compressor for MultiMask {
    fn method(&self) -> &'static str {
        "multimask"
    }
    fn params(&self) -> Params {
        Params::from([
            ("k".to_string(), json!(self.k)),
            ("per_row".to_string(), json!(self.per_row)),
        ])
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        if self.k == 0 {
            return Err(QuantError::InvalidParam {
                method: "multimask".into(),
                param: "k".into(),
                value: "0".into(),
                reason: "need at least one mask".into(),
            });
        }
        let mut residual = delta.clone();
        let mut masks = Vec::with_capacity(self.k);
        for _ in 0..self.k {
            let (signs, row_sums) = signs_and_abs_sums(&residual, ctx.name)?;
            let scales = scales_from_sums(&row_sums, delta.cols(), self.per_row);
            let step = SignScales { signs, scales };
            step.add_scaled_into(&mut residual, -1.0);
            masks.push(step);
        }
        Ok(Compressed::MultiMask(MultiMaskPayload { masks }))
    }
}

/// Packed signs with one scale (per matrix) or `rows` scales (per row).
/// Payloads: `signs` (U8 `[rows, ceil(cols/8)]`), `scales` (F32 `[1]` or
/// `[rows]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SignScales {
    signs: BitMatrix,
    scales: Vec<f32>,
}

impl SignScales {
    pub fn new(signs: BitMatrix, scales: Vec<f32>) -> Result<Self, QuantError> {
        if signs.bits() != 1 {
            return Err(QuantError::Shape("sign mask must be 1-bit".into()));
        }
        if scales.len() != 1 && scales.len() != signs.rows() {
            return Err(QuantError::Shape(format!(
                "{} scales for {} rows (need 1 or one per row)",
                scales.len(),
                signs.rows()
            )));
        }
        Ok(Self { signs, scales })
    }
    /// Signs (bit 1 = +1).
    pub fn signs(&self) -> &BitMatrix {
        &self.signs
    }
    /// One scale, or one per row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    pub fn per_row(&self) -> bool {
        self.scales.len() != 1
    }
    pub fn shape(&self) -> [usize; 2] {
        [self.signs.rows(), self.signs.cols()]
    }
    pub fn storage_bytes(&self) -> u64 {
        self.signs.as_bytes().len() as u64 + 4 * self.scales.len() as u64
    }
    /// α ⊙ S as a new matrix (see [`Compressed::reconstruct_into`] for
    /// decoding into a given buffer).
    pub fn reconstruct(&self) -> DeltaMatrix {
        Decoder::signs(std::slice::from_ref(self)).reconstruct()
    }

    /// `acc += factor · α ⊙ S` (the residual step of multi-mask
    /// compression), parallel over fixed row chunks.
    pub(crate) fn add_scaled_into(&self, acc: &mut DeltaMatrix, factor: f32) {
        let cols = acc.cols();
        if cols == 0 {
            return;
        }
        let rows_per_task = (TASK_ELEMS / cols).max(1);
        let scales = &self.scales;
        acc.data_mut()
            .par_chunks_mut(rows_per_task * cols)
            .enumerate()
            .for_each(|(t, chunk)| {
                for (i, row) in chunk.chunks_exact_mut(cols).enumerate() {
                    let r = t * rows_per_task + i;
                    // ±1 · a is exact, so adding ±a equals adding sign · a.
                    let a = factor
                        * if scales.len() == 1 {
                            scales[0]
                        } else {
                            scales[r]
                        };
                    signs_row::<true>(self.signs.row(r), a, -a, row);
                }
            });
    }

    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        let rows = self.signs.rows();
        out.push((
            format!("{prefix}signs"),
            Payload::u8(
                vec![rows, self.signs.row_bytes()],
                self.signs.as_bytes().to_vec(),
            ),
        ));
        out.push((
            format!("{prefix}scales"),
            Payload::f32(vec![self.scales.len()], &self.scales),
        ));
        json!({ "per_row": self.scales.len() != 1 })
    }

    pub(crate) fn decode(
        meta: &Value,
        r: &PartsReader<'_>,
        prefix: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Self, QuantError> {
        let per_row = meta_bool(meta, "per_row", r.tensor)?;
        let signs_name = format!("{prefix}signs");
        let bytes = r.u8(&signs_name, rows * row_bytes(cols, 1))?;
        let signs = BitMatrix::from_bytes(rows, cols, 1, bytes)
            .map_err(|e| r.bad(&signs_name, e.to_string()))?;
        let scales_name = format!("{prefix}scales");
        let scales = r.f32(&scales_name, if per_row { rows } else { 1 })?;
        if scales.iter().any(|s| !s.is_finite()) {
            return Err(r.bad(&scales_name, "non-finite scale"));
        }
        Ok(Self { signs, scales })
    }
}

/// k residual masks. Payloads `signs.<j>` and `scales.<j>` for j in 0..k.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiMaskPayload {
    masks: Vec<SignScales>,
}

impl MultiMaskPayload {
    pub fn masks(&self) -> &[SignScales] {
        &self.masks
    }
    pub fn shape(&self) -> [usize; 2] {
        self.masks[0].shape()
    }
    pub fn storage_bytes(&self) -> u64 {
        self.masks.iter().map(SignScales::storage_bytes).sum()
    }
    /// Σⱼ αⱼ ⊙ Sⱼ as a new matrix.
    pub fn reconstruct(&self) -> DeltaMatrix {
        Decoder::signs(&self.masks).reconstruct()
    }
    pub(crate) fn encode(&self, prefix: &str, out: &mut Vec<(String, Payload)>) -> Value {
        let mut per_row = false;
        for (j, m) in self.masks.iter().enumerate() {
            per_row = m.encode(&format!("{prefix}{j}."), out)["per_row"]
                .as_bool()
                .unwrap_or(false);
        }
        json!({ "k": self.masks.len(), "per_row": per_row })
    }
    pub(crate) fn decode(
        meta: &Value,
        r: &PartsReader<'_>,
        prefix: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Self, QuantError> {
        let k = meta_usize(meta, "k", r.tensor)?;
        if k == 0 || k > 64 {
            return Err(QuantError::Metadata(format!(
                "tensor `{}`: multimask k={k}",
                r.tensor
            )));
        }
        let masks = (0..k)
            .map(|j| SignScales::decode(meta, r, &format!("{prefix}{j}."), rows, cols))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { masks })
    }
}

/// One fused, row-parallel pass: packs `Δ >= 0` and sums |Δ| per row (f64),
/// also detecting NaN/Inf (a non-finite sum). Packing signs does not need
/// α, so the matrix is read from memory once.
pub(crate) fn signs_and_abs_sums(
    delta: &DeltaMatrix,
    tensor: &str,
) -> Result<(BitMatrix, Vec<f64>), QuantError> {
    let (rows, cols) = (delta.rows(), delta.cols());
    let rb = row_bytes(cols, 1);
    let mut bytes = vec![0u8; rows * rb];
    let mut sums: Vec<f64> = if cols == 0 {
        vec![0.0; rows]
    } else {
        bytes
            .par_chunks_mut(rb)
            .zip(delta.data().par_chunks(cols))
            .map(|(out, row)| pack_row_abs(row, out))
            .collect()
    };
    for (i, sum) in sums.iter_mut().enumerate() {
        if sum.is_finite() {
            continue;
        }
        let row = delta.row(i);
        if let Some(j) = row.iter().position(|x| !x.is_finite()) {
            return Err(delta.non_finite_at(tensor, i * cols + j));
        }
        // Finite entries near f32::MAX can overflow the f32 partial sums of
        // the fast path; f64 cannot overflow for f32 input (3.4e38 · 2^64
        // entries < 1.8e308), so redo this row's sum in f64.
        *sum = row.iter().map(|&x| x.abs() as f64).sum();
    }
    Ok((BitMatrix::from_raw_unchecked(rows, cols, 1, bytes), sums))
}

/// Packs one row's signs into `out` and returns Σ|x| for it.
///
/// Partial sums are kept in f32 lanes over blocks of 256 values and flushed
/// to f64, which keeps the mean accurate to ~1e-7 relative even for rows of
/// 10⁵ values. On x86-64 the 8-wide inner step uses SSE2 (part of the
/// x86-64 baseline, so no run-time detection is needed): compare, movemask
/// and and-not for |x| — the portable loop below does not vectorise into
/// movemask and runs ~3x slower.
#[inline]
fn pack_row_abs(row: &[f32], out: &mut [u8]) -> f64 {
    const BLOCK: usize = 256;
    let mut total = 0.0f64;
    let full = row.len() / 8;
    for (blk_idx, blk) in row[..full * 8].chunks(BLOCK).enumerate() {
        let out_blk = &mut out[blk_idx * (BLOCK / 8)..blk_idx * (BLOCK / 8) + blk.len() / 8];
        total += pack_block(blk, out_blk);
    }
    let rem = &row[full * 8..];
    if !rem.is_empty() {
        let mut b = 0u8;
        for (k, &x) in rem.iter().enumerate() {
            b |= ((x >= 0.0) as u8) << k;
            total += x.abs() as f64;
        }
        out[full] = b;
    }
    // NaN >= 0 is false, so a NaN packs as −1; the NaN in `total` makes the
    // caller reject the matrix before anything is returned.
    total
}

/// `blk.len()` is a multiple of 8 and `out.len() == blk.len() / 8`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn pack_block(blk: &[f32], out: &mut [u8]) -> f64 {
    use std::arch::x86_64::*;
    debug_assert_eq!(blk.len(), out.len() * 8);
    // SAFETY: SSE2 is always available on x86-64; loads are unaligned
    // (`loadu`) and stay within `blk` because `blk.len() == 8 * out.len()`.
    unsafe {
        let zero = _mm_setzero_ps();
        let sign = _mm_set1_ps(-0.0);
        let (mut acc0, mut acc1) = (_mm_setzero_ps(), _mm_setzero_ps());
        let p = blk.as_ptr();
        for (i, o) in out.iter_mut().enumerate() {
            let a = _mm_loadu_ps(p.add(8 * i));
            let b = _mm_loadu_ps(p.add(8 * i + 4));
            // x >= 0 (true for -0.0, false for NaN), lane k -> bit k.
            let ma = _mm_movemask_ps(_mm_cmpge_ps(a, zero));
            let mb = _mm_movemask_ps(_mm_cmpge_ps(b, zero));
            *o = (ma | (mb << 4)) as u8;
            acc0 = _mm_add_ps(acc0, _mm_andnot_ps(sign, a));
            acc1 = _mm_add_ps(acc1, _mm_andnot_ps(sign, b));
        }
        let mut lanes = [0f32; 8];
        _mm_storeu_ps(lanes.as_mut_ptr(), acc0);
        _mm_storeu_ps(lanes.as_mut_ptr().add(4), acc1);
        lanes.iter().map(|&x| x as f64).sum()
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn pack_block(blk: &[f32], out: &mut [u8]) -> f64 {
    let mut acc = [0.0f32; 8];
    for (c, o) in blk.chunks_exact(8).zip(out.iter_mut()) {
        let mut b = 0u8;
        for k in 0..8 {
            b |= ((c[k] >= 0.0) as u8) << k;
            acc[k] += c[k].abs();
        }
        *o = b;
    }
    acc.iter().map(|&a| a as f64).sum()
}

fn scales_from_sums(row_sums: &[f64], cols: usize, per_row: bool) -> Vec<f32> {
    if per_row {
        row_sums
            .iter()
            .map(|&s| {
                if cols == 0 {
                    0.0
                } else {
                    (s / cols as f64) as f32
                }
            })
            .collect()
    } else {
        let n = row_sums.len() * cols;
        let total: f64 = row_sums.iter().sum();
        vec![if n == 0 {
            0.0
        } else {
            (total / n as f64) as f32
        }]
    }
}
