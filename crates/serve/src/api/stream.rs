//! Server-sent events in OpenAI's chunk format: one `data: {...}` per piece of text as the engine
//! produces it, a chunk with each choice's `finish_reason`, the usage if asked for, then
//! `data: [DONE]`. The stream owns the request's jobs: a client that goes away drops it, and the
//! engine frees the slots at its next step.

use super::generation::{self, ChoiceState, Plan, Submitted, Update};
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
    submitted: Submitted,
    choices: Vec<ChoiceState>,
    live: usize,
    pending: VecDeque<SseEvent>,
    chunk: C,
    usage: Option<U>,
    prompt_tokens: usize,
    completion_tokens: usize,
    first_token_seen: bool,
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
    let choices = generation::choice_states(&state, &plan);
    let follow = Follow {
        live: choices.len(),
        prompt_tokens: plan.prompts.iter().map(|p| p.ids.len()).sum(),
        state,
        submitted,
        choices,
        pending: first.iter().map(data).collect(),
        chunk,
        usage: Some(usage),
        completion_tokens: 0,
        first_token_seen: false,
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
            if self.live == 0 {
                let usage = super::usage(self.prompt_tokens, self.completion_tokens);
                if let Some(u) = self.usage.take().and_then(|f| f(usage)) {
                    self.pending.push_back(data(&u));
                }
                self.finish();
                continue;
            }
            let Some((i, event)) = self.submitted.events.recv().await else {
                let e = super::error::ApiError::internal("the engine stopped");
                self.pending.push_back(data(&e.body()));
                self.finish();
                continue;
            };
            match self.choices[i].apply(event) {
                Err(e) => {
                    self.pending.push_back(data(&e.body()));
                    self.finish();
                }
                Ok(update) => {
                    if update.token.is_some() {
                        self.completion_tokens += 1;
                        let (state, submitted) = (&self.state, &self.submitted);
                        generation::count_token(state, submitted, &mut self.first_token_seen);
                    }
                    if update.finished.is_some() {
                        self.live -= 1;
                        self.submitted.cancel(i);
                    }
                    // A chunk per token, as OpenAI streams, even while its text is held back.
                    if update.token.is_some() || update.finished.is_some() {
                        let c = (self.chunk)(i, &update);
                        self.pending.push_back(data(&c));
                    }
                }
            }
        }
    }

    fn finish(&mut self) {
        self.pending.push_back(SseEvent::default().data("[DONE]"));
        self.done = true;
    }
}
