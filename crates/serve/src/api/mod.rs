//! The OpenAI-compatible HTTP server: `GET /health`, `GET /v1/models`, `POST /v1/completions`,
//! `POST /v1/chat/completions` (both streaming as server-sent events) and `GET /metrics`, on
//! axum, in front of the continuous-batching engine. Every route but `/health` checks the API
//! key when one is set; every bad request gets OpenAI's error JSON with a 4xx status.

mod chat;
mod completions;
pub mod error;
mod generation;
pub mod metrics;
pub mod request;
mod stream;

use crate::chat_template::ChatTemplate;
use crate::engine::Engine;
use crate::sampling::SamplingParams;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use metrics::{Metrics, RouteLabels, RouteOnly};
use minicpm_data::TextTokenizer;
use request::{Common, Limits};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Everything the routes share.
pub struct AppState {
    pub engine: Engine,
    pub tokenizer: Arc<TextTokenizer>,
    /// The id `/v1/models` lists and requests must name (or leave out).
    pub model_name: String,
    pub template: ChatTemplate,
    pub bos: u32,
    /// Sampling when a request leaves a setting out: the model's generation_config.json.
    pub defaults: SamplingParams,
    /// A chat reply's length when the request gives none (else what the context leaves).
    pub default_max_tokens: Option<usize>,
    pub limits: Limits,
    pub api_key: Option<String>,
    /// Concurrent streaming responses.
    pub streams: Arc<Semaphore>,
    pub max_streams: usize,
    pub metrics: Metrics,
    ids: AtomicU64,
    started: u64,
    /// A token and its text, decoded in front of a token shown alone (see `token_text`).
    anchor: Option<(u32, String)>,
}

pub struct StateParts {
    pub engine: Engine,
    pub tokenizer: TextTokenizer,
    pub model_name: String,
    pub template: ChatTemplate,
    pub bos: u32,
    pub defaults: SamplingParams,
    pub default_max_tokens: Option<usize>,
    pub limits: Limits,
    pub api_key: Option<String>,
    pub max_streams: usize,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AppState {
    pub fn new(p: StateParts) -> AppState {
        let anchor = p
            .tokenizer
            .encode("a")
            .ok()
            .and_then(|ids| ids.first().copied())
            .and_then(|id| Some((id, p.tokenizer.decode(&[id]).ok()?)));
        AppState {
            anchor,
            engine: p.engine,
            tokenizer: Arc::new(p.tokenizer),
            model_name: p.model_name,
            template: p.template,
            bos: p.bos,
            defaults: p.defaults,
            default_max_tokens: p.default_max_tokens,
            limits: p.limits,
            api_key: p.api_key.filter(|k| !k.is_empty()),
            streams: Arc::new(Semaphore::new(p.max_streams)),
            max_streams: p.max_streams,
            metrics: Metrics::new(),
            ids: AtomicU64::new(0),
            started: unix_now(),
        }
    }

    fn check_model(&self, asked: Option<&str>) -> Result<(), ApiError> {
        match asked {
            Some(m) if m != self.model_name => Err(ApiError::unknown_model(m, &self.model_name)),
            _ => Ok(()),
        }
    }

    /// A response id unique for this server's life.
    fn next_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{:x}{n:06x}", self.started)
    }

    fn now(&self) -> u64 {
        unix_now()
    }

    fn context(&self) -> usize {
        self.engine.config().context
    }

    fn stream_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::busy(format!(
                "{} streams are already open, the most this server allows; retry later",
                self.max_streams
            ))
        })
    }

    /// BOS and the text's tokens, as `generate` and `chat` tokenise a prompt.
    fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, ApiError> {
        let mut ids = vec![self.bos];
        ids.extend(
            self.tokenizer
                .encode(text)
                .map_err(|e| ApiError::invalid_param("prompt", e.to_string()))?,
        );
        Ok(ids)
    }

    /// A token as text, for log-probability listings. Decoded after an anchor token and cut
    /// from it, because decoders treat the start of a text specially (SentencePiece drops the
    /// space of a first `▁word`), and a token's text is what it adds in the middle of one.
    fn token_text(&self, id: u32) -> String {
        let alone = || self.tokenizer.decode(&[id]).unwrap_or_default();
        let Some((anchor, anchor_text)) = &self.anchor else {
            return alone();
        };
        match self.tokenizer.decode(&[*anchor, id]) {
            Ok(text) => text
                .strip_prefix(anchor_text.as_str())
                .map_or_else(alone, String::from),
            Err(_) => alone(),
        }
    }

    /// The request's sampling over the model's defaults; without a seed, each request draws
    /// its own.
    fn sampling(&self, c: &Common) -> Result<SamplingParams, ApiError> {
        let d = self.defaults;
        let p = SamplingParams {
            temperature: c.temperature.unwrap_or(d.temperature),
            top_p: c.top_p.unwrap_or(d.top_p),
            top_k: c.top_k.unwrap_or(d.top_k),
            repetition_penalty: c.repetition_penalty.unwrap_or(d.repetition_penalty),
            seed: c.seed.unwrap_or_else(rand::random),
        };
        p.check().map_err(ApiError::invalid)?;
        Ok(p)
    }
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// A body that could not be read: too large (413) or cut off.
fn body_error(rejection: BytesRejection) -> ApiError {
    ApiError {
        status: rejection.status(),
        ..ApiError::invalid(rejection.body_text())
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": state.model_name, "object": "model", "created": state.started, "owned_by": "minicpm",
    }]}))
}

async fn prometheus(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(state.engine.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_key(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(key) = &state.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => {
                return Err(ApiError::unauthorized(
                    "this server needs an API key: send `Authorization: Bearer KEY`",
                ))
            }
            Some(g) if !same_secret(g.as_bytes(), key.as_bytes()) => {
                return Err(ApiError::unauthorized("the API key is not valid"))
            }
            Some(_) => {}
        }
    }
    Ok(next.run(req).await)
}

/// Counts each request by route and status and times it to its response's headers.
async fn observe(
    State(state): State<Arc<AppState>>,
    path: MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(req).await;
    let route = path.as_str().to_string();
    state
        .metrics
        .latency
        .get_or_create(&RouteOnly {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RouteLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let protected = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/chat/completions", post(chat::handle))
        .route("/metrics", get(prometheus))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Serves until Ctrl-C or SIGTERM on a small tokio runtime (the model computes on its own
/// threads); `on_ready` gets the bound address, which tells the port when 0 was asked for.
pub fn serve(
    state: AppState,
    addr: SocketAddr,
    max_body_bytes: usize,
    on_ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?);
        let app = router(Arc::new(state), max_body_bytes);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
