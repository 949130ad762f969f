//! The engine: one thread that owns the base and every tenant, a bounded
//! queue of requests, and one decode loop over a batch of sequences from any
//! tenants (continuous batching: a request joins the batch as soon as a slot
//! and KV memory are free, and leaves it the step it ends).
//!
//! Each loop iteration (1) takes new commands, (2) admits queued requests
//! round-robin across tenants (so one tenant's burst cannot starve another)
//! while the batch has a free slot and the KV budget has room for the
//! request's prompt plus `max_tokens`, and (3) runs one step for the whole
//! batch ([`super::forward::step`]): one new token of every decoding
//! sequence, and the next chunk of the prompts being prefilled (at most
//! [`EngineConfig::prefill_chunk`] prompt tokens per step, oldest first),
//! so a long prompt never stalls the decoding sequences for a whole prefill.
//! A request whose receiver is gone (client disconnected) leaves the batch
//! at once, freeing its slot and KV reservation.
//!
//! The engine is used through an [`EngineHandle`], without HTTP if wanted
//! ([`EngineHandle::generate`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use llama_model::generate::choose;
use llama_model::Sampling;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc as tmpsc, oneshot};

use super::forward::{step, StepInput};
use super::metrics::Metrics;
use super::tenant::{Base, Tenant, TenantInfo};
use super::ServeError;
use llama_model::KvCache;

/// Limits of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// Most prompt tokens prefilled in one step (≥ 1), next to the decode rows.
    pub prefill_chunk: usize,
    /// Most requests waiting to run; more are refused ([`SubmitError::QueueFull`]).
    pub max_queue: usize,
    /// Bytes of KV cache all running sequences may reserve together.
    pub kv_budget_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            prefill_chunk: 64,
            max_queue: 64,
            kv_budget_bytes: 1 << 30,
        }
    }
}

/// A generation request.
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Model name: the base's or a tenant's.
    pub model: String,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Most tokens to generate (≥ 1).
    pub max_tokens: usize,
    /// Greedy or sampled.
    pub sampling: Sampling,
    /// Sampler seed (ChaCha8 stream 0, as `deltaguard generate --seed`).
    pub seed: u64,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

/// What a running request sends back.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// A new token (never an end-of-sequence token).
    Token(u32),
    /// The sequence ended.
    Finished(Finish),
    /// It failed (non-finite logits, or its tenant was unloaded before it ran).
    Failed(String),
}

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    /// No such model (or not visible to the caller).
    #[error("the model `{0}` does not exist")]
    UnknownModel(String),
    /// The queue is full; retry after about this many seconds.
    #[error("the server is at capacity ({queued} requests queued); retry in {retry_after_s} s")]
    QueueFull {
        /// Requests waiting.
        queued: usize,
        /// Suggested wait.
        retry_after_s: u64,
    },
    /// Prompt plus `max_tokens` exceed the model's context.
    #[error("prompt of {prompt} tokens plus max_tokens {max_tokens} exceeds the context of {context} tokens")]
    ContextTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Requested new tokens.
        max_tokens: usize,
        /// `max_position_embeddings`.
        context: usize,
    },
    /// The request alone needs more KV memory than the whole budget.
    #[error("the request needs {need} bytes of KV cache, more than the budget of {budget} bytes")]
    KvTooLarge {
        /// Bytes needed.
        need: u64,
        /// `--kv-budget`.
        budget: u64,
    },
    /// Empty prompt, `max_tokens` 0, a token outside the vocabulary.
    #[error("{0}")]
    Invalid(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Draining,
}

enum Command<B: Backend> {
    Generate(Request),
    Register {
        name: String,
        file: PathBuf,
        admit: Option<AdmitCheck<B>>,
        reply: oneshot::Sender<Result<TenantInfo, ServeError>>,
    },
    Unload {
        name: String,
        reply: oneshot::Sender<Result<usize, ServeError>>,
    },
    Shutdown,
}

/// A check run on a freshly loaded tenant before it is admitted (the safety
/// gate); it gets the base and the tenant and returns `Err(reason)` to refuse.
pub type AdmitCheck<B> = Box<dyn FnOnce(&Base<B>, &Tenant<B>) -> Result<(), String> + Send>;

struct Request {
    params: GenParams,
    events: tmpsc::UnboundedSender<GenEvent>,
    accepted: Instant,
}

/// What the engine publishes for the HTTP side.
pub struct Shared {
    /// The base model's name.
    pub base_name: String,
    /// Base weights in bytes.
    pub base_bytes: u64,
    /// The base's context length.
    pub context: usize,
    /// Tenants being served.
    pub tenants: RwLock<BTreeMap<String, TenantInfo>>,
    /// Requests accepted and not yet running.
    pub queued: AtomicUsize,
    /// Metrics.
    pub metrics: Metrics,
    /// Set once shutdown began: new requests are refused.
    pub draining: AtomicBool,
    kv_per_token: u64,
    vocab: usize,
    config: EngineConfig,
}

impl Shared {
    /// Whether `model` names the base or a served tenant.
    pub fn has_model(&self, model: &str) -> bool {
        model == self.base_name
            || self
                .tenants
                .read()
                .map(|t| t.contains_key(model))
                .unwrap_or(false)
    }
    /// The engine's limits.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }
}

/// A handle to the engine thread; cheap to clone.
pub struct EngineHandle<B: Backend> {
    tx: mpsc::Sender<Command<B>>,
    /// State shared with the engine.
    pub shared: Arc<Shared>,
}

impl<B: Backend> Clone for EngineHandle<B> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Bytes of KV cache one token takes: K and V, every layer, f32.
pub fn kv_bytes_per_token(c: &llama_model::LlamaConfig) -> u64 {
    2 * c.num_hidden_layers as u64 * c.num_key_value_heads as u64 * c.head_dim as u64 * 4
}

impl<B: Backend> EngineHandle<B> {
    /// Starts the engine thread: `load` runs on it (so the model never
    /// crosses threads) and returns the base and the initial tenants.
    pub fn start(
        load: impl FnOnce() -> Result<(Base<B>, Vec<Tenant<B>>), ServeError> + Send + 'static,
        config: EngineConfig,
    ) -> Result<Self, ServeError> {
        if config.max_batch == 0 || config.max_queue == 0 {
            return Err(ServeError::Config(
                "max batch and max queue must be at least 1".into(),
            ));
        }
        let (tx, rx) = mpsc::channel::<Command<B>>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Arc<Shared>, ServeError>>();
        std::thread::Builder::new()
            .name("deltaguard-engine".into())
            .spawn(move || {
                let (base, tenants) = match load() {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let c = base.config();
                let shared = Arc::new(Shared {
                    base_name: base.name.clone(),
                    base_bytes: base.resident_bytes,
                    context: c.max_position_embeddings,
                    tenants: RwLock::new(
                        tenants
                            .iter()
                            .map(|t| (t.info.name.clone(), t.info.clone()))
                            .collect(),
                    ),
                    queued: AtomicUsize::new(0),
                    metrics: Metrics::new(),
                    draining: AtomicBool::new(false),
                    kv_per_token: kv_bytes_per_token(c),
                    vocab: c.vocab_size,
                    config,
                });
                let _ = ready_tx.send(Ok(shared.clone()));
                let mut worker = Worker {
                    tenants: tenants
                        .into_iter()
                        .map(|t| (t.info.name.clone(), Arc::new(t)))
                        .collect(),
                    base,
                    shared,
                    queues: BTreeMap::new(),
                    last_served: None,
                    active: Vec::new(),
                    kv_reserved: 0,
                    unloading: Vec::new(),
                };
                worker.run(rx);
            })
            .map_err(|e| ServeError::Config(format!("cannot start the engine thread: {e}")))?;
        let shared = ready_rx
            .recv()
            .map_err(|_| ServeError::Config("the engine thread died while loading".into()))??;
        Ok(Self { tx, shared })
    }

    /// Queues a request; its tokens arrive on the returned receiver.
    pub fn submit(
        &self,
        params: GenParams,
    ) -> Result<tmpsc::UnboundedReceiver<GenEvent>, SubmitError> {
        let s = &self.shared;
        if s.draining.load(Ordering::SeqCst) {
            return Err(SubmitError::Draining);
        }
        if !s.has_model(&params.model) {
            return Err(SubmitError::UnknownModel(params.model));
        }
        if params.prompt.is_empty() {
            return Err(SubmitError::Invalid(
                "the prompt encodes to no tokens".into(),
            ));
        }
        if params.max_tokens == 0 {
            return Err(SubmitError::Invalid("max_tokens must be at least 1".into()));
        }
        if let Some(t) = params.prompt.iter().find(|&&t| t as usize >= s.vocab) {
            return Err(SubmitError::Invalid(format!(
                "token {t} is outside the vocabulary of {} tokens",
                s.vocab
            )));
        }
        let total = params.prompt.len().saturating_add(params.max_tokens);
        if total > s.context {
            return Err(SubmitError::ContextTooLong {
                prompt: params.prompt.len(),
                max_tokens: params.max_tokens,
                context: s.context,
            });
        }
        let need = total as u64 * s.kv_per_token;
        if need > s.config.kv_budget_bytes {
            return Err(SubmitError::KvTooLarge {
                need,
                budget: s.config.kv_budget_bytes,
            });
        }
        // Reserve a queue place first, so concurrent submitters cannot overshoot.
        let queued = s.queued.fetch_add(1, Ordering::SeqCst);
        if queued >= s.config.max_queue {
            s.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull {
                queued,
                retry_after_s: 1,
            });
        }
        s.metrics
            .queue_depth
            .set(s.queued.load(Ordering::SeqCst) as i64);
        let (events, rx) = tmpsc::unbounded_channel();
        let req = Request {
            params,
            events,
            accepted: Instant::now(),
        };
        if self.tx.send(Command::Generate(req)).is_err() {
            s.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Draining);
        }
        Ok(rx)
    }

    /// Runs one request to the end, blocking (library use without HTTP).
    /// Returns the tokens and why it ended.
    pub fn generate(&self, params: GenParams) -> Result<(Vec<u32>, Finish), ServeError> {
        let mut rx = self.submit(params).map_err(ServeError::Submit)?;
        let mut tokens = Vec::new();
        loop {
            match rx.blocking_recv() {
                Some(GenEvent::Token(t)) => tokens.push(t),
                Some(GenEvent::Finished(f)) => return Ok((tokens, f)),
                Some(GenEvent::Failed(e)) => return Err(ServeError::Generation(e)),
                None => return Err(ServeError::Generation("the engine stopped".into())),
            }
        }
    }

    /// Loads, validates (and optionally checks) a delta file and starts serving it as `name`.
    pub async fn register(
        &self,
        name: String,
        file: PathBuf,
        admit: Option<AdmitCheck<B>>,
    ) -> Result<TenantInfo, ServeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Register {
                name,
                file,
                admit,
                reply,
            })
            .map_err(|_| ServeError::Generation("the engine stopped".into()))?;
        rx.await
            .map_err(|_| ServeError::Generation("the engine stopped".into()))?
    }

    /// Stops serving `name` at once for new requests and resolves when its
    /// in-flight requests have ended; returns how many there were.
    pub async fn unload(&self, name: String) -> Result<usize, ServeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Unload { name, reply })
            .map_err(|_| ServeError::Generation("the engine stopped".into()))?;
        rx.await
            .map_err(|_| ServeError::Generation("the engine stopped".into()))?
    }

    /// Refuses new requests from now on; running ones go on.
    pub fn begin_drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    /// Stops the engine thread once its queue and batch are empty.
    pub fn shutdown(&self) {
        self.begin_drain();
        let _ = self.tx.send(Command::Shutdown);
    }
}

struct Sequence<B: Backend> {
    tenant: Option<Arc<Tenant<B>>>,
    model: String,
    kv: KvCache<B>,
    /// The prompt; its first `prefilled` tokens are in the cache.
    prompt: Vec<u32>,
    prefilled: usize,
    /// When the request was accepted (for the time to first token).
    accepted: Instant,
    /// The token to feed next (the last one sampled), once prefilled.
    next: u32,
    generated: usize,
    max_tokens: usize,
    sampling: Sampling,
    rng: ChaCha8Rng,
    events: tmpsc::UnboundedSender<GenEvent>,
    last_token_at: Instant,
    kv_reserved: u64,
}

/// A tenant being unloaded: name, the tenant, requests running at the
/// unload, and whom to answer once they ended.
type Unloading<B> = (
    String,
    Arc<Tenant<B>>,
    usize,
    oneshot::Sender<Result<usize, ServeError>>,
);

struct Worker<B: Backend> {
    base: Base<B>,
    tenants: HashMap<String, Arc<Tenant<B>>>,
    shared: Arc<Shared>,
    /// Waiting requests per model.
    queues: BTreeMap<String, VecDeque<Request>>,
    last_served: Option<String>,
    /// Running sequences, kept sorted by model so each tenant's rows are adjacent.
    active: Vec<Sequence<B>>,
    kv_reserved: u64,
    unloading: Vec<Unloading<B>>,
}

impl<B: Backend> Worker<B> {
    fn run(&mut self, rx: mpsc::Receiver<Command<B>>) {
        let mut shutting_down = false;
        loop {
            let idle = self.active.is_empty() && self.queued() == 0;
            if idle && shutting_down {
                break;
            }
            // Block only when there is nothing to do.
            let first = if idle {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        shutting_down = true;
                        None
                    }
                }
            } else {
                None
            };
            for cmd in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match cmd {
                    Command::Generate(r) => self.enqueue(r),
                    Command::Register {
                        name,
                        file,
                        admit,
                        reply,
                    } => {
                        let _ = reply.send(self.register(name, file, admit));
                    }
                    Command::Unload { name, reply } => self.unload(name, reply),
                    Command::Shutdown => shutting_down = true,
                }
            }
            self.drop_disconnected();
            self.admit();
            if !self.active.is_empty() {
                self.decode();
            }
            self.finish_unloads();
        }
    }

    fn queued(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    fn enqueue(&mut self, r: Request) {
        self.queues
            .entry(r.params.model.clone())
            .or_default()
            .push_back(r);
    }

    fn dequeued(&self) {
        let s = &self.shared;
        s.queued.fetch_sub(1, Ordering::SeqCst);
        s.metrics
            .queue_depth
            .set(s.queued.load(Ordering::SeqCst) as i64);
    }

    fn register(
        &mut self,
        name: String,
        file: PathBuf,
        admit: Option<AdmitCheck<B>>,
    ) -> Result<TenantInfo, ServeError> {
        if name == self.base.name || self.tenants.contains_key(&name) {
            return Err(ServeError::Exists(name));
        }
        let tenant = Tenant::load(&name, &file, &self.base)?;
        if let Some(check) = admit {
            check(&self.base, &tenant).map_err(|reason| ServeError::Gate {
                name: name.clone(),
                reason,
            })?;
        }
        let info = tenant.info.clone();
        self.tenants.insert(name.clone(), Arc::new(tenant));
        if let Ok(mut t) = self.shared.tenants.write() {
            t.insert(name, info.clone());
        }
        Ok(info)
    }

    fn unload(&mut self, name: String, reply: oneshot::Sender<Result<usize, ServeError>>) {
        let Some(tenant) = self.tenants.remove(&name) else {
            let _ = reply.send(Err(ServeError::NotFound(name)));
            return;
        };
        if let Ok(mut t) = self.shared.tenants.write() {
            t.remove(&name);
        }
        // Queued requests of the tenant never ran: tell them.
        if let Some(q) = self.queues.remove(&name) {
            for r in q {
                self.dequeued();
                let _ = r
                    .events
                    .send(GenEvent::Failed(format!("the model `{name}` was unloaded")));
            }
        }
        let in_flight = self
            .active
            .iter()
            .filter(|s| s.tenant.as_ref().is_some_and(|t| Arc::ptr_eq(t, &tenant)))
            .count();
        self.unloading.push((name, tenant, in_flight, reply));
    }

    /// Answers unload requests whose tenant has no running sequence left.
    fn finish_unloads(&mut self) {
        let mut i = 0;
        while i < self.unloading.len() {
            let tenant = &self.unloading[i].1;
            let busy = self
                .active
                .iter()
                .any(|s| s.tenant.as_ref().is_some_and(|t| Arc::ptr_eq(t, tenant)));
            if busy {
                i += 1;
                continue;
            }
            let (name, tenant, in_flight, reply) = self.unloading.swap_remove(i);
            drop(tenant);
            self.shared.metrics.forget(&name);
            let _ = reply.send(Ok(in_flight));
        }
    }

    fn drop_disconnected(&mut self) {
        let before = self.active.len();
        let mut freed = 0;
        self.active.retain(|s| {
            let keep = !s.events.is_closed();
            if !keep {
                freed += s.kv_reserved;
            }
            keep
        });
        self.kv_reserved -= freed;
        if self.active.len() != before {
            self.shared.metrics.active.set(self.active.len() as i64);
        }
        let mut dropped = 0;
        for q in self.queues.values_mut() {
            let n = q.len();
            q.retain(|r| !r.events.is_closed());
            dropped += n - q.len();
        }
        for _ in 0..dropped {
            self.dequeued();
        }
    }

    /// The next model to take a request from, round-robin after the last one served.
    fn next_model(&self) -> Option<String> {
        let ready = |(k, q): (&String, &VecDeque<Request>)| (!q.is_empty()).then(|| k.clone());
        let after = self.last_served.as_ref().and_then(|last| {
            self.queues
                .range::<String, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .find_map(ready)
        });
        after.or_else(|| self.queues.iter().find_map(ready))
    }

    fn admit(&mut self) {
        let budget = self.shared.config.kv_budget_bytes;
        while self.active.len() < self.shared.config.max_batch {
            let Some(model) = self.next_model() else {
                return;
            };
            let q = self.queues.get_mut(&model).expect("model has a queue");
            let r = q.front().expect("non-empty queue");
            let need =
                (r.params.prompt.len() + r.params.max_tokens) as u64 * self.shared.kv_per_token;
            if self.kv_reserved + need > budget {
                // Wait for memory; the oldest of this tenant keeps its place.
                return;
            }
            let r = q.pop_front().expect("non-empty queue");
            self.dequeued();
            self.last_served = Some(model.clone());
            let tenant = if model == self.base.name {
                None
            } else {
                match self.tenants.get(&model) {
                    Some(t) => Some(t.clone()),
                    None => {
                        let _ = r.events.send(GenEvent::Failed(format!(
                            "the model `{model}` does not exist"
                        )));
                        continue;
                    }
                }
            };
            self.start(r, tenant, need);
        }
    }

    /// Puts an admitted request into the batch; its prompt is prefilled by
    /// the next steps, chunk by chunk.
    fn start(&mut self, r: Request, tenant: Option<Arc<Tenant<B>>>, need: u64) {
        let capacity = r.params.prompt.len() + r.params.max_tokens;
        let mut rng = ChaCha8Rng::seed_from_u64(r.params.seed);
        rng.set_stream(0);
        let seq = Sequence {
            tenant,
            model: r.params.model.clone(),
            kv: KvCache::with_capacity(self.base.config().num_hidden_layers, capacity),
            prompt: r.params.prompt,
            prefilled: 0,
            accepted: r.accepted,
            next: 0,
            generated: 0,
            max_tokens: r.params.max_tokens,
            sampling: r.params.sampling,
            rng,
            events: r.events,
            last_token_at: Instant::now(),
            kv_reserved: need,
        };
        self.kv_reserved += need;
        let pos = self
            .active
            .partition_point(|s| s.model.as_str() <= seq.model.as_str());
        self.active.insert(pos, seq);
        self.shared.metrics.active.set(self.active.len() as i64);
    }

    /// Samples the next token of `seq` from `logits` and sends it; returns
    /// whether the sequence goes on.
    fn emit(&self, seq: &mut Sequence<B>, logits: &[f32]) -> bool {
        if let Some(i) = logits.iter().position(|x| !x.is_finite()) {
            let _ = seq.events.send(GenEvent::Failed(format!(
                "the model produced a non-finite logit ({}) for token {i}",
                logits[i]
            )));
            return false;
        }
        let token = choose(logits, &seq.sampling, &mut seq.rng);
        if self.base.config().eos_token_ids.contains(&token) {
            let _ = seq.events.send(GenEvent::Finished(Finish::Stop));
            return false;
        }
        let now = Instant::now();
        if seq.generated > 0 {
            self.shared
                .metrics
                .itl
                .with_label_values(&[&seq.model])
                .observe((now - seq.last_token_at).as_secs_f64());
        }
        seq.last_token_at = now;
        seq.generated += 1;
        self.shared
            .metrics
            .tokens
            .with_label_values(&[&seq.model, "completion"])
            .inc();
        if seq.events.send(GenEvent::Token(token)).is_err() {
            return false;
        }
        if seq.generated >= seq.max_tokens {
            let _ = seq.events.send(GenEvent::Finished(Finish::Length));
            return false;
        }
        seq.next = token;
        true
    }

    /// One step for the batch: every decoding sequence's next token and the
    /// next prompt chunks (oldest admitted first, at most `prefill_chunk`
    /// prompt tokens in all); then samples and sends the new tokens.
    fn decode(&mut self) {
        let mut budget = self.shared.config.prefill_chunk.max(1);
        // Prompt chunks go to the sequences admitted first.
        let mut by_age: Vec<usize> = (0..self.active.len())
            .filter(|&i| self.active[i].prefilled < self.active[i].prompt.len())
            .collect();
        by_age.sort_by_key(|&i| self.active[i].accepted);
        let mut chunk = vec![0..0; self.active.len()];
        for i in by_age {
            let s = &self.active[i];
            let take = (s.prompt.len() - s.prefilled).min(budget);
            chunk[i] = s.prefilled..s.prefilled + take;
            budget -= take;
            if budget == 0 {
                break;
            }
        }
        let decoding = self
            .active
            .iter()
            .filter(|s| s.prefilled == s.prompt.len())
            .count();
        self.shared.metrics.batch_size.observe(decoding as f64);
        let nexts: Vec<[u32; 1]> = self.active.iter().map(|s| [s.next]).collect();
        // Indices into `active` of the sequences in this step.
        let mut stepped = Vec::with_capacity(self.active.len());
        let logits = {
            let mut inputs: Vec<StepInput<'_, B>> = Vec::with_capacity(self.active.len());
            for (i, (s, t)) in self.active.iter_mut().zip(&nexts).enumerate() {
                let (tokens, logits): (&[u32], bool) = if s.prefilled < s.prompt.len() {
                    if chunk[i].is_empty() {
                        continue;
                    }
                    (&s.prompt[chunk[i].clone()], chunk[i].end == s.prompt.len())
                } else {
                    (t, true)
                };
                stepped.push(i);
                inputs.push(StepInput {
                    tenant: s.tenant.as_deref(),
                    tokens,
                    kv: &mut s.kv,
                    logits,
                });
            }
            step(&self.base, &mut inputs)
        };
        let mut ended = vec![false; self.active.len()];
        // `emit` reads the base and the metrics; the batch is set aside meanwhile.
        let mut active = std::mem::take(&mut self.active);
        for (&i, l) in stepped.iter().zip(&logits) {
            let s = &mut active[i];
            if s.prefilled < s.prompt.len() {
                s.prefilled = chunk[i].end;
                if s.prefilled < s.prompt.len() {
                    continue;
                }
                let m = &self.shared.metrics;
                m.tokens
                    .with_label_values(&[&s.model, "prompt"])
                    .inc_by(s.prompt.len() as u64);
                m.ttft
                    .with_label_values(&[&s.model])
                    .observe(s.accepted.elapsed().as_secs_f64());
            }
            let l = l
                .as_deref()
                .expect("a finished prompt and a decode row have logits");
            ended[i] = !self.emit(s, l);
        }
        let mut freed = 0;
        let mut i = 0;
        active.retain(|s| {
            let keep = !ended[i];
            i += 1;
            if !keep {
                freed += s.kv_reserved;
            }
            keep
        });
        self.active = active;
        self.kv_reserved -= freed;
        self.shared.metrics.active.set(self.active.len() as i64);
    }
}
