//! Autoregressive generation on the runtime for one or many requests at once: the prompts are
//! prefilled together in one forward pass, then every unfinished sequence advances by one token
//! per pass, each with its own sampler.

use super::forward::{Logits, RuntimeError, Sequence};
use super::model::InferenceModel;
use crate::sampling::{Sampler, SamplingParams};

#[derive(Debug, Clone)]
pub struct Request {
    /// Token ids, BOS included if the model wants one; empty means BOS alone.
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
}

impl InferenceModel {
    /// The longest sequence this model may be run on: the trained context, or any length when
    /// the config scales RoPE beyond it (the cache is then the limit).
    pub fn context_limit(&self) -> usize {
        match self.config.rope_scaling {
            Some(_) => usize::MAX,
            None => self.config.max_position_embeddings,
        }
    }

    /// Generates for every request. `on_token(i, token)` sees each new token of request `i` as
    /// it is chosen and stops that request by returning false. A request ends at an EOS id of
    /// the config (returned, not shown to `on_token`), after `max_new_tokens`, or at the context
    /// limit. Returns the new tokens of each request.
    pub fn generate(
        &self,
        requests: &[Request],
        mut on_token: impl FnMut(usize, u32) -> bool,
    ) -> Result<Vec<Vec<u32>>, RuntimeError> {
        let limit = self.context_limit();
        let prompts: Vec<Vec<u32>> = requests
            .iter()
            .map(|r| match r.prompt.is_empty() {
                true => vec![self.config.bos_token_id],
                false => r.prompt.clone(),
            })
            .collect();
        for p in &prompts {
            if p.len() > limit {
                return Err(RuntimeError::PromptTooLong {
                    len: p.len(),
                    limit,
                });
            }
        }
        let capacity = prompts
            .iter()
            .zip(requests)
            .map(|(p, r)| (p.len() + r.max_new_tokens).min(limit))
            .max()
            .unwrap_or(0);
        let mut cache = self.new_cache(requests.len(), capacity);
        let mut samplers: Vec<Sampler> =
            requests.iter().map(|r| Sampler::new(r.sampling)).collect();
        let mut history = prompts.clone();
        let mut outputs = vec![Vec::new(); requests.len()];
        let mut inputs = prompts;
        let mut live: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].max_new_tokens > 0)
            .collect();
        while !live.is_empty() {
            let seqs: Vec<Sequence> = live
                .iter()
                .map(|&i| Sequence {
                    slot: i,
                    tokens: &inputs[i],
                })
                .collect();
            let logits = self.forward(&mut cache, &seqs, Logits::Last)?;
            let vocab = logits.len() / live.len();
            let mut still = Vec::with_capacity(live.len());
            for (row, &i) in logits.chunks_exact(vocab).zip(&live) {
                let next = samplers[i].sample(row, &history[i]);
                outputs[i].push(next);
                history[i].push(next);
                inputs[i] = vec![next];
                let done = self.config.eos_token_id.contains(next)
                    || !on_token(i, next)
                    || outputs[i].len() >= requests[i].max_new_tokens
                    || cache.len(i) >= capacity;
                if !done {
                    still.push(i);
                }
            }
            live = still;
        }
        Ok(outputs)
    }
}
