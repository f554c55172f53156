//! Evaluation on the inference runtime (docs/EVAL.md): multiple-choice tasks by the
//! log-likelihood of each choice, texts by bits per byte, both as lm-evaluation-harness's
//! `local-completions` model with `add_bos_token=True` scores them, so that numbers from either
//! can be set side by side.

pub mod choice;
pub mod encode;
pub mod passkey;
pub mod report;
pub mod rolling;

use crate::runtime::{InferenceModel, Loglikelihood, RuntimeError};
use encode::Encoder;
use minicpm_data::eval_task::{Task, TaskDocs};
use minicpm_data::{DataError, TextTokenizer};
use report::{TaskReport, TaskResult};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Data(#[from] DataError),
    /// A document that cannot be scored; `index` counts documents from 0.
    #[error("document {index}: {what}")]
    Document { index: usize, what: String },
}

#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// BOS before every multiple-choice context (texts always start from BOS).
    pub add_bos: bool,
    /// Tokens per forward pass (see `InferenceModel::loglikelihoods`).
    pub batch_tokens: usize,
}

/// Scores one task. Requests are cut to the model's trained context (`max_position_embeddings`).
/// `progress(done, total)` counts scoring requests: choices, or text windows.
pub fn evaluate(
    model: &InferenceModel,
    tokenizer: &TextTokenizer,
    task: &Task,
    opts: EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TaskReport, EvalError> {
    let max_len = model.config.max_position_embeddings;
    let result = match &task.docs {
        TaskDocs::MultipleChoice(docs) => {
            let encoder = Encoder {
                tokenizer,
                bos: model.config.bos_token_id,
                add_bos: opts.add_bos,
                max_len,
            };
            let r = choice::score(model, &encoder, docs, opts.batch_tokens, progress)?;
            TaskResult::MultipleChoice(r)
        }
        TaskDocs::Text(docs) => {
            let r = rolling::score(model, tokenizer, docs, max_len, opts.batch_tokens, progress)?;
            TaskResult::BitsPerByte(r)
        }
    };
    Ok(TaskReport {
        task: task.name.clone(),
        result,
    })
}

/// `InferenceModel::loglikelihoods`, telling `progress` (done, total) after every pass.
fn scored_requests(
    model: &InferenceModel,
    requests: &[(Vec<u32>, Vec<u32>)],
    budget: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Loglikelihood>, RuntimeError> {
    let mut done = 0;
    model.loglikelihoods(requests, budget, |n| {
        done += n;
        progress(done, requests.len());
    })
}

#[cfg(test)]
mod tests;
