//! Sequential per-row kernels: packed codes → `f32`, written (`ADD = false`)
//! or added (`ADD = true`) into an output slice.
//!
//! Every kernel computes each output value with exactly the arithmetic of
//! the scalar reference it replaces (see `tests.rs`), so results are
//! bit-identical; only the loop shape changes. Packed bits are read a
//! little-endian `u32` word at a time and expanded lane by lane with a
//! constant bit mask per lane (`word & (1 << k) != 0`) and a select, which
//! LLVM turns into SIMD and/compare/blend on the x86-64 baseline (SSE2) and
//! wider on anything the target enables — no gathers, no variable shifts,
//! no branches per element.

/// Whether bit `k` of `word` is set.
#[inline(always)]
fn bit(word: u32, k: usize) -> bool {
    word & (1u32 << k) != 0
}

/// Little-endian `u32` from up to 4 bytes (missing high bytes read as 0).
#[inline(always)]
fn word_from(bytes: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    let n = bytes.len().min(4);
    w[..n].copy_from_slice(&bytes[..n]);
    u32::from_le_bytes(w)
}

#[inline(always)]
fn put<const ADD: bool>(o: &mut f32, v: f32) {
    if ADD {
        *o += v;
    } else {
        *o = v;
    }
}

/// 1-bit row: `out[j] (=|+=) if bit j { pos } else { neg }`.
///
/// `packed` holds at least `ceil(out.len() / 8)` bytes of the
/// [`crate::pack`] layout starting at column 0 of `out`.
#[inline(always)]
pub(crate) fn signs_row<const ADD: bool>(packed: &[u8], pos: f32, neg: f32, out: &mut [f32]) {
    let full = out.len() / 32;
    let (head, tail) = out.split_at_mut(full * 32);
    for (o, w) in head.chunks_exact_mut(32).zip(packed.chunks_exact(4)) {
        let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        for (k, o) in o.iter_mut().enumerate() {
            put::<ADD>(o, if bit(w, k) { pos } else { neg });
        }
    }
    if !tail.is_empty() {
        let w = word_from(&packed[full * 4..]);
        for (k, o) in tail.iter_mut().enumerate() {
            put::<ADD>(o, if bit(w, k) { pos } else { neg });
        }
    }
}

/// 2-bit ternary row (code 1 → `pos`, 2 → `neg`, 0 or 3 → `0.0`):
/// `out[j] (=|+=) value(code j)`. `packed` as in [`signs_row`], 2 bits per
/// entry.
#[inline(always)]
pub(crate) fn ternary_row<const ADD: bool>(packed: &[u8], pos: f32, neg: f32, out: &mut [f32]) {
    #[inline(always)]
    fn value(w: u32, k: usize, pos: f32, neg: f32) -> f32 {
        let (lo, hi) = (bit(w, 2 * k), bit(w, 2 * k + 1));
        if lo == hi {
            0.0
        } else if lo {
            pos
        } else {
            neg
        }
    }
    let full = out.len() / 16;
    let (head, tail) = out.split_at_mut(full * 16);
    for (o, w) in head.chunks_exact_mut(16).zip(packed.chunks_exact(4)) {
        let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        for (k, o) in o.iter_mut().enumerate() {
            put::<ADD>(o, value(w, k, pos, neg));
        }
    }
    if !tail.is_empty() {
        let w = word_from(&packed[full * 4..]);
        for (k, o) in tail.iter_mut().enumerate() {
            put::<ADD>(o, value(w, k, pos, neg));
        }
    }
}

/// Support mask over a decoded row: `out[j] (=|+=) if bit j { src[j] } else { 0.0 }`.
#[inline(always)]
pub(crate) fn masked_row<const ADD: bool>(packed: &[u8], src: &[f32], out: &mut [f32]) {
    debug_assert_eq!(src.len(), out.len());
    let full = out.len() / 32;
    let (head, tail) = out.split_at_mut(full * 32);
    let (src_head, src_tail) = src.split_at(full * 32);
    for ((o, s), w) in head
        .chunks_exact_mut(32)
        .zip(src_head.chunks_exact(32))
        .zip(packed.chunks_exact(4))
    {
        let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        for (k, (o, &s)) in o.iter_mut().zip(s).enumerate() {
            put::<ADD>(o, if bit(w, k) { s } else { 0.0 });
        }
    }
    if !tail.is_empty() {
        let w = word_from(&packed[full * 4..]);
        for (k, (o, &s)) in tail.iter_mut().zip(src_tail).enumerate() {
            put::<ADD>(o, if bit(w, k) { s } else { 0.0 });
        }
    }
}

/// RTN group: `out[j] (=|+=) (q[j] − zero) · scale`, the arithmetic of
/// [`crate::rtn`]'s dequantizer.
#[inline(always)]
pub(crate) fn dequant<const ADD: bool>(q: &[u8], scale: f32, zero: u8, out: &mut [f32]) {
    let z = zero as f32;
    for (o, &c) in out.iter_mut().zip(q) {
        put::<ADD>(o, (c as f32 - z) * scale);
    }
}

/// `out (=|+=) src`.
#[inline(always)]
pub(crate) fn copy<const ADD: bool>(src: &[f32], out: &mut [f32]) {
    for (o, &s) in out.iter_mut().zip(src) {
        put::<ADD>(o, s);
    }
}

/// Scatter of sorted flat positions into `out`, which covers positions
/// `lo .. lo + out.len()`: entry `k` of `positions` gets `value(k)`, every
/// other entry `0.0` (`ADD = false`) or `+ 0.0` (`ADD = true`, which turns
/// −0 into +0 exactly as adding a dense zero does).
#[inline(always)]
pub(crate) fn scatter<const ADD: bool>(
    positions: &[u32],
    lo: usize,
    value: impl Fn(usize) -> f32,
    out: &mut [f32],
) {
    if !ADD {
        out.fill(0.0);
        for (k, &p) in positions.iter().enumerate() {
            out[p as usize - lo] = value(k);
        }
        return;
    }
    let mut next = 0;
    for (k, &p) in positions.iter().enumerate() {
        let p = p as usize - lo;
        for x in &mut out[next..p] {
            *x += 0.0;
        }
        out[p] += value(k);
        next = p + 1;
    }
    for x in &mut out[next..] {
        *x += 0.0;
    }
}
