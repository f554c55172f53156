//! Texts scored in bits per byte as lm-evaluation-harness scores them
//! (`loglikelihood_rolling`): each document on its own, from BOS, cut into windows of the
//! model's context. The first window reads BOS and predicts up to `max_len` tokens; each later
//! one predicts the next `max_len` tokens (fewer at the end), reading the `max_len` tokens
//! before its last, so that every token is predicted once and the last window still has a full
//! context. A window is one log-likelihood request: context, the tokens read before the first
//! predicted one; continuation, the predicted tokens.

use super::report::TextReport;
use super::{scored_requests, EvalError};
use crate::runtime::InferenceModel;
use minicpm_data::eval_task::TextDoc;
use minicpm_data::TextTokenizer;

/// lm-eval's `get_rolling_token_windows` with `context_len = 1`, as (context, continuation)
/// requests.
pub fn rolling_windows(tokens: &[u32], bos: u32, max_len: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut out = Vec::new();
    if tokens.is_empty() || max_len == 0 {
        return out;
    }
    let first = max_len.min(tokens.len());
    out.push((vec![bos], tokens[..first].to_vec()));
    let mut predicted = first;
    while predicted < tokens.len() {
        let end = (predicted + max_len).min(tokens.len());
        // Reads tokens[end - max_len - 1 .. end - 1]; predicts tokens[predicted .. end].
        out.push((
            tokens[end - max_len - 1..predicted].to_vec(),
            tokens[predicted..end].to_vec(),
        ));
        predicted = end;
    }
    out
}

/// Bits per byte and token perplexity of `docs` together: summed over every document's
/// tokens and bytes.
pub fn score(
    model: &InferenceModel,
    tokenizer: &TextTokenizer,
    docs: &[TextDoc],
    max_len: usize,
    budget: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TextReport, EvalError> {
    let bos = model.config.bos_token_id;
    let (mut requests, mut tokens, mut bytes) = (Vec::new(), 0u64, 0u64);
    for doc in docs {
        let ids = tokenizer.encode(&doc.text)?;
        tokens += ids.len() as u64;
        bytes += doc.text.len() as u64;
        requests.extend(rolling_windows(&ids, bos, max_len));
    }
    let results = scored_requests(model, &requests, budget, progress)?;
    let nll = -results.iter().map(|r| r.logprob).sum::<f64>();
    Ok(TextReport::new(nll, tokens, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The windows as lm-eval's Python yields them (`utils.get_rolling_token_windows(
    /// list(range(10)), prefix_token=-1, max_seq_len=4, context_len=1)`), written out by hand
    /// from its definition and mapped to (context, continuation): each window's input is the
    /// context followed by all but the last predicted token.
    #[test]
    fn windows_are_lm_evals() {
        let tokens: Vec<u32> = (10..20).collect();
        let w = rolling_windows(&tokens, 1, 4);
        let want: Vec<(Vec<u32>, Vec<u32>)> = vec![
            (vec![1], vec![10, 11, 12, 13]),
            (vec![13], vec![14, 15, 16, 17]),
            // The last reads 4 tokens (15..18) to predict the 2 left.
            (vec![15, 16, 17], vec![18, 19]),
        ];
        assert_eq!(w, want);
        for (context, continuation) in &w {
            assert!(context.len() + continuation.len() - 1 <= 4);
        }
        assert_eq!(
            rolling_windows(&tokens[..3], 1, 4),
            vec![(vec![1], vec![10, 11, 12])]
        );
        assert_eq!(rolling_windows(&[], 1, 4), vec![]);
        // Every token is predicted exactly once.
        let predicted: Vec<u32> = rolling_windows(&tokens, 1, 3)
            .into_iter()
            .flat_map(|(_, c)| c)
            .collect();
        assert_eq!(predicted, tokens);
    }
}
