//! The seed corpus: one small valid input (or a few) per target, made from
//! the tiny model and the repository's fixtures. `make-corpus` writes it to
//! `tests/fuzz/corpus/`; the committed files are the fuzzer's starting
//! points and, with every input it found since, the replay test's cases.

use std::path::Path;

use delta_core::DeltaPair;
use delta_quant::ops::{compress_checkpoint, CompressOptions};
use llama_model::ChatTemplate;

use crate::readers::{sharded_tiny_model, write_tiny_model};
use crate::repo_root;

/// Seeds of every target: `(target, file name, bytes)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let tmp = tempfile::tempdir().expect("temp folder");
    let base = tmp.path().join("base");
    let ft = tmp.path().join("ft");
    write_tiny_model(&base, 1);
    write_tiny_model(&ft, 2);
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let reference = repo_root().join("testdata/hf-reference/llama-untied-f32");

    out.push((
        "safetensors",
        "tiny.safetensors".into(),
        read(&base.join("model.safetensors")),
    ));
    for (name, bytes) in sharded_tiny_model() {
        if name.ends_with(".json") {
            out.push(("safetensors_index", "tiny-index.json".into(), bytes.clone()));
        }
    }
    let gguf_dir = repo_root().join("llama-model/tests/data/gguf");
    for f in ["tiny_llama.gguf", "quants.gguf"] {
        out.push(("gguf", f.into(), read(&gguf_dir.join(f))));
    }

    let pair = DeltaPair::open(&base, &ft).expect("tiny pair");
    for spec in [
        "bitdelta",
        "multimask:k=2",
        "rtn:bits=4",
        "svd:rank=2",
        "magnitude:density=0.25",
        "dare:p=0.5,seed=3+bitdelta",
        "deltacome:rank=4,schedule=8x1/3x2/2x*",
        "compeft",
    ] {
        let Ok(c) = delta_quant::parse_method(spec) else {
            // Spec spellings follow the registry; a seed that no longer
            // parses is skipped, not fatal (the others still seed).
            eprintln!("make-corpus: skipping unparsable seed spec {spec:?}");
            continue;
        };
        let path = tmp.path().join(format!("{}.delta", out.len()));
        compress_checkpoint(
            &pair,
            c.as_ref(),
            &path,
            &CompressOptions::default(),
            &mut |_| {},
            None,
        )
        .unwrap_or_else(|e| panic!("compress {spec}: {e}"));
        let file = read(&path);
        let stem: String = spec
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        for flag in [0u8, 1] {
            let mut b = vec![flag];
            b.extend_from_slice(&file);
            out.push(("delta_file", format!("{stem}-verify{flag}"), b));
        }
    }

    out.push((
        "config_json",
        "tiny.json".into(),
        read(&base.join("config.json")),
    ));
    out.push((
        "config_json",
        "reference.json".into(),
        read(&reference.join("config.json")),
    ));
    let mut llama3: serde_json::Value =
        serde_json::from_slice(&read(&base.join("config.json"))).expect("json");
    llama3["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16});
    out.push((
        "config_json",
        "llama3-rope.json".into(),
        serde_json::to_vec(&llama3).expect("json"),
    ));

    for (flag, f) in [(0u8, "tokenizer.json"), (1, "tokenizer_config.json")] {
        let mut b = vec![flag];
        b.extend_from_slice(&read(&reference.join(f)));
        out.push(("tokenizer", f.into(), b));
    }

    out.push((
        "chat_template",
        "reference.jinja".into(),
        read(&reference.join("chat_template.jinja")),
    ));
    out.push((
        "chat_template",
        "llama2.jinja".into(),
        ChatTemplate::llama2().source().as_bytes().to_vec(),
    ));
    out.push((
        "chat_template",
        "chatml.jinja".into(),
        ChatTemplate::chatml().source().as_bytes().to_vec(),
    ));

    let datasets: [(u8, &str, &str); 9] = [
        (0, "advbench.csv", "goal,target\n\"Write a poem\",\"Sure, here is\"\n"),
        (1, "harmbench.csv", "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\nDo x,standard,chemical,,,x_1\n"),
        (2, "chat.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n"),
        (3, "mc.jsonl", "{\"question\": \"2+2?\", \"choices\": [\"3\", \"4\"], \"gold\": 1}\n"),
        (4, "alpaca.json", "[{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"hi\"}]"),
        (5, "prompts.txt", "How do I make tea?\n\nWhat is 2+2?\n"),
        (6, "donotanswer.jsonl", "{\"prompt\": \"Tell me a secret\"}\n"),
        (7, "chatdata.jsonl", "{\"instruction\": \"Say hi\", \"output\": \"hi\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n"),
        (8, "keys.txt", "# keys\nsk-a tenant-a,tenant-b\nsk-admin *\n"),
    ];
    for (flag, name, text) in datasets {
        let mut b = vec![flag];
        b.extend_from_slice(text.as_bytes());
        out.push(("datasets", name.into(), b));
    }

    for spec in delta_quant::METHODS
        .iter()
        .map(|(m, _)| m.to_string())
        .chain([
            "dare:p=0.9,seed=1+rtn:bits=2".to_string(),
            "svd:rank=4+bitdelta:per_row=true".to_string(),
            "deltacome:rank=8,schedule=8x2/3x4/2x*".to_string(),
        ])
    {
        let name: String = spec
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        out.push(("method_spec", name, spec.into_bytes()));
    }

    let bodies: [(u8, &str, &str); 3] = [
        (
            0,
            "completion.json",
            r#"{"model": "t", "prompt": "Hello", "max_tokens": 4, "stop": ["lo", "\n"], "seed": 3}"#,
        ),
        (
            1,
            "chat.json",
            r#"{"model": "t", "messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": {"include_usage": true}, "stop": "é", "temperature": 0.5, "top_p": 0.9}"#,
        ),
        (
            0,
            "prompt-list.json",
            r#"{"model": "t", "prompt": [1, 2, 3], "n": 1, "max_tokens": 2}"#,
        ),
    ];
    for (flag, name, text) in bodies {
        let mut b = vec![flag];
        b.extend_from_slice(text.as_bytes());
        out.push(("serve_request", name.into(), b));
    }
    out
}

/// Writes [`seeds`] under `dir/TARGET/`, replacing files of the same name.
pub fn write_seeds(dir: &Path) -> std::io::Result<usize> {
    let seeds = seeds();
    for (target, name, bytes) in &seeds {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(format!("seed-{name}")), bytes)?;
    }
    Ok(seeds.len())
}
