//! BitDelta's reported compression factors, computed from shapes.

use delta_quant::size::{bitdelta_bytes, bitdelta_report, LlamaDims};
use delta_quant::{BitDelta, CompressContext, Compressor, DeltaMatrix};

#[test]
fn llama2_7b_shapes() {
    let t = LlamaDims::llama2_7b().tensors();
    let params: u64 = t.iter().map(|t| t.numel()).sum();
    assert_eq!(params, 6_738_415_616, "Llama-2-7B parameter count");
    assert_eq!(t.iter().filter(|t| t.compressed).count(), 32 * 7);
}

#[test]
fn bitdelta_llama2_7b_ratio_matches_paper() {
    // Scales as fp16 (reference code) or f32 (what we store): 224 matrices ×
    // 2 extra bytes cannot move a two-decimal figure, and indeed does not.
    for scale_bytes in [2, 4] {
        let r = bitdelta_report(&LlamaDims::llama2_7b().tensors(), false, scale_bytes);
        assert_eq!(r.finetuned_fp16_bytes, 13_476_831_232);
        assert_eq!(r.compressed_bytes, 6_476_005_376 / 8 + 224 * scale_bytes);
        assert_eq!(r.carried_fp16_bytes, 2 * (2 * 32000 * 4096 + 65 * 4096));
        // BitDelta Table: 13.48 GB -> 1.24 GB, 10.87x.
        assert_eq!(r.paper_model_gb(), 13.48);
        assert_eq!(r.paper_delta_gib(), 1.24);
        assert_eq!(format!("{:.2}", r.paper_ratio()), "10.87");
        // The same-unit ratio, for the record.
        assert_eq!(format!("{:.2}", r.ratio()), "10.10");
    }
}

#[test]
fn bitdelta_llama2_13b_ratio_matches_paper() {
    // BitDelta Table: 26.03 GB -> 2.09 GB, 12.45x — same convention.
    let r = bitdelta_report(&LlamaDims::llama2_13b().tensors(), false, 2);
    assert_eq!(r.paper_model_gb(), 26.03);
    assert_eq!(r.paper_delta_gib(), 2.09);
    assert_eq!(format!("{:.2}", r.paper_ratio()), "12.45");
}

#[test]
fn shape_formula_equals_actual_storage() {
    for (rows, cols) in [(3, 13), (8, 32), (5, 1), (7, 64)] {
        let d = DeltaMatrix::new(
            rows,
            cols,
            (0..rows * cols).map(|i| (i as f32).sin()).collect(),
        )
        .unwrap();
        for per_row in [false, true] {
            let c = BitDelta::new(per_row)
                .compress_matrix(&d, &CompressContext::new("w", 0))
                .unwrap();
            assert_eq!(c.storage_bytes(), bitdelta_bytes(rows, cols, per_row, 4));
        }
    }
}
