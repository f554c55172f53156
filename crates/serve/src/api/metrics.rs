//! `GET /metrics` in Prometheus's text format: requests by route and status, request latency,
//! time to first token, tokens in and out, and the engine's queue depth and running requests.

use crate::engine::EngineStats;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    pub route: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteLabels, Counter>,
    pub latency: Family<RouteOnly, Histogram, fn() -> Histogram>,
    pub time_to_first_token: Histogram,
    pub prompt_tokens: Counter,
    pub generated_tokens: Counter,
    queued: Gauge,
    running: Gauge,
    cancelled: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("minicpm");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let latency = Family::<RouteOnly, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response headers (a stream's first byte)",
            latency.clone(),
        );
        let time_to_first_token = latency_histogram();
        registry.register(
            "time_to_first_token_seconds",
            "Time from a generation request's arrival to its first generated token",
            time_to_first_token.clone(),
        );
        let prompt_tokens = Counter::default();
        registry.register(
            "prompt_tokens",
            "Prompt tokens of accepted requests",
            prompt_tokens.clone(),
        );
        let generated_tokens = Counter::default();
        registry.register(
            "generated_tokens",
            "Tokens generated and delivered",
            generated_tokens.clone(),
        );
        let queued = Gauge::default();
        registry.register("queue_depth", "Requests waiting for a slot", queued.clone());
        let running = Gauge::default();
        registry.register(
            "running_requests",
            "Requests holding a slot",
            running.clone(),
        );
        let cancelled = Gauge::default();
        registry.register(
            "cancelled_requests",
            "Requests ended early because their client went away or a stop string matched",
            cancelled.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            time_to_first_token,
            prompt_tokens,
            generated_tokens,
            queued,
            running,
            cancelled,
        }
    }

    /// The exposition text, with the engine's gauges read now.
    pub fn render(&self, engine: &EngineStats) -> String {
        self.queued
            .set(engine.queued.load(Ordering::Relaxed) as i64);
        self.running
            .set(engine.running.load(Ordering::Relaxed) as i64);
        self.cancelled
            .set(engine.cancelled.load(Ordering::Relaxed) as i64);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
