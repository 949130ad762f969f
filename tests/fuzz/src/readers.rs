//! The drivers, one per reader. Each writes the fuzzed bytes where the
//! reader expects them (a file in a scratch folder, beside fixed valid
//! companions when the reader needs a whole model folder), calls the reader
//! and, when it accepts the input, uses the result the way the CLI would.
//! Results are ignored: only panics, aborts and hangs are findings.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::backend::NdArray;
use delta_core::Checkpoint;
use delta_quant::{parse_method, CompressContext, DeltaFile, DeltaMatrix, OpenOptions};
use llama_model::gguf::{self, GgufFile, GgufLlama};
use llama_model::{ChatMessage, ChatTemplate, Llama, LlamaConfig, Tokenizer};

use crate::{repo_root, scratch};

type B = NdArray<f32>;

/// The reference fixture whose tokenizer and chat template the tiny model
/// shares.
fn reference_dir() -> PathBuf {
    repo_root().join("testdata/hf-reference/llama-untied-f32")
}

/// The configuration of the fuzzers' own tiny model: the reference
/// tokenizer (its ids taken modulo 32), width 8, one layer, so a whole model
/// folder is a few kB and a fuzz input stays small.
pub fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 4,
        max_position_embeddings: 32,
        vocab_size: 32,
        ..LlamaConfig::tiny()
    }
}

/// Writes the tiny model (random weights from `seed`) as a HF folder at `dir`.
pub fn write_tiny_model(dir: &Path, seed: u64) {
    let device = Default::default();
    let model = Llama::<B>::random(tiny_config(), &device, seed);
    let tokenizer = Tokenizer::from_dir(reference_dir()).expect("reference tokenizer");
    let template = ChatTemplate::from_dir(reference_dir()).expect("reference template");
    let _ = std::fs::remove_dir_all(dir);
    llama_model::save::save_hf_dir(
        &model,
        &tokenizer,
        template.as_ref(),
        dir,
        delta_core::DType::F32,
        Default::default(),
    )
    .expect("write the tiny model");
}

/// The tiny model, written once per process, for targets that fuzz one file
/// of a model folder and need valid companions.
fn tiny_model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = crate::scratch_root().join("tiny-model");
        write_tiny_model(&d, 1);
        d
    })
}

/// A folder `name` in this thread's scratch space holding links (copies) of
/// every file of the tiny model except `except`, which the caller writes.
fn model_folder_without(target: &str, except: &[&str]) -> PathBuf {
    let dir = scratch(target);
    let src = tiny_model_dir();
    for entry in std::fs::read_dir(src).expect("read tiny model") {
        let entry = entry.expect("read tiny model");
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if except.contains(&name.as_ref()) {
            continue;
        }
        let dst = dir.join(name.as_ref());
        if !dst.exists() {
            std::fs::copy(entry.path(), &dst).expect("copy tiny model file");
        }
    }
    dir
}

/// Reads every tensor of `ck` as f32, as a model load would.
fn read_every_tensor(ck: &Checkpoint) {
    for name in ck.tensor_names() {
        let _ = ck.read_f32(name);
    }
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write a fuzz input file");
}

/// A forward pass on a few tokens, the first thing every command does with a
/// loaded model.
fn forward(model: &Llama<B>) {
    let vocab = model.config().vocab_size as u32;
    let tokens: Vec<u32> = [1u32, 5, 7].iter().map(|t| t % vocab.max(1)).collect();
    if let Ok(logits) = model.logits(&tokens) {
        let _ = logits.into_data();
    }
    let _ = model.logits(&[]);
}

/// `model.safetensors` (header and data) in a folder with a valid config:
/// open, read every tensor as f32, digest, load the model, run it.
pub fn safetensors(data: &[u8]) -> bool {
    let dir = model_folder_without("safetensors", &["model.safetensors"]);
    write(&dir.join("model.safetensors"), data);
    let Ok(ck) = Checkpoint::open(&dir) else {
        return false;
    };
    read_every_tensor(&ck);
    let _ = ck.fingerprint();
    let _ = ck.content_digest();
    if let Ok(model) = Llama::<B>::from_checkpoint(&ck, &Default::default()) {
        forward(&model);
    }
    true
}

/// `model.safetensors.index.json` over two real shards of the tiny model.
pub fn safetensors_index(data: &[u8]) -> bool {
    let dir = scratch("safetensors_index");
    let shards = sharded_tiny_model();
    for (name, bytes) in shards {
        let p = dir.join(name);
        if !p.exists() {
            write(&p, bytes);
        }
    }
    let cfg = dir.join("config.json");
    if !cfg.exists() {
        std::fs::copy(tiny_model_dir().join("config.json"), cfg).expect("copy config");
    }
    write(&dir.join("model.safetensors.index.json"), data);
    let Ok(ck) = Checkpoint::open(&dir) else {
        return false;
    };
    read_every_tensor(&ck);
    let _ = ck.content_digest();
    true
}

/// The tiny model's tensors split into two safetensors shards, and the index
/// that maps them (the seed of the index target).
pub fn sharded_tiny_model() -> &'static [(String, Vec<u8>)] {
    static SHARDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SHARDS.get_or_init(|| {
        let ck = Checkpoint::open(tiny_model_dir()).expect("tiny model");
        let mut names: Vec<String> = ck.tensor_names().into_iter().map(String::from).collect();
        names.sort();
        let half = names.len() / 2;
        let mut out = Vec::new();
        let mut weight_map = serde_json::Map::new();
        for (i, part) in [&names[..half], &names[half..]].iter().enumerate() {
            let file = format!("model-0000{}-of-00002.safetensors", i + 1);
            let tensors: Vec<(String, Vec<u8>, Vec<usize>)> = part
                .iter()
                .map(|n| {
                    let v = ck.read_f32(n).expect("tiny tensor");
                    let shape = ck.info(n).expect("info").shape.clone();
                    (n.clone(), bytemuck_f32(&v), shape)
                })
                .collect();
            let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
                .iter()
                .map(|(n, b, s)| {
                    (
                        n.clone(),
                        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                            .expect("view"),
                    )
                })
                .collect();
            let bytes = safetensors::serialize(views, None).expect("serialize shard");
            for n in part.iter() {
                weight_map.insert(n.clone(), serde_json::Value::String(file.clone()));
            }
            out.push((file, bytes));
        }
        let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
        out.push((
            "index.seed.json".to_string(),
            serde_json::to_vec_pretty(&index).expect("index json"),
        ));
        out
    })
}

fn bytemuck_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A GGUF file held in memory: every metadata value, every tensor
/// dequantized; as a Llama: its config (then validated), every tensor in HF
/// layout, its tokenizer (then used), template and tokenizer config.
pub fn gguf(data: &[u8]) -> bool {
    let Ok(file) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") else {
        return false;
    };
    for t in file.tensors() {
        let _ = file.dequantize_info(t);
    }
    for (_, v) in file.metadata() {
        let _ = v.to_json();
    }
    if let Ok(tok) = gguf::tokenizer_from_gguf(&file) {
        if let Ok(enc) = tok.encode("Hello, world!", true) {
            let _ = tok.decode(enc.get_ids(), false);
        }
    }
    let _ = gguf::chat_template(&file);
    let _ = gguf::tokenizer_config_json(&file);
    if let Ok(cfg) = gguf::llama_config_json(&file) {
        let _ = LlamaConfig::from_json(&cfg, "fuzz.gguf");
    }
    let Ok(llama) = GgufLlama::from_file(file) else {
        return true;
    };
    for t in llama.tensors() {
        let _ = t;
    }
    true
}

/// A delta file: open with checksums verified (first input byte odd) or not
/// (so mutations reach the decoders behind the checksum), then decode every
/// compressed payload, reconstruct it, and read every carried tensor.
pub fn delta_file(data: &[u8]) -> bool {
    let Some((&flag, rest)) = data.split_first() else {
        return false;
    };
    let path = scratch("delta_file").join("fuzz.delta.safetensors");
    write(&path, rest);
    let options = OpenOptions {
        verify_checksums: flag & 1 == 1,
    };
    let Ok(file) = DeltaFile::open_with(&path, options) else {
        return false;
    };
    let _ = file.size_report();
    let _ = file.compressor().spec();
    let names: Vec<(String, bool)> = file
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.kind == delta_quant::EntryKind::Compressed))
        .collect();
    for (name, compressed) in names {
        if compressed {
            if let Ok(c) = file.compressed(&name) {
                let _ = c.storage_bytes();
                let _ = c.reconstruct();
            }
        } else {
            let _ = file.carried(&name);
        }
    }
    // Then apply it to the base it was made against (the corpus seeds are
    // deltas of the tiny model), as `deltaguard apply` does.
    static BASE: OnceLock<Checkpoint> = OnceLock::new();
    let base = BASE.get_or_init(|| Checkpoint::open(tiny_model_dir()).expect("tiny base"));
    let out = path.with_file_name("applied");
    let _ = std::fs::remove_dir_all(&out);
    let _ = delta_quant::ops::apply_delta_file(
        base,
        &file,
        &path,
        &out,
        &Default::default(),
        &mut |_| {},
        None,
    );
    true
}

/// `config.json`: parsed and validated; when valid, the tiny model's weights
/// are loaded under it (shape checks before allocation) and run.
pub fn config_json(data: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return false;
    };
    let Ok(cfg) = LlamaConfig::from_json(&value, "fuzz/config.json") else {
        return false;
    };
    let _ = cfg.validate("fuzz/config.json");
    let _ = cfg.to_hf_json();
    let dir = model_folder_without("config_json", &["config.json"]);
    write(&dir.join("config.json"), data);
    if let Ok(model) = Llama::<B>::from_hf_dir(&dir, &Default::default()) {
        forward(&model);
    }
    true
}

/// `tokenizer.json` (first input byte even) or `tokenizer_config.json`
/// (odd) beside the other's valid copy: load, encode, decode, stream-decode.
pub fn tokenizer(data: &[u8]) -> bool {
    let Some((&flag, rest)) = data.split_first() else {
        return false;
    };
    let fuzzed = if flag & 1 == 0 {
        "tokenizer.json"
    } else {
        "tokenizer_config.json"
    };
    let dir = model_folder_without("tokenizer", &[fuzzed]);
    write(&dir.join(fuzzed), rest);
    let Ok(tok) = Tokenizer::from_dir(&dir) else {
        return false;
    };
    let _ = tok.vocab_size();
    let _ = (tok.bos_id(), tok.eos_id(), tok.pad_id());
    if let Ok(ids) = tok.encode("Hello, world! Ünïcode ✓", true) {
        let _ = tok.decode(&ids, true);
        let mut dec = tok.incremental_decoder(true);
        for id in ids {
            let _ = dec.push(id);
        }
        let _ = dec.finish();
    }
    for id in [0u32, 1, 2, u32::MAX] {
        let _ = tok.id_to_token(id);
        let _ = tok.decode(&[id], false);
    }
    true
}

/// A Jinja chat template: compile, then render a short conversation with and
/// without the generation prompt, and as raw JSON messages.
pub fn chat_template(data: &[u8]) -> bool {
    let Ok(source) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(t) = ChatTemplate::new(source) else {
        return false;
    };
    let t = t.with_special_tokens("<s>", "</s>");
    let messages = [
        ChatMessage::system("Be brief."),
        ChatMessage::user("Hi"),
        ChatMessage::assistant("Hello"),
        ChatMessage::user("Bye"),
    ];
    let _ = t.render(&messages, true);
    let _ = t.render(&messages[1..2], false);
    let json =
        serde_json::json!([{"role": "user", "content": "x", "tool_calls": [1, {"a": null}]}]);
    let _ = t.render_json(&json, true, &serde_json::json!({"tools": []}));
    true
}

/// Every dataset loader, chosen by the first input byte: AdvBench and
/// HarmBench CSVs, chat and multiple-choice JSONL, Alpaca JSON, prompt
/// lines, a Do-Not-Answer folder, the fine-tuning data loader, and the serve
/// keys file.
pub fn datasets(data: &[u8]) -> bool {
    use safety_eval::loaders as l;
    let Some((&which, rest)) = data.split_first() else {
        return false;
    };
    let dir = scratch("datasets");
    let path = dir.join("input");
    write(&path, rest);
    match which % 9 {
        0 => l::read_advbench(&path)
            .map(|rows| drop(l::harmful_from_advbench(&rows)))
            .is_ok(),
        1 => l::read_harmbench(&path)
            .map(|rows| drop(l::harmful_from_harmbench(&rows)))
            .is_ok(),
        2 => l::read_chat_jsonl(&path).is_ok(),
        3 => l::read_mc_jsonl(&path).is_ok(),
        4 => l::read_alpaca(&path)
            .map(|records| {
                for r in &records {
                    let _ = r.to_chat();
                }
                let _ = l::benign_from_alpaca(&records);
            })
            .is_ok(),
        5 => l::read_prompt_lines(&path).is_ok(),
        6 => {
            let dna = dir.join("dna");
            std::fs::create_dir_all(&dna).expect("dna folder");
            write(&dna.join("risk.jsonl"), rest);
            l::read_donotanswer(&dna).is_ok()
        }
        7 => llama_model::train::data::load_chat_file(&path).is_ok(),
        _ => std::str::from_utf8(rest).is_ok_and(|text| {
            deltaguard::serve::keys::Keys::parse(text).is_ok_and(|keys| {
                let _ = keys.get("k");
                true
            })
        }),
    }
}

/// A method spec string (`dare:p=0.5+bitdelta`, ...): parse, print, parse the
/// print again (it must parse), then compress a small matrix with it and
/// reconstruct.
pub fn method_spec(data: &[u8]) -> bool {
    let Ok(spec) = std::str::from_utf8(data) else {
        return false;
    };
    let _ = delta_quant::deltacome::parse_schedule(spec);
    let Ok(c) = parse_method(spec) else {
        return false;
    };
    let printed = c.spec();
    assert!(
        parse_method(&printed).is_ok(),
        "{spec:?} parsed but its printed form {printed:?} does not"
    );
    let (rows, cols) = (6, 10);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.01)
        .collect();
    let m = DeltaMatrix::new(rows, cols, values).expect("matrix");
    if let Ok(out) = c.compress_matrix(&m, &CompressContext::new("fuzz.weight", 7)) {
        let _ = out.storage_bytes();
        let _ = out.reconstruct();
    }
    true
}

/// An OpenAI request body, as `POST /v1/completions` (first byte even) or
/// `/v1/chat/completions` (odd): parse, check the stop strings, then cut a
/// token stream at them.
pub fn serve_request(data: &[u8]) -> bool {
    use deltaguard::serve::api::{ChatRequest, CompletionRequest, Prompt, TextStream};
    let Some((&flag, rest)) = data.split_first() else {
        return false;
    };
    let parsed = if flag & 1 == 0 {
        serde_json::from_slice::<CompletionRequest>(rest).map(|r| {
            let ids = match r.prompt {
                Prompt::Tokens(ids) => ids,
                Prompt::Text(t) => t.bytes().map(u32::from).collect(),
            };
            (r.common, ids)
        })
    } else {
        serde_json::from_slice::<ChatRequest>(rest).map(|r| {
            (
                r.common,
                r.messages.iter().map(|m| m.content.len() as u32).collect(),
            )
        })
    };
    let Ok((common, ids)) = parsed else {
        return false;
    };
    let _ = deltaguard::serve::http::params(&common, ids, 16);
    let Ok(stops) = common.stops() else {
        return false;
    };
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    let tok = TOKENIZER.get_or_init(|| Tokenizer::from_dir(reference_dir()).expect("tokenizer"));
    let mut stream = TextStream::new(stops);
    let seed = common.seed.unwrap_or(0);
    let vocab = tok.vocab_size().max(1) as u64;
    for i in 0..24u64 {
        let id = (seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(i.wrapping_mul(1442695040888963407))
            >> 33)
            % vocab;
        let _ = stream.push(id as u32, tok);
    }
    let _ = stream.finish();
    true
}
