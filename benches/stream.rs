//! Streaming compression of a synthetic checkpoint with Llama-2-7B layer shapes
//! (2 decoder layers instead of 32, full 32000 × 4096 embeddings and lm_head,
//! fp16 as Llama-2 ships): input GB/s of `compress_checkpoint` with BitDelta,
//! then of `apply_delta_file` (base + that delta → merged model), and the peak
//! resident memory of each, which must stay at a few tensors — not the model,
//! and for apply not the whole compressed delta either.
//!
//! Last, the share of `apply`'s time that integrity checking costs (delta
//! checksums and the base's content digest).
//!
//! Run: `cargo bench --bench stream`. The two checkpoints (≈ 1.3 GB each) are
//! written once to `target/bench-data/` and reused.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use deltaguard::delta_core::{Checkpoint, CheckpointWriter, DType, DeltaPair, WriteOptions};
use deltaguard::delta_quant::ops::{apply_delta_file, compress_checkpoint, CompressOptions};
use deltaguard::delta_quant::{parse_method, DeltaFile, OpenOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LAYERS: usize = 2;
const HIDDEN: usize = 4096;
const INTERMEDIATE: usize = 11008;
const VOCAB: usize = 32000;

fn shapes() -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        ("model.embed_tokens.weight".to_string(), vec![VOCAB, HIDDEN]),
        ("lm_head.weight".to_string(), vec![VOCAB, HIDDEN]),
        ("model.norm.weight".to_string(), vec![HIDDEN]),
    ];
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        for m in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            t.push((format!("{p}.self_attn.{m}.weight"), vec![HIDDEN, HIDDEN]));
        }
        t.push((
            format!("{p}.mlp.gate_proj.weight"),
            vec![INTERMEDIATE, HIDDEN],
        ));
        t.push((
            format!("{p}.mlp.up_proj.weight"),
            vec![INTERMEDIATE, HIDDEN],
        ));
        t.push((
            format!("{p}.mlp.down_proj.weight"),
            vec![HIDDEN, INTERMEDIATE],
        ));
        t.push((format!("{p}.input_layernorm.weight"), vec![HIDDEN]));
        t.push((format!("{p}.post_attention_layernorm.weight"), vec![HIDDEN]));
    }
    t
}

/// Write base (seed 0) and fine-tune (base + small noise) once.
fn synthetic_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let (base, ft) = (dir.join("base"), dir.join("finetuned"));
    if base.join("model.safetensors").exists() && ft.join("model.safetensors").exists() {
        return (base, ft);
    }
    let config = format!(
        r#"{{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":{HIDDEN},"intermediate_size":{INTERMEDIATE},"num_hidden_layers":{LAYERS},"num_attention_heads":32,"num_key_value_heads":32,"vocab_size":{VOCAB}}}"#
    );
    let mut wb = CheckpointWriter::create(
        &base,
        WriteOptions {
            overwrite: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut wf = CheckpointWriter::create(
        &ft,
        WriteOptions {
            overwrite: true,
            ..Default::default()
        },
    )
    .unwrap();
    wb.write_aux_file("config.json", config.as_bytes()).unwrap();
    wf.write_aux_file("config.json", config.as_bytes()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for (name, shape) in shapes() {
        let n: usize = shape.iter().product();
        let b: Vec<f32> = (0..n).map(|_| rng.random_range(-0.05f32..0.05)).collect();
        let f: Vec<f32> = b
            .iter()
            .map(|x| x + rng.random_range(-1e-3f32..1e-3))
            .collect();
        wb.write_f32(&name, DType::F16, &shape, &b).unwrap();
        wf.write_f32(&name, DType::F16, &shape, &f).unwrap();
    }
    wb.finish().unwrap();
    wf.finish().unwrap();
    (base, ft)
}

fn bench(c: &mut Criterion) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/llama2-7b-2layers");
    std::fs::create_dir_all(&data).unwrap();
    let (base, ft) = synthetic_pair(&data);
    // Writing the synthetic pair above may have used memory; reset the peak-RSS
    // mark (Linux: writing 5 to clear_refs) so only compression is measured.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let pair = DeltaPair::open(&base, &ft).unwrap();
    let input = pair.base().total_bytes() + pair.finetuned().total_bytes();
    let largest = pair
        .finetuned()
        .infos()
        .map(|i| i.num_elements() as u64)
        .max()
        .unwrap();
    let out = data.join("delta.safetensors");
    let bitdelta = parse_method("bitdelta").unwrap();
    let options = CompressOptions::default();

    let mut group = c.benchmark_group("stream");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Bytes(input));
    group.bench_function(
        "compress_checkpoint/bitdelta/llama2-7b-shapes-2-layers-fp16",
        |b| {
            b.iter(|| {
                compress_checkpoint(&pair, bitdelta.as_ref(), &out, &options, &mut |_| {}, None)
                    .unwrap();
            })
        },
    );
    group.finish();

    if let Some(peak) = deltaguard::serve::metrics::peak_resident_bytes() {
        // Page cache of the mapped inputs counts towards RSS while touched;
        // the heap holds about one f32 delta (4 B/param) plus its decode buffers.
        println!(
            "input {:.2} GB (base + fine-tune, fp16); largest tensor {:.0} M params = {:.2} GB as f32 delta; \
             peak RSS of this process {:.2} GB",
            input as f64 / 1e9,
            largest as f64 / 1e6,
            largest as f64 * 4.0 / 1e9,
            peak as f64 / 1e9
        );
    }

    // Apply: the delta written above onto the base. Reset the peak mark again
    // so only apply is measured.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let delta = DeltaFile::open(&out).unwrap();
    let delta_bytes = std::fs::metadata(&out).unwrap().len();
    let merged = data.join("applied");
    let write = WriteOptions {
        overwrite: true,
        ..Default::default()
    };
    let mut group = c.benchmark_group("stream");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Bytes(pair.base().total_bytes() + delta_bytes));
    group.bench_function(
        "apply_delta_file/bitdelta/llama2-7b-shapes-2-layers-fp16",
        |b| {
            b.iter(|| {
                apply_delta_file(
                    pair.base(),
                    &delta,
                    &out,
                    &merged,
                    &write,
                    &mut |_| {},
                    None,
                )
                .unwrap();
            })
        },
    );
    group.finish();

    if let Some(peak) = deltaguard::serve::metrics::peak_resident_bytes() {
        // Compressed payloads are decoded from the delta's map one tensor at a
        // time, so the heap holds about one reconstructed f32 delta plus the
        // merged tensor — independent of the delta's total size.
        println!(
            "apply: base {:.2} GB + delta {:.3} GB; peak RSS of this process {:.2} GB",
            pair.base().total_bytes() as f64 / 1e9,
            delta_bytes as f64 / 1e9,
            peak as f64 / 1e9
        );
    }
    verification_share(&base, &out, &merged, &write);
}

/// Best wall time of `n` runs of `f`, in seconds.
fn best_of(n: usize, mut f: impl FnMut()) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// What integrity checking costs `apply`: the delta's per-tensor XXH3
/// checksums (open verified vs unverified) and the whole-content digest of
/// the base that `apply` compares with the one the delta recorded (a fresh
/// `Checkpoint` each time, so the digest is not cached), as a share of an
/// `apply` that pays both.
fn verification_share(base: &Path, out: &Path, merged: &Path, write: &WriteOptions) {
    let open = |verify_checksums| {
        DeltaFile::open_with(out, OpenOptions { verify_checksums }).unwrap();
    };
    let verified = best_of(5, || open(true));
    let unverified = best_of(5, || open(false));
    let digest = best_of(5, || {
        let ck = Checkpoint::open(base).unwrap();
        assert!(!ck.content_digest().is_empty());
    });
    let apply = best_of(3, || {
        let ck = Checkpoint::open(base).unwrap();
        let delta = DeltaFile::open(out).unwrap();
        apply_delta_file(&ck, &delta, out, merged, write, &mut |_| {}, None).unwrap();
    });
    let checksums = (verified - unverified).max(0.0);
    println!(
        "verification: delta checksums {:.3} s (open {:.3} s verified vs {:.3} s unverified) \
         + base content digest {:.3} s = {:.1} % of apply ({:.3} s, best of 3, open and digest \
         included; {} threads)",
        checksums,
        verified,
        unverified,
        digest,
        100.0 * (checksums + digest) / apply,
        apply,
        rayon::current_num_threads()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
