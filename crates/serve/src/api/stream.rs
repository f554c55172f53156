//! Server-sent events in OpenAI's chunk format: one `data: {...}` per piece of text as the engine
//! produces it, a chunk with each choice's `finish_reason`, the usage if asked for, then
//! `data: [DONE]`. The stream owns the request's jobs: a client that goes away drops it, and the
//! engine frees the slots at its next step.

use super::generation::{Plan, Progress, Submitted, Update};
use super::AppState;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

struct Follow<C, U> {
    state: Arc<AppState>,
    progress: Progress,
    pending: VecDeque<SseEvent>,
    chunk: C,
    usage: Option<U>,
    prompt_tokens: usize,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

fn data(value: &Value) -> SseEvent {
    SseEvent::default().data(value.to_string())
}

/// Streams `plan`'s choices: `first` chunks go out at once (a chat's role, an echoed prompt),
/// then `chunk(index, update)` for every update, then `usage(usage_json)` if it gives a chunk.
pub fn follow<C, U>(
    state: Arc<AppState>,
    plan: Plan,
    submitted: Submitted,
    first: Vec<Value>,
    permit: OwnedSemaphorePermit,
    chunk: C,
    usage: U,
) -> Response
where
    C: FnMut(usize, &Update) -> Value + Send + 'static,
    U: FnOnce(Value) -> Option<Value> + Send + 'static,
{
    let follow = Follow {
        prompt_tokens: plan.prompts.iter().map(|p| p.ids.len()).sum(),
        progress: Progress::new(&state, &plan, submitted),
        state,
        pending: first.iter().map(data).collect(),
        chunk,
        usage: Some(usage),
        done: false,
        _permit: permit,
    };
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok::<_, Infallible>(event), f))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

impl<C, U> Follow<C, U>
where
    C: FnMut(usize, &Update) -> Value,
    U: FnOnce(Value) -> Option<Value>,
{
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            match self.progress.next(&self.state).await {
                Ok(None) => {
                    let completion_tokens = self.progress.completion_tokens();
                    let usage = super::usage(self.prompt_tokens, completion_tokens);
                    if let Some(u) = self.usage.take().and_then(|f| f(usage)) {
                        self.pending.push_back(data(&u));
                    }
                    self.finish();
                }
                Ok(Some((i, update))) => {
                    // A chunk per token, as OpenAI streams, even while its text is held back.
                    if update.token.is_some() || update.finished.is_some() {
                        let c = (self.chunk)(i, &update);
                        self.pending.push_back(data(&c));
                    }
                }
                Err(e) => {
                    self.pending.push_back(data(&e.body()));
                    self.finish();
                }
            }
        }
    }

    fn finish(&mut self) {
        self.pending.push_back(SseEvent::default().data("[DONE]"));
        self.done = true;
    }
}
