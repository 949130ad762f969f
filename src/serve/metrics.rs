//! Prometheus metrics of the server (the `prometheus` crate), served as
//! text at `GET /metrics`. Per-tenant series carry a `model` label.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric the server exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `deltaguard_requests_total{model, endpoint, status}`.
    pub requests: IntCounterVec,
    /// `deltaguard_tokens_total{model, kind="prompt"|"completion"}`.
    pub tokens: IntCounterVec,
    /// Requests accepted but not yet running.
    pub queue_depth: IntGauge,
    /// Sequences in the decode batch.
    pub active: IntGauge,
    /// Sequences per decode step.
    pub batch_size: Histogram,
    /// Seconds from accepting a request to its first token, per tenant.
    pub ttft: HistogramVec,
    /// Seconds between consecutive tokens of a sequence, per tenant.
    pub itl: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "deltaguard_requests_total",
                "HTTP requests by model and status",
            ),
            &["model", "endpoint", "status"],
        )
        .expect("valid metric");
        let tokens = IntCounterVec::new(
            Opts::new("deltaguard_tokens_total", "Prompt and completion tokens"),
            &["model", "kind"],
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new("deltaguard_queue_depth", "Requests waiting to run")
            .expect("valid metric");
        let active = IntGauge::new("deltaguard_active_sequences", "Sequences being decoded")
            .expect("valid metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("deltaguard_batch_size", "Sequences per decode step")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )
        .expect("valid metric");
        let latency = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let ttft = HistogramVec::new(
            HistogramOpts::new(
                "deltaguard_time_to_first_token_seconds",
                "Seconds from accepting a request to its first token",
            )
            .buckets(latency.to_vec()),
            &["model"],
        )
        .expect("valid metric");
        let itl = HistogramVec::new(
            HistogramOpts::new(
                "deltaguard_inter_token_latency_seconds",
                "Seconds between consecutive tokens of a sequence",
            )
            .buckets(latency.to_vec()),
            &["model"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(tokens.clone()),
            Box::new(queue_depth.clone()),
            Box::new(active.clone()),
            Box::new(batch_size.clone()),
            Box::new(ttft.clone()),
            Box::new(itl.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            tokens,
            queue_depth,
            active,
            batch_size,
            ttft,
            itl,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Drops the per-tenant series of an unloaded tenant.
    pub fn forget(&self, model: &str) {
        for kind in ["prompt", "completion"] {
            let _ = self.tokens.remove_label_values(&[model, kind]);
        }
        let _ = self.ttft.remove_label_values(&[model]);
        let _ = self.itl.remove_label_values(&[model]);
    }
}

/// This process's resident memory now (Linux `VmRSS`), in bytes; `None`
/// where `/proc/self/status` is not there.
pub fn resident_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// This process's peak resident memory so far (Linux `VmHWM`), in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
