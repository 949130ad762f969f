//! Fast decoding of every [`Compressed`] encoding into `f32`: overwrite
//! (Δ̂) or add (`base += Δ̂`, what applying a delta and loading a model with
//! `--delta` need: one pass over the base, no Δ̂ temporary).
//!
//! A [`Decoder`] borrows a payload (Delta-CoMe's dequantized factors are
//! computed once, up front) and decodes any run of whole rows with the
//! sequential kernels of [`kernels`]. [`Decoder::run`] covers a whole matrix
//! in parallel over **fixed row chunks** of about [`TASK_ELEMS`] values: the
//! chunks do not depend on the number of threads, and every output value is
//! computed by one task with the same arithmetic, so results are identical
//! for any thread count or timing.
//!
//! Exactness against the scalar code this replaced (kept in `tests.rs` as the
//! reference): every elementwise encoding (BitDelta, multi-mask, RTN,
//! sparse, ternary, masked) is bit-identical for both modes, where "add"
//! means exactly `base[i] + Δ̂[i]` in f32 (so `-0.0 + 0.0 = +0.0` as well).
//! The low-rank encodings go through faer's matrix product per row chunk;
//! its summation order over the rank can differ from a whole-matrix product
//! by rounding (the tests allow 1e-5 relative to Σₖ|aᵢₖ bⱼₖ|).

pub(crate) mod kernels;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::bitdelta::{MultiMaskPayload, SignScales};
use crate::compressed::MaskedPayload;
use crate::deltacome::DeltaComePayload;
use crate::lowrank::LowRankPayload;
use crate::pack::{unpack_row, BitMatrix};
use crate::rtn::RtnPayload;
use crate::sparse::SparsePayload;
use crate::ternary::{TernaryLayout, TernaryPayload};
use crate::{Compressed, DeltaMatrix, QuantError};

/// What a decode does with each output value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `out = Δ̂`.
    Set,
    /// `out = out + Δ̂`.
    Add,
}

/// Output values per parallel task for elementwise encodings (256 KiB of
/// f32): a few hundred tasks for a 4096² matrix, so two threads balance and
/// per-task overhead is negligible; a task's rows stay in L2.
pub(crate) const TASK_ELEMS: usize = 1 << 16;

/// Output values per task for low-rank products (4 MiB of f32): each task
/// re-packs the right factor, so tasks are larger.
const FACTOR_TASK_ELEMS: usize = 1 << 20;

/// A payload ready to decode rows (see the [module docs](self)).
pub(crate) struct Decoder<'a> {
    rows: usize,
    cols: usize,
    kind: Kind<'a>,
}

enum Kind<'a> {
    /// One (BitDelta) or several (multi-mask) sign masks, summed in order.
    Signs(&'a [SignScales]),
    Rtn(&'a RtnPayload),
    Sparse(&'a SparsePayload),
    TernaryDense {
        codes: &'a BitMatrix,
        scale: f32,
    },
    TernarySparse {
        indices: &'a [u32],
        signs: &'a [u8],
        scale: f32,
    },
    /// Δ̂ = a · bᵀ, `a` row-major `[rows, rank]`, `b` row-major `[cols, rank]`.
    Factors {
        rank: usize,
        a: Cow<'a, [f32]>,
        b: Cow<'a, [f32]>,
    },
    Masked {
        mask: &'a BitMatrix,
        inner: Box<Decoder<'a>>,
    },
    /// A downstream payload's Δ̂, reconstructed once (row-major).
    Dense(Vec<f32>),
}

/// Built-in payload types that decode through a [`Decoder`].
pub(crate) trait Decode {
    fn decoder(&self) -> Decoder<'_>;
}

impl Decode for SignScales {
    fn decoder(&self) -> Decoder<'_> {
        Decoder::signs(std::slice::from_ref(self))
    }
}
impl Decode for MultiMaskPayload {
    fn decoder(&self) -> Decoder<'_> {
        Decoder::signs(self.masks())
    }
}
impl Decode for RtnPayload {
    fn decoder(&self) -> Decoder<'_> {
        Decoder::rtn(self)
    }
}
impl Decode for SparsePayload {
    fn decoder(&self) -> Decoder<'_> {
        Decoder::sparse(self)
    }
}
impl Decode for LowRankPayload {
    fn decoder(&self) -> Decoder<'_> {
        Decoder::factors(
            self.shape(),
            self.rank(),
            Cow::Borrowed(self.a()),
            Cow::Borrowed(self.b()),
        )
    }
}
impl Decode for DeltaComePayload {
    fn decoder(&self) -> Decoder<'_> {
        let (a, b) = self.factors();
        Decoder::factors(
            self.shape(),
            self.bits().len(),
            Cow::Owned(a),
            Cow::Owned(b),
        )
    }
}
impl Decode for TernaryPayload {
    fn decoder(&self) -> Decoder<'_> {
        Decoder::ternary(self)
    }
}
impl Decode for MaskedPayload {
    fn decoder(&self) -> Decoder<'_> {
        Decoder::with(
            [self.mask.rows(), self.mask.cols()],
            Kind::Masked {
                mask: &self.mask,
                inner: Box::new(Decoder::new(&self.inner)),
            },
        )
    }
}

impl<'a> Decoder<'a> {
    /// A decoder for any compressed value. A downstream payload
    /// ([`Compressed::Custom`]) is reconstructed once, up front.
    pub(crate) fn new(c: &'a Compressed) -> Self {
        match c {
            Compressed::BitDelta(p) => p.decoder(),
            Compressed::MultiMask(p) => p.decoder(),
            Compressed::Rtn(p) => p.decoder(),
            Compressed::Sparse(p) => p.decoder(),
            Compressed::LowRank(p) => p.decoder(),
            Compressed::DeltaCome(p) => p.decoder(),
            Compressed::Ternary(p) => p.decoder(),
            Compressed::Masked(p) => p.decoder(),
            Compressed::Custom(p) => {
                let t = p.get();
                let shape = t.shape();
                let mut values = vec![0f32; shape[0] * shape[1]];
                // The trait allows an error only for a wrong buffer length,
                // and this one is right: an error is the payload's bug.
                if let Err(e) = t.reconstruct_into(&mut values) {
                    panic!(
                        "{}: reconstruct_into failed on a buffer of the right length: {e}",
                        t.kind()
                    );
                }
                Self::with(shape, Kind::Dense(values))
            }
        }
    }

    /// The decoder of one built-in payload type.
    pub(crate) fn of<T: Decode + ?Sized>(p: &'a T) -> Self {
        p.decoder()
    }

    /// RTN codes.
    pub(crate) fn rtn(p: &'a RtnPayload) -> Self {
        Self::with(p.shape(), Kind::Rtn(p))
    }

    /// Sparse positions and values.
    pub(crate) fn sparse(p: &'a SparsePayload) -> Self {
        Self::with(p.shape(), Kind::Sparse(p))
    }

    /// Ternary values, either layout.
    pub(crate) fn ternary(p: &'a TernaryPayload) -> Self {
        let kind = match p.layout() {
            TernaryLayout::Dense(codes) => Kind::TernaryDense {
                codes,
                scale: p.scale(),
            },
            TernaryLayout::Sparse { indices, signs } => Kind::TernarySparse {
                indices,
                signs,
                scale: p.scale(),
            },
        };
        Self::with(p.shape(), kind)
    }

    /// Σⱼ αⱼ ⊙ Sⱼ over `masks` (all of one shape; at least one).
    pub(crate) fn signs(masks: &'a [SignScales]) -> Self {
        Self::with(masks[0].shape(), Kind::Signs(masks))
    }

    /// a · bᵀ (`a` `[rows, rank]`, `b` `[cols, rank]`, row-major).
    pub(crate) fn factors(
        shape: [usize; 2],
        rank: usize,
        a: Cow<'a, [f32]>,
        b: Cow<'a, [f32]>,
    ) -> Self {
        debug_assert_eq!(a.len(), shape[0] * rank);
        debug_assert_eq!(b.len(), shape[1] * rank);
        Self::with(shape, Kind::Factors { rank, a, b })
    }

    fn with(shape: [usize; 2], kind: Kind<'a>) -> Self {
        Self {
            rows: shape[0],
            cols: shape[1],
            kind,
        }
    }

    /// Rows per parallel task (fixed by the shape and the encoding only).
    pub(crate) fn task_rows(&self) -> usize {
        let elems = if self.is_factors() {
            FACTOR_TASK_ELEMS
        } else {
            TASK_ELEMS
        };
        (elems / self.cols.max(1)).max(1)
    }

    fn is_factors(&self) -> bool {
        match &self.kind {
            Kind::Factors { .. } => true,
            Kind::Masked { inner, .. } => inner.is_factors(),
            _ => false,
        }
    }

    /// Δ̂ as a new matrix.
    pub(crate) fn reconstruct(&self) -> DeltaMatrix {
        let mut d = DeltaMatrix::zeros(self.rows, self.cols);
        self.run_unchecked(d.data_mut(), Mode::Set);
        d
    }

    /// The whole matrix into `out` (row-major, `rows · cols` values),
    /// parallel over fixed row chunks.
    pub(crate) fn run(&self, out: &mut [f32], mode: Mode) -> Result<(), QuantError> {
        if Some(out.len()) != self.rows.checked_mul(self.cols) {
            return Err(QuantError::Shape(format!(
                "{} values given for a {}x{} delta",
                out.len(),
                self.rows,
                self.cols
            )));
        }
        self.run_unchecked(out, mode);
        Ok(())
    }

    fn run_unchecked(&self, out: &mut [f32], mode: Mode) {
        if out.is_empty() {
            return;
        }
        let tr = self.task_rows();
        out.par_chunks_mut(tr * self.cols)
            .enumerate()
            .for_each(|(t, chunk)| self.rows_into(t * tr, chunk, mode));
    }

    /// Rows `row0 .. row0 + out.len() / cols` into `out`, on this thread.
    /// `out` must hold whole rows inside the matrix.
    pub(crate) fn rows_into(&self, row0: usize, out: &mut [f32], mode: Mode) {
        match mode {
            Mode::Set => self.rows_impl::<false>(row0, out),
            Mode::Add => self.rows_impl::<true>(row0, out),
        }
    }

    fn rows_impl<const ADD: bool>(&self, row0: usize, out: &mut [f32]) {
        let cols = self.cols;
        if cols == 0 || out.is_empty() {
            return;
        }
        assert!(
            out.len().is_multiple_of(cols) && row0 + out.len() / cols <= self.rows,
            "rows_into: {} values from row {row0} do not fit a {}x{} delta",
            out.len(),
            self.rows,
            cols
        );
        let lo = row0 * cols;
        match &self.kind {
            Kind::Signs(masks) => signs_rows::<ADD>(masks, row0, cols, out),
            Kind::Rtn(p) => rtn_rows::<ADD>(p, row0, cols, out),
            Kind::Sparse(p) => {
                let (k0, k1) = position_range(p.indices(), lo, lo + out.len());
                let values = &p.values()[k0..k1];
                let mut kept = Vec::new();
                kernels::scatter::<ADD>(&p.indices()[k0..k1], lo, |k| values[k], out, &mut kept);
            }
            Kind::TernaryDense { codes, scale } => {
                for (i, o) in out.chunks_exact_mut(cols).enumerate() {
                    kernels::ternary_row::<ADD>(codes.row(row0 + i), *scale, -*scale, o);
                }
            }
            Kind::TernarySparse {
                indices,
                signs,
                scale,
            } => {
                let (k0, k1) = position_range(indices, lo, lo + out.len());
                let s = *scale;
                let value = |k: usize| {
                    let g = k0 + k;
                    if (signs[g / 8] >> (g % 8)) & 1 == 1 {
                        s
                    } else {
                        -s
                    }
                };
                kernels::scatter::<ADD>(&indices[k0..k1], lo, value, out, &mut Vec::new());
            }
            Kind::Factors { rank, a, b } => factor_rows::<ADD>(*rank, a, b, row0, cols, out),
            Kind::Dense(values) => {
                let src = &values[lo..lo + out.len()];
                for (o, &d) in out.iter_mut().zip(src) {
                    *o = if ADD { *o + d } else { d };
                }
            }
            Kind::Masked { mask, inner } => {
                let mut tmp = vec![0f32; out.len()];
                inner.rows_impl::<false>(row0, &mut tmp);
                for (i, (o, t)) in out
                    .chunks_exact_mut(cols)
                    .zip(tmp.chunks_exact(cols))
                    .enumerate()
                {
                    kernels::masked_row::<ADD>(mask.row(row0 + i), t, o);
                }
            }
        }
    }
}

/// Indices `k0..k1` of the sorted `positions` that fall in `lo..hi`.
fn position_range(positions: &[u32], lo: usize, hi: usize) -> (usize, usize) {
    let k0 = positions.partition_point(|&p| (p as usize) < lo);
    let k1 = k0 + positions[k0..].partition_point(|&p| (p as usize) < hi);
    (k0, k1)
}

fn scale_of(m: &SignScales, row: usize) -> f32 {
    match m.scales() {
        [s] => *s,
        s => s[row],
    }
}

/// Sign masks. Mask 0 gives `0 + α·s` (`±0` normalised to `+0` as the
/// reference, which accumulated onto zeros, did); each further mask adds
/// `±α` in order; "add" mode adds the finished sum to `out`.
fn signs_rows<const ADD: bool>(masks: &[SignScales], row0: usize, cols: usize, out: &mut [f32]) {
    let first = &masks[0];
    if masks.len() == 1 {
        for (i, o) in out.chunks_exact_mut(cols).enumerate() {
            let a = scale_of(first, row0 + i);
            kernels::signs_row::<ADD>(first.signs().row(row0 + i), 0.0 + a, 0.0 - a, o);
        }
        return;
    }
    let mut rows: Vec<(&[u8], f32)> = Vec::with_capacity(masks.len());
    for (i, o) in out.chunks_exact_mut(cols).enumerate() {
        let r = row0 + i;
        rows.clear();
        rows.extend(masks.iter().map(|m| (m.signs().row(r), scale_of(m, r))));
        kernels::multi_signs_row::<ADD>(&rows, o);
    }
}

/// RTN: unpack a row's codes once, then dequantize group by group.
fn rtn_rows<const ADD: bool>(p: &RtnPayload, row0: usize, cols: usize, out: &mut [f32]) {
    let (bits, group) = (p.bits(), p.group());
    let groups = cols.div_ceil(group);
    let mut q = vec![0u8; cols];
    for (i, o) in out.chunks_exact_mut(cols).enumerate() {
        let r = row0 + i;
        unpack_row(p.codes().row(r), bits, &mut q);
        let scales = &p.scales()[r * groups..(r + 1) * groups];
        let zeros = &p.zeros()[r * groups..(r + 1) * groups];
        for (((o, q), &s), &z) in o
            .chunks_mut(group)
            .zip(q.chunks(group))
            .zip(scales)
            .zip(zeros)
        {
            kernels::dequant::<ADD>(q, s, z, o);
        }
    }
}

/// Rows of a · bᵀ through faer's product, on this thread. faer is
/// column-major: the row-major `out` block (`nr × cols`) is viewed as its
/// transpose `cols × nr` = b · a_blockᵀ, with `b` viewed row-major
/// `cols × rank` and the row block of `a` as column-major `rank × nr`.
fn factor_rows<const ADD: bool>(
    rank: usize,
    a: &[f32],
    b: &[f32],
    row0: usize,
    cols: usize,
    out: &mut [f32],
) {
    if rank == 0 {
        // Δ̂ = 0: "add" still adds +0.0 so −0 turns into +0 as `base + 0` does.
        for x in out.iter_mut() {
            *x = if ADD { *x + 0.0 } else { 0.0 };
        }
        return;
    }
    let nr = out.len() / cols;
    let dst = MatMut::from_column_major_slice_mut(out, cols, nr);
    let lhs = MatRef::from_row_major_slice(b, cols, rank);
    let rhs = MatRef::from_column_major_slice(&a[row0 * rank..(row0 + nr) * rank], rank, nr);
    let accum = if ADD { Accum::Add } else { Accum::Replace };
    matmul(dst, accum, lhs, rhs, 1.0f32, Par::Seq);
}
