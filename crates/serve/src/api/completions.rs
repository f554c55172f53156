//! `POST /v1/completions`: OpenAI's legacy completions, the route lm-evaluation-harness's
//! `local-completions` model scores log-likelihoods through (`echo` with `max_tokens: 1`, reading
//! the prompt's `token_logprobs`).

use super::error::ApiError;
use super::generation::{self, ChoiceState, Plan, PromptIds, Update};
use super::request::{self, CompletionRequest, Prompt};
use super::stream;
use super::AppState;
use crate::logprobs::TokenLogprob;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub async fn handle(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(super::body_error)?;
    let req = request::completion(&body, &state.limits)?;
    state.check_model(req.common.model.as_deref())?;
    let plan = plan(&state, &req)?;
    let (submitted, permit) = generation::start(&state, &plan, req.common.stream)?;
    let id = format!("cmpl-{}", state.next_id());
    if let Some(permit) = permit {
        return Ok(stream_response(state, plan, req, submitted, id, permit));
    }
    let choices = generation::collect(&state, &plan, submitted).await?;
    let prompt_tokens: usize = plan.prompts.iter().map(|p| p.ids.len()).sum();
    let completion_tokens: usize = choices.iter().map(|c| c.tokens.len()).sum();
    let body = json!({
        "id": id,
        "object": "text_completion",
        "created": state.now(),
        "model": state.model_name,
        "choices": choices.iter().enumerate().map(|(i, c)| {
            let prompt = &plan.prompts[i / plan.n];
            let text = match req.echo {
                true => format!("{}{}", prompt.text, c.text),
                false => c.text.clone(),
            };
            json!({
                "index": i,
                "text": text,
                "logprobs": req.logprobs.map(|_| logprobs_json(&state, prompt, c, req.echo)),
                "finish_reason": c.finish,
            })
        }).collect::<Vec<_>>(),
        "usage": super::usage(prompt_tokens, completion_tokens),
    });
    Ok(Json(body).into_response())
}

fn plan(state: &AppState, req: &CompletionRequest) -> Result<Plan, ApiError> {
    let prompts = req
        .prompts
        .iter()
        .map(|p| match p {
            Prompt::Text(text) => Ok(PromptIds {
                ids: state.encode_prompt(text)?,
                text: text.clone(),
            }),
            Prompt::Ids(ids) => Ok(PromptIds {
                ids: ids.clone(),
                text: state.tokenizer.decode(ids).unwrap_or_default(),
            }),
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    // OpenAI's default for this route: 16 tokens.
    let max_tokens = generation::max_tokens(req.common.max_tokens, 16, longest, state.context())?;
    Ok(Plan {
        prompts,
        n: req.common.n,
        max_tokens,
        sampling: state.sampling(&req.common)?,
        stops: req.common.stop.clone(),
        logprobs: req.logprobs,
        prompt_logprobs: req.logprobs.filter(|_| req.echo),
    })
}

/// OpenAI's completion `logprobs` object: token texts, their log-probabilities, the most likely
/// alternatives and each token's character offset in the choice's text. With `echo` it covers
/// the prompt too, whose first token has no log-probability (`null`).
fn logprobs_json(state: &AppState, prompt: &PromptIds, c: &ChoiceState, echo: bool) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut push = |id: u32, lp: Option<&TokenLogprob>| {
        tokens.push(state.token_text(id));
        token_logprobs.push(lp.map_or(Value::Null, |l| json!(l.logprob)));
        top_logprobs.push(lp.map_or(Value::Null, |l| top_map(state, l)));
    };
    if echo {
        let lps = c.prompt_logprobs.as_deref().unwrap_or(&[]);
        push(prompt.ids[0], None);
        for (&id, lp) in prompt.ids[1..].iter().zip(lps) {
            push(id, Some(lp));
        }
    }
    for (&id, lp) in c.tokens.iter().zip(&c.logprobs) {
        push(id, Some(lp));
    }
    let mut offset = 0;
    let text_offset: Vec<usize> = tokens
        .iter()
        .map(|t| {
            let at = offset;
            offset += t.chars().count();
            at
        })
        .collect();
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

/// `{token text: log-probability}` of the alternatives, most likely first; two ids with the
/// same text keep the likelier one's entry.
fn top_map(state: &AppState, lp: &TokenLogprob) -> Value {
    let mut map = Map::new();
    for &(id, l) in &lp.top {
        map.entry(state.token_text(id)).or_insert(json!(l));
    }
    Value::Object(map)
}

fn stream_response(
    state: Arc<AppState>,
    plan: Plan,
    req: CompletionRequest,
    submitted: generation::Submitted,
    id: String,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let created = state.now();
    let chunk = {
        let (id, model) = (id, state.model_name.clone());
        move |choices: Value| {
            json!({"id": id, "object": "text_completion", "created": created,
                   "model": model, "choices": choices})
        }
    };
    let choice = |index: usize, text: &str, logprobs: Value, finish: Option<&str>| json!([{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]);
    // An echoed prompt goes out before anything is generated.
    let first: Vec<Value> = match req.echo {
        true => (0..plan.prompts.len() * plan.n)
            .map(|i| chunk(choice(i, &plan.prompts[i / plan.n].text, Value::Null, None)))
            .collect(),
        false => Vec::new(),
    };
    let (st, with_logprobs, include_usage) = (
        state.clone(),
        req.logprobs.is_some(),
        req.common.include_usage,
    );
    let usage_chunk = chunk.clone();
    stream::follow(
        state,
        plan,
        submitted,
        first,
        permit,
        move |index, update: &Update| {
            let logprobs = match (&update.token, with_logprobs) {
                (Some((tok, Some(lp))), true) => json!({
                    "tokens": [st.token_text(*tok)],
                    "token_logprobs": [lp.logprob],
                    "top_logprobs": [top_map(&st, lp)],
                }),
                _ => Value::Null,
            };
            chunk(choice(index, &update.text, logprobs, update.finished))
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
