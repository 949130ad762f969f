//! # ternary-method
//!
//! A compression method defined **outside** `delta-quant`, to show (and
//! test) that a downstream crate can add one without touching the
//! workspace: 1.58-bit ternary deltas with group scales, in the style of
//! BitNet b1.58 (Ma et al. 2024, arXiv 2402.17764) applied to the
//! fine-tuning delta.
//!
//! For each row and each group of `group` consecutive input columns,
//! γ = mean|Δ| over the group ("absmean") and t = round(clamp(Δ/γ, −1, 1))
//! ∈ {−1, 0, +1}; Δ̂ = γ·t. Trits are packed five to a byte (3⁵ = 243 ≤
//! 256), i.e. 1.6 bits per entry, plus one f32 scale per group.
//!
//! | method string | encoding kind | payloads |
//! |---|---|---|
//! | `ternary158[:group=64]` | `ternary158` | `codes` U8 `[rows, ceil(cols/5)]`, `scales` F32 `[rows · ceil(cols/group)]` |
//!
//! Call [`register`] once per process (it is idempotent); from then on
//! `parse_method("ternary158:group=32")`, `DeltaFile::open`, `apply`,
//! model loading with a delta and the study grid all handle the method.
//!
//! ```
//! use delta_quant::{parse_method, CompressContext, DeltaMatrix};
//! ternary_method::register().unwrap();
//! let c = parse_method("ternary158:group=4").unwrap();
//! let d = DeltaMatrix::new(1, 5, vec![0.3, -0.1, 0.0, 0.2, 1.0]).unwrap();
//! let t = c.compress_matrix(&d, &CompressContext::new("w", 0)).unwrap();
//! assert_eq!(t.kind(), "ternary158");
//! // One byte of codes (5 trits), two group scales.
//! assert_eq!(t.storage_bytes(), 1 + 2 * 4);
//! ```

use std::any::Any;

use delta_quant::{
    register_encoding, register_method, CompressContext, Compressed, CompressedTensor, Compressor,
    DeltaMatrix, EncodingInfo, EncodingReader, MethodInfo, ParamList, Params, PartsWriter, Payload,
    QuantError,
};
use serde_json::{json, Value};

/// Method name and encoding kind.
pub const NAME: &str = "ternary158";
/// Trits per stored byte.
const TRITS_PER_BYTE: usize = 5;
/// Default group width (input columns per scale).
pub const DEFAULT_GROUP: usize = 64;

/// Registers the method and its encoding with delta-quant's registry.
/// Idempotent: every entry point (and test) may call it.
pub fn register() -> Result<(), QuantError> {
    register_method(MethodInfo {
        name: NAME,
        params: &["group=64"],
        summary: "1.58-bit ternary {-γ,0,+γ}, absmean scale per group (example crate)",
        build,
    })?;
    register_encoding(EncodingInfo { kind: NAME, decode })
}

fn build(p: &ParamList) -> Result<Box<dyn Compressor>, QuantError> {
    let group = p.get_in("group", DEFAULT_GROUP, 1, 1 << 16, "in 1..=65536")?;
    Ok(Box::new(Ternary158 { group }))
}

/// The compressor (see the [crate docs](crate)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ternary158 {
    /// Input columns per scale.
    pub group: usize,
}

impl Compressor for Ternary158 {
    fn method(&self) -> &'static str {
        NAME
    }
    fn params(&self) -> Params {
        Params::from([("group".to_string(), json!(self.group))])
    }
    fn compress_matrix(
        &self,
        delta: &DeltaMatrix,
        ctx: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        let (rows, cols) = (delta.rows(), delta.cols());
        let groups = cols.div_ceil(self.group);
        let row_bytes = cols.div_ceil(TRITS_PER_BYTE);
        let mut scales = Vec::with_capacity(rows * groups);
        let mut trits = vec![0i8; cols];
        let mut codes = Vec::with_capacity(rows * row_bytes);
        for (r, row) in delta
            .data()
            .chunks_exact(cols.max(1))
            .take(rows)
            .enumerate()
        {
            if let Some(c) = row.iter().position(|v| !v.is_finite()) {
                return Err(QuantError::NonFinite {
                    tensor: ctx.name.to_string(),
                    row: r,
                    col: c,
                    value: row[c],
                });
            }
            for (g, chunk) in row.chunks(self.group).enumerate() {
                // Sum in f64 so the scale does not depend on rounding order.
                let gamma =
                    (chunk.iter().map(|v| v.abs() as f64).sum::<f64>() / chunk.len() as f64) as f32;
                scales.push(gamma);
                for (k, &v) in chunk.iter().enumerate() {
                    trits[g * self.group + k] = ternary(v, gamma);
                }
            }
            pack_row(&trits, &mut codes);
        }
        Ok(Compressed::custom(TernaryGroups {
            rows,
            cols,
            group: self.group,
            codes,
            scales,
        }))
    }
}

/// round(clamp(v / γ, −1, 1)); 0 when γ = 0.
fn ternary(v: f32, gamma: f32) -> i8 {
    if gamma == 0.0 {
        return 0;
    }
    (v / gamma).clamp(-1.0, 1.0).round() as i8
}

/// Appends `trits` (each −1, 0, 1) as base-3 digits, five per byte, the
/// first trit least significant; the last byte is padded with zeros
/// (digit 1).
fn pack_row(trits: &[i8], out: &mut Vec<u8>) {
    for chunk in trits.chunks(TRITS_PER_BYTE) {
        let mut byte = 0u32;
        for k in (0..TRITS_PER_BYTE).rev() {
            let digit = chunk.get(k).map_or(1, |&t| (t + 1) as u32);
            byte = byte * 3 + digit;
        }
        out.push(byte as u8);
    }
}

/// The trits of one packed row (`cols` values).
fn unpack_row(bytes: &[u8], cols: usize, out: &mut [i8]) {
    for (j, o) in out.iter_mut().enumerate().take(cols) {
        let mut b = bytes[j / TRITS_PER_BYTE] as u32;
        for _ in 0..j % TRITS_PER_BYTE {
            b /= 3;
        }
        *o = (b % 3) as i8 - 1;
    }
}

/// The stored form: packed trits and one scale per (row, group).
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryGroups {
    rows: usize,
    cols: usize,
    group: usize,
    codes: Vec<u8>,
    scales: Vec<f32>,
}

impl TernaryGroups {
    /// Input columns per scale.
    pub fn group(&self) -> usize {
        self.group
    }
    /// Scales, row-major `[rows, ceil(cols/group)]`.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    /// The trits of row `r`.
    pub fn trits(&self, r: usize) -> Vec<i8> {
        let mut t = vec![0i8; self.cols];
        unpack_row(self.row_codes(r), self.cols, &mut t);
        t
    }
    fn row_codes(&self, r: usize) -> &[u8] {
        let rb = self.cols.div_ceil(TRITS_PER_BYTE);
        &self.codes[r * rb..(r + 1) * rb]
    }
    /// Row `r` of Δ̂ into `out` (`cols` values).
    fn row_into(&self, r: usize, trits: &mut [i8], out: &mut [f32]) {
        unpack_row(self.row_codes(r), self.cols, trits);
        let groups = self.cols.div_ceil(self.group);
        let scales = &self.scales[r * groups..(r + 1) * groups];
        for ((o, t), j) in out.iter_mut().zip(trits.iter()).zip(0..) {
            *o = scales[j / self.group] * *t as f32;
        }
    }
}

impl CompressedTensor for TernaryGroups {
    fn kind(&self) -> &'static str {
        NAME
    }
    fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
    fn storage_bytes(&self) -> u64 {
        self.codes.len() as u64 + 4 * self.scales.len() as u64
    }
    fn write_parts(&self, w: &mut PartsWriter<'_>) -> Value {
        let rb = self.cols.div_ceil(TRITS_PER_BYTE);
        w.push(
            "codes",
            Payload::u8(vec![self.rows, rb], self.codes.clone()),
        );
        w.push(
            "scales",
            Payload::f32(vec![self.scales.len()], &self.scales),
        );
        json!({ "group": self.group })
    }
    fn reconstruct_into(&self, out: &mut [f32]) -> Result<(), QuantError> {
        delta_quant::payload::check_len(self.shape(), out.len())?;
        let mut trits = vec![0i8; self.cols];
        for (r, o) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.row_into(r, &mut trits, o);
        }
        Ok(())
    }
    fn add_into(&self, base: &mut [f32]) -> Result<(), QuantError> {
        delta_quant::payload::check_len(self.shape(), base.len())?;
        let mut trits = vec![0i8; self.cols];
        let mut row = vec![0f32; self.cols];
        for (r, b) in base.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.row_into(r, &mut trits, &mut row);
            for (b, d) in b.iter_mut().zip(&row) {
                *b += d;
            }
        }
        Ok(())
    }
    /// One row of Δ̂ at a time, dotted with every input row.
    fn matmul_t_add(&self, x: &[f32], n: usize, y: &mut [f32]) -> Option<Result<(), QuantError>> {
        let (rows, cols) = (self.rows, self.cols);
        let mut trits = vec![0i8; cols];
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            self.row_into(r, &mut trits, &mut row);
            for i in 0..n {
                let xi = &x[i * cols..(i + 1) * cols];
                y[i * rows + r] += xi.iter().zip(&row).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        Some(Ok(()))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Reads a stored `ternary158` tensor, validating every byte and scale.
fn decode(r: &EncodingReader<'_>) -> Result<Compressed, QuantError> {
    let (rows, cols) = (r.rows(), r.cols());
    let group = r.meta_usize("group")?;
    if group == 0 || group > 1 << 16 {
        return Err(QuantError::Metadata(format!(
            "tensor `{}`: ternary158 group {group} is not in 1..=65536",
            r.tensor()
        )));
    }
    let rb = cols.div_ceil(TRITS_PER_BYTE);
    let codes = r.u8("codes", rows * rb)?;
    let groups = cols.div_ceil(group);
    let scales = r.f32("scales", rows * groups)?;
    if let Some(i) = scales.iter().position(|s| !s.is_finite() || *s < 0.0) {
        return Err(r.bad(
            "scales",
            format!("element {i} is {}: scales are finite and >= 0", scales[i]),
        ));
    }
    // Bytes above 3⁵ − 1 are not codes, and the padding trits of each row's
    // last byte must be zeros so every value has one stored form.
    let tail = cols % TRITS_PER_BYTE;
    for row in 0..rows {
        for (k, &b) in codes[row * rb..(row + 1) * rb].iter().enumerate() {
            if b >= 243 {
                return Err(r.bad("codes", format!("byte {} is {b} (> 242)", row * rb + k)));
            }
            if tail != 0 && k == rb - 1 {
                let mut v = b as u32;
                for _ in 0..tail {
                    v /= 3;
                }
                let padding_zero = (0..TRITS_PER_BYTE - tail).fold(0u32, |acc, _| acc * 3 + 1);
                if v != padding_zero {
                    return Err(r.bad(
                        "codes",
                        format!("row {row}: padding trits of the last byte are not zero"),
                    ));
                }
            }
        }
    }
    Ok(Compressed::custom(TernaryGroups {
        rows,
        cols,
        group,
        codes,
        scales,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trips_every_length() {
        for cols in 0usize..13 {
            let trits: Vec<i8> = (0..cols).map(|j| (j as i8 % 3) - 1).collect();
            let mut bytes = Vec::new();
            pack_row(&trits, &mut bytes);
            assert_eq!(bytes.len(), cols.div_ceil(5));
            let mut back = vec![9i8; cols];
            unpack_row(&bytes, cols, &mut back);
            assert_eq!(back, trits, "cols {cols}");
        }
    }

    #[test]
    fn quantizes_by_absmean_per_group() {
        // Row [0.3, -0.1, 0.0, 0.2 | 1.0], group 4: γ0 = 0.15, γ1 = 1.0.
        let d = DeltaMatrix::new(1, 5, vec![0.3, -0.1, 0.0, 0.2, 1.0]).unwrap();
        let c = Ternary158 { group: 4 }
            .compress_matrix(&d, &CompressContext::new("w", 0))
            .unwrap();
        let Compressed::Custom(p) = &c else {
            panic!("not custom")
        };
        let t = p.downcast_ref::<TernaryGroups>().unwrap();
        assert_eq!(t.scales(), &[0.15, 1.0]);
        // 0.3/0.15 = 2 → 1; -0.1/0.15 = -0.67 → -1; 0 → 0; 0.2/0.15 → 1; 1 → 1.
        assert_eq!(t.trits(0), vec![1, -1, 0, 1, 1]);
        let rec = c.reconstruct();
        assert_eq!(rec.data(), &[0.15, -0.15, 0.0, 0.15, 1.0]);
    }

    #[test]
    fn non_finite_input_names_the_tensor_and_position() {
        let d = DeltaMatrix::new(2, 2, vec![0.0, 1.0, f32::NAN, 0.0]).unwrap();
        let e = Ternary158 { group: 2 }
            .compress_matrix(&d, &CompressContext::new("layer.w", 0))
            .unwrap_err();
        assert!(
            matches!(e, QuantError::NonFinite { ref tensor, row: 1, col: 0, .. } if tensor == "layer.w"),
            "{e}"
        );
    }
}
