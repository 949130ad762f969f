//! Dequantization of ggml block formats to `f32`, following `ggml-quants.c`
//! (`dequantize_row_*`) operation for operation, so results match ggml and the
//! Python `gguf` package bit for bit (up to f32 rounding order; see the tests).

use half::{bf16, f16};

use super::reader::GgmlType;

/// Dequantizes `raw` (whole blocks of `ty`) into `out`. Returns `false` when the
/// type is not supported. `raw.len()` must equal `out.len() / block * type_size`
/// (guaranteed by the reader); on mismatch only the common prefix is written.
pub(crate) fn dequantize(ty: GgmlType, raw: &[u8], out: &mut [f32]) -> bool {
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => blocks::<32, 34>(raw, out, q8_0),
        GgmlType::Q4_0 => blocks::<32, 18>(raw, out, q4_0),
        GgmlType::Q4_1 => blocks::<32, 20>(raw, out, q4_1),
        GgmlType::Q5_0 => blocks::<32, 22>(raw, out, q5_0),
        GgmlType::Q5_1 => blocks::<32, 24>(raw, out, q5_1),
        GgmlType::Q2_K => blocks::<256, 84>(raw, out, q2_k),
        GgmlType::Q3_K => blocks::<256, 110>(raw, out, q3_k),
        GgmlType::Q4_K => blocks::<256, 144>(raw, out, q4_k),
        GgmlType::Q5_K => blocks::<256, 176>(raw, out, q5_k),
        GgmlType::Q6_K => blocks::<256, 210>(raw, out, q6_k),
        _ => return false,
    }
    true
}

#[inline]
fn blocks<const QK: usize, const BYTES: usize>(
    raw: &[u8],
    out: &mut [f32],
    f: impl Fn(&[u8; BYTES], &mut [f32; QK]),
) {
    for (b, o) in raw.chunks_exact(BYTES).zip(out.chunks_exact_mut(QK)) {
        // chunks_exact guarantees the lengths.
        let b: &[u8; BYTES] = b.try_into().expect("block size");
        let o: &mut [f32; QK] = o.try_into().expect("block size");
        f(b, o);
    }
}

#[inline]
fn h(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `block_q8_0 { ggml_half d; int8_t qs[32]; }`
fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = h(b, 0);
    for (o, &q) in y.iter_mut().zip(&b[2..]) {
        *o = f32::from(q as i8) * d;
    }
}

/// `block_q4_0 { ggml_half d; uint8_t qs[16]; }`: low nibbles are elements 0..16,
/// high nibbles 16..32, offset by -8.
fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = h(b, 0);
    let qs = &b[2..18];
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        lo[j] = f32::from((qs[j] & 0x0F) as i8 - 8) * d;
        hi[j] = f32::from((qs[j] >> 4) as i8 - 8) * d;
    }
}

/// `block_q4_1 { ggml_half d; ggml_half m; uint8_t qs[16]; }`: `x = q * d + m`.
fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = h(b, 0);
    let m = h(b, 2);
    let qs = &b[4..20];
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        lo[j] = f32::from(qs[j] & 0x0F) * d + m;
        hi[j] = f32::from(qs[j] >> 4) * d + m;
    }
}

/// `block_q5_0 { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; }`: fifth bits in `qh`.
fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = h(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        lo[j] = f32::from(((qs[j] & 0x0F) | xh0) as i8 - 16) * d;
        hi[j] = f32::from(((qs[j] >> 4) | xh1) as i8 - 16) * d;
    }
}

/// `block_q5_1 { ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16]; }`.
fn q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = h(b, 0);
    let m = h(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    let (lo, hi) = y.split_at_mut(16);
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        lo[j] = f32::from((qs[j] & 0x0F) | xh0) * d + m;
        hi[j] = f32::from((qs[j] >> 4) | xh1) * d + m;
    }
}

/// `block_q2_K { uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin; }`:
/// 16 sub-blocks of 16, 4-bit scale (low nibble) and min (high nibble) each.
fn q2_k(b: &[u8; 84], y: &mut [f32; 256]) {
    let scales = &b[0..16];
    let d = h(b, 80);
    let min = h(b, 82);
    let mut is = 0;
    let mut yi = 0;
    for n in 0..2 {
        let q = &b[16 + 32 * n..16 + 32 * n + 32];
        let mut shift = 0;
        for _ in 0..4 {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * f32::from(sc & 0xF);
                let ml = min * f32::from(sc >> 4);
                for &ql in &q[16 * half..16 * half + 16] {
                    y[yi] = dl * f32::from((ql >> shift) & 3) - ml;
                    yi += 1;
                }
            }
            shift += 2;
        }
    }
}

/// `block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d; }`:
/// 16 sub-blocks of 16 with 6-bit signed scales (offset 32) packed into 12 bytes;
/// the third bit of each value is in `hmask` (bit clear means subtract 4).
fn q3_k(b: &[u8; 110], y: &mut [f32; 256]) {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let hm = &b[0..32];
    let sb = &b[96..108];
    let d_all = h(b, 108);
    let a0 = u32::from_le_bytes([sb[0], sb[1], sb[2], sb[3]]);
    let a1 = u32::from_le_bytes([sb[4], sb[5], sb[6], sb[7]]);
    let tmp = u32::from_le_bytes([sb[8], sb[9], sb[10], sb[11]]);
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut scales = [0i8; 16];
    for (i, a) in aux.iter().enumerate() {
        for (k, byte) in a.to_le_bytes().iter().enumerate() {
            scales[4 * i + k] = *byte as i8;
        }
    }
    let mut is = 0;
    let mut yi = 0;
    let mut m: u8 = 1;
    for n in 0..2 {
        let q = &b[32 + 32 * n..32 + 32 * n + 32];
        let mut shift = 0;
        for _ in 0..4 {
            for half in 0..2 {
                let dl = d_all * f32::from(scales[is].wrapping_sub(32));
                is += 1;
                for l in 16 * half..16 * half + 16 {
                    let v = ((q[l] >> shift) & 3) as i8 - if hm[l] & m != 0 { 0 } else { 4 };
                    y[yi] = dl * f32::from(v);
                    yi += 1;
                }
            }
            shift += 2;
            m <<= 1;
        }
    }
}

/// Unpacks the `j`-th 6-bit scale and min of a Q4_K/Q5_K block (`get_scale_min_k4`).
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// `block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }`:
/// 8 sub-blocks of 32 with 6-bit scales and mins; `x = d*sc*q - dmin*m`.
fn q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let d = h(b, 0);
    let min = h(b, 2);
    let scales = &b[4..16];
    for (j, (q, yc)) in b[16..144]
        .chunks_exact(32)
        .zip(y.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        let (lo, hi) = yc.split_at_mut(32);
        for l in 0..32 {
            lo[l] = d1 * f32::from(q[l] & 0xF) - m1;
            hi[l] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// `block_q5_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32];
/// uint8_t qs[128]; }`: as Q4_K with a fifth bit per value in `qh`.
fn q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let d = h(b, 0);
    let min = h(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    for (j, (ql, yc)) in b[48..176]
        .chunks_exact(32)
        .zip(y.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        let u1 = 1u8 << (2 * j);
        let u2 = 2u8 << (2 * j);
        let (lo, hi) = yc.split_at_mut(32);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            lo[l] = d1 * f32::from((ql[l] & 0xF) + h1) - m1;
            hi[l] = d2 * f32::from((ql[l] >> 4) + h2) - m2;
        }
    }
}

/// `block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }`:
/// 16 sub-blocks of 16 with 8-bit signed scales; 6-bit values offset by -32.
fn q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let d = h(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let yc = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            yc[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            yc[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            yc[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            yc[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_block() {
        let mut b = [0u8; 34];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for i in 0..32 {
            b[2 + i] = (i as i8 - 16) as u8;
        }
        let mut y = [0f32; 32];
        q8_0(&b, &mut y);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, (i as f32 - 16.0) * 0.5);
        }
    }

    #[test]
    fn q4_0_block() {
        let mut b = [0u8; 18];
        b[0..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        b[2] = 0xF0; // element 0 -> 0-8, element 16 -> 15-8
        let mut y = [0f32; 32];
        q4_0(&b, &mut y);
        assert_eq!(y[0], -16.0);
        assert_eq!(y[16], 14.0);
        assert_eq!(y[1], -16.0);
    }

    #[test]
    fn unsupported_type_reports_false() {
        let mut out = [0f32; 32];
        assert!(!dequantize(GgmlType::IQ4_NL, &[0u8; 18], &mut out));
    }
}
