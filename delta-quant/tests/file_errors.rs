//! The delta file rejects bad input with typed errors and never panics.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use common::random_matrix;
use delta_quant::{
    parse_method, CompressContext, DeltaFile, DeltaFileHeader, DeltaFileWriter, Dtype, EntryKind,
    QuantError,
};
use proptest::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

const W: &str = "model.layers.0.self_attn.q_proj.weight";

/// A valid file: BitDelta of one 5x13 matrix (per-row scales), a dare+bitdelta
/// pipeline would need its own header, so just one method here, plus two
/// carried tensors.
fn write_valid(dir: &Path) -> PathBuf {
    let path = dir.join("delta.safetensors");
    let c = parse_method("bitdelta:per_row=true").unwrap();
    let d = random_matrix(5, 13, 1);
    let mut w =
        DeltaFileWriter::create(&path, DeltaFileHeader::new(c.as_ref(), "base-fp")).unwrap();
    w.add_compressed(
        W,
        &c.compress_matrix(&d, &CompressContext::new(W, 0)).unwrap(),
    )
    .unwrap();
    w.add_carried("model.norm.weight", Dtype::F32, &[3], &[1u8; 12])
        .unwrap();
    w.add_carried("lm_head.weight", Dtype::F16, &[2, 2], &[2u8; 8])
        .unwrap();
    w.finish().unwrap();
    path
}

type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;
type Edit = Box<dyn Fn(&mut Tensors, &mut HashMap<String, String>)>;

/// Rewrites a valid file through the safetensors crate after `edit`, then
/// re-computes the `checksums` entry (if the file still has one) so that
/// the edit reaches the validation behind the checksum.
fn rewrite(path: &Path, edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>)) {
    rewrite_with(path, edit, true)
}

/// [`rewrite`] that leaves the stored checksums as they were.
fn rewrite_raw(path: &Path, edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>)) {
    rewrite_with(path, edit, false)
}

fn rewrite_with(
    path: &Path,
    edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>),
    fix_checksums: bool,
) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut md = meta.metadata().clone().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut tensors, &mut md);
    if fix_checksums && md.contains_key("checksums") {
        let sums: serde_json::Map<String, serde_json::Value> = tensors
            .iter()
            .map(|(n, (_, _, data))| {
                let h = xxhash_rust::xxh3::xxh3_64(data);
                (n.clone(), format!("{h:016x}").into())
            })
            .collect();
        md.insert(
            "checksums".into(),
            serde_json::Value::Object(sums).to_string(),
        );
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (dt, sh, data))| (n.clone(), TensorView::new(*dt, sh.clone(), data).unwrap()))
        .collect();
    let out = safetensors::serialize(views, Some(md)).unwrap();
    std::fs::write(path, out).unwrap();
}

fn edit_tensors_json(md: &mut HashMap<String, String>, f: impl FnOnce(&mut serde_json::Value)) {
    let mut t: serde_json::Value = serde_json::from_str(&md["tensors"]).unwrap();
    f(&mut t);
    md.insert("tensors".into(), t.to_string());
}

#[test]
fn valid_file_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_valid(dir.path());
    let f = DeltaFile::open(&path).unwrap();
    assert_eq!(f.method(), "bitdelta:per_row=true");
    assert_eq!(f.base_fingerprint(), "base-fp");
    assert_eq!(f.finetuned(), None);
    let kinds: Vec<_> = f
        .entries()
        .iter()
        .map(|e| (e.name.as_str(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("lm_head.weight", EntryKind::Carried),
            (W, EntryKind::Compressed),
            ("model.norm.weight", EntryKind::Carried)
        ]
    );
    assert_eq!(f.carried("model.norm.weight").unwrap().data, &[1u8; 12]);
    assert!(matches!(f.compressed("nope"), Err(QuantError::NotFound(_))));
    assert!(matches!(f.carried(W), Err(QuantError::NotFound(_))));
    let r = f.size_report();
    assert_eq!(r.compressed_bytes, 5 * 2 + 5 * 4);
    assert_eq!(r.carried_fp16_bytes, 2 * (3 + 4));
    assert_eq!(r.finetuned_fp16_bytes, 2 * (65 + 3 + 4));
    // A plain safetensors reader sees the payloads and carried tensors.
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(
        names,
        [
            "lm_head.weight",
            &format!("{W}::scales"),
            &format!("{W}::signs"),
            "model.norm.weight"
        ]
    );
    assert_eq!(st.tensor(&format!("{W}::signs")).unwrap().shape(), &[5, 2]);
}

#[test]
fn truncated_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_valid(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.safetensors");
    for cut in [0, 3, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        assert!(
            matches!(DeltaFile::open(&bad), Err(QuantError::Safetensors(_))),
            "cut at {cut}"
        );
    }
}

#[test]
fn corrupt_header_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_valid(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = b'[';
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        DeltaFile::open(&path),
        Err(QuantError::Safetensors(_))
    ));
    // Header length pointing past the end.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        DeltaFile::open(&path),
        Err(QuantError::Safetensors(_))
    ));
}

#[test]
fn header_lying_about_offsets_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_valid(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap().to_string();
    let mut j: serde_json::Value = serde_json::from_str(&header).unwrap();
    // Point the signs at the scales' bytes (overlap, same length is not
    // possible: 10 vs 20 bytes) — offsets no longer tile the data.
    let scales = j[format!("{W}::scales")]["data_offsets"].clone();
    j[format!("{W}::signs")]["data_offsets"] = scales;
    let mut h = serde_json::to_vec(&j).unwrap();
    h.resize(n.max(h.len()).next_multiple_of(8), b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&path, out).unwrap();
    assert!(matches!(
        DeltaFile::open(&path),
        Err(QuantError::Safetensors(_))
    ));
}

#[test]
fn missing_payload_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_valid(dir.path());
    rewrite(&path, |t, _| {
        t.remove(&format!("{W}::scales"));
    });
    match DeltaFile::open(&path).unwrap_err() {
        QuantError::MissingPayload { tensor, payload } => {
            assert_eq!((tensor.as_str(), payload.as_str()), (W, "scales"));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn bad_payloads_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Wrong dtype.
    let path = write_valid(dir.path());
    rewrite(&path, |t, _| {
        let e = t.get_mut(&format!("{W}::scales")).unwrap();
        e.0 = Dtype::U8;
        e.1 = vec![20];
    });
    assert!(matches!(
        DeltaFile::open(&path),
        Err(QuantError::BadPayload { .. })
    ));
    // Wrong size (one byte of signs missing).
    let path = write_valid(dir.path());
    rewrite(&path, |t, _| {
        let e = t.get_mut(&format!("{W}::signs")).unwrap();
        e.1 = vec![9];
        e.2.truncate(9);
    });
    assert!(matches!(
        DeltaFile::open(&path),
        Err(QuantError::BadPayload { .. })
    ));
    // Non-zero padding bits in the packed signs (13 columns use 5 of 8 bits).
    let path = write_valid(dir.path());
    rewrite(&path, |t, _| {
        t.get_mut(&format!("{W}::signs")).unwrap().2[1] |= 0x80;
    });
    assert!(matches!(
        DeltaFile::open(&path),
        Err(QuantError::BadPayload { .. })
    ));
}

#[test]
fn bad_metadata_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "unknown method",
            Box::new(|_, m| {
                m.insert("method".into(), "bitdelta9".into());
            }),
        ),
        (
            "version",
            Box::new(|_, m| {
                m.insert("format_version".into(), "3".into());
            }),
        ),
        (
            "params",
            Box::new(|_, m| {
                m.insert("params".into(), r#"{"per_row":false}"#.into());
            }),
        ),
        (
            "no fingerprint",
            Box::new(|_, m| {
                m.remove("base_fingerprint");
            }),
        ),
        (
            "tensors not json",
            Box::new(|_, m| {
                m.insert("tensors".into(), "{".into());
            }),
        ),
        (
            "storage bytes",
            Box::new(|_, m| edit_tensors_json(m, |t| t[W]["storage_bytes"] = 1.into())),
        ),
        (
            "shape",
            Box::new(|_, m| edit_tensors_json(m, |t| t[W]["shape"] = serde_json::json!([13, 5]))),
        ),
        (
            "encoding shape",
            Box::new(|_, m| edit_tensors_json(m, |t| t[W]["encoding"]["cols"] = 12.into())),
        ),
        (
            "kind",
            Box::new(|_, m| edit_tensors_json(m, |t| t[W]["kind"] = "mystery".into())),
        ),
        (
            "carried dtype",
            Box::new(|_, m| edit_tensors_json(m, |t| t["lm_head.weight"]["dtype"] = "BF16".into())),
        ),
        (
            "seed",
            Box::new(|_, m| {
                m.insert("seed".into(), "-1".into());
            }),
        ),
        (
            "stray tensor",
            Box::new(|t, _| {
                t.insert("extra".into(), (Dtype::U8, vec![1], vec![0]));
            }),
        ),
    ];
    for (what, edit) in cases {
        let path = write_valid(dir.path());
        rewrite(&path, |t, m| edit(t, m));
        let err = DeltaFile::open(&path).unwrap_err();
        let ok = match what {
            "unknown method" => matches!(err, QuantError::UnknownMethod { .. }),
            "version" => matches!(err, QuantError::Version(_)),
            "encoding shape" => {
                matches!(err, QuantError::BadPayload { .. } | QuantError::Metadata(_))
            }
            _ => matches!(err, QuantError::Metadata(_)),
        };
        assert!(ok, "{what}: {err}");
    }
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    let c = parse_method("bitdelta").unwrap();
    let mut w = DeltaFileWriter::create(&path, DeltaFileHeader::new(c.as_ref(), "fp")).unwrap();
    w.add_carried("a", Dtype::F32, &[2], &[0u8; 8]).unwrap();
    assert!(w.add_carried("b", Dtype::F32, &[2], &[0u8; 7]).is_err());
    assert!(
        w.add_carried("a", Dtype::F32, &[2], &[0u8; 8]).is_err(),
        "duplicate"
    );
    assert!(
        w.add_carried("x::y", Dtype::F32, &[2], &[0u8; 8]).is_err(),
        "separator"
    );
    assert!(!path.exists(), "nothing at the target before finish");
    drop(w);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random byte corruption or truncation: `open` returns, never panics,
    /// and when it succeeds every tensor still decodes.
    #[test]
    fn corrupted_files_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                                   cut in proptest::option::of(any::<prop::sample::Index>())) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_valid(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b | 1;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(f) = DeltaFile::open(&path) {
            for e in f.entries() {
                match e.kind {
                    EntryKind::Compressed => { f.compressed(&e.name).unwrap().reconstruct(); }
                    EntryKind::Carried => { f.carried(&e.name).unwrap(); }
                }
            }
        }
    }
}

/// A payload byte flipped after writing is caught by its checksum — every
/// byte of the data section, not a sample (the defect: 30 of 30 random
/// flips used to load and apply).
#[test]
fn every_flipped_data_byte_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_valid(dir.path());
    let good = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let bad = dir.path().join("flipped.safetensors");
    for i in 8 + header_len..good.len() {
        let mut bytes = good.clone();
        bytes[i] ^= 0x10;
        std::fs::write(&bad, &bytes).unwrap();
        match DeltaFile::open(&bad) {
            Err(QuantError::Checksum { tensor, .. }) => assert!(!tensor.is_empty()),
            other => panic!("byte {i}: expected a checksum error, got {other:?}"),
        }
    }
}

/// With verification off, a flip that keeps the payload well-formed loads
/// (so the option really skips the hash), and the checksum table must still
/// list every tensor.
#[test]
fn verification_can_be_skipped_but_checksums_stay_required() {
    use delta_quant::OpenOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = write_valid(dir.path());
    rewrite_raw(&path, |t, _| {
        // Bit 0 of the first sign byte is a real column (13 of 16 bits used).
        t.get_mut(&format!("{W}::signs")).unwrap().2[0] ^= 1;
    });
    assert!(matches!(
        DeltaFile::open(&path),
        Err(QuantError::Checksum { .. })
    ));
    let trusting = OpenOptions {
        verify_checksums: false,
    };
    assert!(DeltaFile::open_with(&path, trusting).is_ok());
    rewrite_raw(&path, |_, m| {
        let mut sums: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&m["checksums"]).unwrap();
        sums.remove("lm_head.weight");
        m.insert(
            "checksums".into(),
            serde_json::Value::Object(sums).to_string(),
        );
    });
    let err = DeltaFile::open_with(&path, trusting).unwrap_err();
    assert!(
        matches!(&err, QuantError::Metadata(m) if m.contains("lm_head.weight")),
        "{err}"
    );
}

/// Version-1 files (no checksums) are still read; a version-2 file without
/// its checksums is not.
#[test]
fn version_one_files_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_valid(dir.path());
    rewrite_raw(&path, |_, m| {
        m.remove("checksums");
        m.insert("format_version".into(), "1".into());
        m.remove("checksum_algorithm");
    });
    let f = DeltaFile::open(&path).unwrap();
    assert_eq!(f.entries().len(), 3);
    let path = write_valid(dir.path());
    rewrite_raw(&path, |_, m| {
        m.remove("checksums");
    });
    assert!(matches!(
        DeltaFile::open(&path),
        Err(QuantError::Metadata(_))
    ));
}

/// A version-1 file written by the last release before checksums
/// (`deltaguard compress` of the hf-reference pair with BitDelta at commit
/// 9de1170) opens and decodes.
#[test]
fn committed_version_one_fixture_opens() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pair-bitdelta-v1.safetensors");
    let f = DeltaFile::open(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format_version"], "1");
    let mut compressed = 0;
    for e in f.entries() {
        if e.kind == EntryKind::Compressed {
            let d = f.compressed(&e.name).unwrap().reconstruct();
            assert!(d.data().iter().all(|v| v.is_finite()));
            compressed += 1;
        } else {
            f.carried(&e.name).unwrap();
        }
    }
    assert!(compressed > 0);
}

/// NaN/Inf, negative scales and absurd magnitudes are refused by the writer
/// and, if written by something else, by the reader — naming the tensor.
#[test]
fn non_finite_negative_and_huge_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse_method("bitdelta").unwrap();
    let mut w = DeltaFileWriter::create(
        dir.path().join("w.safetensors"),
        DeltaFileHeader::new(c.as_ref(), "fp"),
    )
    .unwrap();
    let nan = f32::NAN.to_le_bytes().repeat(2);
    let err = w
        .add_carried("model.norm.weight", Dtype::F32, &[2], &nan)
        .unwrap_err();
    assert!(err.to_string().contains("model.norm.weight"), "{err}");
    let inf16 = half::f16::INFINITY.to_bits().to_le_bytes().repeat(2);
    assert!(w
        .add_carried("model.embed_tokens.weight", Dtype::F16, &[2], &inf16)
        .is_err());
    drop(w);

    // (A negative BitDelta α is allowed: healing trains it freely.)
    let cases: Vec<(&str, f32)> = vec![("huge scale", 3.0e38), ("nan scale", f32::NAN)];
    for (what, v) in cases {
        let path = write_valid(dir.path());
        rewrite(&path, |t, _| {
            t.get_mut(&format!("{W}::scales")).unwrap().2[..4].copy_from_slice(&v.to_le_bytes());
        });
        match DeltaFile::open(&path) {
            Err(QuantError::BadPayload {
                tensor, payload, ..
            }) => {
                assert_eq!((tensor.as_str(), payload.as_str()), (W, "scales"), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let path = write_valid(dir.path());
    rewrite(&path, |t, _| {
        t.get_mut("model.norm.weight").unwrap().2[..4]
            .copy_from_slice(&f32::INFINITY.to_le_bytes());
    });
    let err = DeltaFile::open(&path).unwrap_err();
    assert!(err.to_string().contains("model.norm.weight"), "{err}");
}

/// Two writers aimed at the same path use different temporaries, so both
/// can run at once and the result is one complete, valid file.
#[test]
fn concurrent_writers_to_one_path_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.safetensors");
    let c = parse_method("bitdelta").unwrap();
    let make = |seed| {
        let mut w = DeltaFileWriter::create(&path, DeltaFileHeader::new(c.as_ref(), "fp")).unwrap();
        let d = random_matrix(64, 96, seed);
        w.add_compressed(
            W,
            &c.compress_matrix(&d, &CompressContext::new(W, 0)).unwrap(),
        )
        .unwrap();
        w
    };
    let (a, b) = (make(1), make(2));
    let temps = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(temps, 2, "each writer has its own temporary");
    a.finish().unwrap();
    b.finish().unwrap();
    let f = DeltaFile::open(&path).unwrap();
    assert_eq!(f.entries().len(), 1);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("same.safetensors")]);
}

/// A directory given as a delta file is named as such, not "No such device".
#[test]
fn a_directory_is_not_a_delta_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = DeltaFile::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not a regular file"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}
