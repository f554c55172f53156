//! Direct preference optimisation (Rafailov et al. 2023) and IPO (Azar et al. 2023), with the
//! reference model's log-probabilities computed once beforehand (docs/FINETUNE.md), so training
//! holds one model.
//!
//! A pair's implicit reward margin is `h = (log pi(chosen) - log ref(chosen)) - (log
//! pi(rejected) - log ref(rejected))`, each log-probability summed over the answer's tokens
//! (its text and EOS). The sigmoid loss is `-log sigmoid(beta * h)`; IPO's is
//! `(h - 1 / (2 beta))^2` with each log-probability divided by its answer's token count, as TRL
//! computes it. The loss of a micro-batch is the mean over its pairs.
//!
//! The model runs forward once. The per-token NLLs are read without gradients, the loss and
//! its derivative with respect to each token's NLL follow in closed form, and the gradient
//! reaches the model through the LM head's weighted-NLL kernel with those derivatives as the
//! weights: exact, and no logits kept.

use crate::lm_head_loss::TokenWeights;
use crate::loss::{batch_hidden, token_nll, weighted_nll};
use crate::step::Objective;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use minicpm_data::{Batch, IGNORE};
use minicpm_model::MiniCpm;
use std::sync::Mutex;

/// The preference loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreferenceLoss {
    Sigmoid,
    Ipo,
}

/// Pairs as two row blocks: `sequences` holds the `pairs` prompts + chosen answers, then the
/// same prompts + rejected answers (targets [`IGNORE`] outside the answers); `reference` the
/// reference model's summed answer log-probability of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    pub sequences: Batch,
    pub reference: Vec<f32>,
}

impl PairBatch {
    pub fn pairs(&self) -> usize {
        self.sequences.rows / 2
    }
}

/// What a batch of pairs shows: rewards are `beta * (log pi - log ref)` of each answer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairStats {
    pub pairs: usize,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// Pairs whose chosen reward exceeds the rejected one.
    pub correct: usize,
}

impl PairStats {
    pub fn add(&mut self, o: &PairStats) {
        self.pairs += o.pairs;
        self.chosen_reward += o.chosen_reward;
        self.rejected_reward += o.rejected_reward;
        self.correct += o.correct;
    }

    pub fn mean_chosen(&self) -> f64 {
        self.chosen_reward / self.pairs.max(1) as f64
    }

    pub fn mean_rejected(&self) -> f64 {
        self.rejected_reward / self.pairs.max(1) as f64
    }

    pub fn margin(&self) -> f64 {
        self.mean_chosen() - self.mean_rejected()
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.pairs.max(1) as f64
    }
}

/// Each row's summed answer log-probability and answer token count, from per-token NLLs.
pub fn row_log_probs(nll: &[f32], targets: &[u32], seq_len: usize) -> Vec<(f64, usize)> {
    nll.chunks(seq_len)
        .zip(targets.chunks(seq_len))
        .map(|(n, t)| {
            let count = t.iter().filter(|&&x| x != IGNORE).count();
            (-n.iter().map(|&x| x as f64).sum::<f64>(), count)
        })
        .collect()
}

/// The DPO objective; it also totals the pair statistics of the batches it has seen (in the
/// order their passes finish: micro-batches run side by side (lanes.rs) may add theirs in either
/// order, which can move the logged reward sums in their last bit).
pub struct Dpo {
    pub beta: f64,
    pub loss: PreferenceLoss,
    stats: Mutex<PairStats>,
}

impl Dpo {
    pub fn new(beta: f64, loss: PreferenceLoss) -> Self {
        Dpo {
            beta,
            loss,
            stats: Mutex::new(PairStats::default()),
        }
    }

    /// The statistics gathered since the last call.
    pub fn take_stats(&self) -> PairStats {
        std::mem::take(&mut *self.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The mean loss over the pairs whose rows have `policy` and `reference` summed
    /// log-probabilities (`(sum, answer tokens)` each, chosen rows first), its derivative with
    /// respect to each row's summed log-probability, and the statistics.
    pub fn pair_loss(
        &self,
        policy: &[(f64, usize)],
        reference: &[f32],
    ) -> (f64, Vec<f64>, PairStats) {
        let n = policy.len() / 2;
        let mut loss = 0.0;
        let mut grad = vec![0.0; 2 * n];
        let mut stats = PairStats {
            pairs: n,
            ..PairStats::default()
        };
        for i in 0..n {
            let (c, r) = (policy[i], policy[n + i]);
            let (c_ref, r_ref) = (reference[i] as f64, reference[n + i] as f64);
            let (chosen, rejected) = (self.beta * (c.0 - c_ref), self.beta * (r.0 - r_ref));
            stats.chosen_reward += chosen;
            stats.rejected_reward += rejected;
            stats.correct += usize::from(chosen > rejected);
            // h's derivative with respect to the chosen row's sum is `dc`, the rejected's `-dr`.
            let (h, dc, dr) = match self.loss {
                PreferenceLoss::Sigmoid => ((c.0 - c_ref) - (r.0 - r_ref), 1.0, 1.0),
                PreferenceLoss::Ipo => {
                    let (nc, nr) = (c.1.max(1) as f64, r.1.max(1) as f64);
                    ((c.0 - c_ref) / nc - (r.0 - r_ref) / nr, 1.0 / nc, 1.0 / nr)
                }
            };
            let (l, dl_dh) = match self.loss {
                // -log sigmoid(beta h) = softplus(-beta h), computed without overflow.
                PreferenceLoss::Sigmoid => {
                    let z = -self.beta * h;
                    let softplus = z.max(0.0) + (-z.abs()).exp().ln_1p();
                    (softplus, -self.beta * sigmoid(z))
                }
                PreferenceLoss::Ipo => {
                    let d = h - 1.0 / (2.0 * self.beta);
                    (d * d, 2.0 * d)
                }
            };
            loss += l / n as f64;
            grad[i] = dl_dh * dc / n as f64;
            grad[n + i] = -dl_dh * dr / n as f64;
        }
        (loss, grad, stats)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Objective for Dpo {
    type Batch = PairBatch;

    fn loss_tokens(&self, batch: &PairBatch) -> usize {
        batch.pairs()
    }

    fn loss(&self, model: &MiniCpm, batch: &PairBatch, device: &Device) -> Tensor<1> {
        let seqs = &batch.sequences;
        let hidden = batch_hidden(model, seqs, device);
        let nll = token_nll(model, hidden.clone(), &seqs.targets);
        let policy = row_log_probs(&nll, &seqs.targets, seqs.seq_len);
        let (loss, grad, stats) = self.pair_loss(&policy, &batch.reference);
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&stats);
        // d loss / d nll_t = -d loss / d (row's log-probability sum).
        let weights: Vec<f32> = seqs
            .targets
            .iter()
            .enumerate()
            .map(|(t, &target)| match target {
                IGNORE => 0.0,
                _ => -grad[t / seqs.seq_len] as f32,
            })
            .collect();
        let surrogate = weighted_nll(model, hidden, &seqs.targets, TokenWeights::Each(&weights));
        // The surrogate's gradient with the loss's value.
        (surrogate.clone() - surrogate.detach()).add_scalar(loss)
    }
}

/// Each row's summed answer log-probability under `model`, without gradients: the reference
/// log-probabilities, computed once before training.
pub fn sequence_log_probs(model: &MiniCpm, batch: &Batch, device: &Device) -> Vec<f32> {
    let model = model.valid();
    let inner = device.clone().inner();
    let hidden = batch_hidden(&model, batch, &inner);
    let nll = token_nll(&model, hidden, &batch.targets);
    row_log_probs(&nll, &batch.targets, batch.seq_len)
        .into_iter()
        .map(|(lp, _)| lp as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed-form derivatives against central differences of the loss.
    #[test]
    fn pair_loss_derivatives_match_finite_differences() {
        let policy = [(-12.0, 3), (-7.5, 4), (-15.0, 5), (-6.0, 2)];
        let reference = [-11.0f32, -8.0, -14.0, -6.5];
        for kind in [PreferenceLoss::Sigmoid, PreferenceLoss::Ipo] {
            let dpo = Dpo::new(0.1, kind);
            let (_, grad, stats) = dpo.pair_loss(&policy, &reference);
            assert_eq!(stats.pairs, 2);
            for (i, &g) in grad.iter().enumerate() {
                let eps = 1e-4;
                let at = |d: f64| {
                    let mut p = policy;
                    p[i].0 += d;
                    dpo.pair_loss(&p, &reference).0
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!((fd - g).abs() < 1e-7, "{kind:?} row {i}: {fd} vs {g}");
            }
        }
    }

    #[test]
    fn the_sigmoid_loss_is_log_2_at_zero_margin_and_stable_far_from_it() {
        let dpo = Dpo::new(0.1, PreferenceLoss::Sigmoid);
        let (l, _, s) = dpo.pair_loss(&[(-3.0, 1), (-4.0, 1)], &[-3.0, -4.0]);
        assert!((l - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(s.correct, 0);
        let (l, _, _) = dpo.pair_loss(&[(0.0, 1), (-1e5, 1)], &[0.0, 0.0]);
        assert!(l.is_finite() && l < 1e-12);
        let (l, _, _) = dpo.pair_loss(&[(-1e5, 1), (0.0, 1)], &[0.0, 0.0]);
        assert!((l - 1e4).abs() < 1e-6, "{l}");
    }
}
