//! The engine thread: admit waiting requests into free slots, run one forward pass over every
//! running request (a chunk of prompt for those still filling, one token for those decoding),
//! hand each its results, and retire those that ended.

use super::{EngineConfig, EngineStats, Event, Finish, Job};
use crate::logprobs::{token_logprob, TokenLogprob};
use crate::runtime::{InferenceModel, KvCache, Logits, Sequence};
use crate::sampling::Sampler;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

/// A request holding a slot.
struct Running {
    job: Job,
    slot: usize,
    sampler: Sampler,
    /// Prompt tokens already in the cache.
    fed: usize,
    /// Prompt and generated tokens (the repetition penalty's history).
    history: Vec<u32>,
    generated: usize,
    prompt_logprobs: Vec<TokenLogprob>,
    /// The token to feed next once the prompt is in.
    next: Option<u32>,
}

impl Running {
    fn filling(&self) -> bool {
        self.fed < self.job.prompt.len()
    }

    fn send(&mut self, event: Event) -> bool {
        (self.job.sink)(event)
    }
}

/// What one running request feeds this step.
struct Planned {
    index: usize,
    tokens: Vec<u32>,
    logits: Logits,
}

pub(super) fn run(
    model: InferenceModel,
    mut cache: KvCache,
    config: EngineConfig,
    jobs: Receiver<Job>,
    stats: Arc<EngineStats>,
) {
    let mut free: Vec<usize> = (0..config.slots).rev().collect();
    let mut running: Vec<Running> = Vec::new();
    let mut open = true;
    while open || !running.is_empty() {
        // Admit: wait only when nothing is running.
        while let Some(&slot) = free.last() {
            let job = if running.is_empty() {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            free.pop();
            cache.truncate(slot, 0);
            running.push(Running {
                sampler: Sampler::new(job.sampling),
                history: job.prompt.clone(),
                slot,
                fed: 0,
                generated: 0,
                prompt_logprobs: Vec::new(),
                next: None,
                job,
            });
        }
        stats.running.store(running.len(), Ordering::Relaxed);
        if running.is_empty() {
            continue;
        }
        let plan = plan_step(&running, config.prefill_chunk);
        let seqs: Vec<Sequence> = plan
            .iter()
            .map(|p| Sequence {
                slot: running[p.index].slot,
                tokens: &p.tokens,
            })
            .collect();
        let which: Vec<Logits> = plan.iter().map(|p| p.logits).collect();
        let logits = match model.forward_each(&mut cache, &seqs, &which) {
            Ok(l) => l,
            Err(e) => {
                // Inputs are checked at submit, so this is a defect: fail the batch, keep serving.
                for mut r in running.drain(..) {
                    r.send(Event::Done(Finish::Error(e.to_string())));
                    free.push(r.slot);
                }
                stats.running.store(0, Ordering::Relaxed);
                continue;
            }
        };
        stats.steps.fetch_add(1, Ordering::Relaxed);
        let vocab = model.config.vocab_size;
        let mut rows = logits.chunks_exact(vocab);
        let mut ended = Vec::new();
        for p in &plan {
            let r = &mut running[p.index];
            let n_rows = match p.logits {
                Logits::All => p.tokens.len(),
                Logits::Last => 1,
                Logits::Skip => 0,
            };
            let mine: Vec<&[f32]> = rows.by_ref().take(n_rows).collect();
            let live = advance(r, p, &mine, &model, &cache, &stats);
            if !live {
                ended.push(p.index);
            }
        }
        // Retire from the back so the indices stay valid.
        ended.sort_unstable();
        for i in ended.into_iter().rev() {
            let r = running.remove(i);
            cache.truncate(r.slot, 0);
            free.push(r.slot);
        }
        stats.running.store(running.len(), Ordering::Relaxed);
    }
}

/// Every decoding request feeds its one token; prompts being filled share `chunk` tokens, the
/// earliest admitted first, so that a long prompt is spread over several steps.
fn plan_step(running: &[Running], chunk: usize) -> Vec<Planned> {
    let mut budget = chunk;
    let mut plan = Vec::with_capacity(running.len());
    for (index, r) in running.iter().enumerate() {
        if !r.filling() {
            let token = r.next.expect("a decoding request has its next token");
            plan.push(Planned {
                index,
                tokens: vec![token],
                logits: Logits::Last,
            });
            continue;
        }
        if budget == 0 {
            continue;
        }
        let prompt = &r.job.prompt;
        let take = (prompt.len() - r.fed).min(budget);
        budget -= take;
        let completes = r.fed + take == prompt.len();
        let logits = match (r.job.prompt_logprobs.is_some(), completes) {
            (true, _) => Logits::All,
            (false, true) => Logits::Last,
            (false, false) => Logits::Skip,
        };
        plan.push(Planned {
            index,
            tokens: prompt[r.fed..r.fed + take].to_vec(),
            logits,
        });
    }
    plan
}

/// Takes one step's logits for `r`; false when the request has ended.
fn advance(
    r: &mut Running,
    p: &Planned,
    rows: &[&[f32]],
    model: &InferenceModel,
    cache: &KvCache,
    stats: &EngineStats,
) -> bool {
    if r.filling() {
        let start = r.fed;
        let prompt_len = r.job.prompt.len();
        r.fed += p.tokens.len();
        EngineStats::add(&stats.prompt_tokens, p.tokens.len());
        if let Some(top) = r.job.prompt_logprobs {
            // Row j predicts the token at position start + j + 1.
            for (j, row) in rows.iter().enumerate() {
                let position = start + j + 1;
                if position < prompt_len {
                    let lp = token_logprob(row, r.job.prompt[position], top);
                    r.prompt_logprobs.push(lp);
                }
            }
        }
        if r.filling() {
            return true;
        }
        if r.job.prompt_logprobs.is_some() {
            let lps = std::mem::take(&mut r.prompt_logprobs);
            if !r.send(Event::Prompt(lps)) {
                return cancelled(stats);
            }
        }
        if r.job.max_new_tokens == 0 {
            r.send(Event::Done(Finish::Length));
            return false;
        }
    }
    let row = rows
        .last()
        .expect("the step's last row samples the next token");
    let token = r.sampler.sample(row, &r.history);
    r.generated += 1;
    EngineStats::add(&stats.generated_tokens, 1);
    r.history.push(token);
    let logprob = r.job.logprobs.map(|top| token_logprob(row, token, top));
    if !r.send(Event::Token { token, logprob }) {
        return cancelled(stats);
    }
    if model.config.eos_token_id.contains(token) {
        r.send(Event::Done(Finish::Stop));
        return false;
    }
    if r.generated >= r.job.max_new_tokens || cache.len(r.slot) >= cache.capacity() {
        r.send(Event::Done(Finish::Length));
        return false;
    }
    r.next = Some(token);
    true
}

fn cancelled(stats: &EngineStats) -> bool {
    EngineStats::add(&stats.cancelled, 1);
    false
}
