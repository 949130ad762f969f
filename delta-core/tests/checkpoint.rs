//! Reading the transformers-written fixtures, writing them back, and refusing
//! bad input with typed errors and no output left behind.

use delta_core::{
    Checkpoint, CheckpointError, CheckpointWriter, DType, DeltaError, DeltaPair, Difference,
    Selection, WriteOptions,
};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/hf-reference")
        .join(name)
}

/// Copy every tensor of `src` into a new directory `dst` through the writer.
fn rewrite(src: &Checkpoint, dst: &Path, max_shard_bytes: u64) -> PathBuf {
    let mut w = CheckpointWriter::create(
        dst,
        WriteOptions {
            max_shard_bytes,
            overwrite: false,
        },
    )
    .unwrap();
    w.copy_aux_files_from(src.dir()).unwrap();
    for info in src.infos() {
        let view = src.view(&info.name).unwrap();
        w.write_tensor(&info.name, info.dtype, &info.shape, view.bytes)
            .unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn opens_every_fixture_layout() {
    for (name, dtype, shards) in [
        ("llama-untied-f32", DType::F32, 1),
        ("llama-tied-f32", DType::F32, 1),
        ("llama-untied-bf16", DType::BF16, 1),
        ("llama-sharded-f16", DType::F16, 6),
    ] {
        let ck = Checkpoint::open(fixture(name)).unwrap();
        assert_eq!(ck.shard_paths().len(), shards, "{name}");
        assert!(ck.infos().all(|i| i.dtype == dtype), "{name}");
        let embed = ck.info("model.embed_tokens.weight").unwrap();
        assert_eq!(embed.shape, vec![320, 64], "{name}");
        let values = ck.read_f32("model.embed_tokens.weight").unwrap();
        assert_eq!(values.len(), 320 * 64);
        assert!(values.iter().all(|v| v.is_finite()));
        assert_eq!(ck.config_json()["hidden_size"], 64);
        assert_eq!(ck.contains("lm_head.weight"), name != "llama-tied-f32");
    }
}

#[test]
fn round_trip_single_and_sharded_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    for (src_name, max_shard) in [
        ("llama-untied-bf16", u64::MAX),
        ("llama-untied-f32", 100_000),
        ("llama-sharded-f16", 5_000_000_000),
    ] {
        let src = Checkpoint::open(fixture(src_name)).unwrap();
        let out = rewrite(&src, &tmp.path().join(src_name), max_shard);
        let back = Checkpoint::open(&out).unwrap();
        assert_eq!(back.tensor_names(), src.tensor_names());
        for info in src.infos() {
            assert_eq!(back.info(&info.name).unwrap(), info);
            assert_eq!(
                back.view(&info.name).unwrap().bytes,
                src.view(&info.name).unwrap().bytes,
                "{src_name}: {}",
                info.name
            );
        }
        for aux in ["config.json", "tokenizer.json", "chat_template.jinja"] {
            assert_eq!(
                std::fs::read(out.join(aux)).unwrap(),
                std::fs::read(src.dir().join(aux)).unwrap()
            );
        }
        let sharded = out.join("model.safetensors.index.json").exists();
        assert_eq!(sharded, max_shard == 100_000, "{src_name}");
        if sharded {
            assert!(back.shard_paths().len() > 1);
            assert!(
                out.join("model-00001-of-00006.safetensors").exists()
                    || back.shard_paths().len() != 6
            );
        }
        assert_eq!(back.fingerprint(), src.fingerprint());
        // Same tensors in another shard layout: same digest.
        assert_eq!(back.content_digest(), src.content_digest());
    }
}

/// One changed weight that the sampled fingerprint does not look at still
/// changes the whole-content digest (what `apply` checks).
#[test]
fn content_digest_sees_every_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Checkpoint::open(fixture("llama-untied-f32")).unwrap();
    let name = "model.embed_tokens.weight"; // 80 KiB: the fingerprint samples it
    let len = src.view(name).unwrap().bytes.len();
    // Find a byte outside the fingerprint's sample windows (about a fifth).
    for (k, i) in (0..len).step_by(1021).enumerate() {
        let dst = tmp.path().join(format!("m{k}"));
        let mut w = CheckpointWriter::create(&dst, WriteOptions::default()).unwrap();
        w.copy_aux_files_from(src.dir()).unwrap();
        for info in src.infos() {
            let mut bytes = src.view(&info.name).unwrap().bytes.to_vec();
            if info.name == name {
                bytes[i] ^= 1;
            }
            w.write_tensor(&info.name, info.dtype, &info.shape, &bytes)
                .unwrap();
        }
        let changed = Checkpoint::open(w.finish().unwrap()).unwrap();
        assert_ne!(changed.content_digest(), src.content_digest(), "byte {i}");
        if changed.fingerprint() == src.fingerprint() {
            return;
        }
    }
    panic!("every probed byte was inside a fingerprint window");
}

#[test]
fn shard_size_limit_is_respected() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Checkpoint::open(fixture("llama-untied-f32")).unwrap();
    let limit = 90_000;
    let out = rewrite(&src, &tmp.path().join("m"), limit);
    let largest_tensor = src.infos().map(|i| i.num_bytes() as u64).max().unwrap();
    for shard in Checkpoint::open(&out).unwrap().shard_paths() {
        let len = std::fs::metadata(shard).unwrap().len();
        // header + data; data exceeds the limit only for a lone oversized tensor
        assert!(len < limit.max(largest_tensor) + 16_384, "{shard:?}: {len}");
    }
}

#[test]
fn dropped_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("never");
    {
        let mut w = CheckpointWriter::create(&target, WriteOptions::default()).unwrap();
        w.write_f32("a", DType::F32, &[2], &[1.0, 2.0]).unwrap();
        // dropped without finish: an interrupted run
    }
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn existing_output_is_refused_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("exists");
    std::fs::create_dir(&target).unwrap();
    let err = CheckpointWriter::create(&target, WriteOptions::default()).unwrap_err();
    assert!(matches!(err, CheckpointError::OutputExists { .. }), "{err}");
    let mut w = CheckpointWriter::create(
        &target,
        WriteOptions {
            overwrite: true,
            ..Default::default()
        },
    )
    .unwrap();
    w.write_aux_file("config.json", b"{}").unwrap();
    w.write_f32("x", DType::F16, &[1], &[0.5]).unwrap();
    w.finish().unwrap();
    assert_eq!(
        Checkpoint::open(&target).unwrap().read_f32("x").unwrap(),
        vec![0.5]
    );
}

#[test]
fn wrong_byte_count_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = CheckpointWriter::create(tmp.path().join("m"), WriteOptions::default()).unwrap();
    let err = w
        .write_tensor("t", DType::F32, &[3], &[0u8; 8])
        .unwrap_err();
    assert!(err.to_string().contains("`t`"), "{err}");
}

fn copy_fixture(name: &str, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

#[test]
fn truncated_and_corrupt_files_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_fixture("llama-untied-f32", &dir);
    let weights = dir.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated data", good[..good.len() - 100].to_vec()),
        ("truncated header", good[..20].to_vec()),
        ("empty file", Vec::new()),
        ("header length beyond file", {
            let mut b = good.clone();
            b[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
            b
        }),
        ("garbage header", {
            let mut b = good.clone();
            for x in &mut b[8..40] {
                *x = b'#';
            }
            b
        }),
        ("header lies about offsets", {
            // Shift one tensor's end offset: offsets no longer tile the data.
            let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
            let header = String::from_utf8(good[8..8 + n].to_vec()).unwrap();
            let lied = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[4,", 1);
            assert_ne!(lied, header, "fixture header layout changed");
            let mut b = good[..8].to_vec();
            b.extend(lied.as_bytes());
            b.extend(&good[8 + n..]);
            b
        }),
    ];
    for (what, bytes) in cases {
        std::fs::write(&weights, &bytes).unwrap();
        match Checkpoint::open(&dir) {
            Err(CheckpointError::Safetensors { path, .. }) => assert_eq!(path, weights, "{what}"),
            Err(e) => panic!("{what}: unexpected error kind {e}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }
}

#[test]
fn missing_config_weights_and_bad_index_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        Checkpoint::open(&empty),
        Err(CheckpointError::MissingConfig { .. })
    ));
    std::fs::write(empty.join("config.json"), "{}").unwrap();
    assert!(matches!(
        Checkpoint::open(&empty),
        Err(CheckpointError::NoWeights { .. })
    ));
    std::fs::write(empty.join("config.json"), "{not json").unwrap();
    assert!(matches!(
        Checkpoint::open(&empty),
        Err(CheckpointError::Json { .. })
    ));

    let sharded = tmp.path().join("sharded");
    copy_fixture("llama-sharded-f16", &sharded);
    let index = sharded.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        text.replacen(
            "\"lm_head.weight\": \"model-00006-of-00006.safetensors\"",
            "\"lm_head.weight\": \"model-00001-of-00006.safetensors\"",
            1,
        ),
    )
    .unwrap();
    let err = Checkpoint::open(&sharded).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::IndexMismatch { tensor, .. } if tensor == "lm_head.weight"),
        "{err}"
    );
    std::fs::write(
        &index,
        text.replacen("model-00003-of-00006", "../escape", 1),
    )
    .unwrap();
    assert!(matches!(
        Checkpoint::open(&sharded),
        Err(CheckpointError::InvalidIndex { .. })
    ));
}

#[test]
fn mismatched_pairs_name_every_difference() {
    // untied vs tied: architecture field, KV heads, tensor sets and shapes all differ
    let err = DeltaPair::open(fixture("llama-untied-f32"), fixture("llama-tied-f32")).unwrap_err();
    let DeltaError::Mismatch(m) = err else {
        panic!("expected a mismatch, got {err}")
    };
    assert!(m
        .differences
        .contains(&Difference::MissingTensor("lm_head.weight".into())));
    assert!(m.differences.iter().any(
        |d| matches!(d, Difference::Architecture { field, .. } if field == "num_key_value_heads")
    ));
    assert!(m.differences.iter().any(
        |d| matches!(d, Difference::Shape { tensor, .. } if tensor.ends_with("k_proj.weight"))
    ));
    let msg = m.to_string();
    assert!(
        msg.contains("lm_head.weight") && msg.contains("num_key_value_heads"),
        "{msg}"
    );

    // same architecture, different dtype
    let err =
        DeltaPair::open(fixture("llama-untied-f32"), fixture("llama-untied-bf16")).unwrap_err();
    let DeltaError::Mismatch(m) = err else {
        panic!()
    };
    assert!(m
        .differences
        .iter()
        .any(|d| matches!(d, Difference::DType { .. })));

    // vocabulary size
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vocab");
    copy_fixture("llama-untied-f32", &dir);
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"vocab_size\": 320", "\"vocab_size\": 321"),
    )
    .unwrap();
    let err = DeltaPair::open(fixture("llama-untied-f32"), &dir).unwrap_err();
    let DeltaError::Mismatch(m) = err else {
        panic!()
    };
    assert_eq!(
        m.differences,
        vec![Difference::VocabSize {
            base: Some(320),
            finetuned: Some(321)
        }]
    );
}

#[test]
fn delta_of_the_reference_pair() {
    let pair = DeltaPair::open(fixture("pair/base"), fixture("pair/finetuned")).unwrap();
    let plan = pair.plan(&Selection::bitdelta());
    let compressed: Vec<_> = plan
        .iter()
        .filter(|e| e.action == delta_core::Action::Compress)
        .map(|e| e.info.name.as_str())
        .collect();
    assert_eq!(compressed.len(), 2 * 7, "{compressed:?}");
    let name = "model.layers.1.self_attn.v_proj.weight";
    let delta = pair.delta(name).unwrap();
    let b = pair.base().read_f32(name).unwrap();
    let f = pair.finetuned().read_f32(name).unwrap();
    for i in 0..delta.len() {
        assert_eq!(delta[i], f[i] - b[i]);
    }
    // merging the delta back gives the fine-tune again (f32: exact up to rounding of b + (f - b))
    let merged = delta_core::add_delta(name, pair.base().view(name).unwrap(), &delta).unwrap();
    let merged = delta_core::dtype::decode(&merged, DType::F32);
    for i in 0..merged.len() {
        assert!((merged[i] - f[i]).abs() <= 1e-7 * f[i].abs().max(1.0));
    }
}

#[test]
fn non_finite_values_are_refused_with_the_tensor_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mk = |name: &str, v: f32| {
        let dir = tmp.path().join(name);
        let mut w = CheckpointWriter::create(&dir, WriteOptions::default())
            .unwrap()
            .allow_non_finite();
        w.write_aux_file("config.json", b"{\"model_type\":\"llama\"}")
            .unwrap();
        w.write_f32("w", DType::F32, &[2, 2], &[0.0, 1.0, v, 3.0])
            .unwrap();
        w.finish().unwrap()
    };
    let base = mk("base", 2.0);
    let ft = mk("ft", f32::NAN);
    let pair = DeltaPair::open(&base, &ft).unwrap();
    match pair.delta("w") {
        Err(DeltaError::NonFinite {
            tensor,
            index,
            which,
            ..
        }) => {
            assert_eq!((tensor.as_str(), index, which), ("w", 2, "the fine-tune"));
        }
        other => panic!("{other:?}"),
    }
    let inf = mk("inf", f32::INFINITY);
    let pair = DeltaPair::open(&inf, &base).unwrap();
    assert!(matches!(
        pair.delta("w"),
        Err(DeltaError::NonFinite {
            which: "the base",
            ..
        })
    ));
}

/// Issue 14: NaN/Inf in a tensor (a carried embedding or norm of a fine-tune
/// or delta, a diverged training run) is refused by the writer with the
/// tensor's name and element, in every stored dtype, and nothing is left.
#[test]
fn the_writer_refuses_non_finite_values_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let dir = tmp.path().join(format!("m-{dtype}"));
            let mut w = CheckpointWriter::create(&dir, WriteOptions::default()).unwrap();
            w.write_f32("fine", dtype, &[2], &[1.0, -2.0]).unwrap();
            let err = w
                .write_f32("model.norm.weight", dtype, &[2, 2], &[0.0, 1.0, 2.0, bad])
                .unwrap_err();
            match &err {
                CheckpointError::NonFinite { tensor, index, .. } => {
                    assert_eq!((tensor.as_str(), *index), ("model.norm.weight", 3));
                }
                other => panic!("{dtype} {bad}: {other:?}"),
            }
            drop(w);
            assert!(!dir.exists(), "nothing written");
        }
    }
    // f32 → f16 overflow is caught too: 1e6 is +Inf in f16.
    let dir = tmp.path().join("overflow");
    let mut w = CheckpointWriter::create(&dir, WriteOptions::default()).unwrap();
    let err = w
        .write_f32("model.embed_tokens.weight", DType::F16, &[1], &[1e6])
        .unwrap_err();
    assert!(
        err.to_string().contains("model.embed_tokens.weight"),
        "{err}"
    );
    drop(w);
    assert_eq!(tmp.path().read_dir().unwrap().count(), 0, "no temp left");
}

/// Issue 14: a truncated safetensors file was reported as "incomplete
/// metadata, file not fully covered", and a byte range that disagrees with
/// the shape named no tensor.
#[test]
fn truncated_and_inconsistent_safetensors_are_explained_with_path_and_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let dst = tmp.path().join(name);
        std::fs::create_dir(&dst).unwrap();
        for e in std::fs::read_dir(fixture("pair/base")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
        dst.join("model.safetensors")
    };
    let truncated = copy("truncated");
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let err = Checkpoint::open(truncated.parent().unwrap()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("truncated") && msg.contains(&truncated.display().to_string()),
        "{msg}"
    );
    assert!(!msg.contains("not fully covered"), "{msg}");

    let lying = copy("lying");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let lied = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[8,", 1);
    assert_ne!(lied, header, "fixture header layout changed");
    let first = header[..header.find("\"data_offsets\":[0,").unwrap()]
        .rsplit("\":{")
        .nth(1)
        .and_then(|s| s.rsplit('"').next())
        .unwrap()
        .to_string();
    let mut b = bytes[..8].to_vec();
    b.extend(lied.as_bytes());
    b.extend(&bytes[8 + n..]);
    std::fs::write(&lying, b).unwrap();
    let msg = Checkpoint::open(lying.parent().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!("tensor `{first}`")) && msg.contains("byte range"),
        "{msg}"
    );
}

#[test]
fn configs_that_omit_derivable_fields_still_pair() {
    // Llama-2's own config.json has no `head_dim`; transformers >= 4.45 writes
    // it when it saves a fine-tune. The derived default must count as equal.
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    copy_fixture("pair/base", &base);
    let cfg_path = base.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let obj = cfg.as_object_mut().unwrap();
    assert_eq!(obj.remove("head_dim"), Some(serde_json::json!(8)));
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    DeltaPair::open(&base, fixture("pair/finetuned")).expect("head_dim 64 / 8 heads = 8");

    // A head_dim that differs from the derived one is still a mismatch.
    cfg["head_dim"] = serde_json::json!(16);
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let err = DeltaPair::open(&base, fixture("pair/finetuned")).unwrap_err();
    let DeltaError::Mismatch(m) = err else {
        panic!("expected a mismatch, got {err}")
    };
    assert_eq!(
        m.differences,
        vec![Difference::Architecture {
            field: "head_dim".into(),
            base: "16".into(),
            finetuned: "8".into(),
        }]
    );

    // Without `num_key_value_heads` the default is one KV head per attention
    // head (8), which is not the fine-tune's 2.
    cfg.as_object_mut().unwrap().remove("head_dim");
    cfg.as_object_mut().unwrap().remove("num_key_value_heads");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let err = DeltaPair::open(&base, fixture("pair/finetuned")).unwrap_err();
    assert!(err.to_string().contains("num_key_value_heads"), "{err}");
}

#[test]
fn failed_commits_leave_no_temporary_and_keep_the_old_output() {
    use delta_core::{AtomicDir, AtomicFile};
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();

    // A file cannot be renamed over a non-empty directory.
    let target = tmp.path().join("blocked");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    let mut f = AtomicFile::create(&target).unwrap();
    f.write_all(b"new contents").unwrap();
    assert!(matches!(f.commit(), Err(CheckpointError::Io { .. })));
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["blocked".to_string()], "temporary file left");
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"x");

    // Replacing a directory: if the new one cannot be moved in, the old one
    // stays where it was.
    let out = tmp.path().join("model");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("old"), b"old").unwrap();
    let dir = AtomicDir::create(&out, true).unwrap();
    std::fs::remove_dir_all(dir.path()).unwrap(); // the rename now fails
    assert!(dir.commit().is_err());
    assert_eq!(std::fs::read(out.join("old")).unwrap(), b"old");
    let left = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(left, 2, "only `blocked` and `model` remain");
}

/// A fine-tune that changed a config value the delta file would lose
/// (norm epsilon, rope, context length) is refused, naming the field;
/// spelling differences between transformers versions are not differences.
#[test]
fn numerics_config_differences_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ft = tmp.path().join("ft");
    copy_fixture("pair/finetuned", &ft);
    let cfg_path = ft.join("config.json");
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    type ConfigEdit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, ConfigEdit)> = vec![
        (
            "rms_norm_eps",
            Box::new(|c| c["rms_norm_eps"] = serde_json::json!(1e-6)),
        ),
        (
            "rope_theta",
            Box::new(|c| c["rope_parameters"]["rope_theta"] = serde_json::json!(500000.0)),
        ),
        (
            "rope_scaling",
            Box::new(|c| {
                c["rope_parameters"] =
                    serde_json::json!({"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0})
            }),
        ),
        (
            "max_position_embeddings",
            Box::new(|c| c["max_position_embeddings"] = serde_json::json!(4096)),
        ),
    ];
    for (field, edit) in cases {
        let mut cfg = original.clone();
        edit(&mut cfg);
        std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
        let err = DeltaPair::open(fixture("pair/base"), &ft).unwrap_err();
        let DeltaError::Mismatch(m) = err else {
            panic!("{field}: expected a mismatch, got {err}")
        };
        assert!(
            m.differences
                .iter()
                .any(|d| matches!(d, Difference::Config { field: f, .. } if f == field)),
            "{field}: {m}"
        );
    }
    // The old spelling of the same rope settings pairs fine.
    let mut cfg = original.clone();
    let obj = cfg.as_object_mut().unwrap();
    obj.remove("rope_parameters");
    obj.insert("rope_theta".into(), serde_json::json!(10000));
    obj.insert("rope_scaling".into(), serde_json::Value::Null);
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    DeltaPair::open(fixture("pair/base"), &ft).expect("rope_theta spelled the old way");
}

/// Issue 14: two writers of the same target (two `compress --overwrite` runs
/// to one `--out`) shared one temporary name and could interleave. Now each
/// writer has its own temporary, the last commit wins whole, and the
/// advisory lock stops a second writer at once.
#[test]
fn concurrent_writers_never_share_a_temporary_and_the_lock_excludes_them() {
    use delta_core::{AtomicFile, OutputLock};
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("delta.safetensors");
    let mut a = AtomicFile::create(&target).unwrap();
    let mut b = AtomicFile::create(&target).unwrap();
    let temps: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(temps.len(), 2, "two distinct temporaries: {temps:?}");
    a.write_all(&[b'a'; 4096]).unwrap();
    b.write_all(&[b'b'; 8192]).unwrap();
    a.commit().unwrap();
    b.commit().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), vec![b'b'; 8192]);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    // Same with threads racing on one target: every result is one whole write.
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let target = &target;
            s.spawn(move || {
                let mut f = AtomicFile::create(target).unwrap();
                f.write_all(&vec![t; 10_000 + usize::from(t)]).unwrap();
                f.commit().unwrap();
            });
        }
    });
    let got = std::fs::read(&target).unwrap();
    let t = got[0];
    assert_eq!(got, vec![t; 10_000 + usize::from(t)], "a mixed file");

    let lock = OutputLock::acquire(&target).unwrap();
    match OutputLock::acquire(&target) {
        Err(CheckpointError::OutputLocked { path, .. }) => assert_eq!(path, target),
        other => panic!("second lock: {other:?}"),
    }
    drop(lock);
    let again = OutputLock::acquire(&target).unwrap();
    drop(again);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["delta.safetensors".to_string()],
        "lock file removed"
    );
}

/// Temporaries get ordinary permissions (the umask's), not tempfile's 0600.
#[cfg(unix)]
#[test]
fn atomic_outputs_have_ordinary_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("f.json");
    delta_core::write_file_atomic(&target, b"{}").unwrap();
    let file_mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    let probe = tmp.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let expected = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
    assert_eq!(file_mode, expected);
}

/// What a `kill -9` leaves beside a target — a stale temporary, and a
/// previous output moved aside by an interrupted `--overwrite` commit — is
/// cleaned up (the previous output put back) by the next writer that takes
/// the lock; another target's temporaries are left alone.
#[test]
fn the_next_lock_holder_cleans_up_after_a_killed_writer() {
    use delta_core::OutputLock;
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("model");
    // A killed writer's half-built directory and half-written file.
    std::fs::create_dir(tmp.path().join(".model.tmp-a1B2c3")).unwrap();
    std::fs::write(tmp.path().join(".model.tmp-a1B2c3/x"), b"half").unwrap();
    std::fs::write(tmp.path().join(".model.tmp-Zz9yY8"), b"half").unwrap();
    std::fs::write(tmp.path().join(".model.oCP7kN.data.tmp"), b"half").unwrap();
    std::fs::write(tmp.path().join(".model.oCP7kN.tmp"), b"half").unwrap();
    // Killed between "move the old output aside" and "rename the new one in".
    let aside = tmp.path().join(".model.old-q1w2e3");
    std::fs::create_dir_all(aside.join("previous")).unwrap();
    std::fs::write(aside.join("previous/config.json"), b"{}").unwrap();
    // Not ours: a temporary of the target `model.tmp-x`, and a user's file.
    let other = tmp.path().join(".model.tmp-x.tmp-abcdef");
    std::fs::write(&other, b"someone else's").unwrap();
    std::fs::write(tmp.path().join(".model.tmp-notes.txt"), b"user").unwrap();

    drop(OutputLock::acquire(&target).unwrap());
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".model.tmp-notes.txt", ".model.tmp-x.tmp-abcdef", "model"]
    );
    assert_eq!(std::fs::read(target.join("config.json")).unwrap(), b"{}");
}
