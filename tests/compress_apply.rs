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
    let mut w = CheckpointWriter::create(&poisoned, WriteOptions::default()).unwrap();
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
