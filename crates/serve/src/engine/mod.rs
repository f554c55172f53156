//! Continuous batching: one thread owns the model and a KV cache of a fixed number of slots, and
//! runs one forward pass per step over every admitted request. A request joins the running batch
//! at the next step after a slot frees up and leaves it the step it ends; a long prompt is fed in
//! chunks, so the sequences already decoding keep getting a token every step while it fills.
//!
//! The engine knows nothing of HTTP: a request brings a `sink` that receives its events and
//! answers false once nobody is listening (the client went away, a stop string matched), which
//! ends the request and frees its slot at once.

mod scheduler;
#[cfg(test)]
mod tests;

use crate::logprobs::TokenLogprob;
use crate::runtime::{CacheError, InferenceModel};
use crate::sampling::SamplingParams;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Sequences decoded together (KV cache slots).
    pub slots: usize,
    /// Tokens each slot holds: prompt and generation together.
    pub context: usize,
    /// Requests waiting for a slot before new ones are refused.
    pub queue: usize,
    /// Prompt tokens fed per step, over all prompts being filled.
    pub prefill_chunk: usize,
}

/// What a request's sink receives, in this order: `Prompt` once (if asked for), a `Token` per
/// generated token, then `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Log-probabilities of the prompt's tokens after the first (the first has no context).
    Prompt(Vec<TokenLogprob>),
    /// A generated token; an end-of-sequence token too (it is part of the output, as OpenAI's
    /// log-probabilities count it), followed by `Done(Stop)`.
    Token {
        token: u32,
        /// Present when the request asked for log-probabilities.
        logprob: Option<TokenLogprob>,
    },
    Done(Finish),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// The model produced an end-of-sequence token.
    Stop,
    /// `max_new_tokens` reached, or the slot's context is full.
    Length,
    /// The model could not run the request's batch (a defect: the input was checked at submit).
    Error(String),
}

pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

pub struct Job {
    /// Token ids, BOS included where the model wants one; not empty.
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Log-probability of each generated token and this many alternatives.
    pub logprobs: Option<usize>,
    /// Log-probabilities of the prompt's tokens (OpenAI's `echo`) with this many alternatives.
    pub prompt_logprobs: Option<usize>,
    pub sink: Sink,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: {0} requests are already waiting; retry later")]
    QueueFull(usize),
    #[error("{0}")]
    Invalid(String),
    #[error("the engine has stopped")]
    Stopped,
}

/// Counters the engine keeps as it runs, read by the server's metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub steps: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub cancelled: AtomicU64,
}

impl EngineStats {
    fn add(counter: &AtomicU64, by: usize) {
        counter.fetch_add(by as u64, Ordering::Relaxed);
    }
}

/// The handle requests are submitted through; the engine thread stops once every handle is
/// dropped and its requests have finished.
pub struct Engine {
    queue: SyncSender<Job>,
    stats: Arc<EngineStats>,
    config: EngineConfig,
    vocab: usize,
}

impl Engine {
    /// Starts the engine thread, its KV cache allocated first, so that slots and a context
    /// beyond the machine are an error here rather than a failure inside the thread.
    pub fn start(model: InferenceModel, config: EngineConfig) -> Result<Engine, CacheError> {
        let config = EngineConfig {
            slots: config.slots.max(1),
            context: config.context.max(1),
            queue: config.queue,
            prefill_chunk: config.prefill_chunk.max(1),
        };
        let cache = model.try_new_cache(config.slots, config.context)?;
        let (queue, jobs) = sync_channel(config.queue);
        let stats = Arc::new(EngineStats::default());
        let vocab = model.config.vocab_size;
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || scheduler::run(model, cache, config, jobs, thread_stats))
            .expect("spawning the engine thread");
        Ok(Engine {
            queue,
            stats,
            config,
            vocab,
        })
    }

    pub fn config(&self) -> EngineConfig {
        self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Queues `job`, refusing it at once when its tokens cannot run on this model or the queue
    /// is full, so that a request admitted to the batch never fails the others.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.check(&job).map_err(SubmitError::Invalid)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.queue.try_send(job).map_err(|e| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => SubmitError::QueueFull(self.config.queue),
                TrySendError::Disconnected(_) => SubmitError::Stopped,
            }
        })
    }

    fn check(&self, job: &Job) -> Result<(), String> {
        let context = self.config.context;
        if job.prompt.is_empty() {
            return Err("the prompt has no tokens".into());
        }
        if job.prompt.len() > context {
            return Err(format!(
                "the prompt has {} tokens, more than this server's context of {context}",
                job.prompt.len()
            ));
        }
        if let Some(&t) = job.prompt.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(format!(
                "token id {t} is outside the vocabulary of {}",
                self.vocab
            ));
        }
        job.sampling.check()
    }
}
