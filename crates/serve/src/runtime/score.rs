//! Scoring text: the mean negative log-likelihood of each token given the ones before it, in
//! non-overlapping windows (how held-out loss is measured in training, and what llama.cpp's
//! perplexity tool reports), several windows per forward pass.

use super::forward::{Logits, RuntimeError, Sequence};
use super::model::InferenceModel;

/// Summed negative log-likelihood (nats) and the number of predicted tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Nll {
    pub sum: f64,
    pub tokens: usize,
}

impl Nll {
    pub fn mean(&self) -> f64 {
        self.sum / self.tokens.max(1) as f64
    }
}

/// `-log softmax(logits)[target]`, in f64.
pub fn token_nll(logits: &[f32], target: u32) -> f64 {
    crate::logprobs::log_sum_exp(logits) - logits[target as usize] as f64
}

impl InferenceModel {
    /// The NLL of `tokens` cut into windows of `window + 1` tokens (each window predicts its
    /// last `window` tokens from the ones before, within the window), `batch` windows per
    /// forward pass; a shorter tail is dropped.
    pub fn score(&self, tokens: &[u32], window: usize, batch: usize) -> Result<Nll, RuntimeError> {
        let windows: Vec<&[u32]> = tokens.chunks_exact(window + 1).collect();
        let mut nll = Nll::default();
        let mut cache = self.new_cache(batch.max(1), window);
        for group in windows.chunks(batch.max(1)) {
            for slot in 0..group.len() {
                cache.truncate(slot, 0);
            }
            let seqs: Vec<Sequence> = group
                .iter()
                .enumerate()
                .map(|(slot, w)| Sequence {
                    slot,
                    tokens: &w[..window],
                })
                .collect();
            let logits = self.forward(&mut cache, &seqs, Logits::All)?;
            let vocab = self.config.vocab_size;
            let targets = group.iter().flat_map(|w| &w[1..]);
            for (row, &target) in logits.chunks_exact(vocab).zip(targets) {
                nll.sum += token_nll(row, target);
                nll.tokens += 1;
            }
        }
        Ok(nll)
    }
}
