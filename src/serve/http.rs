//! The OpenAI-compatible HTTP server (tokio + axum).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/chat/completions` | chat, the base's chat template; `stream: true` for server-sent events |
//! | `POST /v1/completions` | text (or token-id) prompts |
//! | `GET /v1/models` | the base and every tenant the key may use, with method, size and compression ratio |
//! | `POST /admin/deltas` | `{"name", "path"}`: register a delta file (validated; safety gate if enabled) |
//! | `DELETE /admin/deltas/{name}` | unload a tenant once its in-flight requests end |
//! | `GET /metrics` | Prometheus text |
//! | `GET /health` | `ok` (`503` while draining) |
//!
//! Status codes: 400 malformed request or over-long prompt
//! (`context_length_exceeded`), 401 missing/unknown key, 403 admin
//! endpoint without the admin token, 404 unknown model (or one the key may
//! not use), 409 tenant name taken, 413 body over `--max-body-bytes`, 422
//! refused by the safety gate, 429 queue full (with `Retry-After`), 503
//! while draining.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use burn::tensor::backend::Backend;
use futures_util::stream::{self, Stream};
use llama_model::{ChatMessage, ChatTemplate, Sampling, Tokenizer};
use serde_json::{json, Value};

use super::api::{ApiError, ChatRequest, Common, CompletionRequest, Prompt, TextStream};
use super::engine::{AdmitCheck, EngineHandle, Finish, GenEvent, GenParams, SubmitError};
use super::keys::Keys;
use super::tenant::{Base, Tenant};
use super::ServeError;

/// Builds a fresh safety-gate check for each registration.
pub type GateFactory<B> = Arc<dyn Fn() -> AdmitCheck<B> + Send + Sync>;

/// How the server runs.
#[derive(Clone)]
pub struct ServerOptions<B: Backend> {
    /// Who may use which model; `None`: everyone, everything.
    pub keys: Option<Arc<Keys>>,
    /// Token of the admin endpoints; `None`: they are disabled.
    pub admin_token: Option<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How long draining waits for in-flight requests at shutdown.
    pub drain_timeout: Duration,
    /// The safety gate applied to deltas registered at run time.
    pub gate: Option<GateFactory<B>>,
}

impl<B: Backend> Default for ServerOptions<B> {
    fn default() -> Self {
        Self {
            keys: None,
            admin_token: None,
            max_body_bytes: 1 << 20,
            drain_timeout: Duration::from_secs(30),
            gate: None,
        }
    }
}

struct App<B: Backend> {
    engine: EngineHandle<B>,
    tokenizer: Tokenizer,
    chat: ChatTemplate,
    options: ServerOptions<B>,
    /// Generation requests whose response is not finished.
    in_flight: Arc<AtomicUsize>,
}

type AppState<B> = Arc<App<B>>;

/// Decrements the in-flight count when a response ends (or its client goes).
struct InFlight(Arc<AtomicUsize>);
impl InFlight {
    fn new(c: &Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        Self(c.clone())
    }
}
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running server.
pub struct Server<B: Backend> {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    app: AppState<B>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl<B: Backend> Server<B> {
    /// Binds `addr` and starts serving on the current tokio runtime.
    /// `base_dir` gives the tokenizer and chat template (the engine has its own copy).
    pub async fn start(
        engine: EngineHandle<B>,
        base_dir: &std::path::Path,
        addr: SocketAddr,
        options: ServerOptions<B>,
    ) -> Result<Self, ServeError> {
        let tokenizer =
            Tokenizer::from_dir(base_dir).map_err(|e| ServeError::Base(e.to_string()))?;
        let chat = ChatTemplate::from_dir(base_dir)
            .map_err(|e| ServeError::Base(e.to_string()))?
            .unwrap_or_else(ChatTemplate::chatml);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServeError::Config(format!("cannot listen on {addr}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let app = Arc::new(App {
            engine,
            tokenizer,
            chat,
            options,
            in_flight: Arc::new(AtomicUsize::new(0)),
        });
        let router = router(app.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            addr,
            app,
            task,
            stop,
        })
    }

    /// Graceful shutdown: new requests get 503 at once, in-flight requests
    /// run to their end (at most the drain timeout), then the listener
    /// closes and the engine stops. Returns how many requests were still
    /// running when the timeout hit (0 when all drained).
    pub async fn shutdown(self) -> usize {
        self.app.engine.begin_drain();
        let deadline = tokio::time::Instant::now() + self.app.options.drain_timeout;
        while self.app.in_flight.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.app.in_flight.load(Ordering::SeqCst);
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        self.app.engine.shutdown();
        left
    }

    /// Generation requests in flight.
    pub fn in_flight(&self) -> usize {
        self.app.in_flight.load(Ordering::SeqCst)
    }

    /// The engine (to drain it from a test, say).
    pub fn engine(&self) -> &EngineHandle<B> {
        &self.app.engine
    }
}

fn router<B: Backend>(app: AppState<B>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::<B>))
        .route("/v1/completions", post(completions::<B>))
        .route("/v1/models", get(models::<B>))
        .route("/admin/deltas", post(register::<B>))
        .route("/admin/deltas/{name}", delete(unload::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/health", get(health::<B>))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "unknown_url",
                "no such endpoint",
            )
        })
        .with_state(app)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Checks the API key for `model` (when keys are configured).
fn authorize<B: Backend>(app: &App<B>, headers: &HeaderMap, model: &str) -> Result<(), ApiError> {
    let Some(keys) = &app.options.keys else {
        return Ok(());
    };
    let key = bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing_api_key",
            "This server needs an API key: send `Authorization: Bearer KEY`.",
        )
    })?;
    let allowed = keys.get(key).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided.",
        )
    })?;
    if allowed.allows(model) {
        Ok(())
    } else {
        Err(ApiError::unknown_model(model))
    }
}

fn authorize_admin<B: Backend>(app: &App<B>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.options.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "admin_disabled",
            "The admin endpoints are disabled (start the server with --admin-token-file).",
        ));
    };
    match bearer(headers) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing_api_key",
            "The admin endpoints need `Authorization: Bearer ADMIN_TOKEN`.",
        )),
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "not_admin",
            "This key may not use the admin endpoints.",
        )),
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn draining<B: Backend>(app: &App<B>) -> Result<(), ApiError> {
    if app.engine.shared.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "draining",
            "The server is shutting down; retry on another replica.",
        ));
    }
    Ok(())
}

/// Reads a JSON body within the size limit: 413 over it, 400 for bad JSON.
async fn json_body<T: serde::de::DeserializeOwned, B: Backend>(
    app: &App<B>,
    body: Body,
) -> Result<T, ApiError> {
    let limit = app.options.max_body_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than {limit} bytes."),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("Invalid request body: {e}")))
}

fn count<B: Backend>(app: &App<B>, endpoint: &str, model: &str, status: StatusCode) {
    app.engine
        .shared
        .metrics
        .requests
        .with_label_values(&[model, endpoint, status.as_str()])
        .inc();
}

/// The generation parameters of a request, checked.
/// Checks a request's sampling and length fields and turns them, with the
/// tokenized `prompt`, into engine parameters; a bad field is a 400 naming
/// it. (Public for the fuzz target of request bodies.)
pub fn params(c: &Common, prompt: Vec<u32>, default_max: usize) -> Result<GenParams, ApiError> {
    if c.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request(
            "invalid_n",
            "only n = 1 is supported",
        ));
    }
    let max_tokens = match c.max_completion_tokens.or(c.max_tokens) {
        None => default_max,
        Some(m) if m >= 1 => m as usize,
        Some(m) => {
            return Err(ApiError::bad_request(
                "invalid_max_tokens",
                format!("max_tokens must be at least 1 (got {m})"),
            ))
        }
    };
    let temperature = c.temperature.unwrap_or(1.0);
    if !temperature.is_finite() || !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request(
            "invalid_temperature",
            format!("temperature must be in [0, 2] (got {temperature})"),
        ));
    }
    let top_p = c.top_p.unwrap_or(1.0);
    if !top_p.is_finite() || top_p <= 0.0 || top_p > 1.0 {
        return Err(ApiError::bad_request(
            "invalid_top_p",
            format!("top_p must be in (0, 1] (got {top_p})"),
        ));
    }
    let sampling = if temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Sample {
            temperature: temperature as f32,
            top_k: None,
            top_p: (top_p < 1.0).then_some(top_p as f32),
        }
    };
    let seed = c.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    Ok(GenParams {
        model: c.model.clone(),
        prompt,
        max_tokens,
        sampling,
        seed,
    })
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::UnknownModel(m) => ApiError::unknown_model(&m),
        SubmitError::QueueFull { retry_after_s, .. } => {
            let mut err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "server_overloaded",
                e.to_string(),
            );
            err.retry_after = Some(retry_after_s);
            err
        }
        SubmitError::ContextTooLong { .. } | SubmitError::KvTooLarge { .. } => {
            ApiError::bad_request("context_length_exceeded", e.to_string())
        }
        SubmitError::Invalid(m) => ApiError::bad_request("invalid_request", m),
        SubmitError::Draining => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "draining",
            e.to_string(),
        ),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

async fn chat<B: Backend>(State(app): State<AppState<B>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let r = async {
        draining(&app)?;
        let r: ChatRequest = json_body(&app, body).await?;
        authorize(&app, &parts.headers, &r.common.model)?;
        if r.messages.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_messages",
                "`messages` is empty",
            ));
        }
        let messages: Vec<ChatMessage> = r
            .messages
            .iter()
            .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
            .collect();
        let rendered = app
            .chat
            .render(&messages, true)
            .map_err(|e| ApiError::bad_request("invalid_messages", e.to_string()))?;
        // The template writes BOS itself where the model wants one.
        let prompt = app
            .tokenizer
            .encode(&rendered, false)
            .map_err(|e| ApiError::bad_request("invalid_messages", e.to_string()))?;
        let room = app
            .engine
            .shared
            .context
            .saturating_sub(prompt.len())
            .max(1);
        let p = params(&r.common, prompt, room)?;
        Ok((r.common, p))
    }
    .await;
    run(app, "chat", Kind::Chat, r).await
}

async fn completions<B: Backend>(State(app): State<AppState<B>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let r = async {
        draining(&app)?;
        let r: CompletionRequest = json_body(&app, body).await?;
        authorize(&app, &parts.headers, &r.common.model)?;
        let prompt = match r.prompt {
            Prompt::Text(t) => app
                .tokenizer
                .encode(&t, true)
                .map_err(|e| ApiError::bad_request("invalid_prompt", e.to_string()))?,
            Prompt::Tokens(t) => t,
        };
        let p = params(&r.common, prompt, 16)?;
        Ok((r.common, p))
    }
    .await;
    run(app, "completions", Kind::Text, r).await
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn finish_str(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// Submits and answers, streaming or not.
async fn run<B: Backend>(
    app: AppState<B>,
    endpoint: &'static str,
    kind: Kind,
    checked: Result<(Common, GenParams), ApiError>,
) -> Response {
    let (common, params) = match checked {
        Ok(v) => v,
        Err(e) => {
            count(&app, endpoint, "", e.status);
            return e.into_response();
        }
    };
    let stops = match common.stops() {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let model = params.model.clone();
    let prompt_tokens = params.prompt.len();
    let guard = InFlight::new(&app.in_flight);
    let rx = match app.engine.submit(params) {
        Ok(rx) => rx,
        Err(e) => {
            let e = submit_error(e);
            count(&app, endpoint, &model, e.status);
            return e.into_response();
        }
    };
    count(&app, endpoint, &model, StatusCode::OK);
    let id = format!(
        "{}-{:x}",
        if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        },
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let created = now_s();
    let text = TextStream::new(stops);
    if common.stream {
        let include_usage = common.stream_options.is_some_and(|o| o.include_usage);
        let s = sse_stream(SseState {
            app: app.clone(),
            rx,
            text,
            kind,
            id,
            model,
            created,
            prompt_tokens,
            completion_tokens: 0,
            include_usage,
            phase: Phase::First,
            _guard: guard,
        });
        return Sse::new(s).keep_alive(KeepAlive::default()).into_response();
    }
    let mut rx = rx;
    let mut text = text;
    let mut n = 0;
    let finish = loop {
        match rx.recv().await {
            Some(GenEvent::Token(t)) => {
                n += 1;
                if let Err(e) = text.push(t, &app.tokenizer) {
                    return ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "api_error",
                        "decode",
                        e,
                    )
                    .into_response();
                }
                if text.stopped {
                    break "stop";
                }
            }
            Some(GenEvent::Finished(f)) => break finish_str(f),
            Some(GenEvent::Failed(e)) => {
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "generation_failed",
                    e,
                )
                .into_response()
            }
            None => {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "engine_stopped",
                    "the engine stopped",
                )
                .into_response()
            }
        }
    };
    // Dropping the receiver ends the sequence in the engine (stop string).
    drop(rx);
    drop(guard);
    text.finish();
    let finish = if text.stopped { "stop" } else { finish };
    let content = text.text().to_string();
    let choice = match kind {
        Kind::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish,
            "logprobs": null,
        }),
        Kind::Text => json!({
            "index": 0,
            "text": content,
            "finish_reason": finish,
            "logprobs": null,
        }),
    };
    Json(json!({
        "id": id,
        "object": if kind == Kind::Chat { "chat.completion" } else { "text_completion" },
        "created": created,
        "model": common.model,
        "choices": [choice],
        "usage": usage(prompt_tokens, n),
    }))
    .into_response()
}

enum Phase {
    First,
    Body,
    Done,
}

struct SseState<B: Backend> {
    app: AppState<B>,
    rx: tokio::sync::mpsc::UnboundedReceiver<GenEvent>,
    text: TextStream,
    kind: Kind,
    id: String,
    model: String,
    created: u64,
    prompt_tokens: usize,
    completion_tokens: usize,
    include_usage: bool,
    phase: Phase,
    _guard: InFlight,
}

impl<B: Backend> SseState<B> {
    fn chunk(&self, content: Option<String>, finish: Option<&str>, role: bool) -> Event {
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(c) = content {
                    delta.insert("content".into(), json!(c));
                }
                json!({"index": 0, "delta": delta, "finish_reason": finish})
            }
            Kind::Text => json!({
                "index": 0,
                "text": content.unwrap_or_default(),
                "finish_reason": finish,
                "logprobs": null,
            }),
        };
        let object = if self.kind == Kind::Chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let v = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        });
        Event::default().data(v.to_string())
    }

    fn closing(&mut self, finish: &str) -> Vec<Event> {
        let rest = self.text.finish();
        let finish = if self.text.stopped { "stop" } else { finish };
        let mut out = Vec::new();
        if !rest.is_empty() {
            out.push(self.chunk(Some(rest), None, false));
        }
        out.push(self.chunk(None, Some(finish), false));
        if self.include_usage {
            let v = json!({
                "id": self.id,
                "object": if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage(self.prompt_tokens, self.completion_tokens),
            });
            out.push(Event::default().data(v.to_string()));
        }
        out.push(Event::default().data("[DONE]"));
        self.phase = Phase::Done;
        out
    }

    /// The next events to send, `None` at the end of the stream.
    async fn next(&mut self) -> Option<Vec<Event>> {
        match self.phase {
            Phase::Done => return None,
            Phase::First if self.kind == Kind::Chat => {
                self.phase = Phase::Body;
                return Some(vec![self.chunk(Some(String::new()), None, true)]);
            }
            _ => self.phase = Phase::Body,
        }
        loop {
            match self.rx.recv().await {
                Some(GenEvent::Token(t)) => {
                    self.completion_tokens += 1;
                    let piece = match self.text.push(t, &self.app.tokenizer) {
                        Ok(p) => p,
                        Err(e) => return Some(self.error(e)),
                    };
                    if self.text.stopped {
                        // Ends the engine's sequence for this stream.
                        self.rx.close();
                        let mut out = Vec::new();
                        if !piece.is_empty() {
                            out.push(self.chunk(Some(piece), None, false));
                        }
                        out.extend(self.closing("stop"));
                        return Some(out);
                    }
                    if !piece.is_empty() {
                        return Some(vec![self.chunk(Some(piece), None, false)]);
                    }
                }
                Some(GenEvent::Finished(f)) => return Some(self.closing(finish_str(f))),
                Some(GenEvent::Failed(e)) => return Some(self.error(e)),
                None => return Some(self.error("the engine stopped".into())),
            }
        }
    }

    /// An error inside a stream: OpenAI's error object as one event, then the end.
    fn error(&mut self, message: String) -> Vec<Event> {
        self.phase = Phase::Done;
        let v = json!({"error": {"message": message, "type": "api_error", "param": null, "code": "generation_failed"}});
        vec![Event::default().data(v.to_string())]
    }
}

fn sse_stream<B: Backend>(state: SseState<B>) -> impl Stream<Item = Result<Event, Infallible>> {
    use futures_util::StreamExt;
    stream::unfold(state, |mut s| async move {
        let events = s.next().await?;
        Some((stream::iter(events.into_iter().map(Ok)), s))
    })
    .flatten()
}

async fn models<B: Backend>(State(app): State<AppState<B>>, headers: HeaderMap) -> Response {
    let shared = &app.engine.shared;
    let visible = |m: &str| authorize(&app, &headers, m).is_ok();
    // A request without a valid key is refused outright (401), not shown an empty list.
    if let (Some(_), Err(e)) = (&app.options.keys, authorize(&app, &headers, "")) {
        if e.status == StatusCode::UNAUTHORIZED {
            return e.into_response();
        }
    }
    let created = now_s();
    let mut data = Vec::new();
    if visible(&shared.base_name) {
        data.push(json!({
            "id": shared.base_name,
            "object": "model",
            "created": created,
            "owned_by": "deltaguard",
            "kind": "base",
            "resident_bytes": shared.base_bytes,
        }));
    }
    if let Ok(tenants) = shared.tenants.read() {
        for t in tenants.values().filter(|t| visible(&t.name)) {
            data.push(json!({
                "id": t.name,
                "object": "model",
                "created": created,
                "owned_by": "deltaguard",
                "kind": "tenant",
                "root": shared.base_name,
                "method": t.method,
                "file_bytes": t.file_bytes,
                "compression_ratio": t.compression_ratio,
                "resident_bytes": t.resident_bytes,
                "forms": t.forms,
            }));
        }
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

#[derive(serde::Deserialize)]
struct RegisterRequest {
    name: String,
    path: PathBuf,
}

async fn register<B: Backend>(State(app): State<AppState<B>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let r = async {
        authorize_admin(&app, &parts.headers)?;
        draining(&app)?;
        let r: RegisterRequest = json_body(&app, body).await?;
        let gate = app.options.gate.as_ref().map(|g| g());
        app.engine
            .register(r.name, r.path, gate)
            .await
            .map_err(serve_error)
    }
    .await;
    match r {
        Ok(info) => (StatusCode::CREATED, Json(json!({"registered": info}))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn unload<B: Backend>(
    State(app): State<AppState<B>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize_admin(&app, &headers) {
        return e.into_response();
    }
    if name == app.engine.shared.base_name {
        return ApiError::bad_request("base_model", "the base model cannot be unloaded")
            .into_response();
    }
    match app.engine.unload(name.clone()).await {
        Ok(n) => Json(json!({"unloaded": name, "in_flight_at_unload": n})).into_response(),
        Err(e) => serve_error(e).into_response(),
    }
}

fn serve_error(e: ServeError) -> ApiError {
    let m = e.to_string();
    match e {
        ServeError::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            m,
        ),
        ServeError::Exists(_) => ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "model_exists",
            m,
        ),
        ServeError::Gate { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            "safety_gate_refused",
            m,
        ),
        ServeError::Tenant { .. } | ServeError::BadName(_) => {
            ApiError::bad_request("invalid_delta", m)
        }
        ServeError::Submit(s) => submit_error(s),
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal",
            m,
        ),
    }
}

async fn metrics<B: Backend>(State(app): State<AppState<B>>, headers: HeaderMap) -> Response {
    // With keys, the per-tenant series are for the operator only.
    if app.options.keys.is_some() {
        if let Err(e) = authorize_admin(&app, &headers) {
            return e.into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.engine.shared.metrics.render(),
    )
        .into_response()
}

async fn health<B: Backend>(State(app): State<AppState<B>>) -> Response {
    match draining(&app) {
        Ok(()) => "ok".into_response(),
        Err(e) => e.into_response(),
    }
}

/// Loads the base and the `NAME=FILE` tenants on the engine thread (each
/// through the safety gate when `gate` is set) and starts it.
pub fn start_engine<B: Backend>(
    base_dir: PathBuf,
    base_name: Option<String>,
    deltas: Vec<(String, PathBuf)>,
    device: B::Device,
    config: super::EngineConfig,
    gate: Option<super::gate::GateConfig>,
) -> Result<EngineHandle<B>, ServeError> {
    EngineHandle::start(
        move || {
            let base = Base::load(&base_dir, base_name, &device)?;
            let mut tenants: Vec<Tenant<B>> = Vec::with_capacity(deltas.len());
            for (name, file) in &deltas {
                if tenants.iter().any(|t| t.info.name == *name) {
                    return Err(ServeError::Exists(name.clone()));
                }
                let tenant = Tenant::load(name, file, &base)?;
                if let Some(g) = &gate {
                    super::gate::admit_check::<B>(g.clone())(&base, &tenant).map_err(|reason| {
                        ServeError::Gate {
                            name: name.clone(),
                            reason,
                        }
                    })?;
                }
                tenants.push(tenant);
            }
            Ok((base, tenants))
        },
        config,
    )
}
