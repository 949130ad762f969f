//! Bit packing.
//!
//! Layout (the same for 1-bit sign masks and k-bit codes): each **row is
//! packed separately** into `ceil(cols * bits / 8)` bytes, so a row always
//! starts on a byte boundary and widths that are not multiples of 8 (or 32)
//! just leave the last byte partly used (unused high bits are zero).
//! Within a row the codes form one **little-endian (LSB-first) bit
//! stream**: code `j` occupies bits `j*bits .. (j+1)*bits` of the stream,
//! bit `b` of the stream being bit `b % 8` of byte `b / 8`. For 1-bit masks
//! this is exactly `np.packbits(mask, axis=-1, bitorder="little")`.
//! Bytes (not u32 words) keep the layout independent of endianness.

use rayon::prelude::*;

use crate::QuantError;

/// A `rows x cols` matrix of `bits`-bit unsigned codes, packed as described
/// in the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitMatrix {
    rows: usize,
    cols: usize,
    bits: u8,
    bytes: Vec<u8>,
}

/// Bytes one packed row of `cols` codes of `bits` bits takes.
pub fn row_bytes(cols: usize, bits: u8) -> usize {
    (cols * bits as usize).div_ceil(8)
}

/// Packs one row of codes (each `< 2^bits`) into `out` (`row_bytes` long).
pub fn pack_row(codes: &[u8], bits: u8, out: &mut [u8]) {
    debug_assert_eq!(out.len(), row_bytes(codes.len(), bits));
    if bits == 1 {
        for (chunk, o) in codes.chunks(8).zip(out.iter_mut()) {
            let mut b = 0u8;
            for (k, &c) in chunk.iter().enumerate() {
                b |= (c & 1) << k;
            }
            *o = b;
        }
        return;
    }
    out.fill(0);
    let mut acc: u32 = 0;
    let mut nacc: u32 = 0;
    let mut pos = 0;
    let mask = (1u32 << bits) - 1;
    for &c in codes {
        acc |= (c as u32 & mask) << nacc;
        nacc += bits as u32;
        while nacc >= 8 {
            out[pos] = acc as u8;
            pos += 1;
            acc >>= 8;
            nacc -= 8;
        }
    }
    if nacc > 0 {
        out[pos] = acc as u8;
    }
}

/// Unpacks `codes.len()` codes of `bits` bits from one packed row.
///
/// Widths 1..=8 take eight codes (= `bits` bytes) at a time from one
/// little-endian `u64`, with the width a compile-time constant so the
/// shifts are constants; other widths take a general bit-stream loop.
pub fn unpack_row(packed: &[u8], bits: u8, codes: &mut [u8]) {
    debug_assert_eq!(packed.len(), row_bytes(codes.len(), bits));
    match bits {
        1 => unpack_fixed::<1>(packed, codes),
        2 => unpack_fixed::<2>(packed, codes),
        3 => unpack_fixed::<3>(packed, codes),
        4 => unpack_fixed::<4>(packed, codes),
        5 => unpack_fixed::<5>(packed, codes),
        6 => unpack_fixed::<6>(packed, codes),
        7 => unpack_fixed::<7>(packed, codes),
        8 => codes.copy_from_slice(&packed[..codes.len()]),
        _ => unpack_stream(packed, bits, codes),
    }
}

/// Eight `B`-bit codes from each `B` bytes.
#[inline(always)]
fn unpack_fixed<const B: usize>(packed: &[u8], codes: &mut [u8]) {
    let mask = (1u64 << B) - 1;
    let n = codes.len();
    let expand = |bytes: &[u8], out: &mut [u8]| {
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        let w = u64::from_le_bytes(w);
        for (k, c) in out.iter_mut().enumerate() {
            *c = ((w >> (k * B)) & mask) as u8;
        }
    };
    let mut blocks = codes.chunks_exact_mut(8);
    for (c, p) in (&mut blocks).zip(packed.chunks_exact(B)) {
        expand(p, c);
    }
    let rest = blocks.into_remainder();
    if !rest.is_empty() {
        let start = (n / 8) * B;
        expand(&packed[start..start + row_bytes(rest.len(), B as u8)], rest);
    }
}

/// Any width: one code at a time from a bit accumulator.
fn unpack_stream(packed: &[u8], bits: u8, codes: &mut [u8]) {
    let mask = (1u32 << bits) - 1;
    let mut acc: u32 = 0;
    let mut nacc: u32 = 0;
    let mut pos = 0;
    for c in codes.iter_mut() {
        while nacc < bits as u32 {
            acc |= (packed[pos] as u32) << nacc;
            pos += 1;
            nacc += 8;
        }
        *c = (acc & mask) as u8;
        acc >>= bits;
        nacc -= bits as u32;
    }
}

impl BitMatrix {
    /// Packs `codes` (row-major, `rows * cols`, each `< 2^bits`).
    pub fn pack(rows: usize, cols: usize, bits: u8, codes: &[u8]) -> Result<Self, QuantError> {
        check_bits(bits)?;
        if codes.len() != rows * cols {
            return Err(QuantError::Shape(format!(
                "{} codes for a {rows}x{cols} bit matrix",
                codes.len()
            )));
        }
        if bits < 8 {
            if let Some(c) = codes.iter().find(|&&c| c >> bits != 0) {
                return Err(QuantError::Shape(format!(
                    "code {c} does not fit in {bits} bits"
                )));
            }
        }
        let rb = row_bytes(cols, bits);
        let mut bytes = vec![0u8; rows * rb];
        if rb > 0 {
            bytes
                .par_chunks_mut(rb)
                .zip(codes.par_chunks(cols.max(1)))
                .for_each(|(out, row)| pack_row(row, bits, out));
        }
        Ok(Self {
            rows,
            cols,
            bits,
            bytes,
        })
    }

    /// Wraps already packed bytes, checking the length and that the unused
    /// padding bits at the end of every row are zero (so that equal
    /// matrices have equal bytes).
    pub fn from_bytes(
        rows: usize,
        cols: usize,
        bits: u8,
        bytes: Vec<u8>,
    ) -> Result<Self, QuantError> {
        check_bits(bits)?;
        let rb = row_bytes(cols, bits);
        if bytes.len() != rows * rb {
            return Err(QuantError::Shape(format!(
                "{} bytes for a {rows}x{cols} matrix of {bits}-bit codes (expected {})",
                bytes.len(),
                rows * rb
            )));
        }
        let used = (cols * bits as usize) % 8;
        if used != 0 && rb > 0 {
            let pad_mask = !((1u8 << used) - 1);
            if bytes.chunks(rb).any(|r| r[rb - 1] & pad_mask != 0) {
                return Err(QuantError::Shape("non-zero padding bits".into()));
            }
        }
        Ok(Self {
            rows,
            cols,
            bits,
            bytes,
        })
    }

    pub(crate) fn from_raw_unchecked(rows: usize, cols: usize, bits: u8, bytes: Vec<u8>) -> Self {
        debug_assert_eq!(bytes.len(), rows * row_bytes(cols, bits));
        Self {
            rows,
            cols,
            bits,
            bytes,
        }
    }

    /// Unpacks to row-major codes.
    pub fn unpack(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.rows * self.cols];
        let rb = self.row_bytes();
        if rb > 0 {
            out.par_chunks_mut(self.cols)
                .zip(self.bytes.par_chunks(rb))
                .for_each(|(o, p)| unpack_row(p, self.bits, o));
        }
        out
    }

    /// Code at `(row, col)`.
    pub fn get(&self, row: usize, col: usize) -> u8 {
        assert!(
            row < self.rows && col < self.cols,
            "BitMatrix index out of range"
        );
        let bit = col * self.bits as usize;
        let base = row * self.row_bytes();
        let lo = self.bytes[base + bit / 8] as u16;
        let hi = self.bytes.get(base + bit / 8 + 1).copied().unwrap_or(0) as u16;
        let word = lo | (hi << 8);
        ((word >> (bit % 8)) & ((1u16 << self.bits) - 1)) as u8
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn bits(&self) -> u8 {
        self.bits
    }
    /// Packed bytes of one row.
    pub fn row_bytes(&self) -> usize {
        row_bytes(self.cols, self.bits)
    }
    /// Packed row `i`.
    pub fn row(&self, i: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.bytes[i * rb..(i + 1) * rb]
    }
    /// All packed bytes (`rows * row_bytes`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn check_bits(bits: u8) -> Result<(), QuantError> {
    if (1..=8).contains(&bits) {
        Ok(())
    } else {
        Err(QuantError::Shape(format!("code width {bits} not in 1..=8")))
    }
}
