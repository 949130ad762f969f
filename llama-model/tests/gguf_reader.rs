//! GGUF reader: metadata of every type, tensor infos, typed errors for malformed
//! files, and a fuzz-style no-panic test. Fixture: `tests/data/gguf/quants.gguf`
//! (made by `scripts/make_gguf_fixtures.py` with Python `gguf.GGUFWriter`).

use std::path::PathBuf;

use llama_model::gguf::{GgmlType, GgufError, GgufFile, GgufValue, GgufValueType};
use rand::{Rng, SeedableRng};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf")
}

fn quants_bytes() -> Vec<u8> {
    std::fs::read(data_dir().join("quants.gguf")).unwrap()
}

#[test]
fn metadata_of_every_type() {
    let f = GgufFile::open(data_dir().join("quants.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
    assert_eq!(
        f.get("general.architecture").unwrap().as_str(),
        Some("test")
    );
    assert_eq!(f.get("test.u8"), Some(&GgufValue::U8(200)));
    assert_eq!(f.get("test.i8"), Some(&GgufValue::I8(-100)));
    assert_eq!(f.get("test.u16"), Some(&GgufValue::U16(60000)));
    assert_eq!(f.get("test.i16"), Some(&GgufValue::I16(-30000)));
    assert_eq!(f.get("test.u32"), Some(&GgufValue::U32(4_000_000_000)));
    assert_eq!(f.get("test.i32"), Some(&GgufValue::I32(-2_000_000_000)));
    assert_eq!(f.get("test.u64"), Some(&GgufValue::U64((1 << 63) + 5)));
    assert_eq!(f.get("test.i64"), Some(&GgufValue::I64(-(1 << 62))));
    assert_eq!(f.get("test.f32"), Some(&GgufValue::F32(1.5)));
    assert_eq!(f.get("test.f64"), Some(&GgufValue::F64(-2.25e-300)));
    assert_eq!(f.get_bool("test.bool_true").unwrap(), Some(true));
    assert_eq!(f.get_bool("test.bool_false").unwrap(), Some(false));
    assert_eq!(f.get_str("test.string").unwrap(), Some("héllo ✓ 🦙"));
    assert_eq!(
        f.get_i64_array("test.array_i32").unwrap(),
        Some(vec![1, -2, 3])
    );
    assert_eq!(
        f.get_str_array("test.array_str").unwrap(),
        Some(vec!["a", "", "ü"])
    );
    let nested = f.get("test.array_nested").unwrap().as_array().unwrap();
    assert_eq!(nested.elem_type, GgufValueType::Array);
    assert_eq!(nested.values.len(), 2);
    assert_eq!(nested.values[0].to_json(), serde_json::json!([1, 2]));
    assert_eq!(nested.values[1].to_json(), serde_json::json!([3]));
    // Typed getters reject the wrong type with the key in the message.
    let err = f.get_str("test.u8").unwrap_err();
    assert!(
        matches!(err, GgufError::WrongType { ref key, .. } if key == "test.u8"),
        "{err}"
    );
    assert!(f
        .get_u64("test.i8")
        .unwrap_err()
        .to_string()
        .contains("test.i8"));
    assert_eq!(f.get_u64("absent").unwrap(), None);
}

#[test]
fn tensor_infos() {
    let f = GgufFile::open(data_dir().join("quants.gguf")).unwrap();
    let t = f.tensor("raw_q4_k").unwrap();
    assert_eq!(t.ggml_type, GgmlType::Q4_K);
    assert_eq!(t.dims, vec![512, 2]);
    assert_eq!(t.shape(), vec![2, 512]);
    assert_eq!(t.n_elements, 1024);
    assert_eq!(t.n_bytes, 4 * 144);
    assert_eq!(f.tensor_data("raw_q4_k").unwrap().len(), 576);
    let t3 = f.tensor("f32_3d").unwrap();
    assert_eq!(t3.shape(), vec![2, 3, 32]);
    assert_eq!(f.tensor("f32_1d").unwrap().shape(), vec![5]);
    for t in f.tensors() {
        assert_eq!(t.offset % f.alignment(), 0, "{}", t.name);
    }
    assert!(matches!(
        f.dequantize("nope"),
        Err(GgufError::TensorNotFound { .. })
    ));
}

#[test]
fn version_2_is_accepted() {
    let mut b = quants_bytes();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = GgufFile::from_bytes(b, "v2.gguf").unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(
        f.tensors().len(),
        GgufFile::open(data_dir().join("quants.gguf"))
            .unwrap()
            .tensors()
            .len()
    );
}

/// Minimal GGUF writer for crafting malformed files.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut w = Writer::default();
        w.buf.extend_from_slice(b"GGUF");
        w.u32(version);
        w.u64(n_tensors);
        w.u64(n_kv);
        w
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }
    fn kv_u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.str(k).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad_data(&mut self, align: usize, data_len: usize) -> Vec<u8> {
        let mut b = self.buf.clone();
        b.resize(b.len().div_ceil(align) * align + data_len, 0);
        b
    }
}

fn parse(b: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(b, "crafted.gguf")
}

#[test]
fn crafted_valid_file() {
    let mut w = Writer::header(3, 2, 1);
    w.kv_u32("general.alignment", 64);
    w.tensor("a", &[4, 2], 0, 0).tensor("b", &[32], 8, 64);
    let mut b = w.pad_data(64, 64 + 34);
    let start = b.len() - 98;
    for i in 0..8 {
        b[start + 4 * i..start + 4 * i + 4].copy_from_slice(&(i as f32).to_le_bytes());
    }
    let f = parse(b).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(
        f.dequantize("a").unwrap(),
        vec![0., 1., 2., 3., 4., 5., 6., 7.]
    );
    assert_eq!(f.dequantize("b").unwrap(), vec![0.0; 32]);
}

#[test]
fn typed_errors() {
    let err = |b: Vec<u8>| parse(b).unwrap_err();
    // Bad magic.
    let mut b = Writer::header(3, 0, 0).buf;
    b[0] = b'X';
    assert!(matches!(err(b), GgufError::BadMagic { found, .. } if &found == b"XGUF"));
    // Unsupported versions (1, and a big-endian 3).
    assert!(matches!(
        err(Writer::header(1, 0, 0).buf),
        GgufError::UnsupportedVersion { version: 1, .. }
    ));
    assert!(matches!(
        err(Writer::header(0x0300_0000, 0, 0).buf),
        GgufError::UnsupportedVersion { .. }
    ));
    // Truncated header.
    let e = err(b"GGUF\x03\0\0\0\x01".to_vec());
    assert!(
        matches!(e, GgufError::Truncated { offset: 8, ref what, .. } if what == "tensor count"),
        "{e}"
    );
    assert!(e.to_string().contains("crafted.gguf"), "{e}");
    // Counts the file cannot hold.
    assert!(matches!(
        err(Writer::header(3, u64::MAX, 0).buf),
        GgufError::BadCount { .. }
    ));
    assert!(matches!(
        err(Writer::header(3, 0, 1 << 60).buf),
        GgufError::BadCount { .. }
    ));
    // Bad string length (key).
    let mut w = Writer::header(3, 0, 1);
    w.u64(1 << 40).buf.extend_from_slice(&[0; 16]);
    assert!(matches!(err(w.buf), GgufError::BadStringLength { length, .. } if length == 1 << 40));
    // Invalid UTF-8.
    let mut w = Writer::header(3, 0, 1);
    w.u64(2).buf.extend_from_slice(&[0xff, 0xfe]);
    w.u32(4).u32(0);
    assert!(matches!(err(w.buf), GgufError::BadUtf8 { .. }));
    // Unknown value type.
    let mut w = Writer::header(3, 0, 1);
    w.str("k").u32(13).u32(0);
    let e = err(w.buf);
    assert!(
        matches!(e, GgufError::UnknownValueType { type_id: 13, ref key, .. } if key == "k"),
        "{e}"
    );
    // Bad bool.
    let mut w = Writer::header(3, 0, 1);
    w.str("flag").u32(7).buf.push(2);
    assert!(matches!(err(w.buf), GgufError::BadBool { byte: 2, .. }));
    // Array length that cannot fit.
    let mut w = Writer::header(3, 0, 1);
    w.str("arr").u32(9).u32(4).u64(1 << 62);
    assert!(matches!(err(w.buf), GgufError::BadArrayLength { .. }));
    // Arrays nested too deep.
    let mut w = Writer::header(3, 0, 1);
    w.str("deep").u32(9);
    for _ in 0..20 {
        w.u32(9).u64(1);
    }
    w.u32(4).u64(0);
    assert!(matches!(err(w.buf), GgufError::NestingTooDeep { .. }));
    // Duplicate key.
    let mut w = Writer::header(3, 0, 2);
    w.kv_u32("k", 1).kv_u32("k", 2);
    assert!(matches!(err(w.buf), GgufError::DuplicateKey { ref key, .. } if key == "k"));
    // Bad alignment.
    let mut w = Writer::header(3, 0, 1);
    w.kv_u32("general.alignment", 48);
    assert!(matches!(err(w.buf), GgufError::BadAlignment { .. }));
    // Unknown ggml type, naming the tensor.
    let mut w = Writer::header(3, 1, 0);
    w.tensor("w", &[32], 4, 0);
    let e = err(w.pad_data(32, 64));
    assert!(
        matches!(e, GgufError::UnknownGgmlType { type_id: 4, ref tensor, .. } if tensor == "w"),
        "{e}"
    );
    // Dimension count.
    let mut w = Writer::header(3, 1, 0);
    w.tensor("w", &[1, 1, 1, 1, 1], 0, 0);
    assert!(matches!(
        err(w.pad_data(32, 64)),
        GgufError::BadDimCount { n_dims: 5, .. }
    ));
    // Overflowing dims.
    let mut w = Writer::header(3, 1, 0);
    w.tensor("w", &[1 << 32, 1 << 32], 0, 0);
    let e = err(w.pad_data(32, 64));
    assert!(
        matches!(e, GgufError::DimsOverflow { ref tensor, .. } if tensor == "w"),
        "{e}"
    );
    // Row length not a multiple of the block size.
    let mut w = Writer::header(3, 1, 0);
    w.tensor("w", &[33, 2], 8, 0);
    assert!(matches!(
        err(w.pad_data(32, 200)),
        GgufError::BadBlockShape {
            ne0: 33,
            block: 32,
            ..
        }
    ));
    // Misaligned offset.
    let mut w = Writer::header(3, 1, 0);
    w.tensor("w", &[4], 0, 4);
    assert!(matches!(
        err(w.pad_data(32, 64)),
        GgufError::MisalignedTensor { offset: 4, .. }
    ));
    // Data out of bounds.
    let mut w = Writer::header(3, 1, 0);
    w.tensor("w", &[64], 0, 0);
    let e = err(w.pad_data(32, 255));
    assert!(
        matches!(e, GgufError::TensorOutOfBounds { ref tensor, .. } if tensor == "w"),
        "{e}"
    );
    let mut w = Writer::header(3, 1, 0);
    w.tensor("w", &[4], 0, u64::MAX - 31);
    assert!(matches!(
        err(w.pad_data(32, 64)),
        GgufError::TensorOutOfBounds { .. }
    ));
    // Duplicate tensor.
    let mut w = Writer::header(3, 2, 0);
    w.tensor("w", &[4], 0, 0).tensor("w", &[4], 0, 32);
    let e = err(w.pad_data(32, 64));
    assert!(
        matches!(e, GgufError::DuplicateTensor { ref tensor, .. } if tensor == "w"),
        "{e}"
    );
    // Unsupported dequantization type names the tensor and the type.
    let mut w = Writer::header(3, 1, 0);
    w.tensor("iq", &[32], 20, 0);
    let f = parse(w.pad_data(32, 18)).unwrap();
    let e = f.dequantize("iq").unwrap_err();
    assert!(
        matches!(e, GgufError::UnsupportedType { ref tensor, ref ggml_type, .. }
        if tensor == "iq" && ggml_type == "IQ4_NL"),
        "{e}"
    );
    // I/O error names the path.
    let e = GgufFile::open("/nonexistent/x.gguf").unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }) && e.to_string().contains("/nonexistent/x.gguf"));
}

/// Parses `b`; when it parses, dequantizes every tensor. Must never panic.
fn exercise(b: Vec<u8>) -> bool {
    match GgufFile::from_bytes(b, "fuzz.gguf") {
        Ok(f) => {
            for t in f.tensors() {
                let _ = f.dequantize_info(t);
            }
            for (_, v) in f.metadata() {
                let _ = v.to_json();
            }
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

#[test]
fn fuzz_truncations_and_mutations_never_panic() {
    let orig = quants_bytes();
    let f = GgufFile::from_bytes(orig.clone(), "orig").unwrap();
    let header_end = f.data_offset() as usize;
    // Every truncation.
    for len in 0..orig.len() {
        assert!(
            !exercise(orig[..len].to_vec()) || len >= header_end,
            "truncated to {len} parsed"
        );
    }
    // Every header byte set to a few interesting values.
    for pos in 0..header_end {
        for v in [
            0x00,
            0xff,
            0x80,
            0x7f,
            orig[pos].wrapping_add(1),
            orig[pos] ^ 0x40,
        ] {
            let mut b = orig.clone();
            b[pos] = v;
            exercise(b);
        }
    }
    // Random multi-byte mutations anywhere, and random 8-byte overwrites of length fields.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    for _ in 0..3000 {
        let mut b = orig.clone();
        for _ in 0..rng.random_range(1..5) {
            let pos = rng.random_range(0..b.len());
            b[pos] = rng.random();
        }
        if rng.random_bool(0.3) {
            let pos = rng.random_range(0..header_end.saturating_sub(8));
            let v: u64 = match rng.random_range(0..4) {
                0 => u64::MAX,
                1 => rng.random::<u64>() >> rng.random_range(0..64),
                2 => rng.random_range(0..64),
                _ => 1 << rng.random_range(0..64),
            };
            b[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
        }
        if rng.random_bool(0.2) {
            let len = rng.random_range(0..b.len());
            b.truncate(len);
        }
        exercise(b);
    }
}
