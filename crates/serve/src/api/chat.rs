//! `POST /v1/chat/completions`: the conversation rendered with the model's chat template (the
//! function `chat` and SFT share), the reply generated until the template's end of turn.

use super::error::ApiError;
use super::generation::{self, ChoiceState, Plan, PromptIds, Update};
use super::request::{self, ChatRequest};
use super::stream;
use super::AppState;
use crate::logprobs::TokenLogprob;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn handle(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(super::body_error)?;
    let req = request::chat(&body, &state.limits)?;
    state.check_model(req.common.model.as_deref())?;
    let plan = plan(&state, &req)?;
    let (submitted, permit) = generation::start(&state, &plan, req.common.stream)?;
    let id = format!("chatcmpl-{}", state.next_id());
    if let Some(permit) = permit {
        return Ok(stream_response(state, plan, req, submitted, id, permit));
    }
    let choices = generation::collect(&state, &plan, submitted).await?;
    let completion_tokens: usize = choices.iter().map(|c| c.tokens.len()).sum();
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": state.now(),
        "model": state.model_name,
        "choices": choices.iter().enumerate().map(|(i, c)| json!({
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": req.logprobs.then(|| json!({"content": content_logprobs(&state, c)})),
            "finish_reason": c.finish,
        })).collect::<Vec<_>>(),
        "usage": super::usage(plan.prompts[0].ids.len(), completion_tokens),
    });
    Ok(Json(body).into_response())
}

fn plan(state: &AppState, req: &ChatRequest) -> Result<Plan, ApiError> {
    let text = state.template.render(&req.messages, true);
    let ids = state.encode_prompt(&text)?;
    let default = state.default_max_tokens.unwrap_or(usize::MAX);
    let max_tokens =
        generation::max_tokens(req.common.max_tokens, default, ids.len(), state.context())?;
    let mut stops = state.template.turn_ends();
    stops.extend(req.common.stop.iter().cloned());
    Ok(Plan {
        prompts: vec![PromptIds { ids, text }],
        n: req.common.n,
        max_tokens,
        sampling: state.sampling(&req.common)?,
        stops,
        logprobs: req.logprobs.then_some(req.top_logprobs),
        prompt_logprobs: None,
    })
}

/// One token as chat logprobs show it: its text, UTF-8 bytes and log-probability.
fn token_entry(state: &AppState, id: u32, logprob: f64) -> Value {
    let text = state.token_text(id);
    json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()})
}

fn logprob_entry(state: &AppState, lp: &TokenLogprob) -> Value {
    let mut entry = token_entry(state, lp.token, lp.logprob);
    entry["top_logprobs"] = lp
        .top
        .iter()
        .map(|&(id, l)| token_entry(state, id, l))
        .collect();
    entry
}

fn content_logprobs(state: &AppState, c: &ChoiceState) -> Vec<Value> {
    c.logprobs
        .iter()
        .map(|lp| logprob_entry(state, lp))
        .collect()
}

fn stream_response(
    state: Arc<AppState>,
    plan: Plan,
    req: ChatRequest,
    submitted: generation::Submitted,
    id: String,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let created = state.now();
    let chunk = {
        let (id, model) = (id.clone(), state.model_name.clone());
        move |choices: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created,
                   "model": model, "choices": choices})
        }
    };
    // OpenAI's first chunk of each choice carries the role alone.
    let first = (0..plan.n)
        .map(|i| {
            chunk(
                json!([{"index": i, "delta": {"role": "assistant", "content": ""},
                          "logprobs": null, "finish_reason": null}]),
            )
        })
        .collect();
    let (st, with_logprobs, include_usage) =
        (state.clone(), req.logprobs, req.common.include_usage);
    let usage_chunk = chunk.clone();
    stream::follow(
        state,
        plan,
        submitted,
        first,
        permit,
        move |index, update: &Update| {
            let logprobs = match (&update.token, with_logprobs) {
                (Some((_, Some(lp))), true) => json!({"content": [logprob_entry(&st, lp)]}),
                _ => Value::Null,
            };
            let delta = match update.text.is_empty() {
                true => json!({}),
                false => json!({"content": update.text}),
            };
            chunk(
                json!([{"index": index, "delta": delta, "logprobs": logprobs,
                          "finish_reason": update.finished}]),
            )
        },
        move |usage| {
            include_usage.then(|| {
                let mut c = usage_chunk(json!([]));
                c["usage"] = usage;
                c
            })
        },
    )
}
