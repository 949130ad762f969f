//! `deltaguard serve`: one base, many compressed tenant deltas, one
//! OpenAI-compatible HTTP server (see `deltaguard::serve`).

use super::{parse_size, CliResult};
use deltaguard::backend::{device, Backend};
use deltaguard::serve::gate::{admit_check, GateConfig};
use deltaguard::serve::http::{start_engine, GateFactory, Server, ServerOptions};
use deltaguard::serve::keys::Keys;
use deltaguard::serve::EngineConfig;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Serve a base model and tenant deltas over an OpenAI-compatible HTTP API.
///
/// The `model` field of a request picks the tenant (or the base by its
/// name). Each tenant runs base + its delta from the compressed payload,
/// sharing the base's weights. SIGINT / SIGTERM drain in-flight requests,
/// then the server exits.
#[derive(clap::Args)]
#[command(
    after_help = "EXAMPLE:\n  deltaguard serve --base models/base --delta math=math.bitdelta.safetensors \\\n      --delta chat=chat.svd16.safetensors --port 8080\n  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\\n      -d '{\"model\":\"math\",\"messages\":[{\"role\":\"user\",\"content\":\"2+2?\"}],\"max_tokens\":16}'"
)]
pub struct Args {
    /// The base model: a Hugging Face directory.
    #[arg(long)]
    base: PathBuf,
    /// Model name of the base itself (default: its directory name).
    #[arg(long)]
    base_name: Option<String>,
    /// A tenant: NAME=FILE, FILE a delta file made against --base. Repeatable.
    #[arg(long = "delta", value_parser = parse_delta)]
    deltas: Vec<(String, PathBuf)>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// API keys file: lines `KEY MODEL[,MODEL...]` or `KEY *`.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// File holding the token of the admin endpoints (POST/DELETE /admin/deltas).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Allow binding a non-loopback address without a keys file.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Most sequences decoded together.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Most prompt tokens prefilled in one step, in chunks next to the
    /// decoding sequences (a long prompt never stalls the batch for longer).
    #[arg(long, default_value_t = 64)]
    prefill_chunk: usize,
    /// Most requests waiting; more get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// KV cache memory all running sequences may reserve (e.g. 2GiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    kv_budget: u64,
    /// Largest request body (larger gets 413).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    max_body: u64,
    /// Seconds to wait for in-flight requests at shutdown.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Safety gate: refuse a tenant (at start and at POST /admin/deltas) whose
    /// attack success rate on the held-out harmful suite exceeds this (0..=1).
    #[arg(long, value_name = "X")]
    gate_asr: Option<f64>,
    /// Gate: harmful items evaluated (as `eval --limit`).
    #[arg(long, requires = "gate_asr")]
    gate_limit: Option<usize>,
    /// Gate: new tokens per answer (as `eval --max-new-tokens`).
    #[arg(long, default_value_t = 64, requires = "gate_asr")]
    gate_max_new_tokens: usize,
}

fn parse_delta(s: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=FILE"))?;
    if name.is_empty() || file.is_empty() {
        return Err(format!("`{s}`: expected NAME=FILE"));
    }
    Ok((name.to_string(), PathBuf::from(file)))
}

pub fn run(args: Args) -> CliResult {
    if args.keys.is_none() && !args.host.is_loopback() && !args.allow_unauthenticated {
        return Err(format!(
            "--host {}: without --keys the server only binds a loopback address (pass --allow-unauthenticated to serve everyone)",
            args.host
        )
        .into());
    }
    let keys = args
        .keys
        .as_deref()
        .map(Keys::load)
        .transpose()?
        .map(Arc::new);
    let admin_token = match &args.admin_token_file {
        None => None,
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| format!("{}: cannot read the admin token: {e}", p.display()))?;
            let t = t.trim().to_string();
            if t.len() < 16 {
                return Err(format!(
                    "{}: the admin token must be at least 16 characters",
                    p.display()
                )
                .into());
            }
            Some(t)
        }
    };
    let config = EngineConfig {
        max_batch: args.max_batch,
        prefill_chunk: args.prefill_chunk.max(1),
        max_queue: args.max_queue,
        kv_budget_bytes: args.kv_budget,
    };
    let gate = match args.gate_asr {
        Some(x) if !(0.0..=1.0).contains(&x) => {
            return Err(format!("--gate-asr {x}: give a rate between 0 and 1").into())
        }
        Some(max_asr) => Some(GateConfig {
            max_asr,
            limit: args.gate_limit,
            max_new_tokens: args.gate_max_new_tokens,
            seed: 0,
        }),
        None => None,
    };
    let max_body_bytes = usize::try_from(args.max_body).map_err(|_| "--max-body: too large")?;
    let engine = start_engine::<Backend>(
        args.base.clone(),
        args.base_name.clone(),
        args.deltas.clone(),
        device(),
        config,
        gate.clone(),
    )?;
    let options = ServerOptions {
        keys,
        admin_token,
        max_body_bytes,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        gate: gate.map(|g| -> GateFactory<Backend> {
            Arc::new(move || admit_check::<Backend>(g.clone()))
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::start(
            engine,
            &args.base,
            SocketAddr::new(args.host, args.port),
            options,
        )
        .await?;
        eprintln!("deltaguard serve: listening on http://{}", server.addr);
        shutdown_signal().await;
        eprintln!("deltaguard serve: draining in-flight requests");
        let left = server.shutdown().await;
        if left > 0 {
            eprintln!("deltaguard serve: {left} requests still running at the drain timeout");
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
