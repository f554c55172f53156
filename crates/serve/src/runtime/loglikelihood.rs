//! Log-likelihoods of continuations, as lm-evaluation-harness asks a model for them: for each
//! request (context ids, continuation ids), the summed log-probability of the continuation's
//! tokens given everything before each, and whether every one of them is the model's argmax.
//!
//! Many requests share a forward pass. The model reads the context and all but the last
//! continuation token; logits are taken only at the positions that predict a continuation token.
//! Requests run longest first, so a pass holds requests of similar length, and a pass is filled
//! while its requests times its longest stay within the token budget: that bounds both the
//! pass's work and the cache, which passes reuse (it is reallocated only when a pass needs more
//! slots or positions than it has).

use super::cache::KvCache;
use super::forward::{RuntimeError, Sequence};
use super::model::InferenceModel;
use super::score::token_nll;
use crate::sampling::argmax;

/// One request's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loglikelihood {
    /// Summed natural-log probability of the continuation.
    pub logprob: f64,
    /// Whether each continuation token is the argmax of its position's logits (the first
    /// maximum on ties, as numpy's argmax).
    pub greedy: bool,
}

impl InferenceModel {
    /// The log-likelihood of each request's continuation given its context, in the order of
    /// `requests`. Each needs at least one context token (BOS, for a text scored from its
    /// start) and one continuation token, and the two together, less the last token, must fit
    /// the context limit. `budget` bounds a pass's requests times its longest input; a request
    /// longer than the budget runs alone. `on_pass` hears how many requests each pass scored.
    pub fn loglikelihoods(
        &self,
        requests: &[(Vec<u32>, Vec<u32>)],
        budget: usize,
        mut on_pass: impl FnMut(usize),
    ) -> Result<Vec<Loglikelihood>, RuntimeError> {
        let (limit, vocab) = (self.context_limit(), self.config.vocab_size);
        for (index, (context, continuation)) in requests.iter().enumerate() {
            let bad = |what: String| Err(RuntimeError::BadRequest { index, what });
            if context.is_empty() {
                return bad("no context tokens (give at least BOS)".into());
            }
            if continuation.is_empty() {
                return bad("no continuation tokens".into());
            }
            if let Some(t) = context
                .iter()
                .chain(continuation)
                .find(|&&t| t as usize >= vocab)
            {
                return bad(format!("token id {t} is outside the vocabulary of {vocab}"));
            }
            let len = input_len(context, continuation);
            if len > limit {
                return bad(format!(
                    "{len} tokens to read, more than the model's context of {limit}"
                ));
            }
        }
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(input_len(&requests[i].0, &requests[i].1)));
        let mut results = vec![None; requests.len()];
        let mut cache: Option<KvCache> = None;
        let mut rest = &order[..];
        while !rest.is_empty() {
            let longest = input_len(&requests[rest[0]].0, &requests[rest[0]].1);
            let count = (budget / longest).clamp(1, rest.len());
            let (pass, later) = rest.split_at(count);
            rest = later;
            let fits = cache
                .as_ref()
                .is_some_and(|c| c.slots() >= count && c.capacity() >= longest);
            if !fits {
                cache = Some(self.new_cache(count, longest));
            }
            let cache = cache.as_mut().expect("made above");
            let scored = self.pass(cache, requests, pass)?;
            for (&i, r) in pass.iter().zip(scored) {
                results[i] = Some(r);
            }
            on_pass(pass.len());
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every request runs"))
            .collect())
    }

    /// One forward pass over the requests `pass` (indices into `requests`), slot k for the k-th.
    fn pass(
        &self,
        cache: &mut KvCache,
        requests: &[(Vec<u32>, Vec<u32>)],
        pass: &[usize],
    ) -> Result<Vec<Loglikelihood>, RuntimeError> {
        let inputs: Vec<Vec<u32>> = pass
            .iter()
            .map(|&i| {
                let (context, continuation) = &requests[i];
                let mut input = context.clone();
                input.extend_from_slice(&continuation[..continuation.len() - 1]);
                input
            })
            .collect();
        // The logits at a context's last token and at every continuation token but the last.
        let mut rows = Vec::new();
        let mut start = 0;
        for (&i, input) in pass.iter().zip(&inputs) {
            let first = start + requests[i].0.len() - 1;
            rows.extend(first..start + input.len());
            start += input.len();
        }
        for slot in 0..pass.len() {
            cache.truncate(slot, 0);
        }
        let seqs: Vec<Sequence> = inputs
            .iter()
            .enumerate()
            .map(|(slot, tokens)| Sequence { slot, tokens })
            .collect();
        let logits = self.forward_rows(cache, &seqs, &rows)?;
        let mut rows = logits.chunks_exact(self.config.vocab_size);
        Ok(pass
            .iter()
            .map(|&i| {
                let mut r = Loglikelihood {
                    logprob: 0.0,
                    greedy: true,
                };
                for (&target, row) in requests[i].1.iter().zip(rows.by_ref()) {
                    r.logprob -= token_nll(row, target);
                    r.greedy &= argmax(row) == target;
                }
                r
            })
            .collect())
    }
}

/// Tokens the model reads for a request: all but the last.
fn input_len(context: &[u32], continuation: &[u32]) -> usize {
    context.len() + continuation.len() - 1
}
