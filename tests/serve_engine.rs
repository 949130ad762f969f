//! The serving engine without HTTP: every tenant's greedy output, batched
//! with other tenants' requests in flight, equals `generate` on base + delta
//! merged; tenants are validated; the KV budget and queue bound hold.

use deltaguard::backend::{device, Backend};
use deltaguard::delta_core::DeltaPair;
use deltaguard::delta_quant::ops::{compress_checkpoint, CompressOptions};
use deltaguard::delta_quant::parse_method;
use deltaguard::llama_model::{GenerateConfig, Sampling};
use deltaguard::model_io::load_model;
use deltaguard::serve::{
    Base, EngineConfig, EngineHandle, Finish, GenEvent, GenParams, ServeError, SubmitError, Tenant,
};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hf-reference")
        .join(name)
}

fn compress(method: &str, out: &Path) {
    let pair = DeltaPair::open(fixture("pair/base"), fixture("pair/finetuned")).unwrap();
    let c = parse_method(method).unwrap();
    compress_checkpoint(
        &pair,
        c.as_ref(),
        out,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap();
}

const METHODS: [(&str, &str); 5] = [
    ("bd", "bitdelta"),
    ("mm", "multimask:k=2"),
    ("svd", "svd:rank=8"),
    ("mag", "magnitude:density=0.1"),
    ("rtn", "rtn:bits=4"),
];

fn engine(dir: &Path, config: EngineConfig) -> EngineHandle<Backend> {
    let files: Vec<(String, PathBuf)> = METHODS
        .iter()
        .map(|(name, method)| {
            let f = dir.join(format!("{name}.safetensors"));
            if !f.exists() {
                compress(method, &f);
            }
            (name.to_string(), f)
        })
        .collect();
    EngineHandle::<Backend>::start(
        move || {
            let base = Base::load(&fixture("pair/base"), Some("base".into()), &device())?;
            let tenants = files
                .iter()
                .map(|(n, f)| Tenant::load(n, f, &base))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((base, tenants))
        },
        config,
    )
    .unwrap()
}

fn greedy(model: &str, prompt: &[u32], n: usize) -> GenParams {
    GenParams {
        model: model.into(),
        prompt: prompt.to_vec(),
        max_tokens: n,
        sampling: Sampling::Greedy,
        seed: 0,
    }
}

fn collect(mut rx: tokio::sync::mpsc::UnboundedReceiver<GenEvent>) -> (Vec<u32>, Finish) {
    let mut out = Vec::new();
    loop {
        match rx.blocking_recv().expect("engine answers") {
            GenEvent::Token(t) => out.push(t),
            GenEvent::Finished(f) => return (out, f),
            GenEvent::Failed(e) => panic!("generation failed: {e}"),
        }
    }
}

#[test]
fn batched_tenants_equal_generate_on_the_merged_model() {
    batched_equals_generate(EngineConfig::default());
}

/// Prompts prefilled two tokens per step, so every step mixes prompt chunks
/// of some sequences with decode rows of others (and chunks of two tenants).
#[test]
fn chunked_prefill_next_to_decoding_sequences_changes_no_token() {
    batched_equals_generate(EngineConfig {
        prefill_chunk: 2,
        ..EngineConfig::default()
    });
}

fn batched_equals_generate(config: EngineConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let e = engine(tmp.path(), config);
    let prompts: [&[u32]; 3] = [&[1, 5, 9, 200], &[1, 17, 33], &[1, 2, 3, 4, 5, 6, 7, 8, 9]];
    // Every tenant and the base, two prompts each, all in flight together.
    let mut pending = Vec::new();
    for (name, _) in METHODS.iter().chain(&[("base", "")]) {
        for p in prompts {
            pending.push((name.to_string(), p, e.submit(greedy(name, p, 12)).unwrap()));
        }
    }
    for (name, p, rx) in pending {
        let (got, _) = collect(rx);
        let delta = (name != "base").then(|| tmp.path().join(format!("{name}.safetensors")));
        let m = load_model::<Backend>(&fixture("pair/base"), delta.as_deref(), &device()).unwrap();
        let want = m
            .model
            .generate(&[p.to_vec()], &GenerateConfig::greedy(12))
            .unwrap()
            .remove(0)
            .tokens;
        assert_eq!(got, want, "tenant {name}, prompt {p:?}");
    }
    // Tenants hold only their deltas and carried tensors, far less than the base.
    let tenants = e.shared.tenants.read().unwrap().clone();
    let bd = &tenants["bd"];
    assert_eq!(bd.forms["packed-signs"], 14);
    assert!(bd.resident_bytes < e.shared.base_bytes, "{bd:?}");
    assert_eq!(tenants["rtn"].forms["dense-reconstructed"], 14);
    assert_eq!(tenants["mag"].forms["sparse"], 14);
    assert_eq!(tenants["svd"].forms["low-rank"], 14);
}

#[test]
fn same_seed_same_sample_and_it_matches_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let e = engine(tmp.path(), EngineConfig::default());
    let sampled = |seed| GenParams {
        sampling: Sampling::Sample {
            temperature: 0.9,
            top_k: None,
            top_p: Some(0.95),
        },
        seed,
        ..greedy("bd", &[1, 5, 9], 10)
    };
    let (a, _) = e.generate(sampled(7)).unwrap();
    let (b, _) = e.generate(sampled(7)).unwrap();
    assert_eq!(a, b);
    let m = load_model::<Backend>(
        &fixture("pair/base"),
        Some(&tmp.path().join("bd.safetensors")),
        &device(),
    )
    .unwrap();
    let want = m
        .model
        .generate(
            &[vec![1, 5, 9]],
            &GenerateConfig::sampled(10, 0.9, None, Some(0.95), 7),
        )
        .unwrap()
        .remove(0)
        .tokens;
    assert_eq!(a, want);
}

#[test]
fn bad_requests_and_bad_tenants_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let e = engine(
        tmp.path(),
        EngineConfig {
            kv_budget_bytes: 32 * 1024,
            ..EngineConfig::default()
        },
    );
    assert!(matches!(
        e.submit(greedy("nope", &[1], 4)),
        Err(SubmitError::UnknownModel(_))
    ));
    assert!(matches!(
        e.submit(greedy("bd", &[1], 0)),
        Err(SubmitError::Invalid(_))
    ));
    assert!(matches!(
        e.submit(greedy("bd", &[1, 999], 4)),
        Err(SubmitError::Invalid(_))
    ));
    assert!(matches!(
        e.submit(greedy("bd", &[1; 250], 10)),
        Err(SubmitError::ContextTooLong { context: 256, .. })
    ));
    // 2 layers · 2 kv heads · 8 dims · 2 · 4 bytes = 256 B per token.
    assert!(matches!(
        e.submit(greedy("bd", &[1; 200], 50)),
        Err(SubmitError::KvTooLarge { need: 64000, .. })
    ));
    // A delta made against another base is refused, naming the file.
    let other = tmp.path().join("other.safetensors");
    let pair = DeltaPair::open(fixture("pair/finetuned"), fixture("pair/base")).unwrap();
    compress_checkpoint(
        &pair,
        parse_method("bitdelta").unwrap().as_ref(),
        &other,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(e.register("other".into(), other.clone(), None))
        .unwrap_err();
    assert!(
        matches!(&err, ServeError::Tenant { file, reason } if *file == other && reason.contains("different base")),
        "{err}"
    );
    let err = rt
        .block_on(e.register("bd".into(), tmp.path().join("bd.safetensors"), None))
        .unwrap_err();
    assert!(matches!(err, ServeError::Exists(_)), "{err}");
    let err = rt
        .block_on(e.register("bad name!".into(), tmp.path().join("bd.safetensors"), None))
        .unwrap_err();
    assert!(matches!(err, ServeError::BadName(_)), "{err}");
    // Unloading ends with the tenant gone for new requests.
    assert_eq!(rt.block_on(e.unload("mag".into())).unwrap(), 0);
    assert!(matches!(
        e.submit(greedy("mag", &[1], 4)),
        Err(SubmitError::UnknownModel(_))
    ));
}

#[test]
fn the_queue_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let e = engine(
        tmp.path(),
        EngineConfig {
            max_batch: 1,
            max_queue: 2,
            ..EngineConfig::default()
        },
    );
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match e.submit(greedy("bd", &[1, 5, 9], 64)) {
            Ok(rx) => accepted.push(rx),
            Err(SubmitError::QueueFull { retry_after_s, .. }) => {
                assert!(retry_after_s >= 1);
                refused += 1
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(refused > 0 && accepted.len() <= 3 + 1, "{refused} refused");
    for rx in accepted {
        collect(rx);
    }
}

/// A fine-tune that changed the embedding (and, untied, the head) only on
/// the rows of some tokens: the tenant holds those rows, not the whole
/// matrices, and its greedy output still equals `generate` on the merged
/// model — for prompts that use changed and unchanged tokens.
#[test]
fn changed_embedding_rows_are_held_sparsely_and_change_no_token() {
    use burn::module::Param;
    use burn::tensor::Tensor;
    use deltaguard::delta_core::{DType, WriteOptions};
    use deltaguard::llama_model::save::save_hf_dir;
    use deltaguard::llama_model::{LinearWeight, LlamaConfig, Tokenizer};

    const CHANGED: usize = 40;
    for tied in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let tok = Tokenizer::from_dir(fixture("pair/base")).unwrap();
        let config = LlamaConfig {
            tie_word_embeddings: tied,
            eos_token_ids: vec![],
            ..LlamaConfig::tiny()
        };
        let base_model = config.init::<Backend>(&device(), 1);
        let mut ft = config.init::<Backend>(&device(), 2);
        // Rows ≥ CHANGED of the embedding (and head) are the base's.
        let keep_base = |own: Tensor<Backend, 2>, base: Tensor<Backend, 2>| {
            let [v, _] = base.dims();
            Tensor::cat(
                vec![
                    own.narrow(0, 0, CHANGED),
                    base.narrow(0, CHANGED, v - CHANGED),
                ],
                0,
            )
        };
        ft.embed_tokens = Param::from_tensor(keep_base(
            ft.embed_tokens.val(),
            base_model.embed_tokens.val(),
        ));
        if !tied {
            // HF lm_head is [vocab, hidden]; ours is its transpose.
            let own = ft.lm_head.as_ref().unwrap().dense().transpose();
            let base = base_model.lm_head.as_ref().unwrap().dense().transpose();
            ft.lm_head = Some(LinearWeight::Dense(Param::from_tensor(
                keep_base(own, base).transpose(),
            )));
        }
        let (bdir, fdir) = (tmp.path().join("base"), tmp.path().join("ft"));
        save_hf_dir(
            &base_model,
            &tok,
            None,
            &bdir,
            DType::F32,
            WriteOptions::default(),
        )
        .unwrap();
        save_hf_dir(&ft, &tok, None, &fdir, DType::F32, WriteOptions::default()).unwrap();
        let file = tmp.path().join("t.safetensors");
        compress_checkpoint(
            &DeltaPair::open(&bdir, &fdir).unwrap(),
            parse_method("bitdelta").unwrap().as_ref(),
            &file,
            &CompressOptions::default(),
            &mut |_| {},
            None,
        )
        .unwrap();
        let (b2, f2) = (bdir.clone(), file.clone());
        let e = EngineHandle::<Backend>::start(
            move || {
                let base = Base::load(&b2, Some("base".into()), &device())?;
                let t = Tenant::load("t", &f2, &base)?;
                Ok((base, vec![t]))
            },
            EngineConfig::default(),
        )
        .unwrap();
        let info = e.shared.tenants.read().unwrap()["t"].clone();
        let sparse = if tied { 1 } else { 2 };
        assert_eq!(
            info.forms.get("changed-rows"),
            Some(&sparse),
            "tied {tied}: {info:?}"
        );
        // Less than one whole embedding (vocab · hidden · 4 bytes): norms,
        // signs and the changed rows only.
        let whole = (config.vocab_size * config.hidden_size * 4) as u64;
        assert!(info.resident_bytes < whole, "{info:?}");
        let merged = load_model::<Backend>(&bdir, Some(&file), &device()).unwrap();
        let prompts: [&[u32]; 3] = [&[1, 5, 9, 200], &[100, 150, 3], &[2, 300, 39, 41]];
        let pending: Vec<_> = prompts
            .iter()
            .map(|p| (p, e.submit(greedy("t", p, 10)).unwrap()))
            .collect();
        for (p, rx) in pending {
            let (got, _) = collect(rx);
            let want = merged
                .model
                .generate(&[p.to_vec()], &GenerateConfig::greedy(10))
                .unwrap()
                .remove(0)
                .tokens;
            assert_eq!(got, want, "tied {tied}, prompt {p:?}");
        }
        e.shutdown();
    }
}
