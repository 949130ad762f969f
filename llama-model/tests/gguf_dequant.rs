//! Dequantization cross-checked against Python `gguf.quants.dequantize`.
//!
//! `tests/data/gguf/quants.gguf` holds one tensor per supported ggml type (random
//! raw blocks, and floats quantized by gguf-py); `quants_reference.bin` holds
//! gguf-py's dequantized f32 values, indexed by `quants_reference.json`. Made by
//! `scripts/make_gguf_fixtures.py`.

use std::path::PathBuf;

use llama_model::gguf::GgufFile;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf")
}

#[test]
fn dequantization_matches_python_gguf() {
    let f = GgufFile::open(data_dir().join("quants.gguf")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir().join("quants_reference.json")).unwrap(),
    )
    .unwrap();
    let blob = std::fs::read(data_dir().join("quants_reference.bin")).unwrap();
    let reference: Vec<f32> = blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let tensors = manifest["tensors"].as_array().unwrap();
    let mut seen_types = std::collections::BTreeSet::new();
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let info = f.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            info.ggml_type.to_string(),
            t["ggml_type"].as_str().unwrap(),
            "{name}"
        );
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(info.shape(), shape, "{name}");
        let off = t["offset"].as_u64().unwrap() as usize;
        let count = t["count"].as_u64().unwrap() as usize;
        let expected = &reference[off..off + count];
        let got = f.dequantize(name).unwrap();
        assert_eq!(got.len(), count, "{name}");
        let mut max_rel = 0f32;
        for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
            assert!(g.is_finite() && e.is_finite(), "{name}[{i}]: {g} vs {e}");
            let rel = (g - e).abs() / e.abs().max(1e-30);
            // Exact, or within 1e-6 relative (f32 rounding order), or a cancellation
            // near zero within 1e-6 of the block's magnitude.
            assert!(
                g == e || rel <= 1e-6 || (g - e).abs() <= 1e-6 * 0.05 * 64.0,
                "{name}[{i}]: {g} vs {e}"
            );
            if g != e {
                max_rel = max_rel.max(rel);
            }
        }
        seen_types.insert(info.ggml_type.to_string());
        eprintln!(
            "{name:>20} {:>5}: {count} values match (max rel diff {max_rel:e})",
            info.ggml_type
        );
    }
    for ty in [
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
        "Q5_K", "Q6_K",
    ] {
        assert!(seen_types.contains(ty), "no {ty} tensor in the fixture");
    }
}
