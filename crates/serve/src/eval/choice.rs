//! Multiple-choice tasks scored as lm-evaluation-harness scores them: each choice is a
//! continuation of the context (after the document's target delimiter), `acc` asks whether the
//! most likely choice is the gold one, and `acc_norm` asks the same of the log-likelihood
//! divided by the choice's length in characters (Unicode code points, Python's `len`, without
//! the delimiter). Ties go to the first choice, as numpy's argmax gives them.

use super::encode::Encoder;
use super::report::{ChoiceReport, DocReport};
use super::{scored_requests, EvalError};
use crate::runtime::InferenceModel;
use minicpm_data::eval_task::ChoiceDoc;

/// Index of the first maximum.
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// lm-eval's `mean_stderr`: the sample standard deviation over the square root of the count;
/// for 0/1 scores, sqrt(p (1 - p) / (n - 1)). `None` below two values.
pub fn mean_stderr(values: &[f64]) -> Option<f64> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Some((variance / n as f64).sqrt())
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Accuracies of documents already scored.
pub fn summarise(docs: &[ChoiceDoc], scored: Vec<DocReport>) -> ChoiceReport {
    let mut acc = Vec::with_capacity(docs.len());
    let mut acc_norm = Vec::with_capacity(docs.len());
    for (doc, s) in docs.iter().zip(&scored) {
        let lls = s.loglikelihoods.iter().copied();
        acc.push((argmax(lls.clone()) == doc.gold) as u8 as f64);
        let chars = doc.choices.iter().map(|c| c.chars().count() as f64);
        let normed = lls.zip(chars).map(|(ll, n)| ll / n);
        acc_norm.push((argmax(normed) == doc.gold) as u8 as f64);
    }
    let baseline: Vec<f64> = docs.iter().map(|d| 1.0 / d.choices.len() as f64).collect();
    ChoiceReport {
        documents: docs.len(),
        acc: mean(&acc),
        acc_stderr: mean_stderr(&acc),
        acc_norm: mean(&acc_norm),
        acc_norm_stderr: mean_stderr(&acc_norm),
        random_baseline: mean(&baseline),
        docs: scored,
    }
}

/// Scores every choice of every document (`budget` tokens per forward pass) and summarises.
/// `progress(done, total)` hears how many choices are scored.
pub fn score(
    model: &InferenceModel,
    encoder: &Encoder,
    docs: &[ChoiceDoc],
    budget: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ChoiceReport, EvalError> {
    let mut requests = Vec::new();
    for (index, doc) in docs.iter().enumerate() {
        for (k, choice) in doc.choices.iter().enumerate() {
            let continuation = format!("{}{choice}", doc.delimiter());
            let pair =
                encoder
                    .pair(&doc.context, &continuation)?
                    .ok_or_else(|| EvalError::Document {
                        index,
                        what: format!("choice {k} alone is longer than the model's context"),
                    })?;
            if pair.1.is_empty() {
                return Err(EvalError::Document {
                    index,
                    what: format!("choice {k} adds no tokens to the context"),
                });
            }
            requests.push(pair);
        }
    }
    let results = scored_requests(model, &requests, budget, progress)?;
    let mut results = results.into_iter();
    let scored = docs
        .iter()
        .enumerate()
        .map(|(index, doc)| {
            let mine: Vec<_> = results.by_ref().take(doc.choices.len()).collect();
            DocReport {
                index,
                gold: doc.gold,
                loglikelihoods: mine.iter().map(|r| r.logprob).collect(),
                greedy: mine.iter().map(|r| r.greedy).collect(),
            }
        })
        .collect();
    Ok(summarise(docs, scored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(choices: &[&str], gold: usize) -> ChoiceDoc {
        ChoiceDoc {
            context: "c".into(),
            choices: choices.iter().map(|c| c.to_string()).collect(),
            gold,
            target_delimiter: None,
        }
    }

    fn scored(index: usize, gold: usize, lls: &[f64]) -> DocReport {
        DocReport {
            index,
            gold,
            loglikelihoods: lls.to_vec(),
            greedy: vec![false; lls.len()],
        }
    }

    #[test]
    fn acc_norm_divides_by_characters_and_ties_go_to_the_first() {
        let docs = vec![
            // acc: choice 0 (-4 > -6); acc_norm: "ab" -4/2 = -2 < "汉字汉" -6/3 = -2: a tie, so 0.
            doc(&["ab", "汉字汉"], 1),
            // acc: a tie between 0 and 1 goes to 0 (the gold); acc_norm: -3/1 < -3/3 -> 1.
            doc(&["x", "xyz", "q"], 0),
            // Both right.
            doc(&["long answer", "no"], 0),
        ];
        let report = summarise(
            &docs,
            vec![
                scored(0, 1, &[-4.0, -6.0]),
                scored(1, 0, &[-3.0, -3.0, -9.0]),
                scored(2, 0, &[-1.0, -5.0]),
            ],
        );
        assert_eq!(report.documents, 3);
        assert_eq!(report.acc, 2.0 / 3.0);
        assert_eq!(report.acc_norm, 1.0 / 3.0);
        assert!((report.random_baseline - (0.5 + 1.0 / 3.0 + 0.5) / 3.0).abs() < 1e-15);
        // sqrt(p (1 - p) / (n - 1)) for 0/1 scores.
        let p: f64 = 2.0 / 3.0;
        let want = (p * (1.0 - p) / 2.0).sqrt();
        assert!((report.acc_stderr.unwrap() - want).abs() < 1e-15);
    }

    #[test]
    fn the_standard_error_is_the_sample_deviation_over_root_n() {
        // numpy: np.std([1, 2, 3, 4], ddof=1) / np.sqrt(4) = 0.6454972243679028
        let se = mean_stderr(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((se - 0.6454972243679028).abs() < 1e-15, "{se}");
        assert_eq!(mean_stderr(&[1.0]), None);
    }
}
