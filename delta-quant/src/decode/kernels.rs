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

/// Scatter of sorted flat positions into `out`, which covers positions
/// `lo .. lo + out.len()`: entry `k` of `positions` gets `value(k)`, every
/// other entry `0.0` (`ADD = false`) or `+ 0.0` (`ADD = true`, which turns
/// −0 into +0 exactly as adding a dense zero does).
///
/// "Add" computes the kept sums `out[p] + value(k)` first (into `kept`,
/// scratch), then runs the `+ 0.0` pass over the whole slice — one
/// vectorised loop instead of one short loop per gap — and stores the kept
/// sums back, so every entry gets exactly one addition.
#[inline(always)]
pub(crate) fn scatter<const ADD: bool>(
    positions: &[u32],
    lo: usize,
    value: impl Fn(usize) -> f32,
    out: &mut [f32],
    kept: &mut Vec<f32>,
) {
    if !ADD {
        out.fill(0.0);
        for (k, &p) in positions.iter().enumerate() {
            out[p as usize - lo] = value(k);
        }
        return;
    }
    kept.clear();
    kept.extend(
        positions
            .iter()
            .enumerate()
            .map(|(k, &p)| out[p as usize - lo] + value(k)),
    );
    for x in out.iter_mut() {
        *x += 0.0;
    }
    for (&p, &v) in positions.iter().zip(kept.iter()) {
        out[p as usize - lo] = v;
    }
}

/// Several 1-bit masks summed in order, per 32-lane block in registers:
/// `out[j] (=|+=) ((0 + s₀ⱼ·a₀) + s₁ⱼ·a₁) + …`, with `masks[m] = (packed
/// row, a_m)` and `sₘⱼ = ±1` from bit `j` (the sum of the scalar reference,
/// which accumulated each mask onto zeros in turn).
#[inline(always)]
pub(crate) fn multi_signs_row<const ADD: bool>(masks: &[(&[u8], f32)], out: &mut [f32]) {
    #[inline(always)]
    fn block<const ADD: bool>(masks: &[(&[u8], f32)], word: usize, out: &mut [f32]) {
        let mut acc = [0f32; 32];
        let (p0, a0) = masks[0];
        let w = word_from(&p0[(word * 4).min(p0.len())..]);
        let (pos, neg) = (0.0 + a0, 0.0 - a0);
        for (k, x) in acc.iter_mut().enumerate() {
            *x = if bit(w, k) { pos } else { neg };
        }
        for &(p, a) in &masks[1..] {
            let w = word_from(&p[(word * 4).min(p.len())..]);
            for (k, x) in acc.iter_mut().enumerate() {
                *x += if bit(w, k) { a } else { -a };
            }
        }
        for (o, &x) in out.iter_mut().zip(&acc) {
            put::<ADD>(o, x);
        }
    }
    for (word, o) in out.chunks_mut(32).enumerate() {
        block::<ADD>(masks, word, o);
    }
}
