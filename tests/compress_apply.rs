//! End-to-end compress → file → apply through the library API, against the
//! BitDelta reference reconstruction written by the published algorithm.

use deltaguard::delta_core::{Checkpoint, DeltaPair, WriteOptions};
use deltaguard::delta_quant::ops::{
    apply_delta_file, compress_checkpoint, CompressOptions, OpsError,
};
use deltaguard::delta_quant::{parse_method, Compressed, DeltaFile};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hf-reference")
        .join(name)
}

fn compress(method: &str, out: &Path) -> Result<(), OpsError> {
    let pair = DeltaPair::open(fixture("pair/base"), fixture("pair/finetuned")).unwrap();
    let c = parse_method(method).unwrap();
    compress_checkpoint(
        &pair,
        c.as_ref(),
        out,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )?;
    Ok(())
}

fn apply(delta: &Path, out: &Path) -> Result<PathBuf, OpsError> {
    let base = Checkpoint::open(fixture("pair/base")).unwrap();
    let file = DeltaFile::open(delta).unwrap();
    apply_delta_file(
        &base,
        &file,
        delta,
        out,
        &WriteOptions::default(),
        &mut |_| {},
        None,
    )
}

#[test]
fn bitdelta_matches_the_published_reconstruction_and_scales() {
    let tmp = tempfile::tempdir().unwrap();
    let delta = tmp.path().join("bd.safetensors");
    compress("bitdelta", &delta).unwrap();
    let out = apply(&delta, &tmp.path().join("applied")).unwrap();

    let ours = Checkpoint::open(&out).unwrap();
    let reference = Checkpoint::open(fixture("pair/bitdelta-reconstructed")).unwrap();
    assert_eq!(ours.tensor_names(), reference.tensor_names());
    for info in reference.infos() {
        let (a, b) = (
            ours.read_f32(&info.name).unwrap(),
            reference.read_f32(&info.name).unwrap(),
        );
        assert_eq!(ours.info(&info.name).unwrap().dtype, info.dtype);
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{}: max |diff| = {worst}", info.name);
    }

    let scales: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixture("pair/bitdelta-scales.json")).unwrap(),
    )
    .unwrap();
    let file = DeltaFile::open(&delta).unwrap();
    assert_eq!(scales.len(), 14);
    for (name, alpha) in scales {
        let Compressed::BitDelta(sign_scales) = file.compressed(&name).unwrap() else {
            panic!("{name} is not stored as BitDelta");
        };
        let expected = alpha.as_f64().unwrap() as f32;
        let got = sign_scales.scales()[0];
        assert!(
            (got - expected).abs() <= 1e-6 * expected.abs().max(1e-3),
            "{name}: {got} vs {expected}"
        );
    }
}

#[test]
fn every_method_round_trips_through_a_file_and_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let ft = Checkpoint::open(fixture("pair/finetuned")).unwrap();
    let base = Checkpoint::open(fixture("pair/base")).unwrap();
    for (i, method) in [
        "bitdelta",
        "bitdelta:per_row=true",
        "multimask:k=3",
        "rtn:bits=8,group=64",
        "dare:p=0.3",
        "magnitude:density=0.5",
        "svd:rank=64",
        "deltacome",
        "compeft:density=0.2",
        "dare:p=0.5+bitdelta",
    ]
    .into_iter()
    .enumerate()
    {
        let delta = tmp.path().join(format!("{i}.safetensors"));
        compress(method, &delta).unwrap();
        let out = apply(&delta, &tmp.path().join(format!("applied-{i}"))).unwrap();
        let merged = Checkpoint::open(&out).unwrap();
        // carried tensors are the fine-tune's, bit for bit
        for name in [
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.norm.weight",
        ] {
            assert_eq!(
                merged.view(name).unwrap().bytes,
                ft.view(name).unwrap().bytes,
                "{method}: {name}"
            );
        }
        // a compressed tensor moved from the base towards the fine-tune
        let name = "model.layers.0.mlp.up_proj.weight";
        let (m, f, b) = (
            merged.read_f32(name).unwrap(),
            ft.read_f32(name).unwrap(),
            base.read_f32(name).unwrap(),
        );
        let dist = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        assert!(
            dist(&m, &f) < dist(&b, &f),
            "{method}: merged not closer to the fine-tune than the base"
        );
    }
}

#[test]
fn svd_at_full_rank_and_8bit_rtn_reproduce_the_finetune() {
    let tmp = tempfile::tempdir().unwrap();
    let ft = Checkpoint::open(fixture("pair/finetuned")).unwrap();
    let base = Checkpoint::open(fixture("pair/base")).unwrap();
    for method in ["svd:rank=176", "rtn:bits=8,group=16"] {
        let delta = tmp.path().join(format!("{method}.st").replace(':', "_"));
        compress(method, &delta).unwrap();
        let out = apply(&delta, &tmp.path().join(method.replace(':', "_"))).unwrap();
        let merged = Checkpoint::open(&out).unwrap();
        for info in ft.infos() {
            let (a, b) = (
                merged.read_f32(&info.name).unwrap(),
                ft.read_f32(&info.name).unwrap(),
            );
            let d: Vec<f32> = b
                .iter()
                .zip(base.read_f32(&info.name).unwrap())
                .map(|(f, b)| f - b)
                .collect();
            let range = d.iter().cloned().fold(f32::MIN, f32::max)
                - d.iter().cloned().fold(f32::MAX, f32::min);
            // SVD at full rank: float error only; 8-bit RTN: half a step of the
            // widest group, plus rounding of the f32 sums.
            let tol = if method.starts_with("svd") {
                1e-5
            } else {
                range / 255.0 / 2.0 + 1e-6
            };
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst <= tol, "{method} {}: {worst}", info.name);
        }
    }
}

#[test]
fn a_delta_is_refused_on_the_wrong_base_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let delta = tmp.path().join("bd.safetensors");
    compress("bitdelta", &delta).unwrap();
    let wrong = Checkpoint::open(fixture("llama-untied-f32")).unwrap();
    let file = DeltaFile::open(&delta).unwrap();
    let out = tmp.path().join("never");
    let err = apply_delta_file(
        &wrong,
        &file,
        &delta,
        &out,
        &WriteOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap_err();
    assert!(matches!(err, OpsError::WrongBase { .. }), "{err}");
    assert!(!out.exists());
}

/// A delta whose recorded whole-content base digest differs from the base's
/// (same sampled fingerprint) is refused before anything is written.
#[test]
fn a_base_with_another_content_digest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let delta = tmp.path().join("bd.safetensors");
    compress("bitdelta", &delta).unwrap();
    let base = Checkpoint::open(fixture("pair/base")).unwrap();
    let file = DeltaFile::open(&delta).unwrap();
    assert_eq!(
        file.header().base_digest.as_deref(),
        Some(base.content_digest())
    );
    assert!(file.header().finetuned_digest.is_some());
    // Rewrite the delta's metadata with another base digest.
    let bytes = std::fs::read(&delta).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut md = meta.metadata().clone().unwrap();
    md.insert("base_digest".into(), "xxh3-64:0000000000000000".into());
    let edited = tmp.path().join("edited.safetensors");
    std::fs::write(
        &edited,
        safetensors::serialize(st.tensors(), Some(md)).unwrap(),
    )
    .unwrap();
    let file = DeltaFile::open(&edited).unwrap();
    let out = tmp.path().join("never");
    let err = apply_delta_file(
        &base,
        &file,
        &edited,
        &out,
        &WriteOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap_err();
    assert!(matches!(err, OpsError::WrongBase { .. }), "{err}");
    assert!(
        err.to_string().contains("xxh3-64:0000000000000000"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn an_interrupt_leaves_no_output_file() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = DeltaPair::open(fixture("pair/base"), fixture("pair/finetuned")).unwrap();
    let c = parse_method("bitdelta").unwrap();
    let out = tmp.path().join("interrupted.safetensors");
    let flag = AtomicBool::new(false);
    let mut seen = 0;
    let err = compress_checkpoint(
        &pair,
        c.as_ref(),
        &out,
        &CompressOptions::default(),
        &mut |_| {
            seen += 1;
            if seen == 5 {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        },
        Some(&flag),
    )
    .unwrap_err();
    assert!(matches!(err, OpsError::Interrupted { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temporary files left behind"
    );
}

#[test]
fn a_nan_in_the_finetune_is_refused_and_no_file_is_left() {
    use deltaguard::delta_core::{CheckpointWriter, DType};
    let tmp = tempfile::tempdir().unwrap();
    let ft_src = Checkpoint::open(fixture("pair/finetuned")).unwrap();
    let poisoned = tmp.path().join("poisoned");
    let mut w = CheckpointWriter::create(&poisoned, WriteOptions::default())
        .unwrap()
        .allow_non_finite();
    w.copy_aux_files_from(ft_src.dir()).unwrap();
    for info in ft_src.infos() {
        let mut v = ft_src.read_f32(&info.name).unwrap();
        if info.name == "model.layers.1.mlp.gate_proj.weight" {
            v[17] = f32::NAN;
        }
        w.write_f32(&info.name, DType::F32, &info.shape, &v)
            .unwrap();
    }
    w.finish().unwrap();
    let pair = DeltaPair::open(fixture("pair/base"), &poisoned).unwrap();
    let out = tmp.path().join("delta.safetensors");
    let err = compress_checkpoint(
        &pair,
        parse_method("bitdelta").unwrap().as_ref(),
        &out,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("model.layers.1.mlp.gate_proj.weight") && msg.contains("17"),
        "{msg}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("poisoned")]);
}

/// A copy of checkpoint `src` at `dst` (f32) with `edit` applied to `tensor`.
fn edited_copy(src: &Path, dst: &Path, tensor: &str, edit: impl Fn(&mut [f32])) -> PathBuf {
    use deltaguard::delta_core::{CheckpointWriter, DType};
    let src = Checkpoint::open(src).unwrap();
    let mut w = CheckpointWriter::create(dst, WriteOptions::default())
        .unwrap()
        .allow_non_finite();
    w.copy_aux_files_from(src.dir()).unwrap();
    for info in src.infos() {
        let mut v = src.read_f32(&info.name).unwrap();
        if info.name == tensor {
            edit(&mut v);
        }
        w.write_f32(&info.name, DType::F32, &info.shape, &v)
            .unwrap();
    }
    w.finish().unwrap()
}

/// Every entry of `dir`, sorted, as strings.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn bad_inputs_are_typed_errors_and_leave_no_output() {
    use deltaguard::delta_core::{CheckpointError, DeltaError};
    use deltaguard::delta_quant::QuantError;
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs");
    let outputs = tmp.path().join("outputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::create_dir_all(&outputs).unwrap();
    let bitdelta = parse_method("bitdelta").unwrap();
    let try_compress = |base: &Path, ft: &Path| -> Result<(), OpsError> {
        let pair = DeltaPair::open(base, ft)?;
        compress_checkpoint(
            &pair,
            bitdelta.as_ref(),
            outputs.join("delta.safetensors"),
            &CompressOptions::default(),
            &mut |_| {},
            None,
        )?;
        Ok(())
    };
    let copy_dir = |name: &str, dst: &Path| {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(fixture(name)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    };

    // A truncated fine-tune.
    let truncated = inputs.join("truncated");
    copy_dir("pair/finetuned", &truncated);
    let weights = truncated.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 1000]).unwrap();
    let err = try_compress(&fixture("pair/base"), &truncated).unwrap_err();
    assert!(
        matches!(
            &err,
            OpsError::Delta(DeltaError::Checkpoint(CheckpointError::Safetensors { path, .. })) if *path == weights
        ),
        "truncated: {err}"
    );

    // A base whose header lies about a tensor's offsets.
    let lying = inputs.join("lying");
    copy_dir("pair/base", &lying);
    let weights = lying.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let lied = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[8,", 1);
    assert_ne!(lied, header, "fixture header layout changed");
    let mut b = bytes[..8].to_vec();
    b.extend(lied.as_bytes());
    b.extend(&bytes[8 + n..]);
    std::fs::write(&weights, b).unwrap();
    let err = try_compress(&lying, &fixture("pair/finetuned")).unwrap_err();
    assert!(
        matches!(
            &err,
            OpsError::Delta(DeltaError::Checkpoint(CheckpointError::Safetensors { .. }))
        ),
        "lying header: {err}"
    );

    // A mismatched pair.
    let err = try_compress(&fixture("pair/base"), &fixture("llama-tied-f32")).unwrap_err();
    assert!(
        matches!(&err, OpsError::Delta(DeltaError::Mismatch(_))),
        "mismatch: {err}"
    );

    // Finite weights whose difference overflows to +Inf, in the last
    // compressed tensor (the writer has already written the others).
    let name = "model.layers.1.self_attn.v_proj.weight";
    let base_big = edited_copy(&fixture("pair/base"), &inputs.join("base-big"), name, |v| {
        v[3] = -3.0e38
    });
    let ft_big = edited_copy(
        &fixture("pair/finetuned"),
        &inputs.join("ft-big"),
        name,
        |v| v[3] = 3.0e38,
    );
    let err = try_compress(&base_big, &ft_big).unwrap_err();
    assert!(
        matches!(
            &err,
            OpsError::Delta(DeltaError::NonFinite { tensor, which: "the delta", index: 3, .. }) if tensor == name
        ),
        "inf delta: {err}"
    );
    assert!(
        listing(&outputs).is_empty(),
        "compress left {:?}",
        listing(&outputs)
    );

    // Apply: a truncated delta file and one whose header lies are refused
    // when opened; a merge that overflows is refused mid-way, and the
    // half-built model directory is removed.
    let good = inputs.join("good.safetensors");
    compress("bitdelta", &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = inputs.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 64]).unwrap();
    assert!(matches!(
        DeltaFile::open(&truncated),
        Err(QuantError::Safetensors(_))
    ));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let lied = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[1,", 1);
    assert_ne!(lied, header);
    let mut b = bytes[..8].to_vec();
    b.extend(lied.as_bytes());
    b.extend(&bytes[8 + n..]);
    let lying = inputs.join("lying.safetensors");
    std::fs::write(&lying, b).unwrap();
    assert!(matches!(
        DeltaFile::open(&lying),
        Err(QuantError::Safetensors(_))
    ));

    // Base entries near f32::MAX plus a delta whose scale is huge: W + Δ̂
    // overflows in the last layer's up_proj.
    let name = "model.layers.1.mlp.up_proj.weight";
    let base_edge = edited_copy(
        &fixture("pair/base"),
        &inputs.join("base-edge"),
        name,
        |v| {
            v[..100].fill(0.0);
            v[100] = 3.402e38;
        },
    );
    let ft_edge = edited_copy(
        &fixture("pair/finetuned"),
        &inputs.join("ft-edge"),
        name,
        |v| {
            v[..100].fill(3.0e38);
            v[100] = 3.402e38;
        },
    );
    // A 3e38-sized delta would overflow the merged weight; the delta writer
    // refuses its scale (beyond MAX_PAYLOAD_MAGNITUDE) before anything is written.
    let pair = DeltaPair::open(&base_edge, &ft_edge).unwrap();
    let edge_delta = inputs.join("edge.safetensors");
    let err = compress_checkpoint(
        &pair,
        bitdelta.as_ref(),
        &edge_delta,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            OpsError::Quant(QuantError::BadPayload { tensor, payload, .. }) if tensor == name && payload == "scales"
        ),
        "overflowing delta: {err}"
    );
    assert!(!edge_delta.exists());
    assert!(
        listing(&outputs).is_empty(),
        "compress left {:?}",
        listing(&outputs)
    );
}

#[test]
fn the_delta_file_records_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = DeltaPair::open(fixture("pair/base"), fixture("pair/finetuned")).unwrap();
    let out = tmp.path().join("dare.safetensors");
    let options = CompressOptions {
        seed: 42,
        ..CompressOptions::default()
    };
    let dare = parse_method("dare:p=0.5").unwrap();
    compress_checkpoint(&pair, dare.as_ref(), &out, &options, &mut |_| {}, None).unwrap();
    let file = DeltaFile::open(&out).unwrap();
    assert_eq!(file.header().seed, Some(42));
    // The recorded method and seed reproduce the file's deltas exactly.
    let again = tmp.path().join("again.safetensors");
    let method = parse_method(file.method()).unwrap();
    let options = CompressOptions {
        seed: file.header().seed.unwrap(),
        ..CompressOptions::default()
    };
    compress_checkpoint(&pair, method.as_ref(), &again, &options, &mut |_| {}, None).unwrap();
    let again = DeltaFile::open(&again).unwrap();
    for e in file.entries() {
        if e.kind == deltaguard::delta_quant::EntryKind::Compressed {
            assert_eq!(
                again.compressed(&e.name).unwrap(),
                file.compressed(&e.name).unwrap()
            );
        }
    }
}

fn deltaguard(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_deltaguard"))
        .args(args)
        .output()
        .expect("run deltaguard")
}

/// Issue 14, item 3: when compress's own post-write check fails (a 3e38 delta
/// with dare / svd / deltacome) the output must not stay behind, so a re-run
/// is not refused with "already exists". Whatever each method does with such
/// a delta, the result is a file that loads, or an error and no file.
#[test]
fn a_compress_whose_output_fails_its_check_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs");
    let outputs = tmp.path().join("outputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::create_dir_all(&outputs).unwrap();
    let name = "model.layers.0.mlp.up_proj.weight";
    let ft = edited_copy(&fixture("pair/finetuned"), &inputs.join("ft"), name, |v| {
        v[5] = 3.0e38
    });
    for method in ["dare:p=0.5", "svd:rank=4", "deltacome:rank=8"] {
        let out = outputs.join(format!("{}.safetensors", method.replace([':', '='], "-")));
        for attempt in 0..2 {
            let o = deltaguard(&[
                "compress".as_ref(),
                "-q".as_ref(),
                "--base".as_ref(),
                fixture("pair/base").as_os_str(),
                "--finetuned".as_ref(),
                ft.as_os_str(),
                "--method".as_ref(),
                method.as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ]);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(!stderr.contains("panicked"), "{method}: {stderr}");
            if o.status.success() {
                DeltaFile::open(&out).unwrap_or_else(|e| panic!("{method}: exit 0 but {e}"));
                std::fs::remove_file(&out).unwrap();
            } else {
                assert!(
                    !stderr.contains("already exists"),
                    "{method} attempt {attempt}: {stderr}"
                );
                assert!(
                    listing(&outputs).is_empty(),
                    "{method}: left {:?} after: {stderr}",
                    listing(&outputs)
                );
            }
        }
    }
}

/// Issue 14, item 4: NaN/Inf in a carried tensor (an embedding or norm) of a
/// fine-tune is refused by compress with the tensor's name; one in a delta
/// file's carried tensor is refused by apply and by loading (`logits
/// --delta`), never written into a model.
#[test]
fn non_finite_carried_tensors_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs");
    let outputs = tmp.path().join("outputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::create_dir_all(&outputs).unwrap();
    let carried = "model.embed_tokens.weight";
    let ft = edited_copy(
        &fixture("pair/finetuned"),
        &inputs.join("ft"),
        carried,
        |v| v[7] = f32::NAN,
    );
    let o = deltaguard(&[
        "compress".as_ref(),
        "-q".as_ref(),
        "--base".as_ref(),
        fixture("pair/base").as_os_str(),
        "--finetuned".as_ref(),
        ft.as_os_str(),
        "--out".as_ref(),
        outputs.join("d.safetensors").as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "compress accepted a NaN embedding");
    assert!(
        stderr.contains(carried) && stderr.contains("non-finite"),
        "{stderr}"
    );
    assert!(listing(&outputs).is_empty());

    // The library refuses too (the delta writer checks carried tensors), so no
    // poisoned delta file can be written for apply or logits to load.
    let pair = DeltaPair::open(fixture("pair/base"), &ft).unwrap();
    let delta = inputs.join("poisoned.safetensors");
    let err = compress_checkpoint(
        &pair,
        parse_method("bitdelta").unwrap().as_ref(),
        &delta,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains(carried), "{err}");
    assert!(!delta.exists());
}
