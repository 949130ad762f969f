//! The method registry and downstream payloads: registration rules, a
//! downstream payload under a pipeline mask, files with unregistered kinds.

use std::any::Any;

use delta_quant::registry::{self, register_encoding, register_method, EncodingInfo, MethodInfo};
use delta_quant::{
    parse_method, CompressContext, Compressed, CompressedTensor, Compressor, DeltaFile,
    DeltaFileHeader, DeltaFileWriter, DeltaMatrix, EncodingReader, ParamList, Params, PartsWriter,
    Payload, QuantError,
};
use serde_json::{json, Value};

/// Δ̂[i][j] = gain · mean over rows of Δ[·][j]: one f32 per column. It
/// fills every entry, so after a sparsifying stage it needs the mask.
#[derive(Debug, Clone, PartialEq)]
struct ColMean {
    rows: usize,
    means: Vec<f32>,
}

impl CompressedTensor for ColMean {
    fn kind(&self) -> &'static str {
        "colmean"
    }
    fn shape(&self) -> [usize; 2] {
        [self.rows, self.means.len()]
    }
    fn storage_bytes(&self) -> u64 {
        4 * self.means.len() as u64
    }
    fn write_parts(&self, w: &mut PartsWriter<'_>) -> Value {
        w.push("means", Payload::f32(vec![self.means.len()], &self.means));
        json!({})
    }
    fn reconstruct_into(&self, out: &mut [f32]) -> Result<(), QuantError> {
        delta_quant::payload::check_len(self.shape(), out.len())?;
        for row in out.chunks_exact_mut(self.means.len().max(1)) {
            row.copy_from_slice(&self.means);
        }
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Debug)]
struct ColMeanMethod {
    gain: f32,
}

impl Compressor for ColMeanMethod {
    fn method(&self) -> &'static str {
        "colmean"
    }
    fn params(&self) -> Params {
        Params::from([("gain".to_string(), json!(self.gain))])
    }
    fn compress_matrix(
        &self,
        d: &DeltaMatrix,
        _: &CompressContext<'_>,
    ) -> Result<Compressed, QuantError> {
        let mut means = vec![0f32; d.cols()];
        for row in d.data().chunks_exact(d.cols().max(1)) {
            for (m, v) in means.iter_mut().zip(row) {
                *m += v / d.rows() as f32;
            }
        }
        means.iter_mut().for_each(|m| *m *= self.gain);
        Ok(Compressed::custom(ColMean {
            rows: d.rows(),
            means,
        }))
    }
}

fn build(p: &ParamList) -> Result<Box<dyn Compressor>, QuantError> {
    Ok(Box::new(ColMeanMethod {
        gain: p.get("gain", 1.0f32)?,
    }))
}

fn decode(r: &EncodingReader<'_>) -> Result<Compressed, QuantError> {
    Ok(Compressed::custom(ColMean {
        rows: r.rows(),
        means: r.f32("means", r.cols())?,
    }))
}

fn info() -> MethodInfo {
    MethodInfo {
        name: "colmean",
        params: &["gain=1"],
        summary: "column means (test)",
        build,
    }
}

fn matrix() -> DeltaMatrix {
    DeltaMatrix::new(
        4,
        9,
        (0..36)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * 1e-2)
            .collect(),
    )
    .unwrap()
}

fn write(path: &std::path::Path, spec: &str, c: &Compressed) -> Result<(), QuantError> {
    let comp = parse_method(spec)?;
    let mut w = DeltaFileWriter::create(path, DeltaFileHeader::new(comp.as_ref(), "fp"))?;
    w.add_compressed("w", c)?;
    w.finish().map(|_| ())
}

/// One test, because the registry is process-wide: the steps before
/// registration must see the method unknown.
#[test]
fn registration_rules_unregistered_files_and_masked_downstream_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = CompressContext::new("w", 0);

    // Before registration: unknown method, listing the built-ins.
    match parse_method("colmean").unwrap_err() {
        QuantError::UnknownMethod { valid, .. } => assert!(valid.contains("bitdelta")),
        e => panic!("{e}"),
    }
    // A payload whose kind is not registered is never written.
    let c = ColMeanMethod { gain: 1.0 }
        .compress_matrix(&matrix(), &ctx)
        .unwrap();
    let path = dir.path().join("unreg.safetensors");
    match write(&path, "bitdelta", &c).unwrap_err() {
        QuantError::Registry { name, reason } => {
            assert_eq!(name, "colmean");
            assert!(reason.contains("not registered"), "{reason}");
        }
        e => panic!("{e}"),
    }
    assert!(!path.exists());

    // Registration rules.
    register_method(info()).unwrap();
    register_method(info()).unwrap();
    let other = MethodInfo {
        summary: "another",
        ..info()
    };
    assert!(matches!(
        register_method(other).unwrap_err(),
        QuantError::Registry { .. }
    ));
    for name in ["bitdelta", "pipeline", "Bad", "a:b", ""] {
        let e = register_method(MethodInfo { name, ..info() }).unwrap_err();
        assert!(matches!(e, QuantError::Registry { .. }), "{name}: {e}");
    }
    let bad_key = MethodInfo {
        name: "badkey",
        params: &["a,b=1"],
        ..info()
    };
    assert!(register_method(bad_key).is_err());
    assert!(register_encoding(EncodingInfo {
        kind: "sparse",
        decode
    })
    .is_err());
    assert!(registry::method_names().ends_with(&["colmean"]));
    assert!(registry::methods_help().contains("colmean:gain=1"));

    // Method registered but encoding not yet: parse works, writing refuses.
    let m = parse_method("colmean:gain=2").unwrap();
    assert_eq!(m.spec(), "colmean:gain=2.0");
    assert!(write(&path, "colmean", &c).is_err());

    register_encoding(EncodingInfo {
        kind: "colmean",
        decode,
    })
    .unwrap();
    assert!(registry::encoding_kinds().contains(&"colmean"));

    // Plain file round trip.
    write(&path, "colmean", &c).unwrap();
    let f = DeltaFile::open(&path).unwrap();
    assert_eq!(f.compressed("w").unwrap(), c);
    assert_eq!(f.entries()[0].storage_bytes, 4 * 9);

    // After DARE the column means fill dropped entries: a mask is stored
    // over the downstream payload, and everything decodes through it.
    let spec = "dare:p=0.5,seed=2+colmean";
    let p = parse_method(spec).unwrap();
    let c = p.compress_matrix(&matrix(), &ctx).unwrap();
    let Compressed::Masked(mp) = &c else {
        panic!("expected a mask, got {}", c.kind())
    };
    assert_eq!(mp.inner.kind(), "colmean");
    let rec = c.reconstruct();
    let inner = mp.inner.reconstruct();
    let kept = mp.mask.unpack();
    for ((r, i), k) in rec.data().iter().zip(inner.data()).zip(&kept) {
        assert_eq!(*r, if *k == 1 { *i } else { 0.0 });
    }
    let mut base = vec![1.0f32; 36];
    c.add_into(&mut base).unwrap();
    for (b, r) in base.iter().zip(rec.data()) {
        assert_eq!(*b, 1.0 + r);
    }
    // Generic x · Δ̂ᵀ (ColMean has no product of its own).
    let x: Vec<f32> = (0..2 * 9).map(|i| i as f32 * 0.1).collect();
    let mut y = vec![0f32; 2 * 4];
    c.matmul_t_add(&x, 2, &mut y).unwrap();
    for i in 0..2 {
        for r in 0..4 {
            let want: f32 = (0..9).map(|j| x[i * 9 + j] * rec.data()[r * 9 + j]).sum();
            assert!((y[i * 4 + r] - want).abs() < 1e-6);
        }
    }
    let path = dir.path().join("masked.safetensors");
    write(&path, spec, &c).unwrap();
    let f = DeltaFile::open(&path).unwrap();
    assert_eq!(f.compressed("w").unwrap(), c);
    assert_eq!(f.compressor().spec(), p.spec());

    // A decoder that reads the wrong shape back is caught.
    let mut parts = c.to_parts();
    parts.payloads.retain(|(n, _)| n != "inner.means");
    assert!(matches!(
        Compressed::from_parts("w", &parts).unwrap_err(),
        QuantError::MissingPayload { .. }
    ));
}
