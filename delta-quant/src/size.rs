//! Size accounting the way BitDelta reports it.
//!
//! BitDelta (arXiv 2402.10193, Table "compression factor") compares the
//! fp16 fine-tuned model with the compressed delta **plus** the tensors
//! that are not compressed (embeddings, lm_head, norms), which a deployment
//! must still ship from the fine-tune; those are counted at fp16. The
//! paper's sizes follow one more convention we reproduce in
//! [`SizeReport::paper_ratio`]: the fp16 model size is given in GB (10⁹
//! bytes) and the delta size in GiB (2³⁰ bytes), each rounded to two
//! decimals, and the factor is the quotient of the rounded figures (e.g.
//! Llama-2-7B: 13.48 GB / 1.24 GiB = 10.87×; the same-unit ratio is
//! 10.10×). [`SizeReport::ratio`] is the exact same-unit ratio; report that
//! one for anything new.

use crate::compressed::Compressed;

/// One tensor of a model: HF name, shape, and whether it is compressed
/// (delta) or carried at full precision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub compressed: bool,
}

impl TensorSpec {
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// Byte totals of a compressed model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeReport {
    /// Parameters of the whole fine-tuned model.
    pub params: u64,
    /// The fp16 fine-tuned model: 2 bytes per parameter.
    pub finetuned_fp16_bytes: u64,
    /// Stored bytes of all compressed deltas.
    pub compressed_bytes: u64,
    /// Carried (uncompressed) tensors counted at fp16.
    pub carried_fp16_bytes: u64,
}

impl SizeReport {
    /// Adds a compressed tensor of `numel` parameters stored in `bytes`.
    pub fn add_compressed(&mut self, numel: u64, bytes: u64) {
        self.params += numel;
        self.finetuned_fp16_bytes += 2 * numel;
        self.compressed_bytes += bytes;
    }
    /// Adds a carried tensor of `numel` parameters.
    pub fn add_carried(&mut self, numel: u64) {
        self.params += numel;
        self.finetuned_fp16_bytes += 2 * numel;
        self.carried_fp16_bytes += 2 * numel;
    }
    /// Compressed deltas + carried tensors.
    pub fn delta_bytes(&self) -> u64 {
        self.compressed_bytes + self.carried_fp16_bytes
    }
    /// fp16 model bytes / delta bytes (same units).
    pub fn ratio(&self) -> f64 {
        self.finetuned_fp16_bytes as f64 / self.delta_bytes() as f64
    }
    /// fp16 model size in GB (10⁹ B) rounded to 2 decimals, as in BitDelta's table.
    pub fn paper_model_gb(&self) -> f64 {
        round2(self.finetuned_fp16_bytes as f64 / 1e9)
    }
    /// Delta size in GiB (2³⁰ B) rounded to 2 decimals, as in BitDelta's table.
    pub fn paper_delta_gib(&self) -> f64 {
        round2(self.delta_bytes() as f64 / (1u64 << 30) as f64)
    }
    /// BitDelta's reported compression factor (see the [module docs](self)).
    pub fn paper_ratio(&self) -> f64 {
        self.paper_model_gb() / self.paper_delta_gib()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Stored bytes of BitDelta on a `rows x cols` matrix as this crate stores
/// it (signs packed per row, scales of `scale_bytes` each: 4 for our f32,
/// 2 for the reference code's fp16).
pub fn bitdelta_bytes(rows: usize, cols: usize, per_row: bool, scale_bytes: u64) -> u64 {
    let signs = (rows * cols.div_ceil(8)) as u64;
    signs + scale_bytes * if per_row { rows as u64 } else { 1 }
}

/// Size report of BitDelta over a model given by shapes alone.
pub fn bitdelta_report(tensors: &[TensorSpec], per_row: bool, scale_bytes: u64) -> SizeReport {
    let mut r = SizeReport::default();
    for t in tensors {
        if t.compressed && t.shape.len() == 2 {
            r.add_compressed(
                t.numel(),
                bitdelta_bytes(t.shape[0], t.shape[1], per_row, scale_bytes),
            );
        } else {
            r.add_carried(t.numel());
        }
    }
    r
}

/// Size report from actual compressed tensors and carried shapes.
pub fn report<'a>(
    compressed: impl IntoIterator<Item = &'a Compressed>,
    carried_numels: impl IntoIterator<Item = u64>,
) -> SizeReport {
    let mut r = SizeReport::default();
    for c in compressed {
        let [m, n] = c.shape();
        r.add_compressed((m * n) as u64, c.storage_bytes());
    }
    for n in carried_numels {
        r.add_carried(n);
    }
    r
}

/// Dimensions of a Llama-family decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlamaDims {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub vocab: usize,
    /// Width of k_proj/v_proj outputs (`hidden` without grouped-query attention).
    pub kv_dim: usize,
    pub tied_embeddings: bool,
}

impl LlamaDims {
    /// Llama-2-7B.
    pub fn llama2_7b() -> Self {
        Self {
            layers: 32,
            hidden: 4096,
            intermediate: 11008,
            vocab: 32000,
            kv_dim: 4096,
            tied_embeddings: false,
        }
    }
    /// Llama-2-13B.
    pub fn llama2_13b() -> Self {
        Self {
            layers: 40,
            hidden: 5120,
            intermediate: 13824,
            vocab: 32000,
            kv_dim: 5120,
            tied_embeddings: false,
        }
    }

    /// All tensors with HF names; the `*_proj` weights inside `self_attn` and
    /// `mlp` are marked compressed (BitDelta's choice), everything else
    /// carried.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let (h, i, kv) = (self.hidden, self.intermediate, self.kv_dim);
        let t = |name: String, shape: Vec<usize>, compressed| TensorSpec {
            name,
            shape,
            compressed,
        };
        let mut out = vec![t(
            "model.embed_tokens.weight".into(),
            vec![self.vocab, h],
            false,
        )];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            for (n, s) in [
                ("self_attn.q_proj", vec![h, h]),
                ("self_attn.k_proj", vec![kv, h]),
                ("self_attn.v_proj", vec![kv, h]),
                ("self_attn.o_proj", vec![h, h]),
                ("mlp.gate_proj", vec![i, h]),
                ("mlp.up_proj", vec![i, h]),
                ("mlp.down_proj", vec![h, i]),
            ] {
                out.push(t(format!("{p}.{n}.weight"), s, true));
            }
            out.push(t(format!("{p}.input_layernorm.weight"), vec![h], false));
            out.push(t(
                format!("{p}.post_attention_layernorm.weight"),
                vec![h],
                false,
            ));
        }
        out.push(t("model.norm.weight".into(), vec![h], false));
        if !self.tied_embeddings {
            out.push(t("lm_head.weight".into(), vec![self.vocab, h], false));
        }
        out
    }
}
