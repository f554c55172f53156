//! Speculative decoding with a smaller model of the same family (Leviathan et al. 2023, greedy
//! form): the draft proposes `k` tokens one at a time, the target scores all of them in one
//! forward pass, and the longest prefix the target would have chosen itself is kept, plus the
//! target's own next token. The output is exactly greedy decoding with the target; the draft
//! only changes how many target passes it takes.

use super::forward::{Logits, RuntimeError, Sequence};
use super::model::InferenceModel;
use crate::sampling::argmax;

/// How a speculative generation went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeculationStats {
    /// Draft tokens proposed and accepted.
    pub proposed: usize,
    pub accepted: usize,
    /// Forward passes of the target model.
    pub target_passes: usize,
}

impl SpeculationStats {
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted as f64 / self.proposed.max(1) as f64
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpeculationError {
    #[error("the draft's vocabulary ({draft}) differs from the model's ({target}): they must share a tokenizer")]
    Vocabulary { draft: usize, target: usize },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Greedy generation of up to `max_new_tokens` after `prompt` with `target`, `draft` proposing
/// `k` tokens per round. `on_token` sees each new token and can stop by returning false; an EOS
/// of the target's config ends generation and is returned, as in [`InferenceModel::generate`].
pub fn generate_speculative(
    target: &InferenceModel,
    draft: &InferenceModel,
    prompt: &[u32],
    max_new_tokens: usize,
    k: usize,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<(Vec<u32>, SpeculationStats), SpeculationError> {
    let (tv, dv) = (target.config.vocab_size, draft.config.vocab_size);
    if tv != dv {
        return Err(SpeculationError::Vocabulary {
            draft: dv,
            target: tv,
        });
    }
    let k = k.max(1);
    let mut text = match prompt.is_empty() {
        true => vec![target.config.bos_token_id],
        false => prompt.to_vec(),
    };
    let prompt_len = text.len();
    let limit = target.context_limit().min(draft.context_limit());
    if prompt_len > limit {
        return Err(RuntimeError::PromptTooLong {
            len: prompt_len,
            limit,
        }
        .into());
    }
    // The same bound as plain generation: a token is generated while the one before it fits.
    let capacity = (prompt_len + max_new_tokens).min(limit);
    let mut target_cache = target.new_cache(1, capacity);
    let mut draft_cache = draft.new_cache(1, capacity);
    let mut stats = SpeculationStats::default();

    let logits = target.forward(&mut target_cache, &[seq(&text)], Logits::Last)?;
    stats.target_passes += 1;
    let mut next = argmax(&logits);
    loop {
        // `next` is chosen; the target has processed everything before it.
        text.push(next);
        let generated = text.len() - prompt_len;
        if target.config.eos_token_id.contains(next)
            || !on_token(next)
            || generated >= max_new_tokens
            || target_cache.len(0) >= capacity
        {
            return Ok((text.split_off(prompt_len), stats));
        }
        // Room for `next` and the proposal in the target's cache.
        let rounds = k.min(capacity - target_cache.len(0) - 1);
        let mut proposal = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            // The draft catches up on the text it has not seen (at least `next`), then proposes.
            let seen = draft_cache.len(0);
            let unseen: Vec<u32> = text.iter().chain(&proposal).skip(seen).copied().collect();
            let l = draft.forward(&mut draft_cache, &[seq(&unseen)], Logits::Last)?;
            proposal.push(argmax(&l));
        }
        // The target scores `next` and the proposal in one pass: row i predicts the token after
        // input i.
        let before = target_cache.len(0);
        let mut input = vec![next];
        input.extend(&proposal);
        let logits = target.forward(&mut target_cache, &[seq(&input)], Logits::All)?;
        stats.target_passes += 1;
        stats.proposed += proposal.len();
        let rows: Vec<&[f32]> = logits.chunks_exact(target.config.vocab_size).collect();
        let mut accepted = 0;
        while accepted < proposal.len() && argmax(rows[accepted]) == proposal[accepted] {
            accepted += 1;
        }
        stats.accepted += accepted;
        // Both caches keep `next` and the accepted tokens, nothing after them.
        target_cache.truncate(0, before + 1 + accepted);
        draft_cache.truncate(0, before + 1 + accepted);
        for &d in &proposal[..accepted] {
            text.push(d);
            if target.config.eos_token_id.contains(d)
                || !on_token(d)
                || text.len() - prompt_len >= max_new_tokens
            {
                return Ok((text.split_off(prompt_len), stats));
            }
        }
        next = argmax(rows[accepted]);
    }
}

fn seq(tokens: &[u32]) -> Sequence<'_> {
    Sequence { slot: 0, tokens }
}
