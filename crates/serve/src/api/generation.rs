//! What the completion and chat routes share: turning a checked request into engine jobs (each
//! prompt `n` times), and following each choice's events into text, tokens and
//! log-probabilities, with stop strings ending the choice as soon as they appear.

use super::error::ApiError;
use super::AppState;
use crate::engine::{Event, Finish, Job, SubmitError};
use crate::logprobs::TokenLogprob;
use crate::sampling::SamplingParams;
use crate::text_stream::TextStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::OwnedSemaphorePermit;

/// One prompt, tokenised, with the text an echo shows.
pub struct PromptIds {
    pub ids: Vec<u32>,
    pub text: String,
}

/// The generation a request asks for, resolved against the model's defaults and checked.
pub struct Plan {
    pub prompts: Vec<PromptIds>,
    pub n: usize,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stops: Vec<String>,
    /// Alternatives per generated token, when log-probabilities are asked for.
    pub logprobs: Option<usize>,
    /// Alternatives per prompt token, when the prompt's log-probabilities are asked for.
    pub prompt_logprobs: Option<usize>,
}

/// The jobs of a plan as the engine runs them: events tagged with their choice's index.
pub struct Submitted {
    pub events: UnboundedReceiver<(usize, Event)>,
    cancels: Vec<Arc<AtomicBool>>,
    pub started: Instant,
}

impl Submitted {
    /// Ends choice `i` at the engine's next step (a stop string matched).
    pub fn cancel(&self, i: usize) {
        self.cancels[i].store(true, Ordering::Relaxed);
    }
}

/// The length limit a request meets: `max_tokens` if given (it must fit beside the longest
/// prompt), else `default` clipped to what the context leaves.
pub fn max_tokens(
    asked: Option<usize>,
    default: usize,
    longest_prompt: usize,
    context: usize,
) -> Result<usize, ApiError> {
    if longest_prompt > context {
        return Err(ApiError::invalid_param(
            "prompt",
            format!(
                "the prompt has {longest_prompt} tokens, more than this server's context of {context}"
            ),
        ));
    }
    let room = context - longest_prompt;
    match asked {
        Some(m) if m > room => Err(ApiError::invalid_param(
            "max_tokens",
            format!(
                "this server's context is {context} tokens, but {} were requested ({longest_prompt} in the prompt, {m} to generate)",
                longest_prompt.saturating_add(m)
            ),
        )),
        Some(m) => Ok(m),
        None => Ok(default.min(room)),
    }
}

/// Queues a request's jobs; a stream first takes its place among the open streams, so that a
/// refused stream costs nothing.
pub fn start(
    state: &AppState,
    plan: &Plan,
    stream: bool,
) -> Result<(Submitted, Option<OwnedSemaphorePermit>), ApiError> {
    let permit = match stream {
        true => Some(state.stream_permit()?),
        false => None,
    };
    Ok((submit(state, plan)?, permit))
}

/// Queues every choice; choice `p * n + j` is prompt `p`'s `j`-th sample, seeded `seed + j` so
/// that the choices differ and a request with a seed is reproducible.
fn submit(state: &AppState, plan: &Plan) -> Result<Submitted, ApiError> {
    // A request larger than the queue and the slots together could never be taken: that is
    // the request's fault (400), not a busy server's (429).
    let engine = state.engine.config();
    let (choices, room) = (plan.prompts.len() * plan.n, engine.queue + engine.slots);
    if choices > room {
        return Err(ApiError::invalid_param(
            "n",
            format!("the request asks for {choices} choices (prompts x n); this server runs or queues at most {room}"),
        ));
    }
    let started = Instant::now();
    let (tx, events) = unbounded_channel();
    let mut cancels = Vec::new();
    for (p, prompt) in plan.prompts.iter().enumerate() {
        for j in 0..plan.n {
            let index = p * plan.n + j;
            let cancel = Arc::new(AtomicBool::new(false));
            cancels.push(cancel.clone());
            let tx = tx.clone();
            let job = Job {
                prompt: prompt.ids.clone(),
                max_new_tokens: plan.max_tokens,
                sampling: SamplingParams {
                    seed: plan.sampling.seed.wrapping_add(j as u64),
                    ..plan.sampling
                },
                logprobs: plan.logprobs,
                prompt_logprobs: plan.prompt_logprobs,
                sink: Box::new(move |e| {
                    !cancel.load(Ordering::Relaxed) && tx.send((index, e)).is_ok()
                }),
            };
            state.metrics.prompt_tokens.inc_by(prompt.ids.len() as u64);
            // Should a later choice be refused, dropping `events` ends the earlier ones.
            state.engine.submit(job).map_err(|e| match e {
                SubmitError::QueueFull(_) => ApiError::busy(e.to_string()),
                SubmitError::Invalid(msg) => ApiError::invalid_param("prompt", msg),
                SubmitError::Stopped => ApiError::internal(e.to_string()),
            })?;
        }
    }
    Ok(Submitted {
        events,
        cancels,
        started,
    })
}

type Decode = Box<dyn Fn(&[u32]) -> Option<String> + Send + Sync>;

/// One choice as its events arrive.
pub struct ChoiceState {
    stream: TextStream<Decode>,
    pub text: String,
    pub tokens: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
    pub prompt_logprobs: Option<Vec<TokenLogprob>>,
    /// `stop` or `length` once the choice has ended.
    pub finish: Option<&'static str>,
}

/// What one event changed in a choice.
#[derive(Default)]
pub struct Update {
    /// Text that became safe to show.
    pub text: String,
    /// The token this event added and its log-probabilities.
    pub token: Option<(u32, Option<TokenLogprob>)>,
    /// The choice ended with this reason.
    pub finished: Option<&'static str>,
}

impl ChoiceState {
    pub fn new(state: &AppState, prompt: &[u32], stops: &[String]) -> Self {
        let tokenizer = state.tokenizer.clone();
        let decode: Decode = Box::new(move |ids| tokenizer.decode(ids).ok());
        ChoiceState {
            stream: TextStream::new(decode, prompt, stops.to_vec()),
            text: String::new(),
            tokens: Vec::new(),
            logprobs: Vec::new(),
            prompt_logprobs: None,
            finish: None,
        }
    }

    /// Applies `event`; a stop string that appears ends the choice (the caller cancels its job).
    pub fn apply(&mut self, event: Event) -> Result<Update, ApiError> {
        let mut update = Update::default();
        if self.finish.is_some() {
            return Ok(update);
        }
        match event {
            Event::Prompt(lps) => self.prompt_logprobs = Some(lps),
            Event::Token { token, logprob } => {
                let piece = self.stream.push(token);
                self.tokens.push(token);
                if let Some(lp) = &logprob {
                    self.logprobs.push(lp.clone());
                }
                update.token = Some((token, logprob));
                update.text = piece.text;
                if piece.stop {
                    update.finished = Some("stop");
                }
            }
            Event::Done(Finish::Stop) => update.finished = Some("stop"),
            Event::Done(Finish::Length) => update.finished = Some("length"),
            Event::Done(Finish::Error(e)) => return Err(ApiError::internal(e)),
        }
        if update.finished.is_some() {
            update.text.push_str(&self.stream.finish());
            self.finish = update.finished;
        }
        self.text.push_str(&update.text);
        Ok(update)
    }
}

/// A request's choices as their jobs' events arrive: the one loop that both a whole response
/// and a stream read. A token is counted in the metrics (the request's first one timed), and a
/// choice that ends has its job cancelled at once (a stop string may end it before the engine
/// does).
pub struct Progress {
    submitted: Submitted,
    pub choices: Vec<ChoiceState>,
    live: usize,
    first_token_seen: bool,
}

impl Progress {
    pub fn new(state: &AppState, plan: &Plan, submitted: Submitted) -> Self {
        let choices: Vec<ChoiceState> = plan
            .prompts
            .iter()
            .flat_map(|p| (0..plan.n).map(|_| ChoiceState::new(state, &p.ids, &plan.stops)))
            .collect();
        Progress {
            live: choices.len(),
            submitted,
            choices,
            first_token_seen: false,
        }
    }

    /// The next update and its choice's index; `None` once every choice has ended.
    pub async fn next(&mut self, state: &AppState) -> Result<Option<(usize, Update)>, ApiError> {
        if self.live == 0 {
            return Ok(None);
        }
        let (i, event) = self
            .submitted
            .events
            .recv()
            .await
            .ok_or_else(|| ApiError::internal("the engine stopped"))?;
        let update = self.choices[i].apply(event)?;
        if update.token.is_some() {
            state.metrics.generated_tokens.inc();
            if !std::mem::replace(&mut self.first_token_seen, true) {
                let ttft = self.submitted.started.elapsed().as_secs_f64();
                state.metrics.time_to_first_token.observe(ttft);
            }
        }
        if update.finished.is_some() {
            self.live -= 1;
            self.submitted.cancel(i);
        }
        Ok(Some((i, update)))
    }

    /// Tokens generated so far, over every choice.
    pub fn completion_tokens(&self) -> usize {
        self.choices.iter().map(|c| c.tokens.len()).sum()
    }
}

/// Every choice of `plan` run to its end (the non-streaming routes).
pub async fn collect(
    state: &AppState,
    plan: &Plan,
    submitted: Submitted,
) -> Result<Vec<ChoiceState>, ApiError> {
    let mut progress = Progress::new(state, plan, submitted);
    while progress.next(state).await?.is_some() {}
    Ok(progress.choices)
}
