//! What `minicpm eval` writes (docs/EVAL.md): one serde type for the file and whatever reads it.
//!
//! ```json
//! {"model": "...", "tasks": [
//!   {"task": "...", "kind": "multiple_choice", "documents": 2, "acc": 0.5, "acc_stderr": 0.5,
//!    "acc_norm": 0.5, "acc_norm_stderr": 0.5, "random_baseline": 0.25,
//!    "docs": [{"index": 0, "gold": 1, "loglikelihoods": [-3.2, -1.1], "greedy": [false, true]}]},
//!   {"task": "...", "kind": "bits_per_byte", "bits_per_byte": 1.9, "token_perplexity": 40.2,
//!    "bytes": 5120, "tokens": 1300}]}
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The model as given on the command line.
    pub model: String,
    pub tasks: Vec<TaskReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// The task file's stem.
    pub task: String,
    #[serde(flatten)]
    pub result: TaskResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskResult {
    MultipleChoice(ChoiceReport),
    BitsPerByte(TextReport),
}

/// A multiple-choice task's accuracies, lm-eval's way; standard errors are `None` (JSON null)
/// below two documents, where the sample variance is undefined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceReport {
    pub documents: usize,
    pub acc: f64,
    pub acc_stderr: Option<f64>,
    pub acc_norm: f64,
    pub acc_norm_stderr: Option<f64>,
    /// The accuracy of a uniform guess: the mean of 1 / number of choices.
    pub random_baseline: f64,
    pub docs: Vec<DocReport>,
}

/// One document's scores, per choice in the file's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocReport {
    /// The document's position in the task file, from 0, blank lines not counted.
    pub index: usize,
    pub gold: usize,
    /// Natural-log probability of each choice (with its delimiter) after the context.
    pub loglikelihoods: Vec<f64>,
    /// Whether each choice is what greedy decoding would produce.
    pub greedy: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextReport {
    /// Summed negative log-likelihood in bits over the text's UTF-8 bytes.
    pub bits_per_byte: f64,
    /// exp of the mean negative log-likelihood per token.
    pub token_perplexity: f64,
    pub bytes: u64,
    /// Tokens scored.
    pub tokens: u64,
}

impl TextReport {
    /// From a summed negative log-likelihood in nats.
    pub fn new(nll: f64, tokens: u64, bytes: u64) -> TextReport {
        TextReport {
            bits_per_byte: nll / std::f64::consts::LN_2 / bytes as f64,
            token_perplexity: (nll / tokens as f64).exp(),
            bytes,
            tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_the_documented_shape_and_reads_back() {
        let report = EvalReport {
            model: "runs/demo".into(),
            tasks: vec![
                TaskReport {
                    task: "words".into(),
                    result: TaskResult::MultipleChoice(ChoiceReport {
                        documents: 1,
                        acc: 1.0,
                        acc_stderr: None,
                        acc_norm: 0.0,
                        acc_norm_stderr: None,
                        random_baseline: 0.5,
                        docs: vec![DocReport {
                            index: 0,
                            gold: 1,
                            loglikelihoods: vec![-2.5, -1.0],
                            greedy: vec![false, true],
                        }],
                    }),
                },
                TaskReport {
                    task: "brown".into(),
                    result: TaskResult::BitsPerByte(TextReport::new(8.0 * 2f64.ln(), 4, 8)),
                },
            ],
        };
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(
            json,
            r#"{"model":"runs/demo","tasks":[{"task":"words","kind":"multiple_choice","documents":1,"acc":1.0,"acc_stderr":null,"acc_norm":0.0,"acc_norm_stderr":null,"random_baseline":0.5,"docs":[{"index":0,"gold":1,"loglikelihoods":[-2.5,-1.0],"greedy":[false,true]}]},{"task":"brown","kind":"bits_per_byte","bits_per_byte":1.0,"token_perplexity":4.0,"bytes":8,"tokens":4}]}"#
        );
        assert_eq!(serde_json::from_str::<EvalReport>(&json).unwrap(), report);
    }
}
