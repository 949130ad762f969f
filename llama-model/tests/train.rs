//! The fine-tuning engine: gradients against finite differences, assistant-
//! only masking, memorization, LoRA merge equality, accumulation, save/load.

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use llama_model::load::NamedTensors;
use llama_model::train::batch::collate;
use llama_model::train::loss::masked_cross_entropy;
use llama_model::train::{
    add_lora, load_chat_file, merge_lora, tokenize_chat, tokenize_dataset, train, LoraConfig,
    Quiet, ScheduleKind, TokenizedExample, TrainConfig,
};
use llama_model::{
    ChatMessage, ChatTemplate, ForwardOptions, GenerateConfig, LinearWeight, Llama, LlamaConfig,
    Tokenizer,
};

type Ad = Autodiff<NdArray>;

const FIXTURE: &str = "../testdata/hf-reference/llama-tied-f32";

fn micro_config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 24,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        tie_word_embeddings: false,
        ..LlamaConfig::tiny()
    }
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_dir(FIXTURE).unwrap()
}

fn template() -> ChatTemplate {
    ChatTemplate::from_dir(FIXTURE).unwrap().unwrap()
}

/// Loss of `model` on a fixed example, on any backend.
fn loss_of<B: Backend>(model: &Llama<B>, example: &TokenizedExample) -> Tensor<B, 1> {
    let device = model.device();
    let batch = collate::<B>(&[example], 0, &device);
    let logits = model
        .forward_with(batch.inputs, ForwardOptions::default(), None)
        .logits;
    masked_cross_entropy(
        logits,
        batch.targets,
        batch.weights,
        batch.loss_tokens as f64,
    )
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()[0]
}

fn example() -> TokenizedExample {
    TokenizedExample {
        ids: vec![1, 5, 9, 3, 17, 2, 11, 4],
        targets: vec![false, false, false, true, true, false, true, true],
    }
}

#[test]
fn gradients_match_finite_differences() {
    let device = Default::default();
    let config = micro_config();
    let model = Llama::<Ad>::random(config.clone(), &device, 7);
    let ex = example();
    let grads = loss_of(&model, &ex).backward();
    let hf: NamedTensors = model.valid().to_hf_tensors();
    let loss_at = |tensors: &NamedTensors| {
        scalar(loss_of(
            &Llama::<NdArray>::from_tensors(config.clone(), tensors, &device).unwrap(),
            &ex,
        ))
    };
    let names = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.1.self_attn.o_proj.weight",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.1.input_layernorm.weight",
        "model.norm.weight",
        "lm_head.weight",
    ];
    for name in names {
        // Analytic gradient of the whole tensor, in HF's layout.
        let analytic = analytic_grad(&model, &grads, name, &hf);
        // Probe the element with the largest gradient and one fixed element
        // (f32 central differences: h = 1e-2, error ≈ 1e-4 absolute).
        let largest = (0..analytic.len())
            .max_by(|&a, &b| analytic[a].abs().total_cmp(&analytic[b].abs()))
            .unwrap();
        for idx in [largest, analytic.len() / 3] {
            let h = 1e-2f32;
            let mut plus = hf.clone();
            plus.get_mut(name).unwrap().data[idx] += h;
            let mut minus = hf.clone();
            minus.get_mut(name).unwrap().data[idx] -= h;
            let step = f64::from(plus[name].data[idx]) - f64::from(minus[name].data[idx]);
            let numeric = (loss_at(&plus) - loss_at(&minus)) / step;
            let a = analytic[idx];
            assert!(
                (numeric - a).abs() < 2e-2 * a.abs() + 2e-4,
                "{name}[{idx}]: numeric {numeric:.6} vs analytic {a:.6}"
            );
        }
        assert!(analytic[largest].abs() > 1e-3, "{name}: gradient vanished");
    }
}

/// The gradient of the named weight, flattened in HF's layout.
fn analytic_grad(
    model: &Llama<Ad>,
    grads: &<Ad as burn::tensor::backend::AutodiffBackend>::Gradients,
    name: &str,
    hf: &NamedTensors,
) -> Vec<f64> {
    fn flat<const D: usize>(t: Tensor<NdArray, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().to_vec().unwrap()
    }
    if name == "model.embed_tokens.weight" {
        return flat(model.embed_tokens.grad(grads).unwrap());
    }
    if name == "model.norm.weight" {
        return flat(model.norm.weight.grad(grads).unwrap());
    }
    if let Some(rest) = name.strip_suffix(".input_layernorm.weight") {
        let layer: usize = rest.rsplit('.').next().unwrap().parse().unwrap();
        return flat(
            model.layers[layer]
                .input_layernorm
                .weight
                .grad(grads)
                .unwrap(),
        );
    }
    let shape = &hf[name].shape; // [out, in]
    let LinearWeight::Dense(w) = model.linear(name).unwrap() else {
        panic!("dense expected")
    };
    let g = flat(w.grad(grads).unwrap()); // [in, out]
    let (out_f, in_f) = (shape[0], shape[1]);
    let mut hf_g = vec![0.0; g.len()];
    for o in 0..out_f {
        for i in 0..in_f {
            hf_g[o * in_f + i] = g[i * out_f + o];
        }
    }
    hf_g
}

#[test]
fn only_assistant_tokens_are_targets() {
    let tok = tokenizer();
    let conv = vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("Name a colour."),
        ChatMessage::assistant("Blue."),
        ChatMessage::user("Another?"),
        ChatMessage::assistant("Green."),
    ];
    let ex = tokenize_chat(&tok, &template(), &conv, 512).unwrap();
    let picked: Vec<u32> = ex
        .ids
        .iter()
        .zip(&ex.targets)
        .filter(|(_, &t)| t)
        .map(|(&id, _)| id)
        .collect();
    let text = tok.decode(&picked, false).unwrap();
    // The template renders each assistant turn as `content<|im_end|>\n`.
    assert_eq!(text, "Blue.<|im_end|>\nGreen.<|im_end|>\n");

    // The loss is exactly the mean NLL over those positions.
    let device = Default::default();
    let model = Llama::<NdArray>::random(LlamaConfig::tiny(), &device, 1);
    let batch = collate::<NdArray>(&[&ex], 0, &device);
    let logits = model.forward(Tensor::<NdArray, 2, Int>::from_data(
        TensorData::new(
            ex.ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [1, ex.ids.len()],
        ),
        &device,
    ));
    let logp: Vec<f32> = burn::tensor::activation::log_softmax(logits, 2)
        .into_data()
        .to_vec()
        .unwrap();
    let v = 320;
    let mut manual = 0.0f64;
    let mut n = 0;
    for j in 1..ex.ids.len() {
        if ex.targets[j] {
            manual -= f64::from(logp[(j - 1) * v + ex.ids[j] as usize]);
            n += 1;
        }
    }
    manual /= n as f64;
    let loss = scalar(masked_cross_entropy(
        model.forward(batch.inputs),
        batch.targets,
        batch.weights,
        batch.loss_tokens as f64,
    ));
    assert_eq!(batch.loss_tokens, n);
    assert!((loss - manual).abs() < 1e-4, "{loss} vs {manual}");
}

#[test]
fn datasets_load_with_line_numbers_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("chat.jsonl");
    std::fs::write(
        &jsonl,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n\
         {\"instruction\":\"Add\",\"input\":\"2+2\",\"output\":\"4\"}\n",
    )
    .unwrap();
    let convs = load_chat_file(&jsonl).unwrap();
    assert_eq!(convs.len(), 2);
    assert_eq!(convs[1][0].content, "Add\n\n2+2");
    let alpaca = dir.path().join("alpaca.json");
    std::fs::write(
        &alpaca,
        r#"[{"instruction":"Say hi","input":"","output":"hi"}]"#,
    )
    .unwrap();
    assert_eq!(load_chat_file(&alpaca).unwrap()[0].len(), 2);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]}\n{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}\n",
    )
    .unwrap();
    let err = load_chat_file(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.jsonl:2") && err.contains("robot"),
        "{err}"
    );
}

fn memorization_set() -> Vec<Vec<ChatMessage>> {
    [
        ("What is the capital of France?", "Paris."),
        ("Name a prime number.", "Seven."),
        ("What colour is the sky?", "Blue, mostly."),
    ]
    .iter()
    .map(|(q, a)| vec![ChatMessage::user(*q), ChatMessage::assistant(*a)])
    .collect()
}

#[test]
fn a_tiny_model_memorizes_chats() {
    let device = Default::default();
    let tok = tokenizer();
    let tmpl = template();
    let convs = memorization_set();
    let data = tokenize_dataset(&tok, &tmpl, &convs, 128).unwrap();
    let model = Llama::<Ad>::random(LlamaConfig::tiny(), &device, 3);
    let config = TrainConfig {
        epochs: 60,
        lr: 1e-2,
        batch_size: 3,
        schedule: ScheduleKind::Constant,
        seed: 5,
        ..TrainConfig::default()
    };
    let out = train(model, &data, &config, 0, &mut Quiet).unwrap();
    let first = out.history.first().unwrap().loss;
    let last = out.history.last().unwrap().loss;
    assert!(last < 0.05, "final loss {last} (first {first})");
    let model = out.model.valid();
    let eos = tok.eos_id().unwrap();
    for conv in &convs {
        let prompt = tmpl.render(&conv[..1], true).unwrap();
        let ids = tok.encode(&prompt, false).unwrap();
        let mut cfg = GenerateConfig::greedy(16);
        cfg.stop_tokens = vec![eos];
        let g = model.generate(&[ids], &cfg).unwrap();
        assert_eq!(tok.decode(&g[0].tokens, true).unwrap(), conv[1].content);
    }
}

#[test]
fn lora_forward_equals_merged_forward_and_only_adapters_train() {
    let device = Default::default();
    let tok = tokenizer();
    let data = tokenize_dataset(&tok, &template(), &memorization_set(), 128).unwrap();
    let base = Llama::<Ad>::random(LlamaConfig::tiny(), &device, 11);
    let base_tensors = base.valid().to_hf_tensors();
    let mut lora_cfg = LoraConfig::new(4);
    lora_cfg.targets = vec!["q_proj".into(), "v_proj".into(), "down_proj".into()];
    let model = add_lora(base, &lora_cfg, 2).unwrap();
    let config = TrainConfig {
        epochs: 3,
        lr: 5e-3,
        batch_size: 3,
        ..TrainConfig::default()
    };
    let trained = train(model, &data, &config, 0, &mut Quiet)
        .unwrap()
        .model
        .valid();

    // Only adapters moved: with the adapters removed, the weights are the base's.
    let adapters = llama_model::train::lora::adapter_tensors(&trained);
    assert_eq!(adapters.len(), 2 * 3 * 2);
    let b = &adapters["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"];
    assert_eq!(b.shape, vec![64, 4]);
    assert!(b.data.iter().any(|&x| x != 0.0), "lora_B was trained");
    let mut frozen_ok = true;
    for (name, t) in &base_tensors {
        let now = trained.linear(name).map(|w| match w {
            LinearWeight::Lora(d) => d.base.val(),
            _ => w.dense(),
        });
        if let Some(now) = now {
            let [i, o] = now.dims();
            let v: Vec<f32> = now.into_data().to_vec().unwrap();
            for r in 0..o {
                for c in 0..i {
                    frozen_ok &= v[c * o + r] == t.data[r * i + c];
                }
            }
        }
    }
    assert!(frozen_ok, "a frozen base weight changed");

    let ids = Tensor::<NdArray, 2, Int>::from_data(
        TensorData::new(
            data[0].ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [1, data[0].ids.len()],
        ),
        &device,
    );
    let with_adapters: Vec<f32> = trained.forward(ids.clone()).into_data().to_vec().unwrap();
    let merged = merge_lora(trained);
    assert!(matches!(
        merged.linear("model.layers.0.self_attn.q_proj.weight"),
        Some(LinearWeight::Dense(_))
    ));
    let merged_out: Vec<f32> = merged.forward(ids).into_data().to_vec().unwrap();
    let max = with_adapters
        .iter()
        .zip(&merged_out)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max < 1e-4, "max |adapter − merged| = {max}");
}

#[test]
fn accumulation_matches_one_large_batch() {
    let device = Default::default();
    let tok = tokenizer();
    let mut convs = memorization_set();
    convs.push(vec![
        ChatMessage::user("Count to three."),
        ChatMessage::assistant("One, two, three."),
    ]);
    let data = tokenize_dataset(&tok, &template(), &convs, 128).unwrap();
    let run = |batch_size, grad_accum| {
        let model = Llama::<Ad>::random(LlamaConfig::tiny(), &device, 4);
        let config = TrainConfig {
            epochs: 1,
            lr: 1e-3,
            batch_size,
            grad_accum,
            max_grad_norm: Some(0.5),
            // A large ε makes AdamW's first step ≈ lr·g instead of lr·sign(g),
            // so parameters compare as smoothly as the gradients do.
            eps: 1.0,
            ..TrainConfig::default()
        };
        let out = train(model, &data, &config, 0, &mut Quiet).unwrap();
        assert_eq!(out.history.len(), 1);
        (
            out.history[0].loss,
            out.history[0].grad_norm,
            out.model.valid().to_hf_tensors(),
        )
    };
    let (l1, g1, big) = run(4, 1);
    let (l2, g2, acc) = run(2, 2);
    assert!((l1 - l2).abs() < 1e-5, "loss {l1} vs {l2}");
    assert!((g1 - g2).abs() < 1e-4 * g1, "grad norm {g1} vs {g2}");
    for (name, t) in &big {
        let max = t
            .data
            .iter()
            .zip(&acc[name].data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-5, "{name}: {max}");
    }
}

#[test]
fn saved_directory_reloads_with_identical_logits() {
    let device = Default::default();
    let tok = tokenizer();
    let model = Llama::<NdArray>::random(
        LlamaConfig {
            tie_word_embeddings: false,
            ..LlamaConfig::tiny()
        },
        &device,
        9,
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("saved");
    llama_model::save::save_hf_dir(
        &model,
        &tok,
        Some(&template()),
        &out,
        delta_core::DType::F32,
        Default::default(),
    )
    .unwrap();
    let back = Llama::<NdArray>::from_hf_dir(&out, &device).unwrap();
    let ids = Tensor::<NdArray, 2, Int>::from_data(
        TensorData::new(vec![1i64, 40, 77, 5], [1, 4]),
        &device,
    );
    let a: Vec<f32> = model.forward(ids.clone()).into_data().to_vec().unwrap();
    let b: Vec<f32> = back.forward(ids).into_data().to_vec().unwrap();
    assert_eq!(a, b);
    assert_eq!(Tokenizer::from_dir(&out).unwrap().eos_id(), tok.eos_id());
    assert!(ChatTemplate::from_dir(&out).unwrap().is_some());
}

#[test]
fn bad_configurations_are_refused() {
    let device = Default::default();
    let model = Llama::<Ad>::random(micro_config(), &device, 1);
    let bad = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    let err = train(model, &[example()], &bad, 0, &mut Quiet)
        .err()
        .unwrap();
    assert!(err.to_string().contains("batch size"), "{err}");
    let mut lora = LoraConfig::new(2);
    lora.targets = vec!["qq_proj".into()];
    let model = Llama::<Ad>::random(micro_config(), &device, 1);
    assert!(add_lora(model, &lora, 0).err().unwrap().contains("qq_proj"));
}

#[allow(dead_code)]
fn _module_is_used<B: Backend>(m: Llama<B>) -> usize {
    m.num_params()
}
