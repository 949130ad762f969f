//! The HTTP server on 127.0.0.1 (port 0), in process, with a raw HTTP/1.1
//! client: every status code, the streaming format, key isolation, admin
//! register / unload, seeds, drain.

use deltaguard::backend::{device, Backend};
use deltaguard::delta_core::DeltaPair;
use deltaguard::delta_quant::ops::{compress_checkpoint, CompressOptions};
use deltaguard::delta_quant::parse_method;
use deltaguard::llama_model::GenerateConfig;
use deltaguard::model_io::load_model;
use deltaguard::serve::gate::{admit_check, GateConfig};
use deltaguard::serve::http::{start_engine, GateFactory, Server, ServerOptions};
use deltaguard::serve::keys::Keys;
use deltaguard::serve::EngineConfig;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const ADMIN: &str = "admin-token-0123456789";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hf-reference")
        .join(name)
}

fn compress(method: &str, out: &Path) {
    let pair = DeltaPair::open(fixture("pair/base"), fixture("pair/finetuned")).unwrap();
    compress_checkpoint(
        &pair,
        parse_method(method).unwrap().as_ref(),
        out,
        &CompressOptions::default(),
        &mut |_| {},
        None,
    )
    .unwrap();
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// One request on a fresh connection, read to the end (bounded by a timeout).
fn http(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn post(addr: SocketAddr, path: &str, key: Option<&str>, v: &Value) -> Reply {
    http(addr, "POST", path, key, v.to_string().as_bytes())
}

/// `POST /admin/deltas` with the admin token: register `path` as `name`.
fn register(addr: SocketAddr, name: &str, path: &Path) -> Reply {
    post(
        addr,
        "/admin/deltas",
        Some(ADMIN),
        &json!({"name": name, "path": path}),
    )
}

struct Setup {
    rt: tokio::runtime::Runtime,
    server: Option<Server<Backend>>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

fn setup(keys: Option<&str>, config: EngineConfig) -> Setup {
    setup_with(keys, config, None)
}

fn setup_with(
    keys: Option<&str>,
    config: EngineConfig,
    gate: Option<GateFactory<Backend>>,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    for (n, m) in [
        ("a", "bitdelta"),
        ("b", "svd:rank=8"),
        ("c", "magnitude:density=0.1"),
    ] {
        compress(m, &dir.path().join(format!("{n}.safetensors")));
    }
    let deltas = vec![
        ("a".to_string(), dir.path().join("a.safetensors")),
        ("b".to_string(), dir.path().join("b.safetensors")),
    ];
    let engine = start_engine::<Backend>(
        fixture("pair/base"),
        Some("base".into()),
        deltas,
        device(),
        config,
        None,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = ServerOptions {
        keys: keys.map(|k| Arc::new(Keys::parse(k).unwrap())),
        admin_token: Some(ADMIN.into()),
        max_body_bytes: 64 * 1024,
        gate,
        ..ServerOptions::default()
    };
    let server = rt
        .block_on(Server::start(
            engine,
            &fixture("pair/base"),
            "127.0.0.1:0".parse().unwrap(),
            options,
        ))
        .unwrap();
    let addr = server.addr;
    Setup {
        rt,
        server: Some(server),
        addr,
        dir,
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

fn greedy_tokens(delta: Option<&Path>, prompt: &[u32], n: usize) -> Vec<u32> {
    let m = load_model::<Backend>(&fixture("pair/base"), delta, &device()).unwrap();
    m.model
        .generate(&[prompt.to_vec()], &GenerateConfig::greedy(n))
        .unwrap()
        .remove(0)
        .tokens
}

#[test]
fn completions_chat_models_and_streaming() {
    let s = setup(None, EngineConfig::default());
    let prompt = [1u32, 5, 9, 200];
    // Greedy completion of a tenant = generate on the merged model, as text.
    let r = post(
        s.addr,
        "/v1/completions",
        None,
        &json!({"model": "a", "prompt": prompt, "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let want = greedy_tokens(Some(&s.dir.path().join("a.safetensors")), &prompt, 8);
    let m = load_model::<Backend>(&fixture("pair/base"), None, &device()).unwrap();
    assert_eq!(
        v["choices"][0]["text"],
        m.tokenizer.decode(&want, true).unwrap()
    );
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], want.len());
    assert_eq!(v["usage"]["total_tokens"], 4 + want.len());
    let finish = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "length" || finish == "stop");

    // Same seed, same sampled completion.
    let sampled = json!({"model": "b", "prompt": "hello", "max_tokens": 10, "temperature": 0.9, "top_p": 0.9, "seed": 42});
    let x = post(s.addr, "/v1/completions", None, &sampled).json();
    let y = post(s.addr, "/v1/completions", None, &sampled).json();
    assert_eq!(x["choices"][0]["text"], y["choices"][0]["text"]);

    // Chat, non-streaming and streaming give the same text.
    let chat = json!({"model": "a", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 12, "temperature": 0});
    let r = post(s.addr, "/v1/chat/completions", None, &chat);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let full = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stream_req = chat.clone();
    stream_req["stream"] = json!(true);
    stream_req["stream_options"] = json!({"include_usage": true});
    let r = post(s.addr, "/v1/chat/completions", None, &stream_req);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events: Vec<&str> = r
        .body
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, full);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let last_choice = &chunks[chunks.len() - 2]["choices"][0];
    assert!(last_choice["finish_reason"].is_string());
    assert_eq!(
        chunks.last().unwrap()["usage"]["completion_tokens"],
        v["usage"]["completion_tokens"]
    );

    // A stop string cuts the text before it.
    if full.chars().count() > 3 {
        let stop: String = full.chars().skip(2).take(2).collect();
        let mut with_stop = chat.clone();
        with_stop["stop"] = json!([stop.clone()]);
        let v = post(s.addr, "/v1/chat/completions", None, &with_stop).json();
        let cut = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(cut, &full[..full.find(&stop).unwrap()]);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    // Models: base + tenants with method, size, ratio.
    let v = http(s.addr, "GET", "/v1/models", None, b"").json();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["base", "a", "b"]);
    assert_eq!(v["data"][1]["method"], "bitdelta:per_row=false");
    assert!(v["data"][1]["compression_ratio"].as_f64().unwrap() > 1.0);
    assert!(v["data"][2]["file_bytes"].as_u64().unwrap() > 0);

    // Metrics name the tenants.
    let m = http(s.addr, "GET", "/metrics", None, b"");
    assert_eq!(m.status, 200);
    assert!(m
        .body
        .contains("deltaguard_time_to_first_token_seconds_bucket{model=\"a\""));
    assert!(m
        .body
        .contains("deltaguard_tokens_total{kind=\"completion\",model=\"b\"}"));
    assert!(m.body.contains("deltaguard_queue_depth"));
}

#[test]
fn every_error_status_in_openai_shape() {
    let s = setup(
        None,
        EngineConfig {
            max_batch: 1,
            max_queue: 1,
            ..EngineConfig::default()
        },
    );
    let a = s.addr;
    let bad_json = http(a, "POST", "/v1/completions", None, b"{not json");
    assert_eq!(bad_json.status, 400);
    assert_eq!(bad_json.json()["error"]["type"], "invalid_request_error");
    let wrong_type = post(
        a,
        "/v1/completions",
        None,
        &json!({"model": "a", "prompt": "x", "max_tokens": "many"}),
    );
    assert_eq!(wrong_type.status, 400);
    let negative = post(
        a,
        "/v1/completions",
        None,
        &json!({"model": "a", "prompt": "x", "max_tokens": -3}),
    );
    assert_eq!(
        (negative.status, negative.error_code().as_str()),
        (400, "invalid_max_tokens")
    );
    let temp = post(
        a,
        "/v1/completions",
        None,
        &json!({"model": "a", "prompt": "x", "temperature": 7}),
    );
    assert_eq!(temp.status, 400);
    let unknown = post(
        a,
        "/v1/completions",
        None,
        &json!({"model": "zzz", "prompt": "x"}),
    );
    assert_eq!(
        (unknown.status, unknown.error_code().as_str()),
        (404, "model_not_found")
    );
    let long = post(
        a,
        "/v1/completions",
        None,
        &json!({"model": "a", "prompt": vec![5u32; 250], "max_tokens": 10}),
    );
    assert_eq!(
        (long.status, long.error_code().as_str()),
        (400, "context_length_exceeded")
    );
    let huge = format!(
        "{{\"model\":\"a\",\"prompt\":\"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let r = http(a, "POST", "/v1/completions", None, huge.as_bytes());
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "request_too_large")
    );
    // Admin without / with a wrong token.
    let r = post(a, "/admin/deltas", None, &json!({"name": "c", "path": "x"}));
    assert_eq!(r.status, 401);
    let r = post(
        a,
        "/admin/deltas",
        Some("not-the-admin"),
        &json!({"name": "c", "path": "x"}),
    );
    assert_eq!(r.status, 403);

    // Over capacity: one running, one queued, the rest 429 with Retry-After.
    let long_job = json!({"model": "a", "prompt": [1, 5], "max_tokens": 200, "temperature": 0, "stream": true});
    let mut handles = Vec::new();
    for _ in 0..6 {
        let job = long_job.clone();
        handles.push(std::thread::spawn(move || {
            post(a, "/v1/completions", None, &job)
        }));
    }
    let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let limited: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert!(
        !limited.is_empty(),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 429));
    for r in limited {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    }
    // Every stream that was accepted ended with [DONE].
    for r in replies.iter().filter(|r| r.status == 200) {
        assert!(r.body.trim_end().ends_with("data: [DONE]"), "{}", r.body);
    }

    // Draining: 503.
    s.server.as_ref().unwrap().engine().begin_drain();
    let r = post(
        a,
        "/v1/completions",
        None,
        &json!({"model": "a", "prompt": "x"}),
    );
    assert_eq!((r.status, r.error_code().as_str()), (503, "draining"));
}

#[test]
fn keys_isolate_tenants_and_admin_registers_and_unloads() {
    let s = setup(Some("key-a a\nkey-all *\n"), EngineConfig::default());
    let a = s.addr;
    let req = |model: &str| json!({"model": model, "prompt": [1, 5, 9], "max_tokens": 4, "temperature": 0});
    assert_eq!(post(a, "/v1/completions", None, &req("a")).status, 401);
    assert_eq!(
        post(a, "/v1/completions", Some("wrong"), &req("a")).status,
        401
    );
    assert_eq!(
        post(a, "/v1/completions", Some("key-a"), &req("a")).status,
        200
    );
    // Tenant A's key cannot reach B, and B looks exactly like a missing model.
    let to_b = post(a, "/v1/completions", Some("key-a"), &req("b"));
    let to_none = post(a, "/v1/completions", Some("key-a"), &req("nonexistent"));
    assert_eq!(to_b.status, 404);
    assert_eq!(
        to_b.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace("`b`", "`M`"),
        to_none.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace("`nonexistent`", "`M`")
    );
    assert_eq!(
        post(a, "/v1/completions", Some("key-a"), &req("base")).status,
        404
    );
    let listed = http(a, "GET", "/v1/models", Some("key-a"), b"").json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(http(a, "GET", "/v1/models", None, b"").status, 401);
    assert_eq!(
        post(a, "/v1/completions", Some("key-all"), &req("b")).status,
        200
    );
    // Metrics are the operator's with keys on.
    assert_eq!(http(a, "GET", "/metrics", Some("key-all"), b"").status, 403);
    assert_eq!(http(a, "GET", "/metrics", Some(ADMIN), b"").status, 200);

    // Admin: register c at run time (validated), use it, unload it.
    let c_path = s.dir.path().join("c.safetensors");
    let bad = post(
        a,
        "/admin/deltas",
        Some(ADMIN),
        &json!({"name": "c", "path": s.dir.path().join("missing")}),
    );
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "invalid_delta")
    );
    let r = register(a, "c", &c_path);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["registered"]["forms"]["sparse"], 14);
    let again = register(a, "c", &c_path);
    assert_eq!(again.status, 409);
    let v = post(a, "/v1/completions", Some("key-all"), &req("c")).json();
    let want = greedy_tokens(Some(&c_path), &[1, 5, 9], 4);
    assert_eq!(v["usage"]["completion_tokens"], want.len());
    assert_eq!(
        post(a, "/v1/completions", Some("key-a"), &req("c")).status,
        404
    );
    // Unload while a long stream of c runs: the stream completes, then c is gone.
    let job = json!({"model": "c", "prompt": [1, 5], "max_tokens": 150, "temperature": 0, "stream": true});
    let stream = std::thread::spawn(move || post(a, "/v1/completions", Some("key-all"), &job));
    std::thread::sleep(Duration::from_millis(150));
    let r = http(a, "DELETE", "/admin/deltas/c", Some(ADMIN), b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let streamed = stream.join().unwrap();
    assert_eq!(streamed.status, 200);
    assert!(streamed.body.trim_end().ends_with("data: [DONE]"));
    assert_eq!(
        post(a, "/v1/completions", Some("key-all"), &req("c")).status,
        404
    );
    assert_eq!(
        http(a, "DELETE", "/admin/deltas/c", Some(ADMIN), b"").status,
        404
    );
    assert_eq!(
        http(a, "DELETE", "/admin/deltas/c", Some("key-all"), b"").status,
        403
    );
}

#[test]
fn the_safety_gate_refuses_with_the_measured_asr() {
    // The tiny random model never refuses, so its ASR is 1: a gate of 0.5
    // refuses it with the measurement; a gate of 1.0 admits it.
    let gate = |max_asr: f64| -> GateFactory<Backend> {
        Arc::new(move || {
            admit_check::<Backend>(GateConfig {
                max_asr,
                limit: Some(3),
                max_new_tokens: 6,
                seed: 0,
            })
        })
    };
    let s = setup_with(None, EngineConfig::default(), Some(gate(0.5)));
    let c_path = s.dir.path().join("c.safetensors");
    let r = register(s.addr, "c", &c_path);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (422, "safety_gate_refused"),
        "{}",
        r.body
    );
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("attack success rate 1.000") && msg.contains("Wilson 95 %"),
        "{msg}"
    );
    assert_eq!(
        post(
            s.addr,
            "/v1/completions",
            None,
            &json!({"model": "c", "prompt": "x"})
        )
        .status,
        404
    );
    drop(s);
    let s = setup_with(None, EngineConfig::default(), Some(gate(1.0)));
    let c_path = s.dir.path().join("c.safetensors");
    let r = register(s.addr, "c", &c_path);
    assert_eq!(r.status, 201, "{}", r.body);
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_its_slot() {
    let s = setup(
        None,
        EngineConfig {
            max_batch: 1,
            ..EngineConfig::default()
        },
    );
    let body = json!({"model": "a", "prompt": [1, 5], "max_tokens": 250, "temperature": 0, "stream": true}).to_string();
    let mut c = TcpStream::connect(s.addr).unwrap();
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let mut got = String::new();
    while !got.contains("data: ") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(c);
    // The only batch slot is free again: a new request completes (bounded wait).
    let start = std::time::Instant::now();
    loop {
        let m = http(s.addr, "GET", "/metrics", None, b"").body;
        if m.contains("deltaguard_active_sequences 0") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "slot never freed:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = post(
        s.addr,
        "/v1/completions",
        None,
        &json!({"model": "b", "prompt": [1, 5], "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(r.status, 200);
}

fn rss_bytes() -> u64 {
    deltaguard::serve::metrics::resident_bytes().unwrap_or(0)
}

/// 32 concurrent clients across four models (base and three tenants) for a
/// bounded time against a server with room for 4 running and 8 queued
/// requests: no 5xx, only 429s (with Retry-After) beyond capacity, every
/// completed greedy response equals `generate` on the merged model, and the
/// server's memory does not grow between the two halves of the run.
#[test]
fn load_32_clients_4_tenants_exact_bounded_no_growth() {
    const CLIENTS: usize = 32;
    const HALF: Duration = Duration::from_secs(4);
    let s = setup(
        None,
        EngineConfig {
            max_batch: 4,
            max_queue: 8,
            ..EngineConfig::default()
        },
    );
    let c_path = s.dir.path().join("c.safetensors");
    let r = register(s.addr, "c", &c_path);
    assert_eq!(r.status, 201, "{}", r.body);
    let models = ["base", "a", "b", "c"];
    let prompts: [&[u32]; 3] = [&[1, 5, 9, 200], &[1, 17, 33], &[7, 8, 9, 10, 11, 12]];
    let tokenizer = load_model::<Backend>(&fixture("pair/base"), None, &device())
        .unwrap()
        .tokenizer;
    // Expected text of every (model, prompt).
    let want: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            let delta = (*m != "base").then(|| s.dir.path().join(format!("{m}.safetensors")));
            prompts
                .iter()
                .map(|p| {
                    let t = greedy_tokens(delta.as_deref(), p, 8);
                    tokenizer.decode(&t, true).unwrap()
                })
                .collect()
        })
        .collect();
    let want = Arc::new(want);
    let start = std::time::Instant::now();
    let rss = Arc::new(std::sync::Mutex::new(Vec::<(Duration, u64)>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, want, rss) = (s.addr, want.clone(), rss.clone());
            std::thread::spawn(move || {
                let (mut ok, mut busy, mut n) = (0usize, 0usize, 0usize);
                while start.elapsed() < 2 * HALF && n < 400 {
                    let (mi, pi) = ((i + n) % 4, (i / 4 + n) % 3);
                    n += 1;
                    let body = json!({"model": models[mi], "prompt": prompts[pi], "max_tokens": 8, "temperature": 0});
                    let r = post(addr, "/v1/completions", None, &body);
                    match r.status {
                        200 => {
                            let text = r.json()["choices"][0]["text"].as_str().unwrap().to_string();
                            assert_eq!(text, want[mi][pi], "client {i}: {} / {:?}: {}", models[mi], prompts[pi], r.body);
                            ok += 1;
                        }
                        429 => {
                            assert!(r.header("retry-after").is_some(), "429 without Retry-After");
                            busy += 1;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        other => panic!("client {i}: status {other}: {}", r.body),
                    }
                    if i == 0 {
                        rss.lock().unwrap().push((start.elapsed(), rss_bytes()));
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for c in clients {
        let (o, b) = c.join().expect("a client failed");
        ok += o;
        busy += b;
    }
    assert!(ok >= CLIENTS, "only {ok} requests completed");
    // Memory at the end of each half: the second half may not add to the first.
    let samples = rss.lock().unwrap().clone();
    let at = |t: Duration| {
        samples
            .iter()
            .filter(|(s, _)| *s <= t)
            .map(|&(_, r)| r)
            .next_back()
            .unwrap_or(0)
    };
    let (mid, end) = (at(HALF), at(2 * HALF));
    assert!(
        end <= mid + (16 << 20),
        "VmRSS grew from {mid} to {end} bytes in the second half ({ok} completed, {busy} got 429)"
    );
    eprintln!("load: {ok} completed, {busy} got 429, VmRSS {mid} → {end} bytes");
}
