//! Log-probabilities as OpenAI's API reports them: the chosen token's `log softmax(logits)` and
//! the most likely alternatives, computed from the model's raw logits (before temperature or
//! any filtering, as vLLM reports them by default), in f64 like the scoring code.

/// One position's log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f64,
    /// The `n` most likely tokens with their log-probabilities, most likely first (ties by id).
    pub top: Vec<(u32, f64)>,
}

/// `log Σ exp(logits)`, in f64.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let z: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + z.ln()
}

/// The log-probability of `token` under `logits` and the `top` most likely tokens.
pub fn token_logprob(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let lse = log_sum_exp(logits);
    TokenLogprob {
        token,
        logprob: logits[token as usize] as f64 - lse,
        top: most_likely(logits, top)
            .into_iter()
            .map(|t| (t, logits[t as usize] as f64 - lse))
            .collect(),
    }
}

/// The ids of the `n` largest logits, largest first, ties by id.
pub fn most_likely(logits: &[f32], n: usize) -> Vec<u32> {
    let n = n.min(logits.len());
    if n == 0 {
        return Vec::new();
    }
    let order = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.select_nth_unstable_by(n - 1, order);
    ids.truncate(n);
    ids.sort_by(order);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_the_log_softmax_and_the_top_tokens_are_sorted() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5];
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        let lp = token_logprob(&logits, 4, 3);
        assert!((lp.logprob - (0.5f64.exp() / z).ln()).abs() < 1e-12);
        let ids: Vec<u32> = lp.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, vec![1, 3, 0]);
        assert!((lp.top[0].1 - (3f64.exp() / z).ln()).abs() < 1e-12);
        assert_eq!(most_likely(&logits, 9).len(), 5);
        assert!(most_likely(&logits, 0).is_empty());
    }
}
