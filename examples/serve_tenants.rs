//! Serve two compressed tenants next to one base without HTTP: build an
//! engine from the library API, submit requests of both tenants and the base
//! at once (they share every decode step), and check each greedy answer
//! against the model with that tenant's delta merged.
//!
//! ```text
//! cargo run --release --example serve_tenants
//! ```
//!
//! It uses the tiny base / fine-tuned pair in `testdata/hf-reference/pair`
//! (written by transformers), so it needs no download. For HTTP, the same
//! engine sits behind `deltaguard serve` (see the README).

use deltaguard::backend::{device, Backend};
use deltaguard::delta_core::DeltaPair;
use deltaguard::delta_quant::ops::{compress_checkpoint, CompressOptions};
use deltaguard::delta_quant::parse_method;
use deltaguard::llama_model::{GenerateConfig, Sampling};
use deltaguard::model_io::load_model;
use deltaguard::serve::{Base, EngineConfig, EngineHandle, GenEvent, GenParams, Tenant};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pair_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/hf-reference/pair");
    let base_dir = pair_dir.join("base");
    let work = tempfile::tempdir()?;

    // Two tenants from the same fine-tune, compressed two ways.
    let pair = DeltaPair::open(&base_dir, pair_dir.join("finetuned"))?;
    let mut tenants: Vec<(String, PathBuf)> = Vec::new();
    for (name, method) in [("signs", "bitdelta"), ("lowrank", "svd:rank=8")] {
        let file = work.path().join(format!("{name}.safetensors"));
        compress_checkpoint(
            &pair,
            parse_method(method)?.as_ref(),
            &file,
            &CompressOptions::default(),
            &mut |_| {},
            None,
        )?;
        println!("compressed tenant {name:8} with {method}");
        tenants.push((name.to_string(), file));
    }

    // The engine thread loads the base once and every tenant next to it.
    let files = tenants.clone();
    let base_path = base_dir.clone();
    let engine = EngineHandle::<Backend>::start(
        move || {
            let base = Base::load(&base_path, Some("base".into()), &device())?;
            let loaded = files
                .iter()
                .map(|(name, file)| Tenant::load(name, file, &base))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((base, loaded))
        },
        EngineConfig {
            max_batch: 8,
            ..EngineConfig::default()
        },
    )?;

    // All requests in flight together: one batch, three models.
    let prompt: Vec<u32> = vec![1, 5, 9, 200];
    let models = ["base", "signs", "lowrank"];
    let mut pending = Vec::new();
    for model in models {
        let rx = engine.submit(GenParams {
            model: model.into(),
            prompt: prompt.clone(),
            max_tokens: 12,
            sampling: Sampling::Greedy,
            seed: 0,
        })?;
        pending.push((model, rx));
    }
    for (model, mut rx) in pending {
        let mut tokens = Vec::new();
        while let Some(event) = rx.blocking_recv() {
            match event {
                GenEvent::Token(t) => tokens.push(t),
                GenEvent::Finished(_) => break,
                GenEvent::Failed(e) => return Err(format!("{model}: {e}").into()),
            }
        }
        // The same answer from the model with the delta merged.
        let delta = tenants
            .iter()
            .find(|(n, _)| n == model)
            .map(|(_, f)| f.as_path());
        let merged = load_model::<Backend>(&base_dir, delta, &device())?;
        let want = merged
            .model
            .generate(std::slice::from_ref(&prompt), &GenerateConfig::greedy(12))?
            .remove(0)
            .tokens;
        let same = if tokens == want {
            "= merged"
        } else {
            "≠ merged"
        };
        println!("{model:8} {tokens:?} {same}");
        if tokens != want {
            return Err(format!("{model}: served tokens differ from the merged model's").into());
        }
    }
    let shared = &engine.shared;
    for (name, t) in shared.tenants.read().map_err(|_| "poisoned")?.iter() {
        println!(
            "tenant {name:8} holds {} bytes (base {} bytes), forms {:?}",
            t.resident_bytes, shared.base_bytes, t.forms
        );
    }
    Ok(())
}
